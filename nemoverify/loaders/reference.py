"""The reference reader: the safetensors library, one shard at a time, one tensor at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from nemoverify.checkpoint.layout import Checkpoint, Shard
from nemoverify.checkpoint.problems import Problem
from nemoverify.errors import InvalidCheckpoint, LoaderError

if TYPE_CHECKING:
    import torch


class SafetensorsReader:
    description = "safetensors"

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint

    def __enter__(self) -> SafetensorsReader:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        from safetensors import safe_open

        for shard in self.checkpoint.shards:
            try:
                with safe_open(shard.location, framework="pt") as f:
                    for info in shard.header.tensors:
                        yield info.name, f.get_tensor(info.name)
            except (OSError, RuntimeError, ValueError) as exc:
                raise LoaderError(f"{shard.location}: the safetensors reader failed: {exc}") from exc
            ensure_unchanged(self.checkpoint, shard)


def ensure_unchanged(checkpoint: Checkpoint, shard: Shard) -> None:
    """A shard rewritten while we read it gives a verdict about neither version: refuse it."""
    try:
        now = checkpoint.storage.fingerprint(shard.name)
    except OSError as exc:
        raise LoaderError(f"{shard.location}: vanished while read: {exc}") from exc
    if now != shard.fingerprint:
        raise InvalidCheckpoint(
            checkpoint.root,
            [
                Problem(
                    "file-changed",
                    shard.location,
                    f"changed while it was read (size {shard.size:,} -> {now[0]:,}); verify a checkpoint that is not being written",
                )
            ],
        )
