"""The candidate loader: the Run:ai Model Streamer, configured the way vLLM configures it.

Its knobs are environment variables read when a stream starts, so they are set around the stream
and restored after. What they are set to comes from the deployment profile (`nemoverify.profiles`,
resolved in `nemoverify.options`): production's buffers as deployed, or under `--stress` borrowed
views, a ring of the largest tensor (memory limit 0) and staging buffers no larger than the largest
tensor, so any retained reference goes stale as fast as it can.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nemoverify.errors import DistributedError, LoaderError, redact

if TYPE_CHECKING:
    import torch

    from nemoverify.checkpoint.layout import Checkpoint


@dataclass(frozen=True)
class StreamerSettings:
    """Everything the streamer is told for one stream, already resolved from the deployment profile."""

    memory_limit: int | None = None  # RUNAI_STREAMER_MEMORY_LIMIT: -1 unlimited, 0 one tensor, N bytes
    concurrency: int | None = None  # RUNAI_STREAMER_CONCURRENCY: reader threads
    borrowed: bool = False  # the caller gets views into reused buffers (0.15/0.16, or owned=False)
    distributed: bool = False
    device: str = "cpu"
    staging_min_bytes: int | None = None  # RUNAI_STREAMER_DIST_BUFFER_MIN_BYTESIZE; None: the 1 GiB default

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.memory_limit is not None:
            env["RUNAI_STREAMER_MEMORY_LIMIT"] = str(self.memory_limit)
        if self.concurrency is not None:
            env["RUNAI_STREAMER_CONCURRENCY"] = str(self.concurrency)
        if self.distributed:
            # `auto` distributes only over NCCL; gloo on the CPU must be forced.
            env["RUNAI_STREAMER_DIST"] = "1"
            if self.staging_min_bytes is not None:
                env["RUNAI_STREAMER_DIST_BUFFER_MIN_BYTESIZE"] = str(self.staging_min_bytes)
        return env


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


def chosen_ring_bytes() -> int:
    """The default ring: CHOSEN_RING, or less where the memory bound is less."""
    return min(CHOSEN_RING, default_ring_bytes())


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


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# The endpoint settings the reference reader's clients read, and the streamer's own names for them.
# The S3 one is vLLM's copy; streamer 0.15.7, 0.16.1 and 0.17 read AWS_ENDPOINT_URL themselves (their
# libraries name no RUNAI_STREAMER_S3_ENDPOINT), so it is kept for fidelity, not because it steers them.
ENDPOINT_HANDED_ON = {
    "AWS_ENDPOINT_URL": "RUNAI_STREAMER_S3_ENDPOINT",  # as vLLM does, only where that is unset
    "STORAGE_EMULATOR_HOST": "CLOUD_STORAGE_EMULATOR_ENDPOINT",  # the Python GCS client's, to the C++ one
}


def endpoint_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What the streamer is told of a non-default object-storage endpoint, so that it reads from the
    endpoint the reference reads from; a value the user set for the streamer itself is left alone."""
    return {
        ours: environ[theirs]
        for theirs, ours in ENDPOINT_HANDED_ON.items()
        if environ.get(theirs) and ours not in environ
    }


def accepts_owned() -> bool:
    """Whether the installed streamer's `stream_files` takes `owned` (0.17 on); never pass what it lacks."""
    import inspect

    from runai_model_streamer import SafetensorsStreamer

    return "owned" in inspect.signature(SafetensorsStreamer.stream_files).parameters


class RunaiStreamer:
    """The candidate: every file vLLM's Run:ai loader streams, through the installed streamer,
    holding tensors the way the profile's streamer release holds them."""

    def __init__(self, checkpoint: Checkpoint, settings: StreamerSettings) -> None:
        self.checkpoint = checkpoint
        self.settings = settings
        held = "borrowed views" if settings.borrowed else "owned tensors"
        self.description = f"runai-model-streamer ({held})"
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> RunaiStreamer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        # The streamer logs its throughput at INFO; the report is ours to print.
        logging.getLogger("runai_model_streamer").setLevel(logging.WARNING)
        from runai_model_streamer import SafetensorsStreamer

        from nemoverify.checkpoint.layout import ensure_unchanged  # not at import: `--help` loads this module

        files = self.checkpoint.streamed
        paths = [shard.location for shard in files]
        env = self.settings.environment()
        if not self.checkpoint.is_local:
            env.update(endpoint_environment(os.environ))
        # 0.17 takes `owned`; 0.15/0.16 always yield views. A profile of the other kind is emulated:
        # owned=False on 0.17 gives 0.16's views; on 0.16 a clone per tensor gives 0.17's ownership.
        extra: dict[str, bool] = {}
        clone = False
        if accepts_owned():
            extra["owned"] = not self.settings.borrowed
        else:
            clone = not self.settings.borrowed
        with environment(env):
            try:
                with SafetensorsStreamer() as streamer:
                    streamer.stream_files(
                        paths, device=self.settings.device, is_distributed=self.settings.distributed, **extra
                    )
                    if self.settings.distributed and not streamer.file_streamer.is_distributed:
                        # Verifying plain streaming while the user asked about distributed streaming
                        # would answer the wrong question.
                        raise DistributedError(
                            f"{self.checkpoint.root}: the Run:ai streamer fell back to non-distributed streaming "
                            "(needs an initialised group of more than one process, and a backend that matches the device)"
                        )
                    if clone:
                        for name, tensor in streamer.get_tensors():
                            yield name, tensor.clone()
                    else:
                        yield from streamer.get_tensors()
            except (GeneratorExit, KeyboardInterrupt, DistributedError):
                raise
            except Exception as exc:  # the streamer raises bare RuntimeError/ValueError from C++
                for shard in files:  # a file changed under us is the better explanation
                    ensure_unchanged(self.checkpoint, shard)
                raise LoaderError(redact(f"{self.checkpoint.root}: the Run:ai streamer failed: {exc}")) from exc
        for shard in files:
            ensure_unchanged(self.checkpoint, shard)
