"""Pure: what a checkpoint directory stores, read from the safetensors files themselves (header +
raw bytes), without torch. A checkpoint tensor is identified by (file, name): a stray shard can hold a
second tensor of the same name.

    stored_tensors(dir) -> [StoredTensor(file, name, dtype, shape, digest)]
"""

from __future__ import annotations

import glob
import json
import os
import struct
from dataclasses import dataclass

try:
    import xxhash

    def digest_bytes(b: bytes | memoryview) -> str:
        return "xxh3_128:" + xxhash.xxh3_128_hexdigest(b)
except ImportError:  # pragma: no cover - the harness venvs have xxhash
    import hashlib

    def digest_bytes(b: bytes | memoryview) -> str:
        return "sha256:" + hashlib.sha256(b).hexdigest()


@dataclass(frozen=True)
class StoredTensor:
    file: str  # basename
    name: str
    dtype: str
    shape: tuple[int, ...]
    digest: str

    @property
    def key(self) -> str:
        """The tensor's id in results: the name, or name@file where the name is not unique."""
        return self.name


def read_header(path: str) -> tuple[dict, int]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return header, 8 + n


def stored_tensors(directory: str) -> list[StoredTensor]:
    """Every tensor of every *.safetensors directly in `directory` (what the Run:ai listing streams:
    not recursive, hidden files excluded), in file-name order, then header order."""
    out: list[StoredTensor] = []
    for path in sorted(glob.glob(os.path.join(directory, "*.safetensors"))):
        header, base = read_header(path)
        with open(path, "rb") as f:
            data = f.read()
        for name, meta in header.items():
            if name == "__metadata__":
                continue
            a, b = meta["data_offsets"]
            out.append(
                StoredTensor(os.path.basename(path), name, meta["dtype"], tuple(meta["shape"]), digest_bytes(memoryview(data)[base + a : base + b]))
            )
    return out


def tensor_ids(stored: list[StoredTensor]) -> dict[tuple[str, str], str]:
    """(file, name) -> the id used in results: the name, or `name@file` when the name occurs in
    more than one file."""
    count: dict[str, int] = {}
    for t in stored:
        count[t.name] = count.get(t.name, 0) + 1
    return {(t.file, t.name): (t.name if count[t.name] == 1 else f"{t.name}@{t.file}") for t in stored}
