"""Reports and manifests land whole or not at all, and never replace a node that is not a file:
devices and FIFOs are written through, links followed, anything else refused."""

from __future__ import annotations

import json
import os
import stat
import threading

import pytest


def device(path: str, kind: int, major: int, minor: int) -> str:
    try:
        os.mknod(path, kind | 0o666, os.makedev(major, minor))
    except PermissionError:
        pytest.skip("making device nodes needs CAP_MKNOD")
    return path


def test_a_report_to_a_character_device_is_written_through(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    null = device(str(tmp_path / "null"), stat.S_IFCHR, 1, 3)  # a /dev/null of our own
    for args in (
        ["check", vl_checkpoint, "--json", null, "--sarif", null, "--junit-xml", null],
        ["manifest", vl_checkpoint, "-o", null],
    ):
        result = cli(*args, "-q")
        assert result.exit_code == 0, result.output
        assert stat.S_ISCHR(os.stat(null).st_mode) and os.stat(null).st_rdev == os.makedev(1, 3)
    assert os.listdir(tmp_path) == ["null"]  # no temporary file left beside it


def test_a_link_to_a_device_is_written_through_and_kept(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    link = tmp_path / "stdout-like"
    link.symlink_to("/dev/null")
    result = cli("check", vl_checkpoint, "--json", str(link), "-q")
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(os.listdir(tmp_path)) == ["stdout-like"]


def test_a_link_to_a_file_replaces_the_file_and_keeps_the_link(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "reports" / "r.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(target)
    assert cli("check", vl_checkpoint, "--json", str(link), "-q").exit_code == 0
    assert link.is_symlink() and json.loads(target.read_text())["ok"] is True
    assert os.listdir(target.parent) == ["r.json"]


def test_a_report_to_a_fifo_reaches_its_reader(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)
    received: list[bytes] = []
    ready = threading.Event()

    def reader() -> None:
        with open(fifo, "rb") as f:  # opened before the writer: blocks until nemoverify opens it
            ready.set()
            received.append(f.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    result = cli("check", vl_checkpoint, "--json", fifo, "-q")
    thread.join(30)
    assert result.exit_code == 0 and json.loads(received[0])["ok"] is True
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_fifo_nobody_reads_is_refused_not_waited_on(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)
    result = cli("manifest", vl_checkpoint, "-o", fifo, "-q")
    assert result.exit_code == 2
    assert "a FIFO that no process is reading" in result.stderr


def test_a_block_device_or_a_directory_is_refused(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    block = device(str(tmp_path / "loop"), stat.S_IFBLK, 7, 0)
    result = cli("manifest", vl_checkpoint, "-o", block, "-q")
    assert result.exit_code == 2 and "it is a block device" in " ".join(result.stderr.split())
    assert stat.S_ISBLK(os.stat(block).st_mode)
    result = cli("manifest", vl_checkpoint, "-o", str(tmp_path), "-q")
    assert result.exit_code == 2 and "is a directory" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["loop"]


def test_dash_writes_to_standard_output(cli, vl_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("manifest", vl_checkpoint, "-o", "-", "-q")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["format"] == "nemoverify.manifests/v2"
