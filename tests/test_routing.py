"""Routing follows vLLM's load_weights predicates and its sub-loaders' skips."""

import pytest

from nemoverify.model.routing import route


@pytest.mark.parametrize(
    ("name", "component", "handed_on"),
    [
        ("language_model.backbone.layers.0.mixer.A_log", "language_model", "backbone.layers.0.mixer.A_log"),
        ("language_model.lm_head.weight", "language_model", "lm_head.weight"),
        ("mlp1.1.weight", "mlp1", "1.weight"),
        (
            "vision_model.radio_model.model.blocks.0.attn.qkv.weight",
            "vision",
            "radio_model.model.blocks.0.attn.qkv.weight",
        ),
        (
            "sound_encoder.encoder.layers.0.self_attn.q_proj.weight",
            "sound",
            "sound_encoder.encoder.layers.0.self_attn.q_proj.weight",
        ),
        ("sound_projection.linear1.weight", "sound", "sound_projection.linear1.weight"),
        ("vision_projector.0.weight", "unclaimed", "vision_projector.0.weight"),
        ("vision_model.summary_idxs", "unclaimed", "vision_model.summary_idxs"),
        ("mtp.layers.0.norm.weight", "unclaimed", "mtp.layers.0.norm.weight"),
    ],
)
def test_each_name_goes_where_vllm_sends_it(name: str, component: str, handed_on: str) -> None:
    r = route(name)
    assert (r.component, r.handed_on) == (component, handed_on)


@pytest.mark.parametrize(
    "name",
    [
        "vision_model.radio_model.input_conditioner.norm_mean",
        "vision_model.radio_model.summary_idxs",
        "vision_model.radio_model.model.blocks.3.ls1.gamma",
        "sound_encoder.encoder.feature_extractor.featurizer.fb",
        "language_model.mtp.layers.0.eh_proj.weight",
    ],
)
def test_sub_loader_skips_are_skips_not_errors(name: str) -> None:
    r = route(name)
    assert r.component != "unclaimed"
    assert r.skip


def test_claimed_weights_are_not_skipped() -> None:
    assert route("language_model.backbone.layers.0.mixer.rotary_emb.scale").skip is None  # not a cache
    assert route("language_model.backbone.xrotary_emb.inv_freq").skip is None  # not the rotary_emb module
    assert route("vision_model.radio_model.model.blocks.0.mlp.fc1.weight").skip is None
    assert route("sound_encoder.encoder.layers.0.conv.norm.running_mean").skip is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("vision_model.radio_model.model.norm.weight", "RADIO maps only"),  # not patch_generator nor blocks
        ("sound_extra.weight", "Parakeet loads only"),  # a sound* name outside the two prefixes
        ("language_model.backbone.layers.3.mixer.rotary_emb.inv_freq", "rotary"),
        ("language_model.rotary_emb.cos_cached", "rotary"),  # the cache at the top of the handed-on name
        ("language_model.mtp_head.weight", "multi-token-prediction"),  # every mtp-prefixed name, not only mtp.
    ],
)
def test_what_a_sub_loader_drops_is_skipped_by_that_loader_not_compared_as_loaded(name: str, why: str) -> None:
    r = route(name)
    assert r.component != "unclaimed" and r.skip and why in r.skip


def test_an_unknown_sound_encoder_name_is_what_vllm_raises_on() -> None:
    assert route("sound_encoder.encoder.layers.0.mystery.weight").raises
    assert route("sound_encoder.encoder.layers.0.self_attn.relative_k_proj.weight").raises is None


@pytest.mark.parametrize(
    ("name", "raises"),
    [  # Parakeet maps sound_projection.X (and sound_encoder.projection.X) to projection.X: an RMSNorm and
        # two linears; a name that is neither a parameter nor a buffer raises ValueError
        ("sound_projection.norm.weight", False),
        ("sound_projection.linear1.weight", False),
        ("sound_projection.linear2.bias", False),  # a parameter where projection_bias is set (not read: taken as one)
        ("sound_encoder.projection.linear1.weight", False),  # the same parameter by its module path
        ("sound_projection.norm.bias", True),  # an RMSNorm has no bias
        ("sound_projection.anything.weight", True),
        ("sound_encoder.something_else.weight", True),
    ],
)
def test_the_sound_projection_raises_as_parakeet_does_on_what_it_lacks(name: str, raises: bool) -> None:
    r = route(name)
    assert r.component == "sound" and r.skip is None
    assert bool(r.raises) is raises


@pytest.mark.parametrize(
    ("name", "raises"),
    [  # mlp1 = RMSNorm, Linear, activation, Linear (no biases), looked up in mlp1.named_parameters()
        ("mlp1.0.weight", False),
        ("mlp1.1.weight", False),
        ("mlp1.3.weight", False),
        ("mlp1.2.weight", True),  # the activation has no parameters
        ("mlp1.1.bias", True),
        ("mlp1.1.weight_scale", True),  # the projector is not quantized
        ("mlp10.weight", True),  # claimed by the mlp1 predicate, handed on as "weight"
    ],
)
def test_an_mlp1_name_that_is_not_one_of_its_parameters_is_a_key_error(name: str, raises: bool) -> None:
    r = route(name)
    assert r.component == "mlp1"
    assert bool(r.raises) is raises
    if raises:
        assert "KeyError" in (r.raises or "")


def test_the_vision_final_layernorm_is_routed_only_from_vllm_032_with_mtp_layers() -> None:
    name = "vision_projector.vision_final_layernorm.weight"
    assert route(name).component == "unclaimed"
    routed = route(name, final_layernorm=True)
    assert (routed.component, routed.inline, routed.skip) == ("mlp1", True, None)
    assert route("vision_projector.0.weight", final_layernorm=True).component == "unclaimed"


def test_names_that_load_into_one_parameter_are_found_in_load_order() -> None:
    from nemoverify.engine.compare import find_differences
    from nemoverify.observations import Delivered, Observation

    # Both names are in the checkpoint and each arrives intact, so only the shared parameter shows:
    # vLLM hands `mlp1_old.0.weight` on as `0.weight` (it routes on startswith("mlp1")).
    old, new = (
        Observation(n, "mlp1", "BF16", (4,), 8, d) for n, d in (("mlp1.0.weight", "aa"), ("mlp1_old.0.weight", "bb"))
    )
    delivered = Delivered()
    delivered.add(old)
    delivered.add(new)
    [finding] = find_differences({o.name: o for o in (old, new)}, delivered)
    assert (finding.name, finding.kind) == ("mlp1_old.0.weight", "shared-parameter")
    assert "as mlp1.0.weight, which it overwrites" in finding.message
    alone = Delivered()
    alone.add(old)
    assert find_differences({old.name: old}, alone) == []
    # Against a manifest nothing was replayed (verify hashes stored bytes): not its finding.
    assert find_differences({o.name: o for o in (old, new)}, delivered, "manifest") == []
    # Parakeet's two paths to its projection
    a, b = (
        Observation(n, "sound", "BF16", (4,), 8, "cc")
        for n in ("sound_projection.linear1.weight", "sound_encoder.projection.linear1.weight")
    )
    both = Delivered()
    both.add(a)
    both.add(b)
    assert [f.kind for f in find_differences({a.name: a, b.name: b}, both)] == ["shared-parameter"]
