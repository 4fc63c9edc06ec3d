"""Distributed streaming: every rank streams with `is_distributed=True`, replays the load path, and
hashes what it received; rank results are gathered into one report.

`run_ranks` launches N local processes with torch's elastic launcher (gloo on the CPU, NCCL for
CUDA devices). `run_under_torchrun` is for processes a user started with `torchrun ... --distributed`
(multi-node runs). A rank that crashes ends the whole run (the elastic agent stops the others); a
rank that hangs is bounded by the process-group timeout, which also bounds the streamer's
broadcasts (RUNAI_STREAMER_DIST_TIMEOUT).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from nemoverify.engine.passes import candidate_pass
from nemoverify.errors import DistributedError
from nemoverify.gc_pause import cycle_collection_paused
from nemoverify.model.checks import open_for_vllm
from nemoverify.observations import Delivered
from nemoverify.progress import Progress, no_progress
from nemoverify.readers.runai import environment

if TYPE_CHECKING:
    from nemoverify.deployment.options import CheckOptions

DEFAULT_TIMEOUT_S = 300


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def _rank_device(device: str) -> str:
    if device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def _stream_on_this_rank(path: str, options: CheckOptions, progress: Progress = no_progress) -> Delivered:
    """The body of every rank: open the checkpoint, stream distributed, replay, hash."""

    with cycle_collection_paused():
        checkpoint = open_for_vllm(path)
        checkpoint.require_valid(options.strict)
        return candidate_pass(checkpoint, options, progress, distributed=True)


class _SharedCount:
    """Rank 0's candidate bytes, told to the launching process through an 8-byte file: the ranks'
    results come back only at the end, and a bar that stays at zero until then says nothing."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.done = 0
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def __call__(self, phase: str, nbytes: int) -> None:  # a Progress, in the rank
        self.done += nbytes
        os.pwrite(self.fd, self.done.to_bytes(8, "little"), 0)

    def read(self) -> int:
        data = os.pread(self.fd, 8, 0)
        return int.from_bytes(data, "little") if len(data) == 8 else 0


@contextlib.contextmanager
def _ranks_progress(progress: Progress | None) -> Iterator[str | None]:
    """The file rank 0 counts its candidate bytes in, and a thread that hands them on to `progress`
    (each run of a matrix restarts the rank's count: a drop is a new run)."""
    if progress is None:
        yield None
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nemoverify-progress-") as tmp:
        path = os.path.join(tmp, "candidate")
        with open(path, "wb") as f:
            f.write(bytes(8))
        count, stop = _SharedCount(path), threading.Event()

        def hand_on() -> None:
            told = 0
            while not stop.wait(0.2):
                now = count.read()
                if now < told:  # rank 0 began the next run of a matrix
                    progress("profiles", 1)
                    told = 0
                if now > told:
                    progress("candidate", now - told)
                    told = now

        watcher = threading.Thread(target=hand_on, daemon=True, name="ranks-progress")
        watcher.start()
        try:
            yield path
            progress("profiles", 1)  # the last run's end
        finally:
            stop.set()
            watcher.join()
            os.close(count.fd)


SHUTDOWN_GRACE_S = 2  # how long the launcher waits for a rank to stop before killing it (torch's default: 30)


