"""The check: the reference pass against the candidate pass through the replayed load path."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import resolved

from nemoverify.engine.check import check_load as check
from nemoverify.model.checks import open_for_vllm

pytestmark = pytest.mark.streamer


def run(path: str, **options: object):  # type: ignore[no-untyped-def]
    return check(open_for_vllm(path), resolved(**options))  # type: ignore[arg-type]


def test_fixed_load_path_verifies_a_clean_checkpoint(vl_checkpoint: str) -> None:
    report = run(vl_checkpoint)
    assert report.ok, report.mismatches[:3]
    assert set(report.components) == {"language_model", "mlp1", "vision"}
    assert all(c.mismatched == 0 and c.missing == 0 for c in report.components.values())
    assert report.tensors == open_for_vllm(vl_checkpoint).tensor_count


def test_fixed_load_path_is_safe_under_maximum_buffer_reuse(omni_checkpoint: str) -> None:
    report = run(omni_checkpoint, vllm="0.21", strategy="fixed", stress=True)
    assert report.ok, report.mismatches[:3]


def test_legacy_load_path_under_buffer_reuse_corrupts_every_retained_component(omni_checkpoint: str) -> None:
    report = run(omni_checkpoint, vllm="0.20", stress=True)
    assert not report.ok
    # language_model, vision and sound are kept as references before PR 42244: all go stale.
    for component in ("language_model", "vision", "sound"):
        assert report.components[component].mismatched > 0, component
    # mlp1 was copied inline even before the fix, so a faithful replay finds it intact.
    assert report.components["mlp1"].mismatched == 0
    assert {f.kind for f in report.mismatches} == {"bytes"}


def test_legacy_load_path_is_safe_when_the_streamer_owns_its_tensors(vl_checkpoint: str) -> None:
    assert run(vl_checkpoint, vllm="0.20", streamer="0.17").ok


@pytest.mark.parametrize("loader", ["runai", "safetensors"])
def test_both_candidate_loaders_agree_with_the_reference(vl_checkpoint: str, loader: str) -> None:
    report = run(vl_checkpoint, loader=loader)
    assert report.ok


def test_text_only_mode_skips_every_multimodal_tensor(omni_checkpoint: str) -> None:
    report = run(omni_checkpoint, text_only=True, vllm="0.21", stress=True)
    for component in ("mlp1", "vision", "sound"):
        row = report.components[component]
        assert row.skipped == row.tensors and row.matched == 0
    assert any("text-only" in s.reason for s in report.skipped)


def test_sound_checkpoint_has_all_four_components(omni_checkpoint: str) -> None:
    report = run(omni_checkpoint)
    assert report.ok
    assert set(report.components) == {"language_model", "mlp1", "vision", "sound", "unclaimed"}
    feature_extractor = [s for s in report.skipped if "feature_extractor" in s.name]
    assert feature_extractor and all(s.component == "sound" for s in feature_extractor)


def test_unclaimed_names_are_reported_and_can_fail_the_check(omni_checkpoint: str) -> None:
    report = run(omni_checkpoint)
    unclaimed = {s.name for s in report.skipped if s.component == "unclaimed"}
    assert unclaimed == {"vision_projector.0.weight", "vision_model.summary_idxs", "mtp.layers.0.norm.weight"}
    assert report.ok
    assert not run(omni_checkpoint, fail_on_unclaimed=True).ok


@pytest.mark.parametrize("quant", ["fp8", "nvfp4"])
def test_quantized_layouts_with_scalar_scales_verify(make_checkpoint: Callable[..., str], quant: str) -> None:
    path = make_checkpoint(quant=quant)
    dtypes = {info.dtype for _, info in open_for_vllm(path).tensors()}
    assert "F8_E4M3" in dtypes
    assert any(info.shape == () for _, info in open_for_vllm(path).tensors())  # 0-dim scales
    report = run(path, vllm="0.21", strategy="fixed", stress=True)
    assert report.ok
    assert not run(path, vllm="0.20", stress=True).ok


@pytest.mark.parametrize("memory_limit", [-1, 0, 1 << 20])
@pytest.mark.parametrize("concurrency", [1, 4])
def test_fixed_verdict_does_not_depend_on_ring_size_or_concurrency(
    vl_checkpoint: str, memory_limit: int, concurrency: int
) -> None:
    # Borrowed views as deployed (streamer 0.16) through the fixed path without the iterator's clone.
    report = run(
        vl_checkpoint,
        vllm="0.21",
        strategy="fixed",
        streamer="0.16",
        memory_limit=memory_limit,
        concurrency=concurrency,
    )
    assert report.ok


def test_component_digests_are_stable_and_algorithm_specific(vl_checkpoint: str) -> None:
    a, b = run(vl_checkpoint), run(vl_checkpoint, loader="safetensors")
    assert {k: c.digest for k, c in a.components.items()} == {k: c.digest for k, c in b.components.items()}
    c = run(vl_checkpoint, algorithm="sha256")
    assert c.algorithm == "sha256"
    assert c.components["mlp1"].digest != a.components["mlp1"].digest
    assert len(c.components["mlp1"].digest) == 64


def test_single_file_checkpoint_without_index(make_checkpoint: Callable[..., str]) -> None:
    path = make_checkpoint(shards=1)
    assert not open_for_vllm(path).indexed
    assert run(path).ok


def test_the_default_ring_fits_this_machine(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from nemoverify.deployment.ring import MIN_RING, STREAMER_DEFAULT_RING, default_ring_bytes

    none = str(tmp_path / "absent")
    small = tmp_path / "small"
    small.write_text("MemTotal:       16000000 kB\nMemAvailable:    8000000 kB\n")
    assert default_ring_bytes(str(small), none) == 8000000 * 1024 // 4
    large = tmp_path / "large"
    large.write_text("MemAvailable:  2000000000 kB\n")
    assert default_ring_bytes(str(large), none) == STREAMER_DEFAULT_RING
    assert default_ring_bytes(none, none) == STREAMER_DEFAULT_RING
    tiny = tmp_path / "tiny"
    tiny.write_text("MemAvailable:  1000 kB\n")
    assert default_ring_bytes(str(tiny), none) == MIN_RING  # never 0: that is the streamer's reuse mode


def _cgroup(tmp_path, lines: str, files: dict[str, str]) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cgroup").write_text(lines)
    for rel, text in files.items():
        (tmp_path / "fs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / rel).write_text(text)
    return str(tmp_path / "cgroup"), str(tmp_path / "fs")


def test_a_container_memory_limit_bounds_the_ring(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """In a CI container MemAvailable is the host's; the cgroup's limit is what counts."""
    from nemoverify.deployment.ring import cgroup_headroom, default_ring_bytes

    host = tmp_path / "meminfo"
    host.write_text("MemAvailable:  500000000 kB\n")  # a 500 GB host
    gib = 1 << 30
    v2 = _cgroup(
        tmp_path / "v2",
        "0::/ci/job\n",
        {
            "memory.max": "max\n",
            "ci/memory.max": f"{16 * gib}\n",
            "ci/memory.current": f"{2 * gib}\n",
            "ci/job/memory.max": "max\n",
            "ci/job/memory.current": f"{gib}\n",
        },
    )
    assert cgroup_headroom(*v2) == 14 * gib  # the parent's limit binds the child
    assert default_ring_bytes(str(host), *v2) == 14 * gib // 4
    v1 = _cgroup(
        tmp_path / "v1",
        "4:memory:/docker/abc\n3:cpu:/docker/abc\n",
        {
            "memory/docker/abc/memory.limit_in_bytes": f"{8 * gib}\n",
            "memory/docker/abc/memory.usage_in_bytes": f"{4 * gib}\n",
            "memory/memory.limit_in_bytes": "9223372036854771712\n",  # v1's "unlimited"
            "memory/memory.usage_in_bytes": f"{100 * gib}\n",
        },
    )
    assert cgroup_headroom(*v1) == 4 * gib
    unlimited = _cgroup(tmp_path / "none", "0::/\n", {"memory.max": "max\n", "memory.current": "5\n"})
    assert cgroup_headroom(*unlimited) is None


def test_the_report_shows_the_ring_used_and_the_environment_wins(
    cli, vl_checkpoint: str, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    import json

    from nemoverify.deployment.ring import CHOSEN_RING, default_ring_bytes

    out = tmp_path / "r.json"
    assert cli("check", vl_checkpoint, "--json", str(out), "-q").exit_code == 0
    limit = json.loads(out.read_text())["options"]["memory_limit"]
    assert 0 < limit <= 40_000_000_000 and limit == min(CHOSEN_RING, default_ring_bytes())
    monkeypatch.setenv("RUNAI_STREAMER_MEMORY_LIMIT", "12345678")
    assert cli("check", vl_checkpoint, "--json", str(out), "-q").exit_code == 0
    assert json.loads(out.read_text())["options"]["memory_limit"] is None  # the streamer reads the variable
    assert cli("check", vl_checkpoint, "--json", str(out), "-q", "--memory-limit", "1048576").exit_code == 0
    assert json.loads(out.read_text())["options"]["memory_limit"] == 1048576


@pytest.mark.parametrize("strategy", ["fixed", "legacy"])
@pytest.mark.parametrize("algorithm", ["xxh3-128", "sha256"])
def test_hashing_the_iterator_clone_as_it_is_taken_equals_the_real_clone(
    omni_checkpoint: str, strategy: str, algorithm: str
) -> None:
    """vLLM 0.22+'s iterator yields tensor.clone(); `check` hashes each tensor as that clone would be
    taken instead of copying it (model.replay.Snapshot). Under --stress (borrowed views, a ring of the
    largest tensor: every buffer reused at once) and on both load paths (legacy keeps references to
    what the iterator yielded until after the drain), both ways give identical observations, and
    the legacy path, stale without the clone, is safe with it either way."""
    from nemoverify.engine.passes import candidate_pass
    from nemoverify.model.replay import load_rules

    checkpoint = open_for_vllm(omni_checkpoint)
    options = resolved(vllm="0.33", stress=True, strategy=strategy, algorithm=algorithm)  # type: ignore[arg-type]
    assert options.profile.borrowed and load_rules(options, checkpoint.config).iterator_clones
    real = candidate_pass(checkpoint, options, real_clone=True)
    hashed = candidate_pass(checkpoint, options)
    assert real.observations == hashed.observations
    assert real.duplicates == hashed.duplicates
    assert len(real.observations) == checkpoint.tensor_count
    assert run(omni_checkpoint, vllm="0.33", stress=True, strategy=strategy, algorithm=algorithm).ok


def test_without_the_iterator_clone_the_legacy_path_goes_stale(omni_checkpoint: str) -> None:
    """The control for the test above: the same stress, the same legacy path, no clone (vLLM 0.21)."""
    assert not run(omni_checkpoint, vllm="0.21", stress=True, strategy="legacy").ok


def test_the_default_ring_holds_two_of_the_largest_tensor_and_a_users_ring_is_left_alone(
    make_checkpoint: Callable[..., str], monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from nemoverify.deployment import ring as runai
    from nemoverify.deployment.ring import fitted_ring

    monkeypatch.setattr(runai, "default_ring_bytes", lambda: 10 << 30)
    assert fitted_ring(256 << 20, 100 << 20) == 256 << 20
    assert fitted_ring(256 << 20, 1 << 30) == 2 << 30  # two of the largest, within the memory bound
    assert fitted_ring(256 << 20, 8 << 30) == 10 << 30  # the bound caps it ...
    assert fitted_ring(256 << 20, 12 << 30) == 12 << 30  # ... but never below one tensor (the streamer's floor)
    checkpoint = open_for_vllm(make_checkpoint())
    largest = max(t.nbytes for s in checkpoint.streamed for t in s.header.tensors)
    default = resolved()
    tiny = resolved(memory_limit=largest)  # the user's: left alone
    assert tiny.fitted_to(checkpoint.largest_streamed_tensor).memory_limit == largest
    monkeypatch.setattr(runai, "CHOSEN_RING", largest)
    monkeypatch.setattr(runai, "RING_PER_CORE", 0)
    assert default.fitted_to(checkpoint.largest_streamed_tensor) is default  # 256 MiB holds two of a small checkpoint's largest
    small = resolved()
    assert small.memory_limit == largest and small.fitted_to(checkpoint.largest_streamed_tensor).memory_limit == 2 * largest


def test_the_default_ring_grows_with_the_cores_within_an_eighth_of_the_checkpoint(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from nemoverify.deployment import ring

    monkeypatch.setattr(ring, "default_ring_bytes", lambda: 10 << 30)
    assert ring.chosen_ring_bytes(2) == 256 << 20  # measured fastest on 2 cores
    assert ring.chosen_ring_bytes(16) == 1 << 30  # and faster than it on 16
    monkeypatch.setattr(ring, "default_ring_bytes", lambda: 512 << 20)
    assert ring.chosen_ring_bytes(16) == 512 << 20  # never past the memory bound
    assert ring.within_share(1 << 30, 8 << 30) == 1 << 30
    assert ring.within_share(1 << 30, 4 << 30) == 512 << 20  # an eighth of the checkpoint
    assert ring.within_share(1 << 30, 1 << 30) == 256 << 20  # never below the 2-core choice
    assert ring.within_share(128 << 20, 1 << 20) == 128 << 20  # a smaller ring is not raised
