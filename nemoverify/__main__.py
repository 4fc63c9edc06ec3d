"""`python -m nemoverify` and the `nemoverify` command.

Until a run starts, Ctrl-C ends the process at once with the documented 130 (`interrupts`, taken
by the package's first statement); inside a run (`cli.runtime.run`), Ctrl-C raises
KeyboardInterrupt, which stops both passes.
"""

from __future__ import annotations

from nemoverify.interrupts import take_ctrl_c


def main() -> None:
    take_ctrl_c()  # already taken when started as the command; a caller of main() gets it too
    from nemoverify.cli.app import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
