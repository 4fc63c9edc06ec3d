"""It installs and integrates the way CI tools do: the CI examples install what exists, the action and
the workflows are valid, the Kubernetes gate runs the deployment's own load path, the sdist's tests
run, the LICENSE is the one declared, and the quick start is two commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKFLOW = os.path.join(ROOT, "examples", "ci", "github-actions.yml")
GITLAB = os.path.join(ROOT, "examples", "ci", "gitlab-ci.yml")
ACTION = os.path.join(ROOT, "action.yml")
K8S = os.path.join(ROOT, "examples", "k8s", "vllm-with-nemoverify.yaml")


def _yaml(path: str) -> dict:  # type: ignore[type-arg]
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)  # type: ignore[no-any-return]


def _scripts(node: object) -> list[str]:
    """Every shell line a CI file runs (GitHub `run:`, GitLab `script:`)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "run" and isinstance(value, str):
                found.append(value)
            elif key in ("script", "before_script") and isinstance(value, list):
                found += [str(v) for v in value]
            else:
                found += _scripts(value)
    elif isinstance(node, list):
        for item in node:
            found += _scripts(item)
    return found


def test_ci_examples_install_nemoverify_from_what_exists() -> None:
    for path in (WORKFLOW, GITLAB, ACTION):
        for line in _scripts(_yaml(path)):
            assert not re.search(r"pip install[^\n]*\bnemoverify\b(?![-\w./*])", line), (path, line)
    steps = _yaml(WORKFLOW)["jobs"]["verify"]["steps"]
    gate = next(s for s in steps if s.get("id") == "gate")
    checkout = next(s for s in steps if s.get("with", {}).get("path") == ".nemoverify")
    assert gate["uses"] == "./" + checkout["with"]["path"]  # the composite action, from its checkout
    assert any("${GITHUB_ACTION_PATH}" in line for line in _scripts(_yaml(ACTION)))  # installs itself
    gitlab = _yaml(GITLAB)
    assert any("pip wheel" in line for line in gitlab["nemoverify-wheel"]["script"])
    assert any("dist/nemoverify-*.whl" in line for line in gitlab["nemoverify"]["script"])


def test_the_action_takes_path_manifest_and_args_and_gives_sarif_and_junit() -> None:
    action = _yaml(ACTION)
    assert action["runs"]["using"] == "composite"
    assert action["inputs"]["path"]["required"] is True
    assert {"path", "manifest", "args"} <= set(action["inputs"])
    assert {"sarif", "junit"} <= set(action["outputs"])
    run = " ".join(_scripts(action))
    for option in ("--sarif", "--junit-xml", "--manifest"):
        assert option in run


