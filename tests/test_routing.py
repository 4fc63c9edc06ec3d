"""Routing follows each vLLM release's load_weights predicates, its sub-loaders' skips and raises, and
the language model's renames, as read from that release's code (docs/deployments.md cites the lines;
the differential harness runs that code)."""

import pytest

from nemoverify.deployment.releases import VLLM_RELEASES, vllm_release
from nemoverify.engine.compare import find_differences
from nemoverify.model.routing import Routing, route
from nemoverify.observations import Delivered, Observation

ROUTINGS = {
    "0.20": Routing("0.20", ignores_unexpected_bias=False),
    "0.25": Routing("0.20", ignores_unexpected_bias=True),
    "0.26": Routing("0.26"),
    "0.29": Routing("0.29"),
    "0.32": Routing("0.29", final_layernorm="with MTP"),
    "0.32 without MTP": Routing("0.29", final_layernorm="without MTP"),
}


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
    for routing in ROUTINGS.values():
        r = route(name, routing)
        assert (r.component, r.handed_on) == (component, handed_on)


@pytest.mark.parametrize(
    "name",
    [
        "vision_model.radio_model.input_conditioner.norm_mean",
        "vision_model.radio_model.summary_idxs",
        "vision_model.radio_model.model.blocks.3.ls1.gamma",
        "vision_model.radio_model.model.blocks.3.ls2",
        "sound_encoder.encoder.feature_extractor.featurizer.fb",
        "language_model.mtp.layers.0.eh_proj.weight",
        "language_model.mtp_head.weight",  # the prefix test has no dot: every mtp* name
        "language_model.backbone.mtp.layers.0.norm.weight",  # mtp after the backbone -> model rename, 0.20-0.25
    ],
)
def test_sub_loader_skips_are_skips_not_errors(name: str) -> None:
    for release, routing in ROUTINGS.items():
        if name.startswith("language_model.backbone.mtp") and release not in ("0.20", "0.25"):
            continue  # 0.26+: model.mtp.* reaches the walk (whether NemotronH has it is its parameter set's to say)
        r = route(name, routing)
        assert r.component != "unclaimed" and r.skip and r.raises is None, (release, r)


@pytest.mark.parametrize(
    "name",
    [
        "language_model.backbone.layers.3.mixer.rotary_emb.inv_freq",
        "language_model.rotary_emb.cos_cached",
        "language_model.backbone.layers.3.mixer.rotary_emb.inv_freq_old",  # a substring anywhere
        "language_model.backbone.xrotary_emb.sin_cached",
        "language_model.backbone.rotary_pos_emb.inv_freq",
        "language_model.backbone.layers.1.rotary_pos_emb.inv_freq.scale",
    ],
)
def test_nemotron_h_drops_every_name_that_contains_a_rotary_cache(name: str) -> None:
    """AutoWeightsLoader's ROTARY_EMBEDS_UNUSED_WEIGHTS (0.20-0.28, tested with `in`) and, from 0.29,
    the same four substrings mapped to None."""
    for routing in ROUTINGS.values():
        r = route(name, routing)
        assert r.skip and "rotary" in r.skip, r


def test_claimed_weights_are_not_skipped() -> None:
    for routing in ROUTINGS.values():
        assert route("language_model.backbone.layers.0.mixer.rotary_emb.scale", routing).skip is None  # not a cache
        assert route("vision_model.radio_model.model.blocks.0.mlp.fc1.weight", routing).skip is None
        assert route("sound_encoder.encoder.layers.0.conv.norm.running_mean", routing).skip is None


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("vision_model.radio_model.model.norm.weight", "RADIO maps only"),  # not patch_generator nor blocks
        ("vision_model.radio_model.model.blocks.0", "RADIO maps only"),  # a block name of fewer than 4 parts
        ("vision_model.radio_model.model.patch_generator.video_embedder.weight", "no video embedder"),
        ("sound_extra.weight", "Parakeet loads only"),  # a sound* name outside the two prefixes
    ],
)
def test_what_a_sub_loader_drops_is_skipped_by_that_loader_not_compared_as_loaded(name: str, why: str) -> None:
    r = route(name)
    assert r.component != "unclaimed" and r.skip and why in r.skip


