"""Bounds on a run that reads object storage: an overall deadline, and a minimum rate for every read.

Per-call timeouts do not bound a run: a server that trickles a byte every few seconds never trips a
30 s read timeout, and a stalled read can leave threads blocked in `poll` long after the error is
printed. So a run that reads `s3://`, `gs://` or `az://` is watched by one thread for two things
(docs/reliability.md):

- the deadline (`--storage-timeout`, an hour by default) for all of the run;
- the minimum rate (`--storage-min-rate`, 1 MiB every 30 s by default): every request to the store
  (a listing, a HEAD, a ranged GET) must deliver at least that many bytes, or complete, within each
  window. The readers report each request (`transfer`) and the bytes it delivers as they arrive.
  The Run:ai streamer's reads, made by its native client, are counted by the kernel instead: the
  bytes this process's TCP connections have received (TCP_INFO), while it streams.

Past either, the run says so on stderr, naming the object and the server, writes the reports it
was asked for (a report without a verdict, `storage-error`: CI's `if: always()` steps still find
them), and the process ends with exit 3 at once, whatever its threads (the streamer's native ones
included) are blocked in. Ranks of a distributed run are processes of their own: the deadline
bounds their reads.

A run that fails before its deadline prints its error and exits as usual; should a reader thread
still blocked on the network keep the interpreter from exiting, the process ends with the error's
exit code after EXIT_GRACE_S instead of waiting on it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from nemoverify.errors import ExitCode, StorageError
from nemoverify.redaction import redact

DEFAULT_STORAGE_TIMEOUT_S = 3600
MAX_STORAGE_TIMEOUT_S = 7 * 24 * 3600
EXIT_GRACE_S = 5.0
_owns_process = False  # set by the CLI's entry point: only a process of our own is ended


@dataclass(frozen=True)
class MinimumRate:
    """At least `size` bytes (or the end of the request) every `seconds`, for each request."""

    size: int = 1 << 20
    seconds: float = 30.0

    def __str__(self) -> str:
        unit, scale = next((u, k) for u, k in (("MiB", 1 << 20), ("KiB", 1 << 10), ("", 1)) if self.size % k == 0)
        return f"{self.size // scale}{unit}/{self.seconds:g}s"


DEFAULT_MINIMUM_RATE = MinimumRate()


class _Request:
    """One request in flight: what it reads, and when it last delivered `size` bytes (or began).
    One `by_sockets` is counted by the bytes the process's TCP connections receive."""

    __slots__ = ("what", "since", "got", "size", "by_sockets", "received")

    def __init__(self, what: str, size: int, by_sockets: bool = False) -> None:
        self.what, self.size, self.got, self.since = what, size, 0, time.monotonic()
        self.by_sockets, self.received = by_sockets, -1

    def delivered(self, n: int) -> None:
        self.got += n
        if self.got >= self.size:
            self.got = 0
            self.since = time.monotonic()


_in_flight: dict[int, _Request] = {}
_in_flight_lock = threading.Lock()
_rate = DEFAULT_MINIMUM_RATE


@contextlib.contextmanager
def transfer(what: str, by_sockets: bool = False) -> Iterator[Callable[[int], None]]:
    """A request to object storage, `what` naming the object and the server: within the block it
    counts as in flight; call the function it gives with each piece's length as the bytes arrive
    (or, `by_sockets`, let the watch count what the process's connections receive: for a native
    client whose reads Python never sees). Cheap where nothing watches (a program using the library)."""
    request = _Request(what, _rate.size, by_sockets)
    with _in_flight_lock:
        _in_flight[id(request)] = request
    try:
        yield request.delivered
    finally:
        with _in_flight_lock:
            _in_flight.pop(id(request), None)


def own_process() -> None:
    """This process is a nemoverify run (`nemoverify ...`, `python -m nemoverify`): the watch may
    end it. A program that calls the library or the CLI in-process (`cli.app.run`) keeps its process."""
    global _owns_process
    _owns_process = True


