"""The verbs, as a Python program calls them: `check`, `verify`, `manifest`, `inspect`, `matrix`.

Each takes the inputs of the command of its name, builds one `Request` from them and makes the run
the command makes (the CLI builds the same request and calls `run_check`, `run_verify`, ...). The
policy lives here, once: what `--strict` refuses, what a manifest explains, the bounds. A mismatch
is a report, never an exception; `NemoverifyError` subclasses say why no trustworthy verdict was
possible (`InvalidCheckpoint` with every problem, `UsageError` for contradictory options, ...).

`watch`, where taken, is how a caller sees progress: it is called once with the phases and their
byte totals and returns a context manager that yields `progress(phase, nbytes)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING

from nemoverify.checkpoint.layout import Checkpoint, one_file_of_many, refuse_beyond
from nemoverify.checkpoint.limits import DEFAULT_MAX_TENSORS
from nemoverify.checkpoint.problems import InvalidCheckpoint, Problem
from nemoverify.deployment.options import CheckOptions, resolve_check
from nemoverify.deployment.releases import LoadPath
from nemoverify.deployment.request import DEFAULT_RANK_TIMEOUT_S, Loader, Request
from nemoverify.engine.check import check_load, verify_manifest
from nemoverify.errors import UsageError
from nemoverify.gc_pause import cycle_collection_paused
from nemoverify.model.checks import open_for_vllm, release_problems
from nemoverify.observations import Delivered
from nemoverify.progress import Progress, no_progress
from nemoverify.report import Report

if TYPE_CHECKING:  # `inspect`, `matrix` and the manifest code are imported where used: `check` need not pay for them
    from nemoverify.engine.inventory import Inventory
    from nemoverify.engine.manifests import Manifest
    from nemoverify.engine.matrix import Matrix

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
    rank_timeout: int = DEFAULT_RANK_TIMEOUT_S,
    max_bytes: int | None = None,
    max_tensors: int | None = DEFAULT_MAX_TENSORS,
    file_alone: bool = False,
    watch: Watch | None = None,
) -> Report | None:
    """Load `path` as the stored bytes and through the deployment's load path; compare every tensor.
    With `distributed` (a process torchrun started) only rank 0 gets the report; the others None."""
    request = Request(
        path,
        file_alone,
        manifest=manifest,
        against=against,
        vllm=vllm,
        streamer=streamer,
        stress=stress,
        strategy=strategy,
        loader=loader,
        memory_limit=memory_limit,
        concurrency=concurrency,
        text_only=text_only,
        model_loader_extra_config=model_loader_extra_config,
        nproc=nproc,
        distributed=distributed,
        device=device,
        algorithm=algorithm,
        strict=strict,
        fail_on_unclaimed=fail_on_unclaimed,
        max_bytes=max_bytes,
        max_tensors=max_tensors,
        rank_timeout=rank_timeout,
    )
    return run_check(request, watch)


@cycle_collection_paused()  # each run keeps an object per tensor: see gc_pause
def run_check(request: Request, watch: Watch | None = None) -> Report | None:
    """`check` of a request."""
    recorded = None
    if request.manifest:  # a run without one never imports the manifest code
        from nemoverify.engine.manifests import load_manifest

        recorded = load_manifest(request.manifest)
    options = resolve_check(request, manifest_algorithm=recorded.algorithm if recorded else None)
    checkpoint = _open(request.path, request.file_alone, request.max_tensors)
    refuse_beyond(checkpoint, request.max_bytes)  # before any rank or pass starts
    _require_gpus(options.device, request.nproc)
    if recorded is not None and checkpoint.errors(options.strict):
        # A damaged shard the manifest explains (wrong size, missing) is a failed verification.
        with _watching(watch, {"manifest": checkpoint.total_bytes}) as progress:
            return verify_manifest(checkpoint, recorded, request.manifest, progress, options.strict)
    admit(checkpoint, options, replayed=request.against is None)
    copy = _open(request.against, request.file_alone, request.max_tensors) if request.against else None
    if copy is not None:
        refuse_beyond(copy, request.max_bytes)
        admit(copy, options)
    streamed = request.against or request.path
    gathered: Callable[[Progress], dict[int, Delivered]] | None = None
    if request.distributed:  # the rank machinery is imported by the runs of several processes only
        from nemoverify.engine import ranks

        _, _, mine = ranks.run_under_torchrun(streamed, options, request.rank_timeout)
        if mine is None:
            return None  # rank 0 carries the verdict
        gathered = lambda progress: mine  # noqa: E731
    elif request.nproc > 1:
        from nemoverify.engine import ranks

        nproc, timeout = request.nproc, request.rank_timeout
        gathered = lambda progress: ranks.run_ranks(streamed, options, nproc, timeout, progress)  # noqa: E731
    total = checkpoint.total_bytes
    phases = {"reference": total, "candidate": total} | ({"manifest": total} if recorded else {})
    with _watching(watch, phases) as progress:
        return check_load(checkpoint, options, progress, recorded, request.manifest, gathered, copy)


def _open(path: str, file_alone: bool = False, max_tensors: int | None = DEFAULT_MAX_TENSORS) -> Checkpoint:
    """The checkpoint at `path` as vLLM would see it; one .safetensors file of a directory holding
    others is refused (vLLM loads the directory) unless it is asked for `file_alone`; past
    `max_tensors`, headers are refused before they are parsed."""
    if not file_alone and (problem := one_file_of_many(path)) is not None:
        raise InvalidCheckpoint(path, [problem])
    return open_for_vllm(path, max_tensors)


def admit(checkpoint: Checkpoint, options: CheckOptions, replayed: bool = True) -> None:
    """What refuses a checkpoint before any pass reads it: its errors; under --strict its warnings
    too, and, where its load is `replayed`, those of the release (it would refuse the model before
    loading a weight)."""
    errors = checkpoint.errors(options.strict)
    if options.strict and options.loader == "runai" and replayed:
        errors += [replace(p, severity="error") for p in release_problems(checkpoint, options.profile.vllm)]
    if errors:
        raise InvalidCheckpoint(checkpoint.root, errors)


def _require_gpus(device: str, nproc: int) -> None:
    if not device.startswith("cuda"):
        return
    import torch

    wanted = int(device.partition(":")[2] or 0) + 1 if nproc == 1 else nproc
    if not torch.cuda.is_available() or torch.cuda.device_count() < wanted:
        raise UsageError(f"--device {device}: needs {wanted} CUDA device(s), this machine has {torch.cuda.device_count()}")


def verify(
    path: str,
    manifest: str,
    *,
    strict: bool = False,
    max_bytes: int | None = None,
    max_tensors: int | None = DEFAULT_MAX_TENSORS,
    file_alone: bool = False,
    watch: Watch | None = None,
) -> Report:
    """Only the stored bytes against a manifest, as fast as the disk allows (no load path replayed)."""
    request = Request(path, file_alone, manifest=manifest, strict=strict, max_bytes=max_bytes, max_tensors=max_tensors)
    return run_verify(request, watch)


@cycle_collection_paused()  # each run keeps an object per tensor: see gc_pause
def run_verify(request: Request, watch: Watch | None = None) -> Report:
    """`verify` of a request (its manifest is required)."""
    if request.manifest is None:
        raise UsageError("verify needs a manifest")
    from nemoverify.engine.manifests import load_manifest

    recorded = load_manifest(request.manifest)
    checkpoint = _open(request.path, request.file_alone, request.max_tensors)
    refuse_beyond(checkpoint, request.max_bytes)
    with _watching(watch, {"manifest": checkpoint.total_bytes}) as progress:
        return verify_manifest(checkpoint, recorded, request.manifest, progress, request.strict)


@cycle_collection_paused()  # each run keeps an object per tensor: see gc_pause
def manifest(
    path: str,
    *,
    algorithm: str = "blake3",
    strict: bool = False,
    max_bytes: int | None = None,
    max_tensors: int | None = DEFAULT_MAX_TENSORS,
    file_alone: bool = False,
    watch: Watch | None = None,
    warn: Callable[[Problem], None] | None = None,
) -> Manifest:
    """One digest per tensor, recorded from the stored bytes (write it with `.to_json()`). `warn`
    hears each warning about the checkpoint (a recorded checkpoint may still be one to look at)."""
    if algorithm == "lin128":
        raise UsageError("lin128 is not for manifests: it compares loaders, it does not guard bytes")
    checkpoint = _open(path, file_alone, max_tensors)
    refuse_beyond(checkpoint, max_bytes)
    checkpoint.require_valid(strict)
    for problem in checkpoint.problems:
        if problem.severity == "warning" and warn is not None:
            warn(problem)
    from nemoverify.engine.manifests import build_manifest

    with _watching(watch, {"manifest": checkpoint.total_bytes}) as progress:
        return build_manifest(checkpoint, algorithm, progress)


@cycle_collection_paused()  # each run keeps an object per tensor: see gc_pause
def inspect(
    path: str, *, strict: bool = False, file_alone: bool = False, max_tensors: int | None = DEFAULT_MAX_TENSORS
) -> Inventory:
    """What the checkpoint holds, from its headers alone, and every structural problem (under
    `strict`, every warning is reported as the error it then is)."""
    from nemoverify.engine.inventory import describe

    inventory = describe(_open(path, file_alone, max_tensors))
    if not strict:
        return inventory
    return replace(inventory, problems=tuple(replace(p, severity="error") for p in inventory.problems))


def matrix(
    path: str,
    *,
    vllm: str = "auto",
    streamer: str | None = None,
    nproc: int = 2,
    device: str = "cpu",
    model_loader_extra_config: str | None = None,
    algorithm: str | None = None,
    strict: bool = False,
    rank_timeout: int = DEFAULT_RANK_TIMEOUT_S,
    max_tensors: int | None = DEFAULT_MAX_TENSORS,
    file_alone: bool = False,
    watch: Watch | None = None,
) -> Matrix:
    """`path` against every deployment profile nemoverify knows (distributed rows on `nproc` ranks), or
