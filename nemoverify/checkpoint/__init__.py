"""The checkpoint: safetensors headers, the shard index and config.json, read strictly.

Nothing is imported here: `nemoverify --help` imports a module or two of this package (hfcache,
limits), and should not pay for the parser behind them."""
