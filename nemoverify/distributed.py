"""Distributed streaming: every rank streams with `is_distributed=True`, replays the load path, and
hashes what it received; rank results are gathered into one report.

`run_ranks` launches N local processes with torch's elastic launcher (gloo on the CPU, NCCL for
CUDA devices). `run_under_torchrun` is for processes a user started with `torchrun ... --distributed`
(multi-node runs). A rank that crashes ends the whole run (the elastic agent stops the others); a
rank that hangs is bounded by the process-group timeout, which also bounds the streamer's
broadcasts (RUNAI_STREAMER_DIST_TIMEOUT).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
import warnings
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

from nemoverify.compare import Delivered
from nemoverify.errors import DistributedError
from nemoverify.loaders.runai import environment

if TYPE_CHECKING:
    from nemoverify.options import CheckOptions

DEFAULT_TIMEOUT_S = 300


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def _rank_device(device: str) -> str:
    if device == "cuda":
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def _stream_on_this_rank(path: str, options: CheckOptions) -> Delivered:
    """The body of every rank: open the checkpoint, stream distributed, replay, hash."""
    from nemoverify.checkpoint.layout import open_checkpoint
    from nemoverify.verify import candidate_pass

    checkpoint = open_checkpoint(path)
    checkpoint.require_valid(options.strict)
    return candidate_pass(checkpoint, options, distributed=True)


def _rank_main(path: str, runs: list[CheckOptions], timeout_s: int) -> list[Delivered]:
    """One rank: stream the checkpoint once per run (one per profile, for the matrix), in one group."""
    import torch.distributed as dist

    device = _rank_device(runs[0].device)
    _init_group(device, timeout_s)
    try:
        return [_stream_on_this_rank(path, replace(options, device=device)) for options in runs]
    finally:
        dist.destroy_process_group()


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


def run_ranks(path: str, options: CheckOptions, nproc: int, timeout_s: int = DEFAULT_TIMEOUT_S) -> dict[int, Delivered]:
    """Launch `nproc` local ranks with torch's elastic launcher; return what each delivered."""
    return run_ranks_for_each(path, [options], nproc, timeout_s)[0]


def run_ranks_for_each(
    path: str, runs: list[CheckOptions], nproc: int, timeout_s: int = DEFAULT_TIMEOUT_S
) -> list[dict[int, Delivered]]:
    """Launch `nproc` local ranks once; every rank streams once per entry of `runs`, in order.
    Returns, per run, what each rank delivered."""
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
    try:
        with environment(_rank_environment(timeout_s)):  # inherited by the spawned ranks
            results = elastic_launch(config, _rank_main)(path, runs, timeout_s)
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
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
