"""The frozen result of a verification. Renderers (table, JSON, JUnit, SARIF) read only this.

Verification never raises on a mismatch: it returns a Report whose `ok` is False.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple

from nemoverify.checkpoint.problems import Problem

if TYPE_CHECKING:
    from nemoverify.profiles import Profile

Status = Literal["loaded", "skipped", "unclaimed", "raised"]  # raised: vLLM raises on it, the load fails
FindingKind = Literal["bytes", "missing", "unexpected", "dtype", "shape", "duplicate", "size", "load-error"]
REPORT_VERSION = 1


class Observation(NamedTuple):
    """One tensor as one side saw it (the reference reader, a candidate rank, or a manifest).
    A named tuple: made once per tensor per pass, it costs a third of a frozen dataclass."""

    name: str
    component: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    digest: str
    status: Status = "loaded"
    reason: str | None = None


@dataclass(frozen=True)
class Finding:
    """A tensor that did not arrive as the reference has it."""

    name: str
    component: str
    kind: FindingKind
    expected: str | None
    actual: str | None
    against: Literal["reference", "manifest"] = "reference"
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

    def _describe(self, cut: int | None) -> str:
        where = f" on rank {self.rank}" if self.rank is not None else ""
        what = {
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
        }[self.kind]
        exp, act = self.expected, self.actual
        if cut and self.kind in ("bytes", "unexpected", "duplicate"):
            exp, act = exp and exp[:cut], act and act[:cut]
        if self.kind == "duplicate" and self.detail:
            return f"{self.detail}{where}"
        if self.kind == "load-error" and self.detail:
            return f"{what}{where}: {self.detail}"
        detail = f" (expected {exp}, got {act})" if exp and act else (f" (got {act})" if act else "")
        return f"{what}{where}{detail}"


@dataclass(frozen=True)
class ComponentSummary:
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
    name: str
    component: str
    reason: str


@dataclass(frozen=True)
class Report:
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

    @property
    def tensors(self) -> int:
        return sum(c.tensors for c in self.components.values())

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.components.values())

    def to_dict(self) -> dict[str, object]:
        from nemoverify import __version__

        return {
            "report_version": REPORT_VERSION,
            "tool": {"name": "nemoverify", "version": __version__},
            "ok": self.ok,
            "algorithm": self.algorithm,
            "checkpoint": self.checkpoint,
            "reference": self.reference,
            "candidate": self.candidate,
            "strategy": self.strategy,
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
            "skipped": [asdict(s) for s in self.skipped],
            "warnings": [w.to_dict() for w in self.warnings],
        }
