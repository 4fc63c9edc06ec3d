"""Every command judges the file set vLLM's Run:ai loader would stream, listed as the streamer lists
it, and that set as it still is when the run ends."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator

import pytest
from malformed import INDEX, SHARD1

from nemoverify import api
from nemoverify.checkpoint.problems import InvalidCheckpoint
from nemoverify.deployment.request import Request


@pytest.fixture
def recorded(vl_checkpoint: str, tmp_path) -> str:  # type: ignore[no-untyped-def]
    path = str(tmp_path / "m.json")
    with open(path, "w") as f:
        f.write(api.manifest(vl_checkpoint).to_json())
    return path


COMMANDS = ["inspect", "check", "manifest", "verify", "matrix"]


def _args(command: str, recorded: str, tmp_path) -> list[str]:  # type: ignore[no-untyped-def]
    return {
        "manifest": ["-o", str(tmp_path / "out.json")],
        "verify": ["--manifest", recorded],
        "matrix": ["--nproc", "1"],
    }.get(command, [])


@pytest.mark.parametrize("command", COMMANDS)
def test_one_shard_of_a_directory_is_refused_naming_the_directory(
    cli, vl_checkpoint: str, recorded: str, tmp_path, command: str
) -> None:  # type: ignore[no-untyped-def]
    shard = os.path.join(vl_checkpoint, SHARD1)
    result = cli(command, shard, *_args(command, recorded, tmp_path))
    assert result.exit_code == 3, result.output
    text = " ".join(result.stderr.split())
    assert f"[path-one-file] {shard}: is one of the 3 .safetensors files in {vl_checkpoint} (and its index)" in text
    assert f"pass the directory, {vl_checkpoint}, or add --file-alone" in text
    assert not (tmp_path / "out.json").exists()


def test_a_file_judged_alone_reads_the_config_beside_it(cli, vl_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("inspect", os.path.join(vl_checkpoint, SHARD1), "--file-alone")
    assert result.exit_code == 0, result.output
    assert "config-architecture" not in result.output  # not "config.json is missing": it is there


def test_a_lone_safetensors_file_needs_no_flag(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(os.path.join(vl_checkpoint, SHARD1), alone / "model.safetensors")
    assert cli("inspect", str(alone / "model.safetensors")).exit_code == 0


@contextlib.contextmanager
def _changing(action: Callable[[], None]) -> Iterator[Callable[[str, int], None]]:
    """A progress callback that changes the checkpoint the first time the run reports progress:
    a directory written to while it is verified, at a known point of the run."""
    done = []

    def progress(phase: str, nbytes: int) -> None:
        if not done:
            done.append(phase)
            action()

    yield progress


def _watch(action: Callable[[], None]) -> Callable[[dict[str, int]], contextlib.AbstractContextManager]:  # type: ignore[type-arg]
    return lambda phases: _changing(action)


def _stray_into(root: str) -> Callable[[], None]:
    return lambda: shutil.copy(os.path.join(root, SHARD1), os.path.join(root, "late.safetensors"))


def _rewrite_config(root: str) -> Callable[[], None]:
    def rewrite() -> None:
        path = os.path.join(root, "config.json")
        with open(path) as f:
            config = json.load(f)
        config["rewritten"] = True
        with open(path, "w") as f:
            json.dump(config, f)

    return rewrite


def _drop_index(root: str) -> Callable[[], None]:
    return lambda: os.remove(os.path.join(root, INDEX))


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (_stray_into, "late.safetensors appeared"),
        (_rewrite_config, "config.json was rewritten"),
        (_drop_index, f"{INDEX} went away"),
    ],
)
@pytest.mark.parametrize("verb", ["check", "verify", "manifest"])
def test_a_checkpoint_that_changes_during_the_run_gets_no_verdict(
    vl_checkpoint: str, recorded: str, copy_of, verb: str, change, said: str
) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(vl_checkpoint)
    watch = _watch(change(root))
    with pytest.raises(InvalidCheckpoint) as raised:
        if verb == "check":
            api.run_check(Request(root), watch)
        elif verb == "verify":
            api.run_verify(Request(root, manifest=recorded), watch)
        else:
            api.manifest(root, watch=watch)
    (problem,) = raised.value.problems
    assert problem.rule == "file-changed"
    assert f"the checkpoint changed while it was verified: {said}" in problem.render()


def test_a_directory_named_as_a_pattern_is_refused_when_vllm_would_list_other_files(
    cli, vl_checkpoint: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    patterned = tmp_path / "ck[12]"
    shutil.copytree(vl_checkpoint, patterned)
    shutil.copytree(vl_checkpoint, tmp_path / "ck1")  # what vLLM's glob would stream instead
    result = cli("check", str(patterned))
    assert result.exit_code == 3, result.output
    text = " ".join(result.stderr.split())
    assert f"[path-pattern] {patterned}: holds *, ? or [" in text
    assert "it would stream 3 file(s), 3 of them from elsewhere" in text and str(tmp_path / "ck1") in text


def test_a_directory_named_as_a_pattern_that_lists_the_same_files_is_accepted(
    cli, vl_checkpoint: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    patterned = tmp_path / "ck[x"  # an unclosed bracket matches itself
    shutil.copytree(vl_checkpoint, patterned)
    assert cli("inspect", str(patterned)).exit_code == 0


@pytest.mark.parametrize("spelling", ["{d}", "{d}/", "{d}//", "{d}/.", "{p}/./{n}"])
def test_a_local_listing_is_the_streamers_whatever_the_spelling(vl_checkpoint: str, spelling: str) -> None:
    from runai_model_streamer import list_safetensors

    from nemoverify.checkpoint.layout import open_checkpoint

    path = spelling.format(d=vl_checkpoint, p=os.path.dirname(vl_checkpoint), n=os.path.basename(vl_checkpoint))
    ours = sorted(os.path.realpath(s.location) for s in open_checkpoint(path).streamed)
    theirs = sorted(os.path.realpath(p) for p in list_safetensors(path))
    assert ours == theirs
