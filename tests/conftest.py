"""Fixtures: tiny real checkpoints (real names, dtypes, shards with an index) and a CLI runner."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from nemoverify.cli.app import run as run_cli
from nemoverify.deployment.options import CheckOptions, resolve_check
from nemoverify.deployment.request import Request
from nemoverify.readers.runai import environment
from nemoverify.testing.synthetic import Spec, write_checkpoint

CLI_ENV = {"COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}


def resolved(**options: object) -> CheckOptions:
    """The options a run with these request fields resolves to (the path plays no part)."""
    return resolve_check(Request("unused", **options))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """make_checkpoint(**spec_fields) -> a directory, written once per distinct spec."""
    cache: dict[Spec, str] = {}

    def make(**fields: object) -> str:
        spec = Spec(**fields)  # type: ignore[arg-type]
        if spec not in cache:
            out = str(tmp_path_factory.mktemp("ckpt"))
            write_checkpoint(out, spec)
            cache[spec] = out
        return cache[spec]

    return make


@pytest.fixture(scope="session")
def vl_checkpoint(make_checkpoint: Callable[..., str]) -> str:
    """Nemotron Nano 12B v2 VL layout: language_model, mlp1, vision; three shards and an index."""
    return make_checkpoint()


@pytest.fixture(scope="session")
def omni_checkpoint(make_checkpoint: Callable[..., str]) -> str:
    """Omni layout: all four components plus names vLLM leaves unclaimed."""
    return make_checkpoint(sound=True, extras=True, seed=1)


@pytest.fixture
def copy_of(tmp_path: os.PathLike[str]) -> Callable[[str], str]:
    """A private copy of a checkpoint, for tests that damage it."""

    def copy(src: str) -> str:
        dst = os.path.join(str(tmp_path), "copy")
        shutil.copytree(src, dst)
        return dst

    return copy


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    output: str  # stdout and stderr interleaved, as a terminal shows them


class _Bytes(io.BytesIO):
    """One stream's bytes, also written into `both` (a report on `-` is written to stdout's buffer)."""

    def __init__(self, both: io.BytesIO) -> None:
        super().__init__()
        self.both = both

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.both.write(data)
        return super().write(data)


class Cli:
    """The command line, run in this process (`cli.app.run`) with its streams captured: what a user sees,
    and the exit code. rich's consoles are made per call, after the streams are swapped, so they
    write here too. An exception that escapes the CLI (a bug) is raised, not turned into a code."""

    def __init__(self, **env: str) -> None:
        self.env = CLI_ENV | env

    def __call__(self, *args: str) -> Result:
        both = io.BytesIO()
        raw_out, raw_err = _Bytes(both), _Bytes(both)
        out = io.TextIOWrapper(raw_out, encoding="utf-8", write_through=True)
        err = io.TextIOWrapper(raw_err, encoding="utf-8", write_through=True)
        code: int
        with environment(self.env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run_cli(list(args))
                code = 0
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:
                    err.write(f"{exc.code}\n")
                    code = 1
            finally:
                out.flush()
                err.flush()
        texts = [b.getvalue().decode("utf-8", errors="replace") for b in (raw_out, raw_err, both)]
        out.detach()
        err.detach()
        return Result(code, *texts)


@pytest.fixture
def cli() -> Cli:
    return Cli()


def wait_until_reading(pid: int, directory: str, timeout: float = 60.0) -> None:
    """Wait until process `pid` (or one of its children) holds a .safetensors file of `directory` open."""
    import time

    import psutil

    root = os.path.realpath(directory)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
            for proc in procs:
                for f in proc.open_files():
                    if f.path.startswith(root) and f.path.endswith(".safetensors"):
                        return
        except psutil.Error:
            pass
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never opened a shard of {directory}")


def snapshot(root: str) -> dict[str, tuple[int, int, bytes]]:
    """Every file under `root`: size, mtime and bytes, to prove a run wrote nothing there."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.stat(path)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns, f.read())
    return out
