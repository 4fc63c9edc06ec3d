"""`python -m nemoverify` and the `nemoverify` command.

Until a run starts, Ctrl-C ends the process at once with the documented 130 (`errors.
interrupted_at_once`): while the CLI imports and parses (the library's modules and argparse, tens of
milliseconds) a KeyboardInterrupt would otherwise end it with a Python traceback and a death by
SIGINT (-2), as argparse lets it through. Inside a run (`cli._run`), Ctrl-C raises
KeyboardInterrupt, which stops both passes.
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
