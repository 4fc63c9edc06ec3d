"""Fuzzing the header parser: it never raises, and it is never more lenient than the reference
Rust implementation (the `safetensors` package): whatever we accept, Rust loads."""

from __future__ import annotations

import json
import os
import struct
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemoverify.checkpoint.header import DTYPE_BITS, read_header

FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse(blob: bytes):  # type: ignore[no-untyped-def]
    return read_header("fuzz.safetensors", len(blob), lambda off, n: blob[off : off + n])


def rust_accepts(blob: bytes) -> bool:
    from safetensors import safe_open

    with tempfile.NamedTemporaryFile(suffix=".safetensors", delete=False) as f:
        f.write(blob)
    try:
        with safe_open(f.name, framework="numpy") as st_file:
            st_file.keys()
        return True
    except Exception:
        return False
    finally:
        os.unlink(f.name)


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(blob: bytes) -> None:
    header, problems = parse(blob)
    assert (header is None) == any(p.severity == "error" for p in problems)


@FUZZ
@given(st.binary(max_size=256), st.integers(min_value=0, max_value=2**64 - 1))
def test_any_length_prefix_is_bounded(body: bytes, length: int) -> None:
    header, problems = parse(struct.pack("<Q", length) + body)
    if length > len(body):
        assert header is None and problems[0].rule == "header-length"


dtypes = st.sampled_from([*DTYPE_BITS, "F128", "bf16", ""])
# Dimensions at the edges of u64: alone, or beside a zero that leaves the tensor empty (the crate's
# running product overflows on [2**40, 2**40, 0] but not on [0, 2**40, 2**40]).
huge = st.sampled_from([2**32, 2**40, 2**61, 2**63, 2**64 - 1, 2**64, 2**70])
shapes = st.one_of(
    st.lists(st.integers(min_value=-1, max_value=5), max_size=3),
    st.lists(st.one_of(st.just(0), st.integers(min_value=1, max_value=3), huge), min_size=1, max_size=3),
)
# Literals Python's json reads and the crate's serde_json does not (or reads as another type), and
# some it does: written into the header text in place of a placeholder string.
LITERALS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "1e-400",
    "-0",
    "0",
    "1.0",
    "2e0",
    str(2**64),
    str(2**64 - 1),
]
literals = st.sampled_from(LITERALS)
nestings = st.sampled_from([1, 2, 124, 125, 126, 127, 200])
names = st.sampled_from([""] * 12 + ["\\ud800", "\\udc00x", "\\ud83d\\ude00", "\\u00e9"])


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    """Mostly-valid headers with random damage: the interesting boundary. Placeholders (`"@n@"`)
    become raw JSON text after encoding: numbers and literals json.dumps would never write."""
    n = draw(st.integers(min_value=0, max_value=4))
    entries: dict[str, object] = {}
    raw: list[str] = []

    def placeholder(text: str) -> str:
        raw.append(text)
        return f"@{len(raw) - 1}@"

    offset = 0
    for i in range(n):
        dtype = draw(dtypes) if draw(st.integers(0, 3)) else draw(st.sampled_from(["U8", "F32"]))
        dims = draw(shapes)
        size = 1
        for d in dims:
            size *= max(d, 0)
        shape: list[object] = list(dims)
        nbytes = size * DTYPE_BITS.get(dtype, 8) // 8
        if nbytes > 4096:  # never backed by data: the header is wrong whatever else it says
            nbytes = draw(st.sampled_from([0, 1, 8]))
        begin = offset + draw(st.sampled_from([0] * 8 + [1, -1]))
        end = begin + nbytes + draw(st.sampled_from([0] * 8 + [1]))
        offsets: list[object] = [begin, end]
        entry: dict[str, object] = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
        damage = draw(st.sampled_from(["none"] * 6 + ["dim", "offset", "extra", "nested", "dup-field"]))
        if damage == "dim" and shape:
            shape[draw(st.integers(0, len(shape) - 1))] = placeholder(draw(literals))
        elif damage == "offset":
            offsets[draw(st.integers(0, 1))] = placeholder(draw(literals))
        elif damage == "extra":
            entry["extra"] = placeholder(draw(literals))
        elif damage == "nested":
            depth = draw(nestings)
            entry["extra"] = placeholder("[" * depth + "]" * depth)
        elif damage == "dup-field":
            entry[placeholder('"' + draw(st.sampled_from(["dtype", "shape", "data_offsets", "other"])) + '"')] = (
                entry["dtype"] if draw(st.booleans()) else [0, 0]
            )
        entries[f"t{i}" + placeholder(draw(names))] = entry
        offset = max(offset, end)
    if draw(st.booleans()):
        entries["__metadata__"] = draw(st.sampled_from([{"format": "pt"}] * 4 + [{"a": 1}, ["x"]]))
    text = json.dumps(entries)
    for k, literal in enumerate(raw):
        token = f"@{k}@"
        quoted = f'"{token}"'
        # A whole value (quoted placeholder) or part of a name (the placeholder inside its string).
        text = text.replace(quoted if quoted in text else token, literal)
    blob = text.encode()
    if n and draw(st.integers(0, 4)) == 0:
        blob = blob.replace(b'"t1', b'"t0', 1)  # maybe a duplicate key
    data = bytes(offset + draw(st.sampled_from([0] * 8 + [1, -1])) if offset > 0 else 0)
    return struct.pack("<Q", len(blob)) + blob + data


