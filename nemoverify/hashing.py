"""Digests of tensor bytes, and of sets of tensors.

A tensor digest is the hash of the tensor's raw bytes exactly as the safetensors file stores them
(C order, little-endian): recomputable with any hashing tool over `file[8 + N + begin : 8 + N + end]`.
A root digest covers names, types and shapes as well as bytes: it hashes `ROOT_PREFIX` and then,
tensor by tensor in name order, each field framed by its length (`root_message`), so that no name,
whatever it holds, can pass for the end of one entry and the start of another. The algorithm name
records everything that changes a digest, and every report and manifest carries it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import TYPE_CHECKING, Literal, Protocol, get_args

if TYPE_CHECKING:
    import torch

# xxh3-128: fast and non-cryptographic, right for comparing two loaders on one machine.
# blake3 / sha256: cryptographic, for manifests that must resist a deliberate substitution.
# The one definition of the algorithms: the CLI's choices, the manifest check and the docs read it.
Algorithm = Literal["xxh3-128", "blake3", "sha256", "lin128"]
ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)
# lin128 is not cryptographic and tensor arithmetic: it compares loaders, it does not guard stored bytes.
MANIFEST_ALGORITHMS: tuple[Algorithm, ...] = ("blake3", "sha256", "xxh3-128")
DEFAULT_CHECK_ALGORITHM: Algorithm = "xxh3-128"
DEFAULT_MANIFEST_ALGORITHM: Algorithm = "blake3"  # cryptographic, and 3.7x sha256 here (7.9 vs 2.1 GB/s a core)


class Hasher(Protocol):
    def update(self, data: memoryview | bytes, /) -> object: ...
    def hexdigest(self) -> str: ...


def new_hasher(algorithm: str) -> Hasher:
    if algorithm == "xxh3-128":
        import xxhash

        return xxhash.xxh3_128()
    if algorithm == "blake3":
        import blake3

        return blake3.blake3()
    if algorithm == "sha256":
        import hashlib  # each digest's module where it is used: the CLI's --help reads this module

        return hashlib.sha256()
    if algorithm == "lin128":
        return Lin128()
    raise _unknown(algorithm)


def _unknown(algorithm: str) -> ValueError:
    return ValueError(f"unknown hash algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")


def digest_tensor(algorithm: str, tensor: torch.Tensor) -> str:
    """Digest of a tensor's bytes, read in place where it is a dense CPU tensor (no copy).
    `lin128` is computed where the tensor lives (a GPU tensor never comes back to the host)."""
    return tensor_digester(algorithm)(tensor)


def tensor_digester(algorithm: str) -> Callable[[torch.Tensor], str]:
    """`digest_tensor` with the algorithm looked up once, for calling once per tensor."""
    if algorithm == "lin128":
        return lin128
    import ctypes

    digest = one_shot(algorithm)
    cast = algorithm == "blake3"  # ctypes says "<B"; blake3 wants "B"

    def digest_tensor(tensor: torch.Tensor) -> str:
        t = tensor
        if not t.is_cpu:
            t = t.cpu()
        if not t.is_contiguous():
            t = t.contiguous()
        nbytes = t.nbytes
        if nbytes == 0:
            return digest(b"")
        # A view of the storage at its data pointer: one call, where reshape/view/numpy cost four per
        # tensor (it shows at 25,000 small tensors). `t` keeps the memory alive while it is hashed.
        view = memoryview((ctypes.c_ubyte * nbytes).from_address(t.data_ptr()))
        return digest(view.cast("B") if cast else view)

    return digest_tensor


def digest_bytes(algorithm: str, data: memoryview | bytes) -> str:
    return one_shot(algorithm)(data)


def one_shot(algorithm: str) -> Callable[[memoryview | bytes], str]:
    """The function that digests one whole buffer: looked up once, called per tensor."""
    if algorithm == "xxh3-128":
        import xxhash

        return xxhash.xxh3_128_hexdigest
    if algorithm == "sha256":
        import hashlib

        return lambda data: hashlib.sha256(data).hexdigest()
    if algorithm == "blake3":
        import blake3

        return lambda data: blake3.blake3(data).hexdigest()
    if algorithm == "lin128":
        return _lin128_of_buffer
    raise _unknown(algorithm)  # here, not at the first tensor


class Entry(Protocol):
    """What a root digest covers of one tensor (an Observation or a manifest entry)."""

    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def digest(self) -> str: ...


ROOT_PREFIX = b"nemoverify.root/v2\n"
_U64 = struct.Struct("<Q")


def _text_field(text: str) -> bytes:
    raw = text.encode("utf-8", "surrogatepass")  # never raises; the parsers refuse lone surrogates
    return _U64.pack(len(raw)) + raw


def _shape_field(shape: tuple[int, ...]) -> bytes:
    return _U64.pack(len(shape)) + b"".join(map(_U64.pack, shape))


def root_message(entries: Iterable[Entry]) -> bytes:
    """What a root digest hashes (README, "How digests are defined"): `ROOT_PREFIX`, then per tensor
    in order of name (code points, which is the order of their UTF-8 bytes): the name, the dtype,
    the shape and the digest, each framed by a little-endian u64: the UTF-8 length of a text, the
    number of dimensions of a shape (then each dimension as a u64)."""
    # A checkpoint has few distinct dtypes and shapes and many tensors: their fields are made once.
    dtypes: dict[str, bytes] = {}
    shapes: dict[tuple[int, ...], bytes] = {}
    pack = _U64.pack
    parts = [ROOT_PREFIX]
    for e in sorted(entries, key=attrgetter("name")):
        dtype = dtypes.get(e.dtype) or dtypes.setdefault(e.dtype, _text_field(e.dtype))
        shape = shapes.get(e.shape) or shapes.setdefault(e.shape, _shape_field(e.shape))
        name = e.name.encode("utf-8", "surrogatepass")  # as _text_field, inline: once per tensor
        digest = e.digest.encode("utf-8", "surrogatepass")
        parts += (pack(len(name)), name, dtype, shape, pack(len(digest)), digest)
    return b"".join(parts)


def root_digest(algorithm: str, entries: Iterable[Entry]) -> str:
    return digest_bytes(algorithm, root_message(entries))


def root_digest_v1(algorithm: str, entries: Iterable[Entry]) -> str:
    """The root of `nemoverify.manifests/v1`: one line `name\\tdtype\\t[d0,d1]\\tdigest\\n` per tensor,
    sorted by name. Ambiguous when a name holds a tab or a newline (one name can then imitate a
    whole other entry), so it is only used to check v1 manifests whose names hold no control
    character, where each line splits back into its fields one way only."""
    ordered = sorted(entries, key=attrgetter("name"))
    text = "".join(f"{e.name}\t{e.dtype}\t[{','.join(map(str, e.shape))}]\t{e.digest}\n" for e in ordered)
    return digest_bytes(algorithm, text.encode())


# lin128: a digest computed with tensor arithmetic on whatever device holds the tensor, reproduced
# exactly on the CPU. The bytes are read as little-endian 64-bit words w_i (zero-padded) and
#   lane1 = n*A + sum_i w_i * (i*A + B)                    mod 2^64
#   lane2 =       sum_i (w_i ^ (w_i >> 29)) * (i*C + D)    mod 2^64   (>> arithmetic)
# with A, C even and B, D odd, so every multiplier is odd. Wrapping addition is order-independent,
# so any reduction order (CPU threads, GPU blocks) gives the same value, and a change confined to one
# word is always detected. Not cryptographic: for comparing two loaders, like xxh3-128; manifests
# should use sha256 or blake3.
_A, _B = 0x9E3779B97F4A7C14, 0xC2B2AE3D27D4EB4F
_C, _D = 0xD6E8FEB86659FD92, 0x165667B19E3779F9
_LIN128_CHUNK = 1 << 22  # words per step: bounds each temporary to 32 MiB
_tables: dict[object, tuple[torch.Tensor, torch.Tensor]] = {}


def _as_int64(x: int) -> int:
    return (x + (1 << 63)) % (1 << 64) - (1 << 63)


def _multipliers(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(j*A + B, j*C + D) for j < _LIN128_CHUNK, made once per device. Words at offset `start`
    use the same tables: sum w_j*((start+j)*A + B) = sum w_j*(j*A + B) + start*A*sum w_j."""
    if device not in _tables:
        import torch

        j = torch.arange(_LIN128_CHUNK, dtype=torch.int64, device=device)
        _tables[device] = (j * _as_int64(_A) + _as_int64(_B), j * _as_int64(_C) + _as_int64(_D))
    return _tables[device]


