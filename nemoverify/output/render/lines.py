"""Output that is not a terminal: a CI log, a file, a pipe. Lines are kept whole and unpadded there,
since a log reader searches and copies them; the rich layout is for a person's terminal."""

from __future__ import annotations

import os

from rich.console import Console, RenderableType


def a_terminal(console: Console) -> bool:
    """A person's terminal: the stream is a tty, or TTY_COMPATIBLE=1 says it is one (0: it is not).
    FORCE_COLOR asks for colour only: a CI log that sets it still gets lines."""
    said = os.environ.get("TTY_COMPATIBLE", "")
    if said in ("0", "1"):
        return said == "1"
    isatty = getattr(console.file, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def print_unpadded(console: Console, renderable: RenderableType) -> None:
    """`renderable` as the console lays it out, without the spaces rich pads each line with where
    the output is not a terminal."""
    if a_terminal(console):
        console.print(renderable)
        return
    with console.capture() as captured:
        console.print(renderable)
    console.out("\n".join(line.rstrip() for line in captured.get().splitlines()), highlight=False)
