"""Deployment profiles: each row of the vLLM and streamer release facts, checked against what the
real streamer and the replayed load path then do to a checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from importlib.resources import files

import pytest
from conftest import resolved

from nemoverify.deployment.installed import installed_version
from nemoverify.deployment.profiles import resolve_profile
from nemoverify.deployment.releases import NEWEST_VLLM, VLLM_RELEASES, streamer_release, vllm_release
from nemoverify.engine.check import check_load as check
from nemoverify.engine.inventory import describe
from nemoverify.errors import UsageError
from nemoverify.model.checks import open_for_vllm

pytestmark = pytest.mark.streamer

INSTALLED_STREAMER = installed_version("runai-model-streamer") or ""


def run(path: str, **options: object):  # type: ignore[no-untyped-def]
    return check(open_for_vllm(path), resolved(**options))  # type: ignore[arg-type]


# --- the release tables themselves -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "row", "load_path", "text_only_skip", "clones", "final_layernorm"),
    [
        ("0.20.1", "0.20.0-0.20.2", "legacy", False, False, False),  # issue 41749's release
        ("0.20", "0.20.0-0.20.2", "legacy", False, False, False),  # no row splits a minor release
        ("0.21.0", "0.21.0", "legacy", True, False, False),
        ("0.22.0", "0.22.0-0.22.1", "fixed", True, True, False),  # PR 42244 and PR 43464
        ("0.27.1+cu128", "0.27.0-0.27.1", "fixed", True, True, False),  # a local build label aside
        ("0.31.0", "0.31.0", "fixed", True, True, False),
        ("0.32.0", "0.32.0", "fixed", True, True, True),
        ("0.33", "0.33.0", "fixed", True, True, True),
    ],
)
def test_each_vllm_release_has_its_load_path_text_only_rule_iterator_and_routing(
    version: str, row: str, load_path: str, text_only_skip: bool, clones: bool, final_layernorm: bool
) -> None:
    release = vllm_release(version)
    assert (release.name, release.load_path, release.text_only_skip) == (row, load_path, text_only_skip)
    assert (release.iterator_clones, release.final_layernorm) == (clones, final_layernorm)


def test_each_row_spans_releases_whose_load_path_code_is_the_same() -> None:
    """Rows follow the code: the fingerprints of every load-path function (fingerprints.json, written
    by the differential harness from every wheel) are equal within a row and differ between rows."""
    table = json.loads((files("nemoverify.deployment") / "fingerprints.json").read_text(encoding="utf-8"))
    releases = table["releases"]
    assert releases == [r for row in VLLM_RELEASES for r in row.releases]

    def code(release: str) -> tuple[object, ...]:
        shas = tuple(entry["sha256"][release] for entry in table["functions"].values())
        return shas + (tuple(table["architectures"][release]),)

    for row in VLLM_RELEASES:
        assert len({code(r) for r in row.releases}) == 1, row.name
    firsts = [code(row.releases[0]) for row in VLLM_RELEASES]
    assert all(a != b for a, b in zip(firsts, firsts[1:], strict=False))
    for row in VLLM_RELEASES:
        assert sorted(row.architectures) == table["architectures"][row.releases[0]], row.name


def test_architecture_names_follow_the_release() -> None:
    for version in ("0.20", "0.28"):
        archs = vllm_release(version).architectures
        assert {
            "NemotronH_Nano_VL_V2",
            "NemotronH_Nano_Omni_Reasoning_V3",
            "NemotronH_Super_Omni_Reasoning_V3",
        } <= archs
        assert "NemotronH_Omni_Reasoning_V3" not in archs
    assert "NemotronH_Omni_Reasoning_V3" in vllm_release("0.29").architectures  # registry.py, 0.29.0


@pytest.mark.parametrize("version", ["0.24", "0.25", "0.32", "0.33"])
def test_vllm_024_and_later_refuse_unknown_loader_config_keys(version: str) -> None:
    assert vllm_release(version).rejects_unknown_extra_config
    with pytest.raises(UsageError, match="refuses unknown keys bogus"):
        resolved(vllm=version, model_loader_extra_config='{"bogus": 1}')


def test_vllm_023_and_earlier_ignore_unknown_loader_config_keys() -> None:
    assert not vllm_release("0.23").rejects_unknown_extra_config
    options = resolved(vllm="0.23", model_loader_extra_config='{"bogus": 1, "concurrency": 4}')
    assert options.concurrency == 4
    assert any("ignores model_loader_extra_config keys bogus" in n for n in options.profile.notes)


@pytest.mark.parametrize(
    "config",
    ['{"memory_limit": "4000000000"}', '{"memory_limit": 4e9}', '{"concurrency": "8"}', '{"distributed": "true"}'],
)
def test_a_loader_config_value_of_another_type_is_ignored_to_023_and_refused_from_024(config: str) -> None:
    # vLLM 0.20-0.23 set a key only where isinstance(value, int) (bool for distributed): the deployment
    # runs with the default, and the note says so. 0.24 on validate every value and refuse to start.
    options = resolved(vllm="0.23", model_loader_extra_config=config)
    assert options.concurrency is None and options.memory_limit != 4_000_000_000
    [key] = json.loads(config)
    assert any(f"ignores model_loader_extra_config {key}" in n for n in options.profile.notes)
    for version in ("0.24", "0.32", "0.33"):
        with pytest.raises(UsageError, match=f"refuses {key} "):
            resolved(vllm=version, model_loader_extra_config=config)
    # true as a number reaches the streamer as the text "True", which it refuses (the harness saw it)
    with pytest.raises(UsageError, match="as the text 'True', which the streamer refuses: the load fails"):
        resolved(vllm="0.23", model_loader_extra_config='{"concurrency": true}')


@pytest.mark.parametrize("config", ['{"memory_limit": 0}', '{"memory_limit": -1}'])
def test_vllm_024_alone_refuses_a_memory_limit_below_one(config: str) -> None:
    with pytest.raises(UsageError, match="refuses memory_limit"):
        resolved(vllm="0.24", model_loader_extra_config=config)
    for version in ("0.23", "0.25", "0.33"):
        assert resolved(vllm=version, model_loader_extra_config=config).memory_limit == json.loads(config)["memory_limit"]


@pytest.mark.parametrize(
    ("config", "flags", "says"),
    [
        ('{"memory_limit": -5}', {}, "memory_limit -5"),
        ('{"concurrency": 0}', {}, "concurrency 0"),
        ('{"concurrency": 4}', {"concurrency": 2}, "--concurrency 2 and the extra config's concurrency 4 disagree"),
        ('{"memory_limit": 1000}', {"memory_limit": 2000}, "--memory-limit 2000 and the extra config's"),
    ],
)
def test_a_loader_config_the_streamer_would_refuse_or_a_flag_contradicts_is_a_usage_error(
    config: str, flags: dict[str, int], says: str
) -> None:
    for version in ("0.23", "0.32"):
        with pytest.raises(UsageError, match=says):
            resolved(vllm=version, model_loader_extra_config=config, **flags)  # type: ignore[arg-type]
    assert resolved(vllm="0.32", model_loader_extra_config='{"concurrency": 4}', concurrency=4).concurrency == 4


@pytest.mark.parametrize("config", ['{"distributed": false}', '{"concurrency": 4}'])
def test_distributed_ranks_are_refused_when_the_pasted_config_does_not_stream_distributed(config: str) -> None:
    # vLLM sets distributed only from a bool true: this deployment streams whole on every rank.
    given = json.loads(config).get("distributed")
    said = f'"distributed" is {json.dumps(given)}, not true' if given is not None else 'no "distributed": true'
    with pytest.raises(UsageError) as refused:
        resolved(vllm="0.32", model_loader_extra_config=config, nproc=2)
    assert said in str(refused.value) and "so vLLM does not stream distributed" in str(refused.value)
    assert resolved(vllm="0.32", model_loader_extra_config='{"distributed": true}', nproc=2).profile.vllm.name == "0.32.0"
    with pytest.raises(UsageError, match='"distributed" is "true", not true'):
        resolved(vllm="0.23", model_loader_extra_config='{"distributed": "true"}', nproc=2)


@pytest.mark.parametrize("version", ["0.19.1", "0.34.0", "1.0", "latest", "0.20.3", "0.27.3rc1", "0.33.0.post1"])
def test_a_release_nemoverify_does_not_know_is_a_usage_error_not_a_guess(version: str) -> None:
    with pytest.raises(UsageError):
        vllm_release(version)


def test_streamer_016_and_earlier_lend_views_and_017_gives_owned_tensors() -> None:
    assert not streamer_release("0.15.7").owns_tensors
    assert not streamer_release("0.16.1").owns_tensors
    assert streamer_release("0.17.0").owns_tensors
    with pytest.raises(UsageError):
        streamer_release("0.18")


def _fake_distribution(site: str, name: str, version: str) -> None:
    info = os.path.join(site, f"{name}-{version}.dist-info")
    os.makedirs(info)
    with open(os.path.join(info, "METADATA"), "w") as f:
        f.write(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def test_auto_without_vllm_files_takes_the_release_its_metadata_names_and_says_so(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    assert resolve_profile("auto").vllm == NEWEST_VLLM or installed_version("vllm")  # no vLLM here: the newest
    _fake_distribution(str(tmp_path), "vllm", "0.20.1")
    monkeypatch.syspath_prepend(str(tmp_path))
    profile = resolve_profile("auto")
    assert profile.vllm.name == "0.20.0-0.20.2" and "installed vllm 0.20.1" in profile.vllm_source
    assert "could not be read" in (profile.unrecognised or "")  # a warning; an error under --strict
    assert "vllm" not in sys.modules  # read from metadata, never imported


def _fake_vllm(site, monkeypatch, version: str, body: str) -> None:  # type: ignore[no-untyped-def]
    """An installed `vllm` of one module, `vllm/loader.py`, holding `load(x)` with `body`."""
    _fake_distribution(str(site), "vllm", version)
    (site / "vllm").mkdir()
    (site / "vllm" / "__init__.py").write_text("raise ImportError('nemoverify must not import vllm')\n")
    (site / "vllm" / "loader.py").write_text(f'def load(x):\n    """Docstrings do not count."""\n    {body}\n')
    monkeypatch.syspath_prepend(str(site))


def _fingerprints_of(monkeypatch, by_release: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """A fingerprint table of one function, `load`, whose code per release is `by_release`."""
    import ast

    from nemoverify.deployment import installed

    def digest(body: str) -> str:
        return installed.fingerprint(ast.parse(f"def load(x):\n    {body}\n").body[0])

    releases = [r for row in VLLM_RELEASES for r in row.releases]
    table = {
        "releases": releases,
        "functions": {"load": {"modules": ["vllm/loader.py"], "sha256": {r: digest(by_release.get(r, "return 0")) for r in releases}}},
    }
    monkeypatch.setattr(installed, "_table", lambda: table)


def test_auto_recognises_the_installed_vllm_by_its_code_not_its_version(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _fingerprints_of(monkeypatch, {r: "return x + 1" for r in ("0.29.0",)})
    _fake_vllm(tmp_path, monkeypatch, "0.33.0+patched", "return x + 1")  # says 0.33.0, holds 0.29.0's code
    profile = resolve_profile("auto")
    assert profile.vllm.name == "0.29.0" and "its load-path code is 0.29.0's" in profile.vllm_source
    assert any("is release 0.29.0's, not its version's" in n for n in profile.notes)
    assert "vllm" not in sys.modules


def test_a_build_whose_code_matches_no_release_is_named_never_guessed(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from nemoverify.deployment.installed import recognise_installed_vllm

    _fingerprints_of(monkeypatch, {})
    _fake_vllm(tmp_path, monkeypatch, "0.32.0", "return x * 2  # a backport")
    recognised = recognise_installed_vllm()
    assert recognised is not None and recognised.differs == ("load",)
    assert recognised.release.name == "0.32.0"  # what its version says, and the note says it may not be so
    assert any("the code of load matches no vLLM release nemoverify knows" in n for n in recognised.notes)


def test_the_default_streamer_is_the_installed_one_and_another_is_emulated() -> None:
    installed = streamer_release(INSTALLED_STREAMER)
    profile = resolve_profile("0.33")
    assert profile.streamer == installed and not profile.emulated
    other = "0.16" if installed.owns_tensors else "0.17"
    emulated = resolve_profile("0.33", other)
    assert emulated.emulated and "emulated on" in emulated.describe()


# --- what each row does to a checkpoint, through the real streamer ---------------------------------


def test_vllm_020_with_streamer_016_views_corrupts_under_stress(omni_checkpoint: str) -> None:
    report = run(omni_checkpoint, vllm="0.20.1", streamer="0.16", stress=True)
    assert not report.ok
    failed = {f.component for f in report.mismatches}
    assert failed == {"language_model", "vision", "sound"}  # mlp1 is copied inline even before the fix
    assert report.profile is not None and report.profile.borrowed and report.profile.load_path == "legacy"


def test_vllm_020_with_streamer_017_is_safe_as_deployed_because_it_owns_its_tensors(omni_checkpoint: str) -> None:
    report = run(omni_checkpoint, vllm="0.20", streamer="0.17")
    assert report.ok, report.mismatches[:3]
    assert report.profile is not None and not report.profile.borrowed


@pytest.mark.parametrize("vllm", ["0.22", "0.31", "0.33"])
def test_an_iterator_that_clones_makes_even_the_legacy_path_safe_under_stress(omni_checkpoint: str, vllm: str) -> None:
    report = run(omni_checkpoint, vllm=vllm, streamer="0.16", stress=True, strategy="legacy")
    assert report.ok, report.mismatches[:3]
    assert report.profile is not None and report.profile.overrides == ("--strategy legacy",)


def test_vllm_020_loads_multimodal_weights_even_in_text_only_mode(omni_checkpoint: str) -> None:
    skipped_021 = run(omni_checkpoint, vllm="0.21", text_only=True)
    assert skipped_021.components["vision"].skipped == skipped_021.components["vision"].tensors
    loaded_020 = run(omni_checkpoint, vllm="0.20", text_only=True)
    assert loaded_020.components["vision"].matched > 0  # 0.20 has no text-only skip
    assert loaded_020.profile is not None and any("no text-only skip" in n for n in loaded_020.profile.notes)


def test_the_installed_streamer_release_runs_as_the_candidate(vl_checkpoint: str) -> None:
    """Whatever release is installed (CI runs this under 0.16 and 0.17), nemoverify streams through it
    without passing a parameter it lacks, borrowed or owned as that release is."""
    for stress in (False, True):
        report = run(vl_checkpoint, stress=stress)
        assert report.ok, report.mismatches[:3]
        assert report.profile is not None and not report.profile.emulated
    assert not run(vl_checkpoint, vllm="0.20", stress=True).ok


def test_a_017_profile_on_an_older_streamer_and_a_016_profile_on_017_are_emulated(vl_checkpoint: str) -> None:
    owned = run(vl_checkpoint, vllm="0.20", streamer="0.17")
    views = run(vl_checkpoint, vllm="0.20", streamer="0.16", memory_limit=0)
    assert owned.ok
    assert not views.ok  # 0.16's views, a ring of one tensor, the pre-fix lists: stale
    emulated = owned if not streamer_release(INSTALLED_STREAMER).owns_tensors else views
    assert emulated.profile is not None and emulated.profile.emulated


# --- the file set vLLM's Run:ai loader streams ------------------------------------------------------


def _stray(root: str, name: str, tensors: dict[str, object]) -> str:
    from safetensors.torch import save_file

    path = os.path.join(root, name)
    save_file(tensors, path)  # type: ignore[arg-type]
    return path


def test_a_stray_file_beside_the_checkpoint_is_streamed_and_its_copy_is_what_the_model_holds(
    cli, vl_checkpoint: str, copy_of, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import torch

    root = copy_of(vl_checkpoint)
    name = "language_model.backbone.embeddings.weight"
    shape = open_for_vllm(root).shards[0].header.tensors[0].shape  # any shape will do
    stray = _stray(root, "zz-old-consolidated.safetensors", {name: torch.zeros(shape, dtype=torch.bfloat16)})
    out = tmp_path / "r.json"
    result = cli("check", root, "--json", str(out), "--show", "0")
    assert result.exit_code == 1, result.output
    text = " ".join(result.stdout.split())
    assert "zz-old-consolidated.safetensors" in text and name in text
    report = json.loads(out.read_text())
    [finding] = report["mismatches"]
    assert (finding["name"], finding["kind"]) == (name, "duplicate")
    assert "delivered 2 times (from " in finding["message"] and "zz-old-consolidated.safetensors" in finding["message"]
    # The streamer delivers in completion order: whichever copy came last is the one the model holds,
    # and the finding is located in that file.
    if finding["file"] == stray:
        assert "holding the copy from zz-old-consolidated.safetensors, whose bytes differ" in finding["message"]
    else:
        assert "holding the indexed copy" in finding["message"]
    assert any(w["rule"] == "shard-not-indexed" and "streams every" in w["message"] for w in report["warnings"])


def test_a_duplicate_with_the_same_bytes_still_fails_and_says_so(vl_checkpoint: str, copy_of) -> None:
    from safetensors import safe_open

    root = copy_of(vl_checkpoint)
    first = open_for_vllm(root).shards[0]
    name = first.header.tensors[-1].name
    with safe_open(first.location, framework="pt") as f:
        same = f.get_tensor(name)
    _stray(root, "copy.safetensors", {name: same})
    report = run(root)
    [finding] = report.mismatches
    assert finding.kind == "duplicate" and finding.detail is not None
    assert "bytes equal the indexed copy" in finding.detail or "holding the indexed copy" in finding.detail


def test_a_stray_file_with_names_vllm_drops_verifies_with_a_warning(vl_checkpoint: str, copy_of) -> None:
    import torch

    root = copy_of(vl_checkpoint)
    _stray(root, "leftover.safetensors", {"optimizer.step": torch.zeros(1)})
    report = run(root)
    assert report.ok
    assert any(w.rule == "shard-not-indexed" for w in report.warnings)


def test_a_malformed_stray_file_fails_the_load_as_it_would_fail_vllm(cli, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(vl_checkpoint)
    with open(os.path.join(root, "broken.safetensors"), "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    result = cli("check", root)
    assert result.exit_code == 3
    assert "broken.safetensors" in result.stderr


def test_the_candidate_streams_files_in_glob_order(vl_checkpoint: str, copy_of) -> None:
    import glob

    root = copy_of(vl_checkpoint)
    checkpoint = open_for_vllm(root)
    expected = [os.path.basename(p) for p in glob.glob(os.path.join(root, "*.safetensors"))]
    assert [s.name for s in checkpoint.streamed] == expected


# --- routing and names of each release --------------------------------------------------------------


def test_vllm_032_loads_the_vision_final_layernorm_when_the_model_has_mtp_layers(
    make_checkpoint: Callable[..., str],
) -> None:
    path = make_checkpoint(mtp_layers=1, seed=3)
    new = run(path, vllm="0.32", fail_on_unclaimed=True)
    assert new.ok, new.mismatches[:3]
    assert "unclaimed" not in new.components
    assert new.components["mlp1"].matched == 5  # mlp1's three weights and the layernorm's two
    old = run(path, vllm="0.31", fail_on_unclaimed=True)
    assert not old.ok and old.components["unclaimed"].tensors == 2  # dropped silently before 0.32


def test_mtp_layers_are_read_from_llm_config_as_vllm_reads_it(make_checkpoint: Callable[..., str], copy_of) -> None:
    # Some releases of these checkpoints name the language model's config llm_config; vLLM renames it
    # text_config on load, so the final layernorm is routed either way.
    root = copy_of(make_checkpoint(mtp_layers=1, seed=3))
    config = os.path.join(root, "config.json")
    with open(config) as f:
        data = json.load(f)
    data["llm_config"] = data.pop("text_config")
    with open(config, "w") as f:
        json.dump(data, f)
    report = run(root, vllm="0.33", fail_on_unclaimed=True)
    assert report.ok and "unclaimed" not in report.components
    assert report.components["mlp1"].matched == 5
    inventory = describe(open_for_vllm(root)).to_dict()["components"]  # inspect knows it too (the newest release)
    assert "unclaimed" not in inventory and inventory["mlp1"]["tensors"] == 5
    data["text_config"] = {"num_nextn_predict_layers": 0}  # both keys: text_config wins, as in vLLM's remap
    with open(config, "w") as f:
        json.dump(data, f)
    assert [f.kind for f in run(root, vllm="0.33").mismatches] == ["load-error", "load-error"]


@pytest.mark.parametrize(
    ("value", "layers"), [("1", 1), ("true", 1), ("1.0", 1), ("Infinity", 1), ("0", 0), ("-1", 0), ('"2"', 0)]
)
def test_mtp_layers_are_what_vllms_greater_than_zero_test_says(value: str, layers: int) -> None:
    from nemoverify.checkpoint.config import read_config

    config, _ = read_config(
        f'{{"architectures": ["NemotronH_Nano_VL_V2"], "llm_config": {{"num_nextn_predict_layers": {value}}}}}', "c"
    )
    assert config.mtp_layers == layers


def test_without_mtp_layers_vllm_032_and_later_fail_the_load_on_the_final_layernorm(
    make_checkpoint: Callable[..., str], copy_of
) -> None:
    """0.32.0: `assert param_name in vision_norm_params` over a LayerNorm built only for MTP layers;
    before 0.32 the names match no predicate and are dropped silently."""
    root = copy_of(make_checkpoint(mtp_layers=1, seed=3))
    config = os.path.join(root, "config.json")
    with open(config) as f:
        data = json.load(f)
    data["text_config"].pop("num_nextn_predict_layers")
    with open(config, "w") as f:
        json.dump(data, f)
    for version in ("0.32", "0.33"):
        report = run(root, vllm=version)
        assert sorted((f.name, f.kind) for f in report.mismatches) == [
            ("vision_projector.vision_final_layernorm.bias", "load-error"),
            ("vision_projector.vision_final_layernorm.weight", "load-error"),
        ]
        assert all("AssertionError" in f.message for f in report.mismatches)
    assert run(root, vllm="0.31").components["unclaimed"].tensors == 2
    assert run(root, vllm="0.33", text_only=True).ok  # text-only mode skips the branch before the assert


@pytest.mark.parametrize(
    "architecture", ["NemotronH_Nano_VL_V2", "NemotronH_Nano_Omni_Reasoning_V3", "NemotronH_Super_Omni_Reasoning_V3"]
)
def test_every_architecture_vllm_routes_here_is_known_to_every_release(
    cli, make_checkpoint: Callable[..., str], architecture: str
) -> None:  # type: ignore[no-untyped-def]
    path = make_checkpoint(architecture_name=architecture, seed=4)
    result = cli("check", path, "--vllm", "0.20", "--strict")
    assert result.exit_code == 0, result.output


def test_the_omni_architecture_is_routed_here_only_from_vllm_029(cli, make_checkpoint: Callable[..., str]) -> None:  # type: ignore[no-untyped-def]
    path = make_checkpoint(architecture_name="NemotronH_Omni_Reasoning_V3", seed=4)
    assert cli("check", path, "--vllm", "0.29", "--strict").exit_code == 0
    old = cli("check", path, "--vllm", "0.28")
    assert old.exit_code == 0  # the load itself is intact; the release would refuse the model: a warning
    assert "vLLM 0.28.0 does not route NemotronH_Omni_Reasoning_V3" in " ".join(old.stdout.split())
    strict = cli("check", path, "--vllm", "0.28", "--strict")
    assert strict.exit_code == 3, strict.output  # --strict: the release's own warning is an error too
    assert "[config-architecture]" in strict.stderr


def test_an_unknown_parakeet_weight_is_a_load_failure_of_the_release(cli, omni_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    import torch

    root = copy_of(omni_checkpoint)
    name = "sound_encoder.encoder.not_a_parakeet_weight"
    _stray(root, "extra-sound.safetensors", {name: torch.ones(2)})
    result = cli("check", root, "--format", "json")
    assert result.exit_code == 1
    [finding] = json.loads(result.stdout)["mismatches"]
    assert (finding["name"], finding["kind"]) == (name, "load-error")
    assert "raises ValueError" in finding["message"] and finding["file"].endswith("extra-sound.safetensors")


@pytest.mark.parametrize("vllm", ["0.20", "0.33"])  # mlp1 looked up inline (pre-fix) and after the drain (fixed)
def test_an_unknown_mlp1_weight_is_a_load_failure_on_either_load_path(
    cli, vl_checkpoint: str, copy_of, vllm: str
) -> None:  # type: ignore[no-untyped-def]
    import torch

    root = copy_of(vl_checkpoint)
    name = "mlp1.1.bias"  # the projector's linears have no bias: vLLM's lookup raises KeyError
    _stray(root, "extra-mlp1.safetensors", {name: torch.ones(2)})
    result = cli("check", root, "--vllm", vllm, "--format", "json")
    assert result.exit_code == 1, result.output
    [finding] = json.loads(result.stdout)["mismatches"]
    assert (finding["name"], finding["component"], finding["kind"]) == (name, "mlp1", "load-error")
    assert "KeyError" in finding["message"]
    inventory = cli("inspect", root, "--format", "json")
    assert inventory.exit_code == 0  # a structure that holds; the load is what fails
    [raised] = json.loads(inventory.stdout)["components"]["mlp1"]["raises"]
    assert raised["name"] == name and "KeyError" in raised["reason"]
    assert "vLLM raises on 1 tensor(s)" in " ".join(cli("inspect", root).stdout.split())
    # Under stress the pre-fix lists go stale too; the failure that stops the load is shown first.
    table = " ".join(cli("check", root, "--vllm", vllm, "--stress", "--show", "1").stdout.split())
    assert "vLLM raises on 1 tensor(s): the load fails" in table
    assert table.index(name) < table.index("... and") if "... and" in table else name in table


def test_sound_tensors_without_a_sound_config_fail_the_load_unless_text_only_skips_them(
    cli, omni_checkpoint: str, copy_of
) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(omni_checkpoint)
    config = os.path.join(root, "config.json")
    with open(config) as f:
        data = json.load(f)
    data.pop("sound_config")
    with open(config, "w") as f:
        json.dump(data, f)
    sound = [info.name for _, info in open_for_vllm(root).tensors() if info.name.startswith("sound")]
    for vllm in ("0.20", "0.33"):  # asserted in the routing loop, on either load path
        result = cli("check", root, "--vllm", vllm, "--format", "json")
        assert result.exit_code == 1, result.output
        mismatches = json.loads(result.stdout)["mismatches"]
        assert {m["name"] for m in mismatches} == set(sound)
        assert all(m["kind"] == "load-error" and "asserts" in m["message"] for m in mismatches)
    for vllm in ("0.21", "0.33"):  # skipped before the assert, on the pre-fix path as on the fixed one
        assert cli("check", root, "--vllm", vllm, "--text-only").exit_code == 0
    inventory = json.loads(cli("inspect", root, "--format", "json").stdout)  # inspect says the same
    assert {r["name"] for r in inventory["components"]["sound"]["raises"]} == set(sound)
    assert inventory["components"]["sound"]["skipped"] == [] and inventory["ok"]
    assert cli("check", root, "--vllm", "0.20", "--text-only").exit_code == 1  # 0.20 has no text-only skip
    assert cli("check", root, "--vllm", "0.33", "--text-only", "--strict").exit_code == 3  # the config's warning


def test_a_name_vllm_raises_on_stays_a_load_error_when_delivered_twice(cli, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    import torch

    root = copy_of(vl_checkpoint)
    name = "mlp1.1.bias"
    _stray(root, "extra-a.safetensors", {name: torch.ones(2)})
    _stray(root, "extra-b.safetensors", {name: torch.ones(2)})
    result = cli("check", root, "--format", "json")
    assert result.exit_code == 1, result.output
    [finding] = json.loads(result.stdout)["mismatches"]
    assert (finding["name"], finding["kind"]) == (name, "load-error")  # not a duplicate: no copy is held
    matrix = json.loads(cli("matrix", root, "--nproc", "1", "--format", "json").stdout)
    assert matrix["exposed"] == [] and matrix["fails_to_load"]


def test_a_sound_tensor_in_a_stray_file_is_what_the_missing_sound_config_warns_of(vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    import torch

    root = copy_of(vl_checkpoint)  # no sound_config; vLLM streams the stray file and asserts on its tensor
    _stray(root, "extra-sound.safetensors", {"sound_projection.norm.weight": torch.ones(2)})
    assert [p.rule for p in open_for_vllm(root).problems if p.rule == "config-sound"] == ["config-sound"]


def test_a_name_vllm_drops_delivered_twice_fails_nothing_and_a_stray_only_one_says_so(
    cli, vl_checkpoint: str, copy_of
) -> None:  # type: ignore[no-untyped-def]
    import torch

    root = copy_of(vl_checkpoint)
    dropped = "vision_model.radio_model.input_conditioner.extra"  # RADIO skips input_conditioner.*
    for stray in ("stray-a.safetensors", "stray-b.safetensors"):
        _stray(root, stray, {dropped: torch.ones(2)})
    assert cli("check", root).exit_code == 0  # no parameter holds either copy
    # A parameter of the built model (vit_huge: 32 blocks) that the index lacks (the example has two).
    loaded = "vision_model.radio_model.model.blocks.5.norm1.weight"
    for stray in ("stray-a.safetensors", "stray-b.safetensors"):
        _stray(root, stray, {dropped: torch.ones(2), loaded: torch.ones(2)})
    result = cli("check", root, "--format", "json")
    assert result.exit_code == 1
    [finding] = json.loads(result.stdout)["mismatches"]
    assert (finding["name"], finding["kind"]) == (loaded, "duplicate")
    assert "no indexed copy exists" in finding["message"] and "differ from the indexed copy" not in finding["message"]


def test_fail_on_unclaimed_sees_an_unclaimed_tensor_in_a_stray_file(cli, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    import torch

    root = copy_of(vl_checkpoint)
    _stray(root, "stray.safetensors", {"weird.thing": torch.ones(2)})  # streamed, claimed by no component
    assert cli("check", root).exit_code == 0
    result = cli("check", root, "--fail-on-unclaimed")
    assert result.exit_code == 1, result.output
    assert "weird.thing" in result.stdout and "unclaimed tensors present" in result.stdout


def test_a_stray_name_that_loads_into_an_indexed_ones_parameter_fails(cli, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    import torch

    root = copy_of(vl_checkpoint)
    [shape] = [info.shape for _, info in open_for_vllm(root).tensors() if info.name == "mlp1.0.weight"]
    _stray(root, "z-old.safetensors", {"mlp1_old.0.weight": torch.zeros(shape)})
    result = cli("check", root, "--format", "json")
    assert result.exit_code == 1, result.output
    # Both fail; tensors of different files arrive in completion order, so which one the model holds
    # is this run's outcome, not a fact: neither is said to be the one held.
    shared = [m for m in json.loads(result.stdout)["mismatches"] if m["kind"] == "shared-parameter"]
    assert sorted(m["name"] for m in shared) == ["mlp1.0.weight", "mlp1_old.0.weight"]
    assert all("depends on stream order" in m["message"] for m in shared)
    assert not any("the model holds this one" in m["message"] for m in shared)


def test_a_stray_copy_directory_is_not_the_reference(vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The reference stays the indexed checkpoint, whatever else the directory holds."""
    root = str(tmp_path / "c")
    shutil.copytree(vl_checkpoint, root)
    before = open_for_vllm(root)
    _stray(root, "unrelated.safetensors", {"optimizer.step": __import__("torch").zeros(1)})
    after = open_for_vllm(root)
    assert [s.name for s in after.shards] == [s.name for s in before.shards]
    assert len(after.streamed) == len(before.streamed) + 1