def test_radio_loads_the_video_embedder_only_where_the_config_builds_one() -> None:
    name = "vision_model.radio_model.model.patch_generator.video_embedder.weight"
    r = route(name, Routing(video_embedder=True))
    assert r.skip is None and r.destination == "model.patch_generator.video_embedder.weight"


@pytest.mark.parametrize(
    ("name", "destination"),
    [
        ("language_model.backbone.layers.0.mixer.A_log", "model.layers.0.mixer.A"),
        ("language_model.model.layers.0.mixer.A", "model.layers.0.mixer.A"),
        ("language_model.backbone.embeddings.weight", "model.embed_tokens.weight"),
        ("language_model.backbone.embed_tokens.weight", "model.embed_tokens.weight"),
        ("language_model.backbone.layers.4.mixer.q_proj.weight", "model.layers.4.mixer.qkv_proj.weight (q)"),
        ("language_model.backbone.layers.4.mixer.v_proj.weight", "model.layers.4.mixer.qkv_proj.weight (v)"),
        ("language_model.lm_head.weight", "lm_head.weight"),
        ("vision_model.radio_model.model.blocks.1.attn.qkv.weight", "model.encoder.layers.1.attn.qkv.weight"),
        ("sound_projection.linear1.weight", "projection.linear1.weight"),
        ("sound_encoder.projection.linear1.weight", "projection.linear1.weight"),
        ("mlp1.3.weight", "3.weight"),
    ],
)
def test_every_release_names_the_parameter_a_name_loads_into(name: str, destination: str) -> None:
    """backbone -> model (a prefix, no dot needed), A_log -> A and embeddings -> embed_tokens (first
    occurrence, anywhere), q/k/v -> shards of qkv_proj: in NemotronHModel.load_weights to 0.25.1, in
    the mapper from 0.26."""
    for routing in ROUTINGS.values():
        assert route(name, routing).destination == destination


@pytest.mark.parametrize(
    "name",
    [
        "language_model.foo.weight",  # NemotronHForCausalLM's top level holds model and lm_head only
        "language_model.backbone_old.layers.0.norm.weight",  # backbone_old -> model_old: no such module
        "language_model.lm_head.extra",
    ],
)
def test_a_language_model_name_outside_model_and_lm_head_fails_the_load_in_every_release(name: str) -> None:
    for routing in ROUTINGS.values():
        r = route(name, routing)
        assert r.component == "language_model" and r.raises and "ValueError" in r.raises, r


def test_the_language_model_module_itself_is_a_key_error_to_025_and_a_value_error_after() -> None:
    """`model` alone: to 0.25.1 AutoWeightsLoader hands NemotronHModel.load_weights the name "", a
    KeyError; from 0.26.0 the walk finds no module or parameter named `model.`."""
    for release, routing in ROUTINGS.items():
        r = route("language_model.model", routing)
        error = "KeyError" if release in ("0.20", "0.25") else "ValueError"
        assert r.component == "language_model" and r.raises and error in r.raises, (release, r)


def test_lm_head_bias_fails_the_load_before_025_and_is_ignored_after() -> None:
    """AutoWeightsLoader ignores a bias its layer lacks from 0.25.0 (`ignore_unexpected_suffixes`)."""
    assert route("language_model.lm_head.bias", ROUTINGS["0.20"]).raises
    later = route("language_model.lm_head.bias", ROUTINGS["0.26"])
    assert later.raises is None and later.skip


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
        # vLLM forces attention_bias=False: the encoder's attention projections and feed-forward
        # linears have no biases (transformers' ParakeetEncoder takes both from attention_bias)
        ("sound_encoder.encoder.layers.0.self_attn.q_proj.bias", True),
        ("sound_encoder.encoder.layers.0.feed_forward1.linear1.bias", True),
        ("sound_encoder.encoder.layers.0.self_attn.bias_u", False),
        ("sound_encoder.encoder.layers.0.conv.depthwise_conv.bias", False),
    ],
)
def test_the_sound_encoder_raises_as_parakeet_does_on_what_it_lacks(name: str, raises: bool) -> None:
    r = route(name)
    assert r.component == "sound" and r.skip is None
    assert bool(r.raises) is raises


