"""What each vLLM release and each runai-model-streamer release does to a checkpoint on its way into
the model: one row per range of releases over which every function on the load path is the same code.

Read from each release's own code (the wheels on the package index: `NemotronH_Nano_VL_V2.load_weights`
and `__init__`, `NemotronHForCausalLM.load_weights` and its name mapper, `NemotronHModel.load_weights`,
`AutoWeightsLoader`, `WeightsMapper`, the RADIO and Parakeet loaders, the model registry, the Run:ai
loader's constructor and file listing and its weights iterator, the MoE expert loaders), and checked
against that code by the differential harness (`python -m harness run`, docs/deployments.md). A row
ends where any of those functions changes, whether or not the change moves a verdict nemoverify
models; `code_changes` says what changed and whether nemoverify models it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

from nemoverify.errors import UsageError

LoadPath = Literal["fixed", "legacy"]
LOAD_PATHS: tuple[LoadPath, ...] = get_args(LoadPath)  # --strategy's choices
# How a release's Run:ai loader takes --model-loader-extra-config: "lenient" sets a known key only
# where its value has the right type and ignores the rest (0.20-0.23); "positive" refuses unknown
# keys, wrong types and, for concurrency and memory_limit, values below 1 (0.24.0); "strict" the same
# with memory_limit allowed down to -1 (0.25 on).
ExtraConfigRules = Literal["lenient", "positive", "strict"]
# How NemotronHForCausalLM maps and loads the names handed to it: "0.20", NemotronHModel.load_weights
# does the loading (0.20.0-0.25.1); "0.26", AutoWeightsLoader walks the modules and the name mapper
# stacks q/k/v (0.26.0-0.28.0); "0.29", as 0.26, the mapper dropping mtp* and the rotary caches itself.
LanguageModelLoader = Literal["0.20", "0.26", "0.29"]
# The vision projector's final layernorm: not routed (before 0.32), or routed and asserted against
# the LayerNorm that exists only for a language model with MTP layers.
FinalLayernormRouting = Literal["not routed", "with MTP", "without MTP"]

# RADIO's depth (encoder layers) by vision_config.args.model: the second of each entry of
# VIT_TIMM_DIM_BY_NAME (vllm/transformers_utils/configs/radio.py), which RadioConfig reads
# num_hidden_layers from; RadioModel builds model.encoder.layers.0..depth-1. 0.33.0 adds so400m.
VitDepths = tuple[tuple[str, int], ...]
_VIT_DEPTHS: VitDepths = (
    ("vit_small_patch16_224", 12),
    ("vit_base_patch16_224", 12),
    ("vit_large_patch16_224", 24),
    ("vit_huge_patch16_224", 32),
)
_VIT_DEPTHS_033: VitDepths = (*_VIT_DEPTHS, ("vit_so400m_patch16_224", 27))

# Architectures the registry sends to NemotronH_Nano_VL_V2 (its `load_weights` is what we replay).
_ARCHITECTURES = frozenset(
    {"NemotronH_Nano_VL_V2", "NemotronH_Nano_Omni_Reasoning_V3", "NemotronH_Super_Omni_Reasoning_V3"}
)
_ARCHITECTURES_029 = _ARCHITECTURES | {"NemotronH_Omni_Reasoning_V3"}
# Architectures the registry sends to NemotronHForCausalLM: a config that names one of these before a
# Nano VL architecture builds the text-only model, whose load path is not the one replayed here.
TEXT_ONLY_MODEL_ARCHITECTURES = frozenset({"NemotronHForCausalLM", "NemotronHPuzzleForCausalLM"})


@dataclass(frozen=True)
class VllmRelease:
    """A range of vLLM releases whose load path is the same code, as it loads Nemotron Nano VL."""

    releases: tuple[str, ...]  # every published release of the range, oldest first
    load_path: LoadPath  # "legacy": before PR 42244, lists of references; "fixed": after it
    text_only_skip: bool  # every modality limit 0 skips mlp1/vision/sound (0.20 loads them regardless)
    iterator_clones: bool  # runai_safetensors_weights_iterator yields tensor.clone() (PR 43464)
    final_layernorm: bool  # routes and asserts vision_projector.vision_final_layernorm.* (0.32 on)
    architectures: frozenset[str]
    extra_config: ExtraConfigRules
    language_model: LanguageModelLoader  # how NemotronHForCausalLM maps and loads names
    ignores_unexpected_bias: bool  # AutoWeightsLoader ignores a bias its layer lacks (0.25 on)
    code_changes: str  # what changed in the code where this row begins
    vit_depths: VitDepths = _VIT_DEPTHS  # RADIO's encoder depth by ViT model name (VIT_TIMM_DIM_BY_NAME)

    def vit_depth(self, model: str | None) -> int | None:
        """How many encoder layers RADIO builds for this ViT name (None: a name this release's table
        lacks, for which vLLM builds no RADIO)."""
        return dict(self.vit_depths).get(model) if model is not None else None

    @property
    def name(self) -> str:
        """As shown: "0.22.0-0.22.1", "0.23.0"."""
        first, last = self.releases[0], self.releases[-1]
        return first if first == last else f"{first}-{last}"

    @property
    def rejects_unknown_extra_config(self) -> bool:
        return self.extra_config != "lenient"

    def final_layernorm_routing(self, mtp_layers: int) -> FinalLayernormRouting:
        if not self.final_layernorm:
            return "not routed"
        return "with MTP" if mtp_layers > 0 else "without MTP"


def _row(
    releases: str,
    load_path: LoadPath,
    *,
    text_only_skip: bool = True,
    iterator_clones: bool = True,
    final_layernorm: bool = False,
    architectures: frozenset[str] = _ARCHITECTURES,
    extra_config: ExtraConfigRules = "strict",
    language_model: LanguageModelLoader = "0.20",
    ignores_unexpected_bias: bool = True,
    vit_depths: VitDepths = _VIT_DEPTHS,
    code_changes: str,
) -> VllmRelease:
    return VllmRelease(
        tuple(releases.split()),
        load_path,
        text_only_skip,
        iterator_clones,
        final_layernorm,
        architectures,
        extra_config,
        language_model,
        ignores_unexpected_bias,
        code_changes,
        vit_depths,
    )


VLLM_RELEASES: tuple[VllmRelease, ...] = (
    _row(
        "0.20.0 0.20.1 0.20.2",
        "legacy",
        text_only_skip=False,
        iterator_clones=False,
        extra_config="lenient",
        ignores_unexpected_bias=False,
        code_changes="issue 41749's release: load_weights keeps references to language-model, vision and sound "
        "tensors in lists, and loads them after the pass",
    ),
    _row(
        "0.21.0",
        "legacy",
        iterator_clones=False,
        extra_config="lenient",
        ignores_unexpected_bias=False,
        code_changes="load_weights skips mlp1, vision and sound in text-only mode (every modality limit 0)",
    ),
    _row(
        "0.22.0 0.22.1",
        "fixed",
        extra_config="lenient",
        ignores_unexpected_bias=False,
        code_changes="PR 42244: language-model weights streamed into their parameters, multimodal ones cloned, "
        "the iterator drained; PR 43464: the Run:ai weights iterator yields tensor.clone()",
    ),
    _row(
        "0.23.0",
        "fixed",
        extra_config="lenient",
        ignores_unexpected_bias=False,
        code_changes="AutoWeightsLoader adds a quantisation config's cache-scale mapper; maybe_remap_kv_scale_name "
        "keeps a name that is already a parameter (quantised checkpoints' scale names only: not modelled)",
    ),
    _row(
        "0.24.0",
        "fixed",
        extra_config="positive",
        ignores_unexpected_bias=False,
        code_changes="the Run:ai loader refuses unknown --model-loader-extra-config keys and wrong types, and "
        "memory_limit or concurrency below 1",
    ),
    _row(
        "0.25.0 0.25.1",
        "fixed",
        code_changes="the Run:ai loader takes memory_limit down to -1; AutoWeightsLoader ignores a bias its layer "
        "lacks (for any config)",
    ),
    _row(
        "0.26.0",
        "fixed",
        language_model="0.26",
        code_changes="NemotronHModel.load_weights is gone: AutoWeightsLoader walks the language model, the name "
        "mapper stacks .q_proj/.k_proj/.v_proj into qkv_proj, an unknown name raises ValueError (KeyError "
        "before), and a per-expert MoE name that matches no expert parameter is ignored",
    ),
    _row(
        "0.27.0 0.27.1",
        "fixed",
        language_model="0.26",
        code_changes="RoutedExperts.load_weights (MoE expert loading) rewritten; the same names reach the same "
        "parameters (fused 3-D expert tensors: not modelled)",
    ),
    _row(
        "0.28.0",
        "fixed",
        language_model="0.26",
        code_changes="RoutedExperts.load_weights again (MoE expert loading; fused 3-D expert tensors: not modelled)",
    ),
    _row(
        "0.29.0",
        "fixed",
        architectures=_ARCHITECTURES_029,
        language_model="0.29",
        code_changes="the registry routes NemotronH_Omni_Reasoning_V3 here; NemotronH's name mapper drops mtp* and "
        "the rotary caches itself (the same names as before)",
    ),
    _row(
        "0.30.0",
        "fixed",
        architectures=_ARCHITECTURES_029,
        language_model="0.29",
        code_changes="AutoWeightsLoader adds a quantisation config's checkpoint weight mapper (quantised "
        "checkpoints only: not modelled)",
    ),
    _row(
        "0.31.0",
        "fixed",
        architectures=_ARCHITECTURES_029,
        language_model="0.29",
        code_changes="load_weights and __init__ assert a multimodal config (always present when vLLM builds this "
        "model); no routing change",
    ),
    _row(
        "0.32.0",
        "fixed",
        final_layernorm=True,
        architectures=_ARCHITECTURES_029,
        language_model="0.29",
        code_changes="vision_projector.vision_final_layernorm.* routed and asserted: loaded inline when the "
        "language model has MTP layers, else AssertionError (dropped silently before)",
    ),
    _row(
        "0.33.0",
        "fixed",
        final_layernorm=True,
        architectures=_ARCHITECTURES_029,
        language_model="0.29",
        vit_depths=_VIT_DEPTHS_033,
        code_changes="the Run:ai loader may skip whole files whose every tensor the model marks unused "
        "(is_unused_checkpoint_weight: NemotronH_Nano_VL_V2 defines none, so no file is skipped); RADIO "
        "knows vit_so400m_patch16_224 (27 layers)",
    ),
)
NEWEST_VLLM = VLLM_RELEASES[-1]
KNOWN_VLLM = tuple(r for row in VLLM_RELEASES for r in row.releases)


class StreamerRelease(NamedTuple):
    """One runai-model-streamer release as vLLM drives it (vLLM never passes `owned`)."""

    name: str
    minor: tuple[int, int]
    owned_parameter: bool  # 0.17 added `owned=True` by default; before it, every tensor is a view
    # Distributed: 0.15/0.16 set the reader's memory limit to -1 where none is set; 0.17 divides the
    # node's limit among its ranks. Both broadcast through two staging buffers of
    # max(RUNAI_STREAMER_DIST_BUFFER_MIN_BYTESIZE, largest tensor), default 1 GiB.
    distributed_unlimited_reader: bool

    @property
    def owns_tensors(self) -> bool:
        """What the caller gets by default: its own tensors (0.17) or views into reused buffers."""
        return self.owned_parameter


STREAMER_RELEASES: tuple[StreamerRelease, ...] = (
    StreamerRelease("0.15", (0, 15), False, True),
    StreamerRelease("0.16", (0, 16), False, True),
    StreamerRelease("0.17", (0, 17), True, False),
)
STAGING_BUFFER_DEFAULT = 1 << 30  # RUNAI_STREAMER_DIST_BUFFER_MIN_BYTESIZE's default, both releases

_VERSION = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?(\+[\w.]+)?")


def is_nano_vl(architecture: str) -> bool:
    """Whether any vLLM release nemoverify knows sends this architecture to NemotronH_Nano_VL_V2."""
    return any(architecture in release.architectures for release in VLLM_RELEASES)


def minor_of(version: str, what: str) -> tuple[int, int]:
    m = re.match(r"v?(\d+)\.(\d+)", version.strip())
    if not m:
        raise UsageError(f"{what} {version!r}: give a release such as 0.20.1 or 0.33")
    return int(m.group(1)), int(m.group(2))


def vllm_release(version: str) -> VllmRelease:
    """The row of an exact release (0.20.1; a local build label such as +cu128 aside), or of every
    release of a minor version (0.20), which no row splits. Anything else is a usage error, never a
    guess at code nemoverify has not read."""
    m = _VERSION.fullmatch(version.strip())
    if not m:
        raise UsageError(f"--vllm {version!r}: give a release such as 0.20.1 or 0.33")
    minor = f"{int(m.group(1))}.{int(m.group(2))}"
    same_minor = [row for row in VLLM_RELEASES if any(r.startswith(minor + ".") for r in row.releases)]
    if m.group(3) is None and len(same_minor) == 1:
        return same_minor[0]
    exact = f"{minor}.{int(m.group(3))}" if m.group(3) is not None else None
    for row in VLLM_RELEASES:
        if exact in row.releases:
            return row
    known = f"{KNOWN_VLLM[0]} to {KNOWN_VLLM[-1]}"
    if same_minor:
        releases = ", ".join(r for row in same_minor for r in row.releases)
        raise UsageError(
            f"--vllm {version}: not a release nemoverify has read ({minor}: {releases}); its code may differ. "
            f"Pass one of those, or --vllm {minor}"
        )
    if (int(m.group(1)), int(m.group(2))) > minor_of(KNOWN_VLLM[-1], "--vllm"):
        raise UsageError(
            f"--vllm {version}: newer than any release nemoverify knows ({known}); its load path is not known. "
            f"Pass --vllm {KNOWN_VLLM[-1]} to check against the newest known behaviour"
        )
    raise UsageError(f"--vllm {version}: not a release nemoverify knows ({known})")


def streamer_release(version: str) -> StreamerRelease:
    minor = minor_of(version, "--streamer")
    for release in STREAMER_RELEASES:
        if release.minor == minor:
            return release
    names = ", ".join(r.name for r in STREAMER_RELEASES)
    raise UsageError(f"--streamer {version}: nemoverify knows streamer releases {names}")
