"""`matrix`: every profile against the shipped examples, through the real streamer (and real gloo ranks)."""

from __future__ import annotations

import json
import os

import pytest

from nemoverify.deployment.releases import VLLM_RELEASES

pytestmark = pytest.mark.streamer
ROWS = len(VLLM_RELEASES)

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
EXAMPLES_OMNI = os.path.join(EXAMPLES, "nano-omni-tiny")


@pytest.mark.slow
def test_matrix_of_the_omni_example_shows_which_deployments_are_exposed(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "m.json"
    result = cli("matrix", os.path.join(EXAMPLES, "nano-omni-tiny"), "--json", str(out))
    assert result.exit_code == 0, result.output  # nothing corrupts the tiny example as deployed
    matrix = json.loads(out.read_text())
    cells = matrix["cells"]
    assert len(cells) == ROWS * 2 * 2 * 2  # vLLM release rows x streamer behaviours x modes x one process / ranks
    assert matrix["nproc"] == 2 and matrix["exposed"] == []

    def cell(vllm: str, streamer: str, distributed: bool, mode: str) -> dict:  # type: ignore[type-arg]
        [c] = [
            c
            for c in cells
            if (c["vllm"], c["streamer"], c["distributed"], c["mode"]) == (vllm, streamer, distributed, mode)
        ]
        return c

    for distributed in (False, True):
        for streamer in ("0.16", "0.17"):
            stressed = cell("0.20.0-0.20.2", streamer, distributed, "stress")
            assert not stressed["safe"]  # the pre-fix lists under maximum buffer reuse
            assert set(stressed["components"]) == {"language_model", "vision", "sound"}
            for vllm in [r.name for r in VLLM_RELEASES[2:]]:  # from 0.22 the iterator clones: safe even so
                assert cell(vllm, streamer, distributed, "stress")["safe"]
    text = " ".join(cli("matrix", os.path.join(EXAMPLES, "nano-omni-tiny"), "--nproc", "1").stdout.split())
    assert "No deployment corrupts this checkpoint as deployed; under stress some would" in text


def test_matrix_fails_when_a_deployment_is_exposed_as_deployed(cli, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    import torch
    from safetensors.torch import save_file

    root = copy_of(vl_checkpoint)
    save_file({"mlp1.1.weight": torch.zeros(3)}, os.path.join(root, "stale.safetensors"))  # loaded by every release
    result = cli("matrix", root, "--nproc", "1", "--format", "json")
    assert result.exit_code == 1
    matrix = json.loads(result.stdout)
    assert all(not c["safe"] for c in matrix["cells"])
    assert len(matrix["exposed"]) == ROWS * 2


def test_a_deployment_whose_vllm_raises_fails_to_load_it_is_not_corrupted(cli, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    import torch
    from safetensors.torch import save_file

    root = copy_of(vl_checkpoint)
    save_file({"mlp1.1.bias": torch.zeros(3)}, os.path.join(root, "extra.safetensors"))  # a KeyError in every release
    result = cli("matrix", root, "--nproc", "1", "--format", "json")
    assert result.exit_code == 1, result.output
    matrix = json.loads(result.stdout)
    assert matrix["exposed"] == [] and len(matrix["fails_to_load"]) == ROWS * 2
    deployed = [c for c in matrix["cells"] if c["mode"] == "deployed"]
    assert all((c["load_errors"], c["load_error_components"], c["corrupted"]) == (1, {"mlp1": 1}, 0) for c in deployed)
    text = " ".join(cli("matrix", root, "--nproc", "1").stdout.split())
    assert "vLLM raises on 1 (mlp1 1)" in text and "FAILS TO LOAD as deployed" in text and "corrupted (" not in text


@pytest.mark.parametrize("config", ['{"concurrency": 16, "memory_limit": 5368709120}', '{"distributed": true}'])
def test_matrix_takes_a_deployments_loader_config_whatever_its_distributed_key(cli, vl_checkpoint: str, config: str) -> None:  # type: ignore[no-untyped-def]
    # Its rows stream both ways, so "distributed" chooses nothing there (check requires it with --nproc).
    result = cli("matrix", vl_checkpoint, "--nproc", "1", "--model-loader-extra-config", config)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("architectures", [["LlamaForCausalLM"], []])  # [] is one vLLM cannot resolve at all
def test_a_matrix_of_an_architecture_no_release_routes_here_gives_no_verdict(cli, vl_checkpoint: str, copy_of, architectures: list[str]) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(vl_checkpoint)
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump({"architectures": architectures}, f)
    result = cli("matrix", root, "--nproc", "1", "--format", "json")
    assert result.exit_code == 3, result.output  # no row streams a byte: nothing was checked
    matrix = json.loads(result.stdout)
    assert (matrix["ok"], matrix["status"], matrix["cells"]) == (False, "invalid", [])
    [problem] = matrix["problems"]
    assert problem["rule"] == "config-architecture" and "no deployment profile applies" in problem["message"]


def test_matrix_shows_the_checkpoints_warnings_as_check_does(cli, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(vl_checkpoint)
    index = os.path.join(root, "model.safetensors.index.json")
    with open(index) as f:
        data = json.load(f)
    data["metadata"]["total_size"] += 2
    with open(index, "w") as f:
        json.dump(data, f)
    result = cli("matrix", root, "--nproc", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [w["rule"] for w in json.loads(result.stdout)["warnings"]] == ["index-total-size"]
    assert "warning: " in cli("matrix", root, "--nproc", "1").stdout
    recorded = cli("manifest", root, "-o", os.path.join(os.path.dirname(root), "m.json"))
    assert recorded.exit_code == 0
    assert "warning: " in recorded.stderr and "metadata.total_size is" in " ".join(recorded.stderr.split())


def test_matrix_of_the_vl_example_in_one_process(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("matrix", os.path.join(EXAMPLES, "nano-12b-v2-vl-tiny"), "--nproc", "1", "--format", "json")
    assert result.exit_code == 0, result.output
    matrix = json.loads(result.stdout)
    assert matrix["nproc"] == 0 and len(matrix["cells"]) == ROWS * 4
    assert {c["vllm"] for c in matrix["cells"] if not c["safe"]} == {"0.20.0-0.20.2", "0.21.0"}


def test_a_matrix_without_a_verdict_still_writes_its_json_saying_why(cli, vl_checkpoint: str, copy_of, tmp_path) -> None:  # type: ignore[no-untyped-def]
    root = copy_of(vl_checkpoint)
    shard = sorted(f for f in os.listdir(root) if f.endswith(".safetensors"))[-1]
    os.truncate(os.path.join(root, shard), os.path.getsize(os.path.join(root, shard)) - 100)
    out = tmp_path / "m.json"
    result = cli("matrix", root, "--nproc", "1", "--json", str(out), "--format", "json")
    assert result.exit_code == 3, result.output
    for text in (out.read_text(), result.stdout):  # the file asked for, and stdout under --format json
        matrix = json.loads(text)
        assert (matrix["ok"], matrix["status"], matrix["cells"], matrix["exposed"]) == (False, "invalid", [], [])
        assert {"matrix_version", "tool", "algorithm", "tensors", "nproc", "device", "elapsed_s"} <= matrix.keys()
        assert [p["rule"] for p in matrix["problems"]] == ["file-truncated"]
        assert matrix["problems"][0]["file"].endswith(shard)


def test_each_row_of_a_matrix_takes_or_refuses_the_loader_config_as_its_release_does(cli, vl_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    """0.20-0.23 ignore an unknown key; 0.24 on refuse it and never start: failing to load."""
    result = cli("matrix", vl_checkpoint, "--nproc", "1", "--model-loader-extra-config", '{"bogus": 1}', "--format", "json")
    assert result.exit_code == 1, result.output
    deployed = {c["vllm"]: c for c in json.loads(result.stdout)["cells"] if c["mode"] == "deployed"}
    refusing = {v for v, c in deployed.items() if c["refused_config"]}
    assert refusing == {r.name for r in VLLM_RELEASES[4:]}  # 0.24.0 on
    assert all("refuses unknown keys bogus" in deployed[v]["refused_config"] for v in refusing)
    assert "refuses the loader config" in " ".join(
        cli("matrix", vl_checkpoint, "--nproc", "1", "--model-loader-extra-config", '{"bogus": 1}').stdout.split()
    )


def test_a_matrix_of_a_config_that_builds_the_text_only_model_gives_no_verdict(cli, vl_checkpoint: str, copy_of) -> None:  # type: ignore[no-untyped-def]
    """vLLM builds the first architecture its registry routes: NemotronHForCausalLM, whose load path is
    another model's, in every release."""
    root = copy_of(vl_checkpoint)
    with open(os.path.join(root, "config.json")) as f:
        config = json.load(f)
    config["architectures"] = ["NemotronHForCausalLM", "NemotronH_Nano_VL_V2"]
    with open(os.path.join(root, "config.json"), "w") as f:
        json.dump(config, f)
    assert cli("matrix", root, "--nproc", "1").exit_code == 3
    check = cli("check", root, "--vllm", "0.33")
    assert check.exit_code == 0  # the bytes load intact; the release builds another model: a warning
    assert "builds NemotronHForCausalLM" in " ".join(check.stdout.split())
    assert cli("check", root, "--vllm", "0.33", "--strict").exit_code == 3


def test_matrix_takes_the_filters_a_user_tries(cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "m.json"
    result = cli("matrix", EXAMPLES_OMNI, "--nproc", "1", "--vllm", "0.20", "--streamer", "0.16", "--json", str(out))
    assert result.exit_code == 0, result.output
    cells = json.loads(out.read_text())["cells"]
    assert {(c["vllm"], c["streamer"]) for c in cells} == {("0.20.0-0.20.2", "0.16")}
    assert {c["mode"] for c in cells} == {"deployed", "stress"}
    assert cli("matrix", EXAMPLES_OMNI, "--nproc", "1", "--vllm", "0.19").exit_code == 2  # a release it does not know


def test_the_check_report_names_distributed_streaming_and_the_way_out(cli, omni_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("check", omni_checkpoint, "--nproc", "2", "--vllm", "0.20", "--streamer", "0.16", "--stress")
    assert result.exit_code == 1, result.output
    text = " ".join(result.stdout.split())
    assert "distributed streaming over 2 ranks" in text
    assert "As deployed, not exposed from vLLM 0.22.0 (its iterator clones each tensor) or with streamer 0.17" in text