def test_a_sound_config_without_convolution_biases_makes_parakeet_skip_them() -> None:
    """ProjectedParakeet._can_skip_missing_named_param, with sound_config.convolution_bias false."""
    for conv in ("pointwise_conv1", "depthwise_conv", "pointwise_conv2"):
        name = f"sound_encoder.encoder.layers.1.conv.{conv}.bias"
        r = route(name, Routing(convolution_bias=False))
        assert r.skip and "convolution_bias" in r.skip and r.raises is None
        assert route(name).skip is None  # with the biases, they load
    assert route("sound_encoder.encoder.layers.1.conv.norm.bias", Routing(convolution_bias=False)).skip is None


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


def test_the_vision_final_layernorm_is_routed_and_asserted_from_vllm_032() -> None:
    """0.32.0: every name under vision_projector.vision_final_layernorm. is routed; it must be a
    parameter of the LayerNorm, which exists only for a language model with MTP layers."""
    weight, extra = "vision_projector.vision_final_layernorm.weight", "vision_projector.vision_final_layernorm.scale"
    assert route(weight, ROUTINGS["0.29"]).component == "unclaimed"  # before 0.32: dropped silently
    routed = route(weight, ROUTINGS["0.32"])
    assert (routed.component, routed.inline, routed.skip, routed.raises) == ("mlp1", True, None, None)
    assert route(extra, ROUTINGS["0.32"]).raises  # with MTP layers, any other name asserts
    assert route(weight, ROUTINGS["0.32 without MTP"]).raises  # without them, every name asserts
    assert "AssertionError" in (route(weight, ROUTINGS["0.32 without MTP"]).raises or "")
    assert route("vision_projector.0.weight", ROUTINGS["0.32"]).component == "unclaimed"


def test_every_release_row_routes_as_its_code() -> None:
    assert vllm_release("0.25.1").language_model == "0.20" and vllm_release("0.26.0").language_model == "0.26"
    assert vllm_release("0.29.0").language_model == "0.29"
    assert [r.ignores_unexpected_bias for r in VLLM_RELEASES].index(True) == [r.name for r in VLLM_RELEASES].index(
        "0.25.0-0.25.1"
    )


def _delivered(*names: str, component: str = "language_model") -> tuple[dict[str, Observation], Delivered]:
    """Every name indexed (in the reference), each loaded in the order given."""
    delivered = Delivered()
    for i, name in enumerate(names):
        delivered.add(Observation(name, component, "BF16", (4,), 8, f"d{i}"))
    return dict(delivered.observations), delivered


@pytest.mark.parametrize(
    "names",
    [
        ("language_model.backbone.norm_f.weight", "language_model.model.norm_f.weight"),
        ("language_model.backbone.layers.0.mixer.A_log", "language_model.backbone.layers.0.mixer.A"),
        ("language_model.backbone.embeddings.weight", "language_model.backbone.embed_tokens.weight"),
        ("language_model.backbone.layers.4.mixer.q_proj.weight", "language_model.model.layers.4.mixer.q_proj.weight"),
    ],
)
def test_two_names_the_language_model_loads_into_one_parameter_both_fail(names: tuple[str, str]) -> None:
    """Each arrives intact, so only the shared parameter shows; the model holds the one loaded last,
    which one file's order fixes."""
    one_file = {n: ["model-00001-of-00002.safetensors"] for n in names}
    for routing in ROUTINGS.values():
        expected, delivered = _delivered(*names)
        findings = find_differences(expected, delivered, routing=routing, files=one_file)
        assert [(f.name, f.kind) for f in findings] == [(n, "shared-parameter") for n in names]
        lost, held = findings
        assert f"the model holds {names[1]}, not this one" in lost.message
        assert "the model holds this one" in held.message


