"""Pure: which parts of a vLLM release's source the harness executes, and where every name they
read comes from. No torch, no exec: `plan()` returns what `execute.load_release()` runs.

A unit is a qualname in a module file of the release:
  "f" / "C" / "CONST"   a top-level def, class or assignment, exec'd into the module's namespace;
  "C.m"                 a method, compiled alone (its own line numbers) and bound by the harness to
                        its stand-in class (see skeleton.py);
  "C.attr"              a class attribute (an assignment in C's body), evaluated in the namespace.
A trailing "?" marks a unit that some releases lack.

Every free name of a unit is resolved, in this order:
  1. the harness's stand-ins (`stubs`: names that cannot be imported without vLLM, e.g. `logger`,
     `current_platform`, `is_pp_missing_parameter`, `BaseModelLoader`);
  2. a top-level def/assignment of the same module (included, transitively);
  3. the module's own import of it: from `vllm.*`, the unit of that name in another module of the
     program; from any other package, the real import (torch, itertools, runai_model_streamer,
     transformers, safetensors, ...);
  anything else is reported as unresolved (the run refuses to start).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

from harness.extract import find, free_names

M = "vllm/model_executor/models/"
L = "vllm/model_executor/model_loader/"

PROGRAM: list[tuple[str, list[str]]] = [
    ("vllm/config/multimodal.py", ["MultiModalConfig.get_limit_per_prompt"]),
    ("vllm/transformers_utils/runai_utils.py", ["list_safetensors", "is_runai_obj_uri"]),
    (
        L + "weight_utils.py",
        ["default_weight_loader", "maybe_remap_kv_scale_name", "runai_safetensors_weights_iterator", "filter_safetensors_files_by_weight_name?"],
    ),
    (M + "utils.py", ["WeightsMapper", "AutoWeightsLoader", "maybe_prefix"]),
    (
        "vllm/model_executor/layers/linear.py",
        [
            "QKVParallelLinear.load_weights?",
            "QKVParallelLinear.validate_shard_id?",
            "MergedColumnParallelLinear.load_weights?",
            "MergedColumnParallelLinear.validate_shard_id?",
        ],
    ),
    (L + "runai_streamer_loader.py", ["RunaiModelStreamerLoader", "_filter_remote_weights?"]),
    ("vllm/transformers_utils/configs/parakeet.py", ["ParakeetConfig"]),
    (
        M + "nemotron_h.py",
        [
            "NemotronHForCausalLM.hf_to_vllm_mapper",
            "NemotronHForCausalLM.load_weights",
            "NemotronHModel.load_weights?",
            "NemotronHModel.get_expert_mapping",
            "NemotronHModel._get_max_n_routed_experts",
        ],
    ),
    (M + "radio.py", ["RadioModel.load_weights"]),
    (M + "parakeet.py", ["ParakeetProjection", "ProjectedParakeet"]),
    (M + "nano_nemotron_vl.py", ["NemotronH_Nano_VL_V2.load_weights"]),
]

# Names the harness provides itself (see stubs.py for what each stands for). A module's own
# definition of one of these is not used.
STUB_NAMES = frozenset(
    {
        "logger",
        "init_logger",
        "current_platform",
        "enable_tqdm",
        "is_pp_missing_parameter",
        "BaseModelLoader",
        "get_pp_group",
        "get_world_group",
        "download_weights_from_hf",
        "download_safetensors_index_file_from_hf",
        "resolve_revision",
        "runai_pull_files",
        "_get_remote_checkpoint_keys",
        "support_quantized_model_reload_from_hp_weights",
        "PPMissingLayer",
        "StageMissingLayer",
        "RMSNorm",
        "ReLUSquaredActivation",
        "SafetensorsStreamer",
        "fused_moe_make_expert_params_mapping",
        "envs",
        "instrument",
        "VocabParallelEmbedding",
        "ParallelLMHead",
    }
)

STDLIB_OR_THIRD_PARTY_OK = ("vllm",)  # a `from vllm... import` is never imported for real


@dataclass
class Unit:
    module: str
    qualname: str
    kind: str  # "top" | "method" | "attr"
    node: ast.stmt
    auto: bool = False  # included because another unit of the module reads it


@dataclass
class ModulePlan:
    path: str
    units: list[Unit] = field(default_factory=list)
    resolve: dict[str, tuple[str, object]] = field(default_factory=dict)  # free name -> (how, detail)
    missing_units: list[str] = field(default_factory=list)  # optional units this release lacks


@dataclass
class Plan:
    src: Path
    modules: list[ModulePlan]

    @property
    def unresolved(self) -> dict[str, list[str]]:
        return {m.path: sorted(n for n, (how, _) in m.resolve.items() if how == "unresolved") for m in self.modules if any(h == "unresolved" for h, _ in m.resolve.values())}

    def units(self) -> list[Unit]:
        return [u for m in self.modules for u in m.units]


def _top_level(tree: ast.Module) -> dict[str, ast.stmt]:
    out: dict[str, ast.stmt] = {}
    for s in tree.body:
        if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[s.name] = s
        elif isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name):
            out[s.targets[0].id] = s
        elif isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.value is not None:
            out[s.target.id] = s
    return out


def _imports(tree: ast.Module) -> dict[str, tuple[str, str | None]]:
    """Top-level imports, including those inside module-level try/if blocks (the optional
    `from runai_model_streamer import ...`)."""
    out: dict[str, tuple[str, str | None]] = {}

    def visit(stmts):
        for s in stmts:
            if isinstance(s, ast.Import):
                for a in s.names:
                    out[a.asname or a.name.split(".")[0]] = (a.name if a.asname else a.name.split(".")[0], None)
            elif isinstance(s, ast.ImportFrom) and s.module and s.level == 0:
                for a in s.names:
                    out.setdefault(a.asname or a.name, (s.module, a.name))
            elif isinstance(s, ast.Try):
                visit(s.body)
            elif isinstance(s, ast.If):
                visit(s.body)
                visit(s.orelse)

    visit(tree.body)
    return out


def plan(src: Path | str, program=PROGRAM, stub_names=STUB_NAMES) -> Plan:
    """The units of `program` found in the release sources under `src` (src/<version>), and how
    each free name resolves."""
    src = Path(src)
    provided: dict[str, dict[str, str]] = {}  # module path -> {top-level unit name: qualname}
    modules: list[ModulePlan] = []
    for path, quals in program:
        mp = ModulePlan(path)
        text = (src / path).read_text()
        tree = ast.parse(text)
        top = _top_level(tree)
        imports = _imports(tree)
        for q in quals:
            optional = q.endswith("?")
            q = q.rstrip("?")
            node = find(tree, q)
            if node is None:
                if optional:
                    mp.missing_units.append(q)
                    continue
                raise LookupError(f"{src.name}: {path} has no {q}")
            kind = "top" if "." not in q else ("attr" if isinstance(node, (ast.Assign, ast.AnnAssign)) else "method")
            mp.units.append(Unit(path, q, kind, node))
        # transitive closure over the module's own top-level names
        seen = {u.qualname for u in mp.units if u.kind == "top"}
        work = list(mp.units)
        while work:
            u = work.pop()
            for n in sorted(free_names(u.node)):
                if n in stub_names or n in seen or n in imports:
                    continue
                if n in top:
                    seen.add(n)
                    nu = Unit(path, n, "top", top[n], auto=True)
                    mp.units.append(nu)
                    work.append(nu)
        # keep the file's order for top-level units (definitions before use at class-creation time)
        order = {id(s): i for i, s in enumerate(tree.body)}
        mp.units.sort(key=lambda u: (u.kind != "top", order.get(id(u.node), 1 << 30)))
        names = set()
        for u in mp.units:
            names |= free_names(u.node)
        own = {u.qualname for u in mp.units if u.kind == "top"}
        for n in sorted(names - own):
            if n in stub_names:
                mp.resolve[n] = ("stub", n)
            elif n in imports:
                mod, attr = imports[n]
                if mod.split(".")[0] == "vllm":
                    target = None
                    for other, units in provided.items():
                        if attr in units and other.removesuffix(".py").replace("/", ".") == mod:
                            target = (other, attr)
                    # vllm re-exports (`from vllm.model_executor.models.utils import X` via a package)
                    if target is None:
                        for other, units in provided.items():
                            if attr in units:
                                target = (other, attr)
                    mp.resolve[n] = ("unit", target) if target else ("unresolved", f"from {mod} import {attr}")
                else:
                    mp.resolve[n] = ("import", (mod, attr))
            else:
                mp.resolve[n] = ("unresolved", None)
        provided[path] = {u.qualname: u.qualname for u in mp.units if u.kind == "top"}
        modules.append(mp)
    return Plan(src, modules)
