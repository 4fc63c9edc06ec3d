"""One tensor as one side saw it, and everything one pass delivered: what the passes produce and the
comparison reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, NamedTuple

Status = Literal["loaded", "skipped", "unclaimed", "raised"]  # raised: vLLM raises on it, the load fails


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


@dataclass
class Delivered:
    """Everything one candidate rank delivered, and the names it delivered more than once.
    A name delivered twice is copied into its parameter twice: the model holds the later copy."""

    observations: dict[str, Observation] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)

    def add(self, obs: Observation) -> None:
        if obs.name in self.observations:
            self.duplicates.append(obs.name)
        self.observations[obs.name] = obs