def _die_with(parent: int) -> None:
    """A rank never outlives the nemoverify process that launched it: killed with it (SIGKILL from a CI
    timeout or the OOM killer included) by the kernel's parent-death signal. Ctrl-C is the parent's
    to handle: a terminal sends it to the whole process group, and the parent stops the ranks (the
    rank was started ignoring it already: `_ranks_deaf_to_ctrl_c_from_birth`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


@contextlib.contextmanager
def _ranks_deaf_to_ctrl_c_from_birth() -> Iterator[None]:
    """A terminal's Ctrl-C goes to the whole process group: a rank whose interpreter is still starting
    (before `_die_with` runs) would die of it with a Python traceback. So ranks are started through a
    two-line sh wrapper that ignores SIGINT and execs this Python: an ignored signal stays ignored
    across exec, and Python keeps an ignored SIGINT ignored. (The signal mask is no help: CPython's
    spawn clears it in the child.) This process keeps its own handler and stops the ranks itself.

    A Ctrl-C that reaches this process between a rank's start and the writing of what the rank is to
    run would close the pipe under it: the rank reads nothing and prints an EOFError traceback. So
    each launch is written whole first, and the Ctrl-C taken right after it (`_launched_whole`)."""
    import multiprocessing.spawn as mp_spawn
    import shlex
    import tempfile
    from multiprocessing import popen_spawn_posix

    if os.name != "posix":
        yield
        return
    launch = popen_spawn_posix.Popen._launch  # type: ignore[attr-defined]  # (not in typeshed)
    with tempfile.TemporaryDirectory(prefix="nemoverify-ranks-") as tmp:
        wrapper = os.path.join(tmp, "python")
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\ntrap '' INT\nexec {shlex.quote(sys.executable)} \"$@\"\n")
        os.chmod(wrapper, 0o700)
        previous = mp_spawn.get_executable()
        mp_spawn.set_executable(wrapper)
        popen_spawn_posix.Popen._launch = _launched_whole(launch)  # type: ignore[attr-defined]
        try:
            yield
        finally:
            popen_spawn_posix.Popen._launch = launch  # type: ignore[attr-defined]
            mp_spawn.set_executable(previous)


def _launched_whole(launch: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """`launch` with a Ctrl-C that arrives during it held until it has returned, then delivered to
    the handler that was there (the launcher's, which stops the ranks)."""

    def launch_whole(popen: Any, process: Any) -> None:
        if threading.current_thread() is not threading.main_thread():  # handlers live in the main thread
            return launch(popen, process)
        held: list[int] = []
        handler = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
        try:
            return launch(popen, process)
        finally:
            signal.signal(signal.SIGINT, handler)
            if held:
                signal.raise_signal(signal.SIGINT)

    return launch_whole


def _rank_main(
    path: str, runs: list[CheckOptions], timeout_s: int, parent: int, progress_file: str | None = None
) -> list[Delivered]:
    """One rank: stream the checkpoint once per run (one per profile, for the matrix), in one group.
    Rank 0 counts its candidate bytes in `progress_file`, for the launching process's bar."""
    _die_with(parent)
    import torch.distributed as dist

    device = _rank_device(runs[0].device)
    try:
        _init_group(device, timeout_s)
        delivered = []
        for options in runs:
            told: Progress = no_progress
            if progress_file is not None and dist.get_rank() == 0:
                told = _SharedCount(progress_file)
            delivered.append(_stream_on_this_rank(path, replace(options, device=device), told))
    except BaseException as exc:  # noqa: BLE001 - every failure of a rank ends the run, promptly
        _end_the_run(parent, exc)
    dist.destroy_process_group()
    return delivered


def _end_the_run(parent: int, exc: BaseException) -> NoReturn:
    """A rank that failed (a crash, or a broadcast that timed out because a peer hung or was stopped)
    ends the run now. The launcher would send the other ranks SIGTERM and wait 30 s for them (its
    default, whatever its shutdown_timeout), and a stopped or hung rank never answers SIGTERM; so the
    failing rank kills its siblings itself, records why for the launcher, and exits without the
    teardown that could block on them."""
    from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

    for pid in _sibling_ranks(parent):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        ErrorHandler().record_exception(exc)
    sys.stderr.flush()
    os._exit(1)


def _sibling_ranks(parent: int) -> list[int]:
    """The other rank processes the launcher started (children of `parent` running spawn_main)."""
    me, found = os.getpid(), []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    spawned = b"spawn_main" in f.read()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == parent and spawned:
                found.append(int(entry))
    return found


def _init_group(device: str, timeout_s: int) -> None:
    import torch
    import torch.distributed as dist

    if device.startswith("cuda"):
        torch.cuda.set_device(device)
        # The streamer's NCCL barriers run on the current device (set above); torch warns that it
        # guessed. Muted rather than passing device_id, which the two-GPU runs here did not exercise.
        warnings.filterwarnings("ignore", message=r"barrier\(\): using the device under current context")
    dist.init_process_group(backend_for(device), timeout=timedelta(seconds=timeout_s))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_environment(timeout_s: int) -> dict[str, str]:
    return {"RUNAI_STREAMER_DIST_TIMEOUT": str(timeout_s), "RUNAI_STREAMER_DIST": "1"}


def run_ranks(
    path: str,
    options: CheckOptions,
    nproc: int,
    timeout_s: int = DEFAULT_TIMEOUT_S,
    progress: Progress | None = None,
) -> dict[int, Delivered]:
    """Launch `nproc` local ranks with torch's elastic launcher; return what each delivered."""
    return run_ranks_for_each(path, [options], nproc, timeout_s, progress)[0]


def run_ranks_for_each(
    path: str,
    runs: list[CheckOptions],
    nproc: int,
    timeout_s: int = DEFAULT_TIMEOUT_S,
    progress: Progress | None = None,
) -> list[dict[int, Delivered]]:
    """Launch `nproc` local ranks once; every rank streams once per entry of `runs`, in order.
    Returns, per run, what each rank delivered; `progress` hears rank 0's candidate bytes as they go."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if not os.environ.get("NEMOVERIFY_DEBUG"):
        # The agent logs each failure with its own traceback; our one error message says it better.
        for name in ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing"):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)

    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"nemoverify-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d",
        rdzv_endpoint=f"127.0.0.1:{_free_port()}",
        rdzv_timeout=timeout_s,
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    if "shutdown_timeout" in {f.name for f in dataclasses.fields(LaunchConfig)}:  # torch 2.13 has it
        # A rank stopped or hung in native code ignores SIGTERM: the bound after --rank-timeout is this.
        config.shutdown_timeout = SHUTDOWN_GRACE_S
    try:
        with (
            environment(_rank_environment(timeout_s)),  # inherited by the ranks
            _ranks_deaf_to_ctrl_c_from_birth(),
            _ranks_progress(progress) as progress_file,
        ):
            results = elastic_launch(config, _rank_main)(path, runs, timeout_s, os.getpid(), progress_file)
    except SignalException as exc:  # Ctrl-C (or SIGTERM) reached the launcher, which stopped the ranks
        if exc.sigval == signal.SIGINT:
            raise KeyboardInterrupt from None
        raise DistributedError(f"{path}: stopped by {exc.sigval.name}") from None
    except ChildFailedError as exc:
        # The rank that failed first kills its siblings (SIGKILL, no message): report the one that says why.
        explained = [(r, f) for r, f in exc.failures.items() if f.error_file and os.path.exists(f.error_file)]
        rank, failure = min(explained, key=lambda rf: rf[1].timestamp) if explained else exc.get_first_failure()
        why = failure.message if isinstance(failure.message, str) else failure.message.get("message", "")
        raise DistributedError(
            f"{path}: rank {rank} of {nproc} failed (exit code {failure.exitcode}): {str(why).strip().splitlines()[-1] if why else 'no message'}"
        ) from None
    except Exception as exc:  # rendezvous errors, timeouts
        raise DistributedError(f"{path}: the distributed run failed: {exc}") from None
    return [{rank: results[rank][i] for rank in sorted(results)} for i in range(len(runs))]


def run_under_torchrun(
    path: str, options: CheckOptions, timeout_s: int = DEFAULT_TIMEOUT_S
) -> tuple[int, int, dict[int, Delivered] | None]:
    """In a process started by torchrun: stream on this rank, gather every rank's results on rank 0.
    Returns (rank, world_size, {rank: delivered} on rank 0 else None)."""
    import torch.distributed as dist

    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise DistributedError("--distributed needs the environment torchrun sets (RANK, WORLD_SIZE, MASTER_ADDR)")
    options = replace(options, device=_rank_device(options.device))
    _init_group(options.device, timeout_s)
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        with environment(_rank_environment(timeout_s)):  # read by the streamer when it streams
            mine = _stream_on_this_rank(path, options)
        gathered: list[Delivered | None] | None = [None] * world if rank == 0 else None
        # gather_object goes through the default group; over NCCL it needs this rank's device set (done above).
        dist.gather_object(mine, gathered, dst=0)
        if gathered is None:
            return rank, world, None
        return rank, world, {r: d for r, d in enumerate(gathered) if d is not None}
    finally:
        dist.destroy_process_group()
