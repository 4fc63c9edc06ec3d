"""What reaches the parameters: every copy into a parameter (or buffer) of the stand-in model, with
the bytes' digest at that instant, and which checkpoint tensor the copied tensor came from.

Attribution: the harness's streamer wrapper tags each tensor it yields with `_nv_src = (name,
digest at yield)`. `torch.Tensor.clone` / `detach` (and the few view-making methods the load path
uses) are patched while a run is in progress to carry the tag to their result, so the release's
`tensor.clone()` (0.22+ iterator) and `w.detach().clone()` (fixed load path) keep it. The tag says
which streamed tensor a copy *came from*; the digest taken at the copy says what bytes it *had*.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

try:
    import xxhash

    def _hash(b) -> str:
        return "xxh3_128:" + xxhash.xxh3_128_hexdigest(b)
except ImportError:  # pragma: no cover
    import hashlib

    def _hash(b) -> str:
        return "sha256:" + hashlib.sha256(b).hexdigest()


def tensor_digest(t: torch.Tensor) -> str:
    """Digest of a tensor's bytes as they are now (same encoding as harness.stored)."""
    with torch.no_grad():
        t = torch.Tensor.detach(t)
        if t.device.type != "cpu":
            t = t.cpu()
        flat = t.reshape(-1).contiguous()
        return _hash(flat.view(torch.uint8).numpy().tobytes())


_PROPAGATE = ("clone", "detach", "contiguous", "view", "reshape", "to", "float", "unsqueeze", "squeeze", "transpose", "narrow")


@contextlib.contextmanager
def tag_propagation():
    """While active, methods in _PROPAGATE copy `_nv_src` (and `shard_id`, which vLLM's mapper sets
    on the tensor object and never copies itself: not copied) from self to the result."""
    saved = {}
    for m in _PROPAGATE:
        orig = getattr(torch.Tensor, m)
        saved[m] = orig

        def wrapper(self, *a, __orig=orig, **k):
            out = __orig(self, *a, **k)
            src = getattr(self, "_nv_src", None)
            if src is not None and isinstance(out, torch.Tensor) and out is not self:
                with contextlib.suppress(Exception):  # some results take no attributes: untagged
                    out._nv_src = src
            return out

        setattr(torch.Tensor, m, wrapper)
    try:
        yield
    finally:
        for m, orig in saved.items():
            setattr(torch.Tensor, m, orig)


@dataclass
class Copy:
    seq: int
    dest: str  # the parameter's (or buffer's) full name in the model
    shard: object  # shard id as the weight_loader received it (None: whole parameter)
    expert: object  # expert id (MoE), else None
    src: tuple[str, str] | None  # (checkpoint name, digest at yield) of the tensor it came from
    digest: str  # digest of the bytes handed to the loader, at the copy
    how: str  # "weight_loader" (the parameter's own loader, a stand-in) | "default_weight_loader" (real)

    def as_dict(self) -> dict:
        return {
            "seq": self.seq,
            "dest": self.dest,
            "shard": self.shard,
            "expert": self.expert,
            "src": list(self.src) if self.src else None,
            "digest": self.digest,
            "how": self.how,
        }


class Recorder:
    def __init__(self) -> None:
        self.copies: list[Copy] = []
        self.names: dict[int, str] = {}
        self.notes: list[str] = []

    def register(self, model: torch.nn.Module) -> None:
        for n, p in model.named_parameters(remove_duplicate=False):
            self.names[id(p)] = n
        for n, b in model.named_buffers(remove_duplicate=False):
            self.names[id(b)] = n
        for n, m in model.named_modules(remove_duplicate=False):
            self.names.setdefault(id(m), f"{n}<module>")

    def copy(self, target, w: torch.Tensor, shard=None, expert=None, how: str = "weight_loader") -> None:
        dest = self.names.get(id(target), f"<unregistered {type(target).__name__}>")
        self.copies.append(Copy(len(self.copies), dest, shard, expert, getattr(w, "_nv_src", None), tensor_digest(w), how))


def recording_loader(rec: Recorder):
    """A stand-in for a vLLM parameter's own `weight_loader` (sharded / TP / quantised loaders, the
    Mamba A loader's -exp(): not run). Records the call; copies nothing; returns success."""

    def weight_loader(param, loaded_weight, *args, **kwargs):
        shard = kwargs.get("shard_id", kwargs.get("loaded_shard_id"))
        # a positional shard id: anything but a string, or a lone string ("q", "w1") when the caller
        # is not the expert loader (which passes name strings with return_success)
        positional = bool(args) and (not isinstance(args[0], str) or (len(args) == 1 and "return_success" not in kwargs))
        if shard is None and positional:
            shard = args[0]
        rec.copy(param, loaded_weight, shard, kwargs.get("expert_id"), "weight_loader")
        return True if kwargs.get("return_success") else None

    return weight_loader
