"""`python -m nemoverify` and the `nemoverify` command.

Until a run starts, Ctrl-C ends the process at once with the documented 130 (`errors.
interrupted_at_once`): while the CLI imports (typer, rich: a few hundred milliseconds) it would
otherwise print a Python traceback and die with -2, and while Typer parses it would say 'Aborted!'
and exit 1. Inside a run (`cli._run`), Ctrl-C raises KeyboardInterrupt, which stops both passes.
"""

from __future__ import annotations

import signal


def main() -> None:
    from nemoverify.errors import interrupted_at_once

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when the caller ignores it
        signal.signal(signal.SIGINT, interrupted_at_once)
    from nemoverify.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
