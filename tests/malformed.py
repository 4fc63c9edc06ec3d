"""A corpus of malformed checkpoints, each built from a clean tiny one by one precise damage.

Every case names the rule it breaks and a fragment of the message a user must see.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass

INDEX = "model.safetensors.index.json"
SHARD1 = "model-00001-of-00003.safetensors"
SHARD2 = "model-00002-of-00003.safetensors"


def raw_safetensors(entries: dict[str, object] | bytes, data: bytes = b"", pad: bytes = b"") -> bytes:
    header = entries if isinstance(entries, bytes) else json.dumps(entries).encode()
    header += pad
    return struct.pack("<Q", len(header)) + header + data


def write(path: str, blob: bytes) -> None:
    with open(path, "wb") as f:
        f.write(blob)


def read_json(path: str) -> dict:  # type: ignore[type-arg]
    with open(path, encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def write_json(path: str, data: object) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)


def header_of(path: str) -> tuple[dict, bytes]:  # type: ignore[type-arg]
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        return header, f.read()


def replace_shard(root: str, shard: str, mutate: Callable[[dict, bytes], tuple[object, bytes]]) -> None:  # type: ignore[type-arg]
    """Rewrite one shard with a mutated header (and data), keeping it otherwise real."""
    path = os.path.join(root, shard)
    header, data = header_of(path)
    new_header, new_data = mutate(header, data)
    write(path, raw_safetensors(new_header if isinstance(new_header, bytes) else new_header, new_data))  # type: ignore[arg-type]


def first_tensor(header: dict) -> str:  # type: ignore[type-arg]
    return min((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])


def flip_byte(root: str, shard: str = SHARD2, mask: int = 0x01) -> str:
    """Flip bits of the first byte of the shard's first tensor, in place. Returns the tensor's name."""
    header, _ = header_of(os.path.join(root, shard))
    name = first_tensor(header)
    with open(os.path.join(root, shard), "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        f.seek(8 + n + header[name]["data_offsets"][0])
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ mask]))
    return name


def edit_entry(key: str, value: object, which: Callable[[dict], str] = first_tensor):  # type: ignore[no-untyped-def,type-arg]
    def mutate(header: dict, data: bytes) -> tuple[object, bytes]:  # type: ignore[type-arg]
        header[which(header)][key] = value
        return header, data

    return mutate


def in_root(name: str, blob: bytes) -> Callable[[str], None]:
    return lambda root: write(os.path.join(root, name), blob)


def edit_index(fn: Callable[[dict], None]) -> Callable[[str], None]:  # type: ignore[type-arg]
    def damage(root: str) -> None:
        path = os.path.join(root, INDEX)
        data = read_json(path)
        fn(data)
        write_json(path, data)

    return damage


def truncate(shard: str, by: int) -> Callable[[str], None]:
    def damage(root: str) -> None:
        path = os.path.join(root, shard)
        os.truncate(path, os.path.getsize(path) - by)

    return damage


def append(shard: str, extra: bytes) -> Callable[[str], None]:
    def damage(root: str) -> None:
        with open(os.path.join(root, shard), "ab") as f:
            f.write(extra)

    return damage


def shift_first(delta: int) -> Callable[[dict, bytes], tuple[object, bytes]]:  # type: ignore[type-arg]
    def mutate(header: dict, data: bytes) -> tuple[object, bytes]:  # type: ignore[type-arg]
        name = first_tensor(header)
        begin, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = [begin + delta, end + delta]
        return header, data

    return mutate


def duplicate_key(header: dict, data: bytes) -> tuple[object, bytes]:  # type: ignore[type-arg]
    name = first_tensor(header)
    text = json.dumps(header)
    entry = json.dumps({name: header[name]})[1:-1]
    return ("{" + entry + ", " + text[1:]).encode(), data


def sound_config_removed(root: str) -> None:
    path = os.path.join(root, "config.json")
    cfg = read_json(path)
    cfg.pop("sound_config")
    write_json(path, cfg)


def sound_config_added(root: str) -> None:
    path = os.path.join(root, "config.json")
    cfg = read_json(path)
    cfg["sound_config"] = {"model_type": "parakeet"}
    write_json(path, cfg)


def link_outside(root: str) -> None:
    outside = os.path.join(os.path.dirname(root), "outside.safetensors")
    os.replace(os.path.join(root, SHARD2), outside)
    os.symlink(outside, os.path.join(root, SHARD2))


def shard_in_two_places(root: str) -> None:
    header, data = header_of(os.path.join(root, SHARD1))
    name = first_tensor(header)
    begin, end = header[name]["data_offsets"]
    write(
        os.path.join(root, "model-extra.safetensors"),
        raw_safetensors({name: header[name] | {"data_offsets": [0, end - begin]}}, data[begin:end]),
    )

    def add(index: dict) -> None:  # type: ignore[type-arg]
        index["weight_map"]["x.extra"] = "model-extra.safetensors"

    edit_index(add)(root)


def truncate_and_misstate_total(root: str) -> None:
    truncate(SHARD2, 3)(root)
    edit_index(lambda i: i["metadata"].update(total_size=1))(root)


def remove_contents(root: str) -> None:
    for name in os.listdir(root):
        os.unlink(os.path.join(root, name))


def with_empty_tensor(entry: dict[str, object], raw: tuple[str, str] | None = None) -> Callable[[str], None]:  # type: ignore[type-arg]
    """Add a zero-byte tensor `x.empty` after the last tensor of SHARD1 (and to the index), its entry
    `entry` plus offsets; `raw` replaces a text of the encoded header (for JSON json.dumps never writes)."""

    def damage(root: str) -> None:
        path = os.path.join(root, SHARD1)
        header, data = header_of(path)
        header["x.empty"] = {"data_offsets": [len(data), len(data)]} | entry
        text = json.dumps(header)
        if raw is not None:
            text = text.replace(*raw)
        write(path, raw_safetensors(text.encode(), data))
        edit_index(lambda i: i["weight_map"].update({"x.empty": SHARD1}))(root)

    return damage


@dataclass(frozen=True)
class Case:
    id: str
    damage: Callable[[str], None]
    rule: str
    fragment: str
    omni: bool = False  # built from the sound checkpoint
    strict: bool = False


def shard_header(mutate: Callable[[dict, bytes], tuple[object, bytes]], shard: str = SHARD1) -> Callable[[str], None]:  # type: ignore[type-arg]
    return lambda root: replace_shard(root, shard, mutate)


CASES: list[Case] = [
    Case("file-too-short", in_root(SHARD1, b"\x01\x02\x03"), "header-length", "too short for the 8-byte header length"),
    Case(
        "header-over-limit",
        in_root(SHARD1, struct.pack("<Q", 100_000_001) + b"{}"),
        "header-length",
        "exceeds the format's limit",
    ),
    Case(
        "header-past-eof",
        in_root(SHARD1, struct.pack("<Q", 4096) + b"{}"),
        "header-length",
        "runs past the end of the file",
    ),
    Case(
        "header-huge-length",
        in_root(SHARD1, struct.pack("<Q", 2**64 - 1)),
        "header-length",
        "exceeds the format's limit",
    ),
    Case("header-not-utf8", in_root(SHARD1, raw_safetensors(b'{"a\xff": 1}')), "header-utf8", "not valid UTF-8"),
    Case("header-not-json", in_root(SHARD1, raw_safetensors(b"{not json")), "header-json", "not valid JSON"),
    Case("header-json-array", in_root(SHARD1, raw_safetensors(b"[1, 2]")), "header-json", "does not start with '{'"),
    Case(
        "header-leading-space",
        in_root(SHARD1, raw_safetensors(b' {"__metadata__": {}}')),
        "header-json",
        "does not start with '{'",
    ),
    Case(
        "header-deep-nesting",
        in_root(SHARD1, raw_safetensors(b"{" + b'"a":[' * 100000 + b"]" * 100000 + b"}")),
        "header-json",
        "not valid JSON",
    ),
    Case(
        "duplicate-in-header", shard_header(duplicate_key), "duplicate-tensor", "appears more than once in the header"
    ),
    Case(
        "tensor-name-control-character",
        shard_header(lambda h, d: (h | {first_tensor(h) + "\n\t": h.pop(first_tensor(h))}, d)),
        "tensor-name",
        "holds a control character",
    ),
    # What the safetensors crate refuses and Python's json reads (issue 14): every command refuses it.
    Case(
        "header-nan",
        with_empty_tensor({"dtype": "U8", "shape": [0], "extra": float("nan")}),
        "header-json",
        "NaN is not a JSON number",
    ),
    Case(
        "header-infinity-dimension",
        with_empty_tensor({"dtype": "U8", "shape": [float("inf"), 0]}),
        "header-json",
        "Infinity is not a JSON number",
    ),
    Case(
        "header-number-beyond-f64",
        with_empty_tensor({"dtype": "U8", "shape": [0], "extra": 7}, raw=('"extra": 7', '"extra": 1e400')),
        "header-json",
        "1e400 is out of the range of a 64-bit float",
    ),
    Case(
        "header-lone-surrogate",
        with_empty_tensor({"dtype": "U8", "shape": [0]}, raw=('"x.empty"', '"x.empty\\udc00"')),
        "header-json",
        "lone surrogate",
    ),
    Case(
        "shape-dimension-beyond-u64",
        with_empty_tensor({"dtype": "U8", "shape": [2**64, 0]}),
        "shape-invalid",
        "is not a list of integers from 0 to 2**64-1",
    ),
    Case(
        "shape-product-overflows-u64",
        with_empty_tensor({"dtype": "BF16", "shape": [2**40, 2**40, 0]}),
        "shape-overflow",
        "overflows 64 bits",
    ),
    Case(
        "shape-bits-overflow-u64",
        with_empty_tensor({"dtype": "U8", "shape": [2**61]}),  # 2**61 elements fit; 2**64 bits do not
        "shape-overflow",
        "overflows 64 bits",
    ),
    Case(
        "shape-negative-zero",
        with_empty_tensor({"dtype": "U8", "shape": [0]}, raw=('"shape": [0]', '"shape": [-0]')),
        "shape-invalid",
        "is not a list of integers",
    ),
    Case(
        "offsets-beyond-u64",
        with_empty_tensor({"dtype": "U8", "shape": [0], "data_offsets": [2**64, 2**64]}),
        "offsets-invalid",
        "0 <= begin <= end <= 2**64-1",
    ),
    Case(
        "tensor-entry-duplicate-field",
        with_empty_tensor(
            {"dtype": "U8", "shape": [0]},
            raw=('"dtype": "U8", "shape": [0]', '"dtype": "U8", "dtype": "U8", "shape": [0]'),
        ),
        "tensor-entry",
        "field 'dtype' appears more than once",
    ),
    Case(
        "metadata-int-value",
        shard_header(lambda h, d: (h | {"__metadata__": {"format": 1}}, d)),
        "metadata-type",
        "must map strings to strings",
    ),
    Case(
        "metadata-not-object",
        shard_header(lambda h, d: (h | {"__metadata__": ["pt"]}, d)),
        "metadata-type",
        "must map strings to strings",
    ),
    Case("dtype-unknown", shard_header(edit_entry("dtype", "F128")), "dtype-unknown", "unknown dtype 'F128'"),
    Case("dtype-missing", shard_header(edit_entry("dtype", None)), "dtype-unknown", "unknown dtype None"),
    Case("dtype-lowercase", shard_header(edit_entry("dtype", "bf16")), "dtype-unknown", "unknown dtype 'bf16'"),
    Case(
        "shape-negative",
        shard_header(edit_entry("shape", [-1, 3])),
        "shape-invalid",
        "not a list of integers from 0 to 2**64-1",
    ),
    Case(
        "shape-string",
        shard_header(edit_entry("shape", "3x3")),
        "shape-invalid",
        "not a list of integers from 0 to 2**64-1",
    ),
    Case(
        "shape-bool",
        shard_header(edit_entry("shape", [True])),
        "shape-invalid",
        "not a list of integers from 0 to 2**64-1",
    ),
    Case(
        "shape-float",
        shard_header(edit_entry("shape", [2.0])),
        "shape-invalid",
        "not a list of integers from 0 to 2**64-1",
    ),
    Case("offsets-reversed", shard_header(edit_entry("data_offsets", [8, 0])), "offsets-invalid", "0 <= begin <= end"),
    Case("offsets-three", shard_header(edit_entry("data_offsets", [0, 4, 8])), "offsets-invalid", "0 <= begin <= end"),
    Case("offsets-negative", shard_header(edit_entry("data_offsets", [-2, 6])), "offsets-invalid", "0 <= begin <= end"),
    Case("offsets-missing", shard_header(edit_entry("data_offsets", None)), "offsets-invalid", "data_offsets None"),
    Case("byte-length-wrong", shard_header(edit_entry("shape", [1])), "byte-length", "bytes but shape [1] x"),
    Case(
        "byte-length-f4-odd",
        shard_header(lambda h, d: (h | {first_tensor(h): h[first_tensor(h)] | {"dtype": "F4", "shape": [3]}}, d)),
        "byte-length",
        "12 bits, not a whole number of bytes",
    ),
    Case(
        "tensor-entry-not-object",
        shard_header(lambda h, d: (h | {first_tensor(h): [1, 2]}, d)),
        "tensor-entry",
        "header entry is not an object",
    ),
    Case("offsets-gap", shard_header(shift_first(2)), "offsets-gap", "leaving a gap after byte 0"),
    Case(
        "offsets-overlap",
        shard_header(lambda h, d: (h | {"x.overlap": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}}, d)),
        "offsets-overlap",
        "overlapping data",
    ),
    Case("file-truncated", truncate(SHARD1, 1), "file-truncated", "truncated"),
    Case("file-truncated-to-header", truncate(SHARD2, 10_000), "file-truncated", "truncated"),
    Case(
        "file-trailing-bytes",
        append(SHARD2, b"\x00" * 7),
        "file-trailing-bytes",
        "7 bytes after the last tensor's data",
    ),
    Case("index-not-json", in_root(INDEX, b"{ weight_map"), "index-json", "not valid JSON"),
    Case("index-no-weight-map", in_root(INDEX, b'{"metadata": {}}'), "index-json", "has no 'weight_map'"),
    Case("index-weight-map-values", in_root(INDEX, b'{"weight_map": {"a": 3}}'), "index-json", "has no 'weight_map'"),
    Case(
        "index-total-size-wrong",
        edit_index(lambda i: i["metadata"].update(total_size=i["metadata"]["total_size"] + 2)),
        "index-total-size",
        "metadata.total_size is",
        strict=True,  # a warning: no loader reads it
    ),
    Case(
        "index-total-size-string",
        edit_index(lambda i: i["metadata"].update(total_size="12")),
        "index-total-size",
        "is not an integer",
        strict=True,
    ),
    Case(
        "index-shard-missing",
        edit_index(lambda i: i["weight_map"].update({"x.ghost": "model-ghost.safetensors"})),
        "shard-missing",
        "named by the index but does not exist",
    ),
    Case(
        "index-tensor-missing",
        edit_index(lambda i: i["weight_map"].update({"x.ghost": SHARD1})),
        "index-tensor-missing",
        "does not hold it",
    ),
    Case(
        "index-tensor-unmapped",
        edit_index(lambda i: i["weight_map"].pop("mlp1.1.weight")),
        "index-tensor-unmapped",
        "does not list it",
    ),
    Case(
        "index-tensor-misplaced",
        edit_index(
            lambda i: i["weight_map"].update(
                {"mlp1.1.weight": SHARD2 if i["weight_map"]["mlp1.1.weight"] != SHARD2 else SHARD1}
            )
        ),
        "index-tensor-misplaced",
        "maps it to",
    ),
    Case("tensor-in-two-shards", shard_in_two_places, "duplicate-tensor", "is also in"),
    Case(
        "index-dotdot",
        edit_index(lambda i: i["weight_map"].update({"mlp1.1.weight": "../" + SHARD1})),
        "unsafe-path",
        "escapes the checkpoint directory",
    ),
    Case(
        "index-absolute",
        edit_index(lambda i: i["weight_map"].update({"mlp1.1.weight": "/etc/passwd"})),
        "unsafe-path",
        "escapes the checkpoint directory",
    ),
    Case("symlink-outside", link_outside, "unsafe-path", "outside the checkpoint; refused, not followed"),
    Case(
        "shard-is-directory",
        lambda root: (os.unlink(os.path.join(root, SHARD2)), os.mkdir(os.path.join(root, SHARD2))),
        "path-kind",
        "is a directory",
    ),
    Case("config-not-json", in_root("config.json", b"{architectures"), "config-json", "not valid JSON"),
    Case(  # a warning: the check reports each sound tensor as the release's load-error (tests/test_profiles.py)
        "config-sound-undeclared", sound_config_removed, "config-sound", "declares no sound_config", omni=True, strict=True
    ),
    Case("config-sound-without-tensors", sound_config_added, "config-sound", "declares a sound_config"),
    Case(
        "config-unknown-architecture-strict",
        lambda root: write_json(os.path.join(root, "config.json"), {"architectures": ["LlamaForCausalLM"]}),
        "config-architecture",
        "is not one vLLM sends to NemotronH_Nano_VL_V2",
        strict=True,
    ),
    Case("empty-directory", remove_contents, "no-safetensors", "holds no .safetensors files"),
    Case("path-gone", lambda root: shutil.rmtree(root), "path-missing", "no such file or directory"),
    Case(
        "config-is-directory",
        lambda root: (os.unlink(os.path.join(root, "config.json")), os.mkdir(os.path.join(root, "config.json"))),
        "unreadable",
        "cannot be read",
    ),
    Case("config-not-utf8", in_root("config.json", b'{"architectures": ["\xff"]}'), "unreadable", "cannot be read"),
    Case(
        "stray-shard-strict",
        lambda root: shutil.copyfile(os.path.join(root, SHARD1), os.path.join(root, "extra.safetensors")),
        "shard-not-indexed",
        "vLLM's Run:ai loader streams every *.safetensors",
        strict=True,
    ),
    Case("combined-truncated-and-total", lambda root: truncate_and_misstate_total(root), "file-truncated", "truncated"),
]
