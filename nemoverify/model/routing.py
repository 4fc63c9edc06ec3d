"""Where vLLM's Nemotron Nano VL `load_weights` sends each checkpoint name, release by release: the
component, the parameter it is copied into (its destination), or why it is dropped or raised on.

Read from each release's code (`NemotronH_Nano_VL_V2.load_weights`, `NemotronHForCausalLM`'s name
mapper and loader, `RadioModel.load_weights`, `ProjectedParakeet.load_weights`; docs/deployments.md
cites the lines). The four prefix predicates (`language_model`, `mlp1`, `vision_model.radio_model.`,
`sound`, first match wins, plain `startswith`) are the same in every release; 0.32 adds a fifth, the
vision projector's final layernorm. A name no predicate claims is dropped silently by vLLM;
nemoverify reports it as `unclaimed`. Two names with one destination load into one parameter: the
one loaded last wins, silently (`shared-parameter`).

Whether a name reaches a parameter at all depends on the parameters vLLM builds for the model's
config: NemotronH's (one decoder layer per character of hybrid_override_pattern) and RADIO's (one
encoder layer per ViT block of the model its vision_config names). Where the config determines them
(`LanguageModelParameters`, `VisionParameters`, derived in `replay.release_routing`), a name with no
parameter is raised on or dropped as the release does; where it does not, the name is taken as loaded,
as it always was (docs/reliability.md, "Known limits").
"""

from __future__ import annotations

import re
from functools import cache
from typing import Literal, NamedTuple, Union

from nemoverify.deployment.releases import FinalLayernormRouting, LanguageModelLoader

Component = Literal["language_model", "mlp1", "vision", "sound", "unclaimed"]
COMPONENTS: tuple[Component, ...] = ("language_model", "mlp1", "vision", "sound", "unclaimed")
MULTIMODAL: frozenset[Component] = frozenset({"mlp1", "vision", "sound"})

UNCLAIMED = "no component claims this name: vLLM drops it silently"


class LanguageModelParameters(NamedTuple):
    """What decides the parameters of vLLM's NemotronH for one config (nemotron_h.py, every release
    0.20.0-0.33.0 builds the same module tree for it). A bias flag None: config.json does not say, so
    that bias is neither expected nor refused (the name is taken as loaded)."""

    pattern: str  # hybrid_override_pattern: M Mamba, * attention, - MLP, E MoE
    use_bias: bool | None = False  # Mamba in_proj/out_proj biases
    use_conv_bias: bool | None = True  # Mamba conv1d bias
    mlp_bias: bool | None = False  # MLP up/down_proj and MoE latent projection biases
    shared_experts: bool | None = True  # MoE layers' shared_experts (n_shared_experts neither null nor 0)
    latent_moe: bool | None = False  # MoE layers' fc1/fc2_latent_proj (moe_latent_size not null)


class VisionParameters(NamedTuple):
    """What decides RADIO's parameters (radio.py, intern_vit.py; the same module tree in every release):
    `depth` encoder layers (None: not known, so block names are not checked), each with norm1/norm2
    (`norm_bias`: LayerNorm's bias; None where the norm type is neither of NORM2FN's), attn.qkv (+bias
    with `qkv_bias`), attn.q_norm/k_norm (with `qk_norm`), attn.proj, mlp.fc1, mlp.fc2 (with biases),
    ls1, ls2."""

    depth: int | None
    norm_bias: bool | None = True
    qkv_bias: bool = True
    qk_norm: bool = False


