"""Bounds a checkpoint is held to before any tensor data is read, importable without the parser
(the CLI names them in its defaults)."""

DEFAULT_MAX_TENSORS = 200_000  # a large MoE checkpoint with its quantisation scales holds about 100,000
