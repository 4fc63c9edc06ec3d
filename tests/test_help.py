"""Help and usage read like a CI tool's: plain errors, no <bool> beside flags, every PATH form named,
examples that run, -V, shell completion, sizes as people write them."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest
import typer.main

from nemoverify.cli import EXAMPLES, app
from nemoverify.sizes import parse_size

COMMANDS = ([], ["check"], ["inspect"], ["manifest"], ["verify"])


@pytest.mark.parametrize(
    "bad",
    [
        ["--format", "yaml"],
        ["--strategy", "bogus"],
        ["--loader", "torch"],
        ["--algorithm", "md5"],
        ["--concurrency", "0"],
        ["--nproc", "two"],
        ["--memory-limit", "lots"],
        ["--show", "-1"],
    ],
)
def test_usage_errors_say_what_is_accepted_in_plain_words(cli, vl_checkpoint: str, bad: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", vl_checkpoint, *bad)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{bad[0]}'" in result.stderr
    for validation_wording in ("Value error", "Input should", "validation error"):
        assert validation_wording not in result.stderr


def test_flags_show_no_bool_metavar_and_help_shows_examples(cli) -> None:  # type: ignore[no-untyped-def]
    for command in COMMANDS:
        result = cli(*command, "--help")
        assert result.exit_code == 0
        assert "<bool>" not in result.stdout, command
        assert "Examples:" in result.stdout and "\n    nemoverify " in result.stdout, command
        assert "NEMOVERIFY_DEBUG=1" in result.stdout, command


def test_path_help_names_every_accepted_form(cli) -> None:  # type: ignore[no-untyped-def]
    for command in COMMANDS[1:]:
        text = " ".join(cli(*command, "--help").stdout.split())
        for form in ("a directory", "model.safetensors.index.json", "a .safetensors file", "s3://", "gs://", "repo id"):
            assert form in text, (command, form)


def test_every_example_names_real_commands_and_options() -> None:
    group = typer.main.get_command(app)
    for name, examples in EXAMPLES.items():
        options = {opt for p in group.commands[name].params for opt in (*p.opts, *p.secondary_opts)}  # type: ignore[attr-defined]
        for line in " ".join(examples).replace("\\ ", " ").split("nemoverify ")[1:]:
            words = shlex.split(line.split("|")[0].split(">")[0])
            assert words[0] == name, line
            for word in words[1:]:
                assert not word.startswith("-") or word == "-" or word in options, (name, word)


def test_dash_capital_v_prints_the_version(cli) -> None:  # type: ignore[no-untyped-def]
    for flag in ("-V", "--version"):
        result = cli(flag)
        assert result.exit_code == 0 and result.stdout.startswith("nemoverify ")


def test_shell_completion_is_offered_and_completes_choices(cli) -> None:  # type: ignore[no-untyped-def]
    text = cli("--help").stdout
    assert "--install-completion" in text and "--show-completion" in text
    env = os.environ | {
        "_NEMOVERIFY_COMPLETE": "complete_bash",
        "COMP_WORDS": "nemoverify check x --format ",
        "COMP_CWORD": "4",
    }
    code = "from nemoverify.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.stdout.split() == ["table", "json"], result
    env |= {"COMP_WORDS": "nemoverify ver", "COMP_CWORD": "1"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.stdout.split() == ["verify"], result


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("256MiB", 256 << 20),
        ("5GB", 5 * 10**9),
        ("5368709120", 5368709120),
        ("-1", -1),
        ("0", 0),
        ("1.5GiB", 3 << 29),
        ("40gb", 40 * 10**9),
    ],
)
def test_memory_limit_accepts_the_sizes_the_readme_uses(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["5G", "lots", "-2", "-1MiB", "1.0000001KB", ""])
def test_a_size_that_is_not_one_is_refused_with_the_forms_accepted(text: str) -> None:
    with pytest.raises(ValueError, match="size|whole number"):
        parse_size(text)


def test_memory_limit_reaches_the_streamer_as_bytes(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.json"
    result = cli("check", vl_checkpoint, "--memory-limit", "256MiB", "--json", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["options"]["memory_limit"] == 256 << 20


def test_manifest_algorithm_accepts_what_its_help_says_and_refuses_lin128(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    text = " ".join(cli("manifest", "--help").stdout.split())
    assert "--algorithm blake3|sha256|xxh3-128" in text
    result = cli("manifest", vl_checkpoint, "-o", str(tmp_path / "m.json"), "--algorithm", "lin128")
    assert result.exit_code == 2
    assert "'lin128': choose one of blake3, sha256, xxh3-128" in result.stderr
    assert not os.path.exists(tmp_path / "m.json")
    for algorithm in ("blake3", "sha256", "xxh3-128"):
        assert (
            cli("manifest", vl_checkpoint, "-o", str(tmp_path / "m.json"), "--algorithm", algorithm, "-q").exit_code
            == 0
        )


def test_a_crash_points_at_nemoverify_debug_and_still_leaves_its_report(
    cli, vl_checkpoint: str, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import nemoverify.checking

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(nemoverify.checking, "check", crash)
    out = tmp_path / "r.json"
    result = cli("check", vl_checkpoint, "--json", str(out))
    assert result.exit_code == 4  # a crash, not an invalid checkpoint
    assert "unexpected RuntimeError: a bug" in result.stderr and "NEMOVERIFY_DEBUG=1" in result.stderr
    report = json.loads(out.read_text())
    assert report["status"] == "error" and report["problems"][0]["rule"] == "internal-error"
