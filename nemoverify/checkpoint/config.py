"""`config.json`: which Nemotron Nano VL variant this is, and whether it declares a sound encoder."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal, NamedTuple

from nemoverify.checkpoint.problems import Problem

CONFIG_NAME = "config.json"


Found = Literal["parsed", "absent", "invalid", "not read"]  # not read: no checkpoint to look in


class LanguageModelFacts(NamedTuple):
    """What config.json says of the parameters vLLM's NemotronH builds (docs/deployments.md, "Where
    each name goes"). `unmodelled`: why nemoverify derives no parameter set for this model (then no
    language-model name is checked against one, as before). Otherwise `pattern` is
    hybrid_override_pattern (one layer per character: M Mamba, * attention, - MLP, E MoE) and each
    flag is what vLLM's code makes of the field (`if bias:`, `is None or == 0`, `is not None`), or None
    where config.json does not give it: the default is then the config class's (vLLM's NemotronHConfig
    to 0.31, transformers' from 0.32, or the checkpoint's own code), which nemoverify does not guess,
    so the parameters it decides are not checked."""

    unmodelled: str | None = "config.json was not read"
    pattern: str = ""
    use_bias: bool | None = None  # Mamba in_proj/out_proj biases (MambaMixer2 use_bias=config.use_bias)
    use_conv_bias: bool | None = None  # Mamba conv1d bias (mamba_conv_bias, or use_conv_bias)
    mlp_bias: bool | None = None  # MLP layers' up/down_proj biases, and the MoE latent projections'
    shared_experts: bool | None = None  # n_shared_experts neither null nor 0: MoE layers' shared_experts
    latent_moe: bool | None = None  # moe_latent_size not null: MoE layers' fc1/fc2_latent_proj


class VisionFacts(NamedTuple):
    """What vLLM passes RADIO's config from vision_config.args (`RadioConfig(model_name=args["model"],
    **args)`), with RadioConfig's own defaults where args lacks a field (vLLM builds that config
    itself: transformers_utils/configs/radio.py, the same in every release read). `model` None: no
    model name (vLLM builds no RADIO from it); `norm_type` None: not one of NORM2FN's two.
    `depth_given`: args itself sets num_hidden_layers, which RadioConfig otherwise takes from the model
    name (and the config class may or may not let args override): the depth is then not known."""

    model: str | None = None
    depth_given: bool = False
    qkv_bias: bool = True  # RadioConfig(qkv_bias=True)
    qk_normalization: bool = False  # RadioConfig(qk_normalization=False)
    norm_type: str | None = "layer_norm"  # RadioConfig(norm_type="layer_norm")


@dataclass(frozen=True)
class ModelConfig:
    """What config.json says that decides how vLLM loads the checkpoint."""

    found: Found
    architectures: tuple[str, ...] = ()
    declares_sound: bool = False
    mtp_layers: int = 0  # the language model's num_nextn_predict_layers: > 0, 0.32+ routes the final layernorm
    architectures_listed: bool = False  # `architectures` is a list of strings (possibly empty)
    # sound_config.convolution_bias: false, the sound encoder has no convolution biases; absent, the
    # installed transformers' default decides (the biases are taken as parameters).
    convolution_bias: bool = True
    # vision_config.video_temporal_patch_size > 1: the vision model has a video embedder (default 1: none)
    video_embedder: bool = False
    language_model: LanguageModelFacts = LanguageModelFacts()  # what decides NemotronH's parameters
    vision: VisionFacts | None = None  # what decides RADIO's parameters (None: no vision_config.args)

    @property
    def present(self) -> bool:
        return self.found == "parsed"

    @property
    def sound_encoder(self) -> bool:
        """Whether vLLM builds a sound encoder for this model (a sound_config); without a config.json
        nothing is known, and nothing is presumed missing."""
        return self.declares_sound or not self.present

    @property
    def architecture(self) -> str | None:
        return self.architectures[0] if self.architectures else None


def read_config(text: str | None, file: str) -> tuple[ModelConfig, list[Problem]]:
    """Parse config text (None: no config.json). Only its form is judged here: what vLLM makes of
    its architectures and sound encoder is `model.checks`'s to say."""
    if text is None:
        return ModelConfig("absent"), []
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        why = "it nests too deeply to parse" if isinstance(exc, RecursionError) else exc
        return ModelConfig("invalid"), [Problem("config-json", file, f"not valid JSON: {why}")]
    if not isinstance(data, dict):
        return ModelConfig("invalid"), [Problem("config-json", file, "not a JSON object")]
    given = data.get("architectures")
    archs = tuple(given) if isinstance(given, list) and all(isinstance(a, str) for a in given) else None
    sound, vision = data.get("sound_config"), data.get("vision_config")
    convolution_bias = not (isinstance(sound, dict) and sound.get("convolution_bias") is False)
    temporal = vision.get("video_temporal_patch_size", 1) if isinstance(vision, dict) else 1
    video_embedder = isinstance(temporal, (int, float)) and not isinstance(temporal, bool) and temporal > 1
    return ModelConfig(
        "parsed",
        archs or (),
        sound is not None,
        _mtp_layers(data),
        archs is not None,
        convolution_bias,
        video_embedder,
        language_model_facts(data),
        vision_facts(vision),
    ), []


# The language model's config is `text_config` in some releases of these checkpoints' config.json and
# `llm_config` in others; vLLM reads either as `text_config` (its config loader renames llm_config).
LANGUAGE_MODEL_CONFIG_KEYS = ("text_config", "llm_config")


def _language_model_section(data: dict[str, object]) -> dict[str, object] | None:
    """The language model's config, whichever key holds it (text_config first, as vLLM's remap)."""
    for key in LANGUAGE_MODEL_CONFIG_KEYS:
        section = data.get(key)
        if isinstance(section, dict):
            return section
    return None


def _mtp_layers(data: dict[str, object]) -> int:
    """num_nextn_predict_layers of the language model's config, whichever key holds it (0 if none)."""
    section = _language_model_section(data)
    if section is None:
        return 0
    mtp = section.get("num_nextn_predict_layers")
    # vLLM tests `num_nextn_predict_layers > 0`, which true and 1.0 pass as well as 1.
    if not isinstance(mtp, (int, float)) or not mtp > 0:
        return 0
    return mtp if isinstance(mtp, int) and not isinstance(mtp, bool) else 1  # 1.0, true, Infinity: some


_PATTERN = re.compile(r"[M*\-E]+")
# The architectures vLLM's registry sends to NemotronHForCausalLM; the Puzzle variant builds each layer
# from its own block config (`get_nemotron_h_config_for_layer`), which nemoverify does not model.
_NEMOTRON_H = "NemotronHForCausalLM"
_QUANTIZATION_KEYS = ("quantization_config", "compression_config")


def language_model_facts(data: dict[str, object]) -> LanguageModelFacts:
    """The fields of config.json that decide which parameters vLLM's NemotronH builds (nemotron_h.py:
    NemotronHModel.__init__ builds one decoder layer per character of hybrid_override_pattern), or why
    they are not followed."""
    section = _language_model_section(data)
    if section is None:
        return LanguageModelFacts("config.json has no text_config (or llm_config)")
    quantized = [k for k in _QUANTIZATION_KEYS if k in data or k in section]
    if quantized:
        return LanguageModelFacts(
            f"the checkpoint is quantized ({quantized[0]}): quantized layers have parameters (scales) "
            "nemoverify does not model"
        )
    archs = section.get("architectures")
    if not (isinstance(archs, list) and archs and archs[0] == _NEMOTRON_H):
        return LanguageModelFacts(
            f"the language model's architectures do not start with {_NEMOTRON_H} (another class, or NemotronH "
            "built layer by layer from block configs, which nemoverify does not model)"
        )
    if "block_configs" in section:
        return LanguageModelFacts("the language model has per-layer block_configs, which nemoverify does not model")
    pattern = section.get("hybrid_override_pattern")
    if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern):
        return LanguageModelFacts("the language model's config has no hybrid_override_pattern of M, *, - and E")
    layers = section.get("num_hidden_layers", len(pattern))
    if not isinstance(layers, int) or isinstance(layers, bool) or layers != len(pattern):
        # vLLM's own NemotronHConfig (to 0.31) asserts the two agree; transformers' (0.32 on) ignores
        # num_hidden_layers: which one parses this config is not known.
        return LanguageModelFacts("num_hidden_layers does not match hybrid_override_pattern's length")
    conv = [bool(section[k]) for k in ("mamba_conv_bias", "use_conv_bias") if k in section]
    return LanguageModelFacts(
        None,
        pattern,
        _truth(section, "use_bias"),
        conv[0] if conv and all(c == conv[0] for c in conv) else None,  # both given and differing: not known
        _truth(section, "mlp_bias"),
        (section["n_shared_experts"] not in (None, 0)) if "n_shared_experts" in section else None,
        (section["moe_latent_size"] is not None) if "moe_latent_size" in section else None,
    )


def _truth(section: dict[str, object], key: str) -> bool | None:
    """vLLM passes the field on as a layer's `bias`, which the layer tests with `if bias:`."""
    return bool(section[key]) if key in section else None


_NORM_TYPES = ("layer_norm", "rms_norm")  # intern_vit.py NORM2FN


def vision_facts(vision: object) -> VisionFacts | None:
    """The fields of vision_config.args that decide RADIO's parameters (None: no args)."""
    if not isinstance(vision, dict) or not isinstance(vision.get("args"), dict):
        return None
    args: dict[str, object] = vision["args"]
    model = args.get("model")
    norm_type = args.get("norm_type", "layer_norm")
    return VisionFacts(
        model if isinstance(model, str) else None,
        "num_hidden_layers" in args,
        bool(args.get("qkv_bias", True)),
        bool(args.get("qk_normalization", False)),
        norm_type if isinstance(norm_type, str) and norm_type in _NORM_TYPES else None,
    )
