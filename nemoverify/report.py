"""The frozen result of a verification. Renderers (table, JSON, JUnit, SARIF) read only this.

Verification never raises on a mismatch: it returns a Report whose `ok` is False. A run that reaches
no verdict (an invalid checkpoint, a storage error, a failed rank) still leaves a Report, built by
`Report.without_verdict`: its `status` says why and its `problems` say where, so every report a CI
job asked for exists whatever the outcome.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple

from nemoverify import _version
from nemoverify.checkpoint.problems import InvalidCheckpoint, Problem
from nemoverify.errors import ManifestError, NemoverifyError
from nemoverify.redaction import redact

if TYPE_CHECKING:
    from nemoverify.deployment.profiles import Profile

Source = Literal["reference", "manifest"]  # what a finding was found against
FindingKind = Literal[
    "bytes",
    "missing",
    "unexpected",
    "dtype",
    "shape",
    "duplicate",
    "size",
    "load-error",
    "shared-parameter",
    "stray",
    "unclaimed",
]
# What a run concluded: "verified" (exit 0), "failed" (exit 1), or no verdict (exit 3): "invalid" (the
# checkpoint breaks structural rules; `problems` lists them) or "error" (storage, a rank, a manifest
# that cannot be read, a crash; `problems` holds what happened).
Verdict = Literal["verified", "failed", "invalid", "error"]
# 2: adds status, problems, copy, failures (the mismatches, one entry per tensor) and not_checked;
# reports are also written when there is no verdict (exit 3). Every key of version 1 is still there
# with its meaning, so a reader of version 1 that decides on `ok` keeps working.
REPORT_VERSION = 2
STORED_BYTES = "stored bytes"  # the candidate of `verify`, which reads the files and replays nothing


@dataclass(frozen=True)
class Finding:
    """A tensor that did not arrive as the reference has it."""

    name: str
    component: str
    kind: FindingKind
    expected: str | None
    actual: str | None
    against: Source = "reference"
    rank: int | None = None
    file: str | None = None  # the shard that holds the tensor, where known
    detail: str | None = None  # what else a reader needs: which copy the model holds, why vLLM raised

    @property
    def message(self) -> str:
        return self._describe(None)

    @property
    def short_message(self) -> str:
        """For tables: digests cut to 12 characters."""
        return self._describe(12)

    @property
    def what(self) -> str:
        """What is wrong, without where or the digests."""
        return {
            "bytes": "bytes differ from the " + self.against,
            "missing": "never delivered by the candidate loader"
            if self.against == "reference"
            else "in the manifest but not in the checkpoint",
            "unexpected": "delivered but not in the " + self.against,
            "dtype": "dtype differs",
            "shape": "shape differs",
            "duplicate": "delivered more than once",
            "size": "shard size differs from the manifest",
            "load-error": "vLLM fails to load it",
            "shared-parameter": "another name loads into its parameter",
            "stray": "loaded by vLLM from a file outside the index",
            "unclaimed": "unclaimed",
        }[self.kind]

    def _describe(self, cut: int | None) -> str:
        return _describe((self,), cut)


def _cut(value: str | None, kind: str, cut: int | None) -> str | None:
    return value[:cut] if value and cut and kind in ("bytes", "unexpected", "duplicate") else value


def _describe(findings: tuple[Finding, ...], cut: int | None) -> str:
    """What went wrong with one tensor: findings of one kind and source are said once, with the ranks
    they were found on (and each rank's digest where the ranks got different bytes)."""
    groups: dict[tuple[str, str, str | None], list[Finding]] = {}
    for f in findings:
        groups.setdefault((f.kind, f.against, f.detail), []).append(f)
    parts = []
    for (kind, _, more), group in groups.items():
        ranks = sorted({f.rank for f in group if f.rank is not None})
        where = f" on rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}" if ranks else ""
        if kind in ("duplicate", "shared-parameter", "stray", "unclaimed") and more:
            parts.append(f"{more}{where}")
            continue
        if kind == "load-error" and more:
            parts.append(f"{group[0].what}{where}: {more}")
            continue
        exp = _cut(group[0].expected, kind, cut)
        actuals = list(dict.fromkeys(_cut(f.actual, kind, cut) for f in group if f.actual))
        if len(actuals) > 1:
            act: str | None = ", ".join(f"{_cut(f.actual, kind, cut)} on rank {f.rank}" for f in group)
        else:
            act = actuals[0] if actuals else None
        detail = f" (expected {exp}, got {act})" if exp and act else (f" (got {act})" if act else "")
        parts.append(f"{group[0].what}{where}{detail}")
    return "; ".join(parts)


class Failure(NamedTuple):
    """One tensor (or shard file) that failed, once, however many ranks and sources (the reference,
    a manifest) found it: every count nemoverify shows is a count of these."""

    name: str
    component: str
    findings: tuple[Finding, ...]

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.kind for f in self.findings))

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.against for f in self.findings))

    @property
    def ranks(self) -> tuple[int, ...]:
        return tuple(sorted({f.rank for f in self.findings if f.rank is not None}))

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.file for f in self.findings if f.file))

    @property
    def message(self) -> str:
        return _describe(self.findings, None)

    @property
    def short_message(self) -> str:
        """For tables: digests cut to 12 characters."""
        return _describe(self.findings, 12)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "component": self.component,
            "kinds": list(self.kinds),
            "sources": list(self.sources),
            "ranks": list(self.ranks),
            "files": list(self.files),
            "message": self.message,
        }


