"""How vLLM's Nemotron Nano VL `load_weights` routes checkpoint names, and what its sub-loaders skip.

The predicates are those of `NemotronH_Nano_VL_V2.load_weights` (unchanged by vLLM PR 42244); the
skip rules are those of the RADIO, Parakeet and NemotronH sub-loaders. A name no predicate claims is
dropped silently by vLLM; nemoverify reports it as `unclaimed` so that the user sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

Component = Literal["language_model", "mlp1", "vision", "sound", "unclaimed"]
COMPONENTS: tuple[Component, ...] = ("language_model", "mlp1", "vision", "sound", "unclaimed")
MULTIMODAL: frozenset[Component] = frozenset({"mlp1", "vision", "sound"})


@dataclass(frozen=True)
class Route:
    component: Component
    handed_on: str  # the name the component's loader receives
    skip: str | None = None  # why the component's own loader drops it on purpose, if it does


@cache  # both passes route every name; a checkpoint has at most tens of thousands
def route(name: str) -> Route:
    """Route one checkpoint name as vLLM does (first matching predicate wins, in vLLM's order)."""
    if name.startswith("language_model"):
        handed_on = name.partition(".")[2]
        skip = "NemotronH drops multi-token-prediction weights" if handed_on.startswith("mtp.") else None
        return Route("language_model", handed_on, skip)
    if name.startswith("mlp1"):
        return Route("mlp1", name.partition(".")[2])
    if name.startswith("vision_model.radio_model."):
        handed_on = name[len("vision_model.") :]
        return Route("vision", handed_on, _radio_skip(handed_on))
    if name.startswith("sound"):
        skip = (
            "Parakeet computes its feature extractor, it loads no weights for it"
            if name.startswith("sound_encoder.encoder.feature_extractor.")
            else None
        )
        return Route("sound", name, skip)
    return Route("unclaimed", name, "no component claims this name: vLLM drops it silently")


def _radio_skip(handed_on: str) -> str | None:
    parts = handed_on.split(".")
    if handed_on == "radio_model.summary_idxs":
        return "RADIO skips summary_idxs"
    if handed_on.startswith("radio_model.input_conditioner."):
        return "RADIO recomputes its input conditioner"
    if "ls1" in parts or "ls2" in parts:
        return "RADIO skips layer-scale weights"
    return None
