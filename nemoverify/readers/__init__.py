"""Where tensors come from.

`stored_bytes` reads every tensor's stored bytes at the header's offsets and hashes them (the truth,
for check, manifest and verify). The candidates share one small interface, a context manager whose
`tensors()` yields (name, tensor): `runai` streams through the Run:ai Model Streamer exactly as
vLLM's `runai_streamer` load format does; `safetensors_library` reads with the safetensors library,
a baseline that never reuses memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from nemoverify.dtypes import to_torch
from nemoverify.errors import LoaderError

if TYPE_CHECKING:
    import torch

    from nemoverify.checkpoint.layout import Checkpoint, Shard


class TensorSource(Protocol):
    description: str

    def __enter__(self) -> TensorSource: ...
    def __exit__(self, *exc: object) -> None: ...
    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]: ...


def require_loadable(checkpoint: Checkpoint, files: tuple[Shard, ...], loader: str) -> None:
    """One rule for a dtype the safetensors format knows but torch does not (F4, packed 4-bit): no
    candidate can deliver such a tensor as it is stored (the streamer refuses the header, the
    safetensors library would hand back other bytes), and neither can vLLM load it. Refused before
    any work, naming the file and the tensor (exit 3), whichever loader was asked for."""

    for shard in files:
        for info in shard.header.tensors:
            if to_torch(info.dtype) is None:
                raise LoaderError(
                    f"{shard.location}: tensor '{info.name}' has dtype {info.dtype}, which torch has no type for: "
                    f"the {loader} loader cannot deliver it (nor can vLLM load it)"
                )
