"""How vLLM's Nemotron Nano VL `load_weights` routes checkpoint names, and what its sub-loaders do
with them.

The four prefix predicates (`language_model`, `mlp1`, `vision_model.radio_model.`, `sound`, first
match wins) are the same in every release nemoverify knows; vLLM 0.32 added one more route, the
vision projector's final layernorm, taken only when the language model has MTP layers. The sub-loader
rules (RADIO, Parakeet, NemotronH) are unchanged from 0.20 to 0.33. A name no predicate claims is
dropped silently by vLLM; nemoverify reports it as `unclaimed` so that the user sees it.
"""

from __future__ import annotations

import re
from functools import cache
from itertools import repeat
from typing import Literal, NamedTuple

Component = Literal["language_model", "mlp1", "vision", "sound", "unclaimed"]
COMPONENTS: tuple[Component, ...] = ("language_model", "mlp1", "vision", "sound", "unclaimed")
MULTIMODAL: frozenset[Component] = frozenset({"mlp1", "vision", "sound"})

UNCLAIMED = "no component claims this name: vLLM drops it silently"
# vLLM 0.32+: loaded inline (copied into its parameter inside the routing loop) when
# num_nextn_predict_layers > 0 (text_config or llm_config); dropped silently before 0.32 or without MTP layers.
FINAL_LAYERNORM = ("vision_projector.vision_final_layernorm.weight", "vision_projector.vision_final_layernorm.bias")

# mlp1 (RMSNorm, Linear, activation, Linear; no biases): load_weights looks the rest of an `mlp1.`
# name up in `dict(self.mlp1.named_parameters())`, so any other name is a KeyError that fails the load.
MLP1_PARAMETERS = frozenset({"0.weight", "1.weight", "3.weight"})
MLP1_UNKNOWN = "vLLM looks mlp1 weights up in mlp1's parameters (0.weight, 1.weight, 3.weight): KeyError, the load fails"

# The Parakeet encoder's weights, by the names the Omni checkpoints carry. Its loader raises
# ValueError on any name that is neither a parameter nor a buffer, which fails the whole load.
_PARAKEET = re.compile(
    r"sound_encoder\.encoder\.(?:"
    r"subsampling\.(?:layers\.\d+|linear)\.(?:weight|bias)"
    r"|layers\.\d+\.(?:"
    r"feed_forward[12]\.linear[12]\.(?:weight|bias)"
    r"|self_attn\.(?:(?:q|k|v|o|relative_k)_proj\.(?:weight|bias)|bias_[uv])"
    r"|conv\.(?:(?:pointwise_conv1|depthwise_conv|pointwise_conv2)\.(?:weight|bias)"
    r"|norm\.(?:weight|bias|running_mean|running_var|num_batches_tracked))"
    r"|norm_\w+\.(?:weight|bias)"
    r"))"
)
# The projection (`sound_projection.X`, or `sound_encoder.projection.X`, both `projection.X`): an
# RMSNorm and two linears, whose biases exist when the sound config's projection_bias is set (not
# read here: a bias is taken as loadable).
_PARAKEET_PROJECTION = re.compile(r"norm\.weight|linear[12]\.(?:weight|bias)")
PARAKEET_UNKNOWN = "vLLM's Parakeet loader raises ValueError on this unknown sound weight: the load fails"
_ROTARY_CACHE = re.compile(r"(?:^|\.)rotary_emb\.(?:inv_freq|cos_cached|sin_cached)$")


class Route(NamedTuple):  # a tuple: made once per name, twice as fast to build as a frozen dataclass
    component: Component
    handed_on: str  # the name the component's loader receives
    skip: str | None = None  # why the component's own loader drops it, if it does
    raises: str | None = None  # vLLM raises on this name: the load fails
    inline: bool = False  # copied into its parameter inside the routing loop (never retained)