@contextlib.contextmanager
def watch_storage(
    seconds: float | None,
    remote: list[str],
    rate: MinimumRate | None = DEFAULT_MINIMUM_RATE,
    on_expiry: Callable[[StorageError], None] | None = None,
) -> Iterator[None]:
    """Within the block, a run that reads the object-storage URLs `remote` ends (exit 3) after
    `seconds` (None or 0: no deadline), or when a request delivers less than `rate` (None: no
    minimum). With no remote URL nothing is watched: local reads end with the file. `on_expiry` is
    called with the error, on the watching thread, just before the process ends (the CLI writes its
    reports there)."""
    global _rate
    if not (seconds or rate) or not remote or not _owns_process:
        yield
        return
    _rate = rate or DEFAULT_MINIMUM_RATE
    # Held by whichever ends first: the block (which then stops the watch) or the watch (which then
    # ends the process); never both, so no report is written twice or over a verdict's.
    settled = threading.Lock()
    stop = threading.Event()
    watcher = threading.Thread(
        target=_watch, args=(seconds, rate, remote[0], stop, settled, on_expiry), daemon=True, name="storage-watch"
    )
    watcher.start()
    try:
        yield
    except BaseException as exc:
        settled.acquire()
        stop.set()
        if not isinstance(exc, KeyboardInterrupt):  # Ctrl-C ends the process at once already
            code = getattr(exc, "exit_code", ExitCode.INVALID)
            grace = threading.Timer(EXIT_GRACE_S, _end, args=(int(code),))
            grace.daemon = True  # gone with the process when it exits normally
            grace.start()
        raise
    settled.acquire()
    stop.set()


def _watch(
    seconds: float | None,
    rate: MinimumRate | None,
    url: str,
    stop: threading.Event,
    settled: threading.Lock,
    on_expiry: Callable[[StorageError], None] | None,
) -> None:
    started = time.monotonic()
    tick = min(1.0, (rate.seconds / 10) if rate else 1.0)
    sockets = _SocketBytes()
    while not stop.wait(tick):
        now = time.monotonic()
        if seconds and now - started >= seconds:
            why = f"{url}: the run passed its object-storage deadline of {seconds:g} s (--storage-timeout)"
            return _expire(StorageError(f"{why}; nothing was verified"), settled, on_expiry)
        if rate:
            with _in_flight_lock:
                requests = list(_in_flight.values())
            if any(r.by_sockets for r in requests):
                received = sockets.received()
                for r in requests:
                    if r.by_sockets and received is not None and (r.received < 0 or received - r.received >= r.size):
                        r.received, r.since = received, now
            stalled = [r for r in requests if now - r.since > rate.seconds]
            if stalled:
                why = (
                    f"{stalled[0].what}: the server delivered less than {rate.size:,} bytes in {rate.seconds:g} s "
                    f"(--storage-min-rate {rate}): a stalled or trickling store"
                )
                return _expire(StorageError(f"{why}; nothing was verified"), settled, on_expiry)


def _expire(error: StorageError, settled: threading.Lock, on_expiry: Callable[[StorageError], None] | None) -> None:
    if not settled.acquire(blocking=False):
        return  # the run ended first: its own outcome stands
    # Started first: a stream or a report that blocks (a full pipe nobody reads) cannot hold the exit.
    backstop = threading.Timer(EXIT_GRACE_S, _end, args=(int(ExitCode.INVALID),))
    backstop.daemon = True
    backstop.start()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
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


def piece_size() -> int:
    """The most a reader asks of a store in one blocking read: the minimum rate's size, so that a
    piece that takes longer than its window is a stall and not the piece's size."""
    return _rate.size


_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_BYTES_RECEIVED = struct.Struct("=Q")  # struct tcp_info's tcpi_bytes_received (Linux 4.1 on)
_BYTES_RECEIVED_AT = 128


class _SocketBytes:
    """The bytes this process's TCP connections have received since it was made, from the kernel's
    own count on each (TCP_INFO); connections closed meanwhile keep what they had added."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}  # socket inode -> its count at the last look
        self.total = 0

    def received(self) -> int | None:
        """The running total, or None where the kernel does not say (not Linux)."""
        try:
            fds = os.listdir("/proc/self/fd")
        except OSError:
            return None
        now: dict[str, int] = {}
        for fd in fds:
            with contextlib.suppress(OSError, ValueError):
                target = os.readlink(f"/proc/self/fd/{fd}")
                if not target.startswith("socket:"):
                    continue
                count = _bytes_received(int(fd))
                if count is not None:
                    now[target] = count
        for inode, count in now.items():
            self.total += max(0, count - self.seen.get(inode, 0))
        self.seen = now
        return self.total


def _bytes_received(fd: int) -> int | None:
    """tcpi_bytes_received of a TCP socket (None for any other kind)."""
    sock = socket.socket(fileno=os.dup(fd))
    try:
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return None
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 232)
    except OSError:
        return None
    finally:
        sock.close()
    if len(info) < _BYTES_RECEIVED_AT + _BYTES_RECEIVED.size:
        return None
    return int(_BYTES_RECEIVED.unpack_from(info, _BYTES_RECEIVED_AT)[0])
