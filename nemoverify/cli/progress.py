"""Progress bars on a terminal: one per phase, fed from any thread, handed to rich in batches."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from nemoverify.cli.runtime import stderr
from nemoverify.progress import Progress


@contextlib.contextmanager
def progress(enabled: bool, totals: dict[str, int]) -> Iterator[Progress]:
    """A progress bar per phase on a terminal's stderr (nothing elsewhere, or when `enabled` is False)."""
    err = stderr() if enabled else None
    if err is None or not err.is_terminal:
        yield lambda phase, n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bars
    from rich.text import Text

    class Amount(ProgressColumn):
        """Bytes and their rate, except for the profiles of a matrix, which are counted: "3/12 streamed"."""

        def __init__(self) -> None:
            super().__init__()
            self.bytes, self.speed = DownloadColumn(binary_units=True), TransferSpeedColumn()

        def render(self, task):  # type: ignore[no-untyped-def]
            if task.description == "profiles":
                return Text(f"{task.completed:.0f}/{task.total:.0f} streamed")
            return Text.assemble(self.bytes.render(task), " ", self.speed.render(task))

    with Bars(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        Amount(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bars:
        tasks = {phase: bars.add_task(phase, total=total) for phase, total in totals.items()}
        batched = Batched(lambda phase, n: bars.advance(tasks[phase], n), tasks)
        yield batched
        batched.flush()


class Batched:
    """Progress from any thread, handed on at most every PROGRESS_EVERY_S: a rich update per tensor
    (25,000 of them) would cost more than hashing them."""

    PROGRESS_EVERY_S = 0.05

    def __init__(self, advance: Callable[[str, int], None], phases: Iterable[str]) -> None:
        self._advance = advance
        self._pending = dict.fromkeys(phases, 0)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, phase: str, nbytes: int) -> None:
        if phase not in self._pending:
            return
        with self._lock:
            self._pending[phase] += nbytes
            if time.monotonic() - self._last < self.PROGRESS_EVERY_S:
                return
        self.flush()

    def flush(self) -> None:
        with self._lock:
            pending = [(p, n) for p, n in self._pending.items() if n]
            self._pending = dict.fromkeys(self._pending, 0)
            self._last = time.monotonic()
        for phase, n in pending:
            self._advance(phase, n)
