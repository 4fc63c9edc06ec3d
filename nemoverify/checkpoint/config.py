"""`config.json`: which Nemotron Nano VL variant this is, and whether it declares a sound encoder."""

from __future__ import annotations

import json
from dataclasses import dataclass

from nemoverify.checkpoint.problems import Problem

CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class ModelConfig:
    present: bool
    architectures: tuple[str, ...] = ()
    declares_sound: bool = False
    mtp_layers: int = 0  # the language model's num_nextn_predict_layers: > 0, 0.32+ routes the final layernorm

    @property
    def sound_encoder(self) -> bool:
        """Whether vLLM builds a sound encoder for this model (a sound_config); without a config.json
        nothing is known, and nothing is presumed missing."""
        return self.declares_sound or not self.present

    @property
    def architecture(self) -> str | None:
        return self.architectures[0] if self.architectures else None


def is_nano_vl(architecture: str) -> bool:
    """Whether any vLLM release nemoverify knows sends this architecture to NemotronH_Nano_VL_V2."""
    from nemoverify.profiles import VLLM_RELEASES

    return any(architecture in release.architectures for release in VLLM_RELEASES)


def read_config(text: str | None, file: str) -> tuple[ModelConfig, list[Problem]]:
    """Parse config text (None: no config.json). Unknown architectures are warnings here."""
    if text is None:  # the replay goes on as NemotronH_Nano_VL_V2, a sound encoder presumed where sound is
        return ModelConfig(present=False), [
            Problem(
                "config-architecture",
                file,
                "there is no config.json: vLLM cannot build the model without one, and which model the load path "
                "belongs to is presumed",
                severity="warning",
            )
        ]
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        why = "it nests too deeply to parse" if isinstance(exc, RecursionError) else exc
        return ModelConfig(present=False), [Problem("config-json", file, f"not valid JSON: {why}")]
    if not isinstance(data, dict):
        return ModelConfig(present=False), [Problem("config-json", file, "not a JSON object")]
    problems: list[Problem] = []
    archs = data.get("architectures")
    if not isinstance(archs, list) or not all(isinstance(a, str) for a in archs):
        archs = []
        problems.append(Problem("config-architecture", file, "has no 'architectures' list", severity="warning"))
    elif not any(is_nano_vl(a) for a in archs):
        problems.append(
            Problem(
                "config-architecture",
                file,
                f"architecture {', '.join(archs) or '(none)'} is not one vLLM sends to NemotronH_Nano_VL_V2 "
                "in any release nemoverify knows; the load-path replay may not match how vLLM loads it",
                severity="warning",
            )
        )
    declares_sound = data.get("sound_config") is not None
    return ModelConfig(True, tuple(archs), declares_sound, _mtp_layers(data)), problems


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
