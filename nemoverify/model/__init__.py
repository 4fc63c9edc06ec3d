"""The model side: routing of checkpoint names, and the replays of vLLM's load path."""
