"""Pure helpers over a release's source: find a function, class or class attribute by qualname
(nemoverify's own `find`, the rule its fingerprints use), hand back its source text and line range
(`show`), and the names a unit reads and a module imports (`program`). No torch, no network.
"""

from __future__ import annotations

import ast
import builtins
import copy
import textwrap
from dataclasses import dataclass

from harness.paths import nemoverify_importable


def find(tree: ast.Module, qualname: str) -> ast.stmt | None:
    """The statement `qualname` names in `tree`, by nemoverify's own rule (the one its fingerprints
    use): a def or class (C.m inside class C) or an assignment to a plain name; the last binding."""
    nemoverify_importable()  # the nemoverify compared with, imported on first use
    from nemoverify.deployment.installed import find as nemoverify_find

    return nemoverify_find(tree, qualname)


@dataclass(frozen=True)
class Found:
    qualname: str
    path: str
    lineno: int  # first line, decorators included
    end_lineno: int
    source: str  # the exact source lines (dedented), for exec


def locate(source: str, qualname: str, path: str = "<src>") -> Found | None:
    node = find(ast.parse(source), qualname)
    if node is None:
        return None
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    lines = source.splitlines(keepends=True)[first - 1 : node.end_lineno]
    return Found(qualname, path, first, node.end_lineno, textwrap.dedent("".join(lines)))


# ---------------------------------------------------------------- free names and imports

_BUILTINS = frozenset(dir(builtins))


def bound_names(node: ast.AST) -> set[str]:
    """Every name bound anywhere inside `node` (assignment targets, parameters, imports, def/class
    names, comprehension and except targets, global/nonlocal declarations)."""
    out: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            out.add(n.id)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            for a in n.names:
                out.add((a.asname or a.name).split(".")[0])
        elif isinstance(n, ast.ExceptHandler) and n.name:
            out.add(n.name)
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            out.update(n.names)
    return out


def _strip_annotations(node: ast.AST) -> ast.AST:
    """A copy of `node` without argument/return annotations (they are never evaluated when compiled
    with `from __future__ import annotations`, so they need no names)."""
    node = copy.deepcopy(node)
    for n in ast.walk(node):
        if isinstance(n, ast.arg):
            n.annotation = None
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n.returns = None
        elif isinstance(n, ast.AnnAssign):
            n.annotation = ast.Constant(value="")
    return node


def free_names(node: ast.AST) -> set[str]:
    """Names `node` reads that it does not bind itself and that are not builtins: what an exec
    namespace must provide. Annotations are ignored (compile with annotations deferred)."""
    node = _strip_annotations(node)
    loads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return loads - bound_names(node) - _BUILTINS


def module_imports(source: str) -> dict[str, tuple[str, str | None]]:
    """The module's top-level imports: local name -> (module, attribute or None for `import m`)."""
    out: dict[str, tuple[str, str | None]] = {}
    for s in ast.parse(source).body:
        if isinstance(s, ast.Import):
            for a in s.names:
                if a.asname:
                    out[a.asname] = (a.name, None)
                else:
                    out[a.name.split(".")[0]] = (a.name.split(".")[0], None)
        elif isinstance(s, ast.ImportFrom) and s.module and s.level == 0:
            for a in s.names:
                out[a.asname or a.name] = (s.module, a.name)
    return out


def node_of(source: str, qualname: str) -> ast.stmt | None:
    """The ast node of `qualname` (positions kept, for compiling with the file's line numbers)."""
    return find(ast.parse(source), qualname)
