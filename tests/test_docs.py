"""The documentation tells the truth: docs/cli.md is generated from the command line itself, every
output shown in README.md and docs/ is what the command prints now (run here, from a copy of the
examples, so no machine path appears), and the README stays short.

After a deliberate change: `NEMOVERIFY_UPDATE_DOCS=1 python -m pytest tests/test_docs.py`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
UPDATE = bool(os.environ.get("NEMOVERIFY_UPDATE_DOCS"))
# `<!-- output -->` before a fenced block: each `$ ` line in it is run, and what it prints follows it.
BLOCK = re.compile(r"<!-- output -->\n```text\n(.*?)```", re.S)
# What differs from run to run, not from code to code: timings and the streamer's patch release.
VOLATILE = [
    (re.compile(r"\b\d+\.\d+s\b"), "<t>s"),
    (re.compile(r'time="\d+\.\d+"'), 'time="<t>"'),
    (re.compile(r'"elapsed_s": [\d.]+'), '"elapsed_s": <t>'),
    (re.compile(r"(runai-model-streamer|emulated on) \d+\.\d+\.\d+"), r"\1 <v>"),
]


def _steady(text: str) -> str:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the documented commands run in: the examples, and `upload`, a copy of the Omni example
    whose second shard lost its last 100 bytes (an interrupted upload)."""
    where = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "examples", where / "examples")
    upload = where / "upload"
    shutil.copytree(ROOT / "examples" / "nano-omni-tiny", upload)
    shard = upload / "model-00002-of-00003.safetensors"
    os.truncate(shard, shard.stat().st_size - 100)
    return where


def _run(session: str, workdir: Path) -> str:
    """Each `$ ` line of `session` run in `workdir`, followed by what it printed."""
    cli = Cli(COLUMNS="100")
    out: list[str] = []
    last = 0
    for line in session.splitlines():
        if not line.startswith("$ "):
            continue
        command = line[2:]
        out.append(line)
        words = shlex.split(command)
        if words[0] == "nemoverify":
            before = os.getcwd()
            os.chdir(workdir)
            try:
                result = cli(*words[1:])
            finally:
                os.chdir(before)
            last = result.exit_code
            out.extend(result.output.rstrip("\n").splitlines())
        elif command == "echo $?":
            out.append(str(last))
        elif words[0] == "cat":
            out.extend((workdir / words[1]).read_text(encoding="utf-8").rstrip("\n").splitlines())
        else:
            raise AssertionError(f"the docs test runs nemoverify, echo $? and cat only: {command}")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_output_shown_is_what_the_command_prints(doc: Path, workdir: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    blocks = list(BLOCK.finditer(text))
    if not blocks:
        pytest.skip(f"{doc.name} shows no output")
    rewritten, at = [], 0
    for block in blocks:
        printed = _run(block.group(1), workdir)
        assert str(workdir) not in printed and str(ROOT) not in printed, "a machine path"
        if not UPDATE:
            assert _steady(printed) == _steady(block.group(1)), f"{doc.name}: regenerate with NEMOVERIFY_UPDATE_DOCS=1"
        rewritten += [text[at : block.start(1)], printed]
        at = block.end(1)
    if UPDATE:
        doc.write_text("".join(rewritten) + text[at:], encoding="utf-8")


def release_table() -> str:
    """The release rows of docs/deployments.md, from nemoverify.deployment.releases."""
    from nemoverify.deployment.releases import VLLM_RELEASES

    lines = [
        "| vLLM | load path | text-only skip | iterator clones | final layernorm | language model | loader config | what changed here |",
        "|---|---|---|---|---|---|---|---|",
    ]
    previous: frozenset[str] = frozenset()
    for row in VLLM_RELEASES:
        added = sorted(row.architectures - previous) if previous else []
        previous = row.architectures
        changed = row.code_changes + (f"; the registry adds {', '.join(added)}" if added and "registry" not in row.code_changes else "")
        lines.append(
            f"| {row.name} | {'pre-fix' if row.load_path == 'legacy' else 'fixed'} "
            f"| {'yes' if row.text_only_skip else 'no'} | {'yes' if row.iterator_clones else 'no'} "
            f"| {'routed, asserted' if row.final_layernorm else 'dropped'} | {row.language_model} "
            f"| {row.extra_config} | {changed} |"
        )
    return "\n".join(lines) + "\n"


def test_the_release_table_is_generated_from_the_rows() -> None:
    doc = ROOT / "docs" / "deployments.md"
    text = doc.read_text(encoding="utf-8")
    start, end = text.index("<!-- releases -->\n") + len("<!-- releases -->\n"), text.index("<!-- /releases -->")
    if UPDATE:
        doc.write_text(text[:start] + release_table() + text[end:], encoding="utf-8")
        text = doc.read_text(encoding="utf-8")
    assert text[start : text.index("<!-- /releases -->")] == release_table(), "regenerate with NEMOVERIFY_UPDATE_DOCS=1"


def test_the_cli_reference_is_generated_from_the_cli() -> None:
    generated = subprocess.run(
        [sys.executable, "-m", "typer", "nemoverify.cli.app", "utils", "docs", "--name", "nemoverify"],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"COLUMNS": "100"},
    ).stdout
    reference = ROOT / "docs" / "cli.md"
    if UPDATE:
        reference.write_text(generated, encoding="utf-8")
    assert reference.read_text(encoding="utf-8") == generated, "regenerate with NEMOVERIFY_UPDATE_DOCS=1"


def test_the_readme_is_short_and_links_every_doc() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 350
    for doc in DOCS[1:]:
        assert f"docs/{doc.name}" in readme, doc.name


def test_no_doc_shows_a_machine_path() -> None:
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        assert str(ROOT) not in text and "/tmp/" not in text, doc.name
