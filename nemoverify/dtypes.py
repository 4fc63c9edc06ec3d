"""Safetensors dtype names <-> torch dtypes (torch imported only when asked)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_TORCH_NAMES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "F8_E5M2": "float8_e5m2",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E8M0": "float8_e8m0fnu",
    "I16": "int16",
    "U16": "uint16",
    "F16": "float16",
    "BF16": "bfloat16",
    "I32": "int32",
    "U32": "uint32",
    "F32": "float32",
    "C64": "complex64",
    "F64": "float64",
    "I64": "int64",
    "U64": "uint64",
}


@cache
def _tables() -> tuple[dict[str, torch.dtype], dict[torch.dtype, str]]:
    import torch

    to_torch = {st: getattr(torch, name) for st, name in _TORCH_NAMES.items() if hasattr(torch, name)}
    return to_torch, {v: k for k, v in to_torch.items()}


def to_torch(dtype: str) -> torch.dtype | None:
    return _tables()[0].get(dtype)


def dtype_names() -> dict[torch.dtype, str]:
    """torch dtype -> safetensors name, for looking up once per tensor without a call."""
    return _tables()[1]
