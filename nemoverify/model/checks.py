"""What vLLM's model makes of a checkpoint beyond its format: whether a release routes its
architecture to NemotronH_Nano_VL_V2, and whether its sound tensors agree with its config."""

from __future__ import annotations

from dataclasses import replace

from nemoverify.checkpoint.config import CONFIG_NAME
from nemoverify.checkpoint.layout import Checkpoint, open_checkpoint
from nemoverify.checkpoint.problems import Problem
from nemoverify.deployment.releases import NEWEST_VLLM, TEXT_ONLY_MODEL_ARCHITECTURES, VllmRelease, is_nano_vl


def open_for_vllm(path: str, max_tensors: int | None = None) -> Checkpoint:
    """The checkpoint at `path` with every problem it meets: the format's and vLLM's model's."""
    checkpoint = open_checkpoint(path, max_tensors=max_tensors)
    found = architecture_problems(checkpoint) + sound_problems(checkpoint)
    return replace(checkpoint, problems=checkpoint.problems + tuple(found)) if found else checkpoint


def _config_file(checkpoint: Checkpoint) -> str:
    return f"{checkpoint.root.rstrip('/')}/{CONFIG_NAME}"


def architecture_problems(checkpoint: Checkpoint) -> list[Problem]:
    """A config.json that is missing or names no architecture any release routes here: warnings
    (the replay then presumes NemotronH_Nano_VL_V2)."""
    config, file = checkpoint.config, _config_file(checkpoint)
    if config.found == "absent":
        said = (
            "there is no config.json: vLLM cannot build the model without one, and which model the load path "
            "belongs to is presumed"
        )
    elif not config.present:
        return []  # not read, or no JSON object: reported as such already
    elif not config.architectures_listed:
        said = "has no 'architectures' list"
    elif not any(is_nano_vl(a) for a in config.architectures):
        said = (
            f"architecture {', '.join(config.architectures) or '(none)'} is not one vLLM sends to "
            "NemotronH_Nano_VL_V2 in any release nemoverify knows; the load-path replay may not match how vLLM loads it"
        )
    elif (built := built_model(NEWEST_VLLM, config.architectures)) in TEXT_ONLY_MODEL_ARCHITECTURES:
        said = (
            f"vLLM builds {built}, the first of {', '.join(config.architectures)} its registry routes (every "
            "release), not NemotronH_Nano_VL_V2: this load path does not run"
        )
    else:
        return []
    return [Problem("config-architecture", file, said, severity="warning")]


def has_sound(checkpoint: Checkpoint) -> bool:
    """Sound tensors in any file vLLM streams (a stray one's are loaded, and asserted on, too)."""
    # route() sends a name to the sound component exactly when it starts with "sound" (no earlier
    # predicate claims such a name): tested by prefix, since routing every name here costs a run
    # about 4 us a tensor in a cache entry no pass reads (the passes route under their release).
    return any(info.name.startswith("sound") for shard in checkpoint.streamed for info in shard.header.tensors)


def sound_problems(checkpoint: Checkpoint) -> list[Problem]:
    """Sound tensors without a sound_config (vLLM asserts on them), or a sound_config without them."""
    config = checkpoint.config
    if not config.present or not checkpoint.shards:
        return []
    sound = has_sound(checkpoint)
    if sound and not config.declares_sound:
        return [
            Problem(
                "config-sound",
                _config_file(checkpoint),
                "declares no sound_config but the shards hold sound tensors; vLLM's load_weights asserts on the first "
                "one it routes (unless text-only mode skips them, vLLM 0.21+)",
                severity="warning",  # the check reports each as a load-error of the release it replays
            )
        ]
    if config.declares_sound and not sound:
        return [
            Problem(
                "config-sound",
                _config_file(checkpoint),
                "declares a sound_config but the shards hold no sound tensors; the sound encoder would stay uninitialised",
            )
        ]
    return []


def built_model(release: VllmRelease, architectures: tuple[str, ...]) -> str | None:
    """The architecture the release builds from this list: the first its registry routes, in list
    order (`_ModelRegistry.resolve_model_cls`). A name nemoverify does not know is taken as one the
    registry lacks (so the next is tried); None where no entry is routed."""
    for architecture in architectures:
        if architecture in release.architectures or architecture in TEXT_ONLY_MODEL_ARCHITECTURES:
            return architecture
    return None


def routes_here(release: VllmRelease, checkpoint: Checkpoint) -> bool:
    """Whether the release builds NemotronH_Nano_VL_V2 for the checkpoint, so that its load_weights
    runs. Without a config.json nothing says otherwise (warned of); a config.json without
    architectures is one vLLM cannot resolve."""
    if not checkpoint.config.present:
        return True
    return built_model(release, checkpoint.config.architectures) in release.architectures


def release_problems(checkpoint: Checkpoint, release: VllmRelease) -> list[Problem]:
    """What this checkpoint meets in this vLLM release that another release would not."""
    archs = checkpoint.config.architectures
    if not archs or routes_here(release, checkpoint):
        return []
    built = built_model(release, archs)
    if not any(is_nano_vl(a) for a in archs) or built in TEXT_ONLY_MODEL_ARCHITECTURES:
        return []  # architecture_problems already warns of it, for every release
    said = (
        f"vLLM {release.name} builds {built} (the first architecture of {', '.join(archs)} its registry routes), "
        "not NemotronH_Nano_VL_V2: this load path does not run"
        if built
        else f"vLLM {release.name} does not route {', '.join(archs)} to NemotronH_Nano_VL_V2: it would refuse this "
        "model before loading a weight"
    )
    return [Problem("config-architecture", _config_file(checkpoint), said, severity="warning")]
