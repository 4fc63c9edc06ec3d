"""Stand-ins for what the release's load-path code references but cannot import without vLLM.

Each one is the behaviour of a single-process, CPU, tensor-parallel-1, pipeline-parallel-1 run with
no quantisation; what each can and cannot show is in README.md ("What the stubs cannot see").
"""

from __future__ import annotations

import logging
import types

import torch
from torch import nn

_log = logging.getLogger("harness.vllm")


class _Logger:
    """vLLM's logger: the *_once variants too. Warnings are kept (a run's notes)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def _emit(self, level: str, msg, *args, **kwargs) -> None:
        try:
            text = str(msg) % args if args else str(msg)
        except Exception:
            text = f"{msg} {args}"
        if level in ("warning", "error"):
            self.messages.append((level, text))
        getattr(_log, level if level != "warning" else "warning")(text)

    def __getattr__(self, name: str):
        base = name.removesuffix("_once")
        if base in ("debug", "info", "warning", "error", "exception", "critical"):
            return lambda msg, *a, **k: self._emit("warning" if base in ("warning", "error", "exception", "critical") else base, msg, *a)
        raise AttributeError(name)


LOGGER = _Logger()


class _Platform:
    def is_cuda_alike(self) -> bool:
        return False  # a CPU run: distributed streaming would target cuda:N on a GPU

    def current_device(self) -> int:
        return 0


class _Group:
    world_size = 1
    rank_in_group = 0
    cpu_group = None


class BaseModelLoader:
    def __init__(self, load_config) -> None:
        self.load_config = load_config


def _unreachable(*_a, **_k):
    raise RuntimeError("harness: the Hugging Face hub / object stores are not reachable (local directories only)")


class PPMissingLayer(nn.Module):
    pass


class StageMissingLayer(nn.Module):
    pass


class RMSNorm(nn.Module):
    """vLLM's RMSNorm as far as loading sees it: one `weight` nn.Parameter, no weight_loader
    (AutoWeightsLoader and the sub-loaders then use default_weight_loader)."""

    def __init__(self, hidden_size: int, eps: float = 1e-6, *args, **kwargs) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))


class ReLUSquaredActivation(nn.Module):
    pass


class VocabParallelEmbedding(nn.Module):
    def __init__(self, num_embeddings: int = 1, embedding_dim: int = 1) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_embeddings, embedding_dim))


class ParallelLMHead(VocabParallelEmbedding):
    def __init__(self, num_embeddings: int = 1, embedding_dim: int = 1) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.register_parameter("bias", None)


def _identity_decorator(fn=None, *a, **k):
    if callable(fn):
        return fn
    return lambda f: f


def _no_moe(*_a, **_k):
    raise NotImplementedError("harness: MoE expert mapping is not modelled (no E layers in these layouts)")


def base_stubs() -> dict[str, object]:
    """Name -> stand-in, for program.STUB_NAMES (SafetensorsStreamer is set per run)."""
    return {
        "logger": LOGGER,
        "init_logger": lambda *_a, **_k: LOGGER,
        "current_platform": _Platform(),
        "enable_tqdm": lambda use_tqdm_on_load: False,
        "is_pp_missing_parameter": lambda name, model: False,  # pipeline parallel size 1
        "BaseModelLoader": BaseModelLoader,
        "get_pp_group": lambda: _Group(),
        "get_world_group": lambda: _Group(),
        "download_weights_from_hf": _unreachable,
        "download_safetensors_index_file_from_hf": _unreachable,
        "resolve_revision": lambda model, revision: revision,
        "runai_pull_files": _unreachable,
        "_get_remote_checkpoint_keys": _unreachable,
        "support_quantized_model_reload_from_hp_weights": _identity_decorator,
        "instrument": _identity_decorator,
        "PPMissingLayer": PPMissingLayer,
        "StageMissingLayer": StageMissingLayer,
        "RMSNorm": RMSNorm,
        "ReLUSquaredActivation": ReLUSquaredActivation,
        "VocabParallelEmbedding": VocabParallelEmbedding,
        "ParallelLMHead": ParallelLMHead,
        "fused_moe_make_expert_params_mapping": _no_moe,
        "envs": types.SimpleNamespace(),
        "SafetensorsStreamer": None,
    }
