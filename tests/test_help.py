"""Help and usage read like a CI tool's: plain errors naming the command and the option, every PATH form
named, examples that run, -V, Typer's shell completion (run in a real bash), sizes as people write them."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import typer

from nemoverify.cli.app import EXAMPLES, app
from nemoverify.cli.sizes import parse_size

COMMANDS = ([], ["check"], ["inspect"], ["manifest"], ["verify"], ["matrix"])


def plain(text: str) -> str:
    """What the words say, whatever box and width rich drew them in."""
    return " ".join(re.sub("[─-╿]", " ", text).split())


def options_of(name: str) -> set[str]:
    command = typer.main.get_command(app)
    chosen = command.commands[name] if name else command  # type: ignore[attr-defined]
    return {opt for param in chosen.params for opt in (*param.opts, *param.secondary_opts)}


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
    said = plain(result.stderr)
    assert "Usage: nemoverify check" in said and f"Invalid value for '{bad[0]}': " in said, said
    for validation_wording in ("Value error", "Input should", "validation error", "Traceback"):
        assert validation_wording not in result.stderr


def test_help_panels_group_the_options_and_show_examples(cli) -> None:  # type: ignore[no-untyped-def]
    for command in COMMANDS:
        result = cli(*command, "--help")
        assert result.exit_code == 0
        assert "Examples:" in result.stdout and "nemoverify " in result.stdout, command
        text = plain(result.stdout)
        for example in EXAMPLES.get(command[0] if command else "", ()):  # one per line, never rewrapped
            assert plain(example) in text, (command, example)
            assert "[" not in example  # help is rich markup
        assert "NEMOVERIFY_DEBUG=1" in result.stdout, command
    check = plain(cli("check", "--help").stdout)
    for panel in ("Deployment profile", "Inputs", "Reports", "Limits", "Policy"):
        assert panel in check, panel


def test_no_arguments_prints_the_help_and_exits_2(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli()
    assert result.exit_code == 2
    assert "Usage: nemoverify" in result.output and "Examples:" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "x", "--bogus"], "No such option: --bogus"),
        (["check", "x", "--form", "json"], "No such option: --form (Possible options: --format)"),
        (["check"], "Missing argument 'PATH'."),
        (["manifest", "x"], "Missing option '-o' / '--output'."),
        (["verify", "x"], "Missing option '--manifest'."),
        (["bogus"], "No such command 'bogus'."),
        (["check", "x", "--storage-timeout", "-1"], "Invalid value for '--storage-timeout': -1 is below the least allowed, 0"),
        (["check", "x", "--max-bytes", "lots"], "Invalid value for '--max-bytes': 'lots' is not a size: write bytes"),
        (["check", "x", "--max-bytes", "-1"], "Invalid value for '--max-bytes': '-1': a bound cannot be negative"),
    ],
)
def test_a_usage_error_names_the_command_and_the_option(cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    """Unknown options, abbreviations (--form for --format: a script relying on one would break when
    an option is added), missing arguments: exit 2, one plain line under the command's usage."""
    result = cli(*args)
    assert result.exit_code == 2, result.output
    said = plain(result.stderr)
    assert message in said, said
    assert f"Usage: nemoverify {args[0] if args[0] != 'bogus' else ''}".strip() in said
    assert "Traceback" not in result.stderr


def test_path_help_names_every_accepted_form(cli) -> None:  # type: ignore[no-untyped-def]
    for command in COMMANDS[1:]:
        text = plain(cli(*command, "--help").stdout)
        for form in ("a directory", "model.safetensors.index.json", "a .safetensors file", "s3://", "gs://", "az://", "repo id"):
            assert form in text, (command, form)


def test_every_example_names_real_commands_and_options() -> None:
    for name, examples in EXAMPLES.items():
        options = options_of(name)
        for line in " ".join(examples).replace("\\ ", " ").split("nemoverify ")[1:]:
            words = shlex.split(line.split("|")[0].split(">")[0])
            assert words[0] == name, line
            for word in words[1:]:
                assert not word.startswith("-") or word == "-" or word in options, (name, word)


def test_dash_capital_v_prints_the_version(cli) -> None:  # type: ignore[no-untyped-def]
    for flag in ("-V", "--version"):
        result = cli(flag)
        assert result.exit_code == 0 and result.stdout.startswith("nemoverify ")


def _offered(cli, monkeypatch, words: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    """What Typer's completion offers for `words` (the last being completed), by the protocol its bash
    script speaks to the program."""
    monkeypatch.setenv("_NEMOVERIFY_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", " ".join(words))
    monkeypatch.setenv("COMP_CWORD", str(len(words) - 1))
    result = cli()
    assert result.exit_code == 0, result.output
    return result.stdout.split()


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        (["nemoverify", "check", "x", "--format", ""], ["table", "json"]),
        (["nemoverify", "ver"], ["verify"]),
        (["nemoverify", ""], ["check", "matrix", "inspect", "manifest", "verify"]),
        (["nemoverify", "manifest", "x", "--algorithm", ""], ["blake3", "sha256", "xxh3-128"]),
        (["nemoverify", "check", "x", "-q", "--strategy", "l"], ["legacy"]),
        (["nemoverify", "check", "x", "--reu"], ["--reuse-buffers"]),
        (["nemoverify", "check", "x", "--vllm", ""], []),  # free text
        (["nemoverify", "verify", "x", "--json", "rep"], []),  # a FILE: bash's default (file names) takes over
    ],
)
def test_shell_completion_offers_commands_options_and_choices(cli, monkeypatch, words: list[str], offered: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert _offered(cli, monkeypatch, words) == offered


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_the_bash_completion_script_completes_in_a_real_bash(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The script Typer prints, sourced in bash, calls the installed command and offers its answer;
    where that is nothing (a FILE), bash completes file names (`-o default`)."""
    script = cli("--show-completion", "bash")
    assert script.exit_code == 0 and "complete -o default" in script.stdout
    code = (
        'eval "$1"; shift; spec=$(complete -p nemoverify) || exit 9; fn=${spec#*-F }; fn=${fn%% *}; '
        'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); "$fn" nemoverify; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    env = os.environ | {"PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    words = ["nemoverify", "check", "x", "--format", ""]
    bash = ["bash", "--norc", "--noprofile", "-c", code, "bash", script.stdout, *words]
    result = subprocess.run(bash, cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["table", "json"]


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
    import nemoverify.api

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(nemoverify.api, "check_load", crash)
    out = tmp_path / "r.json"
    result = cli("check", vl_checkpoint, "--json", str(out))
    assert result.exit_code == 4  # a crash, not an invalid checkpoint
    assert "unexpected RuntimeError: a bug" in result.stderr and "NEMOVERIFY_DEBUG=1" in result.stderr
    report = json.loads(out.read_text())
    assert report["status"] == "error" and report["problems"][0]["rule"] == "internal-error"
