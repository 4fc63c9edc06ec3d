"""Which parameters each release builds for a config, and what it does with a name that has none:
NemotronH's (raised on: KeyError to 0.25.1, ValueError from 0.26.0; a bias its layer lacks ignored
from 0.26.0) and RADIO's (dropped silently in every release). Read from the releases' code
(nemotron_h.py, mamba_mixer2.py, linear.py, models/utils.py AutoWeightsLoader, radio.py,
intern_vit.py, transformers_utils/configs/radio.py); docs/deployments.md cites them. Where config.json
does not determine a parameter, the name is taken as loaded, as before."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nemoverify.checkpoint.config import ModelConfig, read_config
from nemoverify.deployment.releases import VLLM_RELEASES, vllm_release
from nemoverify.model.replay import release_routing
from nemoverify.model.routing import Route, Routing, route
from nemoverify.testing.synthetic import Spec, config, tensor_specs

TEXT = {
    "architectures": ["NemotronHForCausalLM"],
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "hybrid_override_pattern": "M-*E",
    "use_bias": False,
    "mamba_conv_bias": True,
    "mlp_bias": False,
    "n_shared_experts": 1,
    "moe_latent_size": None,
}
VISION = {"args": {"model": "vit_base_patch16_224"}, "hidden_size": 768, "patch_size": 16}
LM = "language_model.backbone"
BLOCK = "vision_model.radio_model.model.blocks"
EVERY_ROW = [row.releases[0] for row in VLLM_RELEASES]
BEFORE_026 = [r for r in EVERY_ROW if vllm_release(r).language_model == "0.20"]
FROM_026 = [r for r in EVERY_ROW if vllm_release(r).language_model != "0.20"]


def model_config(text: dict[str, Any] | None = None, vision: dict[str, Any] | None = None, **top: Any) -> ModelConfig:
    data = {
        "architectures": ["NemotronH_Nano_VL_V2"],
        "text_config": TEXT if text is None else text,
        "vision_config": VISION if vision is None else vision,
        **top,
    }
    parsed, problems = read_config(json.dumps(data), "config.json")
    assert not problems
    return parsed


def routed(name: str, release: str, cfg: ModelConfig | None = None) -> Route:
    return route(name, release_routing(vllm_release(release), cfg or model_config()))


def loaded(r: Route) -> bool:
    return r.destination is not None and r.skip is None and r.raises is None


# --- the language model ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        f"{LM}.embeddings.weight",
        f"{LM}.norm_f.weight",
        "language_model.lm_head.weight",
        *(f"{LM}.layers.0.{p}" for p in ("norm.weight", "mixer.A_log", "mixer.D", "mixer.dt_bias", "mixer.norm.weight")),
        *(f"{LM}.layers.0.mixer.{p}.weight" for p in ("in_proj", "out_proj", "conv1d")),
        f"{LM}.layers.0.mixer.conv1d.bias",  # mamba_conv_bias true
        f"{LM}.layers.1.mixer.up_proj.weight",
        f"{LM}.layers.1.mixer.down_proj.weight",
        *(f"{LM}.layers.2.mixer.{p}_proj.weight" for p in ("q", "k", "v", "o")),
        f"{LM}.layers.3.mixer.gate.weight",
        f"{LM}.layers.3.mixer.gate.e_score_correction_bias",
        f"{LM}.layers.3.mixer.shared_experts.up_proj.weight",
        f"{LM}.layers.3.mixer.shared_experts.down_proj.weight",
        f"{LM}.layers.3.mixer.experts.0.up_proj.weight",  # routed experts: not modelled, taken as loaded
        f"{LM}.layers.3.mixer.experts.7.down_proj.weight",
    ],
)
def test_every_parameter_the_config_builds_is_loaded_by_every_release(name: str) -> None:
    for release in EVERY_ROW:
        assert loaded(routed(name, release)), (release, routed(name, release))


def test_an_unknown_language_model_name_fails_the_load_as_each_release_fails_it() -> None:
    """The harness's lm-unknown layout: NemotronHModel.load_weights' `params_dict[name]` to 0.25.1,
    AutoWeightsLoader's "There is no module or parameter named ..." from 0.26.0."""
    name = f"{LM}.layers.0.mixer.bogus"
    for release in BEFORE_026:
        r = routed(name, release)
        assert r.raises and "KeyError" in r.raises and "'layers.0.mixer.bogus'" in r.raises, (release, r)
    for release in FROM_026:
        r = routed(name, release)
        assert r.raises and "ValueError" in r.raises and "'model.layers.0.mixer.bogus'" in r.raises, (release, r)


