"""Ctrl-C before a run has started: the process ends with the documented 130 and one line.

Python's own handler raises KeyboardInterrupt wherever the main thread happens to be, and during
the CLI's imports that is a traceback. So the `nemoverify` command takes SIGINT in the first
statement of the package (`nemoverify/__init__.py` imports this module first): only what the
interpreter runs before that (its own start-up and the environment's .pth files) is left to Python.
A program that imports the library keeps its own SIGINT handling. Inside a run, `cli.runtime.run`
hands SIGINT back to Python so that the passes stop and remove their partial files.
"""

import _signal  # the C module: `signal`'s Python wrapper spends milliseconds building enums first
import os
import sys
import time

STARTED = time.monotonic()  # the package's first instant: a command's elapsed time counts from here

INTERRUPTED = 130  # errors.ExitCode.INTERRUPTED, kept here so that this module imports nothing of ours


def interrupted_at_once(signum: int, frame: object) -> None:
    """SIGINT outside a run (while the CLI imports, parses, or prints): nothing to cancel or clean
    up, so the process ends at once."""
    sys.stderr.write("interrupted\n")
    os._exit(INTERRUPTED)


def _started_as_the_command() -> bool:
    """This process is `nemoverify ...` (the console script) or `python -m nemoverify` (while runpy
    imports the package, argv[0] is still "-m"): asked once, at the package's first statement."""
    first = sys.argv[0] if sys.argv else ""
    return first == "-m" or os.path.basename(first) == "nemoverify"


AS_THE_COMMAND = _started_as_the_command()


def running_as_the_command() -> bool:
    return AS_THE_COMMAND


def take_ctrl_c() -> None:
    """Install `interrupted_at_once`, unless SIGINT is not Python's default (ignored, as in a
    background job, or handled by whoever started us) or we are not on the main thread."""
    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        try:  # noqa: SIM105 (contextlib is an import more before Ctrl-C is taken)
            _signal.signal(_signal.SIGINT, interrupted_at_once)
        except ValueError:  # not the main thread: the caller's process, not ours to change
            pass


if AS_THE_COMMAND:
    take_ctrl_c()
