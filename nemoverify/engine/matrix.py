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
from nemoverify.deployment.options import CheckOptions, ExtraConfigRefused, parse_extra_config
from nemoverify.deployment.profiles import Profile
from nemoverify.deployment.releases import VLLM_RELEASES, StreamerRelease, VllmRelease, streamer_release, vllm_release
from nemoverify.engine.check import files_of, routed_as
from nemoverify.engine.compare import find_differences
from nemoverify.engine.passes import candidate_pass
from nemoverify.model.checks import routes_here
from nemoverify.model.replay import load_rules
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
    refused_config: str | None = None  # why this release's loader refuses the loader config: it never starts

    @property
    def safe(self) -> bool:
        return self.supported and not self.corrupted and not self.raises and self.refused_config is None

    @property
    def fails_to_load(self) -> bool:
        return bool(self.raises) or self.refused_config is not None

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
            "refused_config": self.refused_config,
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
        return tuple(c for c in self.cells if not c.stress and c.supported and c.fails_to_load)

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


@dataclass(frozen=True)
class Rows:
    """Which rows a matrix runs: every vLLM release row and streamer behaviour, or those asked for
    (`matrix --vllm 0.20 --streamer 0.16`)."""

    vllm: tuple[VllmRelease, ...] = VLLM_RELEASES
    streamers: tuple[str, ...] = MATRIX_STREAMERS

    @classmethod
    def only(cls, vllm: str | None = None, streamer: str | None = None) -> Rows:
        """Raises UsageError for a release nemoverify does not know."""
        releases = (vllm_release(vllm),) if vllm not in (None, "auto") else VLLM_RELEASES
        if streamer is None:
            return cls(releases)
        name = streamer_release(streamer).name
        return cls(releases, ("0.16",) if name == "0.15" else (name,))  # 0.15 behaves as 0.16


def matrix_profiles(base: CheckOptions, rows: Rows = Rows()) -> list[CheckOptions]:
    """Every (vLLM release, streamer behaviour, mode) of `rows` as the options of one check."""
    installed = base.profile.installed_streamer
    out = []
    for release in rows.vllm:
        for name in rows.streamers:
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
    refused_config: str | None = None,
) -> Cell:
    profile = options.profile
    supported = routes_here(profile.vllm, checkpoint)
    corrupted: dict[str, set[str]] = {}
    raised: dict[str, set[str]] = {}  # a load-error is vLLM refusing the name, not a corrupted tensor
    failed_ranks: list[int] = []
    expected = routed_as(reference, options, checkpoint)  # the release's routing, the same for every rank
    routing = load_rules(options, checkpoint.config).routing
    for rank, got in sorted((delivered or {}).items()):
        findings = find_differences(expected, got, "reference", rank, routing, files_of(checkpoint))
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
        refused_config,
    )


def run_matrix(
    checkpoint: Checkpoint,
    base: CheckOptions,
    nproc: int = 2,
    progress: Progress | None = None,
    distributed_runs: Callable[[list[CheckOptions], Progress], list[dict[int, Delivered]]] | None = None,
    extra_config: str | None = None,
    rows: Rows = Rows(),
) -> Matrix:
    """The checkpoint against every profile. `distributed_runs` streams a list of profiles across
    ranks (None: the distributed rows are not run). `extra_config`: the deployment's
    --model-loader-extra-config, which each release takes or refuses as its own code does. Rows whose
    replays are the same (the same load rules, streamer behaviour and mode) share one stream."""
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
    runs = matrix_profiles(base, rows)
    refused = {o: _refusal(extra_config, o.profile.vllm) for o in runs}
    streamed = {_replay_key(o, checkpoint): o for o in runs if routes_here(o.profile.vllm, checkpoint) and not refused[o]}
    delivered = {}
    for key, o in streamed.items():
        delivered[key] = candidate_pass(checkpoint, o, progress)
        progress("profiles", 1)
    cells = [_cell(o, checkpoint, reference, _got(delivered, o, checkpoint), False, refused[o]) for o in runs]
    if distributed_runs is not None:
        keys = list(streamed)
        ranked = dict(zip(keys, distributed_runs([streamed[k] for k in keys], progress), strict=True)) if keys else {}
        cells += [_cell(o, checkpoint, reference, ranked.get(_replay_key(o, checkpoint)), True, refused[o]) for o in runs]
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


def unique_replays(base: CheckOptions, checkpoint: Checkpoint, rows: Rows = Rows()) -> int:
    """How many streams a matrix of `checkpoint` makes (per way of streaming): its progress total."""
    return len({_replay_key(o, checkpoint) for o in matrix_profiles(base, rows)})


def _replay_key(options: CheckOptions, checkpoint: Checkpoint) -> tuple[object, ...]:
    """What a candidate pass depends on: rows with equal keys deliver the same tensors."""
    profile = options.profile
    return (load_rules(options, checkpoint.config), profile.streamer.name, profile.stress)


def _got(
    delivered: dict[tuple[object, ...], Delivered], options: CheckOptions, checkpoint: Checkpoint
) -> dict[int, Delivered] | None:
    got = delivered.get(_replay_key(options, checkpoint))
    return None if got is None else {0: got}


def _refusal(extra_config: str | None, release: VllmRelease) -> str | None:
    """Why `release` refuses the loader config at start-up, or None."""
    try:
        parse_extra_config(extra_config, release)
    except ExtraConfigRefused as refusal:
        return str(refusal).removeprefix("--model-loader-extra-config: ")
    return None
