"""Deployment profiles: one vLLM release row and one streamer release (`releases`), the mode (as
deployed, or under maximum buffer reuse) and the overrides a user asked for. Everything downstream
(the replay, routing, the streamer's settings) reads the profile instead of deciding for itself.

A user's question is never "is the load path safe in general" but "is it safe in *my* deployment".
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nemoverify.deployment.installed import installed_version, recognise_installed_vllm
from nemoverify.deployment.releases import (
    NEWEST_VLLM,
    LoadPath,
    StreamerRelease,
    VllmRelease,
    minor_of,
    streamer_release,
    vllm_release,
)
from nemoverify.errors import UsageError


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
    unrecognised: str | None = None  # why the installed vLLM's code is not a known release's

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
        return minor_of(self.installed_streamer, "streamer") != self.streamer.minor

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
            "vllm_code_recognised": self.unrecognised is None,
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
    notes: tuple[str, ...] = ()
    unrecognised = None
    if vllm == "auto":
        recognised = recognise_installed_vllm()
        if recognised is None:
            release, source = NEWEST_VLLM, "newest known (no vLLM installed; pass --vllm VERSION)"
        else:
            release, source = recognised.release, recognised.source
            if recognised.differs:
                unrecognised = "; ".join(recognised.notes)
            else:
                notes = recognised.notes
    else:
        release, source = vllm_release(vllm), f"--vllm {vllm}"
    if streamer is None:
        if installed_streamer is None:
            raise UsageError("runai-model-streamer is not installed; pass --streamer VERSION or install it")
        chosen = streamer_release(installed_streamer)
    else:
        chosen = streamer_release(streamer)
    return Profile(release, chosen, stress, source, installed_streamer, load_path, notes, unrecognised)


