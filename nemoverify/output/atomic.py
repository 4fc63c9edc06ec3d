"""Write a report or a manifest whole or not at all, and never over something that is not a file.

A regular file (or a new one) is written to a temporary file beside it, fsynced, then renamed over
it. A symlink is followed: the file it leads to is replaced and the link kept. A character device
(`/dev/null`, a terminal) or a FIFO is written through, as a shell's `>` would. `-` is standard
output; so is any path naming it (`/dev/stdout`, `/dev/fd/1`, `/proc/self/fd/1`, or a path to the very
pipe, file or socket it is), and a path naming standard error is standard error: the stream is written
as it is, never opened by path and never replaced (see `standard_stream`). Anything else (a block
device, a socket, a directory) is refused: nothing is ever renamed over a node that is not a regular
file.

The file gets the permissions a plain write would give it: an existing file keeps its mode, a new
one gets what the umask allows (reports and manifests are read by CI uploaders and other users; the
temporary file's private 0600 must not leak into the result).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from typing import TextIO


class NotWritable(OSError):
    """A destination that is neither a regular file, a character device, a FIFO nor `-`."""


STANDARD_STREAMS = {1: "standard output", 2: "standard error"}
_STREAM_NAMES = ("/dev/fd/{fd}", "/proc/self/fd/{fd}", "/proc/thread-self/fd/{fd}", "/proc/{pid}/fd/{fd}")


def _stream(fd: int) -> TextIO | None:
    return sys.stdout if fd == 1 else sys.stderr


def standard_stream(path: str) -> int | None:
    """1 if `path` is this process's standard output (`-`, `/dev/stdout`, `/dev/fd/1`,
    `/proc/self/fd/1`, or any path to the pipe, socket or regular file that standard output is),
    2 for standard error alike, else None.

    Such a path must be written through the stream, never opened by name: `/proc/self/fd/1` of a
    pipe resolves to `pipe:[N]`, which names nothing, and a regular file would be replaced under a
    shell's `>>`, losing what it held and what is written to it later. Nothing is opened here (a FIFO
    nobody reads must not block): the names are compared, then what os.stat finds with what the
    stream holds. A character device that is not named as a stream (`/dev/null`, a terminal) is left
    alone: written through by path it behaves the same, and `/dev/null` as standard output must not
    make `--json /dev/null --sarif /dev/null` two reports on one stream."""
    if path == "-":
        return 1
    if not path:
        return None
    name = os.path.abspath(path)
    if name.startswith("//"):  # normpath keeps a leading "//"; Linux reads it as "/"
        name = "/" + name.lstrip("/")
    pid = os.getpid()
    for fd, what in ((1, "stdout"), (2, "stderr")):
        if name == f"/dev/{what}" or name in {n.format(fd=fd, pid=pid) for n in _STREAM_NAMES}:
            return fd
    try:
        st = os.stat(path)  # a FIFO is not opened by stat
    except (OSError, ValueError):
        return None
    if stat.S_ISCHR(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return None
    for fd in STANDARD_STREAMS:
        try:
            fileno = _stream(fd).fileno()  # type: ignore[union-attr]
            if os.path.samestat(st, os.fstat(fileno)):
                return fd
        except (AttributeError, OSError, ValueError):  # no stream, or one with no descriptor
            continue
    return None


def write_stream(fd: int, payload: bytes) -> None:
    """Write `payload` to standard output (1) or standard error (2) as they are: appended to what
    was printed before (flushed first), in place, whatever they are."""
    stream = _stream(fd)
    if stream is None:
        raise OSError(errno.EBADF, f"{STANDARD_STREAMS[fd]} is closed")
    stream.flush()
    raw = getattr(stream, "buffer", None)
    if raw is None:
        stream.write(payload.decode("utf-8"))
        stream.flush()
        return
    raw.write(payload)
    raw.flush()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path: str) -> int:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return 0o666 & ~_umask()
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else 0o666 & ~_umask()


def write_atomic(path: str, data: str | bytes) -> None:
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd = standard_stream(path)
    if fd is not None:
        write_stream(fd, payload)
        return
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        mode: int | None = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        _write_through(target, payload)
    elif mode is None or stat.S_ISREG(mode):
        _replace(target, payload)
    else:
        raise _refused(mode)


def _write_through(path: str, payload: bytes) -> None:
    """Non-blocking open, so that a FIFO nobody reads is an error (ENXIO) rather than a hang; then
    blocking writes, so that a slow reader is waited for."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise NotWritable("it is a FIFO that no process is reading") from None
        raise
    try:
        os.set_blocking(fd, True)
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):  # replaced since it was looked at
            raise _refused(mode)
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _replace(path: str, payload: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    permissions = _mode_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), permissions)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        try:  # looked at again just before the rename: only a regular file (or nothing) is replaced
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = stat.S_IFREG
        if not stat.S_ISREG(mode):
            raise _refused(mode)
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C included: never leave the temporary file behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _refused(mode: int) -> OSError:
    if stat.S_ISDIR(mode):
        return IsADirectoryError("it is a directory")
    kind = {stat.S_IFBLK: "a block device", stat.S_IFSOCK: "a socket", stat.S_IFLNK: "a symlink"}.get(
        stat.S_IFMT(mode), "not a regular file"
    )
    return NotWritable(f"it is {kind}: nemoverify writes to a regular file, a character device, a FIFO or '-' only")
