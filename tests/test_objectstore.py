"""Checkpoints where they live: a real S3-compatible server (moto_server) on 127.0.0.1, and the
local Hugging Face cache."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from malformed import SHARD2, flip_byte

from nemoverify.readers.runai import endpoint_environment

SECRET = "s3cr3t-never-printed-0xDEADBEEF"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalServer:
    """A storage emulator on 127.0.0.1 and a free port, started for the test session."""

    def __init__(self, program: str, *args: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [a.format(port=self.port) for a in args]
        self.proc = subprocess.Popen(
            [shutil.which(program) or program, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{program} did not start")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def moto_server() -> LocalServer:
    return LocalServer("moto_server", "-H", "127.0.0.1", "-p", "{port}")


def gcs_emulator() -> LocalServer:
    """The Python client finds it through STORAGE_EMULATOR_HOST, the streamer's C++ client through
    CLOUD_STORAGE_EMULATOR_ENDPOINT (nemoverify sets it from the first)."""
    return LocalServer("gcp-storage-emulator", "start", "--host=127.0.0.1", "--port={port}", "--in-memory")


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    srv = moto_server()
    yield srv
    srv.stop()


@pytest.fixture
def s3_env(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    for k, v in {
        "AWS_ENDPOINT_URL": server.url,
        "AWS_ACCESS_KEY_ID": "testing-key",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("RUNAI_STREAMER_S3_ENDPOINT", raising=False)
    return server


def upload(src: str, bucket: str, prefix: str) -> str:
    import boto3

    s3 = boto3.client("s3")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=bucket)
    for name in os.listdir(src):
        s3.upload_file(os.path.join(src, name), bucket, f"{prefix}/{name}")
    return f"s3://{bucket}/{prefix}"


def test_a_bucket_checkpoint_verifies_and_inspects(cli, s3_env, omni_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    url = upload(omni_checkpoint, "checkpoints", "omni")
    result = cli("check", url)
    assert result.exit_code == 0, result.output
    assert "VERIFIED" in result.stdout and SECRET not in result.output
    result = cli("inspect", url, "--format", "json")
    assert result.exit_code == 0
    inv = json.loads(result.stdout)
    assert inv["components"]["sound"]["tensors"] > 0 and inv["indexed"]


def test_legacy_with_reuse_fails_when_streamed_from_the_bucket(cli, s3_env, vl_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    url = upload(vl_checkpoint, "checkpoints", "vl")
    assert cli("check", url, "--vllm", "0.20", "--stress").exit_code == 1


def test_local_against_upload_and_a_corrupted_object(cli, s3_env, omni_checkpoint: str, copy_of, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = upload(omni_checkpoint, "checkpoints", "upload")
    assert cli("check", omni_checkpoint, "--against", url).exit_code == 0
    manifest = tmp_path / "m.json"
    assert cli("manifest", omni_checkpoint, "-o", str(manifest), "-q").exit_code == 0
    assert cli("verify", url, "--manifest", str(manifest)).exit_code == 0

    damaged = copy_of(omni_checkpoint)  # one flipped byte, uploaded over the good object
    name = flip_byte(damaged, mask=0x80)
    path = os.path.join(damaged, SHARD2)
    import boto3

    boto3.client("s3").upload_file(path, "checkpoints", f"upload/{SHARD2}")
    out = tmp_path / "r.json"
    result = cli("check", omni_checkpoint, "--against", url, "--json", str(out), "-q")
    assert result.exit_code == 1
    assert {m["name"] for m in json.loads(out.read_text())["mismatches"]} == {name}
    assert cli("verify", url, "--manifest", str(manifest)).exit_code == 1


def test_a_truncated_object_is_an_invalid_checkpoint(cli, s3_env, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    damaged = copy_of(vl_checkpoint)
    os.truncate(os.path.join(damaged, SHARD2), os.path.getsize(os.path.join(damaged, SHARD2)) - 5)
    url = upload(damaged, "checkpoints", "truncated")
    result = cli("check", url)
    assert result.exit_code == 3
    assert "[file-truncated]" in result.stderr and f"{url}/{SHARD2}" in result.stderr


def test_an_object_missing_from_an_indexed_upload_fails_its_manifest_by_name(
    cli, s3_env, omni_checkpoint: str, copy_of, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Without a manifest a shard the index names but the bucket lacks is invalid input (exit 3);
    with one that records it and its size, it is a failed verification (exit 1), named."""
    manifest = tmp_path / "m.json"
    assert cli("manifest", omni_checkpoint, "-o", str(manifest), "-q").exit_code == 0
    damaged = copy_of(omni_checkpoint)
    shard3 = "model-00003-of-00003.safetensors"
    os.remove(os.path.join(damaged, shard3))
    url = upload(damaged, "checkpoints", "missing-shard")
    result = cli("check", url)
    assert result.exit_code == 3 and f"[shard-missing] {url}/{shard3}" in result.stderr
    out = tmp_path / "r.json"
    assert cli("verify", url, "--manifest", str(manifest), "--json", str(out), "-q").exit_code == 1
    shards = [m for m in json.loads(out.read_text())["mismatches"] if m["component"] == "shard"]
    assert [(m["name"], m["kind"]) for m in shards] == [(shard3, "missing")]


