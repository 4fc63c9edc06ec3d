"""Replays of `NemotronH_Nano_VL_V2.load_weights`, before and after vLLM PR 42244, fed the way a
given vLLM release feeds it.

A replay drives a weight iterator exactly as the model does and calls `events.loaded` at the moment
the model would copy a tensor into its parameter. Hashing there is what makes a stale buffer
visible: a reference retained past the iterator's next step reads whatever the loader put there
since. Tensors no parameter receives (skipped by a sub-loader, text-only mode, unclaimed names) are
reported through `events.passed` as the iterator yields them; a name vLLM raises on, through
`events.failed`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

from nemoverify.model.routing import (
    Component,
    LanguageModelParameters,
    Route,
    Routing,
    VisionParameters,
    route,
)

if TYPE_CHECKING:
    import torch

    from nemoverify.checkpoint.config import ModelConfig
    from nemoverify.deployment.options import CheckOptions
    from nemoverify.deployment.releases import VllmRelease

Strategy = Literal["fixed", "legacy"]
TEXT_ONLY = "text-only mode: every modality limit is 0, so vLLM skips it"
Weights = Iterable[tuple[str, "torch.Tensor"]]
Take = Callable[["torch.Tensor"], "torch.Tensor"] | None  # the 0.22+ iterator's clone, or None
Router = Callable[[str], Route]  # `route`, as the release calls it


class LoadEvents(Protocol):
    def loaded(self, name: str, component: Component, tensor: torch.Tensor) -> None: ...
    def passed(self, name: str, component: Component, reason: str, tensor: torch.Tensor) -> None: ...
    def failed(self, name: str, component: Component, reason: str, tensor: torch.Tensor) -> None: ...


class LoadRules(NamedTuple):
    """What one vLLM release does between the streamer and the parameters."""

    load_path: Strategy = "fixed"
    text_only: bool = False  # text-only mode requested *and* honoured by the release (0.21+)
    iterator_clones: bool = False  # the Run:ai weights iterator yields tensor.clone() (0.22+)
    sound_encoder: bool = True  # the config declares a sound encoder; without one, a sound name asserts
    routing: Routing = Routing()  # where the release sends each name


def release_routing(release: VllmRelease, config: ModelConfig) -> Routing:
    """Where `release` sends each name of a model of this config, and which parameters the release
    builds for it where the config determines them (docs/deployments.md, "Where each name goes")."""
    return Routing(
        release.language_model,
        release.ignores_unexpected_bias,
        release.final_layernorm_routing(config.mtp_layers),
        config.convolution_bias,
        config.video_embedder,
        language_model_parameters(config),
        vision_parameters(release, config),
    )


def language_model_parameters(config: ModelConfig) -> LanguageModelParameters | None:
    """NemotronH's parameters for this config (the same module tree in every release 0.20.0-0.33.0),
    or None where config.json does not determine them (`LanguageModelFacts.unmodelled`)."""
    lm = config.language_model
    if lm.unmodelled is not None:
        return None
    return LanguageModelParameters(lm.pattern, lm.use_bias, lm.use_conv_bias, lm.mlp_bias, lm.shared_experts, lm.latent_moe)


def vision_parameters(release: VllmRelease, config: ModelConfig) -> VisionParameters | None:
    """RADIO's parameters for this config and release (its depth comes from the release's table of
    ViT models), or None without vision_config.args. The depth is None (block names unchecked) where
    the release does not know the model or args sets num_hidden_layers itself."""
    vision = config.vision
    if vision is None:
        return None
    depth = None if vision.depth_given else release.vit_depth(vision.model)
    norm_bias = None if vision.norm_type is None else vision.norm_type == "layer_norm"
    return VisionParameters(depth, norm_bias, vision.qkv_bias, vision.qk_normalization)


def load_rules(options: CheckOptions, config: ModelConfig) -> LoadRules:
    """The rules of the options' vLLM release, for a model of this config."""
    release = options.profile.vllm
    routing = release_routing(release, config)
    return LoadRules(
        load_path=options.profile.load_path,
        text_only=options.text_only and release.text_only_skip,
        iterator_clones=release.iterator_clones,
        sound_encoder=config.sound_encoder,
        routing=routing,
    )


