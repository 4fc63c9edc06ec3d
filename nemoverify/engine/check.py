"""`check`: the reference pass and the candidate pass over one checkpoint, compared per tensor, and
`verify`: the stored bytes against a manifest.

The reference pass (the stored bytes, read and hashed on every core) and the candidate pass (the
streamer driving the replayed load path) run on daemon threads at once, so the two overlap; each
tensor is hashed while its bytes are still in cache, and neither pass holds more than a read buffer
per worker or the streamer's ring (plus what the replayed model itself keeps: the multimodal clones).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from nemoverify.checkpoint.layout import Checkpoint, ensure_checkpoint_unchanged
from nemoverify.checkpoint.problems import Problem
from nemoverify.deployment.options import CheckOptions
from nemoverify.deployment.releases import NEWEST_VLLM, STREAMER_RELEASES, VLLM_RELEASES
from nemoverify.engine.compare import find_differences, summarize
from nemoverify.engine.passes import Background, candidate_description, candidate_pass, reference_pass
from nemoverify.hashing import tensor_digester
from nemoverify.model.checks import release_problems
from nemoverify.model.replay import load_rules, release_routing
from nemoverify.model.routing import COMPONENTS, route
from nemoverify.observations import Delivered, Observation
from nemoverify.progress import Progress, no_progress
from nemoverify.readers.stored_bytes import hash_checkpoint
from nemoverify.report import Finding, Report, Source

if TYPE_CHECKING:  # a run without a manifest never imports the manifest code
    from nemoverify.engine.manifests import Manifest


def check_load(
    checkpoint: Checkpoint,
    options: CheckOptions | None = None,
    progress: Progress = no_progress,
    manifest: Manifest | None = None,
    manifest_path: str | None = None,
    ranks: Callable[[Progress], dict[int, Delivered]] | None = None,
    against: Checkpoint | None = None,
) -> Report:
    """Verify that the candidate loader, through the load path of the options' deployment profile,
    delivers the reference's bytes for every tensor (and, with a manifest, the recorded ones). The
    checkpoints are the ones the caller admitted (`api.admit`). Raises only when no trustworthy
    verdict is possible."""
    streamed = against or checkpoint  # --against: the local copy is the reference, the uploaded one is streamed
    options = (options or CheckOptions()).fitted_to(streamed.largest_streamed_tensor, streamed.streamed_bytes)
    started = time.monotonic()
    cancel = threading.Event()
    # Both passes run on daemon threads and this thread only waits: an interrupt lands here and never
    # waits on them. (Abandoning a Run:ai stream mid-way can block in the streamer's own drain, which
    # must not turn Ctrl-C into a hang.)
    # Large tensors are hashed beside the stream, hidden behind its I/O. Runs of small tensors are
    # all Python and would only slow a candidate pass that is itself all Python; when the candidate
    # shares this interpreter they wait for it (24,362 tensors of 1.5 KB: 0.50 s -> 0.43 s here).
    candidate_done = threading.Event() if ranks is None else None
    tensor_digester(options.algorithm)  # its library imported here, once, not by both threads at once
    reference_thread = Background(
        lambda: reference_pass(checkpoint, options.algorithm, progress, cancel, candidate_done)
    )
    try:
        if ranks is not None:
            delivered = ranks(progress)  # the ranks stream in their own processes meanwhile
        else:
            assert candidate_done is not None

            def candidate() -> Delivered:
                try:
                    return candidate_pass(streamed, options, progress, cancel)
                finally:
                    candidate_done.set()

            delivered = {0: Background(candidate).result()}
        reference = reference_thread.result()
    except BaseException:
        cancel.set()  # each pass stops at its next tensor, on its own thread
        raise
    for read in {id(c): c for c in (checkpoint, streamed)}.values():  # both passes done: still the files read?
        ensure_checkpoint_unchanged(read)
    reference = routed_as(reference, options, checkpoint)
    # The manifest is checked against what was streamed: with --against, the copy.
    extra = manifest_findings(streamed, manifest, delivered) if manifest else []
    return build_report(
        checkpoint,
        options,
        reference,
        delivered,
        started,
        extra,
        manifest_path,
        copy=against,
        recorded=manifest.tensors if manifest else None,
    )


def routed_as(
    reference: dict[str, Observation], options: CheckOptions, checkpoint: Checkpoint
) -> dict[str, Observation]:
    """The reference pass labels components by the routes every release shares; a release that
    routes a name elsewhere (0.32+: the final layernorm) relabels it."""
    routing = load_rules(options, checkpoint.config).routing
    if routing.final_layernorm == "not routed":
        return reference
    out = dict(reference)
    for name, obs in reference.items():
        component = route(name, routing).component
        if component != obs.component:
            out[name] = obs._replace(component=component)
    return out


def _explain_duplicates(
    findings: list[Finding], checkpoint: Checkpoint, reference: dict[str, Observation], algorithm: str
) -> list[Finding]:
    """A name streamed from two files is loaded twice and the model keeps the later copy: say which
    file's copy that is, and whether its bytes are the indexed ones."""
    duplicates = [f for f in findings if f.kind == "duplicate"]
    if not duplicates:
        return findings
    stored: dict[tuple[str, str], str] = {}  # (file, tensor) -> digest of that file's stored copy
    indexed_files = {s.name for s in checkpoint.shards}
    for shard in checkpoint.streamed:
        wanted = {f.name for f in duplicates} & {t.name for t in shard.header.tensors}
        if not wanted:
            continue
        if shard.name in indexed_files:
            for name in wanted:
                stored[(shard.name, name)] = reference[name].digest
            continue
        single = replace(checkpoint, shards=(shard,), extra_streamed=(), stream_order=())
        for name, obs in hash_checkpoint(single, algorithm, no_progress).observations.items():
            if name in wanted:
                stored[(shard.name, name)] = obs.digest
    indexed = {info.name: shard.name for shard, info in checkpoint.tensors()}
    explained = []
    for f in findings:
        if f.kind != "duplicate":
            explained.append(f)
            continue
        holders = [s.name for s in checkpoint.streamed if (s.name, f.name) in stored]
        held = next((h for h in reversed(holders) if stored[(h, f.name)] == f.actual), None)
        if held is None:
            which = "holds bytes that match no stored copy (a stale buffer?)"
        elif f.name not in indexed:  # only in files outside the index: no indexed copy to compare with
            which = f"ends up holding the copy from {held} (no indexed copy exists)"
        elif held == indexed.get(f.name):
            which = f"ends up holding the indexed copy from {held}"
        else:
            same = stored[(held, f.name)] == f.expected
            which = f"ends up holding the copy from {held}, " + (
                "whose bytes equal the indexed copy" if same else "whose bytes differ from the indexed copy"
            )
        where = checkpoint.storage.locate(held) if held else f.file
        if held is not None and len(holders) > 1:  # the streamer completes files in any order
            which += " in this run; which copy it keeps depends on stream order"
        detail = f"{f.detail} (from {', '.join(holders)}); the model {which}"
        explained.append(replace(f, detail=detail, file=where))
    return explained


