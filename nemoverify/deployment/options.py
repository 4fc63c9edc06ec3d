"""One `check` run, fully resolved: the deployment profile, the streamer's buffers, the digest, the
device. The CLI and a Python caller get the same run from the same inputs; contradictions are
`UsageError`s (exit 2), raised before any work.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace

from nemoverify.deployment.profiles import Profile, resolve_profile
from nemoverify.deployment.releases import VLLM_RELEASES, LoadPath, VllmRelease
from nemoverify.deployment.request import Loader, Request
from nemoverify.deployment.ring import (
    STREAMER_DEFAULT_RING,
    chosen_ring_bytes,
    default_ring_bytes,
    fitted_ring,
    within_share,
)
from nemoverify.errors import DeploymentError, UsageError
from nemoverify.hashing import DEFAULT_CHECK_ALGORITHM

EXTRA_CONFIG_KEYS = {"distributed": bool, "concurrency": int, "memory_limit": int}


@dataclass(frozen=True)
class CheckOptions:
    """Everything one check follows. `profile` decides the load path, routing, iterator clone and
    buffer ownership; `memory_limit` is the ring the streamer is given (None: the environment's)."""

    loader: Loader = "runai"
    profile: Profile = field(default_factory=resolve_profile)
    memory_limit: int | None = None
    concurrency: int | None = None
    text_only: bool = False
    algorithm: str = DEFAULT_CHECK_ALGORITHM
    strict: bool = False
    fail_on_unclaimed: bool = False
    device: str = "cpu"
    production_ring: int | None = None  # set when `memory_limit` is nemoverify's bound, not the user's
    ranks: int = 1  # processes streaming the checkpoint: more than one is the streamer's distributed mode

    @property
    def streaming(self) -> str:
        return f"distributed streaming over {self.ranks} ranks" if self.ranks > 1 else "one process"

    def ring_note(self, streamed_bytes: int) -> str | None:
        """Said in the report only where the bound changes anything: a checkpoint larger than our ring
        but not than production's is streamed with more buffer reuse than production's, never less."""
        if self.profile.stress or self.production_ring is None or self.memory_limit is None:
            return None
        if self.memory_limit >= min(self.production_ring, streamed_bytes):
            return None
        return (
            f"streamed with a {self.memory_limit / 1e9:.2f} GB ring where production's is "
            f"{self.production_ring / 1e9:.0f} GB: buffers are reused more here, so a pass is the stronger "
            "result (--memory-limit sets the ring)"
        )

    def fitted_to(self, largest_tensor: int, streamed_bytes: int | None = None) -> CheckOptions:
        """nemoverify's default ring held to its share of the `streamed_bytes` (`ring.within_share`)
        and raised, where needed, to hold two of the largest tensor streamed (`ring.fitted_ring`); a
        ring the user set is left alone.

        Where the ring can decide the verdict (the profile's load path keeps references to views
        into the streamer's buffers: `Profile.ring_decides_verdict`), the ring is production's,
        within the memory bound, not the faster small one: a smaller ring would report a deployment
        as exposed that production's 40 GB ring keeps safe. Everywhere else the size changes the
        speed only."""
        if self.production_ring is None or self.memory_limit is None or self.profile.stress:
            return self
        if self.profile.ring_decides_verdict:
            return replace(self, memory_limit=default_ring_bytes())
        ring = self.memory_limit if streamed_bytes is None else within_share(self.memory_limit, streamed_bytes)
        ring = fitted_ring(ring, largest_tensor)
        return self if ring == self.memory_limit else replace(self, memory_limit=ring)

    @property
    def strategy(self) -> LoadPath:
        return self.profile.load_path

    def to_dict(self) -> dict[str, object]:
        return {
            "loader": self.loader,
            "strategy": self.strategy,
            "stress": self.profile.stress,
            "memory_limit": 0 if self.profile.stress else self.memory_limit,
            "concurrency": self.concurrency,
            "text_only": self.text_only,
            "algorithm": self.algorithm,
            "strict": self.strict,
            "fail_on_unclaimed": self.fail_on_unclaimed,
            "device": self.device,
            "ranks": self.ranks,
        }


def parse_extra_config(text: str | None, release: VllmRelease) -> tuple[dict[str, int], list[str]]:
    """vLLM's `--model-loader-extra-config` for the Run:ai loader, as users paste it from a deployment,
    taken as `release` takes it. 0.20-0.23 set a known key only where its value has the right type and
    ignore everything else (a note says so); 0.24 on refuse an unknown key or a wrong type at start-up,
    and a concurrency below 1 or a memory_limit below 1 (0.24.0) or -1 (0.25 on): a usage error here,
    as the deployment would not start. Raises ExtraConfigRefused (a UsageError) for those."""
    if text is None:
        return {}, []
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"--model-loader-extra-config is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError("--model-loader-extra-config takes a JSON object")
    refuses = release.rejects_unknown_extra_config
    notes: list[str] = []
    unknown = sorted(k for k in data if k not in EXTRA_CONFIG_KEYS)
    if unknown and refuses:
        raise ExtraConfigRefused(
            f"--model-loader-extra-config: vLLM {release.name} refuses unknown keys {', '.join(unknown)} "
            f"(it takes {', '.join(EXTRA_CONFIG_KEYS)}) and does not start"
        )
    if unknown:
        notes.append(f"vLLM {release.name} ignores model_loader_extra_config keys {', '.join(unknown)}")
    out: dict[str, int] = {}
    for key, kind in EXTRA_CONFIG_KEYS.items():
        if key not in data:
            continue
        value: object = data[key]
        wanted = "true or false" if kind is bool else "an integer"
        if isinstance(value, int) and isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            least = _least(key, release)
            if least is not None and value < least:
                if refuses:
                    raise ExtraConfigRefused(
                        f"--model-loader-extra-config: vLLM {release.name} refuses {key} {value} (less than "
                        f"{least}) and does not start"
                    )
                # vLLM hands it on; the streamer would refuse it and the load fail: said before any work
                raise UsageError(
                    f"--model-loader-extra-config: {key} {value} is less than {least}, which the streamer refuses"
                )
            out[key] = int(value)  # a bool is an int: true for "distributed" is 1
        elif refuses:
            raise ExtraConfigRefused(
                f"--model-loader-extra-config: vLLM {release.name} refuses {key} {json.dumps(value)} (not {wanted}) "
                "and does not start"
            )
        elif isinstance(value, bool):
            # 0.20-0.23 check isinstance(value, int), which a bool passes, and set the variable to the
            # text "True": the streamer refuses it ("Invalid request parameters") and nothing loads
            # (the differential harness, xcfg-concurrency-bool).
            raise ExtraConfigRefused(
                f"--model-loader-extra-config: vLLM {release.name} hands the streamer {key} "
                f"{json.dumps(value)} as the text {str(value)!r}, which the streamer refuses: the load fails"
            )
        else:  # vLLM 0.20-0.23 set a key only when isinstance(value, int/bool): any other is ignored
            notes.append(f"vLLM {release.name} ignores model_loader_extra_config {key} {json.dumps(value)}: not {wanted}")
    return out, notes


def _least(key: str, release: VllmRelease) -> int | None:
    """The least value of `key` the release (0.24 on) or, before it, the streamer takes."""
    if key == "memory_limit":
        return 1 if release.extra_config == "positive" else -1
    return 1 if key == "concurrency" else None


class ExtraConfigRefused(UsageError):
    """The release's Run:ai loader refuses this --model-loader-extra-config at start-up."""


def resolve_check(request: Request, *, manifest_algorithm: str | None = None, all_modes: bool = False) -> CheckOptions:
    """Resolve what the user asked for into one complete run; raise UsageError on contradictions.
    `manifest_algorithm`: the digest of the manifest the run checks against. `all_modes`: for
    `matrix`, whose rows stream both ways, so the extra config's `distributed` chooses nothing there."""
    loader, nproc, distributed, device = request.loader, request.nproc, request.distributed, request.device
    stress, text_only, extra_config = request.stress, request.text_only, request.model_loader_extra_config
    if stress and loader == "safetensors":
        raise UsageError("--stress applies to the runai loader only")
    if (nproc > 1 or distributed) and loader == "safetensors":
        raise UsageError("distributed streaming needs --loader runai")
    if nproc > 1 and distributed:
        raise UsageError("--nproc launches the ranks itself; --distributed is for ranks torchrun started")
    if device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", device):
        raise UsageError(f"--device {device!r}: use cpu, cuda or cuda:N")
    profile = resolve_profile(request.vllm, request.streamer, stress, request.strategy)
    if request.strict and profile.unrecognised is not None:
        raise DeploymentError(f"{profile.unrecognised} (--strict)")
    # A matrix's rows take or refuse the config each as its own release does (engine.matrix): its
    # values are read here as the releases that refuse nothing read them.
    try:
        extra, notes = parse_extra_config(extra_config, VLLM_RELEASES[0] if all_modes else profile.vllm)
    except ExtraConfigRefused:
        if not all_modes:
            raise
        extra, notes = {}, []  # refused by the oldest rows too: each row says so itself (engine.matrix)
    if text_only and not profile.vllm.text_only_skip:
        notes.append(f"vLLM {profile.vllm.name} has no text-only skip: mlp1, vision and sound load regardless")
    if extra.get("distributed") and nproc == 1 and not distributed and not all_modes:
        raise UsageError('"distributed": true needs --nproc N (N > 1) or --distributed under torchrun')
    if extra_config is not None and (nproc > 1 or distributed) and not extra.get("distributed") and not all_modes:
        # The pasted config is the deployment: without "distributed": true (a bool) vLLM streams
        # whole on every rank, so verifying distributed streaming would answer another question.
        given = json.loads(extra_config).get("distributed")  # parsed above: valid JSON, an object
        said = (
            f'its "distributed" is {json.dumps(given)}, not true'
            if given is not None
            else 'it has no "distributed": true'
        )
        raise UsageError(
            f"--model-loader-extra-config: {said}, so vLLM does not stream distributed; "
            "leave out --nproc/--distributed, or set it"
        )
    concurrency, memory_limit = request.concurrency, request.memory_limit
    for key, flag, given_value in (
        ("concurrency", "--concurrency", concurrency),
        ("memory_limit", "--memory-limit", memory_limit),
    ):
        if key in extra and given_value is not None and given_value != extra[key]:
            raise UsageError(f"{flag} {given_value} and the extra config's {key} {extra[key]} disagree: give it once")
    concurrency = extra.get("concurrency", concurrency)
    memory_limit = extra.get("memory_limit", memory_limit)
    production_ring = None
    if memory_limit is None and not stress and "RUNAI_STREAMER_MEMORY_LIMIT" not in os.environ:
        # Production's ring is the streamer's 40 GB default (0.15/0.16 distributed: no limit at all).
        # nemoverify's ring is the one measured fastest (`ring.chosen_ring_bytes`), within a quarter of the
        # memory it has, fitted to the largest tensor at the stream; a smaller ring only reuses
        # buffers more, a stricter check.
        memory_limit, production_ring = chosen_ring_bytes(), STREAMER_DEFAULT_RING
    # On a GPU the default digest is lin128, computed where the tensor lands (no copy back to the host).
    default = "lin128" if device.startswith("cuda") and (nproc > 1 or distributed) else DEFAULT_CHECK_ALGORITHM
    chosen = request.algorithm or manifest_algorithm or default
    if manifest_algorithm is not None and chosen != manifest_algorithm:
        raise UsageError(f"--algorithm {chosen} differs from the manifest's {manifest_algorithm}; leave it out")
    profile = replace(profile, notes=profile.notes + tuple(notes))
    return CheckOptions(
        loader=loader,
        profile=profile,
        memory_limit=memory_limit,
        concurrency=concurrency,
        text_only=text_only,
        algorithm=chosen,
        strict=request.strict,
        fail_on_unclaimed=request.fail_on_unclaimed,
        device=device,
        production_ring=production_ring,
        ranks=nproc if nproc > 1 else int(os.environ.get("WORLD_SIZE", "1") or 1) if distributed else 1,
    )
