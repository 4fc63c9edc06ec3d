"""Structural problems found in a checkpoint: collected, never raised one by one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One rule broken by one file (and tensor, where there is one).

    `rule` is a stable identifier (tested, used as the SARIF rule id); `message` says what is wrong
    and, where it helps, what to do.
    """

    rule: str
    file: str
    message: str
    tensor: str | None = None
    severity: Severity = "error"

    def render(self) -> str:
        where = f"{self.file}: tensor '{self.tensor}'" if self.tensor else self.file
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "file": self.file,
            "tensor": self.tensor,
            "message": self.message,
        }