def test_storage_errors_end_with_exit_3_and_no_credentials(cli, s3_env) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", "s3://no-such-bucket/model")
    assert result.exit_code == 3
    assert "no such bucket 'no-such-bucket'" in result.stderr
    assert SECRET not in result.output


def test_connection_refused_is_exit_3(cli, s3_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    started = time.monotonic()
    result = cli("check", "s3://checkpoints/omni")
    assert result.exit_code == 3, result.output
    assert "Could not connect" in result.stderr or "connect" in result.stderr.lower()
    assert SECRET not in result.output
    assert time.monotonic() - started < 60


def test_endpoint_settings_are_handed_to_the_streamer_only_where_it_has_none() -> None:
    # As vLLM copies AWS_ENDPOINT_URL: only where RUNAI_STREAMER_S3_ENDPOINT is unset.
    assert endpoint_environment({"AWS_ENDPOINT_URL": "http://a", "STORAGE_EMULATOR_HOST": "http://g"}) == {
        "RUNAI_STREAMER_S3_ENDPOINT": "http://a",
        "CLOUD_STORAGE_EMULATOR_ENDPOINT": "http://g",
    }
    assert endpoint_environment({"AWS_ENDPOINT_URL": "http://a", "RUNAI_STREAMER_S3_ENDPOINT": "http://b"}) == {}
    assert endpoint_environment({}) == {}


def test_inspect_that_cannot_connect_still_writes_its_json_saying_why(cli, s3_env, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    out = tmp_path / "inventory.json"
    result = cli("inspect", "s3://checkpoints/omni", "--json", str(out))
    assert result.exit_code == 3, result.output
    inventory = json.loads(out.read_text())
    assert (inventory["ok"], inventory["components"], inventory["shards"]) == (False, {}, [])
    assert [p["rule"] for p in inventory["problems"]] == ["storage-error"]
    assert SECRET not in out.read_text()


class DyingProxy:
    """A TCP proxy in front of a server that, once `budget` bytes of responses have passed, drops
    every connection and refuses new ones: the server dying mid-stream, at a point set in bytes
    rather than by a sleep (which a faster run outruns)."""

    def __init__(self, target_port: int, budget: int) -> None:
        self.target, self.budget, self.sent = target_port, budget, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.dead = threading.Event()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.dead.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(1 << 16):
                dst.sendall(data)
                if counted:
                    with self.lock:
                        self.sent += len(data)
                        if self.sent >= self.budget:
                            self.die()
                            return

    def die(self) -> None:  # called with the lock held, or at the end
        self.dead.set()
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def test_a_server_that_dies_mid_stream_ends_the_run(s3_env, make_checkpoint: Callable[..., str]) -> None:  # type: ignore[no-untyped-def]
    src = make_checkpoint(hidden=1024, ffn=4096, layers=8, vocab=16384, seed=3)  # ~200 MB
    url = upload(src, "dying", "model")
    total = sum(os.path.getsize(os.path.join(src, f)) for f in os.listdir(src))
    proxy = DyingProxy(s3_env.port, budget=total // 2)  # headers read, streaming well under way
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "nemoverify", "check", url],
            env=os.environ | {"AWS_ENDPOINT_URL": proxy.url},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proxy.dead.is_set()
        assert proc.returncode == 3, proc.stderr[-1500:]
        assert "VERIFIED" not in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
        assert SECRET not in proc.stderr
    finally:
        with proxy.lock:
            proxy.die()


def _hf_cache(root: str, repo_id: str, src: str) -> None:
    """The Hugging Face cache layout: snapshot files are links into blobs/."""
    repo = os.path.join(root, "models--" + repo_id.replace("/", "--"))
    rev = "0123456789abcdef0123456789abcdef01234567"
    os.makedirs(os.path.join(repo, "refs"))
    os.makedirs(os.path.join(repo, "blobs"))
    os.makedirs(os.path.join(repo, "snapshots", rev))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(rev)
    for i, name in enumerate(sorted(os.listdir(src))):
        blob = os.path.join(repo, "blobs", f"blob{i}")
        shutil.copy(os.path.join(src, name), blob)
        os.symlink(os.path.join("..", "..", "blobs", f"blob{i}"), os.path.join(repo, "snapshots", rev, name))


def test_a_cached_hugging_face_repo_id(cli, vl_checkpoint: str, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cache = str(tmp_path / "hub")
    _hf_cache(cache, "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-BF16", vl_checkpoint)
    monkeypatch.setenv("HF_HUB_CACHE", cache)
    result = cli("check", "nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-BF16")
    assert result.exit_code == 0, result.output
    result = cli("check", "nvidia/not-downloaded")
    assert result.exit_code == 5  # no such checkpoint
    assert "not in the local Hugging Face cache" in " ".join(result.stderr.split())
    assert "never downloads" in " ".join(result.stderr.split())


@pytest.fixture(scope="module")
def gcs_server() -> Iterator[LocalServer]:
    srv = gcs_emulator()
    yield srv
    srv.stop()


@pytest.fixture
def gcs_env(gcs_server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> LocalServer:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_server.url)
    monkeypatch.setenv("RUNAI_STREAMER_GCS_USE_ANONYMOUS_CREDENTIALS", "true")
    monkeypatch.delenv("CLOUD_STORAGE_EMULATOR_ENDPOINT", raising=False)
    return gcs_server


def gcs_upload(src: str, bucket: str, prefix: str) -> str:
    from google.api_core.exceptions import Conflict
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project="test", credentials=AnonymousCredentials())
    try:
        b = client.create_bucket(bucket)
    except Conflict:
        b = client.bucket(bucket)
    for name in os.listdir(src):
        b.blob(f"{prefix}/{name}").upload_from_filename(os.path.join(src, name))
    return f"gs://{bucket}/{prefix}"


def nemoverify(*args: str) -> subprocess.CompletedProcess[str]:
    """A CLI run in its own process. The streamer keeps one object-storage backend per process
    (after an S3 stream, a GCS stream in the same process fails), and a user's run is one process."""
    return subprocess.run([sys.executable, "-m", "nemoverify", *args], capture_output=True, text=True, timeout=120)


def test_a_gcs_checkpoint_verifies_streamed_from_the_bucket(gcs_env, omni_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    url = gcs_upload(omni_checkpoint, "models", "omni")
    result = nemoverify("check", url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert nemoverify("check", omni_checkpoint, "--against", url).returncode == 0
    assert nemoverify("inspect", url).returncode == 0
    assert nemoverify("check", url, "--vllm", "0.20", "--stress").returncode == 1


def test_a_corrupted_or_truncated_gcs_object_is_caught(cli, gcs_env, omni_checkpoint: str, copy_of, tmp_path) -> None:  # type: ignore[no-untyped-def]
    manifest = tmp_path / "m.json"
    assert cli("manifest", omni_checkpoint, "-o", str(manifest), "-q").exit_code == 0
    flipped = copy_of(omni_checkpoint)
    name = flip_byte(flipped, mask=0x40)
    url = gcs_upload(flipped, "models", "flipped")
    out = tmp_path / "r.json"
    assert cli("verify", url, "--manifest", str(manifest), "--json", str(out), "-q").exit_code == 1
    assert {m["name"] for m in json.loads(out.read_text())["mismatches"]} == {name}
    assert nemoverify("check", omni_checkpoint, "--against", url).returncode == 1
    os.truncate(os.path.join(flipped, SHARD2), os.path.getsize(os.path.join(flipped, SHARD2)) - 3)
    url = gcs_upload(flipped, "models", "truncated")
    result = cli("check", url)
    assert result.exit_code == 3 and "[file-truncated]" in result.stderr


def test_gcs_errors_are_exit_3(cli, gcs_env) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", "gs://no-such-bucket/model")
    assert result.exit_code == 3 and "no such bucket" in result.stderr


def test_redact_hides_url_userinfo_and_query_values() -> None:
    from nemoverify.redaction import redact

    assert redact('endpoint URL: "http://user:hunter2@127.0.0.1:9000/b?list-type=2&prefix=m"') == (
        'endpoint URL: "http://***@127.0.0.1:9000/b?list-type=***&prefix=***"'
    )
    assert redact("https://host/x?token=T0KEN#part") == "https://host/x?token=***#part"
    assert redact("https://alice@host/p and s3://bucket/prefix/model.safetensors") == (
        "https://***@host/p and s3://bucket/prefix/model.safetensors"
    )


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://user:hunter2@127.0.0.1:{live}",
        "http://user:hunter2@127.0.0.1:{dead}",
        "http://127.0.0.1:{live}/?token=T0KEN",
    ],
    ids=["userinfo", "userinfo-refused", "query-token"],
)
def test_credentials_inside_the_endpoint_url_are_never_printed(
    s3_env, vl_checkpoint: str, tmp_path, endpoint: str
) -> None:  # type: ignore[no-untyped-def]
    url = upload(vl_checkpoint, "checkpoints", "secret-endpoint")
    manifest = tmp_path / "m.json"
    assert nemoverify("manifest", vl_checkpoint, "-o", str(manifest), "-q").returncode == 0
    env = os.environ | {"AWS_ENDPOINT_URL": endpoint.format(live=s3_env.port, dead=_free_port()), "COLUMNS": "200"}
    out = tmp_path / "r.json"
    for args in (
        ["inspect", url, "--format", "json"],
        ["check", url],
        ["verify", url, "--manifest", str(manifest), "--json", str(out)],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "nemoverify", *args], capture_output=True, text=True, timeout=120, env=env
        )
        seen = proc.stdout + proc.stderr + (out.read_text() if out.exists() else "")
        assert "hunter2" not in seen and "T0KEN" not in seen, (args, seen[-2000:])
        assert "Traceback" not in proc.stderr


def test_reports_redact_urls_in_every_format(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Whatever a URL in a report carries (a checkpoint root, a library's message in a warning), the
    JSON, SARIF, JUnit and table renderings show neither its userinfo nor its query values."""
    import dataclasses

    from rich.console import Console

    from nemoverify.checkpoint.problems import Problem
    from nemoverify.deployment.options import CheckOptions
    from nemoverify.engine.check import check_load as check
    from nemoverify.model.checks import open_for_vllm
    from nemoverify.output.render.jsonout import report_json
    from nemoverify.output.render.junit import report_junit
    from nemoverify.output.render.sarif import report_sarif
    from nemoverify.output.render.table import render_report

    report = check(open_for_vllm(vl_checkpoint), CheckOptions(loader="safetensors"))
    leaky = "https://user:hunter2@host.example/m?token=T0KEN&x=1"
    report = dataclasses.replace(
        report,
        checkpoint=leaky,
        warnings=(Problem("config-architecture", f"{leaky}/config.json", f"fetched from {leaky}", severity="warning"),),
    )
    console = Console(record=True, width=300)
    render_report(report, console)
    for text in (report_json(report), report_sarif(report), report_junit(report), console.export_text()):
        assert "hunter2" not in text and "T0KEN" not in text
        assert "https://***@host.example/m?token=***&" in text.replace("&amp;", "&")
    json.loads(report_json(report))
    json.loads(report_sarif(report))


class TrickleProxy:
    """A TCP proxy in front of a server that, once `budget` bytes of responses have passed, hands
    on one byte every `every` seconds: never silent long enough for a read timeout, never done."""

    def __init__(self, target_port: int, budget: int, every: float) -> None:
        self.target, self.budget, self.every, self.sent = target_port, budget, every, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.trickling = threading.Event()
        self.closed = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, counted: bool) -> None:
        with contextlib.suppress(OSError):
            while not self.closed.is_set() and (data := src.recv(1 << 16)):
                if counted:
                    with self.lock:
                        free = max(0, self.budget - self.sent)
                        self.sent += len(data)
                    dst.sendall(data[:free])
                    for i in range(free, len(data)):
                        self.trickling.set()
                        if self.closed.wait(self.every):
                            return
                        dst.sendall(data[i : i + 1])
                else:
                    dst.sendall(data)

    def close(self) -> None:
        self.closed.set()
        self.listener.close()


class HangUpServer:
    """Reads each request and closes the connection without a reply (as a server that never answers
    does once its read timeout passes, without the 30 s wait); counts the attempts."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.attempts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.listener.accept()
                conn.recv(1 << 16)
                self.attempts += 1
                conn.close()

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("command", ["verify", "check"])
def test_a_trickling_server_ends_the_run_at_its_deadline(s3_env, vl_checkpoint: str, tmp_path, command: str) -> None:  # type: ignore[no-untyped-def]
    url = upload(vl_checkpoint, "checkpoints", "trickle")
    manifest = tmp_path / "m.json"
    assert nemoverify("manifest", vl_checkpoint, "-o", str(manifest), "-q").returncode == 0
    proxy = TrickleProxy(s3_env.port, budget=64 << 10, every=2.0)  # listing and headers pass, then a byte every 2 s
    try:
        started = time.monotonic()
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "nemoverify", command, url, "--manifest", str(manifest), "--storage-timeout", "15"),
                *("--json", str(tmp_path / "r.json"), "--junit-xml", str(tmp_path / "r.xml")),
                *("--sarif", str(tmp_path / "r.sarif")),
            ],
            env=os.environ | {"AWS_ENDPOINT_URL": proxy.url},
            capture_output=True,
            text=True,
            timeout=90,
        )
        elapsed = time.monotonic() - started
        assert proxy.trickling.is_set()
        assert proc.returncode == 3, proc.stderr[-2000:]
        assert "passed its object-storage deadline of 15 s" in proc.stderr and url in proc.stderr
        assert "VERIFIED" not in proc.stdout and "Traceback" not in proc.stderr
        assert elapsed < 15 + 10, elapsed
        # Every report asked for is left, without a verdict, for CI's `if: always()` steps.
        report = json.loads((tmp_path / "r.json").read_text())
        assert report["status"] == "error" and report["ok"] is False
        assert [p["rule"] for p in report["problems"]] == ["storage-error"]
        assert "deadline of 15 s" in report["problems"][0]["message"]
        assert "<error" in (tmp_path / "r.xml").read_text()
        sarif = json.loads((tmp_path / "r.sarif").read_text())
        assert sarif["runs"][0]["invocations"][0]["executionSuccessful"] is False
    finally:
        proxy.close()


