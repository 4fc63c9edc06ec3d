"""The start-up baseline: a minimal Typer app with nemoverify's five commands, its root options and
its help settings (rich markup, -h), and nothing behind them. `nemoverify --help` and `--version`
are held to at most 40 ms above this app's (bench.py)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="nemoverify",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(wanted: bool) -> None:
    if wanted:
        typer.echo("nemoverify 0")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("-V", "--version", callback=_version, is_eager=True)] = False,
) -> None:
    """Verify that a checkpoint reaches the model intact."""


def _command(name: str) -> None:
    def command(path: Annotated[str, typer.Argument(help="The checkpoint.")], quiet: bool = False) -> None:
        typer.echo(path)

    command.__name__ = name
    app.command(short_help=f"The {name} command.")(command)


for _name in ("check", "matrix", "inspect", "manifest", "verify"):
    _command(_name)

if __name__ == "__main__":
    app(prog_name="nemoverify")