@cache  # every pass routes every name; a checkpoint has at most tens of thousands
def route(name: str, final_layernorm: bool = False) -> Route:
    """Route one checkpoint name as vLLM does (first matching predicate wins, in vLLM's order).
    `final_layernorm`: vLLM 0.32+ on a model with MTP layers."""
    if name.startswith("language_model"):
        handed_on = name.partition(".")[2]
        return Route("language_model", handed_on, _nemotron_h_skip(handed_on))
    if name.startswith("mlp1"):
        handed_on = name.partition(".")[2]
        return Route("mlp1", handed_on, raises=None if handed_on in MLP1_PARAMETERS else MLP1_UNKNOWN)
    if name.startswith("vision_model.radio_model."):
        handed_on = name[len("vision_model.") :]
        return Route("vision", handed_on, _radio_skip(handed_on))
    if name.startswith("sound"):
        return _parakeet(name)
    if final_layernorm and name in FINAL_LAYERNORM:
        return Route("mlp1", name, inline=True)
    return Route("unclaimed", name, UNCLAIMED)


def loads_into(name: str, r: Route) -> str:
    """The name the component's loader resolves to a parameter. Two checkpoint names with the same one
    (the predicates match prefixes: `mlp1_old.0.weight` is handed on as `0.weight`; Parakeet maps
    `sound_projection.X` and `sound_encoder.projection.X` both to `projection.X`) load into one
    parameter, which keeps whichever is loaded last."""
    if r.component == "sound" and name.startswith("sound_projection."):
        return "projection." + name[len("sound_projection.") :]
    if r.component == "sound" and name.startswith("sound_encoder."):
        return name[len("sound_encoder.") :]
    return r.handed_on


# Names that can share a parameter with another: a first dotted part other than the predicate's own
# word (`language_modelX.`, `mlp1_old.`), or Parakeet's second path to its projection.
_OWN_PREFIXES = ("language_model.", "mlp1.", "vision_model.", "sound_encoder.", "sound_projection.", "vision_projector.")


_PARAKEET_SECOND_PATH = "sound_encoder.projection."


def may_share_a_parameter(names: list[str]) -> bool:
    """Whether any of `names` could load into another's parameter; two C-level passes, no routing
    (25,000 names: the common answer, no, costs about a millisecond)."""
    return not all(map(str.startswith, names, repeat(_OWN_PREFIXES))) or any(
        map(str.startswith, names, repeat(_PARAKEET_SECOND_PATH))
    )


def _nemotron_h_skip(handed_on: str) -> str | None:
    if handed_on.startswith("mtp"):
        return "NemotronH drops multi-token-prediction weights (mtp*)"
    if "rotary_emb." in handed_on and _ROTARY_CACHE.search(handed_on):  # the regex only where it can match
        return "NemotronH drops rotary-embedding caches"
    return None


def _radio_skip(handed_on: str) -> str | None:
    parts = handed_on.split(".")
    if handed_on == "radio_model.summary_idxs":
        return "RADIO skips summary_idxs"
    if handed_on.startswith("radio_model.input_conditioner."):
        return "RADIO recomputes its input conditioner"
    if "ls1" in parts or "ls2" in parts:
        return "RADIO skips layer-scale weights"
    if not handed_on.startswith(("radio_model.model.patch_generator.", "radio_model.model.blocks.")):
        return "RADIO maps only model.patch_generator.* and model.blocks.*: dropped silently"
    return None


def _parakeet(name: str) -> Route:
    if name.startswith("sound_encoder.encoder.feature_extractor."):
        return Route("sound", name, "Parakeet computes its feature extractor, it loads no weights for it")
    for prefix in ("sound_projection.", "sound_encoder.projection."):
        if name.startswith(prefix):
            known = _PARAKEET_PROJECTION.fullmatch(name, len(prefix))
            return Route("sound", name, raises=None if known else PARAKEET_UNKNOWN)
    if not name.startswith("sound_encoder."):
        return Route("sound", name, "Parakeet loads only sound_encoder.* and sound_projection.*: dropped silently")
    return Route("sound", name, raises=None if _PARAKEET.fullmatch(name) else PARAKEET_UNKNOWN)