def _trickled(command: str, url: str, proxy: TrickleProxy, env: dict[str, str], *extra: str, reports: Path):
    started = time.monotonic()
    extra_by_command = {"verify": ("--manifest", str(reports / "m.json")), "manifest": ("-o", str(reports / "out.json"))}
    json_report = () if command in ("manifest", "inspect") else ("--json", str(reports / "r.json"))
    proc = subprocess.run(
        [sys.executable, "-m", "nemoverify", command, url, *extra_by_command.get(command, ()), *json_report, *extra],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc, time.monotonic() - started


@pytest.mark.parametrize(
    ("command", "rate", "budget"),
    [
        ("verify", None, 64 << 10),  # the defaults: 1 MiB every 30 s
        ("check", "64KiB/4s", 64 << 10),
        ("manifest", "64KiB/4s", 64 << 10),
        ("inspect", "64KiB/4s", 2 << 10),  # the headers trickle
    ],
)
def test_a_trickling_s3_server_ends_the_run_at_the_minimum_rate(
    s3_env, vl_checkpoint: str, tmp_path: Path, command: str, rate: str | None, budget: int
) -> None:  # type: ignore[no-untyped-def]
    url = upload(vl_checkpoint, "checkpoints", "trickle-rate")
    assert nemoverify("manifest", vl_checkpoint, "-o", str(tmp_path / "m.json"), "-q").returncode == 0
    proxy = TrickleProxy(s3_env.port, budget=budget, every=1.0)  # a byte a second: no read timeout ever fires
    try:
        extra = ("--storage-min-rate", rate) if rate else ()
        proc, elapsed = _trickled(command, url, proxy, {"AWS_ENDPOINT_URL": proxy.url}, *extra, reports=tmp_path)
        assert proxy.trickling.is_set()
        assert proc.returncode == 3, proc.stderr[-2000:]
        message = " ".join(proc.stderr.split())
        shown = rate or "1MiB/30s"
        assert f"(--storage-min-rate {shown}): a stalled or trickling store" in message, message
        assert url in message and f"(from {proxy.url})" in message  # the object and the server
        assert "Traceback" not in proc.stderr and "VERIFIED" not in proc.stdout
        assert elapsed < (30 if rate is None else 4) + 15, elapsed
        if command in ("verify", "check"):
            report = json.loads((tmp_path / "r.json").read_text())
            assert report["status"] == "error" and [p["rule"] for p in report["problems"]] == ["storage-error"]
        assert not (tmp_path / "out.json").exists()
    finally:
        proxy.close()


def test_a_trickling_gcs_server_ends_the_run_at_the_minimum_rate(gcs_env, vl_checkpoint: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = gcs_upload(vl_checkpoint, "models", "trickle-rate")
    assert nemoverify("manifest", vl_checkpoint, "-o", str(tmp_path / "m.json"), "-q").returncode == 0
    proxy = TrickleProxy(gcs_env.port, budget=64 << 10, every=1.0)
    try:
        env = {"STORAGE_EMULATOR_HOST": proxy.url}
        proc, elapsed = _trickled("verify", url, proxy, env, "--storage-min-rate", "64KiB/4s", reports=tmp_path)
        assert proxy.trickling.is_set()
        assert proc.returncode == 3, proc.stderr[-2000:]
        message = " ".join(proc.stderr.split())
        assert "(--storage-min-rate 64KiB/4s): a stalled or trickling store" in message, message
        assert url in message and f"(from {proxy.url})" in message
        assert elapsed < 4 + 15, elapsed
    finally:
        proxy.close()


@pytest.mark.parametrize("bad", ["1MiB", "1MiB/0s", "0/30s", "32MiB/30s", "1MiB/30x", "x/30s"])
def test_a_minimum_rate_out_of_range_is_a_usage_error(cli, bad: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("verify", "s3://b/p", "--manifest", "m.json", "--storage-min-rate", bad)
    assert result.exit_code == 2, result.output
    assert "--storage-min-rate" in " ".join(result.stderr.split())


def test_a_server_that_never_answers_gets_two_attempts(s3_env) -> None:  # type: ignore[no-untyped-def]
    """The README's "two attempts": botocore's `max_attempts` counts retries (2 made three attempts,
    92.7 s against a server that never answers); `total_max_attempts` counts attempts."""
    server = HangUpServer()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "nemoverify", "inspect", "s3://checkpoints/omni"],
            env=os.environ | {"AWS_ENDPOINT_URL": server.url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 3, proc.stderr
        message = " ".join(proc.stderr.split())
        assert "s3://checkpoints/omni" in message
        assert server.url in message and '"None"' not in message  # the server is named
        assert server.attempts == 2, server.attempts
    finally:
        server.close()


def test_a_server_that_answers_200_with_garbage_is_named_as_not_s3(cli, s3_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A reply that is no S3 document gets a message naming the object, the server and what to check,
    not botocore's bare status ("...: 500")."""
    import http.server
    import threading

    class Garbage(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "7")
            self.end_headers()
            self.wfile.write(b"garbage")

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        result = cli("inspect", "s3://checkpoints/omni")
        assert result.exit_code == 3
        message = " ".join(result.stderr.split())
        assert "s3://checkpoints/omni" in message and f"the server at {url} did not answer as S3 does" in message
        assert "check AWS_ENDPOINT_URL" in message
    finally:
        httpd.shutdown()


@pytest.mark.parametrize("spelling", ["s3://checkpoints/spelled", "s3://checkpoints/spelled/", "s3://checkpoints/spelled//", "s3://checkpoints//spelled"])
def test_an_object_listing_is_the_streamers_whatever_the_spelling(s3_env, vl_checkpoint: str, spelling: str) -> None:  # type: ignore[no-untyped-def]
    """The objects judged are the ones vLLM streams: the streamer's own listing of the same URL."""
    from runai_model_streamer import list_safetensors

    from nemoverify.checkpoint.layout import open_checkpoint

    upload(vl_checkpoint, "checkpoints", "spelled")
    ours = sorted(s.location for s in open_checkpoint(spelling).streamed)
    assert ours == sorted(list_safetensors(spelling))
    assert len(ours) == (0 if "//spelled" in spelling else 3)


@pytest.mark.parametrize("password", ["p@ss", "pa/ss", "p?a#ss", "p:a@s/s?x", "%40enc%2F"])
def test_an_endpoint_password_is_never_printed_whatever_it_holds(tmp_path: Path, password: str) -> None:
    """botocore quotes an endpoint it rejects whole, and one it cannot reach in its error."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens: refused at once
    endpoint = f"http://nemo-user:{password}@127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "us-east-1"}
    report = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "nemoverify", "check", "s3://bucket/model", "--json", str(report), "--junit-xml", str(tmp_path / "r.xml")],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    written = proc.stdout + proc.stderr + report.read_text() + (tmp_path / "r.xml").read_text()
    assert password not in written and "nemo-user" not in written, written[-1500:]
    before_host = re.findall(r"://([^\s\"'<>]*?)127\.0\.0\.1", written)
    assert before_host and set(before_host) == {"***@"}, before_host  # nothing of the userinfo is left


def _refusing_port() -> int:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    return port


@pytest.mark.parametrize("store", ["s3", "gs", "az"])
def test_a_store_that_refuses_connections_is_exit_3_within_seconds(store: str) -> None:
    port = _refusing_port()
    env = {
        "s3": {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"},
        "gs": {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{port}", "RUNAI_STREAMER_GCS_USE_ANONYMOUS_CREDENTIALS": "true"},
        "az": {"AZURE_STORAGE_ACCOUNT_NAME": "acct", "AZURE_STORAGE_ENDPOINT_SUFFIX": f"127.0.0.1:{port}", "AZURE_STORAGE_SAS_TOKEN": "sv=1&sig=c2ln"},
    }[store]
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "nemoverify", "check", f"{store}://bucket/model"],
        env=os.environ | {"AWS_DEFAULT_REGION": "us-east-1"} | env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "a bug in nemoverify" not in proc.stderr
    assert f"{store}://bucket/model" in proc.stderr
    assert elapsed < 20, elapsed  # S3: two attempts; GCS: 6 s of attempts; Azure: two, a second apart


def test_missing_google_credentials_are_exit_3_with_the_fix(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "RUNAI_STREAMER_GCS", "STORAGE_EMULATOR"))}
    proc = subprocess.run(
        [sys.executable, "-m", "nemoverify", "inspect", "gs://bucket/model"],
        env=env | {"HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"), "GCE_METADATA_HOST": "127.0.0.1:9"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    text = " ".join(proc.stderr.split())
    assert "gs://bucket/model: no Google Cloud credentials" in text
    assert "RUNAI_STREAMER_GCS_CREDENTIAL_FILE" in text and "RUNAI_STREAMER_GCS_USE_ANONYMOUS_CREDENTIALS=true" in text


def test_a_hugging_face_snapshot_directory_is_a_checkpoint(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """What `hf download` prints and people hand vLLM: its files are links into the repo's blobs."""
    cache = str(tmp_path / "hub")
    _hf_cache(cache, "nvidia/Nano-VL", vl_checkpoint)
    (snapshot,) = (tmp_path / "hub" / "models--nvidia--Nano-VL" / "snapshots").iterdir()
    assert cli("check", str(snapshot)).exit_code == 0
    assert cli("inspect", str(snapshot / "model-00001-of-00003.safetensors"), "--file-alone").exit_code == 0
    manifest = tmp_path / "m.json"
    assert cli("manifest", str(snapshot), "-o", str(manifest)).exit_code == 0
    assert cli("verify", str(snapshot), "--manifest", str(manifest)).exit_code == 0
    # Reports may not land in the repository the snapshot's links read from.
    result = cli("check", str(snapshot), "--json", str(snapshot.parent.parent / "blobs" / "r.json"))
    assert result.exit_code == 2, result.output


def test_a_snapshot_link_that_leaves_its_repository_is_refused(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cache = str(tmp_path / "hub")
    _hf_cache(cache, "nvidia/Nano-VL", vl_checkpoint)
    _hf_cache(cache, "other/Repo", vl_checkpoint)
    (snapshot,) = (tmp_path / "hub" / "models--nvidia--Nano-VL" / "snapshots").iterdir()
    shard = snapshot / "model-00001-of-00003.safetensors"
    shard.unlink()
    shard.symlink_to(tmp_path / "hub" / "models--other--Repo" / "blobs" / "blob1")  # another repository's blob
    result = cli("check", str(snapshot))
    assert result.exit_code == 3, result.output
    assert "[unsafe-path]" in result.stderr and "outside the checkpoint; refused, not followed" in " ".join(result.stderr.split())
