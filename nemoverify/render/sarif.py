"""SARIF 2.1.0: one result per failed tensor (or shard), located in the shard that holds it."""

from __future__ import annotations

import json
import os

from nemoverify import __version__
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
}


def report_sarif(report: Report) -> str:
    rule_ids = sorted({f.kind for f in report.mismatches})
    results = []
    for f in report.mismatches:
        location: dict[str, object] = {
            "logicalLocations": [{"name": f.name, "kind": "member", "fullyQualifiedName": f"{f.component}/{f.name}"}]
        }
        if f.file:
            location["physicalLocation"] = {"artifactLocation": {"uri": _uri(f.file, report.checkpoint)}}
        results.append(
            {
                "ruleId": f"nemoverify/{f.kind}",
                "ruleIndex": rule_ids.index(f.kind),
                "level": "error",
                "message": {"text": f"{f.name} ({f.component}): {f.message}"},
                "locations": [location],
                "properties": {"component": f.component, "against": f.against, "rank": f.rank},
            }
        )
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "nemoverify",
                        "version": __version__,
                        "rules": [
                            {"id": f"nemoverify/{k}", "name": f"tensor-{k}", "shortDescription": {"text": RULES[k]}}
                            for k in rule_ids
                        ],
                    }
                },
                "results": results,
                "properties": {"ok": report.ok, "algorithm": report.algorithm, "checkpoint": report.checkpoint},
            }
        ],
    }
    return redact(json.dumps(log, indent=2)) + "\n"  # JSON escapes nothing a URL holds


def _uri(path: str, root: str) -> str:
    if "://" in path:
        return path
    rel = os.path.relpath(path, root) if os.path.isabs(path) else path
    return rel.replace(os.sep, "/")