@pytest.mark.parametrize(
    "name",
    [
        f"{LM}.layers.4.norm.weight",  # four layers: 0-3
        f"{LM}.layers.04.norm.weight",
        f"{LM}.layers.0.mixer.up_proj.weight",  # an MLP name on the Mamba layer
        f"{LM}.layers.1.mixer.A_log",  # a Mamba name on the MLP layer
        f"{LM}.layers.0.mixer.q_proj.weight",  # q_proj -> qkv_proj, which a Mamba layer lacks
        f"{LM}.layers.3.mixer.up_proj.weight",  # an MoE layer has no up_proj of its own
        f"{LM}.layers.3.mixer.fc1_latent_proj.weight",  # moe_latent_size null: no latent projections
        f"{LM}.norm.weight",
        f"{LM}.layers.0.norm.weight.extra",  # a weight nested in a parameter
    ],
)
def test_a_name_no_parameter_of_the_config_has_fails_the_load_in_every_release(name: str) -> None:
    for release in EVERY_ROW:
        r = routed(name, release)
        assert r.raises and ("KeyError" if release in BEFORE_026 else "Error") in r.raises, (release, r)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (f"{LM}.layers.0.mixer.in_proj.bias", {}),  # use_bias false
        (f"{LM}.layers.0.mixer.out_proj.bias", {}),
        (f"{LM}.layers.0.mixer.conv1d.bias", {"mamba_conv_bias": False}),
        (f"{LM}.layers.0.mixer.conv1d.bias", {"mamba_conv_bias": None, "use_conv_bias": False}),
        (f"{LM}.layers.1.mixer.up_proj.bias", {}),  # mlp_bias false
        (f"{LM}.layers.2.mixer.q_proj.bias", {}),  # NemotronHAttention: bias=False whatever the config
        (f"{LM}.layers.2.mixer.o_proj.bias", {"attention_bias": True}),
        (f"{LM}.layers.0.norm.bias", {}),  # RMSNorm
        (f"{LM}.layers.3.mixer.shared_experts.up_proj.bias", {"mlp_bias": True}),  # NemotronHMLP(bias=False)
    ],
)
def test_a_bias_the_layer_lacks_is_a_key_error_to_025_and_ignored_from_026(name: str, text: dict[str, Any]) -> None:
    """To 0.25.1 NemotronHModel.load_weights looks every model.* name up (a q/k/v bias tries the next
    shard name first, GPTQ's `continue`, and ends in a KeyError all the same); from 0.26.0
    AutoWeightsLoader (and the merged linears' own load_weights) ignore a bias with no parameter."""
    cfg = model_config({**TEXT, **text})
    for release in BEFORE_026:
        r = routed(name, release, cfg)
        assert r.raises and "KeyError" in r.raises, (release, r)
    for release in FROM_026:
        r = routed(name, release, cfg)
        assert r.skip and "ignores a bias" in r.skip and r.raises is None, (release, r)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (f"{LM}.layers.0.mixer.in_proj.bias", {"use_bias": True}),
        (f"{LM}.layers.0.mixer.out_proj.bias", {"use_bias": 1}),  # `if bias:`
        (f"{LM}.layers.1.mixer.down_proj.bias", {"mlp_bias": True}),
        (f"{LM}.layers.3.mixer.fc2_latent_proj.weight", {"moe_latent_size": 64}),
        (f"{LM}.layers.3.mixer.fc1_latent_proj.bias", {"moe_latent_size": 64, "mlp_bias": True}),
    ],
)
def test_a_bias_or_layer_the_config_turns_on_is_a_parameter(name: str, text: dict[str, Any]) -> None:
    cfg = model_config({**TEXT, **text})
    for release in EVERY_ROW:
        assert loaded(routed(name, release, cfg)), release


