"""nemoverify/deployment/fingerprints.json, from every known release's wheel: what nemoverify matches
an installed vLLM's code against (nemoverify.deployment.installed).

    python -m harness fingerprints [--out FILE] [--cache DIR]

The digests are computed by nemoverify's own `installed.find` and `installed.fingerprint`, over the
same files and with the same first-module-that-defines-it rule as `installed.recognise`, so the
table and the reader cannot drift apart. Pure Python (no torch); fetches missing members by range
requests into the cache.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

from harness.fetch import ensure_sources
from harness.paths import NEMOVERIFY_SRC, known_releases, nemoverify_importable
from harness.registry import registry_models

M = "vllm/model_executor/models/"
L = "vllm/model_executor/model_loader/"
FM = "vllm/model_executor/layers/fused_moe/"
REGISTRY = M + "registry.py"
NANO_VL = "NemotronH_Nano_VL_V2"  # the class whose load path nemoverify replays

# The functions nemoverify recognises a release by: its release rows' load path (docs/deployments.md)
# and the MoE expert loaders. (qualname, the module files it may live in, searched in order.)
FUNCTIONS: list[tuple[str, list[str]]] = [
    ("NemotronH_Nano_VL_V2.__init__", [M + "nano_nemotron_vl.py"]),
    ("NemotronH_Nano_VL_V2.load_weights", [M + "nano_nemotron_vl.py"]),
    ("NemotronHForCausalLM.hf_to_vllm_mapper", [M + "nemotron_h.py"]),
    ("NemotronHForCausalLM.load_weights", [M + "nemotron_h.py"]),
    ("NemotronHModel.get_expert_mapping", [M + "nemotron_h.py"]),
    ("NemotronHModel.load_weights", [M + "nemotron_h.py"]),
    ("RadioModel.load_weights", [M + "radio.py"]),
    ("ProjectedParakeet.load_weights", [M + "parakeet.py"]),
    ("ProjectedParakeet._can_skip_missing_named_param", [M + "parakeet.py"]),
    ("ParakeetConfig.from_hf_config", ["vllm/transformers_utils/configs/parakeet.py"]),
    ("AutoWeightsLoader", [M + "utils.py"]),
    ("WeightsMapper", [M + "utils.py"]),
    ("QKVParallelLinear.load_weights", ["vllm/model_executor/layers/linear.py"]),
    ("QKVParallelLinear.weight_loader", ["vllm/model_executor/layers/linear.py"]),
    ("default_weight_loader", [L + "weight_utils.py"]),
    ("maybe_remap_kv_scale_name", [L + "weight_utils.py"]),
    ("runai_safetensors_weights_iterator", [L + "weight_utils.py"]),
    ("RunaiModelStreamerLoader", [L + "runai_streamer_loader.py"]),
    ("list_safetensors", ["vllm/transformers_utils/runai_utils.py"]),
    ("fused_moe_make_expert_params_mapping", [FM + "layer.py"]),
    ("FusedMoE.make_expert_params_mapping", [FM + "layer.py"]),
    ("RoutedExperts.build_expert_params_mapping", [FM + "routed_experts.py"]),
    ("RoutedExperts.get_expert_mapping", [FM + "routed_experts.py"]),
    ("RoutedExperts.load_weights", [FM + "routed_experts.py"]),
    ("RoutedExperts.make_expert_params_mapping", [FM + "routed_experts.py"]),
    ("RoutedExperts.weight_loader", [FM + "routed_experts.py"]),
]
MEMBERS = sorted({m for _, modules in FUNCTIONS for m in modules} | {REGISTRY})


def digest_in(src: Path, qualname: str, modules: list[str]) -> str | None:
    """nemoverify's fingerprint of `qualname` in the first of `modules` (under `src`, the directory
    holding vllm/) that defines it; None where none does."""
    nemoverify_importable()
    from nemoverify.deployment.installed import find, fingerprint

    for module in modules:
        path = src / module
        if not path.exists():
            continue
        node = find(ast.parse(path.read_text(encoding="utf-8")), qualname)
        if node is not None:
            return fingerprint(node)
    return None


def architectures(src: Path) -> list[str]:
    """The `architectures` names the release's registry sends to the Nano VL class."""
    return sorted(arch for arch, (_, cls) in registry_models(src).items() if cls == NANO_VL)


def build(sources: dict[str, Path]) -> dict:
    """The table, in the format nemoverify.deployment.installed reads, from {release: CACHE/src/<release>}."""
    releases = list(sources)
    return {
        "releases": releases,
        "functions": {
            qualname: {"modules": modules, "sha256": {r: digest_in(sources[r], qualname, modules) for r in releases}}
            for qualname, modules in FUNCTIONS
        },
        "architectures": {r: architectures(sources[r]) for r in releases},
    }


def ranges(sha256: dict[str, str | None]) -> str:
    """"0.20.0-0.25.1 / 0.26.0-0.33.0 (absent)": the runs of releases over which the code is the same."""
    runs: list[list] = []
    for release, digest in sha256.items():
        if runs and runs[-1][2] == digest:
            runs[-1][1] = release
        else:
            runs.append([release, release, digest])
    return " / ".join((a if a == b else f"{a}-{b}") + ("" if d else " (absent)") for a, b, d in runs)


def write(out: Path | None = None, cache: Path | None = None) -> Path:
    out = Path(out or NEMOVERIFY_SRC / "nemoverify" / "deployment" / "fingerprints.json")
    table = build({r: ensure_sources(r, cache, MEMBERS) for r in known_releases()})
    # Byte for byte as the committed file: sorted keys, one-space indent, no trailing newline.
    out.write_text(json.dumps(table, indent=1, sort_keys=True), encoding="utf-8")
    for qualname, entry in sorted(table["functions"].items()):
        print(f"{qualname:50s} {ranges(entry['sha256'])}")
    return out
