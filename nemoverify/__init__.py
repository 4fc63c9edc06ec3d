"""nemoverify: does a Nemotron Nano VL checkpoint reach the model intact when loaded as production loads it?

`checkpoint` reads safetensors headers, the shard index and config.json strictly; `loaders` read the
tensors (the stored bytes as the reference, the Run:ai Model Streamer as the candidate);
`model` replays vLLM's `load_weights` and hashes each tensor the moment the model would copy it.
`verify` runs both passes and `compare`s them into a frozen `report.Report`, which `render` turns
into a table, JSON or CI formats; `cli` only parses, calls, renders and picks the exit code.
"""

__version__ = "0.1.0"
