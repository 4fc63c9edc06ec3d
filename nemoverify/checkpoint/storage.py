"""Where a checkpoint's files live. Local directories here; object storage plugs in beside it.

Every name comes from the checkpoint (an index's weight_map is user-controlled input), so each is
resolved through `locate`, which refuses names that would leave the checkpoint. Only regular files
are opened (`open_regular`): a FIFO or a device named like a shard would block or never end. Each
shard is opened once and every read of it goes through that one descriptor, so a file replaced
under the run is never half-read; `changed` says whether the path still names what was read.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import stat
import threading
import weakref
from typing import Protocol

from nemoverify.checkpoint.problems import CONTROL_CHARACTER, Problem

OBJECT_SCHEMES = ("s3://", "gs://", "az://")


def is_object_url(path: str) -> bool:
    """Whether `path` names object storage (read by `checkpoint.objectstore`, imported only then)."""
    return path.startswith(OBJECT_SCHEMES)


class UnsafeName(Exception):
    """A file name that would resolve outside the checkpoint."""


class NotRegularFile(OSError):
    """A FIFO, socket or device where a file was expected: opening or reading it could block forever."""


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def _require_regular(path: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", path)
    if not stat.S_ISREG(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise NotRegularFile(f"it is {kind}, not a regular file; nemoverify opens regular files only")


class TooLarge(OSError):
    """A JSON file beyond nemoverify's bound for it: refused before it is read."""


# Bounds on the JSON files a checkpoint holds (README, "Reliability: bounds and guarantees"): each
# is parsed whole, at about ten times its size in memory. Real ones are far below: a config.json is
# kilobytes, an index about 100 bytes a tensor (2.5 MB for 25,000 tensors).
TEXT_LIMITS = {"config.json": 16 << 20, "model.safetensors.index.json": 256 << 20}
DEFAULT_TEXT_LIMIT = 16 << 20


def text_limit(name: str) -> int:
    return TEXT_LIMITS.get(name.rsplit("/", 1)[-1], DEFAULT_TEXT_LIMIT)


def too_large(size: int, limit: int) -> TooLarge:
    return TooLarge(
        f"it is {size:,} bytes, beyond nemoverify's bound of {limit:,} bytes for this file "
        "(see the README's reliability section); refused, not read"
    )


