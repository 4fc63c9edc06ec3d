"""Digests of tensor bytes, and of sets of tensors.

A tensor digest is the hash of the tensor's raw bytes exactly as the safetensors file stores them
(C order, little-endian): recomputable with any hashing tool over `file[8 + N + begin : 8 + N + end]`.
A root digest hashes one line per tensor, `name\\tdtype\\tshape\\tdigest\\n`, sorted by name, so it
covers names, types and shapes as well as bytes. The algorithm name records everything that changes
a digest, and every report and manifest carries it.
"""

from __future__ import annotations

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


def tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes without a copy where it is already a dense CPU tensor."""
    import torch

    t = tensor.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if not t.is_contiguous():
        t = t.contiguous()
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]


def digest_tensor(algorithm: str, tensor: torch.Tensor) -> str:
    h = new_hasher(algorithm)
    h.update(tensor_bytes(tensor))
    return h.hexdigest()


def digest_bytes(algorithm: str, data: memoryview | bytes) -> str:
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
    h = new_hasher(algorithm)
    for e in sorted(entries, key=lambda e: e.name):
        shape = ",".join(str(d) for d in e.shape)
        h.update(f"{e.name}\t{e.dtype}\t[{shape}]\t{e.digest}\n".encode())
    return h.hexdigest()
