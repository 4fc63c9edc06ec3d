"""The installed vLLM, recognised by its code rather than by its version string: the source of each
function on the load path is read from the installed package's files (vLLM is never imported: that
takes seconds and may want a GPU), fingerprinted, and matched against the fingerprints of every
release nemoverify knows (`fingerprints.json`, written by the differential harness from the wheels
on the package index). A patched build (a container image with a backport, say) whose code matches
no known release is said so, naming the functions that differ, never silently taken for its version.

A fingerprint is sha256 over a canonical text of the function's syntax tree: docstrings removed,
fields that are None or empty left out (so Python versions that add empty fields agree), constants
by repr, no positions or comments; formatting does not change it.
"""

from __future__ import annotations

import ast
import hashlib
import json
from functools import cache
from importlib import metadata, resources, util
from pathlib import Path
from typing import NamedTuple

from nemoverify.deployment.releases import KNOWN_VLLM, VLLM_RELEASES, VllmRelease, vllm_release
from nemoverify.errors import UsageError


def installed_version(distribution: str) -> str | None:
    """A package's version from its metadata, without importing it (vLLM takes seconds to import)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


class Recognised(NamedTuple):
    """The release whose load-path code the installed vLLM's code is, and how it was told."""

    release: VllmRelease  # the row whose code the installed package's code is
    source: str  # how it was chosen, for the report: "installed vllm 0.33.0 (its code is 0.33.0's)"
    notes: tuple[str, ...] = ()
    differs: tuple[str, ...] = ()  # functions whose code matches no release nemoverify knows


@cache
def _table() -> dict[str, object]:
    text = resources.files("nemoverify.deployment").joinpath("fingerprints.json").read_text(encoding="utf-8")
    table: dict[str, object] = json.loads(text)
    return table


def recognise_installed_vllm() -> Recognised | None:
    """The installed vLLM's row, by its code; None where no vLLM is installed."""
    version = installed_version("vllm")
    if version is None:
        return None
    root = _package_root()
    if root is None:  # metadata without the package's files: the version is all there is
        said = _release_of(version)
        row = vllm_release(said) if said else VLLM_RELEASES[-1]
        note = f"installed vllm {version}: its files were not found, so its code could not be read; replaying {row.name}"
        return Recognised(row, f"installed vllm {version} (code not read)", (note,), ("the package's files",))
    return recognise(root, version)


def _package_root() -> Path | None:
    """The directory that holds the `vllm` package (the package is not imported)."""
    spec = util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).parent


def recognise(root: Path, version: str) -> Recognised:
    """Match the code under `root` (the directory holding `vllm/`) against every known release.
    `version` is what its metadata says; the code decides."""
    functions: dict[str, dict[str, object]] = _table()["functions"]  # type: ignore[assignment]
    releases: list[str] = _table()["releases"]  # type: ignore[assignment]
    candidates = set(releases)
    differs = []
    for qualname, entry in functions.items():
        digest = _fingerprint_in(root, qualname, entry["modules"])  # type: ignore[arg-type]
        known: dict[str, str | None] = entry["sha256"]  # type: ignore[assignment]
        matching = {r for r in releases if known[r] == digest}
        if not matching:
            differs.append(qualname)
        else:
            candidates &= matching
    said = _release_of(version)
    if not differs and candidates:
        chosen = said if said in candidates else sorted(candidates, key=KNOWN_VLLM.index)[-1]
        row = vllm_release(chosen)
        source = f"installed vllm {version} (its load-path code is {row.name}'s)"
        notes = () if said in candidates else (f"installed vllm {version}'s code is release {chosen}'s, not its version's",)
        return Recognised(row, source, notes)
    try:
        row = vllm_release(said) if said else VLLM_RELEASES[-1]
    except UsageError:
        row = VLLM_RELEASES[-1]
    differing = ", ".join(differs) or "the combination of its functions"
    note = (
        f"installed vllm {version}: the code of {differing} matches no vLLM release nemoverify knows "
        f"({KNOWN_VLLM[0]} to {KNOWN_VLLM[-1]}); replaying {row.name}'s load path, which may not be this build's"
    )
    return Recognised(row, f"installed vllm {version} (code not recognised; {row.name} assumed)", (note,), tuple(differs))


def _release_of(version: str) -> str | None:
    """`0.33.0` from `0.33.0+cu128`; None for a version no known release has."""
    base = version.split("+", 1)[0]
    return base if base in KNOWN_VLLM else None


def _fingerprint_in(root: Path, qualname: str, modules: list[str]) -> str | None:
    """The fingerprint of `qualname` in the first of `modules` (paths under `root`) that defines it."""
    for module in modules:
        path = root / module
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue
        node = find(tree, qualname)
        if node is not None:
            return fingerprint(node)
    return None


def find(tree: ast.Module, qualname: str) -> ast.stmt | None:
    """The statement `qualname` names: a def or class (C.m inside class C), or an assignment to a
    plain name; where a name is bound twice, the last binding (the one Python keeps)."""
    body: list[ast.stmt] = tree.body
    node: ast.stmt | None = None
    for part in qualname.split("."):
        hits = [s for s in body if _binds(s, part)]
        if not hits:
            return None
        node = hits[-1]
        body = getattr(node, "body", [])
    return node


def _binds(stmt: ast.stmt, name: str) -> bool:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return stmt.name == name
    if isinstance(stmt, ast.Assign):
        return len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id == name
    if isinstance(stmt, ast.AnnAssign):
        return isinstance(stmt.target, ast.Name) and stmt.target.id == name
    return False


def fingerprint(node: ast.AST) -> str:
    return hashlib.sha256(_canonical(node, top=True).encode("utf-8")).hexdigest()


def _canonical(x: object, top: bool = False) -> str:
    if isinstance(x, ast.AST):
        fields = []
        for name in x._fields:
            value = getattr(x, name, None)
            if name == "body" and isinstance(x, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
                value = _without_docstring(x.body)
            if value is None or (isinstance(value, list) and not value):
                continue
            fields.append(f"{name}={_canonical(value)}")
        return f"{type(x).__name__}({','.join(fields)})"
    if isinstance(x, list):
        return "[" + ",".join(_canonical(a) for a in x) + "]"
    return repr(x)


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return body[1:] or [ast.Pass()]
    return body
