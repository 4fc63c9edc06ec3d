"""`config.json`: which Nemotron Nano VL variant this is, and whether it declares a sound encoder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from nemoverify.checkpoint.problems import Problem

CONFIG_NAME = "config.json"


Found = Literal["parsed", "absent", "invalid", "not read"]  # not read: no checkpoint to look in


@dataclass(frozen=True)
class ModelConfig:
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
        "parsed", archs or (), sound is not None, _mtp_layers(data), archs is not None, convolution_bias, video_embedder
    ), []


# The language model's config is `text_config` in some releases of these checkpoints' config.json and
# `llm_config` in others; vLLM reads either as `text_config` (its config loader renames llm_config).
LANGUAGE_MODEL_CONFIG_KEYS = ("text_config", "llm_config")


def _mtp_layers(data: dict[str, object]) -> int:
    """num_nextn_predict_layers of the language model's config, whichever key holds it (0 if none)."""
    for key in LANGUAGE_MODEL_CONFIG_KEYS:
        section = data.get(key)
        if isinstance(section, dict):
            mtp = section.get("num_nextn_predict_layers")
            # vLLM tests `num_nextn_predict_layers > 0`, which true and 1.0 pass as well as 1.
            if not isinstance(mtp, (int, float)) or not mtp > 0:
                return 0
            return mtp if isinstance(mtp, int) and not isinstance(mtp, bool) else 1  # 1.0, true, Infinity: some
    return 0
