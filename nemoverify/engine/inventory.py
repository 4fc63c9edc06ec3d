"""`inspect`: what a checkpoint holds and what each component's loader would do with it, from the
headers alone (no tensor is read)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from nemoverify.checkpoint.layout import Checkpoint
from nemoverify.checkpoint.problems import NOT_FOUND_RULES, Problem
from nemoverify.deployment.releases import NEWEST_VLLM
from nemoverify.errors import ExitCode
from nemoverify.model.replay import NO_SOUND_ENCODER, asserts_on_sound, release_routing
from nemoverify.model.routing import COMPONENTS, route
from nemoverify.report import problems_of


@dataclass(frozen=True)
class ComponentInventory:
    component: str
    tensors: int
    bytes: int
    dtypes: dict[str, int]
    skipped: tuple[tuple[str, str], ...]  # (name, reason) the component's loader drops on purpose
    raises: tuple[tuple[str, str], ...] = ()  # (name, reason) the newest release raises on: no load


@dataclass(frozen=True)
class ShardInventory:
    name: str
    size: int
    tensors: int


@dataclass(frozen=True)
class Inventory:
    root: str
    architecture: str | None
    declares_sound: bool
    indexed: bool
    components: dict[str, ComponentInventory]
    shards: tuple[ShardInventory, ...]
    problems: tuple[Problem, ...]

    @property
    def refused(self) -> bool:
        """A problem refuses the checkpoint (exit 3, or 5 where nothing is there)."""
        return any(p.severity == "error" for p in self.problems)

    @property
    def exit_code(self) -> ExitCode:
        errors = [p for p in self.problems if p.severity == "error"]
        if not errors:
            return ExitCode.VERIFIED
        return ExitCode.NOT_FOUND if all(p.rule in NOT_FOUND_RULES for p in errors) else ExitCode.INVALID

    def to_dict(self) -> dict[str, object]:
        return {
            "checkpoint": self.root,
            "architecture": self.architecture,
            "declares_sound": self.declares_sound,
            "indexed": self.indexed,
            "ok": not self.refused,
            "components": {
                c.component: {
                    "tensors": c.tensors,
                    "bytes": c.bytes,
                    "dtypes": c.dtypes,
                    "skipped": [{"name": n, "reason": r} for n, r in c.skipped],
                    "raises": [{"name": n, "reason": r} for n, r in c.raises],
                }
                for c in self.components.values()
            },
            "shards": [{"name": s.name, "size": s.size, "tensors": s.tensors} for s in self.shards],
            "problems": [p.to_dict() for p in self.problems],
        }


def without_inventory(checkpoint: str, error: BaseException) -> dict[str, object]:
    """The JSON of an inspect that `error` ended before its headers were read (a storage error, the
    storage deadline, a crash): `Inventory.to_dict`'s shape, nothing held, the problem that stopped it."""

    _, problems = problems_of(error, checkpoint)
    return Inventory(checkpoint, None, False, False, {}, (), problems).to_dict()


def describe(checkpoint: Checkpoint) -> Inventory:
    """What the checkpoint holds and what the newest vLLM release nemoverify knows does with each
    name (inspect replays no release; `check --vllm` and `matrix` tell one release from another)."""
    by_component: dict[str, list[tuple[str, str, int, str | None]]] = {}
    config = checkpoint.config
    routing = release_routing(NEWEST_VLLM, config)
    for _, info in checkpoint.tensors():
        r = route(info.name, routing)
        skip = r.skip
        if asserts_on_sound(r, False, config.sound_encoder):
            skip = None  # asserted on before Parakeet could skip it: listed under raises
        by_component.setdefault(r.component, []).append((info.name, info.dtype, info.nbytes, skip))
    raises: dict[str, set[tuple[str, str]]] = {}  # over every file vLLM streams, stray ones included
    for shard in checkpoint.streamed:
        for info in shard.header.tensors:
            r = route(info.name, routing)
            if asserts_on_sound(r, False, config.sound_encoder):  # asserted before any sub-loader's rule
                raises.setdefault("sound", set()).add(
                    (info.name, f"{NO_SOUND_ENCODER}, unless text-only mode skips it")
                )
            elif r.raises is not None and r.skip is None:
                raises.setdefault(r.component, set()).add((info.name, r.raises))
    components: dict[str, ComponentInventory] = {}
    for component in (c for c in COMPONENTS if c in by_component or c in raises):
        rows = by_component.get(component, [])  # [] where only a stray file holds the component
        components[component] = ComponentInventory(
            component=component,
            tensors=len(rows),
            bytes=sum(n for _, _, n, _ in rows),
            dtypes=dict(sorted(Counter(dt for _, dt, _, _ in rows).items())),
            skipped=tuple(sorted((name, skip) for name, _, _, skip in rows if skip)),
            raises=tuple(sorted(raises.get(component, ()))),
        )
    shards = tuple(ShardInventory(s.name, s.size, len(s.header.tensors)) for s in checkpoint.shards)
    return Inventory(
        checkpoint.root,
        checkpoint.config.architecture,
        checkpoint.config.declares_sound,
        checkpoint.indexed,
        components,
        shards,
        checkpoint.problems,
    )
