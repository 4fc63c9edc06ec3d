"""The reference reader: stored bytes read at the header's offsets, hashed per tensor however the
reads cut them, and small-tensor runs held back while a candidate pass runs beside it."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time

import pytest
from malformed import raw_safetensors, write


def _shard(path: str, sizes: dict[str, int], seed: int) -> dict[str, bytes]:
    """A U8 shard with tensors of the given sizes, in that order; returns each tensor's bytes."""
    rng = random.Random(seed)
    entries: dict[str, object] = {}
    blobs: dict[str, bytes] = {}
    offset = 0
    for name, size in sizes.items():
        entries[name] = {"dtype": "U8", "shape": [size], "data_offsets": [offset, offset + size]}
        blobs[name] = bytes(rng.getrandbits(8) for _ in range(size))
        offset += size
    write(path, raw_safetensors(entries, b"".join(blobs.values())))
    return blobs


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_every_tensor_gets_the_digest_of_its_own_bytes_however_reads_cut_them(tmp_path, monkeypatch, chunk) -> None:  # type: ignore[no-untyped-def]
    from nemoverify.checkpoint.layout import open_checkpoint
    from nemoverify.readers import stored_bytes

    blobs = _shard(str(tmp_path / "model.safetensors"), {"a": 5, "z": 0, "b": 130, "c": 1, "d": 64, "e": 0}, seed=1)
    monkeypatch.setattr(stored_bytes, "READ_CHUNK", chunk)
    got = stored_bytes.hash_checkpoint(open_checkpoint(str(tmp_path)), "sha256", lambda phase, n: None)
    assert {n: o.digest for n, o in got.observations.items()} == {
        n: hashlib.sha256(b).hexdigest() for n, b in blobs.items()
    }


def _two_shards(root: str) -> tuple[int, int]:
    """Shard 1: one large tensor. Shard 2: many small ones. Returns (large bytes, small bytes)."""
    from nemoverify.readers.stored_bytes import SMALL_TENSOR_BYTES

    big = _shard(os.path.join(root, "model-00001-of-00002.safetensors"), {"big": 2 * SMALL_TENSOR_BYTES}, seed=2)
    small = _shard(os.path.join(root, "model-00002-of-00002.safetensors"), {f"s{i}": 100 for i in range(50)}, seed=3)
    weight_map = {"big": "model-00001-of-00002.safetensors"} | {n: "model-00002-of-00002.safetensors" for n in small}
    index = {"metadata": {}, "weight_map": weight_map}
    with open(os.path.join(root, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f)
    return sum(map(len, big.values())), sum(map(len, small.values()))


def test_small_tensor_runs_wait_until_the_candidate_is_done(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from nemoverify.checkpoint.layout import open_checkpoint
    from nemoverify.readers.stored_bytes import hash_checkpoint

    big, small = _two_shards(str(tmp_path))
    done = {"bytes": 0}
    lock = threading.Lock()

    def progress(phase: str, n: int) -> None:
        with lock:
            done["bytes"] += n

    candidate_done = threading.Event()
    result: dict[str, object] = {}
    worker = threading.Thread(
        target=lambda: result.update(
            d=hash_checkpoint(open_checkpoint(str(tmp_path)), "xxh3-128", progress, small_runs_after=candidate_done)
        )
    )
    worker.start()
    deadline = time.monotonic() + 10
    while done["bytes"] < big and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # time enough for the small run, were it not held back
    assert done["bytes"] == big and worker.is_alive()
    candidate_done.set()
    worker.join(10)
    assert done["bytes"] == big + small
    assert len(result["d"].observations) == 51  # type: ignore[attr-defined]


def test_cancel_reaches_a_pass_that_waits_for_the_candidate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from nemoverify.checkpoint.layout import open_checkpoint
    from nemoverify.readers.stored_bytes import hash_checkpoint

    _two_shards(str(tmp_path))
    cancel, never = threading.Event(), threading.Event()
    threading.Timer(0.2, cancel.set).start()
    with pytest.raises(KeyboardInterrupt):
        hash_checkpoint(
            open_checkpoint(str(tmp_path)), "xxh3-128", lambda p, n: None, cancel=cancel, small_runs_after=never
        )


def test_observations_made_in_bulk_equal_those_made_one_by_one(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from nemoverify.checkpoint.layout import open_checkpoint
    from nemoverify.model.routing import route
    from nemoverify.observations import Observation
    from nemoverify.readers import stored_bytes

    blobs = _shard(str(tmp_path / "model.safetensors"), {"a": 5, "z": 0, "b": 130, "c": 1}, seed=2)
    monkeypatch.setattr(stored_bytes, "READ_CHUNK", 64)  # b spans chunks; the others lie whole in one
    got = stored_bytes.hash_checkpoint(open_checkpoint(str(tmp_path)), "sha256", lambda phase, n: None)
    expected = {
        n: Observation(n, route(n).component, "U8", (len(b),), len(b), hashlib.sha256(b).hexdigest())
        for n, b in blobs.items()
    }
    assert got.observations == expected
    assert all(type(o) is Observation and o.status == "loaded" and o.reason is None for o in got.observations.values())