def _write_raw_safetensors(path: str, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    """A safetensors file written byte by byte: for dtypes no writer library takes (F4)."""
    import struct

    header, data = {}, b""
    for name, (dtype, shape, payload) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


@pytest.mark.parametrize("loader", ["runai", "safetensors"])
def test_a_dtype_torch_cannot_hold_is_one_load_failure_whichever_the_loader(cli, tmp_path, loader: str) -> None:  # type: ignore[no-untyped-def]
    """F4 is a valid safetensors dtype that no candidate can deliver as stored: the same story (exit 3,
    naming file and tensor) from both loaders, never 'dtype differs' from one and a crash from the other."""
    root = tmp_path / "f4"
    root.mkdir()
    _write_raw_safetensors(
        str(root / "model.safetensors"),
        {
            "language_model.backbone.norm_f.weight": ("BF16", [4], bytes(8)),
            "language_model.backbone.layers.0.mixer.in_proj.weight": ("F4", [2, 4], bytes(4)),
        },
    )
    result = cli("check", str(root), "--loader", loader)
    assert result.exit_code == 3, result.output
    text = " ".join(result.stderr.split())
    assert "language_model.backbone.layers.0.mixer.in_proj.weight" in text and "dtype F4" in text
    assert "model.safetensors" in text


@pytest.mark.slow
def test_where_the_ring_decides_the_verdict_as_deployed_uses_productions_ring(
    make_checkpoint: Callable[..., str],
) -> None:
    """The pre-fix path over 0.16's views is safe in production for a checkpoint its 40 GB ring holds
    (900 MB here): as deployed must say so, though nemoverify's faster default ring is 256 MiB. With
    that small ring forced, the same deployment is corrupted: the ring size is the verdict here."""
    big = make_checkpoint(hidden=2048, ffn=8192, layers=16, vocab=32768, seed=7)
    as_deployed = run(big, vllm="0.20", streamer="0.16")
    assert as_deployed.ok, as_deployed.mismatches[:3]
    assert as_deployed.options["memory_limit"] > 1 << 30  # type: ignore[operator]
    assert not run(big, vllm="0.20", streamer="0.16", memory_limit=256 << 20).ok
    fast = run(big, vllm="0.33")  # the ring cannot change this verdict: the fast ring is used
    assert fast.ok and fast.options["memory_limit"] < 1 << 30  # type: ignore[operator]


# --- the language model's own names, as each release maps them ------------------------------------


@pytest.mark.parametrize(
    ("indexed", "second"),
    [
        ("language_model.backbone.norm_f.weight", "language_model.model.norm_f.weight"),
        ("language_model.backbone.layers.0.mixer.A_log", "language_model.backbone.layers.0.mixer.A"),
        ("language_model.backbone.embeddings.weight", "language_model.backbone.embed_tokens.weight"),
    ],
)
def test_a_second_name_the_language_model_renames_into_the_same_parameter_fails_every_release(
    cli, vl_checkpoint: str, copy_of, indexed: str, second: str
) -> None:  # type: ignore[no-untyped-def]
    """NemotronH renames backbone -> model, A_log -> A, embeddings -> embed_tokens before it looks a
    parameter up: both names land in one parameter and the one streamed last wins, silently."""
    import torch

    root = copy_of(vl_checkpoint)
    [shape] = [info.shape for _, info in open_for_vllm(root).tensors() if info.name == indexed]
    _stray(root, "z-extra.safetensors", {second: torch.ones(shape, dtype=torch.bfloat16)})
    for version in ("0.20", "0.25", "0.26", "0.33"):
        result = cli("check", root, "--vllm", version, "--format", "json")
        assert result.exit_code == 1, (version, result.output)
        shared = sorted(m["name"] for m in json.loads(result.stdout)["mismatches"] if m["kind"] == "shared-parameter")
        assert shared == sorted([indexed, second]), version


def test_a_language_model_name_no_module_holds_fails_the_load(cli, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    import torch

    root = copy_of(vl_checkpoint)
    _stray(root, "z-extra.safetensors", {"language_model.decoder.layers.0.weight": torch.ones(2)})
    result = cli("check", root, "--vllm", "0.33", "--format", "json")
    assert result.exit_code == 1
    [finding] = json.loads(result.stdout)["mismatches"]
    assert finding["kind"] == "load-error" and "ValueError" in finding["message"]


def test_a_rotary_cache_anywhere_in_a_language_model_name_is_dropped_not_compared(cli, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    import torch

    root = copy_of(vl_checkpoint)
    name = "language_model.backbone.layers.1.mixer.rotary_emb.inv_freq_old"
    _stray(root, "z-extra.safetensors", {name: torch.ones(2)})
    report = json.loads(cli("check", root, "--vllm", "0.20", "--format", "json").stdout)
    assert report["ok"] and [s["reason"] for s in report["skipped"] if s["name"] == name] == [
        "NemotronH drops rotary-embedding caches"
    ]


def test_a_sound_config_without_convolution_biases_drops_them(cli, omni_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    import torch

    root = copy_of(omni_checkpoint)
    with open(os.path.join(root, "config.json")) as f:
        config = json.load(f)
    config["sound_config"]["convolution_bias"] = False
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump(config, f)
    name = "sound_encoder.encoder.layers.0.conv.depthwise_conv.bias"
    _stray(root, "z-extra.safetensors", {name: torch.ones(2)})
    report = json.loads(cli("check", root, "--format", "json").stdout)
    assert [s["reason"] for s in report["skipped"] if s["name"] == name] == [
        "the sound config's convolution_bias is false: Parakeet skips the convolution biases"
    ]


def test_an_installed_vllm_whose_code_no_release_has_is_a_warning_and_under_strict_an_error(
    cli, vl_checkpoint: str, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    _fingerprints_of(monkeypatch, {})
    _fake_vllm(tmp_path, monkeypatch, "0.32.0", "return x * 2  # a backport")
    result = cli("check", vl_checkpoint, "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [w["rule"] for w in report["warnings"]] == ["vllm-code"] and not report["profile"]["vllm_code_recognised"]
    strict = cli("check", vl_checkpoint, "--strict", "--json", str(tmp_path / "r.json"))
    assert strict.exit_code == 3 and "matches no vLLM release" in " ".join(strict.stderr.split())
    assert json.loads((tmp_path / "r.json").read_text())["problems"][0]["rule"] == "vllm-code"
