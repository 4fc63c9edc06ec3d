"""Digests users store must never change silently: each algorithm over fixed bytes, pinned.

The expected values live in tests/vectors/digests.json. After a deliberate change of a digest
definition (which also needs a new manifest format version), regenerate them with
`NEMOVERIFY_UPDATE_VECTORS=1 python -m pytest tests/test_known_answers.py` and say why in the commit.
"""

from __future__ import annotations

import json
import os

import pytest

from nemoverify.hashing import ALGORITHMS, one_shot

VECTORS = os.path.join(os.path.dirname(__file__), "vectors", "digests.json")
INPUTS = {
    "empty": b"",
    "abc": b"abc",
    "13 bytes: a partial last word": bytes(range(13)),
    "words with the top bit set: lin128 shifts them arithmetically": bytes([0xFF] * 8 + [0x80] * 8 + [0x01] * 8),
    "1 MiB pattern": bytes((i * 7 + 3) % 251 for i in range(1 << 20)),
}


def lin128_from_the_readme(data: bytes) -> str:
    """lin128 exactly as the README defines it, in plain Python integers."""
    a, b, c, d = 0x9E3779B97F4A7C14, 0xC2B2AE3D27D4EB4F, 0xD6E8FEB86659FD92, 0x165667B19E3779F9
    m = 1 << 64
    padded = data + b"\0" * (-len(data) % 8)
    lane1, lane2 = len(data) * a % m, 0
    for i in range(len(padded) // 8):
        w = int.from_bytes(padded[8 * i : 8 * i + 8], "little", signed=True)
        lane1 = (lane1 + w * (i * a + b)) % m
        lane2 = (lane2 + (w ^ (w >> 29)) * (i * c + d)) % m  # >> on a negative int is arithmetic
    return f"{lane1:016x}{lane2:016x}"


def _computed() -> dict[str, dict[str, str]]:
    return {name: {alg: one_shot(alg)(data) for alg in ALGORITHMS} for name, data in INPUTS.items()}


def test_every_algorithm_gives_its_pinned_digest_over_fixed_bytes() -> None:
    computed = _computed()
    if os.environ.get("NEMOVERIFY_UPDATE_VECTORS"):
        with open(VECTORS, "w") as f:
            json.dump(computed, f, indent=1, sort_keys=True)
            f.write("\n")
    with open(VECTORS) as f:
        pinned = json.load(f)
    assert computed == pinned


@pytest.mark.parametrize("name", list(INPUTS))
def test_lin128_is_what_the_readme_defines(name: str) -> None:
    assert one_shot("lin128")(INPUTS[name]) == lin128_from_the_readme(INPUTS[name])


def test_sha256_and_blake3_are_the_standard_functions() -> None:
    import hashlib

    import blake3

    data = INPUTS["1 MiB pattern"]
    assert one_shot("sha256")(data) == hashlib.sha256(data).hexdigest()
    assert one_shot("blake3")(data) == blake3.blake3(data).hexdigest()
