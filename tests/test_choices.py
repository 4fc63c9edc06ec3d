"""Each set of choices (algorithm, strategy, loader, output format) is defined once, in the module
that uses it, and the CLI offers exactly that set."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import nemoverify.cli
from nemoverify.deployment.releases import LOAD_PATHS
from nemoverify.deployment.request import LOADERS
from nemoverify.hashing import ALGORITHMS, MANIFEST_ALGORITHMS
from nemoverify.output.files import OUTPUT_FORMATS


@pytest.mark.parametrize("module", sorted(Path(nemoverify.cli.__file__).parent.glob("*.py")), ids=lambda p: p.name)
def test_the_cli_defines_no_choices_of_its_own(module: Path) -> None:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    enums = [
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.ClassDef) and any("Enum" in ast.unparse(b) or "Literal" in ast.unparse(b) for b in n.bases)
    ]
    literals = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Subscript) and ast.unparse(n.value) == "Literal"]
    assert (enums, literals) == ([], [])


@pytest.mark.parametrize(
    ("command", "option", "choices"),
    [
        ("check", "--algorithm", ALGORITHMS),
        ("check", "--strategy", LOAD_PATHS),
        ("check", "--loader", LOADERS),
        ("check", "--format", OUTPUT_FORMATS),
        ("matrix", "--algorithm", ALGORITHMS),
        ("manifest", "--algorithm", MANIFEST_ALGORITHMS),
        ("inspect", "--format", OUTPUT_FORMATS),
    ],
)
def test_the_cli_offers_the_core_choices(cli, command: str, option: str, choices: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    result = cli(command, "--help")
    assert "|".join(choices) in result.output, result.output
    refused = cli(command, "x", option, "nonsense")
    assert refused.exit_code == 2
    assert f"'nonsense': choose one of {', '.join(choices)}" in " ".join(refused.output.split())


def test_lin128_is_no_manifest_algorithm() -> None:
    assert set(MANIFEST_ALGORITHMS) == set(ALGORITHMS) - {"lin128"}
