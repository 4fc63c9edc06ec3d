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

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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
shapes = st.lists(st.integers(min_value=-1, max_value=5), max_size=3)


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    """Mostly-valid headers with random damage: the interesting boundary."""
    n = draw(st.integers(min_value=0, max_value=4))
    entries: dict[str, object] = {}
    offset = 0
    for i in range(n):
        dtype = draw(dtypes)
        shape = draw(shapes)
        size = 1
        for d in shape:
            size *= max(d, 0)
        nbytes = size * DTYPE_BITS.get(dtype, 8) // 8
        begin = offset + draw(st.sampled_from([0, 0, 0, 1, -1]))
        end = begin + nbytes + draw(st.sampled_from([0, 0, 0, 1]))
        entries[f"t{i}"] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
        offset = max(offset, end)
    if draw(st.booleans()):
        entries["__metadata__"] = draw(st.sampled_from([{"format": "pt"}, {"a": 1}, ["x"]]))
    text = json.dumps(entries).encode()
    if draw(st.booleans()) and n:
        text = text.replace(b'"t1"', b'"t0"', 1)  # a duplicate key
    data = bytes(offset + draw(st.sampled_from([0, 0, 1, -1])) if offset else 0)
    return struct.pack("<Q", len(text)) + text + data


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
