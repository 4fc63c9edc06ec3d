"""Loaders behind one small interface: a context manager whose `tensors()` yields (name, tensor).

`reference` reads with the safetensors library (the truth); `runai` streams through the Run:ai
Model Streamer exactly as vLLM's `runai_streamer` load format does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


class TensorSource(Protocol):
    description: str

    def __enter__(self) -> TensorSource: ...
    def __exit__(self, *exc: object) -> None: ...
    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]: ...
