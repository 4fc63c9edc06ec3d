"""Where tensors come from.

`reference` reads every tensor's stored bytes at the header's offsets and hashes them (the truth,
for check, manifest and verify). The candidates share one small interface, a context manager whose
`tensors()` yields (name, tensor): `runai` streams through the Run:ai Model Streamer exactly as
vLLM's `runai_streamer` load format does; `safetensors_library` reads with the safetensors library,
a baseline that never reuses memory.
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
