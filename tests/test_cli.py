"""The command line: exit codes, output streams, the JSON contract, help and the CLI reference."""

from __future__ import annotations

import json
import os
import re

import typer

from nemoverify.cli.app import app

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_check_exits_0_and_prints_a_line_per_component_off_a_terminal(cli, vl_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", vl_checkpoint)
    assert result.exit_code == 0, result.output
    for component in ("language_model", "mlp1", "vision"):
        assert re.search(rf"^{component}: \d+ tensors, .*: ok$", result.stdout, re.M), result.stdout
    assert result.stdout.splitlines()[-1].startswith("VERIFIED")
    assert not [line for line in result.stdout.splitlines() if line != line.rstrip()]


def test_check_prints_the_component_table_on_a_terminal(vl_checkpoint: str) -> None:
    from conftest import Cli

    result = Cli(TTY_COMPATIBLE="1", FORCE_COLOR="")("check", vl_checkpoint)
    assert result.exit_code == 0, result.output
    for component in ("language_model", "mlp1", "vision"):
        assert re.search(rf"^{component}\s+\d+", result.stdout, re.M), result.stdout
    assert "VERIFIED" in result.stdout


def test_check_exits_1_on_corruption_and_lists_tensors(cli, omni_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", omni_checkpoint, "--vllm", "0.20", "--stress", "--show", "0")
    assert result.exit_code == 1
    assert "FAILED" in result.stdout
    assert "language_model.backbone.embeddings.weight" in result.stdout


def test_json_report_contract(cli, omni_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "report.json"
    result = cli("check", omni_checkpoint, "--vllm", "0.20", "--stress", "--json", str(out), "--quiet")
    assert result.exit_code == 1
    assert result.stdout == ""
    report = json.loads(out.read_text())
    assert report["ok"] is False
    assert report["algorithm"] == "xxh3-128"
    assert set(report["components"]) == {"language_model", "mlp1", "vision", "sound", "unclaimed"}
    for row in report["components"].values():
        assert all(isinstance(row[k], int) for k in ("tensors", "bytes", "mismatched"))
    assert len(report["mismatches"]) == sum(r["mismatched"] for r in report["components"].values())
    assert all({"name", "component", "kind", "message"} <= set(m) for m in report["mismatches"])


def test_format_json_goes_to_stdout(cli, vl_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", vl_checkpoint, "--format", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["ok"] is True


def test_usage_errors_exit_2(cli, vl_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    assert cli("check", vl_checkpoint, "--strategy", "bogus").exit_code == 2
    assert cli("check", vl_checkpoint, "--concurrency", "0").exit_code == 2
    assert cli("check").exit_code == 2
    result = cli("check", vl_checkpoint, "--loader", "safetensors", "--stress")
    assert result.exit_code == 2
    assert "--stress applies to the runai loader only" in result.stderr


def test_missing_path_exits_5_with_a_message_not_a_traceback(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", str(tmp_path / "nope"))
    assert result.exit_code == 5  # no such checkpoint: not 3, an invalid one
    assert "no such file or directory" in result.stderr
    assert "Traceback" not in result.output


def test_help_documents_each_commands_own_exit_codes(cli) -> None:  # type: ignore[no-untyped-def]
    own = {
        "check": "0 verified; 1 a tensor does not reach the model intact",
        "verify": "0 the bytes are the manifest's; 1 they differ",
        "manifest": "0 written; 3 invalid",
        "inspect": "0 no structural error (warnings allowed); 3 invalid",
        "matrix": "0 no deployment corrupts the checkpoint",
    }
    for command, said in {"": "0 verified; 1 verification failed", **own}.items():
        result = cli(*([command] if command else []), "--help")
        assert result.exit_code == 0
        text = " ".join(result.stdout.split())
        assert said in text, command
        assert "5 no such checkpoint" in text and "130 interrupted" in text and "141" in text, command
        if command in ("manifest", "inspect"):
            assert "1 " not in text.split("Exit codes:")[1].split(";")[0], command  # no verdict to fail


def test_every_command_and_option_is_in_the_cli_reference() -> None:
    with open(os.path.join(ROOT, "docs", "cli.md"), encoding="utf-8") as f:
        readme = f.read()
    group = typer.main.get_command(app)
    for name, command in {"": group, **group.commands}.items():  # type: ignore[attr-defined]
        assert f"nemoverify {name}" in readme, name
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--") and opt not in ("--help", "--install-completion", "--show-completion"):
                    assert opt in readme, f"{name} {opt}"


def test_python_dash_m_runs() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "nemoverify", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("nemoverify ")


def test_a_terminal_sees_a_progress_bar_with_throughput(make_checkpoint) -> None:  # type: ignore[no-untyped-def]
    """Run the CLI on a real pseudo-terminal: rich draws the bar only there."""
    import pty
    import subprocess
    import sys

    path = make_checkpoint(hidden=1024, ffn=4096, layers=8, vocab=16384, seed=3)  # ~200 MB: long enough to draw
    leader, follower = pty.openpty()
    env = os.environ | {"COLUMNS": "120", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nemoverify", "check", path], stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    out = b""
    while True:
        try:
            data = os.read(leader, 1 << 16)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        out += data
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace"))
    assert proc.wait(timeout=120) == 0, text[-2000:]
    assert "reference" in text and "candidate" in text
    assert re.search(r"\d+(\.\d+)? [kMG]?i?B/s", text), text[-2000:]  # throughput, from bytes actually read
    assert "VERIFIED" in text


def test_a_crash_is_exit_4_never_the_invalid_checkpoint_code(cli, vl_checkpoint: str, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A bug must not look like a broken upload: the tests that expect exit 3 can tell the two apart."""
    import json

    import nemoverify.api

    def bug(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")  # the one thing this test cannot make happen for real

    monkeypatch.setattr(nemoverify.api, "check_load", bug)
    out = tmp_path / "r.json"
    result = cli("check", vl_checkpoint, "--json", str(out))
    assert result.exit_code == 4
    assert "internal error" in result.stderr and "NEMOVERIFY_DEBUG=1" in result.stderr
    report = json.loads(out.read_text())
    assert report["status"] == "error" and report["problems"][0]["rule"] == "internal-error"


def _with_stdout_closed(*args: str) -> tuple[int, str]:
    """Run the command with its stdout a pipe nobody reads any more (`nemoverify ... | head -0`)."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "nemoverify", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the command has printed anything: it imports for a second first
    err = proc.stderr.read()
    return proc.wait(timeout=120), err


def test_a_broken_pipe_exits_141_quietly(vl_checkpoint: str) -> None:
    for args in (
        ("check", vl_checkpoint),
        ("manifest", vl_checkpoint, "-o", "-", "-q"),
        ("inspect", vl_checkpoint),
        ("--help",),
        ("check", "--help"),
    ):
        code, err = _with_stdout_closed(*args)
        assert code == 141, (args, err)
        assert err == "", (args, err)


def test_a_failed_verification_with_stdout_on_dev_null_is_still_1(vl_checkpoint: str, copy_of, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A broken pipe is told by stdout turning into /dev/null (cli.app.main): a stdout that was
    /dev/null from the start is no broken pipe."""
    import subprocess
    import sys

    from malformed import flip_byte

    manifest = str(tmp_path / "m.json")
    run = [sys.executable, "-m", "nemoverify"]
    subprocess.run([*run, "manifest", vl_checkpoint, "-o", manifest, "-q"], check=True)
    damaged = copy_of(vl_checkpoint)
    flip_byte(damaged)
    with open(os.devnull, "w") as devnull:
        failed = subprocess.run([*run, "verify", damaged, "--manifest", manifest], stdout=devnull, timeout=120)
        usage = subprocess.run([*run, "verify", "--no-such-option"], stdout=devnull, stderr=devnull, timeout=120)
    assert failed.returncode == 1
    assert usage.returncode == 2


def test_a_usage_error_into_a_closed_stderr_is_141_with_stdout_on_dev_null() -> None:
    """`nemoverify check --bad 2>&1 >/dev/null | grep -q .`: Typer's console meets the broken pipe on
    stderr and says 1, which would read as a failed verification."""
    import subprocess
    import sys

    with open(os.devnull, "w") as devnull:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nemoverify", "check", "--no-such-option"], stdout=devnull, stderr=subprocess.PIPE
        )
        assert proc.stderr is not None
        proc.stderr.close()  # before the command has printed anything: it imports first
        assert proc.wait(timeout=120) == 141