those of one vLLM release (`vllm`) or streamer release (`streamer`)."""
    request = Request(
        path,
        file_alone,
        vllm=vllm,
        streamer=streamer,
        nproc=nproc,
        device=device,
        model_loader_extra_config=model_loader_extra_config,
        algorithm=algorithm,
        strict=strict,
        rank_timeout=rank_timeout,
        max_tensors=max_tensors,
    )
    return run_matrix(request, matrix_options(request), watch)


def matrix_options(request: Request) -> CheckOptions:
    """What every row of a matrix shares (its rows stream both ways: the loader config's
    `distributed` chooses nothing there). Raises UsageError."""
    return resolve_check(request, all_modes=True)


@cycle_collection_paused()  # each run keeps an object per tensor: see gc_pause
def run_matrix(request: Request, base: CheckOptions, watch: Watch | None = None) -> Matrix:
    """`matrix` of a request whose shared options are resolved (`matrix_options`)."""
    checkpoint = _open(request.path, request.file_alone, request.max_tensors)
    checkpoint.require_valid(base.strict)
    from nemoverify.engine.matrix import Rows, unique_replays
    from nemoverify.engine.matrix import run_matrix as run_every_profile

    rows = Rows.only(request.vllm, request.streamer)
    nproc = request.nproc
    _require_gpus(base.device, nproc)
    runs = None
    if nproc > 1:
        from nemoverify.engine import ranks

        runs = lambda todo, progress: ranks.run_ranks_for_each(request.path, todo, nproc, request.rank_timeout, progress)  # noqa: E731
    total = checkpoint.total_bytes
    streams = unique_replays(base, checkpoint, rows) * (2 if nproc > 1 else 1)  # the distributed rows stream again
    with _watching(watch, {"reference": total, "candidate": total * streams, "profiles": streams}) as progress:
        return run_every_profile(checkpoint, base, nproc, progress, runs, request.model_loader_extra_config, rows)
