"""What a deployment runs: vLLM and streamer release rows, profiles, and the run's resolved settings."""
