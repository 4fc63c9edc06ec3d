"""Where reports and manifests go: never into what is verified, checked before the run, `-` for
standard output, and the permissions a plain write would give."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from conftest import snapshot

SHARD1 = "model-00001-of-00003.safetensors"


@pytest.fixture
def no_work(monkeypatch):  # type: ignore[no-untyped-def]
    """Fail the test if the run gets as far as opening the checkpoint."""
    import nemoverify.checkpoint.layout as layout

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the checkpoint was opened: the output should have been refused first")

    monkeypatch.setattr(layout, "build_checkpoint", refuse)


@pytest.mark.parametrize(
    "args",
    [
        ["check", "{root}", "--junit-xml", "{root}/" + SHARD1],
        ["manifest", "{root}", "-o", "{root}/config.json"],
        ["check", "{root}", "--json", "{root}/report.json"],
        ["verify", "{root}", "--manifest", "{manifest}", "--sarif", "{root}/sub/../report.sarif"],
        ["check", "{root}", "--json", "{link}"],
        ["inspect", "{root}", "--json", "{root}/inventory.json"],
        ["check", "{root}", "--manifest", "{manifest}", "--json", "{manifest}"],
    ],
    ids=[
        "junit-on-a-shard",
        "manifest-on-config",
        "json-into-the-dir",
        "sarif-via-dotdot",
        "via-a-link",
        "inspect",
        "over-the-manifest",
    ],
)
def test_nothing_is_ever_written_into_the_checkpoint_it_reads(
    cli, omni_checkpoint: str, copy_of, tmp_path, no_work, args: list[str]
) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(omni_checkpoint)
    os.makedirs(os.path.join(root, "sub"))
    manifest = tmp_path / "m.json"
    manifest.write_text("{}")
    link = tmp_path / "innocent.json"
    os.symlink(os.path.join(root, "config.json"), link)
    before, manifest_before = snapshot(root), manifest.read_bytes()
    result = cli(*[a.format(root=root, manifest=manifest, link=link) for a in args])
    assert result.exit_code == 2, result.output
    assert "nemoverify never writes into what it verifies" in " ".join(result.stderr.split())
    assert snapshot(root) == before
    assert manifest.read_bytes() == manifest_before


@pytest.fixture
def second_mount(tmp_path):  # type: ignore[no-untyped-def]
    """Mount a directory a second time (as a Kubernetes pod mounts one volume at two paths): the
    mount point to use, unmounted afterwards. Skips where this process may not mount."""
    mounted = []

    def mount(source: str) -> str:
        alias = tmp_path / f"alias{len(mounted)}"
        alias.mkdir()
        done = subprocess.run(["mount", "--bind", source, str(alias)], capture_output=True, text=True)
        if done.returncode:
            pytest.skip(f"cannot bind-mount here: {done.stderr.strip()}")
        mounted.append(alias)
        return str(alias)

    yield mount
    for alias in mounted:
        subprocess.run(["umount", str(alias)], check=False)


@pytest.mark.parametrize(
    ("option", "target"),
    [("-o", "{alias}/config.json"), ("-o", "{alias}/" + SHARD1), ("-o", "{alias}/new.json"), ("-o", "{alias}/sub/x.json")],
)
def test_a_second_mount_of_the_checkpoint_is_the_checkpoint(
    cli, omni_checkpoint: str, copy_of, second_mount, no_work, option: str, target: str
) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(omni_checkpoint)
    os.makedirs(os.path.join(root, "sub"))
    alias = second_mount(root)
    before = snapshot(root)
    result = cli("manifest", root, option, target.format(alias=alias))
    assert result.exit_code == 2, result.output
    text = " ".join(result.stderr.split())
    assert "nemoverify never writes into what it verifies" in text
    assert "the same file or directory as one of it, by another mount or link" in text
    assert snapshot(root) == before


def test_a_hard_link_to_a_checkpoint_file_is_the_checkpoint_file(cli, omni_checkpoint: str, copy_of, tmp_path, no_work) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(omni_checkpoint)
    link = tmp_path / "report.json"
    os.link(os.path.join(root, "config.json"), link)
    before = snapshot(root)
    result = cli("check", root, "--json", str(link))
    assert result.exit_code == 2, result.output
    assert "by another mount or link" in " ".join(result.stderr.split())
    assert snapshot(root) == before


@pytest.mark.parametrize("target", ["config.json", "model-00002-of-00003.safetensors", "evil.safetensors", "r.json"])
def test_a_single_file_checkpoint_guards_its_directory(cli, omni_checkpoint: str, copy_of, no_work, target: str) -> None:  # type: ignore[no-untyped-def]
    """The config beside it is read with it, and a new .safetensors there would be streamed by vLLM."""
    root = copy_of(omni_checkpoint)
    before = snapshot(root)
    result = cli("manifest", os.path.join(root, SHARD1), "--file-alone", "-o", os.path.join(root, target))
    assert result.exit_code == 2, result.output
    assert "the checkpoint's directory" in " ".join(result.stderr.split())
    assert snapshot(root) == before


def test_two_outputs_with_one_path_are_refused(cli, vl_checkpoint: str, tmp_path, no_work) -> None:  # type: ignore[no-untyped-def]
    out = str(tmp_path / "r")
    result = cli("check", vl_checkpoint, "--json", out, "--sarif", os.path.join(str(tmp_path), ".", "r"))
    assert result.exit_code == 2
    assert "--json and --sarif both write to" in result.stderr
    result = cli("check", vl_checkpoint, "--junit-xml", "-", "--sarif", "-")
    assert result.exit_code == 2 and "both write to standard output" in result.stderr
    result = cli("check", vl_checkpoint, "--format", "json", "--json", "-")
    assert result.exit_code == 2 and "--format json and --json both write to standard output" in result.stderr
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    ("where", "message"),
    [("missing/dir/r.json", "no such directory"), (".", "is a directory"), ("", "an empty path")],
)
def test_a_bad_output_path_is_found_before_the_run(
    cli, vl_checkpoint: str, tmp_path, no_work, where: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    path = os.path.join(str(tmp_path), where) if where else ""
    for command in (["check", vl_checkpoint], ["verify", vl_checkpoint, "--manifest", "m.json"]):
        result = cli(*command, "--json", path)
        assert result.exit_code == 2, result.output
        assert message in result.stderr


def test_dash_means_standard_output_for_every_report(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", vl_checkpoint, "--json", "-")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True
    assert "VERIFIED" in result.stderr  # the table moves out of the way
    result = cli("check", vl_checkpoint, "--junit-xml", "-", "-q")
    assert ET.fromstring(result.stdout.split("\n", 1)[1]).tag == "testsuites"
    result = cli("check", vl_checkpoint, "--sarif", "-", "-q")
    assert json.loads(result.stdout)["version"] == "2.1.0"
    result = cli("manifest", vl_checkpoint, "-o", "-")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["format"] == "nemoverify.manifests/v2"
    assert "wrote the manifest to standard output" in result.stderr
    assert not os.path.exists("-")


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_reports_and_manifests_get_the_permissions_the_umask_gives(
    cli, vl_checkpoint: str, tmp_path, umask: int
) -> None:  # type: ignore[no-untyped-def]
    previous = os.umask(umask)
    try:
        report, manifest = tmp_path / "r.json", tmp_path / "m.json"
        assert cli("check", vl_checkpoint, "--json", str(report), "-q").exit_code == 0
        assert cli("manifest", vl_checkpoint, "-o", str(manifest), "-q").exit_code == 0
    finally:
        os.umask(previous)
    for path in (report, manifest):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask, oct(os.stat(path).st_mode)


def test_an_existing_report_keeps_its_mode_and_a_link_stays_a_link(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "real.json"
    target.write_text("old")
    os.chmod(target, 0o640)
    link = tmp_path / "link.json"
    os.symlink(target, link)
    assert cli("check", vl_checkpoint, "--json", str(link), "-q").exit_code == 0
    assert os.path.islink(link)
    assert json.loads(target.read_text())["ok"] is True
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640


def test_a_character_device_or_fifo_is_written_through_never_replaced(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import threading

    assert cli("check", vl_checkpoint, "--json", "/dev/null", "-q").exit_code == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(Path(fifo).read_text(encoding="utf-8")))
    reader.start()
    assert cli("check", vl_checkpoint, "--sarif", fifo, "-q").exit_code == 0
    reader.join(timeout=30)
    assert json.loads(received[0])["version"] == "2.1.0"
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_cached_repo_id_guards_its_whole_cache_entry(cli, tmp_path, monkeypatch, no_work) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    blobs = tmp_path / "hub" / "models--nvidia--nano-vl" / "blobs"
    blobs.mkdir(parents=True)
    result = cli("check", "nvidia/nano-vl", "--json", str(blobs / "r.json"))
    assert result.exit_code == 2, result.output
    assert "inside the checkpoint nvidia/nano-vl" in " ".join(result.stderr.split())
    assert os.listdir(blobs) == []


EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "nano-12b-v2-vl-tiny")


def nemoverify(*args: str, **streams: object) -> subprocess.CompletedProcess[bytes]:
    """The CLI in a process of its own, its standard streams as given (pipes unless told)."""
    from conftest import CLI_ENV

    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE} | streams
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "nemoverify", *args], env=os.environ | CLI_ENV, timeout=300, **streams
    )


@pytest.mark.parametrize("name", ["/dev/stdout", "/proc/self/fd/1", "a link to /dev/stdout"])
def test_a_report_on_a_name_of_piped_stdout_is_written_to_the_pipe(tmp_path, name: str) -> None:  # type: ignore[no-untyped-def]
    """/proc/self/fd/1 of a pipe resolves to `pipe:[N]`, which names nothing: the report must go
    through the stream, as `-` does, and the table out of its way."""
    if name.startswith("a link"):
        name = str(tmp_path / "out.json")
        os.symlink("/dev/stdout", name)
    result = nemoverify("check", EXAMPLE, "--json", name)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert json.loads(result.stdout)["ok"] is True  # the table is not mixed in
    assert "VERIFIED" in result.stderr.decode()


def test_a_report_on_dev_stderr_is_written_to_piped_stderr() -> None:
    result = nemoverify("check", EXAMPLE, "--json", "/dev/stderr", "-q")
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert json.loads(result.stderr)["ok"] is True
    assert result.stdout == b""


def test_a_report_on_dev_stdout_appends_to_the_file_stdout_is(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`>> log.txt`: the file is written through its descriptor, never replaced by a new one."""
    log = tmp_path / "log.txt"
    log.write_text("earlier\n")
    inode = os.stat(log).st_ino
    with open(log, "ab") as out:
        result = nemoverify("check", EXAMPLE, "--json", "/dev/stdout", stdout=out)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert os.stat(log).st_ino == inode
    assert sorted(os.listdir(tmp_path)) == ["log.txt"]
    earlier, report = log.read_text().split("\n", 1)
    assert earlier == "earlier"
    assert json.loads(report)["ok"] is True
    assert "VERIFIED" in result.stderr.decode()  # the table went out of the report's way


