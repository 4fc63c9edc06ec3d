"""`check`: the reference pass and the candidate pass over one checkpoint, compared per tensor.

The reference pass (the safetensors library) runs on a worker thread while the candidate pass
streams on the calling thread, so the two overlap; hashing happens on each tensor while its bytes
are still in cache, and no pass holds more than one tensor (plus what the replayed model itself
keeps: the multimodal clones).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from nemoverify.checkpoint.layout import Checkpoint
from nemoverify.compare import Delivered, find_differences, summarize
from nemoverify.dtypes import from_torch
from nemoverify.hashing import DEFAULT_CHECK_ALGORITHM, digest_tensor
from nemoverify.loaders import TensorSource
from nemoverify.loaders.reference import SafetensorsReader
from nemoverify.loaders.runai import RunaiStreamer, StreamerSettings
from nemoverify.model.replay import REPLAYS
from nemoverify.model.routing import COMPONENTS, Component, route
from nemoverify.report import Finding, Observation, Report, Status

if TYPE_CHECKING:
    import torch

Progress = Callable[[str, int], None]
"""progress(phase, bytes_done_since_last_call); phase is 'reference' or 'candidate'."""


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


class Cancelled(Exception):
    """The run was interrupted; raised inside worker passes so they stop promptly."""


def observe(
    algorithm: str,
    name: str,
    component: str,
    tensor: torch.Tensor,
    status: Status = "loaded",
    reason: str | None = None,
) -> Observation:
    return Observation(
        name=name,
        component=component,
        dtype=from_torch(tensor.dtype),
        shape=tuple(tensor.shape),
        nbytes=tensor.numel() * tensor.element_size(),
        digest=digest_tensor(algorithm, tensor),
        status=status,
        reason=reason,
    )


class Recorder:
    """The replay's LoadEvents: hashes each tensor at the moment the model would copy it."""

    def __init__(
        self, algorithm: str, progress: Progress = _no_progress, cancel: threading.Event | None = None
    ) -> None:
        self.algorithm = algorithm
        self.progress = progress
        self.cancel = cancel
        self.delivered = Delivered()

    def _record(self, obs: Observation) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise Cancelled()
        self.delivered.add(obs)
        self.progress("candidate", obs.nbytes)

    def loaded(self, name: str, component: Component, tensor: torch.Tensor) -> None:
        self._record(observe(self.algorithm, name, component, tensor))

    def passed(self, name: str, component: Component, reason: str, tensor: torch.Tensor) -> None:
        status: Status = "unclaimed" if component == "unclaimed" else "skipped"
        self._record(observe(self.algorithm, name, component, tensor, status, reason))


def reference_pass(
    checkpoint: Checkpoint, algorithm: str, progress: Progress = _no_progress, cancel: threading.Event | None = None
) -> dict[str, Observation]:
    out: dict[str, Observation] = {}
    with SafetensorsReader(checkpoint) as reader:
        for name, tensor in reader.tensors():
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            obs = observe(algorithm, name, route(name).component, tensor)
            out[name] = obs
            progress("reference", obs.nbytes)
    return out


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
        return "safetensors"
    return f"runai-model-streamer ({'borrowed buffers' if options.reuse_buffers else 'owned tensors'})"


def check(checkpoint: Checkpoint, options: CheckOptions, progress: Progress = _no_progress) -> Report:
    """Verify that the candidate loader, through the replayed load path, delivers the reference's
    bytes for every tensor. Raises only when no trustworthy verdict is possible."""
    checkpoint.require_valid(options.strict)
    started = time.monotonic()
    cancel = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nemoverify-reference") as pool:
        reference_future = pool.submit(reference_pass, checkpoint, options.algorithm, progress, cancel)
        try:
            delivered = candidate_pass(checkpoint, options, progress, cancel)
            reference = reference_future.result()
        except BaseException:
            cancel.set()
            raise
    return build_report(checkpoint, options, reference, {0: delivered}, started)


def build_report(
    checkpoint: Checkpoint,
    options: CheckOptions,
    reference: dict[str, Observation],
    delivered: dict[int, Delivered],
    started: float,
    extra_findings: list[Finding] | None = None,
    manifest: str | None = None,
    reference_name: str = "safetensors",
) -> Report:
    multi = len(delivered) > 1
    findings: list[Finding] = []
    ranks: dict[int, bool] = {}
    for rank, got in sorted(delivered.items()):
        found = find_differences(reference, got, rank=rank if multi else None)
        ranks[rank] = not found
        findings.extend(found)
    findings.extend(extra_findings or [])
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
        candidate=candidate_description(options),
        strategy=options.strategy,
        options=asdict(options) | {"nproc": len(delivered)},
        components=components,
        mismatches=tuple(findings),
        skipped=skipped,
        warnings=tuple(p for p in checkpoint.problems if p.severity == "warning"),
        ranks=ranks if multi else {},
        manifest=manifest,
        elapsed_s=time.monotonic() - started,
    )
