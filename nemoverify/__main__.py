"""`python -m nemoverify` and the `nemoverify` command.

Until a run starts, Ctrl-C ends the process at once with the documented 130
(`cli.runtime.interrupted_at_once`): while the CLI imports and parses, a KeyboardInterrupt would
otherwise end it with a Python traceback. Inside a run (`cli.runtime.run`), Ctrl-C raises
KeyboardInterrupt, which stops both passes.
"""

from __future__ import annotations

import signal


def main() -> None:
    from nemoverify.cli.runtime import interrupted_at_once

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not when the caller ignores it
        signal.signal(signal.SIGINT, interrupted_at_once)
    from nemoverify.cli.app import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
