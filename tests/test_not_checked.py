"""It says what it did not check: a verdict covers no more than what ran, and the output says so."""

from __future__ import annotations

import json
import os

import pytest
from malformed import flip_byte


def test_a_plain_check_says_the_stored_bytes_were_not_checked_and_how_to(cli, omni_checkpoint: str, copy_of, tmp_path) -> None:  # type: ignore[no-untyped-def]
    manifest = str(tmp_path / "m.json")
    assert cli("manifest", omni_checkpoint, "-o", manifest, "-q").exit_code == 0
    damaged = copy_of(omni_checkpoint)
    flip_byte(damaged, mask=0x80)
    out = tmp_path / "r.json"
    result = cli("check", damaged, "--json", str(out))
    assert result.exit_code == 0, result.output  # both loaders read the same damaged bytes: by design
    text = " ".join(result.stdout.split())
    assert "VERIFIED" in text
    assert "not checked: the stored bytes against any record" in text and "--manifest" in text
    assert json.loads(out.read_text())["not_checked"]
    result = cli("check", damaged, "--manifest", manifest, "--json", str(out))
    assert result.exit_code == 1
    assert "not checked" not in result.stdout
    assert json.loads(out.read_text())["not_checked"] == []


def test_verify_shows_only_what_ran(cli, omni_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    manifest = str(tmp_path / "m.json")
    assert cli("manifest", omni_checkpoint, "-o", manifest, "-q").exit_code == 0
    result = cli("verify", omni_checkpoint, "--manifest", manifest)
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert f"{omni_checkpoint} stored bytes against the manifest {manifest} hash: blake3" in text
    assert "strategy" not in result.stdout and "profile" not in result.stdout
    assert "vLLM drops" not in result.stdout  # nothing was routed, so nothing is said to be dropped
    assert "not checked: how vLLM loads these bytes" in text


@pytest.mark.parametrize("typo", ["./x", "examples/typo", "examples/typo/", "x.safetensors"])
def test_a_path_that_looks_like_a_path_gets_no_such_file_or_directory(cli, tmp_path, monkeypatch, typo: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    os.mkdir("examples")
    result = cli("check", typo)
    assert result.exit_code == 5  # no such checkpoint
    assert "no such file or directory" in result.stderr
    assert "Hugging Face" not in result.stderr


def test_a_repo_id_not_in_the_cache_says_both(cli, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    result = cli("check", "nvidia/not-here")
    assert result.exit_code == 5  # no such checkpoint
    text = " ".join(result.stderr.split())
    assert "no local path (no such file or directory)" in text and "not in the local Hugging Face cache" in text
    assert "[hf-not-cached]" in text