@pytest.mark.parametrize(
    ("name", "drop"),
    [
        (f"{LM}.layers.0.mixer.in_proj.bias", "use_bias"),
        (f"{LM}.layers.0.mixer.conv1d.bias", "mamba_conv_bias"),
        (f"{LM}.layers.1.mixer.up_proj.bias", "mlp_bias"),
        (f"{LM}.layers.3.mixer.shared_experts.up_proj.weight", "n_shared_experts"),
        (f"{LM}.layers.3.mixer.fc1_latent_proj.weight", "moe_latent_size"),
    ],
)
def test_a_parameter_config_json_does_not_decide_is_taken_as_loaded_not_guessed(name: str, drop: str) -> None:
    """Absent, the default is the config class's (vLLM's NemotronHConfig to 0.31, transformers' from
    0.32, or the checkpoint's own code): nemoverify neither expects nor refuses the parameter."""
    cfg = model_config({k: v for k, v in TEXT.items() if k != drop})
    for release in EVERY_ROW:
        r = routed(name, release, cfg)
        assert r.destination is not None and r.raises is None and r.skip is None, (release, r)
    # Everything else is still checked.
    assert routed(f"{LM}.layers.0.mixer.bogus", "0.33.0", cfg).raises


def test_shared_experts_follow_n_shared_experts() -> None:
    name = f"{LM}.layers.3.mixer.shared_experts.down_proj.weight"
    for value in (0, None):
        cfg = model_config({**TEXT, "n_shared_experts": value})
        assert all(routed(name, release, cfg).raises for release in EVERY_ROW)


def test_a_fused_qkv_weight_fails_to_025_and_loads_whole_from_026() -> None:
    """To 0.25.1 `v_proj` is a substring of `qkv_proj`: the name becomes `qkqkv_proj`, a KeyError. From
    0.26.0 the mapper's keys have a leading dot, and QKVParallelLinear loads the fused tensor."""
    name = f"{LM}.layers.2.mixer.qkv_proj.weight"
    for release in BEFORE_026:
        r = routed(name, release)
        assert r.raises and "'layers.2.mixer.qkqkv_proj.weight'" in r.raises, release
    for release in FROM_026:
        assert routed(name, release).destination == "model.layers.2.mixer.qkv_proj.weight", release


def test_kv_cache_scales_are_dropped_to_025_and_fail_or_load_from_026() -> None:
    """To 0.25.1 maybe_remap_kv_scale_name maps `.k_scale` & co. to `.attn.k_scale`, which an unquantized
    model lacks: dropped with a warning. From 0.26.0 `k_proj.k_scale` becomes `qkv_proj.k_scale`,
    which QKVParallelLinear.load_weights cannot load (AttributeError); the attention layer's own
    persistent buffers (`attn._k_scale`) are loaded as parameters are."""
    scale, buffer = f"{LM}.layers.2.mixer.k_proj.k_scale", f"{LM}.layers.2.mixer.attn._k_scale"
    for release in BEFORE_026:
        assert routed(scale, release).skip and "k/v-cache scale" in (routed(scale, release).skip or "")
        assert routed(f"{LM}.layers.0.mixer.kv_scale", release).skip  # -> attn.k_scale
        assert "KeyError" in (routed(buffer, release).raises or "")  # a buffer: not in named_parameters()
    for release in FROM_026:
        assert "AttributeError" in (routed(scale, release).raises or ""), release
        assert routed(buffer, release).destination == "model.layers.2.mixer.attn._k_scale"
    # Any other buffer of the attention layer depends on the deployment's kv-cache settings: to 0.25.1
    # no buffer is a parameter (KeyError); from 0.26.0 such a name is not checked.
    other = f"{LM}.layers.2.mixer.attn.weight"
    assert all("KeyError" in (routed(other, r).raises or "") for r in BEFORE_026)
    assert all(loaded(routed(other, r)) for r in FROM_026)


