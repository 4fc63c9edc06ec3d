"""Rendering on hand-built reports, compared with files under tests/golden/: a change to a renderer
shows up as a diff. Nothing streams; everything variable (elapsed time, version, paths) is pinned.

Regenerate after a deliberate change: `NEMOVERIFY_UPDATE_VECTORS=1 python -m pytest tests/test_golden.py`.
"""

from __future__ import annotations

import os

import pytest
from rich.console import Console

from nemoverify.checkpoint.problems import Problem
from nemoverify.deployment.profiles import Profile
from nemoverify.deployment.releases import streamer_release, vllm_release
from nemoverify.output.render.jsonout import report_json
from nemoverify.output.render.table import render_report
from nemoverify.report import STORED_BYTES, ComponentSummary, Finding, Report, Skipped

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
CKPT = "/models/nano-omni"
SHARD = f"{CKPT}/model-00002-of-00003.safetensors"
D = "0123456789abcdef" * 2  # a reference digest
X = "fedcba9876543210" * 2  # another


def _component(name: str, tensors: int, nbytes: int, mismatched: int = 0, missing: int = 0, skipped: int = 0) -> ComponentSummary:
    matched = tensors - mismatched - missing - skipped
    return ComponentSummary(name, tensors, nbytes, matched, mismatched, missing, skipped, D, X if mismatched else D)


def failed_report() -> Report:
    """check --nproc 2 --manifest under a stressed deployment: failures of several kinds, on ranks and
    against the manifest, a warning and an unclaimed tensor."""
    profile = Profile(
        vllm_release("0.20"),
        streamer_release("0.16"),
        stress=True,
        vllm_source="--vllm 0.20",
        installed_streamer="0.17.0",
        notes=("a note the profile carries",),
    )
    w = "language_model.backbone.layers.0.mixer.in_proj.weight"
    mismatches = (
        Finding(w, "language_model", "bytes", D, X, rank=0, file=SHARD),
        Finding(w, "language_model", "bytes", D, X, rank=1, file=SHARD),
        Finding(w, "language_model", "bytes", D, X, against="manifest", file=SHARD),
        Finding("vision_model.radio_model.model.blocks.0.attn.qkv.weight", "vision", "missing", D, None, rank=1),
        Finding("mlp1.0.weight", "mlp1", "shape", "[2048, 1024]", "[1024, 2048]", rank=0),
        Finding(
            "sound_encoder.layers.0.weight", "sound", "load-error", None, None, rank=0, detail="KeyError: 'sound_encoder'"
        ),
        Finding("model-00003-of-00003.safetensors", "shard", "size", "1,156,960 bytes", "1,156,860 bytes", "manifest"),
    )
    return Report(
        ok=False,
        algorithm="xxh3-128",
        checkpoint=CKPT,
        reference="stored bytes (direct read)",
        candidate="runai-model-streamer 0.17.0 (borrowed views)",
        strategy="legacy",
        options={"concurrency": 4, "ring_bytes": 1 << 30},
        components={
            "language_model": _component("language_model", 64, 1_835_008, mismatched=1),
            "vision": _component("vision", 12, 262_144, missing=1, skipped=1),
            "mlp1": _component("mlp1", 3, 197_120, mismatched=1),
            "sound": _component("sound", 6, 12_800, mismatched=1),
        },
        mismatches=mismatches,
        skipped=(
            Skipped("vision_model.radio_model.input_conditioner.norm_mean", "vision", "RADIO recomputes it"),
            Skipped("vision_projector.0.weight", "unclaimed", "no component claims this name: vLLM drops it silently"),
        ),
        warnings=(
            Problem(
                "shard-not-indexed",
                f"{CKPT}/extra.safetensors",
                "is not in model.safetensors.index.json, but vLLM's Run:ai loader streams every *.safetensors in the directory",
                severity="warning",
            ),
        ),
        ranks={0: False, 1: False},
        manifest=f"{CKPT}.manifest.json",
        elapsed_s=1.23456,
        profile=profile,
    )


def verified_report() -> Report:
    return Report(
        ok=True,
        algorithm="blake3",
        checkpoint=CKPT,
        reference="stored bytes (direct read)",
        candidate=STORED_BYTES,
        strategy="",
        options={},
        components={"language_model": _component("language_model", 64, 1_835_008), "mlp1": _component("mlp1", 3, 197_120)},
        mismatches=(),
        manifest=f"{CKPT}.manifest.json",
        elapsed_s=0.5,
    )


def invalid_report() -> Report:
    return Report.without_verdict(
        CKPT,
        "invalid",
        (
            Problem("file-truncated", SHARD, "file is 1,156,860 bytes but the header describes 1,156,960: truncated", "sound_projection.norm.weight"),
            Problem("index-total-size", f"{CKPT}/model.safetensors.index.json", "metadata.total_size is 2 more than the shards hold"),
        ),
    )


REPORTS = {"failed": failed_report, "verified": verified_report, "invalid": invalid_report}


def _compare(name: str, text: str) -> None:
    text = "".join(line.rstrip() + "\n" for line in text.splitlines())  # rich pads lines; editors strip them
    path = os.path.join(GOLDEN, name)
    if os.environ.get("NEMOVERIFY_UPDATE_VECTORS"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    with open(path, encoding="utf-8") as f:
        assert text == f.read(), f"{name} differs from its golden file (regenerate: NEMOVERIFY_UPDATE_VECTORS=1)"


@pytest.fixture(autouse=True)
def pinned_version(monkeypatch: pytest.MonkeyPatch) -> None:
    import nemoverify._version

    monkeypatch.setattr(nemoverify._version, "__version__", "0.0.0-golden")


@pytest.mark.parametrize("width", [80, 120])
@pytest.mark.parametrize("which", ["failed", "verified"])
def test_the_table_renders_as_its_golden_file(which: str, width: int) -> None:
    console = Console(width=width, record=True, color_system=None, force_terminal=False, file=open(os.devnull, "w"))  # noqa: SIM115
    render_report(REPORTS[which](), console, show=20, log=False)
    _compare(f"table-{which}-{width}.txt", console.export_text())


def test_the_table_lists_only_as_many_failures_as_asked() -> None:
    console = Console(width=80, record=True, color_system=None, force_terminal=False, file=open(os.devnull, "w"))  # noqa: SIM115
    render_report(failed_report(), console, show=2, log=False)
    _compare("table-failed-80-show-2.txt", console.export_text())


@pytest.mark.parametrize("which", ["failed", "verified"])
def test_off_a_terminal_the_report_is_lines_a_log_keeps_whole(which: str) -> None:
    """One line per component and per failure, each whole however long (80 columns or not), none
    ending in a space, the verdict last."""
    console = Console(width=80, record=True, color_system=None, force_terminal=False, file=open(os.devnull, "w"))  # noqa: SIM115
    render_report(REPORTS[which](), console, show=20)
    text = console.export_text()
    lines = text.splitlines()
    assert not [line for line in lines if line != line.rstrip()]
    assert lines[-1].startswith("VERIFIED" if which == "verified" else "FAILED")
    for f in REPORTS[which]().failures:
        assert any(line.startswith(f"failed {f.name} ({f.component})") for line in lines), f.name
    _compare(f"log-{which}.txt", text)


@pytest.mark.parametrize("which", list(REPORTS))
def test_the_json_report_renders_as_its_golden_file(which: str) -> None:
    _compare(f"report-{which}.json", report_json(REPORTS[which]()))