def manifest_findings(checkpoint: Checkpoint, manifest: Manifest, delivered: dict[int, Delivered]) -> list[Finding]:
    from nemoverify.engine.manifests import shard_findings

    expected = manifest.tensors
    multi = len(delivered) > 1
    findings = shard_findings(manifest, checkpoint)
    for rank, got in sorted(delivered.items()):
        findings += find_differences(expected, got, "manifest", rank if multi else None)
    return findings


def verify_manifest(
    checkpoint: Checkpoint,
    manifest: Manifest,
    manifest_path: str | None,
    progress: Progress = no_progress,
    strict: bool = False,
) -> Report:
    """The manifest check alone: every tensor's stored bytes, read straight from the files."""
    from nemoverify.engine.manifests import explained_by_manifest, shard_findings

    started = time.monotonic()
    shards = shard_findings(manifest, checkpoint)
    if not explained_by_manifest(manifest, checkpoint, shards, strict):
        checkpoint.require_valid(strict)
    delivered = hash_checkpoint(checkpoint, manifest.algorithm, progress)  # then checks the files again
    expected = manifest.tensors
    return build_report(
        checkpoint,
        None,
        expected,
        {0: delivered},
        started,
        shards + stray_findings(checkpoint),
        manifest_path,
        reference_name="manifest",
        candidate_name="stored bytes",
        against="manifest",
        algorithm=manifest.algorithm,
        strict=strict,
    )


