"""`matrix`: one checkpoint against every deployment profile nemoverify knows.

Each vLLM release row, with streamer 0.16 behaviour (views into reused buffers) and 0.17 behaviour
(owned tensors), non-distributed and distributed, as deployed and under stress. The reference pass
runs once; the non-distributed candidates stream in this process, the distributed ones in one launch
of ranks that streams once per profile. The answer a team needs before an upgrade or a rollback:
which of our deployments is exposed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from nemoverify import _version
from nemoverify.checkpoint.layout import Checkpoint
from nemoverify.checkpoint.problems import InvalidCheckpoint, Problem
from nemoverify.deployment.options import CheckOptions
from nemoverify.deployment.profiles import VLLM_RELEASES, Profile, StreamerRelease, VllmRelease, streamer_release
from nemoverify.engine.check import routed_as
from nemoverify.engine.compare import find_differences
from nemoverify.engine.passes import candidate_pass
from nemoverify.model.checks import routes_here
from nemoverify.model.routing import COMPONENTS
from nemoverify.observations import Delivered, Observation
from nemoverify.progress import Progress
from nemoverify.readers.stored_bytes import hash_checkpoint
from nemoverify.report import problems_of

MATRIX_VERSION = 1
MATRIX_STREAMERS = ("0.16", "0.17")  # 0.15 behaves as 0.16 (no `owned`: views into reused buffers)


@dataclass(frozen=True)
class Cell:
    """One deployment's outcome: a vLLM release, a streamer release, distributed or not, one mode."""

    vllm: VllmRelease
    streamer: StreamerRelease
    distributed: bool
    stress: bool
    supported: bool  # False: this vLLM release does not route the checkpoint's architecture here
    corrupted: dict[str, int]  # component -> tensors that did not arrive intact (on any rank)
    failed_ranks: tuple[int, ...] = ()
    emulated: bool = False
    raises: dict[str, int] = field(default_factory=dict)  # component -> tensors vLLM raises on: no load at all

    @property
    def safe(self) -> bool:
        return self.supported and not self.corrupted and not self.raises

    @property
    def total(self) -> int:
        return sum(self.corrupted.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "vllm": self.vllm.name,
            "streamer": self.streamer.name,
            "distributed": self.distributed,
            "mode": "stress" if self.stress else "deployed",
            "supported": self.supported,
            "safe": self.safe,
            "corrupted": self.total,
            "components": self.corrupted,
            "load_errors": sum(self.raises.values()),
            "load_error_components": self.raises,
            "failed_ranks": list(self.failed_ranks),
            "emulated": self.emulated,
        }


@dataclass(frozen=True)
class Matrix:
    checkpoint: str
    algorithm: str
    nproc: int  # ranks of the distributed rows; 0 when they were not run
    device: str
    cells: tuple[Cell, ...]
    tensors: int
    elapsed_s: float
    warnings: tuple[Problem, ...] = ()  # the checkpoint's, as check reports them

    @property
    def exposed(self) -> tuple[Cell, ...]:
        """Deployments that corrupt tensors as deployed: the ones to act on."""
        return tuple(c for c in self.cells if not c.stress and c.supported and c.corrupted)

    @property
    def fails_to_load(self) -> tuple[Cell, ...]:
        """Deployments whose vLLM raises on a tensor as deployed: loud, not silent, but no model."""
        return tuple(c for c in self.cells if not c.stress and c.supported and c.raises)

    @property
    def ok(self) -> bool:
        return not self.exposed and not self.fails_to_load

    def to_dict(self) -> dict[str, object]:

        return {
            "matrix_version": MATRIX_VERSION,
            "tool": {"name": "nemoverify", "version": _version.__version__},
            "ok": self.ok,
            "checkpoint": self.checkpoint,
            "algorithm": self.algorithm,
            "tensors": self.tensors,
            "nproc": self.nproc,
            "device": self.device,
            "elapsed_s": round(self.elapsed_s, 3),
            "cells": [c.to_dict() for c in self.cells],
            "exposed": [c.to_dict() for c in self.exposed],
            "fails_to_load": [c.to_dict() for c in self.fails_to_load],
            "warnings": [w.to_dict() for w in self.warnings],
        }


