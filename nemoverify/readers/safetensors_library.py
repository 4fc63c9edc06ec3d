"""A candidate loader over the safetensors library, one shard at a time, one tensor at a time: a
baseline that shows what the replayed load path does with a loader that never reuses memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from nemoverify.checkpoint.layout import Checkpoint, ensure_unchanged
from nemoverify.errors import LoaderError

if TYPE_CHECKING:
    import torch


class SafetensorsReader:
    description = "safetensors library"

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
