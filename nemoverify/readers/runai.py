"""The candidate loader: the Run:ai Model Streamer, configured the way vLLM configures it.

Its knobs are environment variables read when a stream starts, so they are set around the stream
and restored after. What they are set to comes from the deployment profile (`nemoverify.deployment.profiles`,
resolved in `nemoverify.deployment.options`): production's buffers as deployed, or under `--stress` borrowed
views, a ring of the largest tensor (memory limit 0) and staging buffers no larger than the largest
tensor, so any retained reference goes stale as fast as it can.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, NamedTuple

from nemoverify.checkpoint.layout import ensure_unchanged
from nemoverify.errors import DistributedError, LoaderError
from nemoverify.redaction import redact
from nemoverify.storage_watch import transfer

if TYPE_CHECKING:
    import torch

    from nemoverify.checkpoint.layout import Checkpoint
    from nemoverify.deployment.options import CheckOptions


class StreamerSettings(NamedTuple):
    """Everything the streamer is told for one stream, already resolved from the deployment profile."""

    memory_limit: int | None = None  # RUNAI_STREAMER_MEMORY_LIMIT: -1 unlimited, 0 one tensor, N bytes
    concurrency: int | None = None  # RUNAI_STREAMER_CONCURRENCY: reader threads
    borrowed: bool = False  # the caller gets views into reused buffers (0.15/0.16, or owned=False)
    distributed: bool = False
    device: str = "cpu"
    staging_min_bytes: int | None = None  # RUNAI_STREAMER_DIST_BUFFER_MIN_BYTESIZE; None: the 1 GiB default

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.memory_limit is not None:
            env["RUNAI_STREAMER_MEMORY_LIMIT"] = str(self.memory_limit)
        if self.concurrency is not None:
            env["RUNAI_STREAMER_CONCURRENCY"] = str(self.concurrency)
        if self.distributed:
            # `auto` distributes only over NCCL; gloo on the CPU must be forced.
            env["RUNAI_STREAMER_DIST"] = "1"
            if self.staging_min_bytes is not None:
                env["RUNAI_STREAMER_DIST_BUFFER_MIN_BYTESIZE"] = str(self.staging_min_bytes)
        return env


def settings_for(options: CheckOptions, distributed: bool = False) -> StreamerSettings:
    """What the streamer is told for one stream of a run with these options."""
    stress = options.profile.stress
    # vLLM streams to the GPU only when streaming is distributed; otherwise to the CPU, then copies.
    device = options.device if distributed else "cpu"
    return StreamerSettings(
        memory_limit=0 if stress else options.memory_limit,
        concurrency=options.concurrency,
        borrowed=options.profile.borrowed,
        distributed=distributed,
        device=device,
        staging_min_bytes=1 if stress else None,
    )


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# The endpoint settings the reference reader's clients read, and the streamer's own names for them.
# The S3 one is vLLM's copy; streamer 0.15.7, 0.16.1 and 0.17 read AWS_ENDPOINT_URL themselves (their
# libraries name no RUNAI_STREAMER_S3_ENDPOINT), so it is kept for fidelity, not because it steers them.
ENDPOINT_HANDED_ON = {
    "AWS_ENDPOINT_URL": "RUNAI_STREAMER_S3_ENDPOINT",  # as vLLM does, only where that is unset
    "STORAGE_EMULATOR_HOST": "CLOUD_STORAGE_EMULATOR_ENDPOINT",  # the Python GCS client's, to the C++ one
}


def endpoint_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What the streamer is told of a non-default object-storage endpoint, so that it reads from the
    endpoint the reference reads from; a value the user set for the streamer itself is left alone."""
    return {
        ours: environ[theirs]
        for theirs, ours in ENDPOINT_HANDED_ON.items()
        if environ.get(theirs) and ours not in environ
    }


def accepts_owned() -> bool:
    """Whether the installed streamer's `stream_files` takes `owned` (0.17 on); never pass what it lacks."""
    import inspect

    from runai_model_streamer import SafetensorsStreamer

    return "owned" in inspect.signature(SafetensorsStreamer.stream_files).parameters


class RunaiStreamer:
    """The candidate: every file vLLM's Run:ai loader streams, through the installed streamer,
    holding tensors the way the profile's streamer release holds them."""

    def __init__(self, checkpoint: Checkpoint, settings: StreamerSettings) -> None:
        self.checkpoint = checkpoint
        self.settings = settings
        held = "borrowed views" if settings.borrowed else "owned tensors"
        self.description = f"runai-model-streamer ({held})"
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> RunaiStreamer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        # The streamer logs its throughput at INFO; the report is ours to print.
        logging.getLogger("runai_model_streamer").setLevel(logging.WARNING)
        from runai_model_streamer import SafetensorsStreamer

        files = self.checkpoint.streamed
        paths = [shard.location for shard in files]
        env = self.settings.environment()
        if not self.checkpoint.is_local:
            env.update(endpoint_environment(os.environ))
        # 0.17 takes `owned`; 0.15/0.16 always yield views. A profile of the other kind is emulated:
        # owned=False on 0.17 gives 0.16's views; on 0.16 a clone per tensor gives 0.17's ownership.
        extra: dict[str, bool] = {}
        clone = False
        if accepts_owned():
            extra["owned"] = not self.settings.borrowed
        else:
            clone = not self.settings.borrowed
        # The streamer's native client reads object storage where Python cannot count the bytes:
        # the storage watch counts what the process's connections receive while it streams.
        watched = (
            transfer(self.checkpoint.storage.from_server(f"{self.checkpoint.root} through the Run:ai streamer"), True)  # type: ignore[attr-defined]
            if not self.checkpoint.is_local
            else contextlib.nullcontext()
        )
        with environment(env), watched:
            try:
                with SafetensorsStreamer() as streamer:
                    streamer.stream_files(
                        paths, device=self.settings.device, is_distributed=self.settings.distributed, **extra
                    )
                    if self.settings.distributed and not streamer.file_streamer.is_distributed:
                        # Verifying plain streaming while the user asked about distributed streaming
                        # would answer the wrong question.
                        raise DistributedError(
                            f"{self.checkpoint.root}: the Run:ai streamer fell back to non-distributed streaming "
                            "(needs an initialised group of more than one process, and a backend that matches the device)"
                        )
                    if clone:
                        for name, tensor in streamer.get_tensors():
                            yield name, tensor.clone()
                    else:
                        yield from streamer.get_tensors()
            except (GeneratorExit, KeyboardInterrupt, DistributedError):
                raise
            except Exception as exc:  # the streamer raises bare RuntimeError/ValueError from C++
                for shard in files:  # a file changed under us is the better explanation
                    ensure_unchanged(self.checkpoint, shard)
                raise LoaderError(redact(f"{self.checkpoint.root}: the Run:ai streamer failed: {_said(exc)}")) from exc
        for shard in files:
            ensure_unchanged(self.checkpoint, shard)


def _said(exc: BaseException) -> str:
    """What a native error says, without the C++ backtrace torch appends ("Exception raised from
    ...", "frame #0: ...")."""
    lines = []
    for line in str(exc).splitlines():
        if line.startswith(("Exception raised from", "frame #")):
            break
        lines.append(line)
    return " ".join(line.strip() for line in lines if line.strip()) or type(exc).__name__
