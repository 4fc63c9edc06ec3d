"""An overall deadline for runs that read object storage.

Per-call timeouts do not bound a run: a server that trickles a byte every few seconds never trips a
30 s read timeout, and a stalled read can leave threads blocked in `poll` long after the error is
printed. So a run that reads `s3://`, `gs://` or `az://` gets one deadline for all of it (README,
"Reliability"): past it, the run says so on stderr, writes the reports it was asked for (a report
without a verdict, `storage-error`: CI's `if: always()` steps still find them), and the process ends
with exit 3 at once, whatever its threads (the streamer's native ones included) are blocked in.

A run that fails before its deadline prints its error and exits as usual; should a reader thread
still blocked on the network keep the interpreter from exiting, the process ends with the error's
exit code after EXIT_GRACE_S instead of waiting on it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator

from nemoverify.checkpoint.objectstore import is_object_url
from nemoverify.errors import ExitCode, StorageError
from nemoverify.redaction import redact

DEFAULT_STORAGE_TIMEOUT_S = 3600
EXIT_GRACE_S = 5.0
_owns_process = False  # set by the CLI's entry point: only a process of our own is ended


def own_process() -> None:
    """This process is a nemoverify run (`nemoverify ...`, `python -m nemoverify`): the deadline may
    end it. A program that calls the library or the CLI in-process (`cli.run`) keeps its process."""
    global _owns_process
    _owns_process = True


@contextlib.contextmanager
def storage_deadline(
    seconds: float | None, *paths: str | None, on_expiry: Callable[[StorageError], None] | None = None
) -> Iterator[None]:
    """Within the block, a run over object storage ends (exit 3) after `seconds` (None or 0: no
    deadline). Local paths get none: their reads end with the file. `on_expiry` is called with the
    error, on the timer's thread, just before the process ends (the CLI writes its reports there)."""

    remote = [p for p in paths if p and is_object_url(p)]
    if not seconds or not remote or not _owns_process:
        yield
        return
    # Held by whichever ends first: the block (which then cancels the timer) or the expiry (which
    # then ends the process); never both, so no report is written twice or over a verdict's.
    settled = threading.Lock()
    timer = threading.Timer(seconds, _expire, args=(seconds, remote[0], settled, on_expiry))
    timer.daemon = True
    timer.start()
    try:
        yield
    except BaseException as exc:
        settled.acquire()
        timer.cancel()
        if not isinstance(exc, KeyboardInterrupt):  # Ctrl-C ends the process at once already
            code = getattr(exc, "exit_code", ExitCode.INVALID)
            grace = threading.Timer(EXIT_GRACE_S, _end, args=(int(code),))
            grace.daemon = True  # gone with the process when it exits normally
            grace.start()
        raise
    settled.acquire()
    timer.cancel()


def _expire(
    seconds: float, url: str, settled: threading.Lock, on_expiry: Callable[[StorageError], None] | None
) -> None:
    if not settled.acquire(blocking=False):
        return  # the run ended first: its own outcome stands
    # Started first: a stream or a report that blocks (a full pipe nobody reads) cannot hold the exit.
    backstop = threading.Timer(EXIT_GRACE_S, _end, args=(int(ExitCode.INVALID),))
    backstop.daemon = True
    backstop.start()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    error = StorageError(
        f"{url}: the run passed its object-storage deadline of {seconds:g} s (--storage-timeout); nothing was verified"
    )
    with contextlib.suppress(Exception):
        sys.stderr.write(redact(f"error: {error}\n"))
        sys.stderr.flush()
    if on_expiry is not None:
        with contextlib.suppress(Exception):
            on_expiry(error)
    _end(int(ExitCode.INVALID))


def _end(code: int) -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