@FUZZ
@given(headers())
def test_we_never_accept_what_the_rust_implementation_refuses(blob: bytes) -> None:
    header, problems = parse(blob)
    if header is not None:
        assert not problems
        assert rust_accepts(blob), blob[:200]


def test_a_valid_file_round_trips(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "x.safetensors"
    save_file({"a": torch.zeros(3, dtype=torch.bfloat16), "s": torch.tensor(1.5)}, str(path), metadata={"format": "pt"})
    blob = path.read_bytes()
    header, problems = parse(blob)
    assert not problems and header is not None
    assert {t.name: (t.dtype, t.shape) for t in header.tensors} == {"a": ("BF16", (3,)), "s": ("F32", ())}
    assert header.metadata == {"format": "pt"}


def _repeats_a_key(text: str) -> bool:
    found = False

    def hook(pairs: list[tuple[str, object]]) -> dict[str, object]:
        nonlocal found
        found |= len({k for k, _ in pairs}) != len(pairs)
        return dict(pairs)

    json.loads(text, object_pairs_hook=hook)
    return found


# Mostly without a backslash (json.dumps escapes '"' with one): the count decides only there.
_keys = st.text(alphabet=st.sampled_from("ab:{}, "), max_size=4) | st.text(
    alphabet=st.sampled_from('ab:{}",\\ '), max_size=4
)
_json_values = st.recursive(
    st.none() | st.integers(-3, 3) | _keys,
    lambda inner: st.lists(inner, max_size=3) | st.lists(st.tuples(_keys, inner), max_size=3),
    max_leaves=12,
)


def _render(value: object) -> str:
    """JSON text; a list of pairs is an object, written pair by pair so that keys may repeat."""
    if isinstance(value, list) and value and all(isinstance(p, tuple) for p in value):
        return "{" + ",".join(f"{json.dumps(k)}:{_render(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_render(v) for v in value) + "]"
    return json.dumps(value)


@FUZZ
@given(st.lists(st.tuples(_keys, _json_values), max_size=6), st.data())
def test_the_counting_proof_of_no_repeated_key_never_misses_one(pairs, data) -> None:  # type: ignore[no-untyped-def]
    """`_no_key_repeats` lets the header parse skip the exact (slow) parse: it must say False for
    every text in which some object, at any depth, repeats a key, whatever ':' the strings hold."""
    from nemoverify.checkpoint.header import _no_key_repeats

    if pairs and data.draw(st.booleans()):
        pairs.append(data.draw(st.sampled_from(pairs)))  # a repeated top-level key
    text = "{" + ",".join(f"{json.dumps(k)}:{_render(v)}" for k, v in pairs) + "}"
    if _repeats_a_key(text):
        assert not _no_key_repeats(text, json.loads(text)), text


def test_a_plain_header_is_proven_free_of_repeated_keys_and_a_repeat_is_named() -> None:
    from nemoverify.checkpoint.header import _no_key_repeats

    entry = {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}
    text = json.dumps({"a:b": entry, "__metadata__": {"k:": "v:w"}})
    assert _no_key_repeats(text, json.loads(text))  # the fast path is taken on a normal header
    twice = '{"x:": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}, "x:": ' + json.dumps(entry) + "}"
    blob = struct.pack("<Q", len(twice)) + twice.encode() + bytes(4)
    header, problems = parse(blob)
    assert header is None and [(p.rule, p.tensor) for p in problems] == [("duplicate-tensor", "x:")]
