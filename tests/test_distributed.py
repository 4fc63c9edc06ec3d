"""Distributed streaming for real: gloo process groups on the CPU, launched by torch's elastic launcher."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

import psutil
import pytest

pytestmark = pytest.mark.streamer


@pytest.mark.parametrize("nproc", [2, 3])
def test_clean_checkpoint_verifies_on_every_rank(cli, omni_checkpoint: str, tmp_path, nproc: int) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.json"
    result = cli("check", omni_checkpoint, "--nproc", str(nproc), "--vllm", "0.21", "--strategy", "fixed", "--stress", "--json", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["ranks"] == {str(r): True for r in range(nproc)}
    assert report["options"]["nproc"] == nproc


@pytest.mark.parametrize("nproc", [2, 3])
def test_legacy_with_reuse_fails_on_every_rank(cli, omni_checkpoint: str, tmp_path, nproc: int) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.json"
    result = cli(
        "check",
        omni_checkpoint,
        "--nproc",
        str(nproc),
        "--vllm",
        "0.20",
        "--stress",
        "--json",
        str(out),
        "-q",
    )
    assert result.exit_code == 1
    report = json.loads(out.read_text())
    assert report["ranks"] == {str(r): False for r in range(nproc)}
    for rank in range(nproc):
        failed = {m["component"] for m in report["mismatches"] if m["rank"] == rank}
        assert {"language_model", "vision", "sound"} <= failed, (rank, failed)


def test_vllm_loader_config_is_accepted(cli, vl_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    config = '{"distributed": true, "concurrency": 4, "memory_limit": 5368709120}'
    assert cli("check", vl_checkpoint, "--nproc", "2", "--model-loader-extra-config", config).exit_code == 0
    assert (
        cli("check", vl_checkpoint, "--model-loader-extra-config", config).exit_code == 2
    )  # distributed without ranks
    assert cli("check", vl_checkpoint, "--model-loader-extra-config", '{"bogus": 1}').exit_code == 2


def test_distributed_flag_outside_torchrun_is_a_clear_error(cli, vl_checkpoint: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("RANK", raising=False)
    result = cli("check", vl_checkpoint, "--distributed")
    assert result.exit_code == 3
    assert "torchrun" in result.stderr


@pytest.mark.slow
def test_torchrun_started_ranks(omni_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--standalone",
            "-m",
            "nemoverify",
            "check",
            omni_checkpoint,
            "--distributed",
            "--stress",
            "--json",
            str(out),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(out.read_text())["ranks"] == {"0": True, "1": True}


@pytest.mark.slow
def test_a_killed_rank_ends_the_run_with_exit_3(make_checkpoint: Callable[..., str]) -> None:
    big = make_checkpoint(hidden=2048, ffn=8192, layers=16, vocab=32768, seed=7)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nemoverify", "check", big, "--nproc", "2", "--rank-timeout", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline and proc.poll() is None:
        workers = [p for p in parent.children(recursive=True) if "spawn" in " ".join(p.cmdline())]
        if len(workers) >= 2:
            time.sleep(1.0)  # into the stream
            victim = workers[-1]
            victim.kill()
        time.sleep(0.05)
    assert victim is not None, "the ranks never started"
    killed_at = time.monotonic()
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 3, stderr[-2000:]
    assert "rank" in stderr and "Traceback" not in stderr
    assert time.monotonic() - killed_at < 45
