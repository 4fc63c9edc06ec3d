"""Shell completion, generated from the command line's own parser (cli.build_parser), so it offers
exactly the commands, options and choices that the parser accepts and never goes stale:
`eval "$(nemoverify --completion bash)"`. zsh runs the bash script through its bashcompinit; fish gets
its own `complete` lines. Option values: the choices of a choice option, file names for a file or a
directory (PATH, FILE, COPY), nothing for free text (a version, a number)."""

from __future__ import annotations

import argparse
import shlex
from typing import Literal, get_args

Shell = Literal["bash", "zsh", "fish"]
SHELLS: tuple[Shell, ...] = get_args(Shell)

PATH_METAVARS = ("PATH", "FILE", "COPY")


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The command parsers of `parser`, by name, in the order of its help."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]


def _choices(action: argparse.Action) -> list[str]:
    return [str(c) for c in action.choices or ()]


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def _is_path(action: argparse.Action) -> bool:
    return action.metavar in PATH_METAVARS


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    if shell == "fish":
        return _fish(parser)
    bash = _bash(parser)
    if shell == "zsh":
        return (
            "(( $+functions[compdef] )) || { autoload -U +X compinit && compinit }\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + bash
        )
    return bash


def _bash(parser: argparse.ArgumentParser) -> str:
    prog = parser.prog
    subs = commands(parser)
    scopes = [("", parser), *subs.items()]
    values: dict[str, list[str]] = {}  # what completes the value of the option before the cursor
    for name, sub in scopes:
        for action in _options(sub):
            if not _takes_value(action):
                continue
            if _choices(action):
                then = f'COMPREPLY=($(compgen -W {shlex.quote(" ".join(_choices(action)))} -- "$cur"))'
            elif _is_path(action):
                then = "_nemoverify_files"
            else:
                then = "COMPREPLY=()"  # free text: a version, a number, JSON
            values.setdefault(then, []).extend(shlex.quote(f"{name} {flag}") for flag in action.option_strings)
    value_cases = [f"        {'|'.join(patterns)})\n            {then}; return ;;" for then, patterns in values.items()]
    options = [
        f"        {shlex.quote(name)}) options={shlex.quote(' '.join(f for a in _options(sub) for f in a.option_strings))} ;;"
        for name, sub in scopes
    ]
    return "\n".join(
        [
            f'# {prog} completion for bash, generated from its parser: eval "$({prog} --completion bash)"',
            "_nemoverify_files() {",
            "    local IFS=$'\\n'",
            "    compopt -o filenames 2>/dev/null",
            '    COMPREPLY=($(compgen -f -- "$cur"))',
            "}",
            "_nemoverify() {",
            '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" command="" options i',
            "    for ((i = 1; i < COMP_CWORD; i++)); do",
            f'        case "${{COMP_WORDS[i]}}" in {"|".join(subs)}) command="${{COMP_WORDS[i]}}"; break ;; esac',
            "    done",
            '    case "$command $prev" in',
            *value_cases,
            "    esac",
            '    case "$command" in',
            *options,
            "    esac",
            "    if [[ $cur == -* ]]; then",
            '        COMPREPLY=($(compgen -W "$options" -- "$cur"))',
            '    elif [[ -z "$command" ]]; then',
            f'        COMPREPLY=($(compgen -W {shlex.quote(" ".join(subs))} -- "$cur"))',
            "    else",
            "        _nemoverify_files",
            "    fi",
            "}",
            f"complete -F _nemoverify {prog}",
            "",
        ]
    )


def _fish(parser: argparse.ArgumentParser) -> str:
    prog = parser.prog
    subs = commands(parser)
    lines = [
        f"# {prog} completion for fish, generated from its parser: {prog} --completion fish | source",
        f"complete -c {prog} -f",
    ]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._get_subactions():  # each command, with its summary
                lines.append(
                    f"complete -c {prog} -n __fish_use_subcommand -a {shlex.quote(choice.dest)}"
                    f" -d {shlex.quote(choice.help or '')}"
                )
    scopes = [("__fish_use_subcommand", parser)]
    scopes += [(shlex.quote(f"__fish_seen_subcommand_from {name}"), sub) for name, sub in subs.items()]
    for condition, sub in scopes:
        for action in _options(sub):
            flags = " ".join(f"-l {f[2:]}" if f.startswith("--") else f"-s {f[1:]}" for f in action.option_strings)
            if not _takes_value(action):
                value = ""
            elif _choices(action):
                value = f" -x -a {shlex.quote(' '.join(_choices(action)))}"
            elif _is_path(action):
                value = " -r -F"
            else:
                value = " -x"
            lines.append(f"complete -c {prog} -n {condition} {flags}{value}")
    if subs:
        lines.append(f"complete -c {prog} -n {shlex.quote('__fish_seen_subcommand_from ' + ' '.join(subs))} -F")
    return "\n".join(lines) + "\n"