def stray_findings(checkpoint: Checkpoint) -> list[Finding]:
    """`verify` reads the indexed shards, but vLLM's Run:ai loader streams every *.safetensors in
    the directory: each tensor of a file outside the index that vLLM would load (or fail on), by the
    newest release's routing, is a failure; one that every release skips stays a warning
    (`shard-not-indexed`)."""
    routing = release_routing(NEWEST_VLLM, checkpoint.config)
    indexed = {info.name for _, info in checkpoint.tensors()}
    findings = []
    for shard in checkpoint.extra_streamed:
        for info in shard.header.tensors:
            r = route(info.name, routing)
            if r.skip is not None:
                continue
            effect = "overrides the indexed copy" if info.name in indexed else "adds a tensor the index does not list"
            detail = (
                f"streamed by vLLM's Run:ai loader from {shard.name}, which is not in the index: it {effect}"
                + (f"; vLLM fails on it: {r.raises}" if r.raises else "")
            )
            findings.append(
                Finding(info.name, r.component, "stray", None, None, "manifest", file=shard.location, detail=detail)
            )
    return findings


class files_of(Mapping[str, list[str]]):  # noqa: N801 - used as a function
    """Each name's files, as the candidate streamed them, built on first use: only names that share a
    parameter ask (is the one the model keeps fixed by one file's order, or by the streamer's?)."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self._checkpoint = checkpoint
        self._files: dict[str, list[str]] | None = None

    def _built(self) -> dict[str, list[str]]:
        if self._files is None:
            self._files = {}
            for shard in self._checkpoint.streamed:
                for info in shard.header.tensors:
                    self._files.setdefault(info.name, []).append(shard.name)
        return self._files

    def __getitem__(self, name: str) -> list[str]:
        return self._built()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


UNCLAIMED = "no parameter takes it: vLLM drops it silently (--fail-on-unclaimed fails the run on it)"
_ORDER: dict[str, int] = {c: i for i, c in enumerate(COMPONENTS)}


def _root_cause_first(f: Finding) -> tuple[int, int, str, int]:
    """Shard files first (a missing file explains every tensor it held), then what makes vLLM
    raise (no model is served), then the tensors, component by component."""
    first = 0 if f.component == "shard" else 1 if f.kind == "load-error" else 2
    return first, _ORDER.get(f.component, len(_ORDER)), f.name, f.rank or 0


def _manifest_of_another(findings: list[Finding], reference: dict[str, Observation]) -> str | None:
    """Said first where most tensors disagree with the manifest: the likeliest cause is the
    manifest, not the bytes."""
    failed = {f.name for f in findings if f.against == "manifest" and f.component != "shard"}
    compared = len(reference.keys() | failed)
    if compared < 4 or len(failed) * 2 <= compared:
        return None
    return (
        f"{len(failed)} of {compared} tensors disagree with the manifest: it is most likely the manifest of "
        "another checkpoint (or of another version of this one), not damage to this one"
    )


def _exposed(findings: list[Finding], options: CheckOptions | None) -> str | None:
    """Bytes that differ from the stored ones under a deployment that keeps references into the
    streamer's reused buffers: name the mechanism and the releases that end it."""
    if options is None or options.loader != "runai" or not options.profile.ring_decides_verdict:
        return None
    if not any(f.kind == "bytes" and f.against == "reference" for f in findings):
        return None
    profile = options.profile
    cloning = next(r for r in VLLM_RELEASES if r.iterator_clones).releases[0]
    owning = next(s for s in STREAMER_RELEASES if s.owned_parameter).name
    held = "stress: every tensor a view into one buffer" if profile.stress else f"streamer {profile.streamer.name}"
    return (
        f"vLLM {profile.vllm.name}'s pre-fix load path keeps references to tensors that the streamer then "
        f"overwrites ({held}, and an iterator that does not clone): the corruption of vLLM issue 41749. As deployed, "
        f"not exposed from vLLM {cloning} (its iterator clones each tensor) or with streamer {owning} (owned tensors)"
    )


