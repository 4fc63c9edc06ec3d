"""Write small (or large) checkpoints shaped like Nemotron Nano VL, with the real tensor names.

Used by `examples/make_example.py`, the tests and the benchmarks. Names, dtypes and the index follow
NVIDIA-Nemotron-Nano-12B-v2-VL (and the Omni sibling's sound encoder and MoE layers); sizes are
scaled down by the spec. Every tensor holds distinct random bytes, so a swap or a stale buffer can
never pass by coincidence.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

# The 12B v2 VL language model's layer pattern: M Mamba, - MLP, * attention.
NANO_12B_PATTERN = "M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M*-M-M-M-M-"


@dataclass(frozen=True)
class Spec:
    layers: int = 8  # the first `layers` entries of the 12B pattern (8 gives all three kinds)
    hidden: int = 128
    ffn: int = 384
    heads: int = 4
    kv_heads: int = 2
    vocab: int = 512
    mamba_head_dim: int = 16
    d_state: int = 16
    experts: int = 0  # > 0: MLP layers become MoE layers (the Omni layout)
    vit_hidden: int = 64
    vit_blocks: int = 2
    vit_patches: int = 64
    projector_hidden: int = 256
    sound: bool = False  # the Omni sibling's Parakeet sound encoder and projection
    sound_layers: int = 2
    sound_hidden: int = 64
    quant: Literal["bf16", "fp8", "nvfp4"] = "bf16"
    extras: bool = False  # names vLLM routes nowhere (unclaimed) or drops on purpose (mtp)
    mtp_layers: int = 0  # > 0: text_config.num_nextn_predict_layers, and the vision final layernorm vLLM 0.32+ loads
    architecture_name: str | None = None  # config.json's architecture, if not the layout's own
    shards: int = 3
    seed: int = 0

    @property
    def architecture(self) -> str:
        if self.architecture_name:
            return self.architecture_name
        return "NemotronH_Nano_Omni_Reasoning_V3" if self.sound else "NemotronH_Nano_VL_V2"


# (name, dtype name, shape); dtype names are torch attribute names.
TensorSpec = tuple[str, str, tuple[int, ...]]


def _linear(prefix: str, out: int, inp: int, quant: str) -> Iterator[TensorSpec]:
    if quant == "fp8":
        yield f"{prefix}.weight", "float8_e4m3fn", (out, inp)
        yield f"{prefix}.weight_scale", "float32", ()
        yield f"{prefix}.input_scale", "float32", ()
    elif quant == "nvfp4":
        yield f"{prefix}.weight", "uint8", (out, inp // 2)  # two fp4 values per byte
        yield f"{prefix}.weight_scale", "float8_e4m3fn", (out, inp // 16)
        yield f"{prefix}.weight_scale_2", "float32", ()
        yield f"{prefix}.input_scale", "float32", ()
    else:
        yield f"{prefix}.weight", "bfloat16", (out, inp)


def layer_pattern(s: Spec) -> str:
    """The config's hybrid_override_pattern: the 12B's, its MLP layers MoE ("E") where experts are asked."""
    pattern = (NANO_12B_PATTERN * (s.layers // len(NANO_12B_PATTERN) + 1))[: s.layers]
    return pattern.replace("-", "E") if s.experts else pattern


def language_model(s: Spec) -> Iterator[TensorSpec]:
    h, q = s.hidden, s.quant
    p = "language_model.backbone"
    yield f"{p}.embeddings.weight", "bfloat16", (s.vocab, h)
    pattern = layer_pattern(s)
    d_inner = 2 * h
    nheads = d_inner // s.mamba_head_dim
    head_dim = h // s.heads
    for i, kind in enumerate(pattern):
        lp = f"{p}.layers.{i}"
        yield f"{lp}.norm.weight", "bfloat16", (h,)
        m = f"{lp}.mixer"
        if kind == "M":
            conv_dim = d_inner + 2 * s.d_state
            yield f"{m}.A_log", "float32", (nheads,)
            yield f"{m}.D", "float32", (nheads,)
            yield f"{m}.dt_bias", "float32", (nheads,)
            yield from _linear(f"{m}.in_proj", 2 * d_inner + 2 * s.d_state + nheads, h, q)
            yield f"{m}.conv1d.weight", "bfloat16", (conv_dim, 1, 4)
            yield f"{m}.conv1d.bias", "bfloat16", (conv_dim,)
            yield f"{m}.norm.weight", "bfloat16", (d_inner,)
            yield from _linear(f"{m}.out_proj", h, d_inner, q)
        elif kind == "*":
            yield from _linear(f"{m}.q_proj", s.heads * head_dim, h, q)
            yield from _linear(f"{m}.k_proj", s.kv_heads * head_dim, h, q)
            yield from _linear(f"{m}.v_proj", s.kv_heads * head_dim, h, q)
            yield from _linear(f"{m}.o_proj", h, s.heads * head_dim, q)
        elif s.experts:
            yield f"{m}.gate.weight", "float32", (s.experts, h)
            yield f"{m}.gate.e_score_correction_bias", "float32", (s.experts,)
            for e in range(s.experts):
                yield from _linear(f"{m}.experts.{e}.up_proj", s.ffn, h, q)
                yield from _linear(f"{m}.experts.{e}.down_proj", h, s.ffn, q)
            yield from _linear(f"{m}.shared_experts.up_proj", s.ffn, h, q)
            yield from _linear(f"{m}.shared_experts.down_proj", h, s.ffn, q)
        else:
            yield from _linear(f"{m}.up_proj", s.ffn, h, q)
            yield from _linear(f"{m}.down_proj", h, s.ffn, q)
    yield f"{p}.norm_f.weight", "bfloat16", (h,)
    yield "language_model.lm_head.weight", "bfloat16", (s.vocab, h)
    if s.extras:
        yield "language_model.mtp.layers.0.eh_proj.weight", "bfloat16", (h, 2 * h)


def vision(s: Spec) -> Iterator[TensorSpec]:
    v = s.vit_hidden
    p = "vision_model.radio_model"
    yield f"{p}.input_conditioner.norm_mean", "float32", (3, 1, 1)
    yield f"{p}.input_conditioner.norm_std", "float32", (3, 1, 1)
    yield f"{p}.summary_idxs", "int64", (3,)
    g = f"{p}.model.patch_generator"
    yield f"{g}.embedder.weight", "bfloat16", (v, 768)
    if s.sound:
        yield f"{g}.video_embedder.weight", "bfloat16", (v, 1536)
    yield f"{g}.pos_embed", "bfloat16", (1, s.vit_patches, v)
    yield f"{g}.cls_token.token", "bfloat16", (10 if s.sound else 8, v)
    for i in range(s.vit_blocks):
        b = f"{p}.model.blocks.{i}"
        for norm in ("norm1", "norm2"):
            yield f"{b}.{norm}.weight", "bfloat16", (v,)
            yield f"{b}.{norm}.bias", "bfloat16", (v,)
        yield f"{b}.attn.qkv.weight", "bfloat16", (3 * v, v)
        yield f"{b}.attn.qkv.bias", "bfloat16", (3 * v,)
        yield f"{b}.attn.proj.weight", "bfloat16", (v, v)
        yield f"{b}.attn.proj.bias", "bfloat16", (v,)
        yield f"{b}.mlp.fc1.weight", "bfloat16", (4 * v, v)
        yield f"{b}.mlp.fc1.bias", "bfloat16", (4 * v,)
        yield f"{b}.mlp.fc2.weight", "bfloat16", (v, 4 * v)
        yield f"{b}.mlp.fc2.bias", "bfloat16", (v,)


def projector(s: Spec) -> Iterator[TensorSpec]:
    yield "mlp1.0.weight", "bfloat16", (4 * s.vit_hidden,)
    yield "mlp1.1.weight", "bfloat16", (s.projector_hidden, 4 * s.vit_hidden)
    yield "mlp1.3.weight", "bfloat16", (s.hidden, s.projector_hidden)
    if s.mtp_layers:
        yield "vision_projector.vision_final_layernorm.weight", "bfloat16", (s.vit_hidden,)
        yield "vision_projector.vision_final_layernorm.bias", "bfloat16", (s.vit_hidden,)


def sound(s: Spec) -> Iterator[TensorSpec]:
    d, c, mels = s.sound_hidden, 32, 64
    e = "sound_encoder.encoder"
    yield f"{e}.feature_extractor.featurizer.fb", "float32", (1, mels, 257)
    yield f"{e}.feature_extractor.featurizer.window", "float32", (400,)
    for i, shape in ((0, (c, 1, 3, 3)), (2, (c, 1, 3, 3)), (3, (c, c, 1, 1)), (5, (c, 1, 3, 3)), (6, (c, c, 1, 1))):
        yield f"{e}.subsampling.layers.{i}.weight", "bfloat16", shape
        yield f"{e}.subsampling.layers.{i}.bias", "bfloat16", (c,)
    yield f"{e}.subsampling.linear.weight", "bfloat16", (d, c * (mels // 8))
    yield f"{e}.subsampling.linear.bias", "bfloat16", (d,)
    for i in range(s.sound_layers):
        lp = f"{e}.layers.{i}"
        for ff in ("feed_forward1", "feed_forward2"):
            yield f"{lp}.{ff}.linear1.weight", "bfloat16", (4 * d, d)
            yield f"{lp}.{ff}.linear2.weight", "bfloat16", (d, 4 * d)
        for proj in ("q", "k", "v", "o", "relative_k"):
            yield f"{lp}.self_attn.{proj}_proj.weight", "bfloat16", (d, d)
        yield f"{lp}.self_attn.bias_u", "bfloat16", (4, d // 4)
        yield f"{lp}.self_attn.bias_v", "bfloat16", (4, d // 4)
        yield f"{lp}.conv.pointwise_conv1.weight", "bfloat16", (2 * d, d, 1)
        yield f"{lp}.conv.depthwise_conv.weight", "bfloat16", (d, 1, 9)
        yield f"{lp}.conv.pointwise_conv2.weight", "bfloat16", (d, d, 1)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            yield f"{lp}.conv.norm.{stat}", "float32", (d,)
        yield f"{lp}.conv.norm.num_batches_tracked", "int64", ()
        for norm in ("norm_feed_forward1", "norm_self_att", "norm_conv", "norm_feed_forward2", "norm_out"):
            yield f"{lp}.{norm}.weight", "bfloat16", (d,)
            yield f"{lp}.{norm}.bias", "bfloat16", (d,)
    yield "sound_projection.norm.weight", "bfloat16", (d,)
    yield "sound_projection.linear1.weight", "bfloat16", (s.projector_hidden, d)
    yield "sound_projection.linear2.weight", "bfloat16", (s.hidden, s.projector_hidden)


def unclaimed(s: Spec) -> Iterator[TensorSpec]:
    yield "vision_projector.0.weight", "bfloat16", (s.hidden, 4 * s.vit_hidden)
    yield "vision_model.summary_idxs", "int64", (3,)
    yield "mtp.layers.0.norm.weight", "bfloat16", (s.hidden,)


def tensor_specs(s: Spec) -> list[TensorSpec]:
    """Multimodal first, as in the real Omni shard 1, then the language model."""
    out = [*vision(s), *projector(s)]
    if s.sound:
        out += list(sound(s))
    out += list(language_model(s))
    if s.extras:
        out += list(unclaimed(s))
    return out


def make_tensor(dtype_name: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    import torch

    dtype = getattr(torch, dtype_name)
    if dtype in (torch.int64, torch.int32):
        return torch.randint(0, 1 << 30, shape, generator=gen, dtype=dtype)
    if dtype == torch.uint8:
        return torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)
    values = torch.randn(shape, generator=gen, dtype=torch.float32)
    return values.to(dtype)


def config(s: Spec) -> dict[str, object]:
    pattern = layer_pattern(s)
    cfg: dict[str, object] = {
        "architectures": [s.architecture],
        "model_type": s.architecture,
        "torch_dtype": "bfloat16",
        "text_config": {
            "architectures": ["NemotronHForCausalLM"],
            "hidden_size": s.hidden,
            "intermediate_size": s.ffn,
            "num_hidden_layers": s.layers,
            "hybrid_override_pattern": pattern,
            "num_attention_heads": s.heads,
            "num_key_value_heads": s.kv_heads,
            "vocab_size": s.vocab,
            "n_routed_experts": s.experts or None,
            **({"n_shared_experts": 1, "moe_intermediate_size": s.ffn} if s.experts else {}),
            **({"num_nextn_predict_layers": s.mtp_layers} if s.mtp_layers else {}),
        },
        "vision_config": {
            "args": {"model": "vit_huge_patch16_224"},
            "hidden_size": s.vit_hidden,
            "patch_size": 16,
            # The Omni layout has a video embedder, which RADIO builds only for a temporal patch above 1.
            **({"video_temporal_patch_size": 2} if s.sound else {}),
        },
        "projector_hidden_size": s.projector_hidden,
        "nemoverify_synthetic": asdict(s),
    }
    if s.quant != "bf16":
        cfg["quantization_config"] = {"quant_method": "modelopt", "quant_algo": "FP8" if s.quant == "fp8" else "NVFP4"}
    if s.sound:
        cfg["sound_config"] = {
            "model_type": "parakeet",
            "hidden_size": s.sound_hidden,
            "num_hidden_layers": s.sound_layers,
            "sampling_rate": 16000,
        }
    return cfg


def write_checkpoint(out_dir: str, spec: Spec = Spec()) -> dict[str, str]:
    """Write shards, index and config.json into `out_dir`. Returns {tensor name: shard file}.

    Tensors are generated and written one shard at a time, so memory stays at one shard's worth."""
    import torch
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    specs = tensor_specs(spec)
    sizes = [_nbytes(dt, shape) for _, dt, shape in specs]
    total = sum(sizes)
    shards = max(1, min(spec.shards, len(specs)))
    # Cut the ordered list into `shards` runs of roughly equal bytes.
    bounds, acc, cut = [], 0, 1
    for i, size in enumerate(sizes):
        acc += size
        if cut < shards and acc >= total * cut / shards and len(specs) - i - 1 >= shards - cut:
            bounds.append(i + 1)
            cut += 1
    starts = [0, *bounds]
    ends = [*bounds, len(specs)]
    gen = torch.Generator().manual_seed(spec.seed)
    weight_map: dict[str, str] = {}
    single = shards == 1
    for k, (a, b) in enumerate(zip(starts, ends, strict=True)):
        fname = "model.safetensors" if single else f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        tensors = {name: make_tensor(dt, shape, gen) for name, dt, shape in specs[a:b]}
        save_file(tensors, os.path.join(out_dir, fname), metadata={"format": "pt"})
        weight_map.update({name: fname for name in tensors})
        del tensors
    if not single:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        _write_json(os.path.join(out_dir, "model.safetensors.index.json"), index)
    _write_json(os.path.join(out_dir, "config.json"), config(spec))
    return weight_map


def _nbytes(dtype_name: str, shape: tuple[int, ...]) -> int:
    import math

    import torch

    dtype: torch.dtype = getattr(torch, dtype_name)
    return math.prod(shape) * dtype.itemsize


def _write_json(path: str, data: object) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
