"""The checkpoint: safetensors headers, the shard index and config.json, read strictly."""

from nemoverify.checkpoint.header import DTYPE_BITS, Header, TensorInfo
from nemoverify.checkpoint.layout import Checkpoint, Shard, open_checkpoint
from nemoverify.checkpoint.problems import Problem

__all__ = ["DTYPE_BITS", "Checkpoint", "Header", "Problem", "Shard", "TensorInfo", "open_checkpoint"]
