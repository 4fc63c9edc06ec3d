"""Run nemoverify (NEMOVERIFY_SRC: by default this repository's working tree) on a layout as a
deployment would be checked, and return its JSON report (or why it refused). Subprocess only: no
torch here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.layouts import Deployment
from harness.paths import NEMOVERIFY_SRC


def nemoverify_args(ckpt: str | Path, release: str, dep: Deployment) -> list[str]:
    args = ["check", str(ckpt), "--vllm", release, "--streamer", dep.streamer]
    if dep.memory_limit is not None:
        args += ["--memory-limit", str(dep.memory_limit)]
    if dep.extra_config is not None:
        args += ["--model-loader-extra-config", dep.extra_config]
    if dep.text_only:
        args += ["--text-only"]
    return args


def run_nemoverify(ckpt: str | Path, release: str, dep: Deployment, python: str | None = None, src: Path = NEMOVERIFY_SRC) -> dict:
    """`src`: the directory holding the nemoverify package to run."""
    python = python or sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        cmd = [python, "-m", "nemoverify", *nemoverify_args(ckpt, release, dep), "--json", str(out), "-q"]
        env = dict(os.environ, PYTHONPATH=str(src))
        for k in [k for k in env if k.startswith("RUNAI_STREAMER_")]:
            del env[k]
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        report = json.loads(out.read_text()) if out.exists() else None
    shown = ["python", "-m", "nemoverify", *nemoverify_args(ckpt, release, dep)]
    return {"rc": p.returncode, "stderr": p.stderr[-2000:], "report": report, "command": " ".join(shown)}
