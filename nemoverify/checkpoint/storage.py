"""Where a checkpoint's files live. Local directories here; object storage plugs in beside it.

Every name comes from the checkpoint (an index's weight_map is user-controlled input), so each is
resolved through `locate`, which refuses names that would leave the checkpoint.
"""

from __future__ import annotations

import glob
import os
from typing import Protocol


class UnsafeName(Exception):
    """A file name that would resolve outside the checkpoint."""


class Storage(Protocol):
    root: str

    def list_safetensors(self) -> list[str]: ...
    def locate(self, name: str) -> str: ...
    def size(self, name: str) -> int: ...
    def read_at(self, name: str, offset: int, length: int) -> bytes: ...
    def read_text(self, name: str) -> str | None: ...
    def fingerprint(self, name: str) -> tuple[int, int]: ...


class LocalStorage:
    """A local directory. `contain_within` widens containment (the Hugging Face cache links
    snapshot files into its sibling `blobs/` directory)."""

    def __init__(self, root: str, contain_within: str | None = None) -> None:
        self.root = os.path.abspath(root)
        self._jail = os.path.realpath(contain_within or root)

    def list_safetensors(self) -> list[str]:
        """Every `*.safetensors` here, in glob order: the call vLLM's Run:ai loader makes, so the files
        and their order are the ones it streams (directory order, which no index changes)."""
        return [os.path.basename(p) for p in glob.glob(os.path.join(glob.escape(self.root), "*.safetensors"))]

    def locate(self, name: str) -> str:
        if not name or os.path.isabs(name) or "\\" in name or ".." in name.split("/"):
            raise UnsafeName(f"file name {name!r} escapes the checkpoint directory; refused")
        path = os.path.join(self.root, name)
        real = os.path.realpath(path)
        if os.path.commonpath([real, self._jail]) != self._jail:
            raise UnsafeName(f"{name!r} is a link to {real}, outside the checkpoint; refused, not followed")
        return path

    def size(self, name: str) -> int:
        return os.stat(self.locate(name)).st_size

    def fingerprint(self, name: str) -> tuple[int, int]:
        st = os.stat(self.locate(name))
        return st.st_size, st.st_mtime_ns

    def read_at(self, name: str, offset: int, length: int) -> bytes:
        with open(self.locate(name), "rb") as f:
            f.seek(offset)
            return f.read(length)

    def read_text(self, name: str) -> str | None:
        try:
            with open(self.locate(name), encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return None
