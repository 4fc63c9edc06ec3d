"""Checkpoint layouts for the differential runs, and the deployment each is loaded under.

A layout is a tiny checkpoint directory (built with nemoverify's own generator,
`nemoverify.testing.synthetic`: the examples of NEMOVERIFY_SRC, copied, plus edits) and a
`Deployment`: the streamer release and its settings, the extra config, text-only mode. Building
needs torch and safetensors; the list of layouts and deployments is plain data.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.paths import NEMOVERIFY_SRC

EXAMPLES = NEMOVERIFY_SRC / "examples"


@dataclass(frozen=True)
class Deployment:
    streamer: str = "0.17"  # the runai-model-streamer release (0.16: views into reused buffers)
    memory_limit: int | None = None  # RUNAI_STREAMER_MEMORY_LIMIT in the environment (None: unset)
    extra_config: str | None = None  # --model-loader-extra-config, JSON text as given
    text_only: bool = False  # every modality limit 0 (--language-model-only)
    owned: bool | None = None  # force stream_files(owned=...) (0.17 only); None: vLLM's call as is
    # Diagnostics only (not what vLLM does; used to explain a disagreement):
    file_order: str = "listing"  # "listing": vLLM's list_safetensors (glob order); "sorted": sorted names
    truth_streamer: str | None = None  # run the truth on this streamer release instead (0.17 with owned=False = nemoverify's emulation of 0.16)

    @property
    def venv_streamer(self) -> str:
        return self.truth_streamer or self.streamer

    def describe(self) -> str:
        parts = [f"streamer {self.streamer}"]
        if self.memory_limit is not None:
            parts.append(f"RUNAI_STREAMER_MEMORY_LIMIT={self.memory_limit}")
        if self.extra_config is not None:
            parts.append(f"extra config {self.extra_config}")
        if self.text_only:
            parts.append("text-only")
        if self.owned is not None:
            parts.append(f"owned={self.owned}")
        if self.truth_streamer:
            parts.append(f"DIAGNOSTIC truth on streamer {self.truth_streamer} owned=False")
        if self.file_order != "listing":
            parts.append(f"DIAGNOSTIC files streamed in {self.file_order} order")
        return ", ".join(parts)


@dataclass(frozen=True)
class Add:
    """A tensor added to the checkpoint: `file` None puts it in an indexed extra shard
    (model-extra.safetensors); a file not in the index is a stray file. `like`: copy dtype and shape
    of that tensor (new random bytes)."""

    name: str
    like: str | None = None
    dtype: str = "bfloat16"
    shape: tuple[int, ...] = (4,)
    file: str | None = None
    indexed: bool = True


@dataclass(frozen=True)
class Layout:
    name: str
    base: str  # "nano-12b-v2-vl-tiny" | "nano-omni-tiny" (the shipped examples, copied)
    what: str
    adds: tuple[Add, ...] = ()
    config: dict = field(default_factory=dict)  # deep-merged into config.json
    deployment: Deployment = Deployment()

    def as_dict(self) -> dict:
        return asdict(self)


VL, OMNI = "nano-12b-v2-vl-tiny", "nano-omni-tiny"
LM = "language_model.backbone"
NORM0 = f"{LM}.layers.0.norm.weight"
# The vision projector's final LayerNorm (vLLM 0.32+ routes it, by whether the config has MTP layers).
FINAL_LN = tuple(Add(f"vision_projector.vision_final_layernorm.{p}", dtype="bfloat16", shape=(64,)) for p in ("weight", "bias"))
SMALL_RING = 1 << 18  # 256 KiB: above the largest tensor (192 KiB), far below a checkpoint (2-3 MB)

LAYOUTS: tuple[Layout, ...] = (
    Layout("vl", VL, "the shipped 12B-v2-VL example as is"),
    Layout("omni", OMNI, "the shipped Omni example as is (sound encoder, extras: mtp, vision_projector.0, summary_idxs)"),
    Layout("omni-text-only", OMNI, "Omni example in text-only mode (every modality limit 0)", deployment=Deployment(text_only=True)),
    Layout("lm-model-dup", VL, "language_model.model.X beside language_model.backbone.X", (Add("language_model.model.layers.0.norm.weight", like=NORM0),)),
    Layout("mamba-A-dup", VL, "mixer.A beside mixer.A_log", (Add(f"{LM}.layers.0.mixer.A", like=f"{LM}.layers.0.mixer.A_log"),)),
    Layout("embed-dup", VL, "embed_tokens beside embeddings", (Add(f"{LM}.embed_tokens.weight", like=f"{LM}.embeddings.weight"),)),
    Layout("qkv-dup", VL, "q_proj twice: as q_proj and under backbone->model (same qkv shard)", (Add("language_model.model.layers.7.mixer.q_proj.weight", like=f"{LM}.layers.7.mixer.q_proj.weight"),)),
    Layout(
        "final-ln-mtp",
        VL,
        "vision_final_layernorm weight/bias with num_nextn_predict_layers=1, plus an unexpected name under the prefix",
        (*FINAL_LN, Add("vision_projector.vision_final_layernorm.extra", dtype="bfloat16", shape=(64,))),
        {"text_config": {"num_nextn_predict_layers": 1}},
    ),
    Layout(
        "final-ln-mtp-clean",
        VL,
        "vision_final_layernorm weight/bias with num_nextn_predict_layers=1 (nothing unexpected)",
        FINAL_LN,
        {"text_config": {"num_nextn_predict_layers": 1}},
    ),
    Layout(
        "final-ln-no-mtp",
        VL,
        "vision_final_layernorm weight/bias without MTP layers",
        FINAL_LN,
    ),
    Layout(
        "rotary-names",
        VL,
        "rotary-cache substrings at the end and elsewhere in language-model and vision names",
        (
            Add(f"{LM}.layers.7.mixer.rotary_emb.inv_freq"),
            Add(f"{LM}.layers.7.mixer.rotary_emb.inv_freq_old"),
            Add(f"{LM}.layers.7.mixer.rotary_emb.cos_cached.weight"),
            Add(f"{LM}.layers.7.mixer.xrotary_emb.sin_cached"),
            Add(f"{LM}.rotary_pos_emb.inv_freq"),
            Add(f"{LM}.layers.1.rotary_pos_emb.inv_freq.scale"),
            Add("vision_model.radio_model.model.blocks.0.attn.rotary_emb.inv_freq"),
        ),
    ),
    Layout("arch-lm-first", VL, "architectures [NemotronHForCausalLM, NemotronH_Nano_VL_V2]", config={"architectures": ["NemotronHForCausalLM", "NemotronH_Nano_VL_V2"]}),
    Layout("arch-unknown-first", VL, "architectures [SomethingElse, NemotronH_Nano_VL_V2]", config={"architectures": ["SomethingElseForCausalLM", "NemotronH_Nano_VL_V2"]}),
    Layout("arch-omni-v3", OMNI, "architectures [NemotronH_Omni_Reasoning_V3] (registered from 0.29)", config={"architectures": ["NemotronH_Omni_Reasoning_V3"]}),
    Layout("stray-file", VL, "an unindexed model-old.safetensors holding layers.0.norm.weight with other bytes", (Add(NORM0, like=NORM0, file="model-old.safetensors", indexed=False),)),
    Layout("xcfg-unknown-key", VL, 'extra config {"foo": 1}', deployment=Deployment(extra_config='{"foo": 1}')),
    Layout("xcfg-memory-str", VL, 'extra config {"memory_limit": "4e9"}', deployment=Deployment(extra_config='{"memory_limit": "4e9"}')),
    Layout("xcfg-concurrency-bool", VL, 'extra config {"concurrency": true}', deployment=Deployment(extra_config='{"concurrency": true}')),
    Layout("xcfg-memory-0", VL, 'extra config {"memory_limit": 0}', deployment=Deployment(extra_config='{"memory_limit": 0}')),
    Layout("xcfg-memory-neg1", VL, 'extra config {"memory_limit": -1}', deployment=Deployment(extra_config='{"memory_limit": -1}')),
    Layout(
        "parakeet-convbias-false",
        OMNI,
        "sound_config.convolution_bias false with conv biases present",
        tuple(Add(f"sound_encoder.encoder.layers.{i}.conv.{c}.bias", shape=(128 if c == "pointwise_conv1" else 64,)) for i in range(2) for c in ("pointwise_conv1", "depthwise_conv", "pointwise_conv2")),
        {"sound_config": {"convolution_bias": False}},
    ),
    Layout(
        "parakeet-convbias-true",
        OMNI,
        "conv biases present, sound_config.convolution_bias not set (transformers' default)",
        tuple(Add(f"sound_encoder.encoder.layers.{i}.conv.{c}.bias", shape=(128 if c == "pointwise_conv1" else 64,)) for i in range(2) for c in ("pointwise_conv1", "depthwise_conv", "pointwise_conv2")),
    ),
    Layout("mlp1-extra", VL, "mlp1.2.weight (not a parameter)", (Add("mlp1.2.weight", shape=(256,)),)),
    Layout("lm-unknown", VL, "language_model.backbone.layers.0.mixer.bogus", (Add(f"{LM}.layers.0.mixer.bogus"),)),
    Layout("vl-016-small-ring", VL, f"12B example, streamer 0.16 (views), RUNAI_STREAMER_MEMORY_LIMIT={SMALL_RING}", deployment=Deployment(streamer="0.16", memory_limit=SMALL_RING)),
    Layout("omni-016-small-ring", OMNI, f"Omni example, streamer 0.16 (views), RUNAI_STREAMER_MEMORY_LIMIT={SMALL_RING}", deployment=Deployment(streamer="0.16", memory_limit=SMALL_RING)),
    # diagnostics: the same deployments with the files in sorted order (nemoverify streams the index's
    # order, vLLM the directory listing's), and on 0.17.1 with owned=False (nemoverify's emulation of 0.16)
    Layout("diag-vl-016-sorted", VL, "DIAGNOSTIC: vl-016-small-ring with the files streamed in sorted order", deployment=Deployment(streamer="0.16", memory_limit=SMALL_RING, file_order="sorted")),
    Layout("diag-omni-016-sorted", OMNI, "DIAGNOSTIC: omni-016-small-ring with the files streamed in sorted order", deployment=Deployment(streamer="0.16", memory_limit=SMALL_RING, file_order="sorted")),
    Layout("diag-vl-016-on-017-sorted", VL, "DIAGNOSTIC: vl-016-small-ring, truth on streamer 0.17.1 owned=False, sorted file order", deployment=Deployment(streamer="0.16", memory_limit=SMALL_RING, file_order="sorted", truth_streamer="0.17")),
    Layout("diag-omni-016-on-017-sorted", OMNI, "DIAGNOSTIC: omni-016-small-ring, truth on streamer 0.17.1 owned=False, sorted file order", deployment=Deployment(streamer="0.16", memory_limit=SMALL_RING, file_order="sorted", truth_streamer="0.17")),
)
BY_NAME = {layout.name: layout for layout in LAYOUTS}


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build(layout: Layout, out_dir: str | Path, seed: int = 1234) -> Path:
    """Write the layout's checkpoint into out_dir (replaced). Every added tensor gets fresh random bytes."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(EXAMPLES / layout.base, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg = _merge(cfg, layout.config)
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    if not layout.adds:
        return out
    shapes: dict[str, tuple[str, tuple[int, ...]]] = {}
    for f in sorted(out.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            for k in h.keys():  # noqa: SIM118  (a safe_open handle has keys() but is not iterable)
                sl = h.get_slice(k)
                shapes[k] = (sl.get_dtype(), tuple(sl.get_shape()))
    st2torch = {"BF16": "bfloat16", "F32": "float32", "I64": "int64", "F16": "float16", "U8": "uint8"}
    gen = torch.Generator().manual_seed(seed)
    files: dict[str, dict[str, torch.Tensor]] = {}
    index_path = out / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    for a in layout.adds:
        dtype, shape = (st2torch[shapes[a.like][0]], shapes[a.like][1]) if a.like else (a.dtype, a.shape)
        t = torch.randn(shape, generator=gen, dtype=torch.float32).to(getattr(torch, dtype)) if dtype != "int64" else torch.randint(0, 1 << 30, shape, generator=gen)
        fname = a.file or "model-extra.safetensors"
        files.setdefault(fname, {})[a.name] = t
        if a.indexed:
            index["weight_map"][a.name] = fname
    for fname, tensors in files.items():
        save_file(tensors, str(out / fname), metadata={"format": "pt"})
    index["weight_map"] = dict(sorted(index["weight_map"].items()))
    import math

    total = 0
    for fname in sorted(set(index["weight_map"].values())):
        with safe_open(str(out / fname), "pt") as h:
            for k in h.keys():  # noqa: SIM118  (see above)
                if index["weight_map"].get(k) == fname:
                    sl = h.get_slice(k)
                    total += math.prod(sl.get_shape()) * torch.empty(0, dtype=getattr(torch, st2torch[sl.get_dtype()])).element_size()
    index.setdefault("metadata", {})["total_size"] = total
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    return out
