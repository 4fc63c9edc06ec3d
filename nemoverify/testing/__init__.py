"""For tests and benchmarks: tiny real checkpoints shaped like Nemotron Nano VL (`synthetic`)."""