@dataclass(frozen=True)
class ComponentSummary:
    """The counts and root digests of one component (`routing.COMPONENTS`)."""

    component: str
    tensors: int
    bytes: int
    matched: int
    mismatched: int
    missing: int
    skipped: int
    digest: str  # root digest of the reference's tensors in this component
    candidate_digest: str  # the same over what the candidate delivered

    @property
    def ok(self) -> bool:
        return self.mismatched == 0 and self.missing == 0


@dataclass(frozen=True)
class Skipped:
    """A tensor the replayed model does not load, and why (text-only mode, a name vLLM skips)."""

    name: str
    component: str
    reason: str


@dataclass(frozen=True)
class Report:
    """What one `check` or `verify` found: the verdict, each component, every failure; or, without a
    verdict, why there is none."""

    ok: bool
    algorithm: str
    checkpoint: str
    reference: str
    candidate: str
    strategy: str
    options: dict[str, object]
    components: dict[str, ComponentSummary]
    mismatches: tuple[Finding, ...]
    skipped: tuple[Skipped, ...] = ()
    warnings: tuple[Problem, ...] = ()
    ranks: dict[int, bool] = field(default_factory=dict)  # rank -> every tensor matched there
    manifest: str | None = None
    elapsed_s: float = 0.0
    profile: Profile | None = None  # the deployment replayed; None for `verify` and the safetensors baseline
    problems: tuple[Problem, ...] = ()  # why there is no verdict (with `no_verdict`)
    no_verdict: Literal["invalid", "error"] | None = None
    copy: str | None = None  # --against: the copy that was streamed, PATH being the reference
    cause: str | None = None  # what most likely explains the failures, said before them

    @classmethod
    def without_verdict(
        cls,
        checkpoint: str,
        status: Literal["invalid", "error"],
        problems: tuple[Problem, ...],
        manifest: str | None = None,
        copy: str | None = None,
    ) -> Report:
        """The report of a run that could not reach a verdict: nothing compared, every problem listed."""
        return cls(
            ok=False,
            algorithm="",
            checkpoint=checkpoint,
            reference="",
            candidate="",
            strategy="",
            options={},
            components={},
            mismatches=(),
            manifest=manifest,
            problems=problems,
            no_verdict=status,
            copy=copy,
        )

    @property
    def status(self) -> Verdict:
        if self.no_verdict is not None:
            return self.no_verdict
        return "verified" if self.ok else "failed"

    @property
    def replays_load_path(self) -> bool:
        """False for `verify`: the stored bytes against a manifest, no loader and no load path."""
        return self.candidate != STORED_BYTES

    @property
    def not_checked(self) -> tuple[str, ...]:
        """What this run did not check, and how to check it: a verdict says no more than it covers."""
        if self.no_verdict is not None:
            return ()
        if not self.replays_load_path:
            return (
                "how vLLM loads these bytes: verify reads the stored bytes only; nemoverify check replays the load path",
            )
        if self.manifest is None and self.copy is None:
            return (
                "the stored bytes against any record: both loaders read the same files, so bytes damaged at "
                "rest still verify; record them once with nemoverify manifest and check with --manifest",
            )
        return ()

    @property
    def failures(self) -> tuple[Failure, ...]:
        """The mismatches grouped per tensor (and per shard file): one entry however many ranks and
        sources found it, in the order of the mismatches."""
        grouped: dict[tuple[str, str], list[Finding]] = {}
        for f in self.mismatches:
            grouped.setdefault((f.component, f.name), []).append(f)
        return tuple(Failure(name, component, tuple(fs)) for (component, name), fs in grouped.items())

    @property
    def failed_tensors(self) -> tuple[Failure, ...]:
        return tuple(f for f in self.failures if f.component != "shard")

    @property
    def failed_shards(self) -> tuple[Failure, ...]:
        """Shard files a manifest records that are missing, of another size, or new."""
        return tuple(f for f in self.failures if f.component == "shard")

    @property
    def tensors(self) -> int:
        return sum(c.tensors for c in self.components.values())

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.components.values())

    def to_dict(self) -> dict[str, object]:

        return {
            "report_version": REPORT_VERSION,
            "tool": {"name": "nemoverify", "version": _version.__version__},
            "ok": self.ok,
            "status": self.status,
            "cause": self.cause,
            "algorithm": self.algorithm or None,  # None: no verdict, nothing was hashed
            "checkpoint": self.checkpoint,
            "copy": self.copy,
            "reference": self.reference or None,
            "candidate": self.candidate or None,
            "strategy": self.strategy or None,
            "profile": self.profile.to_dict() if self.profile else None,
            "manifest": self.manifest,
            "options": self.options,
            "tensors": self.tensors,
            "bytes": self.bytes,
            "elapsed_s": round(self.elapsed_s, 3),
            "components": {
                k: {kk: vv for kk, vv in asdict(v).items() if kk != "component"} | {"ok": v.ok}
                for k, v in self.components.items()
            },
            "ranks": {str(r): ok for r, ok in self.ranks.items()},
            "mismatches": [asdict(f) | {"message": f.message} for f in self.mismatches],
            "failures": [f.to_dict() for f in self.failures],
            "skipped": [asdict(s) for s in self.skipped],
            "warnings": [w.to_dict() for w in self.warnings],
            "problems": [p.to_dict() for p in self.problems],
            "not_checked": list(self.not_checked),
        }


def problems_of(
    error: BaseException, checkpoint: str, manifest: str | None = None
) -> tuple[Literal["invalid", "error"], tuple[Problem, ...]]:
    """What a report without a verdict says: an invalid checkpoint's structural problems, or the
    one problem that stopped the run, under the error's rule id (a crash: `internal-error`)."""
    if isinstance(error, InvalidCheckpoint) and error.problems:
        return "invalid", tuple(error.problems)
    if isinstance(error, NemoverifyError):
        rule, message = error.rule, str(error)
    else:
        rule, message = "internal-error", f"unexpected {type(error).__name__}: {error}"
    where = manifest if isinstance(error, ManifestError) and manifest else checkpoint
    message = redact(message.removeprefix(f"{where}: "))
    return "error", (Problem(rule, where, message),)
