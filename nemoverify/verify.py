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
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from nemoverify.checkpoint.layout import Checkpoint
from nemoverify.compare import Delivered, find_differences, summarize
from nemoverify.dtypes import from_torch
from nemoverify.hashing import DEFAULT_CHECK_ALGORITHM, tensor_digester
from nemoverify.loaders import TensorSource
from nemoverify.loaders.reference import Progress, hash_checkpoint
from nemoverify.loaders.runai import RunaiStreamer, StreamerSettings
from nemoverify.loaders.safetensors_library import SafetensorsReader
from nemoverify.manifest import Manifest, explained_by_manifest, shard_findings
from nemoverify.model.replay import REPLAYS
from nemoverify.model.routing import COMPONENTS, Component
from nemoverify.report import Finding, Observation, Report, Status

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def _no_progress(phase: str, nbytes: int) -> None:
    return None


@dataclass(frozen=True)
class CheckOptions:
    loader: Literal["runai", "safetensors"] = "runai"
    strategy: Literal["fixed", "legacy"] = "fixed"
    reuse_buffers: bool = False
    memory_limit: int | None = None
    concurrency: int | None = None
    text_only: bool = False
    algorithm: str = DEFAULT_CHECK_ALGORITHM
    strict: bool = False
    fail_on_unclaimed: bool = False
    device: str = "cpu"

    def streamer_settings(self, distributed: bool = False) -> StreamerSettings:
        return StreamerSettings(self.memory_limit, self.concurrency, self.reuse_buffers, distributed, self.device)


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

    def __init__(
        self, algorithm: str, progress: Progress = _no_progress, cancel: threading.Event | None = None
    ) -> None:
        self.algorithm = algorithm
        self.digest = tensor_digester(algorithm)
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.delivered = Delivered()

    def _record(
        self, name: str, component: str, tensor: torch.Tensor, status: Status = "loaded", reason: str | None = None
    ) -> None:
        if self.cancel.is_set():
            raise Cancelled()
        nbytes = tensor.nbytes
        digest = self.digest(tensor)
        dtype = from_torch(tensor.dtype)
        self.delivered.add(Observation(name, component, dtype, tuple(tensor.shape), nbytes, digest, status, reason))
        self.progress("candidate", nbytes)

    def loaded(self, name: str, component: Component, tensor: torch.Tensor) -> None:
        self._record(name, component, tensor)

    def passed(self, name: str, component: Component, reason: str, tensor: torch.Tensor) -> None:
        self._record(name, component, tensor, "unclaimed" if component == "unclaimed" else "skipped", reason)


def reference_pass(
    checkpoint: Checkpoint,
    algorithm: str,
    progress: Progress = _no_progress,
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
    progress: Progress = _no_progress,
    cancel: threading.Event | None = None,
    distributed: bool = False,
) -> Delivered:
    recorder = Recorder(options.algorithm, progress, cancel)
    with candidate_source(checkpoint, options, distributed) as source:
        REPLAYS[options.strategy](source.tensors(), recorder, options.text_only)
    return recorder.delivered


def candidate_description(options: CheckOptions) -> str:
    if options.loader == "safetensors":
        return "safetensors library"
    return f"runai-model-streamer ({'borrowed buffers' if options.reuse_buffers else 'owned tensors'})"


def check(
    checkpoint: Checkpoint,
    options: CheckOptions,
    progress: Progress = _no_progress,
    manifest: Manifest | None = None,
    manifest_path: str | None = None,
    ranks: Callable[[], dict[int, Delivered]] | None = None,
    against: Checkpoint | None = None,
) -> Report:
    """Verify that the candidate loader, through the replayed load path, delivers the reference's
    bytes for every tensor (and, with a manifest, the recorded ones). Raises only when no trustworthy
    verdict is possible."""
    if manifest is not None and checkpoint.errors(options.strict):
        # A damaged shard the manifest explains (wrong size) is a failed verification, not a crash.
        return verify_manifest(checkpoint, manifest, manifest_path, progress, options.strict)
    checkpoint.require_valid(options.strict)
    streamed = against or checkpoint  # --against: the local copy is the reference, the uploaded one is streamed
    streamed.require_valid(options.strict)
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
    # The manifest is checked against what was streamed: with --against, the copy.
    extra = manifest_findings(streamed, manifest, delivered) if manifest else []
    return build_report(checkpoint, options, reference, delivered, started, extra, manifest_path, copy=against)


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
    progress: Progress = _no_progress,
    strict: bool = False,
) -> Report:
    """The manifest check alone: every tensor's stored bytes, read straight from the files."""
    started = time.monotonic()
    shards = shard_findings(manifest, checkpoint)
    if not explained_by_manifest(manifest, checkpoint, shards):
        checkpoint.require_valid(strict)
    delivered = hash_checkpoint(checkpoint, manifest.algorithm, progress)
    expected = manifest.tensors
    options = CheckOptions(algorithm=manifest.algorithm, strict=strict)
    return build_report(
        checkpoint,
        options,
        expected,
        {0: delivered},
        started,
        shards,
        manifest_path,
        reference_name="manifest",
        candidate_name="stored bytes",
        against="manifest",
    )


def build_report(
    checkpoint: Checkpoint,
    options: CheckOptions,
    reference: dict[str, Observation],
    delivered: dict[int, Delivered],
    started: float,
    extra_findings: list[Finding] | None = None,
    manifest: str | None = None,
    reference_name: str = "stored bytes",
    candidate_name: str | None = None,
    against: str = "reference",
    copy: Checkpoint | None = None,
) -> Report:
    """`copy`: the checkpoint that was streamed, where it is not `checkpoint` (--against). Every
    finding names the file it was found in: the streamed one's."""
    multi = len(delivered) > 1
    findings: list[Finding] = []
    for rank, got in sorted(delivered.items()):
        findings.extend(find_differences(reference, got, against, rank=rank if multi else None))
    findings.extend(extra_findings or [])
    ranks = {rank: not any(f.rank == rank for f in findings) for rank in delivered}
    streamed = copy or checkpoint
    shard_of = {info.name: shard.location for shard, info in streamed.tensors()}
    shard_files = {shard.name: shard.location for shard in streamed.shards}
    findings = [
        replace(f, file=(shard_files if f.component == "shard" else shard_of).get(f.name)) if f.file is None else f
        for f in findings
    ]
    order: dict[str, int] = {c: i for i, c in enumerate(COMPONENTS)}
    findings.sort(key=lambda f: (order.get(f.component, len(order)), f.name, f.rank or 0))
    components, skipped = summarize(options.algorithm, reference, delivered, findings)
    unclaimed = components.get("unclaimed")
    ok = not findings and not (options.fail_on_unclaimed and unclaimed is not None and unclaimed.tensors > 0)
    return Report(
        ok=ok,
        algorithm=options.algorithm,
        checkpoint=checkpoint.root,
        reference=reference_name,
        candidate=candidate_name or candidate_description(options),
        strategy=options.strategy,
        options=asdict(options) | {"nproc": len(delivered)},
        components=components,
        mismatches=tuple(findings),
        skipped=skipped,
        warnings=tuple(p for p in checkpoint.problems + (copy.problems if copy else ()) if p.severity == "warning"),
        ranks=ranks if multi else {},
        manifest=manifest,
        elapsed_s=time.monotonic() - started,
        copy=copy.root if copy else None,
    )
