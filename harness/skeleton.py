"""The stand-in model: real `torch.nn.Module` trees whose module and parameter *names* follow the
release's model code for the checkpoint's config, with the release's own `load_weights` (and the
linear layers' `load_weights` / `validate_shard_id` from 0.25) bound to them. Parameters that vLLM
gives a `weight_loader` get a recording stand-in (harness.recorder.recording_loader); those that
vLLM leaves without one (RMSNorm / LayerNorm / nn.Linear / plain nn.Parameter) are loaded by the
release's real `default_weight_loader` (wrapped to record), so its size assert is real there.

What each part derives from (see README.md for what this cannot see):
  language model  NemotronHForCausalLM / NemotronHModel layout from text_config.hybrid_override_pattern
                  (M Mamba, - MLP, * attention; E MoE is refused), attention_bias / mlp_bias /
                  use_bias / mamba_conv_bias from text_config (NemotronHConfig defaults otherwise)
  vision          RadioModel: patch_generator (embedder, video_embedder iff
                  vision_config.video_temporal_patch_size > 1, pos_embed, cls_token.token), encoder
                  layers 0..depth-1 with depth from the release's VIT_TIMM_DIM_BY_NAME for
                  vision_config.args.model (norm1/2, attn.qkv (+bias: qkv_bias default), attn.proj,
                  mlp.fc1/fc2 with biases, ls1/ls2)
  mlp1            nn.Sequential(RMSNorm, nn.Linear(bias=False), ReLU², nn.Linear(bias=False))
  final layernorm nn.LayerNorm iff text_config.num_nextn_predict_layers > 0 (0.32+ only)
  sound           the release's own ProjectedParakeet (transformers' ParakeetEncoder, installed
                  version), sound_config completed from the checkpoint's shapes where the synthetic
                  config lacks a field
Shapes of default-loaded parameters come from the checkpoint tensor that targets them where the
synthetic config lacks the dimension (so size asserts fire only for Parakeet and norms).
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn

from harness.recorder import Recorder, recording_loader
from harness.stubs import ParallelLMHead, ReLUSquaredActivation, RMSNorm, VocabParallelEmbedding

_DEFAULT_NH = {"attention_bias": False, "mlp_bias": False, "use_bias": False, "mamba_conv_bias": True}


class NotModelled(Exception):
    pass


def _p(*shape) -> nn.Parameter:
    return nn.Parameter(torch.zeros(*shape) if shape else torch.zeros(1), requires_grad=False)


class _Linear(nn.Module):
    """A vLLM linear layer as loading sees it: `weight` (+ `bias`, or a registered None)."""

    def __init__(self, rec: Recorder, bias: bool, output_sizes=(1,), prefix: str = "") -> None:
        super().__init__()
        self.weight = _p(1)
        self.weight.weight_loader = recording_loader(rec)
        if bias:
            self.bias = _p(1)
            self.bias.weight_loader = recording_loader(rec)
        else:
            self.register_parameter("bias", None)
        self.output_sizes = list(output_sizes)
        self.prefix = prefix
        self._rec = rec

    def weight_loader(self, param, loaded_weight, loaded_shard_id=None):  # `getattr(self, name, self)` fallback
        self._rec.copy(self, loaded_weight, loaded_shard_id, None, "module-as-parameter (stand-in; real loader not run)")


def linear_classes(rel):
    """The release's linear classes as stand-ins: QKV / MergedColumn get the release's
    load_weights + validate_shard_id when it has them (0.25+)."""

    class ColumnParallelLinear(_Linear):
        pass

    class RowParallelLinear(_Linear):
        pass

    class MergedColumnParallelLinear(ColumnParallelLinear):
        pass

    class QKVParallelLinear(ColumnParallelLinear):
        pass

    for cls in (MergedColumnParallelLinear, QKVParallelLinear):
        for m in ("load_weights", "validate_shard_id"):
            f = rel.methods.get(f"{cls.__name__}.{m}")
            if f is not None:
                setattr(cls, m, f)
    return SimpleNamespace(Column=ColumnParallelLinear, Row=RowParallelLinear, Merged=MergedColumnParallelLinear, QKV=QKVParallelLinear)


def _cfg(d: dict) -> SimpleNamespace:
    return SimpleNamespace(**{k: (_cfg(v) if isinstance(v, dict) and k not in ("args",) else v) for k, v in d.items()})


def language_model(rel, rec: Recorder, text: dict, shapes: dict) -> nn.Module:
    L = linear_classes(rel)
    c = {**_DEFAULT_NH, **text}
    pattern = c["hybrid_override_pattern"]
    if "E" in pattern:
        raise NotModelled("MoE (E) layers are not modelled")
    h = c.get("hidden_size", 1)

    class NemotronHModel(nn.Module):
        pass

    class NemotronHForCausalLM(nn.Module):
        pass

    for q, f in rel.methods.items():
        cls, _, m = q.partition(".")
        if cls == "NemotronHModel":
            setattr(NemotronHModel, m, f)
        elif cls == "NemotronHForCausalLM":
            setattr(NemotronHForCausalLM, m, f)
    NemotronHForCausalLM.hf_to_vllm_mapper = rel.attrs["NemotronHForCausalLM.hf_to_vllm_mapper"]

    def rms(name: str) -> RMSNorm:
        n = RMSNorm(1)
        n.weight = nn.Parameter(torch.zeros(shapes.get(name, (h,))), requires_grad=False)
        return n

    m = NemotronHModel()
    m.config = _cfg(c)
    m.has_moe = False
    m.embed_tokens = VocabParallelEmbedding()
    m.embed_tokens.weight.weight_loader = recording_loader(rec)
    layers = []
    for i, kind in enumerate(pattern):
        layer = nn.Module()
        pre = f"model.layers.{i}"
        mix = nn.Module()
        if kind == "M":
            mix.in_proj = L.Merged(rec, c["use_bias"], (1, 1, 1), f"{pre}.mixer.in_proj")
            mix.conv1d = L.Merged(rec, c["mamba_conv_bias"], (1, 1, 1), f"{pre}.mixer.conv1d")
            for n in ("A", "D", "dt_bias"):
                setattr(mix, n, _p(1))
                getattr(mix, n).weight_loader = recording_loader(rec)
            mix.norm = nn.Module()
            mix.norm.weight = _p(1)
            mix.norm.weight.weight_loader = recording_loader(rec)
            mix.out_proj = L.Row(rec, c["use_bias"], prefix=f"{pre}.mixer.out_proj")
        elif kind == "*":
            mix.qkv_proj = L.QKV(rec, c["attention_bias"], (1, 1, 1), f"{pre}.mixer.qkv_proj")
            mix.o_proj = L.Row(rec, c["attention_bias"], prefix=f"{pre}.mixer.o_proj")
            mix.attn = nn.Module()  # vLLM's Attention: its kv-cache scales are not modelled
        elif kind == "-":
            mix.up_proj = L.Column(rec, c["mlp_bias"], prefix=f"{pre}.mixer.up_proj")
            mix.down_proj = L.Row(rec, c["mlp_bias"], prefix=f"{pre}.mixer.down_proj")
        else:
            raise NotModelled(f"layer kind {kind!r}")
        layer.mixer = mix
        layer.norm = rms(f"model.layers.{i}.norm.weight")
        layers.append(layer)
    m.layers = nn.ModuleList(layers)
    m.norm_f = rms("model.norm_f.weight")
    top = NemotronHForCausalLM()
    top.config = m.config
    top.quant_config = None
    top.model = m
    top.lm_head = ParallelLMHead()
    top.lm_head.weight.weight_loader = recording_loader(rec)
    top.logits_processor = nn.Module()
    return top


def _vit_dims(rel, model_name: str) -> tuple[int, int, int, int]:
    text = (rel.src / "vllm/transformers_utils/configs/radio.py").read_text()
    for s in ast.parse(text).body:
        tgt = s.target if isinstance(s, ast.AnnAssign) else (s.targets[0] if isinstance(s, ast.Assign) else None)
        if isinstance(tgt, ast.Name) and tgt.id == "VIT_TIMM_DIM_BY_NAME":
            return ast.literal_eval(s.value)[model_name]
    raise LookupError("VIT_TIMM_DIM_BY_NAME")


def vision_model(rel, rec: Recorder, cfg: dict, shapes: dict) -> nn.Module:
    L = linear_classes(rel)
    vc = cfg.get("vision_config", {})
    args = vc.get("args", {})
    _, depth, _, _ = _vit_dims(rel, args["model"])
    qkv_bias = args.get("qkv_bias", True)
    qk_norm = args.get("qk_normalization", False)

    class RadioModel(nn.Module):
        pass

    RadioModel.load_weights = rel.methods["RadioModel.load_weights"]

    def default_param(name, fallback=(1,)):
        return nn.Parameter(torch.zeros(shapes.get(name, fallback)), requires_grad=False)

    def linear_default(name):  # nn.Linear subclass (ViTPatchLinear): no weight_loader
        mod = nn.Module()
        mod.weight = default_param(name + ".weight")
        mod.register_parameter("bias", None)
        return mod

    r = RadioModel()
    r.model = nn.Module()
    pg = nn.Module()
    pg.embedder = linear_default("model.patch_generator.embedder")
    if vc.get("video_temporal_patch_size", 1) > 1:
        pg.video_embedder = linear_default("model.patch_generator.video_embedder")
    pg.pos_embed = default_param("model.patch_generator.pos_embed")
    pg.cls_token = nn.Module()
    pg.cls_token.token = default_param("model.patch_generator.cls_token.token")
    r.model.patch_generator = pg
    layers = []
    for i in range(depth):
        lay = nn.Module()
        pre = f"model.encoder.layers.{i}"
        for n in ("norm1", "norm2"):
            ln = nn.Module()
            ln.weight = default_param(f"{pre}.{n}.weight")
            ln.bias = default_param(f"{pre}.{n}.bias")
            setattr(lay, n, ln)
        lay.attn = nn.Module()
        lay.attn.qkv = L.QKV(rec, qkv_bias, (1, 1, 1), f"{pre}.attn.qkv")
        lay.attn.proj = L.Row(rec, True, prefix=f"{pre}.attn.proj")
        if qk_norm:
            lay.attn.q_norm = RMSNorm(1)
            lay.attn.k_norm = RMSNorm(1)
        lay.mlp = nn.Module()
        lay.mlp.fc1 = L.Column(rec, True, prefix=f"{pre}.mlp.fc1")
        lay.mlp.fc2 = L.Row(rec, True, prefix=f"{pre}.mlp.fc2")
        lay.ls1 = default_param(f"{pre}.ls1")
        lay.ls2 = default_param(f"{pre}.ls2")
        layers.append(lay)
    r.model.encoder = nn.Module()
    r.model.encoder.layers = nn.ModuleList(layers)
    return r


def _complete_sound_config(sc: dict, ck: dict) -> dict:
    """Fill the fields ProjectedParakeet needs that the synthetic sound_config lacks, from the
    checkpoint's shapes (a real Omni config.json carries them)."""
    out = dict(sc)
    e = "sound_encoder.encoder"

    def dim(name, i):
        return ck[name][i] if name in ck else None

    guesses = {
        "projection_hidden_size": dim("sound_projection.linear1.weight", 0),
        "projection_bias": "sound_projection.linear1.bias" in ck,
        "intermediate_size": dim(f"{e}.layers.0.feed_forward1.linear1.weight", 0),
        "num_attention_heads": dim(f"{e}.layers.0.self_attn.bias_u", 0),
        "num_key_value_heads": dim(f"{e}.layers.0.self_attn.bias_u", 0),
        "subsampling_conv_channels": dim(f"{e}.subsampling.layers.0.weight", 0),
        "conv_kernel_size": dim(f"{e}.layers.0.conv.depthwise_conv.weight", -1),
    }
    lin = ck.get(f"{e}.subsampling.linear.weight")
    ch = guesses["subsampling_conv_channels"]
    if lin and ch:
        guesses["num_mel_bins"] = lin[1] // ch * 8
    for k, v in guesses.items():
        if k not in out and v is not None:
            out[k] = v
    return out


