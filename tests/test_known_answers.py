"""Digests users store must never change silently: each algorithm over fixed bytes, the root over
fixed entries, and the manifests of the shipped examples, pinned.

The expected values live in tests/vectors/digests.json, tests/vectors/roots.json and
examples/manifests/. After a deliberate change of a digest definition (which also needs a new
manifest format version), regenerate them with
`NEMOVERIFY_UPDATE_VECTORS=1 python -m pytest tests/test_known_answers.py` and say why in the commit.
tests/vectors/manifest-v1.json is never regenerated: it is a manifest in the first format, written
by hand, that every later nemoverify must still verify.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from typing import NamedTuple

import pytest

from nemoverify.hashing import ALGORITHMS, one_shot, root_digest, root_digest_v1

HERE = os.path.dirname(__file__)
VECTORS = os.path.join(HERE, "vectors", "digests.json")
ROOT_VECTORS = os.path.join(HERE, "vectors", "roots.json")
EXAMPLES = os.path.join(HERE, "..", "examples")
SHIPPED = ("nano-omni-tiny", "nano-12b-v2-vl-tiny")
MANIFEST_ALGORITHMS = ("blake3", "sha256")
UPDATE = bool(os.environ.get("NEMOVERIFY_UPDATE_VECTORS"))
INPUTS = {
    "empty": b"",
    "abc": b"abc",
    "13 bytes: a partial last word": bytes(range(13)),
    "words with the top bit set: lin128 shifts them arithmetically": bytes([0xFF] * 8 + [0x80] * 8 + [0x01] * 8),
    "1 MiB pattern": bytes((i * 7 + 3) % 251 for i in range(1 << 20)),
}


def lin128_from_the_readme(data: bytes) -> str:
    """lin128 exactly as docs/deployments.md defines it, in plain Python integers."""
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
    assert computed == _pinned(VECTORS, computed)


def _pinned(path: str, computed: object) -> object:
    """The committed vectors at `path`, first rewritten with `computed` under NEMOVERIFY_UPDATE_VECTORS."""
    if UPDATE:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(computed, f, indent=1, sort_keys=True)
            f.write("\n")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@pytest.mark.parametrize("name", list(INPUTS))
def test_lin128_is_what_the_readme_defines(name: str) -> None:
    assert one_shot("lin128")(INPUTS[name]) == lin128_from_the_readme(INPUTS[name])


def test_sha256_and_blake3_are_the_standard_functions() -> None:
    import hashlib

    import blake3

    data = INPUTS["1 MiB pattern"]
    assert one_shot("sha256")(data) == hashlib.sha256(data).hexdigest()
    assert one_shot("blake3")(data) == blake3.blake3(data).hexdigest()


class Entry(NamedTuple):
    name: str
    dtype: str
    shape: tuple[int, ...]
    digest: str


# Fixed entries, given out of order: a scalar, a name beyond ASCII (sorted by code point), a zero
# dimension, a dimension beyond 2**32, a digest of each length.
ROOT_INPUTS: dict[str, list[Entry]] = {
    "no tensors": [],
    "one scalar": [Entry("scale", "F32", (), "00" * 16)],
    "three tensors out of order": [
        Entry("vision_model.w", "BF16", (4, 0), "ab" * 32),
        Entry("language_model.\u00e9mbed", "F8_E4M3", (2**33, 1), "0123456789abcdef" * 2),
        Entry("language_model.embed", "I64", (3,), "f" * 64),
    ],
}


def root_from_the_readme(algorithm: str, entries: list[Entry]) -> str:
    """The v2 root exactly as docs/reports.md defines it, from the standard hash functions."""
    import blake3
    import xxhash

    u64 = lambda n: struct.pack("<Q", n)  # noqa: E731
    text = lambda s: u64(len(s.encode())) + s.encode()  # noqa: E731
    msg = b"nemoverify.root/v2\n"
    for e in sorted(entries, key=lambda e: e.name):
        msg += text(e.name) + text(e.dtype) + u64(len(e.shape)) + b"".join(map(u64, e.shape)) + text(e.digest)
    if algorithm == "lin128":
        return lin128_from_the_readme(msg)
    return {
        "blake3": lambda b: blake3.blake3(b).hexdigest(),
        "sha256": lambda b: hashlib.sha256(b).hexdigest(),
        "xxh3-128": xxhash.xxh3_128_hexdigest,
    }[algorithm](msg)


def _roots() -> dict[str, dict[str, dict[str, str]]]:
    return {
        name: {
            "v2": {alg: root_digest(alg, entries) for alg in ALGORITHMS},
            "v1": {alg: root_digest_v1(alg, entries) for alg in ALGORITHMS},
        }
        for name, entries in ROOT_INPUTS.items()
    }


def test_every_algorithm_gives_its_pinned_root_over_fixed_entries() -> None:
    computed = _roots()
    assert computed == _pinned(ROOT_VECTORS, computed)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("name", list(ROOT_INPUTS))
def test_the_root_is_what_the_readme_defines(name: str, algorithm: str) -> None:
    assert root_digest(algorithm, ROOT_INPUTS[name]) == root_from_the_readme(algorithm, ROOT_INPUTS[name])


def _manifest_path(example: str, algorithm: str) -> str:
    return os.path.join(EXAMPLES, "manifests", f"{example}.{algorithm}.json")


@pytest.mark.parametrize("algorithm", MANIFEST_ALGORITHMS)
@pytest.mark.parametrize("example", SHIPPED)
def test_the_shipped_examples_give_their_committed_manifests(example: str, algorithm: str) -> None:
    """Recorded again from the stored bytes, every entry, shard, component root and root is the same."""
    import nemoverify

    recorded = nemoverify.manifest(os.path.join(EXAMPLES, example), algorithm=algorithm).to_dict()
    path = _manifest_path(example, algorithm)
    if UPDATE:
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps(recorded | {"created_by": "nemoverify"}, indent=1) + "\n")
    with open(path, encoding="utf-8") as f:
        committed = json.load(f)
    assert committed["resources"] == recorded["resources"]
    assert committed["shards"] == recorded["shards"]
    assert (committed["root"], committed["components"]) == (recorded["root"], recorded["components"])
    assert {k: v for k, v in committed.items() if k != "created_by"} == {
        k: v for k, v in recorded.items() if k != "created_by"
    }


@pytest.mark.parametrize("algorithm", MANIFEST_ALGORITHMS)
@pytest.mark.parametrize("example", SHIPPED)
def test_the_committed_manifests_verify_their_examples(example: str, algorithm: str) -> None:
    import nemoverify

    report = nemoverify.verify(os.path.join(EXAMPLES, example), _manifest_path(example, algorithm))
    assert report.ok and report.status == "verified"


def test_a_manifest_written_in_the_first_format_still_verifies() -> None:
    """tests/vectors/manifest-v1.json, as nemoverify.manifests/v1 wrote it (roots over tab-separated
    lines), records examples/nano-12b-v2-vl-tiny: it verifies, and its root is the v1 definition's."""
    import nemoverify
    from nemoverify.engine.manifests import FORMAT_V1, load_manifest

    path = os.path.join(HERE, "vectors", "manifest-v1.json")
    loaded = load_manifest(path)
    assert loaded.format == FORMAT_V1
    with open(path, encoding="utf-8") as f:
        raw = json.load(f)
    lines = "".join(
        f"{r['name']}\t{r['dtype']}\t[{','.join(map(str, r['shape']))}]\t{r['digest']}\n"
        for r in sorted(raw["resources"], key=lambda r: r["name"])
    )
    assert raw["root"] == hashlib.sha256(lines.encode()).hexdigest() == loaded.root()
    report = nemoverify.verify(os.path.join(EXAMPLES, "nano-12b-v2-vl-tiny"), path)
    assert report.ok and report.status == "verified"


def test_the_documented_tensor_digest_command_gives_the_manifest_digest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """docs/reports.md's one-line recipe for a tensor digest, run as written, agrees with a manifest."""
    import subprocess
    import sys

    from nemoverify.model.checks import open_for_vllm
    from nemoverify.readers.stored_bytes import hash_checkpoint

    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "reports.md"), encoding="utf-8") as f:
        readme = f.read()
    found = re.search(r'`python -c "(import blake3,json,struct,sys;[^"]+)" SHARD NAME`', readme)
    assert found, "docs/reports.md lost its tensor-digest command"
    example = os.path.join(os.path.dirname(__file__), "..", "examples", "nano-omni-tiny")
    checkpoint = open_for_vllm(example)
    recorded = hash_checkpoint(checkpoint, "blake3", lambda phase, n: None).observations
    for shard in checkpoint.shards:
        for info in shard.header.tensors[:3]:
            out = subprocess.run(
                [sys.executable, "-c", found.group(1), shard.location, info.name], capture_output=True, text=True, check=True
            )
            assert out.stdout.strip() == recorded[info.name].digest
