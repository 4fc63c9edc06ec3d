"""Fixtures: tiny real checkpoints (real names, dtypes, shards with an index) and a CLI runner."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from nemoverify.cli import app
from nemoverify.testing.synthetic import Spec, write_checkpoint

CLI_ENV = {"COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}


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


class Cli:
    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str):  # type: ignore[no-untyped-def]
        return self.runner.invoke(app, list(args), env=CLI_ENV, catch_exceptions=False)


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
