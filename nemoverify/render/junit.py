"""JUnit XML: one test case per component (and per shard-level check), failures listing tensors."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from nemoverify.errors import redact
from nemoverify.report import Report


def report_junit(report: Report) -> str:
    by_component: dict[str, list[str]] = {}
    for f in report.mismatches:
        by_component.setdefault(f.component, []).append(redact(f"{f.name}: {f.message}"))
    cases = list(report.components)
    cases += [c for c in by_component if c not in report.components]
    failures = sum(1 for c in cases if by_component.get(c))
    suites = ET.Element("testsuites", name="nemoverify", tests=str(len(cases)), failures=str(failures), errors="0")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=redact(f"nemoverify {report.checkpoint}"),  # redacted before XML escapes its &
        tests=str(len(cases)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{report.elapsed_s:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (("algorithm", report.algorithm), ("candidate", report.candidate), ("strategy", report.strategy)):
        ET.SubElement(props, "property", name=key, value=value)
    for component in cases:
        row = report.components.get(component)
        case = ET.SubElement(suite, "testcase", classname="nemoverify", name=component, time="0")
        failed = by_component.get(component)
        if failed:
            failure = ET.SubElement(
                case, "failure", message=f"{len(failed)} tensor(s) failed in {component}", type="mismatch"
            )
            failure.text = "\n".join(failed)
        elif row is not None:
            ET.SubElement(
                case, "system-out"
            ).text = f"{row.matched} matched, {row.skipped} skipped, digest {row.digest}"
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
