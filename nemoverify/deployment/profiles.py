"""Deployment profiles: what a vLLM release and a Run:ai streamer release do to a checkpoint on its
way into the model.

A user's question is never "is the load path safe in general" but "is it safe in *my* deployment".
Each `VllmRelease` and `StreamerRelease` below is one row of the facts read from the published wheels
(README, "Which deployments are exposed?"); a `Profile` joins one of each with the mode (as deployed,
or under maximum buffer reuse) and the overrides a user asked for, and everything downstream (the
replay, routing, the streamer's settings) reads it instead of deciding for itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, get_args

from nemoverify.errors import UsageError

LoadPath = Literal["fixed", "legacy"]
LOAD_PATHS: tuple[LoadPath, ...] = get_args(LoadPath)  # --strategy's choices

# Architectures vLLM's registry sends to NemotronH_Nano_VL_V2 (its `load_weights` is what we replay).
_ARCHITECTURES = frozenset(
    {"NemotronH_Nano_VL_V2", "NemotronH_Nano_Omni_Reasoning_V3", "NemotronH_Super_Omni_Reasoning_V3"}
)
_ARCHITECTURES_031 = _ARCHITECTURES | {"NemotronH_Omni_Reasoning_V3"}


@dataclass(frozen=True)
class VllmRelease:
    """One vLLM release (or run of releases that behave alike) as it loads Nemotron Nano VL."""

    name: str  # as shown: "0.20", "0.22-0.30"
    first: tuple[int, int]  # (major, minor), inclusive
    last: tuple[int, int]
    load_path: LoadPath  # "legacy": before PR 42244, lists of references; "fixed": after it
    text_only_skip: bool  # all modality limits 0 skip mlp1/vision/sound (0.20 loads them regardless)
    iterator_clones: bool  # runai_safetensors_weights_iterator yields tensor.clone() (PR 43464)
    final_layernorm: bool  # routes vision_projector.vision_final_layernorm.* when the LLM has MTP layers
    architectures: frozenset[str]
    rejects_unknown_extra_config: bool  # model_loader_extra_config keys it does not know are an error

    def covers(self, major: int, minor: int) -> bool:
        return self.first <= (major, minor) <= self.last


VLLM_RELEASES: tuple[VllmRelease, ...] = (
    VllmRelease("0.20", (0, 20), (0, 20), "legacy", False, False, False, _ARCHITECTURES, False),
    VllmRelease("0.21", (0, 21), (0, 21), "legacy", True, False, False, _ARCHITECTURES, False),
    VllmRelease("0.22-0.30", (0, 22), (0, 30), "fixed", True, True, False, _ARCHITECTURES, False),
    VllmRelease("0.31", (0, 31), (0, 31), "fixed", True, True, False, _ARCHITECTURES_031, False),
    VllmRelease("0.32", (0, 32), (0, 32), "fixed", True, True, True, _ARCHITECTURES_031, False),
    VllmRelease("0.33", (0, 33), (0, 33), "fixed", True, True, True, _ARCHITECTURES_031, True),
)
NEWEST_VLLM = VLLM_RELEASES[-1]


@dataclass(frozen=True)
class StreamerRelease:
    """One runai-model-streamer release as vLLM drives it (vLLM never passes `owned`)."""

    name: str
    minor: tuple[int, int]
    owned_parameter: bool  # 0.17 added `owned=True` by default; before it, every tensor is a view
    # Distributed: 0.15/0.16 force the reader's memory limit to -1 when none is set; 0.17 divides the
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


def is_nano_vl(architecture: str) -> bool:
    """Whether any vLLM release nemoverify knows sends this architecture to NemotronH_Nano_VL_V2."""
    return any(architecture in release.architectures for release in VLLM_RELEASES)


def _minor(version: str, what: str) -> tuple[int, int]:
    m = re.match(r"v?(\d+)\.(\d+)", version.strip())
    if not m:
        raise UsageError(f"{what} {version!r}: give a release such as 0.20.1 or 0.33")
    return int(m.group(1)), int(m.group(2))


def installed_version(distribution: str) -> str | None:
    """A package's version from its metadata, without importing it (vLLM takes seconds to import)."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def vllm_release(version: str) -> VllmRelease:
    major, minor = _minor(version, "--vllm")
    for release in VLLM_RELEASES:
        if release.covers(major, minor):
            return release
    known = f"{VLLM_RELEASES[0].name} to {NEWEST_VLLM.name}"
    if (major, minor) > NEWEST_VLLM.last:
        raise UsageError(
            f"--vllm {version}: newer than any release nemoverify knows ({known}); its load path is not known. "
            f"Pass --vllm {NEWEST_VLLM.name} to check against the newest known behaviour"
        )
    raise UsageError(f"--vllm {version}: older than any release nemoverify knows ({known})")