def sound_encoder(rel, cfg: dict, ck_shapes: dict, llm_hidden: int, dtype=torch.bfloat16) -> nn.Module | None:
    sc = cfg.get("sound_config")
    if sc is None:
        return None
    from transformers import PretrainedConfig

    full = _complete_sound_config(sc, ck_shapes)
    hf = PretrainedConfig(**full)
    ns = rel.ns["vllm/model_executor/models/parakeet.py"]
    return ns["ProjectedParakeet"](hf, dtype=dtype, llm_hidden_size=llm_hidden, max_model_len=4096)


def build_model(rel, rec: Recorder, cfg: dict, ck_shapes: dict, text_only: bool) -> nn.Module:
    """The NemotronH_Nano_VL_V2 stand-in for config.json `cfg`; `ck_shapes`: checkpoint name -> shape."""

    class NemotronH_Nano_VL_V2(nn.Module):
        pass

    NemotronH_Nano_VL_V2.load_weights = rel.methods["NemotronH_Nano_VL_V2.load_weights"]
    text = cfg["text_config"]
    lm_shapes = {}
    for k, v in ck_shapes.items():
        if k.startswith("language_model.backbone."):
            lm_shapes["model." + k[len("language_model.backbone.") :]] = v
    vis_shapes = {}
    for k, v in ck_shapes.items():
        if k.startswith("vision_model.radio_model.model.patch_generator."):
            vis_shapes[k[len("vision_model.radio_model.") :]] = v
        elif k.startswith("vision_model.radio_model.model.blocks."):
            parts = k[len("vision_model.radio_model.") :].split(".")
            vis_shapes[".".join(["model", "encoder", "layers", *parts[2:]])] = v
    top = NemotronH_Nano_VL_V2()
    top.config = _cfg({k: v for k, v in cfg.items() if k != "nemoverify_synthetic"})
    mm = SimpleNamespace(language_model_only=text_only, limit_per_prompt={})
    mm.get_limit_per_prompt = rel.methods["MultiModalConfig.get_limit_per_prompt"].__get__(mm)
    top.model_config = SimpleNamespace(multimodal_config=mm)
    top.language_model = language_model(rel, rec, text, lm_shapes)
    top.vision_model = vision_model(rel, rec, cfg, vis_shapes)
    d = ck_shapes.get("mlp1.0.weight", (1,))[0]
    p1 = ck_shapes.get("mlp1.1.weight", (1, 1))
    p3 = ck_shapes.get("mlp1.3.weight", (text.get("hidden_size", 1), p1[0]))
    mlp1 = nn.Sequential(RMSNorm(d), nn.Linear(p1[1], p1[0], bias=False), ReLUSquaredActivation(), nn.Linear(p3[1], p3[0], bias=False))
    top.mlp1 = mlp1.to(torch.bfloat16)
    if rel.has_final_layernorm:
        vit_hidden = cfg.get("vit_hidden_size", cfg.get("vision_config", {}).get("hidden_size"))
        top.vision_final_layernorm = (
            nn.LayerNorm(vit_hidden, eps=cfg.get("vision_config", {}).get("layer_norm_eps", 1e-6)).to(torch.bfloat16)
            if (text.get("num_nextn_predict_layers", 0) or 0) > 0
            else None
        )
    top.sound_encoder = sound_encoder(rel, cfg, ck_shapes, text.get("hidden_size", 1))
    for p in top.parameters():
        p.requires_grad_(False)
    return top


def checkpoint_shapes(directory: str | Path) -> dict[str, tuple[int, ...]]:
    from harness.stored import stored_tensors

    return {t.name: t.shape for t in stored_tensors(str(directory))}


def read_config(directory: str | Path) -> dict:
    return json.loads((Path(directory) / "config.json").read_text())