def test_a_name_under_a_merged_linear_is_its_own_loaders_to_answer_from_026() -> None:
    name = f"{LM}.layers.0.mixer.in_proj.weight_scale"
    for release in BEFORE_026:
        assert "KeyError" in (routed(name, release).raises or "")
    for release in FROM_026:
        r = routed(name, release)
        assert r.raises and "MergedColumnParallelLinear" in r.raises and "AttributeError" in r.raises


@pytest.mark.parametrize(
    ("top", "why"),
    [
        ({"quantization_config": {"quant_method": "modelopt"}}, "quantized"),
        ({"text_config": {**TEXT, "architectures": ["NemotronHPuzzleForCausalLM"]}}, "architectures"),
        ({"text_config": {k: v for k, v in TEXT.items() if k != "architectures"}}, "architectures"),
        ({"text_config": {**TEXT, "block_configs": []}}, "block_configs"),
        ({"text_config": {k: v for k, v in TEXT.items() if k != "hybrid_override_pattern"}}, "hybrid_override_pattern"),
        ({"text_config": {**TEXT, "hybrid_override_pattern": "M-*A"}}, "hybrid_override_pattern"),
        ({"text_config": {**TEXT, "num_hidden_layers": 52}}, "num_hidden_layers"),
        ({"text_config": {**TEXT, "mamba_conv_bias": True, "use_conv_bias": False}}, None),
    ],
)
def test_where_config_json_does_not_determine_the_model_no_name_is_checked(top: dict[str, Any], why: str | None) -> None:
    text = top.pop("text_config", None)
    cfg = model_config(text, **top)
    if why is None:  # two fields that disagree: only the parameter they decide is unchecked
        assert cfg.language_model.unmodelled is None and cfg.language_model.use_conv_bias is None
        return
    assert cfg.language_model.unmodelled and why in cfg.language_model.unmodelled
    for release in EVERY_ROW:
        assert loaded(routed(f"{LM}.layers.0.mixer.bogus", release, cfg)), release


def test_the_language_model_config_is_read_from_llm_config_too() -> None:
    data = {"architectures": ["NemotronH_Nano_VL_V2"], "llm_config": TEXT, "vision_config": VISION}
    cfg, _ = read_config(json.dumps(data), "config.json")
    assert cfg.language_model.pattern == "M-*E"
    assert routed(f"{LM}.layers.0.mixer.bogus", "0.33.0", cfg).raises


def test_without_a_config_routing_checks_no_parameter() -> None:
    assert loaded(route(f"{LM}.layers.0.mixer.bogus", Routing("0.29")))
    assert loaded(route(f"{BLOCK}.0.attn.rotary_emb.inv_freq"))
    absent, _ = read_config(None, "config.json")
    assert loaded(route(f"{LM}.layers.0.mixer.bogus", release_routing(vllm_release("0.33.0"), absent)))


# --- RADIO ----------------------------------------------------------------------------------------


def test_radio_drops_a_block_name_it_has_no_parameter_for_in_every_release() -> None:
    """The harness's rotary-names layout: RadioModel.load_weights loads `if vllm_key in params_dict`."""
    name = f"{BLOCK}.0.attn.rotary_emb.inv_freq"
    for release in EVERY_ROW:
        r = routed(name, release)
        assert r.component == "vision" and r.skip and "dropped silently" in r.skip and r.raises is None, release


@pytest.mark.parametrize(
    "suffix",
    [
        "norm1.weight",
        "norm1.bias",
        "norm2.weight",
        "norm2.bias",
        "attn.qkv.weight",
        "attn.qkv.bias",
        "attn.proj.weight",
        "attn.proj.bias",
        "mlp.fc1.weight",
        "mlp.fc1.bias",
        "mlp.fc2.weight",
        "mlp.fc2.bias",
    ],
)
def test_radio_loads_every_parameter_of_its_blocks(suffix: str) -> None:
    for release in EVERY_ROW:
        assert routed(f"{BLOCK}.11.{suffix}", release).destination == f"model.encoder.layers.11.{suffix}"