def matrix_without_verdict(
    checkpoint: str, base: CheckOptions, nproc: int, elapsed_s: float, error: BaseException
) -> dict[str, object]:
    """The JSON of a matrix that `error` ended before any verdict (exit 3, or 4 for a crash): the
    keys of `Matrix.to_dict`, no cells, plus `status` and the problems that stopped it, as a check
    report has them."""

    status, problems = problems_of(error, checkpoint)
    empty = Matrix(checkpoint, base.algorithm, nproc if nproc > 1 else 0, base.device, (), 0, elapsed_s)
    return empty.to_dict() | {"ok": False, "status": status, "problems": [p.to_dict() for p in problems]}


def matrix_profiles(base: CheckOptions) -> list[CheckOptions]:
    """Every (vLLM release, streamer behaviour, mode) as the options of one check."""
    installed = base.profile.installed_streamer
    out = []
    for release in VLLM_RELEASES:
        for name in MATRIX_STREAMERS:
            for stress in (False, True):
                profile = Profile(release, streamer_release(name), stress, "matrix", installed)
                out.append(replace(base, profile=profile))
    return out


def _cell(
    options: CheckOptions,
    checkpoint: Checkpoint,
    reference: dict[str, Observation],
    delivered: dict[int, Delivered] | None,
    distributed: bool,
) -> Cell:
    profile = options.profile
    supported = routes_here(profile.vllm, checkpoint)
    corrupted: dict[str, set[str]] = {}
    raised: dict[str, set[str]] = {}  # a load-error is vLLM refusing the name, not a corrupted tensor
    failed_ranks: list[int] = []
    expected = routed_as(reference, options, checkpoint)  # the release's routing, the same for every rank
    for rank, got in sorted((delivered or {}).items()):
        findings = find_differences(expected, got, rank=rank)
        if findings:
            failed_ranks.append(rank)
        for f in findings:
            (raised if f.kind == "load-error" else corrupted).setdefault(f.component, set()).add(f.name)
    if raised:
        # vLLM raises and no model is served: what the replay saw of the other tensors is moot (the
        # pre-fix path raises in its routing loop, before any retained list is loaded).
        corrupted = {}
    return Cell(
        profile.vllm,
        profile.streamer,
        distributed,
        profile.stress,
        supported,
        {c: len(corrupted[c]) for c in COMPONENTS if c in corrupted},
        tuple(failed_ranks) if distributed else (),
        profile.emulated,
        {c: len(raised[c]) for c in COMPONENTS if c in raised},
    )


def run_matrix(
    checkpoint: Checkpoint,
    base: CheckOptions,
    nproc: int = 2,
    progress: Progress | None = None,
    distributed_runs: Callable[[list[CheckOptions]], list[dict[int, Delivered]]] | None = None,
) -> Matrix:
    """The checkpoint against every profile. `distributed_runs` streams a list of profiles across
    ranks (None: the distributed rows are not run)."""
    started = time.monotonic()
    if not any(routes_here(release, checkpoint) for release in VLLM_RELEASES):
        # No row would stream a byte: "no deployment corrupts it" would be a verdict on nothing.
        raise InvalidCheckpoint(
            checkpoint.root,
            [
                replace(p, severity="error", message=f"{p.message}; so no deployment profile applies to it")
                for p in checkpoint.problems
                if p.rule == "config-architecture"
            ],
        )
    progress = progress or (lambda phase, n: None)
    reference = hash_checkpoint(checkpoint, base.algorithm, progress, phase="reference").observations
    runs = matrix_profiles(base)
    cells: list[Cell] = []
    for options in runs:
        if not routes_here(options.profile.vllm, checkpoint):
            cells.append(_cell(options, checkpoint, reference, None, False))
            continue
        got = candidate_pass(checkpoint, options, progress)
        cells.append(_cell(options, checkpoint, reference, {0: got}, False))
    if distributed_runs is not None:
        streamed = [o for o in runs if routes_here(o.profile.vllm, checkpoint)]
        results = dict(zip(streamed, distributed_runs(streamed), strict=True)) if streamed else {}
        for options in runs:
            cells.append(_cell(options, checkpoint, reference, results.get(options), True))
    return Matrix(
        checkpoint.root,
        base.algorithm,
        nproc if distributed_runs is not None else 0,
        base.device,
        tuple(cells),
        checkpoint.tensor_count,
        time.monotonic() - started,
        tuple(p for p in checkpoint.problems if p.severity == "warning"),
    )
