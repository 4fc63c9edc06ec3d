"""The two passes of a check: the reference (the stored bytes, hashed on every core) and the candidate
(the streamer driving the replayed load path, each tensor hashed the moment the model would copy it),
each on a daemon thread so that an interrupted run never waits for it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from nemoverify.checkpoint.layout import Checkpoint
from nemoverify.deployment.options import CheckOptions
from nemoverify.dtypes import dtype_names
from nemoverify.hashing import tensor_digester
from nemoverify.model.replay import Snapshot, load_rules, replay
from nemoverify.model.routing import Component
from nemoverify.observations import Delivered, Observation, Status
from nemoverify.progress import Progress, no_progress
from nemoverify.readers import TensorSource, require_loadable
from nemoverify.readers.runai import RunaiStreamer, settings_for
from nemoverify.readers.safetensors_library import SafetensorsReader
from nemoverify.readers.stored_bytes import hash_checkpoint

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


class Background(threading.Thread, Generic[T]):
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
    return RunaiStreamer(checkpoint, settings_for(options, distributed))


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
    options = options.fitted_to(checkpoint.largest_streamed_tensor, checkpoint.streamed_bytes)
    recorder = Recorder(options.algorithm, progress, cancel)
    # The iterator's clone is hashed as it is taken (`Snapshot`: equivalent, without the copy);
    # real_clone makes the copy, for the test that proves the two equal.
    snapshot = None if real_clone else recorder.snapshot
    with candidate_source(checkpoint, options, distributed) as source:
        replay(source.tensors(), recorder, load_rules(options, checkpoint.config), snapshot)
    return recorder.delivered


def candidate_description(options: CheckOptions) -> str:
    if options.loader == "safetensors":
        return "safetensors library"
    installed = options.profile.installed_streamer
    held = "borrowed views" if options.profile.borrowed else "owned tensors"
    return f"runai-model-streamer{' ' + installed if installed else ''} ({held})"
