"""An overall deadline for runs that read object storage.

Per-call timeouts do not bound a run: a server that trickles a byte every few seconds never trips a
30 s read timeout, and a stalled read can leave threads blocked in `poll` long after the error is
printed. So a run that reads `s3://`, `gs://` or `az://` gets one deadline for all of it (README,
"Reliability"): past it, the run says so on stderr and the process ends with exit 3 at once,
whatever its threads (the streamer's native ones included) are blocked in. No report is written by
then: the deadline covers the reading, not the writing of results.

A run that fails before its deadline prints its error and exits as usual; should a reader thread
still blocked on the network keep the interpreter from exiting, the process ends with the error's
exit code after EXIT_GRACE_S instead of waiting on it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

from nemoverify.errors import ExitCode, redact

DEFAULT_STORAGE_TIMEOUT_S = 3600
EXIT_GRACE_S = 5.0
_owns_process = False  # set by the CLI's entry point: only a process of our own is ended


def own_process() -> None:
    """This process is a nemoverify run (`nemoverify ...`, `python -m nemoverify`): the deadline may
    end it. A program that calls the library or the CLI in-process (`cli.run`) keeps its process."""
    global _owns_process
    _owns_process = True


@contextlib.contextmanager
def storage_deadline(seconds: float | None, *paths: str | None) -> Iterator[None]:
    """Within the block, a run over object storage ends (exit 3) after `seconds` (None or 0: no
    deadline). Local paths get none: their reads end with the file."""
    from nemoverify.checkpoint.objectstore import is_object_url

    remote = [p for p in paths if p and is_object_url(p)]
    if not seconds or not remote or not _owns_process:
        yield
        return
    timer = threading.Timer(seconds, _expire, args=(seconds, remote[0]))
    timer.daemon = True
    timer.start()
    try:
        yield
    except BaseException as exc:
        timer.cancel()
        if not isinstance(exc, KeyboardInterrupt):  # Ctrl-C ends the process at once already
            code = getattr(exc, "exit_code", ExitCode.INVALID)
            grace = threading.Timer(EXIT_GRACE_S, _end, args=(int(code),))
            grace.daemon = True  # gone with the process when it exits normally
            grace.start()
        raise
    timer.cancel()


def _expire(seconds: float, url: str) -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    message = (
        f"error: {url}: the run passed its object-storage deadline of {seconds:g} s (--storage-timeout); "
        "nothing was verified\n"
    )
    with contextlib.suppress(Exception):
        sys.stderr.write(redact(message))
        sys.stderr.flush()
    _end(int(ExitCode.INVALID))


def _end(code: int) -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