def read_bounded(path: str, limit: int) -> bytes:
    """The whole of a regular file of at most `limit` bytes (a file growing meanwhile still stops
    at the bound); beyond it, TooLarge before a byte is read."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise too_large(size, limit)
        data = pread_exactly(fd, 0, limit + 1)
        if len(data) > limit:
            raise too_large(len(data), limit)
        return data
    finally:
        os.close(fd)


def open_regular(path: str) -> int:
    """A read-only descriptor of `path`, which must be a regular file: checked before opening (no
    open() of a FIFO, which blocks until a writer comes) and after, on what was opened (non-blocking,
    so a FIFO swapped in between cannot block either)."""
    _require_regular(path, os.stat(path).st_mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _require_regular(path, os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def pread_exactly(fd: int, offset: int, length: int) -> bytes:
    """Up to `length` bytes at `offset`; fewer only at the end of the file."""
    parts: list[bytes] = []
    while length > 0:
        data = os.pread(fd, length, offset)
        if not data:
            break
        parts.append(data)
        offset += len(data)
        length -= len(data)
    return b"".join(parts)


Fingerprint = tuple[int, ...]
"""What identifies a file's content cheaply: (size, ...) where the rest is the store's own (local:
mtime, ctime, device, inode; object storage: a checksum of the ETag or generation)."""


def _local_fingerprint(st: os.stat_result) -> Fingerprint:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_dev, st.st_ino


class Storage(Protocol):
    root: str

    def list_safetensors(self) -> list[str]: ...
    def locate(self, name: str) -> str: ...
    def size(self, name: str) -> int: ...
    def read_at(self, name: str, offset: int, length: int) -> bytes: ...
    def read_text(self, name: str) -> str | None: ...
    def fingerprint(self, name: str) -> Fingerprint: ...
    def changed(self, name: str, fingerprint: Fingerprint) -> str | None: ...


class LocalStorage:
    """A local directory. `contain_within` widens containment (the Hugging Face cache links
    snapshot files into its sibling `blobs/` directory)."""

    def __init__(self, root: str, contain_within: str | None = None) -> None:
        self.root = os.path.normpath(root)  # as the user spelled it: what messages and reports show
        self._jail = os.path.realpath(contain_within or root)
        self._fds: dict[str, int] = {}  # one descriptor per file, for the life of this object
        self._lock = threading.Lock()
        weakref.finalize(self, _close_all, self._fds)

    def list_safetensors(self) -> list[str]:
        """Every `*.safetensors` here, in glob order: the call vLLM's Run:ai loader makes, so the files
        and their order are the ones it streams (directory order, which no index changes)."""
        return [os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(self.root), "*.safetensors"))]

    def locate(self, name: str) -> str:
        if not name or os.path.isabs(name) or "\\" in name or ".." in name.split("/"):
            raise UnsafeName(f"file name {name!r} escapes the checkpoint directory; refused")
        if CONTROL_CHARACTER.search(name):  # a NUL would fail every system call with ValueError
            raise UnsafeName(f"file name {name!r} holds a control character; refused")
        path = os.path.join(self.root, name)
        real = os.path.realpath(path)
        if os.path.commonpath([real, self._jail]) != self._jail:
            raise UnsafeName(f"{name!r} is a link to {real}, outside the checkpoint; refused, not followed")
        return path

    def fd(self, name: str) -> int:
        """The one read-only descriptor of this file, opened on first use (a regular file only):
        every read of it, by any thread, goes through it (positioned reads share no offset)."""
        with self._lock:
            fd = self._fds.get(name)
            if fd is None:
                fd = self._fds[name] = open_regular(self.locate(name))
            return fd

    def close(self) -> None:
        with self._lock:
            _close_all(self._fds)

    def size(self, name: str) -> int:
        return self.fingerprint(name)[0]

    def fingerprint(self, name: str) -> Fingerprint:
        """Of the file as opened (size, mtime, ctime, device, inode): what every read will see."""
        return _local_fingerprint(os.fstat(self.fd(name)))

    def changed(self, name: str, fingerprint: Fingerprint) -> str | None:
        """Why this file is no longer the one fingerprinted, or None: written to (size, mtime or
        ctime: ctime cannot be set back), or its name now leads to another file (replaced, as
        `os.replace` or an upload tool's rename does)."""
        held = _local_fingerprint(os.fstat(self.fd(name)))
        try:
            now = _local_fingerprint(os.stat(self.locate(name)))
        except FileNotFoundError:
            return "it was removed"
        if now[3:] != fingerprint[3:]:
            return "it was replaced by another file"
        if held != fingerprint or now != fingerprint:
            what = "size" if now[0] != fingerprint[0] else "modification or change time"
            return f"it was written to ({what}: size {fingerprint[0]:,} -> {now[0]:,} bytes)"
        return None

    def read_at(self, name: str, offset: int, length: int) -> bytes:
        return pread_exactly(self.fd(name), offset, length)

    def allocated(self, name: str) -> int:
        """Bytes the file holds on disk (its allocated blocks), as opposed to its length."""
        return os.fstat(self.fd(name)).st_blocks * 512

    def read_text(self, name: str) -> str | None:
        """A JSON file of the checkpoint (config, index): regular files only, within `text_limit`."""
        try:
            return read_bounded(self.locate(name), text_limit(name)).decode("utf-8")
        except FileNotFoundError:
            return None


# A local shard whose blocks on disk hold under 1% of the tensor data its header declares is sparse:
# most of its "data" is holes that read as zeros (a copy cut short and extended, or a file made to
# make a verifier read terabytes). It is refused before any work, by every command: no real model's
# weights are 99% zeros, and hashing the holes would read them byte by byte. Small shards are left
# alone: their header alone fills blocks.
SPARSE_FRACTION = 0.01
SPARSE_MIN_DECLARED = 64 << 20


def sparse_shards(storage: Storage, shards: list[tuple[str, str, int]]) -> list[Problem]:
    """An error for each (name, location, declared data bytes) that is sparse on a local disk: one
    shard on its own, or the shards together (a terabyte of holes split into shards each under the
    size judged alone is the same incomplete copy)."""
    allocated_of = getattr(storage, "allocated", None)
    if allocated_of is None:  # object storage has no holes to find
        return []
    held: dict[str, int] = {}
    for name, _, _ in shards:
        try:
            held[name] = allocated_of(name)
        except OSError:
            continue
    judged = [(n, at, declared) for n, at, declared in shards if n in held]
    total_declared = sum(declared for _, _, declared in judged)
    together = total_declared >= SPARSE_MIN_DECLARED and sum(held.values()) < total_declared * SPARSE_FRACTION
    found = []
    for name, location, declared in judged:
        allocated = held[name]
        # No block at all, not even the header's: a filesystem that does not count blocks (some FUSE
        # mounts), not a file of holes.
        if not 0 < allocated < declared * SPARSE_FRACTION:
            continue
        if declared >= SPARSE_MIN_DECLARED or together:
            found.append(
                Problem(
                    "shard-sparse",
                    location,
                    f"declares {declared:,} bytes of tensor data but holds {allocated:,} on disk: a sparse "
                    "file, whose holes read as zeros: an incomplete copy; refused before reading it",
                )
            )
    return found


def _close_all(fds: dict[str, int]) -> None:
    for fd in fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()