_MASK = (1 << 64) - 1


def _lanes(words: torch.Tensor, first: int) -> tuple[int, int]:
    """Both lanes' sums over `words`, the first of which is word number `first` of the stream."""
    import torch

    m1, m2 = _multipliers(words.device)
    lane1 = torch.zeros((), dtype=torch.int64, device=words.device)
    lane2 = torch.zeros((), dtype=torch.int64, device=words.device)
    for start in range(0, words.numel(), _LIN128_CHUNK):
        w = words[start : start + _LIN128_CHUNK]
        k, at = w.numel(), first + start
        lane1 += (w * m1[:k]).sum() + _as_int64(at * _A) * w.sum()
        mixed = w ^ (w >> 29)
        lane2 += (mixed * m2[:k]).sum() + _as_int64(at * _C) * mixed.sum()
    return int(lane1.item()) & _MASK, int(lane2.item()) & _MASK


def _lin128_hex(nbytes: int, lane1: int, lane2: int) -> str:
    return f"{(lane1 + nbytes * _A) & _MASK:016x}{lane2 & _MASK:016x}"


def lin128(tensor: torch.Tensor) -> str:
    import torch

    b = tensor.detach()
    if not b.is_contiguous():
        b = b.contiguous()
    b = b.reshape(-1).view(torch.uint8)
    n = b.numel()
    pad = (-n) % 8
    if pad or b.storage_offset() % 8 or b.data_ptr() % 8:
        padded = torch.zeros(n + pad, dtype=torch.uint8, device=b.device)
        padded[:n] = b
        b = padded
    lane1, lane2 = _lanes(b.view(torch.int64), 0)
    return _lin128_hex(n, lane1, lane2)


