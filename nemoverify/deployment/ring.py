"""The streamer's ring buffer (RUNAI_STREAMER_MEMORY_LIMIT) nemoverify asks for when the user sets
none: production's size where it decides the verdict, else the size measured fastest, always within a
share of the memory this process may still use (a container's cgroup limit counts)."""

from __future__ import annotations

import os

STREAMER_DEFAULT_RING = 40_000_000_000  # the streamer's own RUNAI_STREAMER_MEMORY_LIMIT default, 40 GB
RING_SHARE_OF_MEMORY = 4  # a quarter: the rest is for the multimodal clones, torch and the page cache


def default_ring_bytes(
    meminfo: str = "/proc/meminfo", proc_cgroup: str = "/proc/self/cgroup", cgroup_root: str = "/sys/fs/cgroup"
) -> int:
    """The ring nemoverify asks for when the user sets none: the streamer's 40 GB, or a quarter of
    the memory available now if that is less, so that a checkpoint larger than the machine's
    memory verifies without swapping. "Available" is the machine's MemAvailable or, in a container
    or CI job with a memory limit, what its cgroup still allows, whichever is less (MemAvailable
    there is the host's). A smaller ring only means more buffer reuse, which makes the check
    stricter, never looser."""
    available = None
    try:
        with open(meminfo) as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    room = cgroup_headroom(proc_cgroup, cgroup_root)
    if room is not None:
        available = room if available is None else min(available, room)
    if available is None:
        return STREAMER_DEFAULT_RING
    return max(MIN_RING, min(STREAMER_DEFAULT_RING, available // RING_SHARE_OF_MEMORY))


MIN_RING = 64 << 20  # 0 would mean "a ring of the largest tensor" to the streamer: a mode, not a size

CHOSEN_RING = 256 << 20
"""The ring nemoverify asks for by default, chosen by measurement (README, "Performance"): on a
2.19 GB checkpoint with 2 cores, whole-process `check` was fastest with 256 MiB among 128 MiB,
256 MiB, 512 MiB, 1 GiB and a quarter of memory (5.8 GB), with the least CPU time beside 128 MiB,
and a peak RSS of 0.65 GB (1.29 GB with a quarter of memory). A ring's buffers (18 of them, each
ring / 18) are allocated afresh for every request under owned tensors: small buffers come back from
the heap, large ones are new pages to fault in, every time. Never above the memory bound
(`default_ring_bytes`); raised to hold two of the largest tensor (`fitted_ring`)."""


RING_PER_CORE = 64 << 20
"""More cores keep more of the streamer's reads in flight: on 16 cores (one H200 host, 8.02 GB of
large tensors) a 1 GiB ring streamed `check` faster than 256 MiB in both of two runs (6.57 against
6.80 s; 7.05 against 8.12 s, 5 rounds; docs/performance.md), at a peak RSS of 0.21x the checkpoint.
Below 5 cores CHOSEN_RING stays."""


def chosen_ring_bytes(cores: int | None = None) -> int:
    """The default ring: CHOSEN_RING, or RING_PER_CORE a core where that is more, never past the
    memory bound (`default_ring_bytes`); `within_share` holds it to the checkpoint's size."""
    cores = cores or _usable_cores()
    return min(max(CHOSEN_RING, RING_PER_CORE * cores), default_ring_bytes())


def within_share(ring: int, streamed_bytes: int) -> int:
    """A default ring grown past CHOSEN_RING only as far as an eighth of the bytes streamed, so that
    the peak RSS stays under a quarter of the checkpoint (the ring, the imports, the tensor in hand)."""
    return max(min(ring, streamed_bytes // 8), min(ring, CHOSEN_RING))


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # a container's CPU set, where the platform has one
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def fitted_ring(ring: int, largest_tensor: int) -> int:
    """nemoverify's own ring (never the user's), raised to hold two of the largest tensor so that the
    streamer reads one while the other is consumed (the streamer refuses a ring smaller than one),
    but past the memory bound only as far as one tensor needs."""
    if ring >= 2 * largest_tensor:
        return ring
    return max(ring, largest_tensor, min(2 * largest_tensor, default_ring_bytes()))


def cgroup_headroom(proc_cgroup: str = "/proc/self/cgroup", root: str = "/sys/fs/cgroup") -> int | None:
    """Bytes this process's memory cgroup still allows (limit minus usage), the tightest over it and
    its ancestors, cgroup v2 or v1; None where no limit is set or none can be read."""
    try:
        with open(proc_cgroup) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    tightest = None
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and not controllers:
            base, limit_file, usage_file = root, "memory.max", "memory.current"
        elif "memory" in controllers.split(","):
            base, limit_file, usage_file = (
                os.path.join(root, "memory"),
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
            )
        else:
            continue
        parts = [p for p in path.split("/") if p]
        for depth in range(len(parts), -1, -1):  # limits nest: a parent's binds its children
            directory = os.path.join(base, *parts[:depth])
            limit, usage = (
                _read_int(os.path.join(directory, limit_file)),
                _read_int(os.path.join(directory, usage_file)),
            )
            if limit is None or usage is None or limit >= 1 << 60:  # "max", or v1's unlimited sentinel
                continue
            headroom = max(0, limit - usage)
            tightest = headroom if tightest is None else min(tightest, headroom)
    return tightest


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):  # absent, unreadable, or "max"
        return None
