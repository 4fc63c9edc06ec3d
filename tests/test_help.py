"""Help and usage read like a CI tool's: plain errors, no <bool> beside flags, every PATH form named,
examples that run, -V, shell completion (run in real shells), sizes as people write them."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess

import pytest

from nemoverify.cli import EXAMPLES, build_parser, commands
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
    assert f"nemoverify check: error: argument {bad[0]}: " in result.stderr
    for validation_wording in ("Value error", "Input should", "validation error"):
        assert validation_wording not in result.stderr


def test_flags_show_no_bool_metavar_and_help_shows_examples(cli) -> None:  # type: ignore[no-untyped-def]
    for command in COMMANDS:
        result = cli(*command, "--help")
        assert result.exit_code == 0
        assert "<bool>" not in result.stdout, command
        assert "Examples:" in result.stdout and "\n  nemoverify " in result.stdout, command
        for example in EXAMPLES.get(command[0] if command else "", ()):  # one per line, never rewrapped
            assert f"\n  {example}\n" in result.stdout, (command, example)
        assert "NEMOVERIFY_DEBUG=1" in result.stdout, command


def test_no_arguments_prints_the_help_on_stderr_and_exits_2(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli()
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("usage: nemoverify ") and "Examples:" in result.stderr


def test_a_completion_script_of_the_typer_based_cli_gets_nothing_at_a_tab(monkeypatch, cli) -> None:  # type: ignore[no-untyped-def]
    """Such a script runs `nemoverify` with no arguments and _NEMOVERIFY_COMPLETE set: the help on
    stderr would land in the middle of the user's command line."""
    monkeypatch.setenv("_NEMOVERIFY_COMPLETE", "complete_bash")
    result = cli()
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["check", "x", "--bogus"], "nemoverify check: error: unrecognized arguments: --bogus"),
        (["check", "x", "--form", "json"], "nemoverify check: error: unrecognized arguments: --form json"),
        (["check"], "nemoverify check: error: the following arguments are required: PATH"),
        (["manifest", "x"], "nemoverify manifest: error: the following arguments are required: -o/--output"),
        (["verify", "x"], "nemoverify verify: error: the following arguments are required: --manifest"),
        (["bogus"], "nemoverify: error: argument COMMAND: invalid choice: 'bogus'"),
        (["check", "x", "--storage-timeout", "-1"], "argument --storage-timeout: -1 is below the least allowed, 0"),
        (["check", "x", "--max-bytes", "lots"], "argument --max-bytes: 'lots' is not a size: write bytes"),
        (["check", "x", "--max-bytes", "-1"], "argument --max-bytes: '-1': a bound cannot be negative"),
    ],
)
def test_a_usage_error_names_the_command_and_the_option(cli, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    """Unknown options, abbreviations (--form for --format: a script relying on one would break when
    an option is added), missing arguments: exit 2, one plain line under the command's usage."""
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_path_help_names_every_accepted_form(cli) -> None:  # type: ignore[no-untyped-def]
    for command in COMMANDS[1:]:
        text = " ".join(cli(*command, "--help").stdout.split())
        for form in ("a directory", "model.safetensors.index.json", "a .safetensors file", "s3://", "gs://", "repo id"):
            assert form in text, (command, form)


def test_every_example_names_real_commands_and_options() -> None:
    parsers = commands(build_parser())
    for name, examples in EXAMPLES.items():
        options = {opt for action in parsers[name]._actions for opt in action.option_strings}
        for line in " ".join(examples).replace("\\ ", " ").split("nemoverify ")[1:]:
            words = shlex.split(line.split("|")[0].split(">")[0])
            assert words[0] == name, line
            for word in words[1:]:
                assert not word.startswith("-") or word == "-" or word in options, (name, word)


def test_dash_capital_v_prints_the_version(cli) -> None:  # type: ignore[no-untyped-def]
    for flag in ("-V", "--version"):
        result = cli(flag)
        assert result.exit_code == 0 and result.stdout.startswith("nemoverify ")


def _bash_complete(script: str, words: list[str], cwd: str) -> list[str]:
    """What bash offers for `words` (the last being completed) with `script` sourced: the function
    that `complete -p nemoverify` names, called as bash calls it, and its COMPREPLY."""
    code = (
        'eval "$1"; shift; spec=$(complete -p nemoverify) || exit 9; fn=${spec#*-F }; fn=${fn%% *}; '
        'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; '
        '"$fn" nemoverify "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"; printf "%s\\n" "${COMPREPLY[@]}"'
    )
    bash = ["bash", "--norc", "--noprofile", "-c", code, "bash", script, *words]
    result = subprocess.run(bash, cwd=cwd, capture_output=True, text=True, check=True)
    return result.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_shell_completion_is_offered_and_completes_choices(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert "--completion bash|zsh|fish" in cli("--help").stdout
    result = cli("--completion", "bash")
    assert result.exit_code == 0 and result.stderr == ""
    (tmp_path / "report.json").write_text("{}")
    cases = {
        ("nemoverify", "check", "x", "--format", ""): ["table", "json"],
        ("nemoverify", "ver"): ["verify"],
        ("nemoverify", ""): ["check", "matrix", "inspect", "manifest", "verify"],
        ("nemoverify", "manifest", "x", "--algorithm", ""): ["blake3", "sha256", "xxh3-128"],
        ("nemoverify", "check", "x", "-q", "--strategy", "l"): ["legacy"],
        ("nemoverify", "check", "x", "--reu"): ["--reuse-buffers"],
        ("nemoverify", "verify", "x", "--json", "rep"): ["report.json"],  # file names for a FILE
        ("nemoverify", "check", "x", "--vllm", ""): [],  # free text
        ("nemoverify", "--completion", "z"): ["zsh"],
    }
    for words, offered in cases.items():
        assert _bash_complete(result.stdout, list(words), str(tmp_path)) == offered, words


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completion_loads_and_completes_choices(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """zsh runs the bash function through bashcompinit; here its compgen calls it as a completion
    would (zsh itself then filters the words by what was typed, so all of them come back)."""
    script = tmp_path / "nemoverify.zsh"
    script.write_text(cli("--completion", "zsh").stdout)
    code = (
        'source "$1"; shift; spec=$(complete -p | grep " nemoverify$") || exit 9; fn=${${spec#*-F }%% *}; '
        'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); words=("$@"); CURRENT=$#; compgen -F "$fn" -- "${@[-1]}"'
    )
    env = os.environ | {"HOME": str(tmp_path)}  # compinit's dump goes there
    for words, offered in {
        ("nemoverify", "check", "x", "--format", ""): ["table", "json"],
        ("nemoverify", "manifest", "x", "--algorithm", ""): ["blake3", "sha256", "xxh3-128"],
    }.items():
        zsh = ["zsh", "-f", "-c", code, "zsh", str(script), *words]
        result = subprocess.run(zsh, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == offered, (words, result)


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completion_completes_commands_and_choices(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "nemoverify.fish"
    script.write_text(cli("--completion", "fish").stdout)
    for line, offered in {
        "nemoverify check x --format ": ["json", "table"],
        "nemoverify ver": ["verify"],
        "nemoverify manifest x --algorithm ": ["blake3", "sha256", "xxh3-128"],
        "nemoverify check x --reu": ["--reuse-buffers"],
        "nemoverify check x --vllm ": [],
    }.items():
        code = f"source {shlex.quote(str(script))}; complete -C {shlex.quote(line)}"
        result = subprocess.run(["fish", "--no-config", "-c", code], capture_output=True, text=True, check=True)
        assert sorted(row.split("\t")[0] for row in result.stdout.splitlines()) == offered, (line, result)


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
    import nemoverify.engine.check

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(nemoverify.engine.check, "check", crash)
    out = tmp_path / "r.json"
    result = cli("check", vl_checkpoint, "--json", str(out))
    assert result.exit_code == 4  # a crash, not an invalid checkpoint
    assert "unexpected RuntimeError: a bug" in result.stderr and "NEMOVERIFY_DEBUG=1" in result.stderr
    report = json.loads(out.read_text())
    assert report["status"] == "error" and report["problems"][0]["rule"] == "internal-error"
