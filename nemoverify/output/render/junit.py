"""JUnit XML: one test case per component (and per shard-level check), failures listing tensors (each
once, with the ranks and sources that found it); a
run without a verdict has one test case per problem (a failure for a structural rule, an error for
storage, a rank or a crash), so CI shows why the gate is red.

XML 1.0 forbids some characters that a tensor name may hold (C0 controls, U+FFFE, U+FFFF): each is
written as its Python escape (`\\x01`, `\\uffff`), so the file is always well-formed and the name
still says which tensor it was."""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET

from nemoverify.redaction import redact
from nemoverify.report import Report


def report_junit(report: Report) -> str:
    suites = ET.Element("testsuites", name="nemoverify")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=redact(f"nemoverify {report.checkpoint}"),  # redacted before XML escapes its &
        skipped="0",
        time=f"{report.elapsed_s:.3f}",
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("status", report.status),
        ("cause", report.cause),
        ("algorithm", report.algorithm),
        ("candidate", report.candidate),
        ("strategy", report.strategy),
    ):
        if value:
            ET.SubElement(props, "property", name=key, value=value)
    tests, failures, errors = _problem_cases(suite, report) if report.problems else _component_cases(suite, report)
    for element in (suites, suite):
        element.set("tests", str(tests))
        element.set("failures", str(failures))
        element.set("errors", str(errors))
    ET.indent(suites)
    text = ET.tostring(suites, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + _NOT_XML.sub(_escape, text) + "\n"


# What XML 1.0 does not allow in a document (its Char production), surrogates included.
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _escape(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]  # the character's Python escape: \x01, \uffff


def _component_cases(suite: ET.Element, report: Report) -> tuple[int, int, int]:
    by_component: dict[str, list[str]] = {}
    for f in report.failures:  # one line per tensor, whatever ranks and sources found it
        by_component.setdefault(f.component, []).append(redact(f"{f.name}: {f.message}"))
    cases = list(report.components)
    cases += [c for c in by_component if c not in report.components]
    for component in cases:
        row = report.components.get(component)
        case = ET.SubElement(suite, "testcase", classname="nemoverify", name=component, time="0")
        failed = by_component.get(component)
        if failed:
            cause = f" ({report.cause})" if report.cause else ""
            failure = ET.SubElement(
                case, "failure", message=f"{len(failed)} tensor(s) failed in {component}{cause}", type="mismatch"
            )
            failure.text = "\n".join(failed)
        elif row is not None:
            ET.SubElement(
                case, "system-out"
            ).text = f"{row.matched} matched, {row.skipped} skipped, digest {row.digest}"
    return len(cases), sum(1 for c in cases if by_component.get(c)), 0


def _problem_cases(suite: ET.Element, report: Report) -> tuple[int, int, int]:
    kind = "error" if report.status == "error" else "failure"
    for p in report.problems:
        name = redact(f"[{p.rule}] {_within(p.file, report.checkpoint)}" + (f": {p.tensor}" if p.tensor else ""))
        case = ET.SubElement(suite, "testcase", classname=f"nemoverify.{report.status}", name=name, time="0")
        ET.SubElement(case, kind, message=redact(p.message), type=p.rule).text = redact(p.render())
    n = len(report.problems)
    return n, (n if kind == "failure" else 0), (n if kind == "error" else 0)


def _within(file: str, root: str) -> str:
    """A problem's file as a test case names it: relative to the checkpoint where it lies in it."""
    if "://" in file or "://" in root:
        return file.removeprefix(root.rstrip("/") + "/")
    rel = os.path.relpath(os.path.abspath(file), os.path.abspath(root))
    return file if rel.startswith("..") else rel