def _lin128_of_buffer(data: memoryview | bytes) -> str:
    h = Lin128()
    h.update(data)
    return h.hexdigest()


class Lin128:
    """lin128 fed in pieces (stored bytes read in chunks, as manifests and ranged reads do)."""

    def __init__(self) -> None:
        self.nbytes = 0
        self.lane1 = 0
        self.lane2 = 0
        self._tail = b""  # fewer than 8 bytes waiting for the rest of their word

    def update(self, data: memoryview | bytes, /) -> None:
        """Whole words are read in place from a writable buffer (a read buffer: no copy of the
        bulk); only a word split between two pieces is put together by hand."""
        import torch

        view = memoryview(data).cast("B")
        at = 0
        if self._tail:  # complete the word the last piece left open
            at = min(8 - len(self._tail), len(view))
            self._tail += bytes(view[:at])
            if len(self._tail) == 8:
                self._add(torch.frombuffer(bytearray(self._tail), dtype=torch.int64), (self.nbytes + at - 8) // 8)
                self._tail = b""
        whole = (len(view) - at) // 8 * 8
        if whole:
            body = view[at : at + whole]
            if body.readonly:
                body = memoryview(bytearray(body))  # torch views only writable memory
            self._add(torch.frombuffer(body, dtype=torch.int64), (self.nbytes + at) // 8)
        self._tail += bytes(view[at + whole :])
        self.nbytes += len(view)

    def _add(self, words: torch.Tensor, first: int) -> None:
        l1, l2 = _lanes(words, first)
        self.lane1, self.lane2 = (self.lane1 + l1) & _MASK, (self.lane2 + l2) & _MASK

    def hexdigest(self) -> str:
        import torch

        lane1, lane2 = self.lane1, self.lane2
        if self._tail:
            word = torch.frombuffer(bytearray(self._tail.ljust(8, b"\0")), dtype=torch.int64)
            l1, l2 = _lanes(word, self.nbytes // 8)
            lane1, lane2 = lane1 + l1, lane2 + l2
        return _lin128_hex(self.nbytes, lane1, lane2)