@pytest.mark.parametrize(
    ("schema", "path"),
    [("vendor.github-workflows", WORKFLOW), ("vendor.github-actions", ACTION), ("vendor.gitlab-ci", GITLAB)],
    ids=["workflow", "action", "gitlab"],
)
def test_the_workflow_the_action_and_the_gitlab_file_are_valid_against_their_schemas(schema: str, path: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, path], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _k8s_documents() -> list[dict]:  # type: ignore[type-arg]
    with open(K8S, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def test_the_kubernetes_example_is_valid_against_the_kubernetes_schemas() -> None:
    import kubernetes_validate

    version = kubernetes_validate.utils.latest_version()
    for document in _k8s_documents():
        kubernetes_validate.validate(document, version, strict=True)


def test_the_init_container_gates_vllm_with_the_deployments_own_loader_settings(
    cli, omni_checkpoint: str, copy_of, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from malformed import flip_byte

    config, deployment = _k8s_documents()
    pod = deployment["spec"]["template"]["spec"]
    (gate,) = pod["initContainers"]
    (vllm,) = pod["containers"]
    # Both read the same ConfigMap, and vLLM streams with the same extra config nemoverify replays.
    assert gate["envFrom"] == vllm["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    assert "--load-format=runai_streamer" in vllm["args"]
    assert "--model-loader-extra-config=$(MODEL_LOADER_EXTRA_CONFIG)" in vllm["args"]
    assert "--model-loader-extra-config=$(MODEL_LOADER_EXTRA_CONFIG)" in gate["args"]
    assert vllm["image"].endswith(f":v{config['data']['VLLM_RELEASE']}.0")
    assert gate["args"][0] == "check"
    # As many ranks as vLLM runs, streaming distributed as the extra config says: the gate verifies
    # the streamer's distributed mode, the one the deployment uses.
    assert json.loads(config["data"]["MODEL_LOADER_EXTRA_CONFIG"])["distributed"] is True
    assert "--nproc=$(TENSOR_PARALLEL_SIZE)" in gate["args"]
    assert "--tensor-parallel-size=$(TENSOR_PARALLEL_SIZE)" in vllm["args"]
    # The reports outlive a failed init container (nothing else in the pod starts to read them).
    (reports_volume,) = [v for v in pod["volumes"] if v["name"] == "reports"]
    assert "persistentVolumeClaim" in reports_volume

    # The init container's command line, run for real: the model and manifest paths swapped for a
    # tiny checkpoint and its manifest, $(VAR) expanded from the ConfigMap as the kubelet does.
    manifest = str(tmp_path / "m.json")
    assert cli("manifest", omni_checkpoint, "-o", manifest, "-q").exit_code == 0
    reports = tmp_path / "reports"
    reports.mkdir()

    def args_for(model: str) -> list[str]:
        swapped = []
        for arg in gate["args"]:
            arg = re.sub(r"\$\((\w+)\)", lambda m: config["data"][m.group(1)], arg)
            arg = arg.replace("/models/nano-vl", model).replace("/manifest/nano-vl.manifest.json", manifest)
            swapped.append(arg.replace("/reports/", f"{reports}/"))
        return swapped

    result = cli(*args_for(omni_checkpoint))
    assert result.exit_code == 0, result.output
    assert json.loads((reports / "nemoverify.json").read_text())["options"]["memory_limit"] == 5368709120
    damaged = copy_of(omni_checkpoint)
    flip_byte(damaged, mask=0x80)
    assert cli(*args_for(damaged)).exit_code == 1  # the pod would not start


def test_the_license_is_the_apache_2_text_the_package_declares() -> None:
    with open(os.path.join(ROOT, "LICENSE"), encoding="utf-8") as f:
        text = f.read()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        assert 'license = "Apache-2.0"' in f.read()


def test_the_sdist_carries_its_tests_and_they_collect(tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns(
        ".git", ".venv", ".harness", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
    )
    shutil.copytree(ROOT, source, ignore=ignore)
    built = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from setuptools import build_meta; print(build_meta.build_sdist(sys.argv[1]))",
            str(tmp_path / "dist"),
        ],
        cwd=source,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    sdist = tmp_path / "dist" / built.stdout.strip().splitlines()[-1]
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        tar.extractall(tmp_path / "unpacked", filter="data")
    for needed in (
        "tests/conftest.py",
        "tests/malformed.py",
        "tests/schemas/junit.xsd",
        "tests/test_install.py",
        "LICENSE",
        "Makefile",
        "action.yml",
        "examples/ci/github-actions.yml",
        "examples/ci/gitlab-ci.yml",
        "examples/k8s/vllm-with-nemoverify.yaml",
    ):
        assert needed in names, needed
    assert not any("__pycache__" in n for n in names)
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=unpacked,
        env=os.environ | {"PYTHONPATH": str(unpacked)},
        capture_output=True,
        text=True,
    )
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert re.search(r"\d+ tests collected", collected.stdout), collected.stdout[-500:]


def test_the_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    def plan(target: str) -> str:
        # The Makefile's defaults, as on a fresh clone: nothing from a make that runs this test.
        overrides = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTEST_ARGS", "TORCH", "EXTRAS", "PYTHON", "AZURITE")
        env = {k: v for k, v in os.environ.items() if k not in overrides}
        result = subprocess.run(
            ["make", "--no-print-directory", "-n", "-B", target],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env | {"VENV": ".venv"},
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    demo, test = plan("demo"), plan("test")
    for steps in (demo, test):  # each sets up first: a venv, torch before the package, no activation
        venv = steps.index("-m venv .venv")
        torch = steps.index("pip install -q 'torch==")
        package = steps.index("pip install -q -e '.[dev,s3,gcs,azure]'")
        assert venv < torch < package
    assert demo.rstrip().endswith(".venv/bin/nemoverify check examples/nano-omni-tiny")
    assert test.rstrip().endswith(".venv/bin/python -m pytest")
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = f.read()
    assert "make test" in ci and "make lint" in ci and "make validate" in ci
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    assert "make demo" in readme and "make test" in readme
