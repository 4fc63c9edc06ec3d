"""Where vLLM's Nemotron Nano VL `load_weights` sends each checkpoint name, release by release: the
component, the parameter it is copied into (its destination), or why it is dropped or raised on.

Read from each release's code (`NemotronH_Nano_VL_V2.load_weights`, `NemotronHForCausalLM`'s name
mapper and loader, `RadioModel.load_weights`, `ProjectedParakeet.load_weights`; docs/deployments.md
cites the lines). The four prefix predicates (`language_model`, `mlp1`, `vision_model.radio_model.`,
`sound`, first match wins, plain `startswith`) are the same in every release; 0.32 adds a fifth, the
vision projector's final layernorm. A name no predicate claims is dropped silently by vLLM;
nemoverify reports it as `unclaimed`. Two names with one destination load into one parameter: the
one loaded last wins, silently (`shared-parameter`).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Literal, NamedTuple

from nemoverify.deployment.releases import FinalLayernormRouting, LanguageModelLoader

Component = Literal["language_model", "mlp1", "vision", "sound", "unclaimed"]
COMPONENTS: tuple[Component, ...] = ("language_model", "mlp1", "vision", "sound", "unclaimed")
MULTIMODAL: frozenset[Component] = frozenset({"mlp1", "vision", "sound"})

UNCLAIMED = "no component claims this name: vLLM drops it silently"



class Routing(NamedTuple):
    """What decides where a name goes: the vLLM release's code and the model's config."""

    language_model: LanguageModelLoader = "0.29"
    ignores_unexpected_bias: bool = True  # 0.25+: AutoWeightsLoader ignores a bias with no parameter
    final_layernorm: FinalLayernormRouting = "not routed"  # 0.32+: routed, and asserted against its parameters
    convolution_bias: bool = True  # sound_config.convolution_bias; false: Parakeet skips the conv biases
    video_embedder: bool = False  # vision_config.video_temporal_patch_size > 1: RADIO builds a video embedder


class Route(NamedTuple):  # a tuple: made once per name, twice as fast to build as a frozen dataclass
    component: Component
    handed_on: str  # the name the component's loader receives
    skip: str | None = None  # why vLLM drops it (no parameter receives it)
    raises: str | None = None  # vLLM raises on this name: the load fails
    inline: bool = False  # copied into its parameter inside the routing loop (never retained)
    destination: str | None = None  # the parameter (and shard) it is copied into, as vLLM names it


# mlp1 (RMSNorm, Linear, activation, Linear; no biases): load_weights looks the rest of an `mlp1`
# name up in `dict(self.mlp1.named_parameters())`, so any other name is a KeyError that fails the load.
MLP1_PARAMETERS = frozenset({"0.weight", "1.weight", "3.weight"})
MLP1_UNKNOWN = "vLLM looks mlp1 weights up in mlp1's parameters (0.weight, 1.weight, 3.weight): KeyError, the load fails"

FINAL_LAYERNORM_PREFIX = "vision_projector.vision_final_layernorm."
FINAL_LAYERNORM = (FINAL_LAYERNORM_PREFIX + "weight", FINAL_LAYERNORM_PREFIX + "bias")
FINAL_LAYERNORM_UNKNOWN = (
    "vLLM 0.32+ asserts that every vision_projector.vision_final_layernorm name is a parameter of the vision "
    "projector's final LayerNorm (weight, bias), which exists only when the language model has MTP layers: "
    "AssertionError, the load fails"
)

# The Parakeet encoder's parameters and buffers (transformers' ParakeetEncoder, with the
# attention_bias=False vLLM forces: no biases on the attention projections or the feed-forward
# linears). Its loader raises ValueError on any other name, which fails the whole load.
_PARAKEET = re.compile(
    r"encoder\.(?:"
    r"subsampling\.(?:layers\.\d+|linear)\.(?:weight|bias)"
    r"|encode_positions\.inv_freq"
    r"|layers\.\d+\.(?:"
    r"feed_forward[12]\.linear[12]\.weight"
    r"|self_attn\.(?:(?:q|k|v|o|relative_k)_proj\.weight|bias_[uv])"
    r"|conv\.(?:(?:pointwise_conv1|depthwise_conv|pointwise_conv2)\.(?:weight|bias)"
    r"|norm\.(?:weight|bias|running_mean|running_var|num_batches_tracked))"
    r"|norm_\w+\.(?:weight|bias)"
    r"))"
)
_CONVOLUTION_BIAS = (".conv.pointwise_conv1.bias", ".conv.depthwise_conv.bias", ".conv.pointwise_conv2.bias")
# The projection (`sound_projection.X`, or `sound_encoder.projection.X`, both `projection.X`): an
# RMSNorm and two linears, whose biases exist when the sound config's projection_bias is set (not
# read here: a bias is taken as loadable).
_PARAKEET_PROJECTION = re.compile(r"projection\.(?:norm\.weight|linear[12]\.(?:weight|bias))")
PARAKEET_UNKNOWN = "vLLM's Parakeet loader raises ValueError on this unknown sound weight: the load fails"

# NemotronH drops a name that *contains* any of these (AutoWeightsLoader's skip list to 0.28, its
# mapper from 0.29), tested on the name after the mapper's substring renames.
ROTARY_CACHES = ("rotary_pos_emb.inv_freq", "rotary_emb.inv_freq", "rotary_emb.cos_cached", "rotary_emb.sin_cached")
_STACKED = ((".q_proj", "q"), (".k_proj", "k"), (".v_proj", "v"))
LANGUAGE_MODEL_UNKNOWN = (
    "vLLM's NemotronH loader finds no module or parameter of this name (its top level holds model.* and "
    "lm_head.weight): ValueError, the load fails"
)


@cache  # every pass routes every name; a checkpoint has at most tens of thousands
def route(name: str, routing: Routing = Routing()) -> Route:
    """Route one checkpoint name as the release does (first matching predicate wins, in vLLM's order)."""
    if name.startswith("language_model"):
        return _language_model(name.partition(".")[2], routing)
    if name.startswith("mlp1"):
        handed_on = name.partition(".")[2]
        if handed_on in MLP1_PARAMETERS:
            return Route("mlp1", handed_on, destination=handed_on)
        return Route("mlp1", handed_on, raises=MLP1_UNKNOWN)
    if name.startswith("vision_model.radio_model."):
        return _radio(name[len("vision_model.") :], routing.video_embedder)
    if name.startswith("sound"):
        return _parakeet(name, routing.convolution_bias)
    if routing.final_layernorm != "not routed" and name.startswith(FINAL_LAYERNORM_PREFIX):
        parameter = name[len(FINAL_LAYERNORM_PREFIX) :]
        if routing.final_layernorm == "with MTP" and parameter in ("weight", "bias"):
            return Route("mlp1", name, inline=True, destination=f"vision_final_layernorm.{parameter}")
        return Route("mlp1", name, raises=FINAL_LAYERNORM_UNKNOWN)
    return Route("unclaimed", name, UNCLAIMED)


def _language_model(handed_on: str, routing: Routing) -> Route:
    """NemotronHForCausalLM's mapper, then its loader: renames before any lookup, so two names can
    reach one parameter (backbone.X and model.X; A_log and A; embeddings and embed_tokens)."""
    name, shard = handed_on, ""
    for old, new in (("A_log", "A"), ("embeddings", "embed_tokens")):  # first occurrence, anywhere
        if old in name:
            name = name.replace(old, new, 1)
    if routing.language_model != "0.20":
        for old, letter in _STACKED:  # the mapper's stacked shards, each tried (no break)
            if old in name:
                name, shard = name.replace(old, ".qkv_proj", 1), letter
    if name.startswith("backbone"):
        name = "model" + name[len("backbone") :]
    if name.startswith("mtp"):
        return Route("language_model", handed_on, "NemotronH drops multi-token-prediction weights (mtp*)")
    if any(cache_name in name for cache_name in ROTARY_CACHES):
        return Route("language_model", handed_on, "NemotronH drops rotary-embedding caches")
    top, _, rest = name.partition(".")
    if top == "lm_head":
        if rest == "weight":
            return Route("language_model", handed_on, destination=name)
        if rest == "bias" and routing.ignores_unexpected_bias:
            return Route("language_model", handed_on, "vLLM 0.25+ ignores a bias its layer does not have")
        return Route("language_model", handed_on, raises=LANGUAGE_MODEL_UNKNOWN)
    if top != "model" or not rest:
        return Route("language_model", handed_on, raises=LANGUAGE_MODEL_UNKNOWN)
    if routing.language_model == "0.20":  # NemotronHModel.load_weights, on the name without `model.`
        if rest.startswith("mtp."):
            return Route("language_model", handed_on, "NemotronH drops multi-token-prediction weights (mtp*)")
        for old, letter in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v")):  # substring, every occurrence
            if old in rest:
                rest, shard = rest.replace(old, "qkv_proj"), letter
                break
        name = f"model.{rest}"
    return Route("language_model", handed_on, destination=f"{name} ({shard})" if shard else name)


def _radio(handed_on: str, video_embedder: bool) -> Route:
    """RADIO's loader: only model.patch_generator.* and model.blocks.{i}.* reach a parameter, where
    the built model has one (a name without one is dropped silently)."""
    sub = handed_on[len("radio_model.") :]
    if sub == "summary_idxs":
        return Route("vision", handed_on, "RADIO skips summary_idxs")
    if sub.startswith("input_conditioner."):
        return Route("vision", handed_on, "RADIO recomputes its input conditioner")
    if sub.startswith("model.patch_generator.video_embedder.") and not video_embedder:
        return Route(
            "vision",
            handed_on,
            "RADIO builds no video embedder (vision_config.video_temporal_patch_size is not above 1): dropped silently",
        )
    if sub.startswith("model.patch_generator."):
        return Route("vision", handed_on, destination=sub)
    parts = sub.split(".")
    if sub.startswith("model.blocks.") and len(parts) >= 4:
        suffix = ".".join(parts[3:])
        if suffix in ("ls1", "ls2") or suffix.startswith(("ls1.", "ls2.")):
            return Route("vision", handed_on, "RADIO skips layer-scale weights")
        return Route("vision", handed_on, destination=f"model.encoder.layers.{parts[2]}.{suffix}")
    return Route("vision", handed_on, "RADIO maps only model.patch_generator.* and model.blocks.*: dropped silently")


def _parakeet(name: str, convolution_bias: bool) -> Route:
    if name.startswith("sound_encoder.encoder.feature_extractor."):
        return Route("sound", name, "Parakeet computes its feature extractor, it loads no weights for it")
    if name.startswith("sound_projection."):
        target = "projection." + name[len("sound_projection.") :]
    elif name.startswith("sound_encoder."):
        target = name[len("sound_encoder.") :]
    else:
        return Route("sound", name, "Parakeet loads only sound_encoder.* and sound_projection.*: dropped silently")
    if not convolution_bias and target.endswith(_CONVOLUTION_BIAS):
        return Route("sound", name, "the sound config's convolution_bias is false: Parakeet skips the convolution biases")
    if _PARAKEET_PROJECTION.fullmatch(target) or _PARAKEET.fullmatch(target):
        return Route("sound", name, destination=target)
    return Route("sound", name, raises=PARAKEET_UNKNOWN)
