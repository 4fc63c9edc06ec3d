"""A strict safetensors header parser, after the reference Rust implementation's rules.

Strict where previews are lenient: a verifier must refuse a header the Rust crate would refuse, and
also what Python's json would silently accept (a duplicate tensor name keeps only the last entry).
The parser never raises on bad input; it returns every problem it found.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import NamedTuple

from nemoverify.checkpoint.problems import CONTROL_CHARACTER, Problem

# The Rust crate's limit: a larger header is refused before it is read (a 16 EiB length would
# otherwise be an allocation request).
MAX_HEADER_BYTES = 100_000_000

# Bits per element of every dtype the safetensors format defines.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

ReadAt = Callable[[int, int], bytes]
"""read_at(offset, length) -> bytes: local files and ranged object-storage reads look alike."""


class TensorInfo(NamedTuple):
    """One header entry; `start`/`end` are relative to the start of the data section. A named
    tuple: a 25,000-tensor header makes 25,000 of them."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Header:
    header_len: int
    tensors: tuple[TensorInfo, ...]  # in data-offset order
    metadata: dict[str, str] = field(default_factory=dict)
    fingerprint: bytes = b""  # of the 8 + header_len bytes parsed: re-read at the end of a run, compared

    @property
    def data_start(self) -> int:
        return 8 + self.header_len

    @property
    def data_len(self) -> int:
        return self.tensors[-1].end if self.tensors else 0


class _DuplicateKeys(dict[str, object]):
    """A JSON object that remembers which keys appeared more than once."""

    duplicates: list[str]


def _pairs_hook(pairs: list[tuple[str, object]]) -> _DuplicateKeys:
    obj = _DuplicateKeys(pairs)  # built in C; only a collision (rare) walks the pairs in Python
    obj.duplicates = []
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                obj.duplicates.append(key)
            seen.add(key)
    return obj


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_header(file: str, file_size: int, read_at: ReadAt) -> tuple[Header | None, list[Problem]]:
    """Read and check one file's header. Returns (header or None, problems found)."""
    problems: list[Problem] = []

    def problem(rule: str, message: str, tensor: str | None = None) -> None:
        problems.append(Problem(rule, file, message, tensor))

    if file_size < 8:
        problem("header-length", f"file is {file_size} bytes, too short for the 8-byte header length")
        return None, problems
    prefix = read_at(0, 8)
    if len(prefix) != 8:
        problem("file-changed", f"read {len(prefix)} bytes of the 8-byte header length: the file changed while read")
        return None, problems
    (header_len,) = struct.unpack("<Q", prefix)
    if header_len > MAX_HEADER_BYTES:
        problem(
            "header-length",
            f"header length {header_len:,} exceeds the format's limit of {MAX_HEADER_BYTES:,} bytes",
        )
        return None, problems
    if 8 + header_len > file_size:
        problem(
            "header-length",
            f"header length {header_len:,} runs past the end of the file ({file_size:,} bytes): "
            "the file is truncated or not safetensors",
        )
        return None, problems
    raw = read_at(8, header_len)
    if len(raw) != header_len:
        problem("file-changed", f"read {len(raw)} header bytes of {header_len}: the file changed while read")
        return None, problems
    try:
        text = raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        problem("header-utf8", f"header is not valid UTF-8 (byte {exc.start})")
        return None, problems
    if not text.startswith("{"):
        problem("header-json", "header does not start with '{': not a safetensors JSON header")
        return None, problems
    try:
        parsed = json.loads(text, object_pairs_hook=_pairs_hook)
    except (ValueError, RecursionError) as exc:
        problem("header-json", f"header is not valid JSON: {exc}")
        return None, problems
    if not isinstance(parsed, _DuplicateKeys):
        problem("header-json", "header is not a JSON object")
        return None, problems

    for name in dict.fromkeys(parsed.duplicates):
        problem("duplicate-tensor", "appears more than once in the header (JSON keeps only the last)", name)
    if CONTROL_CHARACTER.search("".join(parsed)):  # one scan of every name; the loop only on a hit
        for name in parsed:
            if CONTROL_CHARACTER.search(name):
                problem(
                    "tensor-name",
                    "the name holds a control character: nemoverify's own rule (the format allows it), "
                    "since such a name can pass for other entries in a listing or a digest",
                    name,
                )

    metadata: dict[str, str] = {}
    raw_metadata = parsed.pop("__metadata__", None)
    if raw_metadata is not None:
        if not isinstance(raw_metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in raw_metadata.items()
        ):
            problem("metadata-type", "__metadata__ must map strings to strings")
        else:
            metadata = dict(raw_metadata)

    infos: list[TensorInfo] = []
    for name, entry in parsed.items():
        info = _tensor_info(name, entry, problem)
        if info is not None:
            infos.append(info)
    infos.sort(key=attrgetter("start", "end"))

    expected = 0
    for info in infos:
        if info.start > expected:
            problem("offsets-gap", f"starts at byte {info.start:,}, leaving a gap after byte {expected:,}", info.name)
        elif info.start < expected:
            problem(
                "offsets-overlap", f"starts at byte {info.start:,}, overlapping data ending at {expected:,}", info.name
            )
        expected = max(expected, info.end)

    file_end = 8 + header_len + expected
    if file_size < file_end:
        last = infos[-1].name if infos else None
        problem(
            "file-truncated",
            f"file is {file_size:,} bytes but the header describes {file_end:,}: truncated",
            last,
        )
    elif file_size > file_end:
        problem("file-trailing-bytes", f"{file_size - file_end:,} bytes after the last tensor's data")

    if any(p.severity == "error" for p in problems):
        return None, problems
    return Header(header_len, tuple(infos), metadata, header_fingerprint(prefix + raw)), problems


