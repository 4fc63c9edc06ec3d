"""Compare what the candidate delivered (per rank) with the reference, tensor by tensor."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from nemoverify.hashing import root_digest
from nemoverify.model.routing import COMPONENTS, Routing, route
from nemoverify.observations import Delivered, Observation
from nemoverify.report import ComponentSummary, Finding, FindingKind, Skipped, Source


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def find_differences(
    expected: Mapping[str, Observation],
    delivered: Delivered,
    against: Source = "reference",
    rank: int | None = None,
    routing: Routing | None = None,
    files: Mapping[str, Collection[str]] | None = None,
) -> list[Finding]:
    """Every way `delivered` differs from `expected`, tensor by tensor. With the `routing` of the
    replayed release, also every set of names that load into one parameter; `files` (each name: every
    file the candidate streamed it from) says whether the one the model keeps is fixed or up to the
    streamer."""
    findings: list[Finding] = []

    def add(
        name: str, component: str, kind: FindingKind, exp: str | None, act: str | None, detail: str | None = None
    ) -> None:
        findings.append(Finding(name, component, kind, exp, act, against, rank, detail=detail))

    got = delivered.observations
    duplicated = set(delivered.duplicates)
    for name, ref in expected.items():
        cand = got.get(name)
        if cand == ref or name in duplicated:
            continue  # the same observation (nearly every tensor); a duplicate gets one finding below
        if cand is not None and cand.status == "raised":
            add(name, ref.component, "load-error", None, None, cand.reason)
        elif cand is None:
            add(name, ref.component, "missing", None, None)
        elif cand.dtype != ref.dtype:
            add(name, ref.component, "dtype", ref.dtype, cand.dtype)
        elif tuple(cand.shape) != tuple(ref.shape):
            add(name, ref.component, "shape", _shape(ref.shape), _shape(cand.shape))
        elif cand.digest != ref.digest:
            add(name, ref.component, "bytes", ref.digest, cand.digest)
    for name in sorted(set(got) - set(expected) - duplicated):
        obs = got[name]
        if obs.status == "raised":
            add(name, obs.component, "load-error", None, None, obs.reason)
        elif obs.status == "loaded":  # one vLLM drops reaches no parameter: not a failure
            add(name, obs.component, "unexpected", None, obs.digest)
    for name in sorted(duplicated):
        known = expected.get(name)
        obs = got[name]
        if obs.status == "raised":  # every copy routes alike: vLLM raises on the first, the load fails
            add(name, known.component if known else obs.component, "load-error", None, None, obs.reason)
            continue
        if obs.status != "loaded":  # dropped (skipped, text-only, unclaimed) every time: no parameter holds one
            continue
        copies = delivered.duplicates.count(name) + 1
        add(
            name,
            known.component if known else got[name].component,
            "duplicate",
            known.digest if known else None,
            got[name].digest,
            f"delivered {copies} times",
        )
    if routing is not None:  # what a replayed load delivered; a manifest check replays nothing
        findings.extend(_shared_parameters(delivered, expected, against, rank, routing, files))
    return findings


def _one_file(
    names: Sequence[str], expected: Mapping[str, Observation], files: Mapping[str, Collection[str]] | None
) -> bool | None:
    """Whether every name of a group is streamed from one and the same file (True: that file's order
    decides which is loaded last), from different files (False: the streamer yields the tensors of
    several files in the order their reads complete, which can change from run to run), or None: not
    known (no `files`, and every name indexed)."""
    if files is not None and all(files.get(n) for n in names):
        return len({f for n in names for f in files[n]}) == 1
    indexed = [n in expected for n in names]
    if any(indexed) and not all(indexed):  # one only an unindexed file holds, beside an indexed one
        return False
    return None


def _shared_parameters(
    delivered: Delivered,
    expected: Mapping[str, Observation],
    against: Source,
    rank: int | None,
    routing: Routing,
    files: Mapping[str, Collection[str]] | None = None,
) -> list[Finding]:
    """Names that load into one parameter (and shard): it keeps the one loaded last and the others are
    lost without a word (each name's bytes arrive intact, so no other finding sees it). Each of them
    fails, naming the parameter and the others, and which one the model holds: as a fact where the
    names are in one file (its order is fixed), as this run's outcome where they are in different
    files (the streamer's completion order decides it) or where that is not known."""
    holders: dict[tuple[str, str], list[str]] = {}
    for o in delivered.observations.values():  # in the order they were loaded (recorded at the copy)
        if o.status == "loaded":
            destination = route(o.name, routing).destination
            if destination is not None:
                holders.setdefault((o.component, destination), []).append(o.name)
    found = []
    for (component, destination), names in holders.items():
        if len(names) < 2:
            continue
        held = names[-1]
        one_file = _one_file(names, expected, files)
        for name in names:
            others = ", ".join(n for n in names if n != name)
            if one_file is not True:
                verb = "does" if len(names) == 2 else "do"
                this_run = "this one" if name == held else held
                if one_file is False:
                    why = (
                        "they are streamed from different files, so the model holds whichever the streamer "
                        f"completes last, which depends on stream order (in this run: {this_run})"
                    )
                else:
                    why = (
                        f"the model holds the one loaded last ({this_run} in this run), which depends on stream "
                        "order where they are in different files"
                    )
                detail = f"loads into {component} parameter {destination}, as {others} {verb}: {why}"
            elif name == held:
                detail = f"loads into {component} parameter {destination} after {others}: the model holds this one"
            else:
                detail = (
                    f"loads into {component} parameter {destination}, where {held} is loaded later: "
                    f"the model holds {held}, not this one"
                )
            known = expected.get(name)
            found.append(
                Finding(
                    name,
                    component,
                    "shared-parameter",
                    known.digest if known else None,
                    delivered.observations[name].digest,
                    against,
                    rank,
                    detail=detail,
                )
            )
    return found


def summarize(
    algorithm: str,
    reference: Mapping[str, Observation],
    delivered: Mapping[int, Delivered],
    findings: Sequence[Finding],
    recorded: Mapping[str, Observation] | None = None,
) -> tuple[dict[str, ComponentSummary], tuple[Skipped, ...]]:
    """One row per component that the checkpoint (or a candidate) has, `unclaimed` included. A row
    counts the tensors of either side: the reference's, and those a finding names that only a
    candidate delivered (`unexpected`), so that matched + mismatched + missing + skipped never
    exceed its tensors (a manifest of another checkpoint: each side's names, counted once). Their
    bytes come from whichever side has them: a candidate, or `recorded` (`check --manifest`: the
    manifest's tensors, for those the checkpoint lacks)."""
    failed: dict[str, set[str]] = {}
    missing: dict[str, set[str]] = {}
    for f in findings:
        (missing if f.kind == "missing" else failed).setdefault(f.component, set()).add(f.name)
    # Status (loaded or skipped) from any one rank: every rank routes the same names the same way.
    first = next(iter(delivered.values()), Delivered())
    skipped = _skipped(first)
    skipped_names = {s.name for s in skipped}
    refs_by, cands_by = _by_component(reference.values()), _by_component(first.observations.values())
    rows: dict[str, ComponentSummary] = {}
    # A component only a finding names (a manifest's tensors the checkpoint lacks) gets its row too.
    for component in (c for c in COMPONENTS if c in refs_by or c in cands_by or c in failed or c in missing):
        refs = refs_by.get(component, [])
        bad = failed.get(component, set())
        gone = missing.get(component, set()) - bad
        extra = (bad | gone) - reference.keys()  # failed, and in no reference: delivered by a candidate only
        digest = root_digest(algorithm, refs)
        # No finding in a component means the same names, dtypes, shapes and digests on both sides.
        clean = component not in failed and component not in missing
        rows[component] = ComponentSummary(
            component=component,
            tensors=len(refs) + len(extra),
            bytes=sum(o.nbytes for o in refs) + sum(_delivered_bytes(delivered, name, recorded) for name in extra),
            matched=sum(1 for o in refs if o.name not in bad and o.name not in gone and o.name not in skipped_names),
            mismatched=len(bad),
            missing=len(gone),
            skipped=sum(1 for o in refs if o.name in skipped_names and o.name not in bad),
            digest=digest,
            candidate_digest=digest if clean else root_digest(algorithm, cands_by.get(component, [])),
        )
    return rows, skipped


def _delivered_bytes(
    delivered: Mapping[int, Delivered], name: str, recorded: Mapping[str, Observation] | None = None
) -> int:
    """The size of a tensor the reference lacks: from the first rank that delivered it, else from
    the record (a manifest's tensor that the checkpoint no longer holds)."""
    for got in delivered.values():
        obs = got.observations.get(name)
        if obs is not None:
            return obs.nbytes
    held = (recorded or {}).get(name)
    return held.nbytes if held is not None else 0


def _skipped(delivered: Delivered) -> tuple[Skipped, ...]:
    """What the load path skipped on purpose or left unclaimed, by name."""
    return tuple(
        Skipped(o.name, o.component, o.reason or "")
        for o in sorted(delivered.observations.values(), key=lambda o: o.name)
        if o.status in ("skipped", "unclaimed")
    )


def _by_component(observations: Iterable[Observation]) -> dict[str, list[Observation]]:
    """Grouped once: 25,000-tensor checkpoints are real."""
    grouped: dict[str, list[Observation]] = {}
    for o in observations:
        grouped.setdefault(o.component, []).append(o)
    return grouped