def replay(
    weights: Weights,
    events: LoadEvents,
    rules: LoadRules = LoadRules(),
    snapshot: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Feed `weights` to the release's load_weights as its Run:ai weights iterator would.
    `snapshot` takes the place of the 0.22+ iterator's clone (see `Snapshot`); None makes the
    real copy."""
    # vLLM 0.22+ (PR 43464): `runai_safetensors_weights_iterator` yields `tensor.clone()`, taken
    # before it advances the streamer. Taken by the replays as each tensor arrives (a generator
    # around the weights would cost a step per tensor: 25,000 small tensors make it show).
    take = (snapshot or _clone) if rules.iterator_clones else None
    routing = rules.routing

    def router(name: str) -> Route:  # positional, as every pass calls it: one cache entry per name
        return route(name, routing)

    REPLAYS[rules.load_path](weights, events, rules, router, take)


def _clone(w: torch.Tensor) -> torch.Tensor:
    return w.clone()


class Snapshot:
    """The 0.22+ iterator's clone, held as what a check reads of it: dtype, shape and the digest of
    its bytes, hashed when the clone would have been taken.

    Equivalent, byte for byte, to the real clone: a clone taken at yield time holds the bytes the
    yielded tensor has at that instant, and nothing writes to it afterwards (it is the iterator's
    own fresh tensor; the model only reads it, through `param.copy_` or `detach().clone()`). So the
    digest of the clone, whenever the model would copy it, is the digest of the yielded tensor's
    bytes at yield time, which is what is computed here, at that instant (before the iterator
    advances, so before the streamer may reuse the buffer under it). The real clone cost a copy
    of every tensor (on 2 cores it was the largest cost of `check`: fresh pages for every tensor);
    tests/test_check.py runs both ways under --stress with borrowed views, on both load paths, and
    gets identical digests. `detach()` and `clone()` return the snapshot itself: copying an
    immutable snapshot changes nothing."""

    __slots__ = ("dtype", "shape", "nbytes", "digest")

    def __init__(self, dtype: torch.dtype, shape: tuple[int, ...], nbytes: int, digest: str) -> None:
        self.dtype = dtype
        self.shape = shape
        self.nbytes = nbytes
        self.digest = digest

    def detach(self) -> Snapshot:
        return self

    def clone(self) -> Snapshot:
        return self


def _not_loaded(r: Route, text_only: bool) -> str | None:
    if text_only and r.component in ("mlp1", "vision", "sound"):
        return TEXT_ONLY
    return r.skip


NO_SOUND_ENCODER = "vLLM's load_weights asserts the model has a sound encoder (config.json declares no sound_config)"


def asserts_on_sound(r: Route, text_only: bool, sound_encoder: bool) -> bool:
    """load_weights asserts on a sound name when the model has no sound encoder: after the text-only
    skip, before any sub-loader sees the name (so before Parakeet's own skips and raises). `inspect`
    asks it too, knowing no text-only mode."""
    return not sound_encoder and r.component == "sound" and not text_only


def replay_fixed(weights: Weights, events: LoadEvents, rules: LoadRules, router: Router, take: Take) -> None:
    """After PR 42244: language-model weights are consumed as they are yielded; multimodal ones are
    `detach().clone()`d, the iterator is drained, then mlp1, vision and sound are loaded. `take`:
    the 0.22+ iterator's clone, taken as each tensor is yielded."""
    text_only, sound_encoder = rules.text_only, rules.sound_encoder
    deferred: dict[Component, list[tuple[str, torch.Tensor]]] = {"mlp1": [], "vision": [], "sound": []}

    def language_model_weights() -> Iterator[tuple[str, torch.Tensor]]:
        for name, w in weights:
            if take is not None:
                w = take(w)
            r = router(name)
            if r.component == "language_model" and r.skip is None and r.raises is None:  # the common case first
                yield name, w
                continue
            if asserts_on_sound(r, text_only, sound_encoder):
                events.failed(name, "sound", NO_SOUND_ENCODER, w)
                continue
            reason = _not_loaded(r, text_only)
            if reason is not None:
                events.passed(name, r.component, reason, w)
            elif r.raises is not None:
                events.failed(name, r.component, r.raises, w)
            elif r.inline:
                events.loaded(name, r.component, w)
            else:
                deferred[r.component].append((name, w.detach().clone()))

    gen = language_model_weights()
    for name, w in gen:  # language_model.load_weights(gen): param.copy_(w) before the next step
        events.loaded(name, "language_model", w)
    for _ in gen:  # the explicit drain, in case the language model stopped early
        pass
    for component in ("mlp1", "vision", "sound"):
        for name, w in deferred[component]:
            events.loaded(name, component, w)


def replay_legacy(weights: Weights, events: LoadEvents, rules: LoadRules, router: Router, take: Take) -> None:
    """Before PR 42244: one pass keeps *references* to language-model, vision and sound tensors in
    lists (mlp1 alone is copied inline), and only then are the lists loaded. Unsafe with any loader
    that reuses its buffers; kept so users can prove a loader is or is not. `take`: as in
    `replay_fixed`."""
    text_only, sound_encoder = rules.text_only, rules.sound_encoder
    kept: dict[Component, list[tuple[str, torch.Tensor]]] = {"language_model": [], "vision": [], "sound": []}
    for name, w in weights:
        if take is not None:
            w = take(w)
        r = router(name)
        reason = _not_loaded(r, text_only)
        if asserts_on_sound(r, text_only, sound_encoder):  # asserted inside the routing loop
            events.failed(name, "sound", NO_SOUND_ENCODER, w)
        elif reason is not None:
            events.passed(name, r.component, reason, w)
        elif r.component == "mlp1" and r.raises is not None:  # looked up inline: the KeyError is raised here
            events.failed(name, "mlp1", r.raises, w)
        elif r.component == "mlp1":  # mlp1 and, from 0.32, the final layernorm: copied inline
            events.loaded(name, "mlp1", w)
        else:  # a name vLLM raises on is raised on when its sub-loader gets the list
            kept[r.component].append((name, w))
    for component in ("language_model", "vision", "sound"):
        for name, w in kept[component]:
            r = router(name)
            if r.raises is not None:
                events.failed(name, component, r.raises, w)
            else:
                events.loaded(name, component, w)


REPLAYS = {"fixed": replay_fixed, "legacy": replay_legacy}
