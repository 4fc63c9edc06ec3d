"""Digests of tensor bytes, and of sets of tensors.

A tensor digest is the hash of the tensor's raw bytes exactly as the safetensors file stores them
(C order, little-endian): recomputable with any hashing tool over `file[8 + N + begin : 8 + N + end]`.
A root digest hashes one line per tensor, `name\\tdtype\\tshape\\tdigest\\n`, sorted by name, so it
covers names, types and shapes as well as bytes. The algorithm name records everything that changes
a digest, and every report and manifest carries it.
"""

from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

# xxh3-128: fast and non-cryptographic, right for comparing two loaders on one machine.
# blake3 / sha256: cryptographic, for manifests that must resist a deliberate substitution.
ALGORITHMS = ("xxh3-128", "blake3", "sha256")
DEFAULT_CHECK_ALGORITHM = "xxh3-128"
DEFAULT_MANIFEST_ALGORITHM = "sha256"


class Hasher(Protocol):
    def update(self, data: memoryview | bytes, /) -> object: ...
    def hexdigest(self) -> str: ...


def new_hasher(algorithm: str) -> Hasher:
    if algorithm == "xxh3-128":
        import xxhash

        return xxhash.xxh3_128()
    if algorithm == "blake3":
        import blake3

        return blake3.blake3()  # type: ignore[no-any-return]
    if algorithm == "sha256":
        return hashlib.sha256()
    raise ValueError(f"unknown hash algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")


def digest_tensor(algorithm: str, tensor: torch.Tensor) -> str:
    """Digest of a tensor's bytes, read in place where it is a dense CPU tensor (no copy)."""
    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if not t.is_contiguous():
        t = t.contiguous()
    nbytes = t.numel() * t.element_size()
    if nbytes == 0:
        return digest_bytes(algorithm, b"")
    # A view of the storage at its data pointer: one call, where reshape/view/numpy cost four per
    # tensor (it shows at 25,000 small tensors). `t` keeps the memory alive while it is hashed.
    view = (ctypes.c_ubyte * nbytes).from_address(t.data_ptr())
    return digest_bytes(algorithm, memoryview(view))


def digest_bytes(algorithm: str, data: memoryview | bytes) -> str:
    if algorithm == "xxh3-128":
        import xxhash

        return xxhash.xxh3_128_hexdigest(data)
    if algorithm == "sha256":
        return hashlib.sha256(data).hexdigest()
    h = new_hasher(algorithm)
    h.update(data)
    return h.hexdigest()


@dataclass(frozen=True)
class Entry:
    """What a root digest covers of one tensor."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    digest: str


def root_digest(algorithm: str, entries: Iterable[Entry]) -> str:
    ordered = sorted(entries, key=lambda e: e.name)
    text = "".join(f"{e.name}\t{e.dtype}\t[{','.join(map(str, e.shape))}]\t{e.digest}\n" for e in ordered)
    return digest_bytes(algorithm, text.encode())
