"""A gate never hangs and never leaves processes behind: a killed parent, Ctrl-C from a terminal, a
stopped rank, an interrupt while the CLI is still importing. Real processes, real signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import psutil
import pytest
from conftest import wait_until_reading

pytestmark = [pytest.mark.streamer, pytest.mark.slow]


@pytest.fixture(scope="module")
def big(make_checkpoint: Callable[..., str]) -> str:
    return make_checkpoint(hidden=2048, ffn=8192, layers=16, vocab=32768, seed=7)  # ~900 MB: seconds to stream


def _start(*args: str, new_session: bool = False) -> subprocess.Popen[str]:
    def child() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # as a terminal leaves it, not as a background job
        if new_session:
            os.setsid()

    return subprocess.Popen(
        [sys.executable, "-m", "nemoverify", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=child,
    )


def _ranks(pid: int, n: int, timeout: float = 90) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ranks = [p for p in psutil.Process(pid).children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
        if len(ranks) >= n:
            return ranks
        time.sleep(0.05)
    raise AssertionError("the ranks never started")


def _dead(proc: psutil.Process) -> bool:
    """Exited: gone, or a zombie that its new parent (init, or a container's first process) has not
    reaped yet. Reaping is not the test's business, and under load it can take seconds."""
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still alive when each has died or `timeout` has passed, whichever comes first
    (polled: a process that is not our child can only be watched, not waited for)."""
    deadline = time.monotonic() + timeout
    while not all(_dead(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [p for p in procs if not _dead(p)]
    for p in alive:  # never leave them to the next test
        p.kill()
    return alive


def test_ranks_die_with_a_parent_killed_by_sigkill(big: str) -> None:
    proc = _start("check", big, "--nproc", "2", "-q")
    _ranks(proc.pid, 2)
    wait_until_reading(proc.pid, big)
    everything = psutil.Process(proc.pid).children(recursive=True)  # ranks and the resource tracker
    proc.kill()  # a CI timeout or the OOM killer
    proc.wait()
    # The kernel kills each rank as its parent dies (PR_SET_PDEATHSIG): what is waited for is that
    # death, not its reaping; the bound only keeps a broken run from hanging the suite.
    assert _gone(everything, timeout=60) == []


@pytest.mark.parametrize("when", ["ranks starting", "streaming"])
def test_ctrl_c_during_a_distributed_check_exits_130_silently(big: str, when: str) -> None:
    proc = _start("check", big, "--nproc", "2", new_session=True)
    ranks = _ranks(proc.pid, 2)  # as soon as they exist: their interpreters are still starting
    if when == "streaming":
        for rank in ranks:
            wait_until_reading(rank.pid, big)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole foreground process group
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "got signal" not in stderr, stderr[-2000:]
    assert _gone(ranks, timeout=10) == []


_CTRL_C_DURING_A_LAUNCH = """
import multiprocessing, os, signal
from multiprocessing import util

from nemoverify.engine import ranks

spawnv = util.spawnv_passfds


def spawn_then_ctrl_c(*args):
    pid = spawnv(*args)
    os.kill(os.getpid(), signal.SIGINT)  # after the rank started, before it was told what to run
    return pid


if __name__ == "__main__":
    util.spawnv_passfds = spawn_then_ctrl_c
    with ranks._ranks_deaf_to_ctrl_c_from_birth():
        process = multiprocessing.get_context("spawn").Process(target=print, args=("the rank ran",))
        try:
            process.start()
        except KeyboardInterrupt:  # raised as start() returns: the rank is left to finish on its own
            print("interrupted after the launch", flush=True)
        os.wait()
"""


def test_a_ctrl_c_while_a_rank_is_launched_waits_until_the_rank_has_its_instructions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Otherwise the rank reads a closed pipe and prints an EOFError traceback on the terminal (seen
    in CI as a Ctrl-C while ranks were starting)."""
    script = tmp_path / "launch.py"
    script.write_text(_CTRL_C_DURING_A_LAUNCH)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "interrupted after the launch" in proc.stdout and "the rank ran" in proc.stdout, proc.stdout


def test_a_stopped_rank_ends_the_run_within_the_rank_timeout(big: str) -> None:
    proc = _start("check", big, "--nproc", "2", "--rank-timeout", "5", "-q")
    ranks = _ranks(proc.pid, 2)
    for rank in ranks:  # both in the stream (past the rendezvous), not merely started
        wait_until_reading(rank.pid, big)
    ranks[-1].suspend()  # SIGSTOP: alive, silent, deaf to SIGTERM
    stopped_at = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    elapsed = time.monotonic() - stopped_at
    assert proc.returncode == 3, stderr[-2000:]
    assert "Traceback" not in stderr
    # --rank-timeout, then the launcher's grace for a rank that ignores SIGTERM, then the report.
    assert elapsed < 5 + 8, elapsed
    assert _gone(ranks, timeout=10) == []


INSTANTS = (0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2)


def test_ctrl_c_at_any_instant_from_the_first_line_exits_130_without_a_traceback(vl_checkpoint: str) -> None:
    """SIGINT at several instants from 0.01 s: while the interpreter starts (Python's to report), in the
    CLI's imports, in torch's, and in the run. Python's import-time log says whether the package's
    first module had run when the signal came."""
    ours = []
    for instant in INSTANTS:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nemoverify", "check", vl_checkpoint],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ | {"PYTHONPROFILEIMPORTTIME": "1"},
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        time.sleep(instant)  # the instant under test, not a wait for a condition
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        if not re.search(r"\|\s+nemoverify\.interrupts$", stderr, re.MULTILINE):
            continue  # still in the interpreter's own start-up: before any line of ours
        ours.append(instant)
        if proc.returncode == 0:
            continue  # finished before the signal
        assert proc.returncode == 130, (instant, stderr[-2000:])
        assert "Traceback" not in stderr, (instant, stderr[-2000:])
        assert stderr.rstrip().endswith("interrupted"), (instant, stderr[-300:])
        assert time.monotonic() - started < 20, instant
    assert set(INSTANTS[-3:]) <= set(ours), ours  # past the interpreter's start-up, whatever the load