def header_fingerprint(raw: bytes) -> bytes:
    """Of a file's first 8 + header_len bytes: a shard whose header was rewritten in place (offsets
    swapped, say) while the size and times stay the same is still noticed at the end of a run."""
    return hashlib.blake2b(raw, digest_size=16).digest()


def _tensor_info(name: str, entry: object, problem: Callable[..., None]) -> TensorInfo | None:
    # The well-formed entry, checked in few operations (a 25,000-tensor header is real); anything
    # else takes the slow path below, which says what is wrong. `type(x) is int` rules out bool.
    if isinstance(entry, dict):  # the parser's own dict subclass
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if type(shape) is list and type(offsets) is list and len(offsets) == 2:
            begin, end = offsets
            bits = DTYPE_BITS.get(dtype) if type(dtype) is str else None
            if (
                bits is not None
                and type(begin) is int
                and type(end) is int
                and 0 <= begin <= end
                and all(type(d) is int and d >= 0 for d in shape)
            ):
                total = math.prod(shape) * bits
                if total % 8 == 0 and end - begin == total // 8:
                    return TensorInfo(name, dtype, tuple(shape), begin, end)  # type: ignore[arg-type]
    return _checked_tensor_info(name, entry, problem)


def _checked_tensor_info(name: str, entry: object, problem: Callable[..., None]) -> TensorInfo | None:
    if not isinstance(entry, dict):
        problem("tensor-entry", "header entry is not an object", name)
        return None
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    ok = True
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        problem("dtype-unknown", f"unknown dtype {dtype!r}", name)
        ok = False
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        problem("shape-invalid", f"shape {shape!r} is not a list of non-negative integers", name)
        ok = False
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        problem("offsets-invalid", f"data_offsets {offsets!r} is not [begin, end] with 0 <= begin <= end", name)
        ok = False
    if not ok:
        return None
    assert isinstance(dtype, str) and isinstance(shape, list) and isinstance(offsets, list)
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8:
        problem("byte-length", f"{shape} x {dtype} is {bits} bits, not a whole number of bytes", name)
    elif offsets[1] - offsets[0] != bits // 8:
        problem(
            "byte-length",
            f"holds {offsets[1] - offsets[0]:,} bytes but shape {shape} x {dtype} needs {bits // 8:,}",
            name,
        )
    # Kept even when wrong, so that its byte range still counts in the gap and overlap checks.
    return TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])
