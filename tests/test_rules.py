"""One registry of rules: every rule id nemoverify reports is registered, every structural rule has a
malformed checkpoint (or another real trigger) that produces it, and every renderer reads its text."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from malformed import CASES

import nemoverify
from nemoverify.checkpoint.problems import Problem
from nemoverify.checkpoint.rules import RULES
from nemoverify.errors import ManifestError, NemoverifyError
from nemoverify.report import problems_of

PACKAGE = Path(nemoverify.__file__).parent
TESTS = Path(__file__).parent

# Rules no malformed copy of the tiny checkpoint can break: the test that triggers each for real.
TRIGGERED_ELSEWHERE = {
    "file-changed": "test_validation.py::test_a_shard_that_changes_while_read_is_refused",  # a race
    "shard-sparse": "test_storage.py::test_a_sparse_shard_is_refused_before_any_work_by_every_command",
    "max-bytes": "test_storage.py::test_max_bytes_refuses_a_checkpoint_declaring_more_before_reading",  # an option
    "max-tensors": "test_storage.py::test_a_flood_of_empty_tensors_is_refused_by_count_before_parsing",  # an option
    "hf-not-cached": "test_not_checked.py::test_a_repo_id_not_in_the_cache_says_both",  # a name, not a path
    "no-tensors": "test_storage.py::test_a_checkpoint_of_no_tensors_is_not_verified",  # a whole checkpoint
    "path-pattern": "test_file_set.py::test_a_directory_named_as_a_pattern_is_refused_when_vllm_would_list_other_files",
    "path-one-file": "test_file_set.py::test_one_shard_of_a_directory_is_refused_naming_the_directory",  # a path
}


def rule_ids_in_source() -> dict[str, list[str]]:
    """Every literal rule id passed to `Problem(...)` (or a local `problem(...)` helper) in the package,
    with where; a call whose rule is not a literal must be one of the known forwarding sites."""
    found: dict[str, list[str]] = {}
    forwarding = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in ("Problem", "problem"):
                continue
            first = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "rule"), None)
            where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.setdefault(first.value, []).append(where)
            else:
                forwarding.append(path.relative_to(PACKAGE).as_posix())
    # header.py's `problem(rule, ...)` helper and report.problems_of (each error's `rule`, tested below).
    assert sorted(forwarding) == ["checkpoint/header.py", "report.py"], forwarding
    return found


def test_every_rule_id_used_in_the_package_is_registered() -> None:
    used = rule_ids_in_source()
    assert len(used) > 30
    unregistered = {r: where for r, where in used.items() if r not in RULES}
    assert not unregistered


def test_every_rule_a_run_without_verdict_reports_is_registered() -> None:
    errors = [NemoverifyError, *NemoverifyError.__subclasses__()]
    assert {e.rule for e in errors} <= set(RULES)
    for error in (RuntimeError("boom"), NemoverifyError("plain"), ManifestError("m.json: unreadable")):
        _, (problem,) = problems_of(error, "ckpt", "m.json")
        assert problem.rule in RULES and RULES[problem.rule].kind == "run"


def test_every_tensor_failure_kind_is_a_registered_rule() -> None:
    from typing import get_args

    from nemoverify.report import FindingKind

    assert set(get_args(FindingKind)) == {r.id for r in RULES.values() if r.kind == "tensor"}


def test_every_registered_structural_rule_is_reported_somewhere() -> None:
    run = {r.id for r in RULES.values() if r.kind == "run"}  # a run's rule may also name a warning (vllm-code)
    assert {r.id for r in RULES.values() if r.kind == "structure"} == set(rule_ids_in_source()) - run


def test_every_rule_says_what_it_means_and_how_to_fix_it() -> None:
    for r in RULES.values():
        assert r.meaning.endswith(".") and r.fix.endswith("."), r
        assert r.id == r.id.lower() and " " not in r.id


def test_every_structural_rule_has_a_malformed_case_or_another_real_trigger() -> None:
    by_corpus = {c.rule for c in CASES}
    assert set(TRIGGERED_ELSEWHERE).isdisjoint(by_corpus), "a corpus case exists: drop the other trigger"
    for rule_id in (r.id for r in RULES.values() if r.kind == "structure"):
        if rule_id in by_corpus:
            continue
        assert rule_id in TRIGGERED_ELSEWHERE, f"no malformed case and no other trigger produces {rule_id}"
        file, name = TRIGGERED_ELSEWHERE[rule_id].split("::")
        source = (TESTS / file).read_text(encoding="utf-8")
        assert f"def {name}(" in source, TRIGGERED_ELSEWHERE[rule_id]
        body = source.split(f"def {name}(", 1)[1].split("\ndef ", 1)[0]
        assert rule_id in body, f"{TRIGGERED_ELSEWHERE[rule_id]} does not check rule {rule_id}"


@pytest.mark.parametrize("rule_id", ["file-truncated", "config-architecture"])
def test_the_json_problem_carries_the_registered_fix(rule_id: str) -> None:
    problem = Problem(rule_id, "f", "m")
    assert problem.to_dict()["help"] == RULES[rule_id].fix


def test_sarif_rules_come_from_the_registry() -> None:
    from nemoverify.output.render.sarif import report_sarif
    from nemoverify.report import Report

    report = Report.without_verdict("ckpt", "invalid", (Problem("file-truncated", "ckpt/a.safetensors", "short"),))
    (descriptor,) = json.loads(report_sarif(report))["runs"][0]["tool"]["driver"]["rules"]
    assert descriptor["shortDescription"]["text"] == RULES["file-truncated"].meaning
    assert descriptor["help"]["text"] == RULES["file-truncated"].fix


def test_inspect_says_how_to_fix_each_rule_broken_once(cli, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    from malformed import truncate

    root = copy_of(vl_checkpoint)
    truncate("model-00002-of-00003.safetensors", 1)(root)
    result = cli("inspect", root)
    text = " ".join(result.output.split())
    assert text.count("fix [file-truncated]:") == 1 and RULES["file-truncated"].fix in text



def test_the_reports_doc_lists_every_rule() -> None:
    readme = (TESTS.parent / "docs" / "reports.md").read_text(encoding="utf-8")
    assert not [r for r in RULES if f"`{r}`" not in readme]
