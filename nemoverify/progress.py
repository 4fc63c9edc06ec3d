"""How long work reports its progress: a callable the CLI turns into a bar, and the library calls."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int], None]
"""progress(phase, bytes_done_since_last_call); phase is 'reference', 'candidate' or 'manifest'."""


def no_progress(phase: str, nbytes: int) -> None:
    """The default: nobody is watching."""
    return None
