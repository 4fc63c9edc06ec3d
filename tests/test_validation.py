"""Every malformed checkpoint is refused with exit 3 and a message naming file (and tensor)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest
from conftest import snapshot, wait_until_reading
from malformed import CASES, SHARD2, Case, append, edit_index, truncate

from nemoverify.checkpoint.problems import InvalidCheckpoint
from nemoverify.deployment.options import CheckOptions
from nemoverify.engine.check import check_load as check
from nemoverify.model.checks import open_for_vllm


def test_the_corpus_is_large_and_covers_each_rule() -> None:
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_checkpoint_is_refused(case: Case, cli, vl_checkpoint: str, omni_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(omni_checkpoint if case.omni else vl_checkpoint)
    case.damage(root)
    problems = open_for_vllm(root).errors(strict=case.strict)
    assert any(p.rule == case.rule and case.fragment in p.message for p in problems), [p.render() for p in problems]
    strict = ["--strict"] if case.strict else []
    nothing_there = case.rule in ("path-missing", "no-safetensors")  # no such checkpoint: exit 5
    for command in ("check", "inspect"):
        result = cli(command, root, *strict)
        assert result.exit_code == (5 if nothing_there else 3), (command, result.output)
        assert "Traceback" not in result.output
        assert case.fragment in " ".join(result.output.split()), (command, result.output)
        assert f"[{case.rule}]" in result.output


def test_all_problems_are_reported_in_one_run(vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(vl_checkpoint)
    truncate(SHARD2, 3)(root)
    edit_index(lambda i: i["metadata"].update(total_size=1))(root)
    append("model-00003-of-00003.safetensors", b"xx")(root)
    rules = {p.rule for p in open_for_vllm(root).errors()}
    assert {"file-truncated", "file-trailing-bytes"} <= rules


@pytest.mark.parametrize(
    "case",
    [c for c in CASES if c.id in ("dtype-unknown", "dtype-lowercase", "byte-length-wrong", "tensor-entry-duplicate-field")],
    ids=lambda c: c.id,
)
def test_an_entry_refused_for_its_own_fields_brings_no_layout_echo(case: Case, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    # Its bytes are still there: a gap or trailing bytes would only repeat the one problem.
    root = copy_of(vl_checkpoint)
    case.damage(root)
    assert [p.rule for p in open_for_vllm(root).errors()] == [case.rule]


def test_problems_name_the_file_and_the_tensor(vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(vl_checkpoint)
    edit_index(lambda i: i["weight_map"].pop("mlp1.1.weight"))(root)
    (problem,) = open_for_vllm(root).errors()
    assert problem.tensor == "mlp1.1.weight"
    assert problem.render().startswith(os.path.join(root, "model-"))
    assert "tensor 'mlp1.1.weight'" in problem.render()


def test_a_missing_config_json_is_a_warning_unless_strict(cli, omni_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(omni_checkpoint)
    os.remove(os.path.join(root, "config.json"))  # vLLM cannot build the model: nothing says which it is
    result = cli("check", root)
    assert result.exit_code == 0, result.output
    assert "there is no config.json" in " ".join(result.stdout.split())
    assert cli("check", root, "--strict").exit_code == 3


def test_unknown_architecture_is_a_warning_unless_strict(cli, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    import json

    root = copy_of(vl_checkpoint)
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"]}, f)
    result = cli("check", root)
    assert result.exit_code == 0
    assert "is not one vLLM sends to NemotronH_Nano_VL_V2" in " ".join(result.stdout.split())
    for command in ("check", "inspect"):
        report = os.path.join(os.path.dirname(root), f"strict-{command}.json")
        result = cli(command, root, "--strict", "--json", report)
        assert result.exit_code == 3, (command, result.output)
        with open(report) as f:
            written = json.load(f)
        assert not written["ok"] and written["problems"], command
        assert {p["severity"] for p in written["problems"]} == {"error"}, command  # promoted: reported as errors
        assert "VALID" not in result.stdout.replace("INVALID", ""), command


def test_a_file_that_is_not_a_checkpoint(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    result = cli("check", str(path))
    assert result.exit_code == 3
    assert "not a .safetensors file" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_permission_denied_is_invalid_not_a_crash(cli, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(vl_checkpoint)
    os.chmod(os.path.join(root, SHARD2), 0)
    result = cli("check", root)
    assert result.exit_code == 3
    assert "cannot be read" in result.stderr


def test_a_shard_that_changes_while_read_is_refused(vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(vl_checkpoint)
    checkpoint = open_for_vllm(root)  # headers read; now a writer appends to a shard
    append(SHARD2, b"\x00" * 16)(root)
    with pytest.raises(InvalidCheckpoint) as info:
        check(checkpoint, CheckOptions())
    assert info.value.problems[0].rule == "file-changed"


@pytest.mark.parametrize("read_only", [False, True])
def test_check_never_writes_into_the_checkpoint(cli, omni_checkpoint: str, copy_of, read_only: bool) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(omni_checkpoint)
    if read_only:
        for dirpath, _, files in os.walk(root):
            for name in files:
                os.chmod(os.path.join(dirpath, name), 0o444)
            os.chmod(dirpath, 0o555)
    before = snapshot(root)
    entries = sorted(os.listdir(root))
    try:
        for args in (["check", root], ["check", root, "--vllm", "0.20", "--stress"], ["inspect", root]):
            cli(*args)
        assert snapshot(root) == before
        assert sorted(os.listdir(root)) == entries
    finally:
        os.chmod(root, 0o755)


@pytest.mark.slow
def test_ctrl_c_ends_the_check_within_a_second_with_130_and_no_partial_output(
    make_checkpoint: Callable[..., str], tmp_path
) -> None:  # type: ignore[no-untyped-def]
    big = make_checkpoint(hidden=2048, ffn=8192, layers=16, vocab=32768, seed=7)  # ~900 MB: several seconds to check
    out = tmp_path / "report.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nemoverify",
            "check",
            big,
            "--json",
            str(out),
            "--algorithm",
            "sha256",
            "--concurrency",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell without job control starts background jobs with SIGINT ignored, and Python keeps
        # an ignored SIGINT ignored: give the child the default disposition a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # Interrupt the check itself: once it holds a shard open, torch is imported (a SIGINT during the
    # import is held until it is done) and reading has begun, however busy the machine is.
    wait_until_reading(proc.pid, big)
    time.sleep(0.2)
    assert proc.poll() is None, "the check finished before it could be interrupted; make the checkpoint bigger"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    elapsed = time.monotonic() - sent
    assert proc.returncode == 130, proc.stderr.read() if proc.stderr else ""
    assert elapsed < 1.0, elapsed
    assert os.listdir(tmp_path) == []  # no report, no temporary file


CRATE_REFUSES = [
    c
    for c in CASES
    if c.id.startswith(("header-nan", "header-infinity", "header-number", "header-lone", "shape-dimension-beyond"))
    or c.id.startswith(
        ("shape-product", "shape-bits", "shape-negative-zero", "offsets-beyond", "tensor-entry-duplicate")
    )
]


@pytest.fixture(scope="module")
def vl_manifest(vl_checkpoint: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    from conftest import Cli

    path = str(tmp_path_factory.mktemp("vl-manifest") / "m.json")
    assert Cli()("manifest", vl_checkpoint, "-o", path, "-q").exit_code == 0
    return path


@pytest.mark.parametrize("case", CRATE_REFUSES, ids=[c.id for c in CRATE_REFUSES])
def test_a_header_the_safetensors_crate_refuses_is_invalid_in_every_command(
    case: Case, cli, vl_checkpoint: str, vl_manifest: str, copy_of, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from malformed import SHARD1

    root = copy_of(vl_checkpoint)
    case.damage(root)
    out = tmp_path / "m.json"
    for args in (
        ["inspect", root],
        ["check", root],
        ["manifest", root, "-o", str(out)],
        ["verify", root, "--manifest", vl_manifest],
        ["check", root, "--manifest", vl_manifest],
    ):
        result = cli(*args)
        assert result.exit_code == 3, (args, result.output)
        text = " ".join(result.output.split())
        assert f"[{case.rule}]" in text and case.fragment in text, (args, result.output)
        assert f"{SHARD1}: tensor 'x.empty" in text, (args, result.output)  # the file and the tensor
        assert "Traceback" not in result.output and "unexpected" not in result.output
    assert not out.exists()
