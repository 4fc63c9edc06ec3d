"""`check`: the reference pass and the candidate pass over one checkpoint, compared per tensor.

The reference pass (the stored bytes, read and hashed on every core) and the candidate pass (the
streamer driving the replayed load path) run on daemon threads at once, so the two overlap; each
tensor is hashed while its bytes are still in cache, and neither pass holds more than a read buffer
per worker or the streamer's ring (plus what the replayed model itself keeps: the multimodal clones).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from nemoverify.checkpoint.layout import Checkpoint, ensure_checkpoint_unchanged
from nemoverify.checkpoint.problems import Problem
from nemoverify.compare import Delivered, find_differences, summarize
from nemoverify.dtypes import dtype_names
from nemoverify.errors import InvalidCheckpoint
from nemoverify.hashing import tensor_digester
from nemoverify.loaders import TensorSource, require_loadable
from nemoverify.loaders.runai import RunaiStreamer
from nemoverify.loaders.safetensors_library import SafetensorsReader
from nemoverify.loaders.stored_bytes import hash_checkpoint
from nemoverify.manifests import Manifest, explained_by_manifest, shard_findings
from nemoverify.model.replay import Snapshot, replay
from nemoverify.model.routing import COMPONENTS, Component, route
from nemoverify.options import CheckOptions
from nemoverify.progress import Progress, no_progress
from nemoverify.report import Finding, Observation, Report, Source, Status

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


class _Background(threading.Thread, Generic[T]):
    """Runs one function on a daemon thread, so that an interrupted run never waits for it to end."""

    def __init__(self, fn: Callable[[], T]) -> None:
        super().__init__(name="nemoverify-pass", daemon=True)
        self._fn = fn
        self._value: T | None = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self) -> T:
        while self.is_alive():
            self.join(0.1)  # a timed join keeps this thread responsive to signals
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


class Cancelled(Exception):
    """The run was interrupted; raised inside worker passes so they stop promptly."""


class Recorder:
    """The replay's LoadEvents: hashes each tensor at the moment the model would copy it.
    Runs once per tensor, so it keeps to the fewest calls (25,000 small tensors make it show)."""

    def __init__(self, algorithm: str, progress: Progress = no_progress, cancel: threading.Event | None = None) -> None:
        self.algorithm = algorithm
        self.digest = tensor_digester(algorithm)
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.delivered = Delivered()
        self._dtype_names = dtype_names()

    def _record(
        self,
        name: str,
        component: Component,
        tensor: torch.Tensor,
        status: Status = "loaded",
        reason: str | None = None,
    ) -> None:
        if self.cancel.is_set():
            raise Cancelled()
        held: object = tensor  # a Snapshot stands for the 0.22+ iterator's clone (typed as a tensor)
        if type(held) is Snapshot:
            shape, digest = held.shape, held.digest
        else:
            shape, digest = tuple(tensor.shape), self.digest(tensor)
        nbytes, dtype = tensor.nbytes, tensor.dtype
        name_of_dtype = self._dtype_names.get(dtype) or str(dtype)
        self.delivered.add(Observation(name, component, name_of_dtype, shape, nbytes, digest, status, reason))
        self.progress("candidate", nbytes)

    loaded = _record  # the model copies the tensor into its parameter: recorded in one call

    def snapshot(self, tensor: torch.Tensor) -> torch.Tensor:
        """The 0.22+ iterator's clone, hashed as it is taken (`model.replay.Snapshot`)."""
        if self.cancel.is_set():
            raise Cancelled()
        snap = Snapshot(tensor.dtype, tuple(tensor.shape), tensor.nbytes, self.digest(tensor))
        return cast("torch.Tensor", snap)  # stands for the clone: only dtype, shape, nbytes are read

    def passed(self, name: str, component: Component, reason: str, tensor: torch.Tensor) -> None:
        self._record(name, component, tensor, "unclaimed" if component == "unclaimed" else "skipped", reason)

    def failed(self, name: str, component: Component, reason: str, tensor: torch.Tensor) -> None:
        self._record(name, component, tensor, "raised", reason)


def reference_pass(
    checkpoint: Checkpoint,
    algorithm: str,
    progress: Progress = no_progress,
    cancel: threading.Event | None = None,
    small_runs_after: threading.Event | None = None,
) -> dict[str, Observation]:
    """The stored bytes of every tensor, hashed as they are read: from local files or, for object
    storage, from ranged GETs (nothing is downloaded whole)."""
    return hash_checkpoint(
        checkpoint,
        algorithm,
        progress,
        phase="reference",
        cancel=cancel,
        small_runs_after=small_runs_after,
        beside_candidate=True,
    ).observations