def test_which_of_two_names_in_different_files_the_model_holds_depends_on_stream_order() -> None:
    """The streamer yields the tensors of several files in the order their reads complete (0.17), so
    the one loaded last is this run's, not a fact about the checkpoint: both fail, neither is said to
    be held."""
    names = ("language_model.backbone.norm_f.weight", "language_model.model.norm_f.weight")
    expected, delivered = _delivered(*names)
    apart = {names[0]: ["model-00001-of-00002.safetensors"], names[1]: ["model-00002-of-00002.safetensors"]}
    findings = find_differences(expected, delivered, routing=Routing(), files=apart)
    assert [f.kind for f in findings] == ["shared-parameter"] * 2
    for f in findings:
        assert "depends on stream order" in f.message and "different files" in f.message
        assert "the model holds this one" not in f.message and "not this one" not in f.message
    assert "(in this run: this one)" in findings[1].message
    assert f"(in this run: {names[1]})" in findings[0].message
    # Without the files: a name only an unindexed file holds, beside an indexed one, is in another file.
    unindexed = {names[0]: expected[names[0]]}
    shared = [f for f in find_differences(unindexed, delivered, routing=Routing()) if f.kind == "shared-parameter"]
    assert len(shared) == 2 and all("different files" in f.message for f in shared)
    # Neither known: this run's outcome, and on what it depends.
    for f in find_differences(expected, delivered, routing=Routing()):
        assert "in this run" in f.message and "depends on stream order where they are in different files" in f.message
        assert "the model holds this one" not in f.message


def test_q_k_and_v_are_shards_of_one_parameter_not_a_shared_one() -> None:
    names = [f"language_model.backbone.layers.4.mixer.{p}_proj.weight" for p in "qkv"]
    expected, delivered = _delivered(*names)
    for routing in ROUTINGS.values():
        assert find_differences(expected, delivered, routing=routing) == []


def test_names_that_load_into_one_parameter_are_found_in_load_order() -> None:
    # vLLM hands `mlp1_old.0.weight` on as `0.weight` (it routes on startswith("mlp1")).
    expected, delivered = _delivered("mlp1.0.weight", "mlp1_old.0.weight", component="mlp1")
    one_file = {"mlp1.0.weight": ["a.safetensors"], "mlp1_old.0.weight": ["a.safetensors"]}
    findings = find_differences(expected, delivered, routing=Routing(), files=one_file)
    assert [(f.name, f.kind) for f in findings] == [
        ("mlp1.0.weight", "shared-parameter"),
        ("mlp1_old.0.weight", "shared-parameter"),
    ]
    assert "mlp1 parameter 0.weight after mlp1.0.weight" in findings[1].message
    alone, one = _delivered("mlp1.0.weight", component="mlp1")
    assert find_differences(alone, one, routing=Routing()) == []
    # Against a manifest nothing was replayed (verify hashes stored bytes): not its finding.
    assert find_differences(expected, delivered, "manifest") == []
    # Parakeet's two paths to its projection
    both, paths = _delivered("sound_projection.linear1.weight", "sound_encoder.projection.linear1.weight", component="sound")
    assert [f.kind for f in find_differences(both, paths, routing=Routing())] == ["shared-parameter"] * 2


@pytest.mark.parametrize("routing", ROUTINGS.values(), ids=ROUTINGS.keys())
def test_a_name_is_a_sound_one_exactly_when_it_starts_with_sound(routing: Routing) -> None:
    """`model.checks.has_sound` tests the prefix instead of routing every name."""
    names = [
        "sound_encoder.encoder.layers.0.conv.depthwise_conv.weight",
        "sound_projection.linear1.weight",
        "soundX",
        "language_model.sound_encoder.weight",
        "mlp1.sound.weight",
        "vision_model.radio_model.sound.weight",
        "vision_projector.vision_final_layernorm.weight",
        "xsound_encoder.weight",
    ]
    for name in names:
        assert (route(name, routing).component == "sound") == name.startswith("sound"), name


def test_the_language_model_prefilters_admit_every_name_they_guard() -> None:
    """`_language_model` tests "rotary_" and "_proj" before the lists they stand for."""
    from nemoverify.model.routing import _STACKED, ROTARY_CACHES

    assert all("rotary_" in cache_name for cache_name in ROTARY_CACHES)
    assert all("_proj" in old for old, _ in _STACKED)
    for cache_name in ROTARY_CACHES:
        assert route(f"language_model.backbone.layers.0.mixer.x{cache_name}y").skip is not None
