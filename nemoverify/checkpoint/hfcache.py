"""Hugging Face repo ids, resolved from the local cache only: nemoverify never downloads."""

from __future__ import annotations

import os
import re

from nemoverify.checkpoint.problems import InvalidCheckpoint, Problem
from nemoverify.checkpoint.storage import read_bounded

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_repo_id(path: str) -> bool:
    """`org/name` that is not a local path. `./x`, `/x`, `~/x` and `examples/typo` (where `examples`
    is a local directory) are paths: a typo in one gets "no such file or directory"."""
    if os.path.exists(path) or not REPO_ID.match(path) or ".." in path:
        return False
    return not os.path.isdir(path.partition("/")[0])


def hub_cache() -> str:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return os.path.join(home, "hub")


def repo_dir(repo_id: str) -> str:
    """The repo's directory in the cache: its snapshots, and the blobs their links point into."""
    return os.path.join(hub_cache(), "models--" + repo_id.replace("/", "--"))


def snapshot_repo(path: str) -> str | None:
    """The cache repository whose snapshot `path` is (`.../models--org--name/snapshots/<rev>`, what
    `hf download` prints and what people hand vLLM), whose files are links into that repository's
    `blobs/`; None for any other directory."""
    snapshot = os.path.realpath(path)
    snapshots = os.path.dirname(snapshot)
    repo = os.path.dirname(snapshots)
    if os.path.basename(snapshots) != "snapshots" or not os.path.basename(repo).startswith("models--"):
        return None
    return repo if os.path.isdir(os.path.join(repo, "blobs")) else None


def resolve(repo_id: str, revision: str = "main") -> tuple[str, str]:
    """(snapshot directory, the repo's cache directory that its links may point into)."""
    cached = repo_dir(repo_id)
    ref = os.path.join(cached, "refs", revision)
    snapshot = None
    if os.path.isfile(ref):  # a commit hash: a regular file of a few bytes, read as one
        try:
            revision_id = read_bounded(ref, 4096).decode("utf-8", "replace").strip()
        except OSError as exc:
            raise InvalidCheckpoint(repo_id, [Problem("unreadable", ref, f"cannot be read: {exc}")]) from None
        snapshot = os.path.join(cached, "snapshots", revision_id)
    elif os.path.isdir(os.path.join(cached, "snapshots", revision)):
        snapshot = os.path.join(cached, "snapshots", revision)
    if snapshot is None or not os.path.isdir(snapshot):
        raise InvalidCheckpoint(
            repo_id,
            [
                Problem(
                    "hf-not-cached",
                    cached,
                    f"'{repo_id}' is no local path (no such file or directory) and not in the local Hugging Face cache ({hub_cache()}); nemoverify never downloads: fetch it first (hf download {repo_id})",
                )
            ],
        )
    return snapshot, cached
