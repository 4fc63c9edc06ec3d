"""The reference: every tensor's stored bytes, read straight from the shards and hashed as they arrive.

This is a plain safetensors reader: the strict header parser (`checkpoint.header`, held to the
safetensors crate's rules by a differential fuzz test) says where each tensor's bytes lie, and
positioned reads fetch them, runs of consecutive tensors in sequential reads, hashed in parallel on
every core (the hash functions release the GIL). Nothing is mapped into memory: each worker holds
one READ_CHUNK buffer, and a shard truncated while read gives a clean error instead of a SIGBUS.
`check` uses it as the truth, `manifest` and `verify` to record and recheck digests; object storage
gets the same treatment through ranged GETs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from nemoverify.checkpoint.header import TensorInfo
from nemoverify.checkpoint.layout import CHANGED, Checkpoint, Shard, ensure_checkpoint_unchanged
from nemoverify.checkpoint.problems import InvalidCheckpoint, Problem
from nemoverify.hashing import new_hasher, one_shot
from nemoverify.model.routing import route
from nemoverify.observations import Delivered, Observation
from nemoverify.progress import Progress

READ_CHUNK = 4 << 20  # hashed while still in the CPU caches: 4 MiB measured best here (16 MiB: +11%)
RUN_BYTES = 64 << 20  # work items of at least 64 MiB of consecutive tensors: balanced across cores


def _runs(shard: Shard) -> list[tuple[TensorInfo, ...]]:
    """Consecutive tensors grouped into runs of about RUN_BYTES, so that one large shard is hashed
    by every worker rather than by one while the others idle."""
    runs: list[tuple[TensorInfo, ...]] = []
    current: list[TensorInfo] = []
    size = 0
    for info in shard.header.tensors:
        current.append(info)
        size += info.nbytes
        if size >= RUN_BYTES:
            runs.append(tuple(current))
            current, size = [], 0
    if current:
        runs.append(tuple(current))
    return runs


_buffers = threading.local()


def _read_buffer() -> memoryview:
    """This thread's READ_CHUNK buffer, made once: a worker reads every run it takes into it (fresh
    buffers per run cost page faults, 136 MiB of them on 2.2 GB)."""
    view: memoryview | None = getattr(_buffers, "view", None)
    if view is None or len(view) != READ_CHUNK:
        view = _buffers.view = memoryview(bytearray(READ_CHUNK))
    return view


def _range_chunks(
    checkpoint: Checkpoint, shard: Shard, start: int, length: int, cancel: threading.Event, read_ahead: bool = False
) -> Iterator[memoryview]:
    """Bytes [start, start+length) of a shard's data section in chunks of at most READ_CHUNK:
    positioned local reads into one reused buffer, or one ranged GET from object storage."""
    offset = shard.header.data_start + start
    if not checkpoint.is_local:
        for chunk in checkpoint.storage.iter_range(shard.name, offset, length):  # type: ignore[attr-defined]
            if cancel.is_set():
                raise KeyboardInterrupt
            yield chunk
        return
    view = _read_buffer()
    fd = checkpoint.storage.fd(shard.name)  # type: ignore[attr-defined]  # the one opened for the header
    if read_ahead and hasattr(os, "posix_fadvise"):  # the kernel reads the run while this worker hashes
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)
    while length:
        if cancel.is_set():  # checked per chunk, so an interrupt waits for one READ_CHUNK at most
            raise KeyboardInterrupt
        n = os.preadv(fd, [view[: min(length, READ_CHUNK)]], offset)
        if not n:
            raise InvalidCheckpoint(
                checkpoint.root,
                [
                    Problem(
                        "file-changed",
                        shard.location,
                        f"{CHANGED}: it ended {length:,} bytes early",
                    )
                ],
            )
        offset += n
        length -= n
        yield view[:n]  # consumed before the next read reuses the buffer


def hash_run(
    checkpoint: Checkpoint,
    shard: Shard,
    run: tuple[TensorInfo, ...],
    algorithm: str,
    progress: Progress,
    cancel: threading.Event,
    phase: str = "manifest",
    read_ahead: bool = False,
) -> list[Observation]:
    """Hash a run of consecutive tensors from one sequential read of their bytes (tensors are
    contiguous and in offset order: the validator made sure). A tensor that lies whole inside one
    chunk is hashed in one call; one that spans chunks is fed to a hasher piece by piece."""
    out: list[Observation] = []
    digest_of = one_shot(algorithm)

    def done(info: TensorInfo, digest: str) -> None:
        out.append(Observation(info.name, route(info.name).component, info.dtype, info.shape, info.nbytes, digest))

    i, n = 0, len(run)
    hasher, left = None, 0  # the tensor that spans chunks, and its bytes still to come
    start, end = run[0].start, run[-1].end
    for chunk in _range_chunks(checkpoint, shard, start, end - start, cancel, read_ahead):
        pos, size = 0, len(chunk)
        if hasher is not None:
            take = min(left, size)
            hasher.update(chunk[:take])
            pos, left = take, left - take
            if not left:
                done(run[i], hasher.hexdigest())
                hasher, i = None, i + 1
        while i < n and hasher is None:
            info = run[i]
            nbytes = info.end - info.start
            if pos + nbytes <= size:  # whole in this chunk (zero-byte tensors included): the hot loop
                name = info.name
                digest = digest_of(chunk[pos : pos + nbytes])
                out.append(Observation(name, route(name).component, info.dtype, info.shape, nbytes, digest))
                pos += nbytes
                i += 1
            elif pos < size:
                hasher, left = new_hasher(algorithm), nbytes - (size - pos)
                hasher.update(chunk[pos:])
                pos = size
            else:
                break
        progress(phase, size)
    for info in run[i:]:  # zero-byte tensors after the last byte
        done(info, digest_of(b""))
    return out


SMALL_TENSOR_BYTES = 64 << 10
"""Below this mean size per tensor, a run's cost is the Python around each hash (about 2 us a tensor),
not the hashing (64 KiB of xxh3 takes about as long) nor the read: such a run gains nothing from
overlapping another pass and costs it GIL handoffs."""


def hash_checkpoint(
    checkpoint: Checkpoint,
    algorithm: str,
    progress: Progress,
    workers: int | None = None,
    phase: str = "manifest",
    cancel: threading.Event | None = None,
    small_runs_after: threading.Event | None = None,
    beside_candidate: bool = False,
) -> Delivered:
    """Every tensor's digest from its stored bytes; runs of tensors are hashed in parallel (the
    hash functions release the GIL), one read buffer per worker. Setting `cancel` stops every
    worker at its next chunk. `beside_candidate` says a candidate pass streams meanwhile (check).
    With `small_runs_after`, runs of small tensors (under SMALL_TENSOR_BYTES on average) wait
    until that event is set, so that the pass beside this one finishes first, undisturbed."""
    delivered = Delivered()
    cancel = cancel or threading.Event()
    # Alone (manifest, verify), the reader takes the disk: more workers than cores, and each run
    # read ahead, keep reads in flight while workers hash (cold cache: 0.84 s -> 0.75 s on 2.2 GB).
    # Beside a candidate pass, which streams from the same disk, that starves the stream (check,
    # cold: 1.98 s -> 2.79 s); one worker per core, reading as it goes, leaves it the disk.
    alone = not beside_candidate
    cores = os.cpu_count() or 1
    workers = workers or (min(32, cores + 4) if alone else cores)
    tasks = [(shard, run) for shard in checkpoint.shards for run in _runs(shard)]
    later: list[tuple[Shard, tuple[TensorInfo, ...]]] = []
    if small_runs_after is not None:
        now: list[tuple[Shard, tuple[TensorInfo, ...]]] = []
        for task in tasks:
            (later if _mean_bytes(task[1]) < SMALL_TENSOR_BYTES else now).append(task)
        tasks = now
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nemoverify-hash") as pool:

        def submit(batch: list[tuple[Shard, tuple[TensorInfo, ...]]]) -> list[Future[list[Observation]]]:
            return [
                pool.submit(hash_run, checkpoint, shard, run, algorithm, progress, cancel, phase, alone)
                for shard, run in batch
            ]

        try:
            futures = submit(tasks)
            if later:
                assert small_runs_after is not None
                while not small_runs_after.wait(0.05):
                    if cancel.is_set():
                        raise KeyboardInterrupt
                futures += submit(later)
            for future in futures:
                for obs in future.result():
                    delivered.add(obs)
        except BaseException:
            cancel.set()
            raise
    ensure_checkpoint_unchanged(checkpoint)  # a verdict about the bytes now on disk, or none
    return delivered


def _mean_bytes(run: tuple[TensorInfo, ...]) -> float:
    return sum(info.nbytes for info in run) / len(run)