def candidate_source(checkpoint: Checkpoint, options: CheckOptions, distributed: bool = False) -> TensorSource:
    if options.loader == "safetensors":
        return SafetensorsReader(checkpoint)
    return RunaiStreamer(checkpoint, options.streamer_settings(distributed))


def candidate_pass(
    checkpoint: Checkpoint,
    options: CheckOptions,
    progress: Progress = no_progress,
    cancel: threading.Event | None = None,
    distributed: bool = False,
    real_clone: bool = False,
) -> Delivered:
    require_loadable(
        checkpoint, checkpoint.streamed if options.loader == "runai" else checkpoint.shards, options.loader
    )
    options = options.fitted_to(checkpoint)
    recorder = Recorder(options.algorithm, progress, cancel)
    # The iterator's clone is hashed as it is taken (`Snapshot`: equivalent, without the copy);
    # real_clone makes the copy, for the test that proves the two equal.
    snapshot = None if real_clone else recorder.snapshot
    with candidate_source(checkpoint, options, distributed) as source:
        replay(source.tensors(), recorder, options.load_rules(checkpoint.config), snapshot)
    return recorder.delivered


def candidate_description(options: CheckOptions) -> str:
    if options.loader == "safetensors":
        return "safetensors library"
    installed = options.profile.installed_streamer
    held = "borrowed views" if options.profile.borrowed else "owned tensors"
    return f"runai-model-streamer{' ' + installed if installed else ''} ({held})"