def streamer_release(version: str) -> StreamerRelease:
    minor = _minor(version, "--streamer")
    for release in STREAMER_RELEASES:
        if release.minor == minor:
            return release
    names = ", ".join(r.name for r in STREAMER_RELEASES)
    raise UsageError(f"--streamer {version}: nemoverify knows streamer releases {names}")


@dataclass(frozen=True)
class Profile:
    """One deployment: a vLLM release, a streamer release, and how hard buffers are reused.

    `stress` forces the worst case (borrowed views, a ring of the largest tensor, staging buffers of
    the largest tensor): a pass under stress means "safe even under maximum buffer reuse"; a failure
    under stress alone means "unsafe if buffers are ever reused this hard", not "corrupted as deployed".
    """

    vllm: VllmRelease
    streamer: StreamerRelease
    stress: bool = False
    vllm_source: str = ""  # how the release was chosen: "--vllm 0.20.1", "installed 0.33.0", ...
    installed_streamer: str | None = None  # the runai-model-streamer actually installed
    load_path_override: LoadPath | None = None  # --strategy, for experiments
    notes: tuple[str, ...] = field(default=())

    @property
    def load_path(self) -> LoadPath:
        return self.load_path_override or self.vllm.load_path

    @property
    def borrowed(self) -> bool:
        """Whether the replay receives views into buffers the streamer reuses."""
        return self.stress or not self.streamer.owns_tensors

    @property
    def ring_decides_verdict(self) -> bool:
        """Whether the streamer's ring size can change what the model receives: only when the load
        path keeps references (pre-fix) to views into reused buffers, with no iterator clone between."""
        return self.load_path == "legacy" and self.borrowed and not self.vllm.iterator_clones

    @property
    def emulated(self) -> bool:
        """The installed streamer is another release than the profile's: its behaviour is emulated."""
        if self.installed_streamer is None:
            return False
        return _minor(self.installed_streamer, "streamer") != self.streamer.minor

    @property
    def mode(self) -> str:
        return "stress" if self.stress else "as deployed"

    @property
    def overrides(self) -> tuple[str, ...]:
        return (f"--strategy {self.load_path_override}",) if self.load_path_override else ()

    def describe(self) -> str:
        """One line for the report's header."""
        path = "pre-fix load path" if self.load_path == "legacy" else "fixed load path (PR 42244)"
        clones = "iterator clones" if self.vllm.iterator_clones else "iterator does not clone"
        held = "borrowed views" if self.borrowed else "owned tensors"
        streamer = f"streamer {self.streamer.name} ({held}"
        if self.emulated:
            streamer += f"; emulated on {self.installed_streamer}"
        streamer += ")"
        overridden = f"; overridden: {', '.join(self.overrides)}" if self.overrides else ""
        return f"vLLM {self.vllm.name} ({path}, {clones}) + {streamer}, {self.mode}{overridden}"

    def to_dict(self) -> dict[str, object]:
        return {
            "vllm": self.vllm.name,
            "vllm_source": self.vllm_source,
            "streamer": self.streamer.name,
            "streamer_installed": self.installed_streamer,
            "emulated": self.emulated,
            "mode": "stress" if self.stress else "deployed",
            "load_path": self.load_path,
            "iterator_clones": self.vllm.iterator_clones,
            "text_only_skip": self.vllm.text_only_skip,
            "borrowed_views": self.borrowed,
            "overrides": list(self.overrides),
            "notes": list(self.notes),
        }


def resolve_profile(
    vllm: str = "auto",
    streamer: str | None = None,
    stress: bool = False,
    load_path: LoadPath | None = None,
) -> Profile:
    """The profile a run follows. `vllm="auto"` takes the installed vLLM's version from its package
    metadata (never importing it), else the newest release nemoverify knows; `streamer=None` takes
    the installed streamer's release."""
    installed_streamer = installed_version("runai-model-streamer")
    if vllm == "auto":
        found = installed_version("vllm")
        if found is not None:
            release, source = vllm_release(found), f"installed vllm {found}"
        else:
            release, source = NEWEST_VLLM, "newest known (no vLLM installed; pass --vllm VERSION)"
    else:
        release, source = vllm_release(vllm), f"--vllm {vllm}"
    if streamer is None:
        if installed_streamer is None:
            raise UsageError("runai-model-streamer is not installed; pass --streamer VERSION or install it")
        chosen = streamer_release(installed_streamer)
    else:
        chosen = streamer_release(streamer)
    return Profile(release, chosen, stress, source, installed_streamer, load_path)


def all_profiles(installed_streamer: str | None, streamers: tuple[str, ...] = ("0.16", "0.17")) -> list[Profile]:
    """Every vLLM release against each streamer behaviour, as deployed and under stress: the matrix."""
    out: list[Profile] = []
    for release in VLLM_RELEASES:
        for name in streamers:
            for stress in (False, True):
                out.append(Profile(release, streamer_release(name), stress, "matrix", installed_streamer))
    return out
