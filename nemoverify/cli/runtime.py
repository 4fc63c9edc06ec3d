"""The process around one run of one command: Ctrl-C, the torch import, the cycle collector, the
object-storage deadline, and the one place where an error becomes a message and an exit code. A run
that ends without a verdict (exit 3, or 4 for a crash) still leaves every output it was asked for
(`leave`); a usage error (2) leaves none, being found before any work.

Exit codes: 0 verified, 1 verification failed, 2 usage error, 3 invalid or unreadable checkpoint
(or storage, or a failed rank), 4 internal error (a bug), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

from nemoverify.errors import ExitCode, NemoverifyError
from nemoverify.interrupts import interrupted_at_once
from nemoverify.redaction import redact
from nemoverify.storage_watch import DEFAULT_MINIMUM_RATE, MinimumRate, watch_storage

if TYPE_CHECKING:
    from rich.console import Console

T = TypeVar("T")
Leave = Callable[[BaseException], None]  # writes what a run ended by this error still owes its caller


def stdout() -> Console:
    return _console()(highlight=False, soft_wrap=False)


def stderr() -> Console:
    return _console()(stderr=True, highlight=False)


def _console() -> type[Console]:
    """rich's Console (imported where something is printed), but a broken pipe is exit 141, as
    shells report SIGPIPE: rich's own answer is 1, the code of a failed verification."""
    from rich.console import Console

    class PipedConsole(Console):
        def on_broken_pipe(self) -> None:
            with contextlib.suppress(OSError):  # nothing is flushed to the closed pipe at exit
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(int(ExitCode.BROKEN_PIPE))

    return PipedConsole


def escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def fail(message: str, code: ExitCode) -> SystemExit:
    """Say `message` as an error on stderr; the SystemExit to raise (or drop, where the run's own
    outcome decides the code)."""
    stderr().print(f"[bold red]error[/]: {escape(redact(message))}", markup=True, soft_wrap=True)
    return SystemExit(int(code))


def run(
    work: Callable[[], T],
    *,
    leave: Leave | None = None,
    needs_torch: bool = False,
    storage_timeout: float = 0,
    storage_min_rate: MinimumRate | None = DEFAULT_MINIMUM_RATE,
    paths: Iterable[str | None] = (),
) -> T:
    """`work`, with every exception turned into its message and exit code. `leave` writes the
    outputs of a run an error ended (not a usage error). Where `paths` name object storage,
    `storage_timeout` bounds the whole run and `storage_min_rate` each request to the store
    (`storage_watch`)."""
    # Imported by a run, not by `--help` (benchmarks/bench.py, start-up).
    from nemoverify.checkpoint.problems import InvalidCheckpoint
    from nemoverify.checkpoint.storage import is_object_url

    with _interruptible():
        try:
            if needs_torch:
                _import_torch(say=stderr())
            # Everything imported so far (torch's hundreds of thousands of objects) lives as long as the
            # process: frozen, the cycle collector stops walking it each time a run allocates its tens
            # of thousands of observations (a 24,000-tensor header parse: 0.33 s -> 0.13 s).
            gc.freeze()
            remote = [p for p in paths if p and is_object_url(p)]
            with watch_storage(storage_timeout, remote, storage_min_rate, on_expiry=leave):
                return work()
        except KeyboardInterrupt:
            stderr().print("interrupted")
            raise SystemExit(int(ExitCode.INTERRUPTED)) from None
        except InvalidCheckpoint as exc:
            err = stderr()
            err.print(f"[bold red]error[/]: {escape(exc.root)}: {exc.what} ({len(exc.problems)} problem(s))")
            for p in exc.problems:
                err.print(f"  [{p.rule}] {redact(p.render())}", markup=False, soft_wrap=True)
            _leave(leave, exc)
            raise SystemExit(int(exc.exit_code)) from None
        except NemoverifyError as exc:
            if exc.exit_code is not ExitCode.USAGE:
                _leave(leave, exc)
            raise fail(str(exc), exc.exit_code) from None
        except Exception as exc:  # a bug, or a failure we did not foresee: never a verdict, never "invalid"
            if os.environ.get("NEMOVERIFY_DEBUG"):
                traceback.print_exc()
            _leave(leave, exc)
            raise fail(
                f"internal error, unexpected {type(exc).__name__}: {exc} (a bug in nemoverify, not a verdict on the "
                "checkpoint; set NEMOVERIFY_DEBUG=1 for the traceback and report it)",
                ExitCode.CRASH,
            ) from None


def _leave(leave: Leave | None, error: BaseException) -> None:
    if leave is not None:
        leave(error)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Inside a run, Ctrl-C raises KeyboardInterrupt (the passes stop, partial files go); outside it,
    the entry point's handler ends the process at once with 130."""
    outside = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT)
    if outside is not interrupted_at_once:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, interrupted_at_once)


def _import_torch(say: Console | None = None) -> None:
    """Import torch with SIGINT held back: Ctrl-C during its C++ initialisation aborts the process
    ("exception not rethrown") instead of raising KeyboardInterrupt. A Ctrl-C that arrives meanwhile
    is delivered as soon as the import is done. On a terminal (`say`), the seconds it takes are
    said, not left silent."""
    if "torch" in sys.modules:
        return
    saying = (
        say.status("starting: importing torch", spinner="dots")
        if say is not None and say.is_terminal
        else contextlib.nullcontext()
    )
    with saying:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            import torch  # noqa: F401
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