class Routing(NamedTuple):
    """What decides where a name goes: the vLLM release's code and the model's config."""

    language_model: LanguageModelLoader = "0.29"
    ignores_unexpected_bias: bool = True  # 0.25+: AutoWeightsLoader ignores a bias with no parameter
    final_layernorm: FinalLayernormRouting = "not routed"  # 0.32+: routed, and asserted against its parameters
    convolution_bias: bool = True  # sound_config.convolution_bias; false: Parakeet skips the conv biases
    video_embedder: bool = False  # vision_config.video_temporal_patch_size > 1: RADIO builds a video embedder
    # The parameters vLLM builds for this config (None: not derived; every name is taken as loaded).
    language_model_parameters: LanguageModelParameters | None = None
    vision_parameters: VisionParameters | None = None


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
# linears). Its loader raises ValueError on any other name, which fails the whole load. This pattern
# and the projection's are compiled by the first sound name (re's cache): a model without a sound
# encoder never pays for them.
_PARAKEET = (
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
_PARAKEET_PROJECTION = r"projection\.(?:norm\.weight|linear[12]\.(?:weight|bias))"
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
        return _radio(name[len("vision_model.") :], routing)
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
    if routing.language_model != "0.20" and "_proj" in name:  # (a test every stacked name passes)
        for old, letter in _STACKED:  # the mapper's stacked shards, each tried (no break)
            if old in name:
                name, shard = name.replace(old, ".qkv_proj", 1), letter
    if name.startswith("backbone"):
        name = "model" + name[len("backbone") :]
    if name.startswith("mtp"):
        return Route("language_model", handed_on, "NemotronH drops multi-token-prediction weights (mtp*)")
    if "rotary_" in name and any(cache_name in name for cache_name in ROTARY_CACHES):  # each holds "rotary_"
        return Route("language_model", handed_on, "NemotronH drops rotary-embedding caches")
    top, _, rest = name.partition(".")
    if top == "lm_head":
        if rest == "weight":
            return Route("language_model", handed_on, destination=name)
        if rest == "bias" and routing.ignores_unexpected_bias:
            return Route("language_model", handed_on, IGNORED_BIAS)
        return Route("language_model", handed_on, raises=LANGUAGE_MODEL_UNKNOWN)
    if top != "model":
        return Route("language_model", handed_on, raises=LANGUAGE_MODEL_UNKNOWN)
    parameters = routing.language_model_parameters
    if routing.language_model == "0.20":  # NemotronHModel.load_weights, on the name without `model.`
        return _nemotron_h_model(handed_on, rest, parameters)
    if not rest:
        return Route("language_model", handed_on, raises=LANGUAGE_MODEL_UNKNOWN)
    destination = f"{name} ({shard})" if shard else name
    if parameters is None:
        return Route("language_model", handed_on, destination=destination)
    if name in _parameter_names(parameters):  # nearly every name: a parameter, whichever way it is reached
        return Route("language_model", handed_on, destination=destination)
    found = _walk(_nemotron_h(parameters), name)  # 0.26+: AutoWeightsLoader walks the modules
    if found.state == "absent":
        return Route("language_model", handed_on, raises=found.why)
    if found.state == "dropped":
        return Route("language_model", handed_on, found.why)
    return Route("language_model", handed_on, destination=destination)


IGNORED_BIAS = "vLLM 0.25+ ignores a bias its layer does not have"


def _nemotron_h_model(handed_on: str, rest: str, parameters: LanguageModelParameters | None) -> Route:
    """vLLM 0.20.0-0.25.1: `NemotronHModel.load_weights` (nemotron_h.py:672 in 0.20.0) gets the name
    without `model.` and looks it up in `dict(self.named_parameters())` (parameters only): a k/v-cache
    scale name is remapped first (and dropped where the remapped name is no parameter), q/k/v_proj
    become shards of qkv_proj (substring, every occurrence; a bias that is no parameter tries the next
    shard name on the renamed name, GPTQ's `continue`), and any other name that is no parameter is a
    KeyError."""
    model = _nemotron_h(parameters).children["model"] if parameters is not None else None
    known = _parameter_names(parameters) if parameters is not None else frozenset()
    if not rest:  # `model` itself: AutoWeightsLoader hands NemotronHModel the name ""
        return Route("language_model", handed_on, raises=_key_error(""))

    def lookup(key: str) -> _State:
        if model is None:
            return "open"
        return "parameter" if "model." + key in known else _lookup(model, key)

    if model is not None and ("scale" in rest or "zero_point" in rest):
        target = _kv_scale_target(rest)
        # 0.23+ first keeps a name that is a parameter (no unquantized name with these suffixes is one)
        if target is not None and lookup(rest) != "parameter":
            if lookup(target) == "absent":
                return Route(
                    "language_model",
                    handed_on,
                    f"NemotronH remaps this k/v-cache scale name to {target!r}, which the unquantized model "
                    "lacks: dropped silently",
                )
            if lookup(target) == "parameter":  # (no unquantized model has one)
                rest = target
    if rest.startswith("mtp."):
        return Route("language_model", handed_on, "NemotronH drops multi-token-prediction weights (mtp*)")
    key, shard = rest, ""
    for old, letter in (("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v")):  # substring, every occurrence
        if old not in key:
            continue
        key = key.replace(old, "qkv_proj")
        if key.endswith(".bias") and lookup(key) == "absent":  # GPTQ's extra bias: try the next shard name
            continue
        shard = letter
        break
    if lookup(key) == "absent":
        return Route("language_model", handed_on, raises=_key_error(key))
    destination = f"model.{key}"
    return Route("language_model", handed_on, destination=f"{destination} ({shard})" if shard else destination)


def _key_error(key: str) -> str:
    return (
        f"vLLM's NemotronHModel.load_weights looks {key!r} up in the model's parameters, which have no such "
        "name: KeyError, the load fails"
    )


# maybe_remap_kv_scale_name (weight_utils.py, the same patterns 0.20.0-0.25.1): the names it remaps,
# and where to (attn_str "attn": NemotronH has no mla_attn). The patterns are compiled by the first
# name that ends in one of the suffixes (re's cache): most checkpoints have none.
_KV_SCALE_SUFFIXES = (
    ".k_scale",
    ".v_scale",
    ".q_scale",
    ".k_zero_point",
    ".v_zero_point",
    ".q_zero_point",
    ".q.scale",
    ".k_cache.scale",
    ".v_cache.scale",
)
_KV_SCALE_PATTERNS = (
    (r"\.self_attn\.([kv])_proj\.([kv])_scale$", r".self_attn.attn.\2_scale"),
    (r"\.self_attn\.qkv_proj\.([kv])_scale$", r".self_attn.attn.\1_scale"),
    (r"\.self_attn\.qkqkv_proj\.([kv])_scale$", r".self_attn.attn.\1_scale"),
    (r"\.mixer\.[kv]_proj\.([kv])_scale$", r".mixer.attn.\1_scale"),
    (r"\.self_attn\.q\.scale$", r".self_attn.attn.q_scale"),
    (r"\.self_attn\.([kv])_cache\.scale$", r".self_attn.attn.\1_scale"),
    (r"\.([qkv])_scale$", r".attn.\1_scale"),
    (r"\.([qkv])_zero_point$", r".attn.\1_zero_point"),
)


def _kv_scale_target(name: str) -> str | None:
    """The name maybe_remap_kv_scale_name looks up instead of `name` (None: it keeps `name`)."""
    if name.endswith(".kv_scale"):
        return name.replace(".kv_scale", ".attn.k_scale")
    if name.endswith(_KV_SCALE_SUFFIXES):
        for pattern, replacement in _KV_SCALE_PATTERNS:
            if re.search(pattern, name):
                return re.sub(pattern, replacement, name)
    return None


# --- NemotronH's module tree, as the release builds it for a config -------------------------------

_Leaf = Literal["parameter", "buffer", "open"]  # open: a subtree nemoverify does not model
_State = Literal["parameter", "absent", "open"]


class _Module(NamedTuple):
    children: dict[str, _Node]
    # vLLM 0.25+ linear layers with their own load_weights (MergedColumnParallelLinear,
    # QKVParallelLinear): every name under them goes there, not to AutoWeightsLoader's walk.
    self_loading: str | None = None
    # Buffers this module may have besides those listed (the attention layer's, with some kv-cache
    # settings of the deployment): an unlisted name under it is not known to be absent from 0.26.
    more_buffers: bool = False


_Node = Union[_Module, _Leaf]  # noqa: UP007  (a recursive alias: the | form is evaluated at runtime)


def _linear(bias: bool | None, self_loading: str | None = None) -> _Module:
    """A vLLM linear layer: `weight`, and `bias` where built (a bias registered as None is no parameter)."""
    children: dict[str, _Node] = {"weight": "parameter"}
    if bias is None:
        children["bias"] = "open"
    elif bias:
        children["bias"] = "parameter"
    return _Module(children, self_loading)


_WEIGHT_ONLY = _Module({"weight": "parameter"})  # RMSNorm, Mixer2RMSNormGated, VocabParallelEmbedding
# vLLM's Attention (layers/attention/attention.py, _init_kv_cache_quant): no parameters unquantized,
# four persistent buffers, which AutoWeightsLoader loads as it does parameters (0.26+ walk).
_ATTENTION = _Module({b: "buffer" for b in ("_k_scale", "_v_scale", "_q_scale", "_prob_scale")}, more_buffers=True)


@cache
def _nemotron_h(p: LanguageModelParameters) -> _Module:
    """NemotronHForCausalLM's modules and parameters (nemotron_h.py: NemotronHModel.__init__ and the
    decoder layer classes of ALL_DECODER_LAYER_TYPES, MambaMixer2, NemotronHAttention, NemotronHMLP,
    NemotronHMoE; the same names in every release 0.20.0-0.33.0 for an unquantized model)."""
    layers: dict[str, _Node] = {}
    for i, kind in enumerate(p.pattern):
        mixer: dict[str, _Node]
        if kind == "M":  # MambaMixer2 with tp 1: in_proj and conv1d are MergedColumnParallelLinear
            mixer = {
                "in_proj": _linear(p.use_bias, "MergedColumnParallelLinear"),
                "conv1d": _linear(p.use_conv_bias, "MergedColumnParallelLinear"),
                "A": "parameter",
                "D": "parameter",
                "dt_bias": "parameter",
                "norm": _WEIGHT_ONLY,
                "out_proj": _linear(p.use_bias),
            }
        elif kind == "*":  # NemotronHAttention: qkv_proj and o_proj with bias=False whatever the config
            mixer = {"qkv_proj": _linear(False, "QKVParallelLinear"), "o_proj": _linear(False), "attn": _ATTENTION}
        elif kind == "-":
            mixer = {"up_proj": _linear(p.mlp_bias), "down_proj": _linear(p.mlp_bias)}
        else:  # "E": NemotronHMoE; the routed experts (FusedMoE / RoutedExperts and their own loaders) are not modelled
            mixer = {"gate": _Module({"weight": "parameter", "e_score_correction_bias": "parameter"}), "experts": "open"}
            if p.shared_experts is None:
                mixer["shared_experts"] = "open"
            elif p.shared_experts:  # NemotronHMLP without bias
                mixer["shared_experts"] = _Module({"up_proj": _linear(False), "down_proj": _linear(False)})
            for latent in ("fc1_latent_proj", "fc2_latent_proj"):
                if p.latent_moe is None:
                    mixer[latent] = "open"
                elif p.latent_moe:
                    mixer[latent] = _linear(p.mlp_bias)
        layers[str(i)] = _Module({"mixer": _Module(mixer), "norm": _WEIGHT_ONLY})
    model = _Module({"embed_tokens": _WEIGHT_ONLY, "layers": _Module(layers), "norm_f": _WEIGHT_ONLY})
    return _Module({"model": model, "lm_head": _WEIGHT_ONLY, "logits_processor": _Module({})})


@cache
def _parameter_names(p: LanguageModelParameters) -> frozenset[str]:
    """Every parameter's full name (no buffers, no open subtree): most names are one of these."""
    names: list[str] = []

    def visit(node: _Node, prefix: str) -> None:
        if node == "parameter":
            names.append(prefix)
        elif isinstance(node, _Module):
            for part, child in node.children.items():
                visit(child, f"{prefix}.{part}" if prefix else part)

    visit(_nemotron_h(p), "")
    return frozenset(names)


def _lookup(node: _Node, key: str) -> _State:
    """Whether `key` is in the module's `named_parameters()` (parameters only, no buffers)."""
    for part in key.split("."):
        if not isinstance(node, _Module):
            return "absent"  # a name nested in a parameter
        child = node.children.get(part)
        if child == "open":
            return "open"
        if child is None or child == "buffer":
            return "absent"
        node = child
    return "parameter" if node == "parameter" else "absent"


class _Found(NamedTuple):
    state: Literal["parameter", "absent", "dropped", "open"]
    why: str = ""


def _walk(root: _Module, name: str) -> _Found:
    """AutoWeightsLoader._load_module (models/utils.py) from vLLM 0.26.0, over the module tree: a child
    module is descended into (or, where it loads its own weights, handed the rest of the name), a
    parameter or persistent buffer is loaded; any other name raises ValueError, except one that ends
    with `.bias`, which is ignored (0.25+)."""
    parts = name.split(".")
    node: _Node = root
    for i, part in enumerate(parts):
        assert isinstance(node, _Module)
        if node.self_loading is not None:
            return _self_loading(node, ".".join(parts[:i]), ".".join(parts[i:]))
        child = node.children.get(part)
        if child is None:
            if node.more_buffers and part:
                return _Found("open")
            if part == "bias" and i > 0:  # `_can_ignore_unexpected`: the qualname ends with ".bias"
                return _Found("dropped", IGNORED_BIAS)
            return _Found("absent", _no_module_or_parameter(".".join(parts[: i + 1])))
        if child == "open":
            return _Found("open")
        if child == "parameter" or child == "buffer":
            if i == len(parts) - 1:
                return _Found("parameter")
            if name.endswith(".bias"):
                return _Found("dropped", IGNORED_BIAS)
            return _Found(
                "absent",
                f"vLLM's NemotronH loader finds {'.'.join(parts[: i + 1])!r} to be a parameter, and this name nests "
                "a weight in it: ValueError, the load fails",
            )
        node = child
    assert isinstance(node, _Module)
    if node.self_loading is not None:
        return _self_loading(node, name, "")
    return _Found("absent", _no_module_or_parameter(name))


def _self_loading(layer: _Module, at: str, rest: str) -> _Found:
    """MergedColumnParallelLinear/QKVParallelLinear.load_weights (linear.py, 0.25+): `weight`, and
    `bias` (skipped where the layer has none); for any other name `getattr(self, name, self)` hands the
    layer itself to its weight loader, which fails on `param.data`."""
    if rest in layer.children:
        child = layer.children[rest]
        return _Found("open") if child == "open" else _Found("parameter")
    if rest == "bias":
        return _Found("dropped", IGNORED_BIAS)
    return _Found(
        "absent",
        f"vLLM's {layer.self_loading} {at!r} loads the names under it itself and has no parameter {rest!r}: "
        "AttributeError, the load fails",
    )


def _no_module_or_parameter(prefix: str) -> str:
    return (
        f"vLLM's NemotronH loader finds no module or parameter named {prefix!r} in the model built for this "
        "config: ValueError, the load fails"
    )


# --- RADIO --------------------------------------------------------------------------------------

# ViTPatchGenerator as RadioInternVisionModel builds it: an embedder without bias (patch_bias False),
# an absolute position embedding, a class-token module (cls_token=True), an Identity patch normalizer.
_PATCH_GENERATOR = frozenset(
    {"model.patch_generator.embedder.weight", "model.patch_generator.pos_embed", "model.patch_generator.cls_token.token"}
)
_VIDEO_EMBEDDER = "model.patch_generator.video_embedder."


def _radio(handed_on: str, routing: Routing) -> Route:
    """RADIO's loader (RadioModel.load_weights, radio.py:744 in 0.20.0): only model.patch_generator.*
    and model.blocks.{i}.* can reach a parameter, and only where the built model has one (`if vllm_key
    in params_dict`): any other name is dropped silently."""
    sub = handed_on[len("radio_model.") :]
    if sub == "summary_idxs":
        return Route("vision", handed_on, "RADIO skips summary_idxs")
    if sub.startswith("input_conditioner."):
        return Route("vision", handed_on, "RADIO recomputes its input conditioner")
    if sub.startswith(_VIDEO_EMBEDDER) and not routing.video_embedder:
        return Route(
            "vision",
            handed_on,
            "RADIO builds no video embedder (vision_config.video_temporal_patch_size is not above 1): dropped silently",
        )
    vision = routing.vision_parameters
    if sub.startswith("model.patch_generator."):
        if vision is not None and sub not in _PATCH_GENERATOR and sub != _VIDEO_EMBEDDER + "weight":
            return Route("vision", handed_on, _no_radio_parameter(sub))
        return Route("vision", handed_on, destination=sub)
    parts = sub.split(".")
    if sub.startswith("model.blocks.") and len(parts) >= 4:
        suffix = ".".join(parts[3:])
        if suffix in ("ls1", "ls2") or suffix.startswith(("ls1.", "ls2.")):
            return Route("vision", handed_on, "RADIO skips layer-scale weights")
        key = f"model.encoder.layers.{parts[2]}.{suffix}"
        if vision is not None and _radio_layer(vision, parts[2], suffix) == "absent":
            return Route("vision", handed_on, _no_radio_parameter(key))
        return Route("vision", handed_on, destination=key)
    return Route("vision", handed_on, "RADIO maps only model.patch_generator.* and model.blocks.*: dropped silently")


def _no_radio_parameter(key: str) -> str:
    return f"RADIO has no parameter {key} for this config: dropped silently"


def _radio_layer(vision: VisionParameters, index: str, suffix: str) -> _State:
    """Whether model.encoder.layers.{index}.{suffix} is a parameter of RADIO (RadioVisionEncoderLayer:
    InternVisionEncoderLayer with RadioParallelAttention, intern_vit.py)."""
    if vision.depth is None:
        return "open"
    if not (index.isdecimal() and index.isascii() and str(int(index)) == index and int(index) < vision.depth):
        return "absent"  # the encoder's ModuleList holds layers "0" to str(depth - 1)
    if suffix.startswith(("norm1.", "norm2.")) and vision.norm_bias is None:
        return "open"
    return "parameter" if suffix in _radio_layer_parameters(vision) else "absent"


@cache
def _radio_layer_parameters(vision: VisionParameters) -> frozenset[str]:
    norm = ("weight", "bias") if vision.norm_bias else ("weight",)  # NORM2FN: nn.LayerNorm or RMSNorm
    parameters = {f"norm{n}.{p}" for n in (1, 2) for p in norm}
    parameters |= {"attn.qkv.weight", "attn.proj.weight", "attn.proj.bias", "ls1", "ls2"}
    parameters |= {f"mlp.{fc}.{p}" for fc in ("fc1", "fc2") for p in ("weight", "bias")}
    if vision.qkv_bias:
        parameters.add("attn.qkv.bias")
    if vision.qk_norm:
        parameters |= {"attn.q_norm.weight", "attn.k_norm.weight"}
    return frozenset(parameters)


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
    if re.fullmatch(_PARAKEET_PROJECTION, target) or re.fullmatch(_PARAKEET, target):
        return Route("sound", name, destination=target)
    return Route("sound", name, raises=PARAKEET_UNKNOWN)
