"""The JSON report: the whole Report, every failure included. Key names are a stable contract."""

from __future__ import annotations

import json

from nemoverify.redaction import redact
from nemoverify.report import Report


def report_json(report: Report) -> str:
    return redact(json.dumps(report.to_dict(), indent=2)) + "\n"  # JSON escapes nothing a URL holds
