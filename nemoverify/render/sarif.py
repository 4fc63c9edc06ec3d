"""SARIF 2.1.0: one result per failed tensor (or shard), however many ranks and sources found it,
located in the file that holds it; a run without a verdict has one result per problem, under the
problem's rule id, located at its file. Structural warnings are results too, at level "warning"."""

from __future__ import annotations

import json
import os
from pathlib import Path

from nemoverify import __version__
from nemoverify.checkpoint.problems import Problem
from nemoverify.errors import redact
from nemoverify.report import Report

RULES = {
    "bytes": "The tensor's bytes differ from what they should be.",
    "missing": "A tensor that should be there was not delivered.",
    "unexpected": "A tensor was delivered that should not exist.",
    "dtype": "The tensor's dtype differs.",
    "shape": "The tensor's shape differs.",
    "duplicate": "The loader delivered the tensor more than once.",
    "size": "A shard file's size differs from the manifest.",
    "load-error": "vLLM raises on the tensor: the load fails.",
}
NO_VERDICT_RULES = {
    "storage-error": "Object storage failed: no verdict was reached.",
    "rank-failed": "A distributed rank crashed or hung: no verdict was reached.",
    "manifest-unreadable": "The manifest could not be read or trusted: no verdict was reached.",
    "loader-error": "A loader failed while reading a tensor: no verdict was reached.",
    "internal-error": "nemoverify failed unexpectedly (NEMOVERIFY_DEBUG=1 shows the traceback): no verdict was reached.",
    "error": "The run could not reach a verdict.",
}


class _Rules:
    def __init__(self) -> None:
        self.rules: list[dict[str, object]] = []
        self._index: dict[str, int] = {}

    def index(self, rule_id: str, name: str, text: str) -> int:
        if rule_id not in self._index:
            self._index[rule_id] = len(self.rules)
            self.rules.append({"id": rule_id, "name": name, "shortDescription": {"text": text}})
        return self._index[rule_id]


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
                "ruleIndex": rules.index(f"nemoverify/{kind}", f"tensor-{kind}", RULES[kind]),
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
                "tool": {"driver": {"name": "nemoverify", "version": __version__, "rules": rules.rules}},
                "invocations": [{"executionSuccessful": report.status != "error"}],
                "results": results,
                "properties": {
                    "ok": report.ok,
                    "status": report.status,
                    "algorithm": report.algorithm or None,
                    "checkpoint": report.checkpoint,
                    "copy": report.copy,
                },
            }
        ],
    }
    return redact(json.dumps(log, indent=2)) + "\n"  # JSON escapes nothing a URL holds


def _problem_result(p: Problem, rules: _Rules) -> dict[str, object]:
    rule_id = f"nemoverify/{p.rule}"
    text = NO_VERDICT_RULES.get(p.rule) or f"The checkpoint breaks the structural rule '{p.rule}'."
    location: dict[str, object] = {"physicalLocation": {"artifactLocation": artifact(p.file)}}
    if p.tensor:
        location["logicalLocations"] = [{"name": p.tensor, "kind": "member"}]
    return {
        "ruleId": rule_id,
        "ruleIndex": rules.index(rule_id, p.rule, text),
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
