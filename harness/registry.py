"""Pure: which model class a release's registry builds for config.json's `architectures`.

Reads the release's registry.py dict literals (`_TEXT_GENERATION_MODELS`, `_MULTIMODAL_MODELS`,
... merged into `_VLLM_MODELS` as the file does) and applies `_ModelRegistry.resolve_model_cls`'s
rule for model_impl="auto" (identical 0.20.0-0.33.0): the first entry, in list order, that is in
the registry (`_normalize_arch` returns a registered name unchanged; its suffix conversions only
apply to *ForSequenceClassification-style names); if none is, the Transformers backend for
architectures[0]. Assumes `_try_load_model_cls` succeeds for a registered entry.
"""

from __future__ import annotations

import ast
from pathlib import Path


def registry_models(src: Path | str) -> dict[str, tuple[str, str]]:
    text = (Path(src) / "vllm/model_executor/models/registry.py").read_text()
    ns: dict = {}
    for s in ast.parse(text).body:
        tgt = s.target if isinstance(s, ast.AnnAssign) else (s.targets[0] if isinstance(s, ast.Assign) and len(s.targets) == 1 else None)
        if isinstance(tgt, ast.Name) and tgt.id.startswith("_") and tgt.id.endswith("_MODELS") and s.value is not None:
            try:
                ns[tgt.id] = eval(compile(ast.Expression(s.value), "registry", "eval"), {"__builtins__": {}}, ns)  # dict literals only
            except Exception:
                continue
    return ns.get("_VLLM_MODELS", {})


def resolve(src: Path | str, architectures: list[str]) -> dict:
    models = registry_models(src)
    for arch in architectures:
        if arch in models:
            mod, cls = models[arch]
            return {"arch": arch, "module": mod, "class": cls, "how": "first registered entry"}
    return {"arch": architectures[0] if architectures else None, "module": None, "class": "TransformersForCausalLM (backend)", "how": "no entry registered: Transformers backend"}