def test_radio_builds_as_many_blocks_as_its_releases_table_gives_the_model() -> None:
    assert routed(f"{BLOCK}.12.norm1.weight", "0.33.0").skip  # vit_base: 12 layers
    huge = model_config(vision={"args": {"model": "vit_huge_patch16_224"}})
    assert loaded(routed(f"{BLOCK}.31.norm1.weight", "0.33.0", huge))
    assert routed(f"{BLOCK}.32.norm1.weight", "0.33.0", huge).skip
    # vit_so400m_patch16_224 (27 layers) is in 0.33.0's table only: before, the depth is not known.
    so400m = model_config(vision={"args": {"model": "vit_so400m_patch16_224"}})
    assert routed(f"{BLOCK}.27.norm1.weight", "0.33.0", so400m).skip
    assert loaded(routed(f"{BLOCK}.26.norm1.weight", "0.33.0", so400m))
    assert loaded(routed(f"{BLOCK}.27.norm1.weight", "0.32.0", so400m))  # not checked
    assert vllm_release("0.32.0").vit_depth("vit_so400m_patch16_224") is None
    # args that set num_hidden_layers themselves: the depth is not followed
    given = model_config(vision={"args": {"model": "vit_base_patch16_224", "num_hidden_layers": 40}})
    assert loaded(routed(f"{BLOCK}.39.norm1.weight", "0.33.0", given))
    assert routed(f"{BLOCK}.0.attn.rotary_emb.inv_freq", "0.33.0", given).destination  # blocks unchecked


@pytest.mark.parametrize(
    ("args", "suffix", "has"),
    [
        ({"qkv_bias": False}, "attn.qkv.bias", False),
        ({"qk_normalization": True}, "attn.q_norm.weight", True),
        ({}, "attn.k_norm.weight", False),
        ({"norm_type": "rms_norm"}, "norm2.bias", False),
        ({"norm_type": "rms_norm"}, "norm2.weight", True),
    ],
)
def test_radio_parameters_follow_vision_config_args(args: dict[str, Any], suffix: str, has: bool) -> None:
    cfg = model_config(vision={"args": {"model": "vit_base_patch16_224", **args}})
    r = routed(f"{BLOCK}.0.{suffix}", "0.20.0", cfg)
    assert loaded(r) is has and (has or bool(r.skip)), r


def test_radio_drops_a_patch_generator_name_it_has_no_parameter_for() -> None:
    g = "vision_model.radio_model.model.patch_generator"
    for name in (f"{g}.embedder.weight", f"{g}.pos_embed", f"{g}.cls_token.token"):
        assert loaded(routed(name, "0.26.0")), name
    for name in (f"{g}.embedder.bias", f"{g}.cls_token.weight", f"{g}.patch_normalizer.weight"):
        assert routed(name, "0.26.0").skip, name  # patch_bias False; the normalizer is an Identity
    video = model_config(vision={**VISION, "video_temporal_patch_size": 2})
    assert loaded(routed(f"{g}.video_embedder.weight", "0.26.0", video))
    assert routed(f"{g}.video_embedder.bias", "0.26.0", video).skip


# --- the synthetic checkpoints against these parameters --------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [Spec(), Spec(sound=True, extras=True, seed=1), Spec(mtp_layers=1, seed=3), Spec(layers=52)],
    ids=["vl", "omni", "mtp", "52-layers"],
)
def test_the_synthetic_checkpoints_hold_only_names_vllm_loads_or_drops_on_purpose(spec: Spec) -> None:
    cfg, _ = read_config(json.dumps(config(spec)), "config.json")
    for release in EVERY_ROW:
        routing = release_routing(vllm_release(release), cfg)
        for name, _, _ in tensor_specs(spec):
            r = route(name, routing)
            assert r.raises is None, (release, name, r)
            if r.component in ("language_model", "vision") and r.skip:
                assert "dropped silently" not in r.skip and "ignores" not in r.skip, (release, name, r)


def test_the_synthetic_moe_layout_matches_its_config() -> None:
    spec = Spec(experts=2)
    cfg, _ = read_config(json.dumps(config(spec)), "config.json")
    routing = release_routing(vllm_release("0.33.0"), cfg)
    assert not [name for name, _, _ in tensor_specs(spec) if route(name, routing).raises]
