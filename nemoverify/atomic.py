"""Write a report or a manifest whole or not at all, and never over something that is not a file.

A regular file (or a new one) is written to a temporary file beside it, fsynced, then renamed over
it. A symlink is followed: the file it leads to is replaced and the link kept. A character device
(`/dev/null`, `/dev/stdout` and its links, a terminal) or a FIFO is written through, as a shell's `>`
would; `-` is standard output. Anything else (a block device, a socket, a directory) is refused:
nothing is ever renamed over a node that is not a regular file.

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


class NotWritable(OSError):
    """A destination that is neither a regular file, a character device, a FIFO nor `-`."""


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
    if path == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
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
