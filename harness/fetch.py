"""Fetch, at run time, the members of a vLLM release's wheel that the harness executes or reads
(HTTP range requests against PyPI; nothing of vLLM is shipped). Cache: --cache, else $HARNESS_CACHE,
else .harness/cache; files under CACHE/src/<version>/."""

from __future__ import annotations

from pathlib import Path

from harness.paths import default_cache
from harness.program import PROGRAM

EXTRA_MEMBERS = ["vllm/model_executor/models/registry.py", "vllm/transformers_utils/configs/radio.py"]
MEMBERS = sorted({p for p, _ in PROGRAM} | set(EXTRA_MEMBERS))


def ensure_sources(version: str, cache: Path | None = None, members: list[str] = MEMBERS) -> Path:
    """CACHE/src/<version>, holding every one of `members` (fetched if missing)."""
    cache = Path(cache or default_cache())
    src = cache / "src" / version
    missing = [m for m in members if not (src / m).exists()]
    if missing:
        from harness.wheelsrc import RemoteWheel

        w = RemoteWheel("vllm", version, root=cache)
        for m in missing:
            if m in w.members:  # a module some releases lack (routed_experts.py before 0.24) stays absent
                w.fetch(m)
    return src