def check(
    checkpoint: Checkpoint,
    options: CheckOptions | None = None,
    progress: Progress = no_progress,
    manifest: Manifest | None = None,
    manifest_path: str | None = None,
    ranks: Callable[[], dict[int, Delivered]] | None = None,
    against: Checkpoint | None = None,
) -> Report:
    """Verify that the candidate loader, through the load path of the options' deployment profile,
    delivers the reference's bytes for every tensor (and, with a manifest, the recorded ones).
    Raises only when no trustworthy verdict is possible."""
    options = (options or CheckOptions()).fitted_to(against or checkpoint)
    if manifest is not None and checkpoint.errors(options.strict):
        # A damaged shard the manifest explains (wrong size) is a failed verification, not a crash.
        return verify_manifest(checkpoint, manifest, manifest_path, progress, options.strict)
    checkpoint.require_valid(options.strict)
    streamed = against or checkpoint  # --against: the local copy is the reference, the uploaded one is streamed
    streamed.require_valid(options.strict)
    if options.strict and options.loader == "runai" and (unrouted := _release_warnings(streamed, options)):
        # --strict makes a warning an error, this release's own ones too: it would refuse the model.
        raise InvalidCheckpoint(streamed.root, [replace(p, severity="error") for p in unrouted])
    started = time.monotonic()
    cancel = threading.Event()
    # Both passes run on daemon threads and this thread only waits: an interrupt lands here and never
    # waits on them. (Abandoning a Run:ai stream mid-way can block in the streamer's own drain, which
    # must not turn Ctrl-C into a hang.)
    # Large tensors are hashed beside the stream, hidden behind its I/O. Runs of small tensors are
    # all Python and would only slow a candidate pass that is itself all Python; when the candidate
    # shares this interpreter they wait for it (24,362 tensors of 1.5 KB: 0.50 s -> 0.43 s here).
    candidate_done = threading.Event() if ranks is None else None
    reference_thread = _Background(
        lambda: reference_pass(checkpoint, options.algorithm, progress, cancel, candidate_done)
    )
    try:
        if ranks is not None:
            delivered = ranks()  # the ranks stream in their own processes meanwhile
        else:
            assert candidate_done is not None

            def candidate() -> Delivered:
                try:
                    return candidate_pass(streamed, options, progress, cancel)
                finally:
                    candidate_done.set()

            delivered = {0: _Background(candidate).result()}
        reference = reference_thread.result()
    except BaseException:
        cancel.set()  # each pass stops at its next tensor, on its own thread
        raise
    for read in {id(c): c for c in (checkpoint, streamed)}.values():  # both passes done: still the files read?
        ensure_checkpoint_unchanged(read)
    reference = routed_as(reference, options, checkpoint)
    # The manifest is checked against what was streamed: with --against, the copy.
    extra = manifest_findings(streamed, manifest, delivered) if manifest else []
    report = build_report(
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
    return _explain_duplicates(report, streamed, reference, options.algorithm)


def routed_as(
    reference: dict[str, Observation], options: CheckOptions, checkpoint: Checkpoint
) -> dict[str, Observation]:
    """The reference pass labels components by the routes every release shares; a release that
    routes a name elsewhere (0.32+: the final layernorm) relabels it."""
    rules = options.load_rules(checkpoint.config)
    if not rules.final_layernorm:
        return reference
    out = dict(reference)
    for name, obs in reference.items():
        component = route(name, True).component
        if component != obs.component:
            out[name] = obs._replace(component=component)
    return out


def _explain_duplicates(
    report: Report, checkpoint: Checkpoint, reference: dict[str, Observation], algorithm: str
) -> Report:
    """A name streamed from two files is loaded twice and the model keeps the later copy: say which
    file's copy that is, and whether its bytes are the indexed ones."""
    duplicates = [f for f in report.mismatches if f.kind == "duplicate"]
    if not duplicates:
        return report
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
    for f in report.mismatches:
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
        detail = f"{f.detail} (from {', '.join(holders)}); the model {which}"
        explained.append(replace(f, detail=detail, file=where))
    return replace(report, mismatches=tuple(explained))


def manifest_findings(checkpoint: Checkpoint, manifest: Manifest, delivered: dict[int, Delivered]) -> list[Finding]:
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
    started = time.monotonic()
    shards = shard_findings(manifest, checkpoint)
    if not explained_by_manifest(manifest, checkpoint, shards, strict):
        checkpoint.require_valid(strict)
    delivered = hash_checkpoint(checkpoint, manifest.algorithm, progress)
    expected = manifest.tensors
    return build_report(
        checkpoint,
        None,
        expected,
        {0: delivered},
        started,
        shards,
        manifest_path,
        reference_name="manifest",
        candidate_name="stored bytes",
        against="manifest",
        algorithm=manifest.algorithm,
        strict=strict,
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
    findings: list[Finding] = []
    for rank, got in sorted(delivered.items()):
        findings.extend(find_differences(reference, got, against, rank=rank if multi else None))
    findings.extend(extra_findings or [])
    ranks = {rank: not any(f.rank == rank for f in findings) for rank in delivered}
    streamed = copy or checkpoint
    if any(f.file is None for f in findings):  # (a map of every tensor's file: only when needed)
        shard_of = {info.name: shard.location for shard in streamed.streamed[::-1] for info in shard.header.tensors}
        shard_of.update({info.name: shard.location for shard, info in streamed.tensors()})  # the indexed copy first
        shard_files = {shard.name: shard.location for shard in streamed.streamed}
        findings = [
            replace(f, file=(shard_files if f.component == "shard" else shard_of).get(f.name)) if f.file is None else f
            for f in findings
        ]
    order: dict[str, int] = {c: i for i, c in enumerate(COMPONENTS)}
    findings.sort(key=lambda f: (order.get(f.component, len(order)), f.name, f.rank or 0))
    components, skipped = summarize(algorithm, reference, delivered, findings, recorded)
    unclaimed = components.get("unclaimed")
    # The reference's unclaimed tensors, or a stray file's that the candidate streamed (no row counts those).
    any_unclaimed = (unclaimed is not None and unclaimed.tensors > 0) or any(
        s.component == "unclaimed" for s in skipped
    )
    ok = not findings and not (options is not None and options.fail_on_unclaimed and any_unclaimed)
    warnings = [p for p in checkpoint.problems + (copy.problems if copy else ()) if p.severity == "warning"]
    profile = None
    if options is not None and options.loader == "runai":
        warnings += _release_warnings(checkpoint, options)
        note = options.ring_note(sum(s.header.data_len for s in checkpoint.streamed))
        profile = replace(options.profile, notes=options.profile.notes + ((note,) if note else ()))
    return Report(
        ok=ok,
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


def _release_warnings(checkpoint: Checkpoint, options: CheckOptions) -> list[Problem]:
    """What this checkpoint meets in the profile's vLLM release that another release would not."""
    release = options.profile.vllm
    archs = checkpoint.config.architectures
    if not archs or any(a in release.architectures for a in archs):
        return []
    from nemoverify.checkpoint.config import CONFIG_NAME, is_nano_vl

    if not any(is_nano_vl(a) for a in archs):
        return []  # config.py already warns that no release knows it
    return [
        Problem(
            "config-architecture",
            f"{checkpoint.root.rstrip('/')}/{CONFIG_NAME}",
            f"vLLM {release.name} does not route {', '.join(archs)} to NemotronH_Nano_VL_V2: it would refuse "
            "this model before loading a weight",
            severity="warning",
        )
    ]
