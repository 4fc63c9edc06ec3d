"""The Python API: the README's example runs as written, and the verbs make the CLI's runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import nemoverify

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.streamer


def test_the_readme_python_example_runs_as_written() -> None:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    section = readme[readme.index("## From Python") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    result = subprocess.run([sys.executable, "-c", code.group(1)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "['language_model', 'sound', 'vision']" in result.stdout


def test_importing_the_package_imports_no_heavy_module() -> None:
    probe = "import sys, nemoverify; print(sorted(m for m in ('torch', 'runai_model_streamer') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_cli_and_its_parser_import_no_heavy_module() -> None:
    """What every run pays before its work: the CLI module and its parser load neither torch, the
    streamer, rich (imported where something is printed), nor a validation library."""
    heavy = ("torch", "runai_model_streamer", "rich", "pydantic")
    probe = (
        "import sys, typer, nemoverify.__main__, nemoverify.cli.app; typer.main.get_command(nemoverify.cli.app.app); "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# What a local check of one process imports beyond what it always needs: the renderer of each report
# format it writes, the manifest code when it has a manifest; never the object-storage readers.
IMPORTED_ONLY_WHEN_USED = (
    "nemoverify.output.render.junit",
    "nemoverify.output.render.sarif",
    "nemoverify.output.render.jsonout",
    "nemoverify.engine.manifests",
    "nemoverify.checkpoint.objectstore",
    "nemoverify.engine.ranks",
)


@pytest.mark.parametrize(
    "given, used",
    [
        ((), ()),
        (("--json", "{tmp}/r.json"), ("nemoverify.output.render.jsonout",)),
        (("--sarif", "{tmp}/r.sarif"), ("nemoverify.output.render.sarif",)),
        (("--junit-xml", "{tmp}/r.xml"), ("nemoverify.output.render.junit",)),
        (("--manifest", "{tmp}/m.json"), ("nemoverify.engine.manifests",)),
    ],
    ids=["plain", "json", "sarif", "junit", "manifest"],
)
def test_a_check_imports_only_the_code_it_runs(vl_checkpoint: str, tmp_path, given, used) -> None:  # type: ignore[no-untyped-def]
    """A check of one local process imports neither the renderers of formats it does not write, the
    manifest code without a manifest, the object-storage readers nor the rank machinery."""
    (tmp_path / "m.json").write_text(nemoverify.manifest(vl_checkpoint).to_json())
    argv = ["nemoverify", "check", vl_checkpoint, "-q", *(a.format(tmp=tmp_path) for a in given)]
    probe = (
        "import runpy, sys\n"
        f"sys.argv = {argv!r}\n"
        "code = None\n"
        "try:\n    runpy.run_module('nemoverify', run_name='__main__')\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        f"print(code, sorted(m for m in {IMPORTED_ONLY_WHEN_USED!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split(" ", 1)
    assert out[0] == "0" and out[1].strip() == repr(sorted(used)), out


def test_the_api_and_the_cli_resolve_the_same_run(cli, vl_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The CLI calls the API: a Python caller gets the bounded ring and the profile the CLI gets."""
    import json

    out = tmp_path / "r.json"
    assert cli("check", vl_checkpoint, "--vllm", "0.21", "--json", str(out), "-q").exit_code == 0
    from_cli = json.loads(out.read_text())
    report = nemoverify.check(vl_checkpoint, vllm="0.21")
    assert report is not None and report.ok
    # Both take the bounded ring (a quarter of the memory available, which moves a little between runs).
    assert abs(report.options["memory_limit"] - from_cli["options"]["memory_limit"]) < 1 << 30  # type: ignore[operator]
    assert report.profile is not None and report.profile.to_dict()["vllm"] == from_cli["profile"]["vllm"] == "0.21.0"


def test_every_export_resolves() -> None:
    for name in nemoverify.__all__:
        assert getattr(nemoverify, name) is not None, name
