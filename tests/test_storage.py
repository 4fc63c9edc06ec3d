"""Where nemoverify reads from: only regular files are opened (a FIFO or a device never blocks a run),
and every JSON file is read within a stated bound, refused beyond it by name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from malformed import INDEX, SHARD2, edit_index, write

BOUND_S = 60  # a hang is the failure; every run here takes a few seconds


def nemoverify(*args: str) -> subprocess.CompletedProcess[str]:
    """A CLI run in its own process, so that a run that blocks forever fails the test instead of hanging it."""
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "nemoverify", *args],
            capture_output=True,
            text=True,
            timeout=BOUND_S,
            env=os.environ | {"COLUMNS": "1000"},
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"nemoverify {' '.join(args)} still running after {BOUND_S} s")
    assert time.monotonic() - started < BOUND_S
    return proc


@pytest.fixture(scope="module")
def vl_manifest(vl_checkpoint: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = str(tmp_path_factory.mktemp("manifest") / "m.json")
    assert nemoverify("manifest", vl_checkpoint, "-o", path, "-q").returncode == 0
    return path


def fifo_at(root: str, name: str) -> str:
    path = os.path.join(root, name)
    if os.path.exists(path):
        os.unlink(path)
    os.mkfifo(path)  # no writer ever comes: open() of it would block forever
    return path


@pytest.mark.parametrize("name", ["config.json", INDEX, SHARD2])
def test_a_fifo_in_the_checkpoint_is_refused_by_every_command(
    vl_checkpoint: str, vl_manifest: str, copy_of, tmp_path, name: str
) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(vl_checkpoint)
    fifo = fifo_at(root, name)
    for args in (
        ["inspect", root],
        ["manifest", root, "-o", str(tmp_path / "m.json")],
        ["verify", root, "--manifest", vl_manifest],
        ["check", root],
    ):
        proc = nemoverify(*args)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 3, (args, output)
        assert f"{fifo}: cannot be read: it is a FIFO, not a regular file" in " ".join(output.split()), (args, output)
        assert "Traceback" not in output
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("kind", ["fifo", "character-device"])
def test_a_manifest_that_is_not_a_regular_file_is_refused(vl_checkpoint: str, tmp_path, kind: str) -> None:  # type: ignore[no-untyped-def]
    if kind == "fifo":
        manifest, what = fifo_at(str(tmp_path), "m.json"), "a FIFO"
    else:
        manifest, what = "/dev/zero", "a character device"  # read whole, it would never end
    for args in (["verify", vl_checkpoint, "--manifest", manifest], ["check", vl_checkpoint, "--manifest", manifest]):
        proc = nemoverify(*args)
        assert proc.returncode == 3, (args, proc.stderr)
        assert f"{manifest}: cannot read the manifest: it is {what}" in " ".join(proc.stderr.split())


@pytest.mark.parametrize(("name", "size"), [("config.json", 2 << 30), (INDEX, (256 << 20) + 1)])
def test_a_json_file_beyond_its_bound_is_refused_unread(cli, vl_checkpoint: str, copy_of, name: str, size: int) -> None:  # type: ignore[no-untyped-def]
    import resource

    root = copy_of(vl_checkpoint)
    path = os.path.join(root, name)
    with open(path, "ab") as f:
        f.truncate(size)  # sparse: gigabytes declared, nothing allocated
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = cli("inspect", root)
    assert result.exit_code == 3
    text = " ".join(result.output.split())
    assert f"{path}: cannot be read: it is {size:,} bytes, beyond nemoverify's bound" in text
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: never read


@pytest.mark.parametrize("name", ["config.json", INDEX])
def test_deeply_nested_json_in_the_checkpoint_is_invalid(cli, vl_checkpoint: str, copy_of, name: str) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(vl_checkpoint)
    write(os.path.join(root, name), b'{"weight_map": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")
    for command in ("inspect", "check"):
        result = cli(command, root)
        assert result.exit_code == 3, result.output
        assert "nests too deeply to parse" in result.output and name in result.output
        assert "unexpected" not in result.output


def test_a_nul_in_a_shard_name_is_an_unsafe_path(cli, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(vl_checkpoint)
    edit_index(lambda i: i["weight_map"].update({"mlp1.1.weight": "model\x00.safetensors"}))(root)
    for command in ("inspect", "check"):
        result = cli(command, root)
        assert result.exit_code == 3, result.output
        assert "[unsafe-path]" in result.output and "holds a control character" in result.output
        assert "unexpected" not in result.output


def test_an_index_is_read_whole_within_its_bound(cli, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    """The bound refuses only what is beyond it: an index padded to just under it still verifies."""
    root = copy_of(vl_checkpoint)
    path = os.path.join(root, INDEX)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    data["padding"] = "x" * (4 << 20)
    write(path, json.dumps(data).encode())
    assert cli("inspect", root).exit_code == 0


def sparse_checkpoint(root: str, declared: int) -> str:
    """One shard declaring one U8 tensor of `declared` bytes, none of them written: a sparse file."""
    from malformed import raw_safetensors

    os.makedirs(root)
    path = os.path.join(root, "model.safetensors")
    write(
        path,
        raw_safetensors(
            {"language_model.lm_head.weight": {"dtype": "U8", "shape": [declared], "data_offsets": [0, declared]}}
        ),
    )
    os.truncate(path, os.path.getsize(path) + declared)
    assert os.stat(path).st_blocks * 512 < declared // 100
    return root


@pytest.mark.parametrize("command", ["inspect", "check", "manifest", "verify"])
def test_a_sparse_shard_is_refused_before_any_work_by_every_command(
    cli, vl_manifest: str, tmp_path, command: str
) -> None:  # type: ignore[no-untyped-def]
    root = sparse_checkpoint(str(tmp_path / "sparse"), 1 << 40)  # 1 TiB declared, 4 KiB on disk
    extra = {"manifest": ["-o", str(tmp_path / "m.json")], "verify": ["--manifest", vl_manifest]}.get(command, [])
    started = time.monotonic()
    result = cli(command, root, *extra)
    assert result.exit_code == 3, result.output
    assert time.monotonic() - started < 10  # not a terabyte of holes read and hashed
    text = " ".join((result.stdout + result.stderr).split())
    assert "[shard-sparse]" in text and "declares 1,099,511,627,776 bytes of tensor data but holds" in text
    assert "model.safetensors" in text
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("command", ["manifest", "verify", "check"])
def test_max_bytes_refuses_a_checkpoint_declaring_more_before_reading(
    cli, vl_manifest: str, tmp_path, command: str
) -> None:  # type: ignore[no-untyped-def]
    root = sparse_checkpoint(str(tmp_path / "huge"), 1 << 40)  # 1 TiB declared, 4 KiB on disk
    extra = {"manifest": ["-o", str(tmp_path / "m.json")], "verify": ["--manifest", vl_manifest], "check": []}[command]
    started = time.monotonic()
    result = cli(command, root, *extra, "--max-bytes", str(64 << 30))
    assert result.exit_code == 3, result.output
    assert time.monotonic() - started < 10
    text = " ".join(result.stderr.split())
    assert "[max-bytes]" in text and "declares 1,099,511,627,776 bytes of tensor data" in text
    assert "beyond --max-bytes 68,719,476,736; refused before reading" in text


def test_max_bytes_passes_a_checkpoint_within_it(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert (
        cli("manifest", vl_checkpoint, "-o", str(tmp_path / "m.json"), "-q", "--max-bytes", "1GiB").exit_code == 0
    )


def test_max_bytes_bounds_the_copy_checked_against_too(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch
    from safetensors.torch import save_file

    stored = sum(os.path.getsize(os.path.join(vl_checkpoint, f)) for f in os.listdir(vl_checkpoint))
    copy = tmp_path / "copy"
    shutil.copytree(vl_checkpoint, copy)
    save_file({"language_model.extra": torch.zeros(1 << 20)}, str(copy / "extra.safetensors"))  # 4 MiB more
    result = cli("check", vl_checkpoint, "--against", str(copy), "--max-bytes", str(stored))
    assert result.exit_code == 3, result.output
    text = " ".join(result.stderr.split())
    assert f"{copy}: invalid checkpoint" in text and "[max-bytes]" in text


def _flood(root: str, shards: int, per_shard: int) -> str:
    """Shards of tensors that declare no data: no byte bound stops them, only a count does."""
    from malformed import raw_safetensors

    os.makedirs(root)
    for i in range(shards):
        entries = {f"language_model.t{i}_{k}": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]} for k in range(per_shard)}
        write(os.path.join(root, f"s{i}.safetensors"), raw_safetensors(entries))
    return root


@pytest.mark.parametrize("command", ["inspect", "check", "manifest", "verify"])
def test_a_flood_of_empty_tensors_is_refused_by_count_before_parsing(
    cli, vl_manifest: str, tmp_path, command: str
) -> None:  # type: ignore[no-untyped-def]
    root = _flood(str(tmp_path / "flood"), shards=3, per_shard=4000)
    extra = {"manifest": ["-o", str(tmp_path / "m.json")], "verify": ["--manifest", vl_manifest]}.get(command, [])
    bytes_bound = [] if command == "inspect" else ["--max-bytes", "1MB"]  # inspect reads no tensor data
    result = cli(command, root, *extra, *bytes_bound, "--max-tensors", "5000")
    assert result.exit_code == 3, result.output
    text = " ".join((result.stdout + result.stderr).split())
    assert "[max-tensors]" in text and "s1.safetensors: declares up to 4,000 tensors, beyond the 1,000 left" in text
    assert "s2.safetensors" not in text  # no header read past the bound


def test_max_tensors_below_one_is_a_usage_error(cli, vl_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    assert cli("inspect", vl_checkpoint, "--max-tensors", "0").exit_code == 2


@pytest.mark.parametrize(
    "args",
    [
        ["--storage-timeout", "1e12"],
        ["--storage-timeout", "604801"],
        ["--storage-timeout", "inf"],
        ["--rank-timeout", "99999999999"],
        ["--rank-timeout", "10000000000"],
    ],
)
def test_a_timeout_beyond_a_week_is_a_usage_error(cli, vl_checkpoint: str, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", vl_checkpoint, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and args[0] in " ".join(result.stderr.split())


def test_holes_split_across_shards_are_still_a_sparse_copy(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Three shards of 60 MiB declared, each under the size judged alone: together, holes."""
    from malformed import raw_safetensors

    root = tmp_path / "split"
    root.mkdir()
    declared = 60 << 20
    for i in range(3):
        path = root / f"s{i}.safetensors"
        entries = {f"language_model.t{i}": {"dtype": "U8", "shape": [declared], "data_offsets": [0, declared]}}
        write(str(path), raw_safetensors(entries))
        os.truncate(path, os.path.getsize(path) + declared)
    for command in ("inspect", "manifest"):
        extra = ["-o", str(tmp_path / "m.json")] if command == "manifest" else []
        result = cli(command, str(root), *extra)
        assert result.exit_code == 3, (command, result.output)
        assert result.output.count("[shard-sparse]") >= 3, result.output
    assert not (tmp_path / "m.json").exists()


def test_a_checkpoint_of_no_tensors_is_not_verified(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from malformed import raw_safetensors

    root = tmp_path / "empty-headers"
    root.mkdir()
    write(str(root / "model.safetensors"), raw_safetensors({}))
    result = cli("check", str(root))
    assert result.exit_code == 3, result.output
    assert "[no-tensors]" in result.stderr and "VERIFIED" not in result.output


def test_a_flood_spelled_with_escapes_is_counted_all_the_same(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """JSON (and the crate) read "data\\u005foffsets" as "data_offsets": the count cannot rely on a spelling."""
    root = tmp_path / "escaped"
    root.mkdir()
    entries = ",".join(
        f'"vision_model.z{k}":{{"dtype":"F32","shape":[0],"data\\u005foffsets":[0,0]}}' for k in range(5000)
    )
    header = ("{" + entries + "}").encode()
    write(str(root / "model.safetensors"), len(header).to_bytes(8, "little") + header)
    result = cli("inspect", str(root), "--max-tensors", "100")
    assert result.exit_code == 3, result.output
    assert "[max-tensors]" in result.output
