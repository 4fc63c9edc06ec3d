"""The verbs, as a Python program calls them: `check`, `verify`, `manifest`, `inspect`, `matrix`.

Each takes the same inputs as the command of its name and makes the same run (the CLI is a thin
caller of these: it parses, calls, renders and picks the exit code). A mismatch is a report, never
an exception; `NemoverifyError` subclasses say why no trustworthy verdict was possible
(`InvalidCheckpoint` with every problem, `UsageError` for contradictory options, ...).

`watch`, where taken, is how a caller sees progress: it is called once with the phases and their
byte totals and returns a context manager that yields `progress(phase, nbytes)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from nemoverify.errors import UsageError
from nemoverify.gc_pause import cycle_collection_paused
from nemoverify.progress import Progress, no_progress

if TYPE_CHECKING:
    from nemoverify.checkpoint.problems import Problem
    from nemoverify.deployment.options import CheckOptions, Loader
    from nemoverify.deployment.profiles import LoadPath
    from nemoverify.engine.inventory import Inventory
    from nemoverify.engine.manifests import Manifest
    from nemoverify.engine.matrix import Matrix
    from nemoverify.report import Report

Watch = Callable[[dict[str, int]], AbstractContextManager[Progress]]


def _watching(watch: Watch | None, phases: dict[str, int]) -> AbstractContextManager[Progress]:
    return watch(phases) if watch is not None else contextlib.nullcontext(no_progress)


def check(
    path: str,
    *,
    manifest: str | None = None,
    against: str | None = None,
    vllm: str = "auto",
    streamer: str | None = None,
    stress: bool = False,
    strategy: LoadPath | None = None,
    loader: Loader = "runai",
    memory_limit: int | None = None,
    concurrency: int | None = None,
    text_only: bool = False,
    algorithm: str | None = None,
    strict: bool = False,
    fail_on_unclaimed: bool = False,
    device: str = "cpu",
    model_loader_extra_config: str | None = None,
    nproc: int = 1,
    distributed: bool = False,
    rank_timeout: int = 300,
    max_bytes: int | None = None,
    watch: Watch | None = None,
) -> Report | None:
    """Load `path` as the stored bytes and through the deployment's load path; compare every tensor.
    With `distributed` (a process torchrun started) only rank 0 gets the report; the others None."""
    from nemoverify.deployment.options import resolve_check
    from nemoverify.engine.manifests import load_manifest

    recorded = load_manifest(manifest) if manifest else None
    options = resolve_check(
        loader=loader,
        vllm=vllm,
        streamer=streamer,
        stress=stress,
        strategy=strategy,
        memory_limit=memory_limit,
        concurrency=concurrency,
        text_only=text_only,
        algorithm=algorithm,
        manifest_algorithm=recorded.algorithm if recorded else None,
        strict=strict,
        fail_on_unclaimed=fail_on_unclaimed,
        device=device,
        extra_config=model_loader_extra_config,
        nproc=nproc,
        distributed=distributed,
    )
    return run_check(path, options, recorded, manifest, against, nproc, distributed, rank_timeout, max_bytes, watch)


@cycle_collection_paused()  # each run keeps an object per tensor: see gc_pause
def run_check(
    path: str,
    options: CheckOptions,
    recorded: Manifest | None = None,
    manifest: str | None = None,
    against: str | None = None,
    nproc: int = 1,
    distributed: bool = False,
    rank_timeout: int = 300,
    max_bytes: int | None = None,
    watch: Watch | None = None,
) -> Report | None:
    """`check` with its options already resolved (`options.resolve_check`) and its manifest, if any,
    already read (`recorded`, from the file `manifest`, which reports name)."""
    from nemoverify.checkpoint.layout import refuse_beyond
    from nemoverify.engine import ranks as dist_run
    from nemoverify.engine.check import check as check_passes
    from nemoverify.model.checks import open_for_vllm

    checkpoint = open_for_vllm(path)
    if max_bytes is not None:  # before any rank or pass starts
        refuse_beyond(checkpoint, max_bytes)
    _require_gpus(options.device, nproc)
    ranks = None
    streamed_path = against or path
    if distributed:
        _, _, gathered = dist_run.run_under_torchrun(streamed_path, options, rank_timeout)
        if gathered is None:
            return None  # rank 0 carries the verdict
        ranks = lambda: gathered  # noqa: E731
    elif nproc > 1:
        ranks = lambda: dist_run.run_ranks(streamed_path, options, nproc, rank_timeout)  # noqa: E731
    if recorded is None:
        checkpoint.require_valid(options.strict)
    copy = open_for_vllm(against) if against else None
    total = checkpoint.total_bytes
    phases = {"reference": total, "candidate": total} | ({"manifest": total} if recorded else {})
    with _watching(watch, phases) as progress:
        return check_passes(checkpoint, options, progress, recorded, manifest, ranks, copy)


def _require_gpus(device: str, nproc: int) -> None:
    if not device.startswith("cuda"):
        return
    import torch

    wanted = int(device.partition(":")[2] or 0) + 1 if nproc == 1 else nproc
    if not torch.cuda.is_available() or torch.cuda.device_count() < wanted:
        raise UsageError(
            f"--device {device}: needs {wanted} CUDA device(s), this machine has {torch.cuda.device_count()}"
        )


@cycle_collection_paused()  # each run keeps an object per tensor: see gc_pause
def verify(
    path: str, manifest: str, *, strict: bool = False, max_bytes: int | None = None, watch: Watch | None = None
) -> Report:
    """Only the stored bytes against a manifest, as fast as the disk allows (no load path replayed)."""
    from nemoverify.checkpoint.layout import refuse_beyond
    from nemoverify.engine.check import verify_manifest
    from nemoverify.engine.manifests import load_manifest
    from nemoverify.model.checks import open_for_vllm

    recorded = load_manifest(manifest)
    checkpoint = open_for_vllm(path)
    refuse_beyond(checkpoint, max_bytes)
    with _watching(watch, {"manifest": checkpoint.total_bytes}) as progress:
        return verify_manifest(checkpoint, recorded, manifest, progress, strict)


@cycle_collection_paused()  # each run keeps an object per tensor: see gc_pause
def manifest(
    path: str,
    *,
    algorithm: str = "blake3",
    strict: bool = False,
    max_bytes: int | None = None,
    watch: Watch | None = None,
    warn: Callable[[Problem], None] | None = None,
) -> Manifest:
    """One digest per tensor, recorded from the stored bytes (write it with `.to_json()`). `warn`
    hears each warning about the checkpoint (a recorded checkpoint may still be one to look at)."""
    from nemoverify.checkpoint.layout import refuse_beyond
    from nemoverify.engine.manifests import build_manifest
    from nemoverify.model.checks import open_for_vllm

    if algorithm == "lin128":
        raise UsageError("lin128 is not for manifests: it compares loaders, it does not guard bytes")
    checkpoint = open_for_vllm(path)
    checkpoint.require_valid(strict)
    refuse_beyond(checkpoint, max_bytes)
    for problem in checkpoint.problems:
        if problem.severity == "warning" and warn is not None:
            warn(problem)
    with _watching(watch, {"manifest": checkpoint.total_bytes}) as progress:
        return build_manifest(checkpoint, algorithm, progress)


@cycle_collection_paused()  # each run keeps an object per tensor: see gc_pause
def inspect(path: str) -> Inventory:
    """What the checkpoint holds, from its headers alone, and every structural problem."""
    from nemoverify.engine.inventory import describe
    from nemoverify.model.checks import open_for_vllm

    return describe(open_for_vllm(path))


def matrix(
    path: str,
    *,
    nproc: int = 2,
    device: str = "cpu",
    model_loader_extra_config: str | None = None,
    algorithm: str | None = None,
    strict: bool = False,
    rank_timeout: int = 300,
    watch: Watch | None = None,
) -> Matrix:
    """`path` against every deployment profile nemoverify knows (distributed rows on `nproc` ranks)."""
    base = matrix_options(nproc, device, model_loader_extra_config, algorithm, strict)
    return run_matrix(path, base, nproc, rank_timeout, watch)


def matrix_options(
    nproc: int, device: str, model_loader_extra_config: str | None, algorithm: str | None, strict: bool
) -> CheckOptions:
    """What every row of a matrix shares (its rows stream both ways: the loader config's
    `distributed` chooses nothing there). Raises UsageError."""
    from nemoverify.deployment.options import resolve_check

    return resolve_check(
        algorithm=algorithm,
        strict=strict,
        device=device,
        extra_config=model_loader_extra_config,
        nproc=nproc,
        all_modes=True,
    )


@cycle_collection_paused()  # each run keeps an object per tensor: see gc_pause
def run_matrix(
    path: str, base: CheckOptions, nproc: int = 2, rank_timeout: int = 300, watch: Watch | None = None
) -> Matrix:
    """`matrix` with its base options already resolved."""
    from nemoverify.engine import ranks as dist_run
    from nemoverify.engine.matrix import matrix_profiles
    from nemoverify.engine.matrix import run_matrix as run_all
    from nemoverify.model.checks import open_for_vllm

    checkpoint = open_for_vllm(path)
    checkpoint.require_valid(base.strict)
    _require_gpus(base.device, nproc if nproc > 1 else 1)
    runs = None
    if nproc > 1:
        runs = lambda todo: dist_run.run_ranks_for_each(path, todo, nproc, rank_timeout)  # noqa: E731
    total = checkpoint.total_bytes
    with _watching(watch, {"reference": total, "candidate": total * len(matrix_profiles(base))}) as progress:
        return run_all(checkpoint, base, nproc, progress, runs)