def test_two_outputs_on_one_standard_stream_are_refused_however_named(cli, vl_checkpoint: str, no_work) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", vl_checkpoint, "--json", "/dev/stdout", "--sarif", "-")
    assert result.exit_code == 2 and "--json and --sarif both write to standard output" in result.stderr
    result = cli("check", vl_checkpoint, "--format", "json", "--junit-xml", "/dev/fd/1")
    assert result.exit_code == 2 and "--format json and --junit-xml both write to standard output" in result.stderr
    result = cli("check", vl_checkpoint, "--json", "/dev/stderr", "--sarif", "/proc/self/fd/2")
    assert result.exit_code == 2 and "--json and --sarif both write to standard error" in result.stderr


def test_a_report_on_a_name_of_stdout_goes_where_dash_does(cli, vl_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", vl_checkpoint, "--json", "/dev/stdout", "--sarif", "/dev/stderr")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True
    sarif, table = result.stderr.split("\n}\n", 1)
    assert json.loads(sarif + "\n}")["version"] == "2.1.0"
    assert "VERIFIED" in table


def test_a_name_of_stdout_redirected_into_the_checkpoint_is_still_refused(copy_of, vl_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(vl_checkpoint)
    with open(os.path.join(root, "r.json"), "wb") as out:  # what `> checkpoint/r.json` makes
        result = nemoverify("check", root, "--json", "/dev/stdout", "-q", stdout=out)
    assert result.returncode == 2
    assert "nemoverify never writes into what it verifies" in " ".join(result.stderr.decode().split())
    assert os.path.getsize(os.path.join(root, "r.json")) == 0


def test_report_files_are_written_before_a_fifo_whose_reader_may_stall(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # A reader that never reads blocks the FIFO's write: the files must already be there by then.
    from nemoverify.output import files as outputs
    from nemoverify.report import Report

    fifo = tmp_path / "reports.fifo"
    os.mkfifo(fifo)
    written: list[str] = []
    monkeypatch.setattr(outputs, "write_output", lambda path, text: written.append(path))
    reports = outputs.Reports(json=str(fifo), junit=str(tmp_path / "r.xml"), sarif=str(tmp_path / "r.sarif"))
    assert reports.write(Report.without_verdict("ckpt", "error", ())) == []
    assert written == [str(tmp_path / "r.xml"), str(tmp_path / "r.sarif"), str(fifo)]


@pytest.mark.parametrize("name", ["-", "/dev/stdout"])
def test_a_report_on_a_closed_stdout_is_refused_before_any_work(vl_checkpoint: str, name: str) -> None:
    # Found after the run, it would cost the run and then lose the verdict's report.
    proc = nemoverify("check", vl_checkpoint, "--json", name, "-q", stdout=None, preexec_fn=lambda: os.close(1))
    assert proc.returncode == 2, proc.stderr
    assert f"--json {name}: standard output is closed" in proc.stderr.decode()
    assert b"Traceback" not in proc.stderr
