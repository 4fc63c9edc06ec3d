"""SARIF 2.1.0: one result per failed tensor (or shard), however many ranks and sources found it,
located in the file that holds it; a run without a verdict has one result per problem, under the
problem's rule id, located at its file. Structural warnings are results too, at level "warning"."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nemoverify import _version
from nemoverify.checkpoint.problems import Problem
from nemoverify.checkpoint.rules import rule
from nemoverify.redaction import redact
from nemoverify.report import Report


class _Rules:
    def __init__(self) -> None:
        self.rules: list[dict[str, object]] = []
        self._index: dict[str, int] = {}

    def index(self, rule_id: str, name: str) -> int:
        """The index of the registered rule `rule_id` in the `rules` array, adding it on first use."""
        sarif_id = f"nemoverify/{rule_id}"
        if sarif_id not in self._index:
            registered = rule(rule_id)
            self._index[sarif_id] = len(self.rules)
            self.rules.append(
                {
                    "id": sarif_id,
                    "name": name,
                    "shortDescription": {"text": registered.meaning},
                    "help": {"text": registered.fix},
                }
            )
        return self._index[sarif_id]


def report_sarif(report: Report) -> str:
    rules = _Rules()
    results = []
    for f in report.failures:  # one result per tensor, whatever ranks and sources found it
        kind = f.kinds[0]
        location: dict[str, object] = {
            "logicalLocations": [{"name": f.name, "kind": "member", "fullyQualifiedName": f"{f.component}/{f.name}"}]
        }
        locations = [location]
        for i, file in enumerate(f.files):
            if i == 0:
                location["physicalLocation"] = {"artifactLocation": artifact(file)}
            else:
                locations.append({"physicalLocation": {"artifactLocation": artifact(file)}})
        results.append(
            {
                "ruleId": f"nemoverify/{kind}",
                "ruleIndex": rules.index(kind, f"tensor-{kind}"),
                "level": "error",
                "message": {"text": f"{f.name} ({f.component}): {f.message}"},
                "locations": locations,
                "properties": {
                    "component": f.component,
                    "kinds": list(f.kinds),
                    "against": list(f.sources),
                    "ranks": list(f.ranks),
                },
            }
        )
    for p in (*report.problems, *report.warnings):
        results.append(_problem_result(p, rules))
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "nemoverify", "version": _version.__version__, "rules": rules.rules}},
                "invocations": [{"executionSuccessful": report.status != "error"}],
                "results": results,
                "properties": {
                    "ok": report.ok,
                    "status": report.status,
                    "cause": report.cause,
                    "algorithm": report.algorithm or None,
                    "checkpoint": report.checkpoint,
                    "copy": report.copy,
                },
            }
        ],
    }
    return redact(json.dumps(log, indent=2)) + "\n"  # JSON escapes nothing a URL holds


def _problem_result(p: Problem, rules: _Rules) -> dict[str, object]:
    location: dict[str, object] = {"physicalLocation": {"artifactLocation": artifact(p.file)}}
    if p.tensor:
        location["logicalLocations"] = [{"name": p.tensor, "kind": "member"}]
    return {
        "ruleId": f"nemoverify/{p.rule}",
        "ruleIndex": rules.index(p.rule, p.rule),
        "level": "error" if p.severity == "error" else "warning",
        "message": {"text": p.render()},
        "locations": [location],
        "properties": {"severity": p.severity, "tensor": p.tensor},
    }


def artifact(file: str) -> dict[str, str]:
    """Where a file is, as code scanning resolves it: an object URL as it is; a local file relative
    to the working directory (the repository, in CI) when it lies beneath it, else a file:// URI."""
    if "://" in file:
        return {"uri": file}
    path = os.path.abspath(file)
    rel = os.path.relpath(path)
    if rel != ".." and not rel.startswith(".." + os.sep):
        return {"uri": rel.replace(os.sep, "/")}
    return {"uri": Path(path).as_uri()}