def build_report(
    checkpoint: Checkpoint,
    options: CheckOptions | None,
    reference: dict[str, Observation],
    delivered: dict[int, Delivered],
    started: float,
    extra_findings: list[Finding] | None = None,
    manifest: str | None = None,
    reference_name: str = "stored bytes",
    candidate_name: str | None = None,
    against: Source = "reference",
    algorithm: str | None = None,
    strict: bool = False,
    copy: Checkpoint | None = None,
    recorded: dict[str, Observation] | None = None,
) -> Report:
    """`options` is None for `verify`, which replays no load path. `copy`: the checkpoint that was
    streamed, where it is not `checkpoint` (--against); every finding names the file it was found
    in, the streamed one's. `recorded`: the manifest's tensors (check --manifest), whose sizes count
    for those the checkpoint lacks."""
    algorithm = algorithm or (options.algorithm if options else "")
    multi = len(delivered) > 1
    streamed = copy or checkpoint
    routing = load_rules(options, streamed.config).routing if options is not None else None
    findings: list[Finding] = []
    for rank, got in sorted(delivered.items()):
        findings.extend(find_differences(reference, got, against, rank if multi else None, routing, files_of(streamed)))
    findings.extend(extra_findings or [])
    ranks = {rank: not any(f.rank == rank for f in findings) for rank in delivered}
    if any(f.file is None for f in findings):  # (a map of every tensor's file: only when needed)
        shard_of = {info.name: shard.location for shard in streamed.streamed[::-1] for info in shard.header.tensors}
        shard_of.update({info.name: shard.location for shard, info in streamed.tensors()})  # the indexed copy first
        shard_files = {shard.name: shard.location for shard in streamed.streamed}
        findings = [
            replace(f, file=(shard_files if f.component == "shard" else shard_of).get(f.name)) if f.file is None else f
            for f in findings
        ]
    if options is not None:  # a replayed load: a name streamed twice says which copy the model holds
        findings = _explain_duplicates(findings, streamed, reference, algorithm)
    components, skipped = summarize(algorithm, reference, delivered, findings, recorded)
    if options is not None and options.fail_on_unclaimed:
        # The reason for the exit code is in every report: each unclaimed tensor is a failure.
        unclaimed = sorted(
            {o.name for o in reference.values() if o.component == "unclaimed"}
            | {s.name for s in skipped if s.component == "unclaimed"}
        )
        if unclaimed:
            findings += [Finding(n, "unclaimed", "unclaimed", None, None, detail=UNCLAIMED) for n in unclaimed]
            components, skipped = summarize(algorithm, reference, delivered, findings, recorded)
    findings.sort(key=_root_cause_first)
    ok = not findings
    warnings = [p for p in checkpoint.problems + (copy.problems if copy else ()) if p.severity == "warning"]
    profile = None
    if options is not None and options.loader == "runai":
        warnings += release_problems(checkpoint, options.profile.vllm)
        if options.profile.unrecognised is not None:
            warnings.append(Problem("vllm-code", "vllm", options.profile.unrecognised, severity="warning"))
        note = options.ring_note(checkpoint.streamed_bytes)
        profile = replace(options.profile, notes=options.profile.notes + ((note,) if note else ()))
    return Report(
        ok=ok,
        cause=(_manifest_of_another(findings, reference) if against == "manifest" or manifest else None)
        or _exposed(findings, options),
        algorithm=algorithm,
        checkpoint=checkpoint.root,
        reference=reference_name,
        candidate=candidate_name or (candidate_description(options) if options else ""),
        strategy=options.strategy if options else "",
        options=(options.to_dict() if options else {"algorithm": algorithm, "strict": strict})
        | {"nproc": len(delivered)},
        components=components,
        mismatches=tuple(findings),
        skipped=skipped,
        warnings=tuple(warnings),
        ranks=ranks if multi else {},
        manifest=manifest,
        elapsed_s=time.monotonic() - started,
        profile=profile,
        copy=copy.root if copy else None,
    )
