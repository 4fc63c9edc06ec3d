"""What one run was asked for, as the user said it: one frozen request, built once from the command
line or from a Python caller's keywords, and resolved once (`deployment.options.resolve_check`)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal, get_args

from nemoverify.checkpoint.limits import DEFAULT_MAX_TENSORS
from nemoverify.deployment.releases import LoadPath

Loader = Literal["runai", "safetensors"]
LOADERS: tuple[Loader, ...] = get_args(Loader)  # --loader's choices
DEFAULT_STORAGE_TIMEOUT_S = 3600
DEFAULT_RANK_TIMEOUT_S = 300


@dataclass(frozen=True)
class Request:
    """Every input of a run: what to read, the deployment to replay, the digest and policy, the
    bounds. Each verb reads the fields it takes; the others keep their defaults."""

    path: str
    file_alone: bool = False  # a path to one .safetensors file of many: judge it alone
    # What else is read: a manifest to check against, a copy to stream instead of `path`.
    manifest: str | None = None
    against: str | None = None
    # The deployment profile.
    vllm: str = "auto"
    streamer: str | None = None
    stress: bool = False
    strategy: LoadPath | None = None
    loader: Loader = "runai"
    memory_limit: int | None = None
    concurrency: int | None = None
    text_only: bool = False
    model_loader_extra_config: str | None = None
    nproc: int = 1
    distributed: bool = False
    device: str = "cpu"
    # The digest and the policy.
    algorithm: str | None = None
    strict: bool = False
    fail_on_unclaimed: bool = False
    # Bounds.
    max_bytes: int | None = None
    max_tensors: int | None = DEFAULT_MAX_TENSORS
    rank_timeout: int = DEFAULT_RANK_TIMEOUT_S
    storage_timeout: float = DEFAULT_STORAGE_TIMEOUT_S

    @classmethod
    def taking(cls, given: dict[str, Any]) -> Request:
        """The request made of those of `given` (a command's arguments) that are its fields."""
        return cls(**{f.name: given[f.name] for f in fields(cls) if f.name in given})
