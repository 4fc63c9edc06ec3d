"""Digests: lin128 (the device digest) is exact, position-sensitive and agrees with itself across
layouts; every algorithm agrees between the tensor path and the byte path."""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given, settings

import nemoverify.hashing as hashing
from nemoverify.hashing import ALGORITHMS, digest_bytes, digest_tensor, lin128


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(
    "tensor",
    [
        torch.randn(33, 7).to(torch.bfloat16),
        torch.tensor(2.5),
        torch.empty(0, 3),
        torch.arange(10, dtype=torch.int64),
        torch.zeros(5).to(torch.float8_e4m3fn),
    ],
    ids=["bf16", "0-dim", "empty", "i64", "fp8"],
)
def test_tensor_and_byte_paths_agree(algorithm: str, tensor: torch.Tensor) -> None:
    raw = tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    assert digest_tensor(algorithm, tensor) == digest_bytes(algorithm, raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=300), st.data())
def test_lin128_detects_every_single_byte_change(data: bytes, draw: st.DataObject) -> None:
    i = draw.draw(st.integers(0, len(data) - 1))
    flip = draw.draw(st.integers(1, 255))
    changed = bytearray(data)
    changed[i] ^= flip
    assert digest_bytes("lin128", data) != digest_bytes("lin128", bytes(changed))


def test_lin128_sees_order_and_length() -> None:
    a, b = torch.arange(8, dtype=torch.int64), torch.arange(8, dtype=torch.int64).flip(0)
    assert lin128(a) != lin128(b)  # same words, other positions (a swapped pair of words)
    assert digest_bytes("lin128", b"\x00") != digest_bytes("lin128", b"\x00\x00")  # zero padding is not free


def test_lin128_does_not_depend_on_alignment_or_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    data = torch.randint(0, 256, (100_003,), dtype=torch.uint8)
    shifted = torch.zeros(100_004, dtype=torch.uint8)
    shifted[1:] = data
    whole = lin128(data)
    assert lin128(shifted[1:]) == whole
    monkeypatch.setattr(hashing, "_LIN128_CHUNK", 1 << 10)
    monkeypatch.setattr(hashing, "_tables", {})
    assert lin128(data) == whole


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=6))
def test_lin128_fed_in_pieces_equals_the_whole(data: bytes, cuts: list[int]) -> None:
    from nemoverify.hashing import new_hasher

    h = new_hasher("lin128")
    points = sorted({min(c, len(data)) for c in cuts})
    for a, b in zip([0, *points], [*points, len(data)], strict=True):
        h.update(data[a:b])
    whole = torch.frombuffer(bytearray(data), dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
    assert h.hexdigest() == lin128(whole)


def test_a_lin128_manifest_is_refused_it_compares_loaders_it_does_not_guard_bytes(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    manifest = tmp_path / "m.json"
    result = cli("manifest", vl_checkpoint, "-o", str(manifest), "--algorithm", "lin128", "-q")
    assert result.exit_code == 2
    assert "choose one of blake3, sha256, xxh3-128" in result.stderr
    assert not manifest.exists()
