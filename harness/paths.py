"""Where the harness keeps things. Everything it makes lives under `.harness/` at the repository
root (gitignored): the wheel-member cache, the built layouts, the cells, the two venvs. vLLM's code
is fetched into the cache at run time and never committed.

NEMOVERIFY_SRC is the nemoverify compared with: by default this repository's working tree.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository: holds harness/ and nemoverify/
STATE = ROOT / ".harness"
WORK = STATE / "work"  # the layouts' checkpoints
CELLS = STATE / "cells"  # one JSON per release x layout
VENV = STATE / "venv"  # runai-model-streamer 0.17.1
VENV16 = STATE / "venv16"  # runai-model-streamer 0.16.1
RESULTS_MD = ROOT / "docs" / "harness-results.md"
RESULTS_JSON = STATE / "results.json"  # every tensor of every cell (about 17 MB): not committed
SNAPSHOT = STATE / "nemoverify-snapshot"  # the copy of nemoverify/ a run compares with
NEMOVERIFY_SRC = Path(os.environ.get("NEMOVERIFY_SRC", ROOT)).resolve()


def default_cache() -> Path:
    """The wheel-member cache (files under CACHE/src/<version>/): $HARNESS_CACHE or .harness/cache."""
    return Path(os.environ.get("HARNESS_CACHE", STATE / "cache"))


def nemoverify_importable() -> None:
    """Import nemoverify from NEMOVERIFY_SRC (not whatever else is on the path), so the release list
    and the fingerprint functions are those of the nemoverify compared with."""
    if str(NEMOVERIFY_SRC) not in sys.path:
        sys.path.insert(0, str(NEMOVERIFY_SRC))


def known_releases() -> list[str]:
    """Every vLLM release nemoverify has a row for (pure Python: no torch)."""
    nemoverify_importable()
    from nemoverify.deployment.releases import KNOWN_VLLM

    return list(KNOWN_VLLM)
