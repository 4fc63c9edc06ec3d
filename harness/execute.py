"""Exec the units `program.plan()` found in one release's sources, in namespaces that resolve
every free name as the plan says. Needs torch (and whatever the units import for real).

    rel = load_release("0.20.1", src_root)   # rel.ns[module path], rel.methods["C.m"], rel.attrs["C.attr"]
"""

from __future__ import annotations
import __future__

import ast
import importlib
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

from harness.program import PROGRAM, Plan, plan

FLAGS = __future__.annotations.compiler_flag


@dataclass
class Release:
    version: str
    src: Path
    plan: Plan
    ns: dict[str, dict] = field(default_factory=dict)
    methods: dict[str, object] = field(default_factory=dict)
    attrs: dict[str, object] = field(default_factory=dict)

    @property
    def has_final_layernorm(self) -> bool:
        """The release's load_weights reads `self.vision_final_layernorm` (0.32+)."""
        return "vision_final_layernorm" in self.methods["NemotronH_Nano_VL_V2.load_weights"].__code__.co_names

    def has(self, qual: str) -> bool:
        return qual in self.methods or qual in self.attrs or any(qual in n for n in self.ns.values())

    def top(self, module: str, name: str):
        return self.ns[module][name]


def _compile(node: ast.stmt, filename: str):
    return compile(ast.Module(body=[node], type_ignores=[]), filename, "exec", flags=FLAGS, dont_inherit=True)


def load_release(version: str, src: Path | str, stubs: dict[str, object], program=PROGRAM) -> Release:
    src = Path(src)
    p = plan(src, program, frozenset(stubs))
    if p.unresolved:
        raise RuntimeError(f"{version}: unresolved names {p.unresolved}")
    rel = Release(version, src, p)
    tag = "harness_vllm_" + version.replace(".", "_")
    for mp in p.modules:
        modname = tag + "." + mp.path.removesuffix(".py").replace("/", ".")
        mod = types.ModuleType(modname)
        sys.modules[modname] = mod
        ns = mod.__dict__
        ns["__file__"] = str(src / mp.path)
        for name, (how, detail) in mp.resolve.items():
            if how == "stub":
                ns[name] = stubs[name]
            elif how == "unit":
                other, attr = detail
                ns[name] = rel.ns[other][attr]
            elif how == "import":
                mod_name, attr = detail
                m = importlib.import_module(mod_name)
                ns[name] = m if attr is None else getattr(m, attr)
        filename = str(src / mp.path)
        for u in mp.units:
            code = _compile(u.node, filename)
            if u.kind == "top":
                exec(code, ns)
            else:
                local: dict = {}
                exec(code, ns, local)
                (value,) = local.values()
                (rel.methods if u.kind == "method" else rel.attrs)[u.qualname] = value
        rel.ns[mp.path] = ns
    return rel


def rebind(rel: Release, name: str, value) -> None:
    """Replace a top-level name in every module namespace that has it (e.g. wrap
    `default_weight_loader` everywhere it was imported)."""
    for ns in rel.ns.values():
        if name in ns:
            ns[name] = value
