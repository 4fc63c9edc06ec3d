"""One release x one checkpoint x one deployment: run the release's real load path (extracted
code, stand-in model, the real runai-model-streamer) until the load completes, removing each tensor
it raises on, and return every copy into a parameter. Needs torch and the streamer.
"""

from __future__ import annotations

import json
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch

from harness.execute import Release, load_release, rebind
from harness.layouts import Deployment
from harness.recorder import Recorder, tag_propagation, tensor_digest
from harness.registry import resolve
from harness.skeleton import NotModelled, build_model, checkpoint_shapes, read_config
from harness.stubs import LOGGER, base_stubs

WEIGHT_UTILS = "vllm/model_executor/model_loader/weight_utils.py"
LOADER = "vllm/model_executor/model_loader/runai_streamer_loader.py"
TENSOR_LOCALS = ("loaded_weight", "weight", "w", "weight_data", "loaded_expert", "data")


class Session:
    """State of one load: the recorder, what the streamer yielded, what is filtered out."""

    def __init__(self, removed: set, owned: bool | None) -> None:
        self.rec = Recorder()
        self.removed = removed
        self.owned = owned
        self.yielded: list[tuple[str, str]] = []
        self.stream_calls: list[dict] = []
        self.last_pulled: dict[str, tuple | None] = {}


CURRENT: list[Session] = []


def _streamer_class(real_cls):
    class TaggingStreamer(real_cls):
        """The real SafetensorsStreamer; only get_tensors is wrapped: each yielded tensor is hashed
        (at yield, before the streamer can reuse its buffer) and tagged; names removed by the
        error loop are not handed on (the streamer still reads them)."""

        def stream_files(self, paths, *a, **k):
            s = CURRENT[-1]
            if s.owned is not None:
                k["owned"] = s.owned
            s.stream_calls.append({"files": [os.path.basename(p) for p in paths], "kwargs": {k2: str(v) for k2, v in k.items()}, "env": {e: os.environ[e] for e in os.environ if e.startswith("RUNAI_STREAMER_")}})
            return super().stream_files(paths, *a, **k)

        def get_tensors(self):
            s = CURRENT[-1]
            for name, t in super().get_tensors():
                d = tensor_digest(t)
                s.yielded.append((name, d))
                if (name, d) in s.removed:
                    continue
                t._nv_src = (name, d)
                yield name, t

    return TaggingStreamer


def prepare_release(version: str, src: Path) -> Release:
    from runai_model_streamer import SafetensorsStreamer

    stubs = base_stubs()
    stubs["SafetensorsStreamer"] = _streamer_class(SafetensorsStreamer)
    rel = load_release(version, src, stubs)
    real = rel.ns[WEIGHT_UTILS]["default_weight_loader"]

    def default_weight_loader(param, loaded_weight):
        CURRENT[-1].rec.copy(param, loaded_weight, None, None, "default_weight_loader")
        return real(param, loaded_weight)

    default_weight_loader.__wrapped__ = real
    rebind(rel, "default_weight_loader", default_weight_loader)
    return rel


def _tracked(fn, label: str):
    """Wrap a sub-loader's load_weights: remember the last (name, tensor) it pulled, so that an error
    raised with no tensor in the raising frame (AutoWeightsLoader's 'no module or parameter named')
    is attributed to the tensor being handled."""

    def wrapper(weights):
        s = CURRENT[-1]

        def gen():
            for item in weights:
                s.last_pulled[label] = getattr(item[1], "_nv_src", None)
                yield item

        try:
            return fn(gen())
        except BaseException as e:
            if not hasattr(e, "_nv_loader"):
                e._nv_loader = (label, s.last_pulled.get(label))
            raise

    return wrapper


def culprit(exc: BaseException, rel: Release):
    """(name, digest) of the checkpoint tensor the release raised on, and how it was found."""
    src = str(rel.src)
    frames = [f for f, _ in traceback.walk_tb(exc.__traceback__)]
    for f in reversed(frames):
        if f.f_code.co_filename.startswith(src):
            for var in TENSOR_LOCALS:
                v = f.f_locals.get(var)
                if isinstance(v, torch.Tensor) and getattr(v, "_nv_src", None):
                    return tuple(v._nv_src), f"tensor local {var!r} of {f.f_code.co_name} (the raising frame)"
            break
    lab = getattr(exc, "_nv_loader", None)
    if lab and lab[1]:
        return tuple(lab[1]), f"last tensor pulled by {lab[0]}"
    return None, "unattributed"


@dataclass
class LoadOutcome:
    rejected: str | None = None  # the loader's constructor raised
    copies: list = field(default_factory=list)
    yielded: list = field(default_factory=list)
    removed: list = field(default_factory=list)  # [{name, digest, error, found}] in removal order
    unattributed: str | None = None
    stream_failed: str | None = None  # raised before the streamer yielded anything
    stream_calls: list = field(default_factory=list)
    warnings: list = field(default_factory=list)
    runs: int = 0


def _env_reset(dep: Deployment) -> None:
    for k in [k for k in os.environ if k.startswith("RUNAI_STREAMER_")]:
        del os.environ[k]
    os.environ.pop("AWS_ENDPOINT_URL", None)
    if dep.memory_limit is not None:
        os.environ["RUNAI_STREAMER_MEMORY_LIMIT"] = str(dep.memory_limit)


def _owned_supported() -> bool:
    import inspect

    from runai_model_streamer import SafetensorsStreamer

    return "owned" in inspect.signature(SafetensorsStreamer.stream_files).parameters


def load_once(rel: Release, ckpt: Path, dep: Deployment, safe: bool, removed: dict):
    _env_reset(dep)
    extra = json.loads(dep.extra_config) if dep.extra_config else {}
    load_config = SimpleNamespace(model_loader_extra_config=extra, use_tqdm_on_load=False, download_dir=None, ignore_patterns=None, load_format="runai_streamer")
    Loader = rel.ns[LOADER]["RunaiModelStreamerLoader"]
    try:
        loader = Loader(load_config)
    except Exception as e:
        return None, f"{type(e).__name__}: {e}", None
    if safe:  # same code, a source that never reuses buffers
        os.environ["RUNAI_STREAMER_MEMORY_LIMIT"] = "-1"
    owned = dep.owned
    if dep.truth_streamer and dep.truth_streamer != dep.streamer:
        owned = False  # diagnostic: a 0.16 deployment emulated on 0.17 (views)
    owned = (True if safe else owned) if _owned_supported() else None
    s = Session(set(removed), owned)
    CURRENT.append(s)
    try:
        cfg = read_config(ckpt)
        model = build_model(rel, s.rec, cfg, checkpoint_shapes(ckpt), dep.text_only)
        s.rec.register(model)
        for label in ("language_model", "vision_model", "sound_encoder"):
            sub = getattr(model, label, None)
            if sub is not None:
                sub.load_weights = _tracked(sub.load_weights, label)
        mm = model.model_config.multimodal_config
        model_config = SimpleNamespace(model=str(ckpt), model_weights="", revision=None, multimodal_config=mm, max_model_len=4096)
        ns = rel.ns[LOADER]
        listing = ns["list_safetensors"]
        if dep.file_order == "sorted":  # diagnostic only
            ns["list_safetensors"] = lambda path="": sorted(listing(path))
        with tag_propagation():
            try:
                loader.load_weights(model, model_config)
                exc = None
            except Exception as e:  # the release raised: the load fails
                exc = e
            finally:
                ns["list_safetensors"] = listing
        return s, None, exc
    finally:
        CURRENT.pop()


def load_until_complete(rel: Release, ckpt: Path, dep: Deployment, safe: bool, removed: dict | None = None) -> LoadOutcome:
    """Run the load; while it raises, remove the tensor it raised on and run again."""
    removed = dict(removed or {})
    out = LoadOutcome()
    LOGGER.messages.clear()
    for _ in range(1000):
        out.runs += 1
        s, rejected, exc = load_once(rel, ckpt, dep, safe, removed)
        if rejected:
            out.rejected = rejected
            return out
        if exc is None:
            break
        who, how = culprit(exc, rel)
        msg = f"{type(exc).__name__}: {exc}"
        if len(msg) > 400:
            msg = msg[:400] + "..."
        if who is None and not s.yielded:
            out.stream_failed = msg
            break
        if who is None or who in removed:
            out.unattributed = f"{msg} ({how}; after removing {len(removed)})"
            break
        removed[who] = {"name": who[0], "digest": who[1], "error": msg, "found": how}
    out.copies = [c.as_dict() for c in s.rec.copies]
    out.yielded = [list(y) for y in s.yielded]
    out.removed = list(removed.values())
    out.stream_calls = s.stream_calls
    out.warnings = [m for _, m in LOGGER.messages][:50]
    return out


def run(version: str, src: Path, ckpt: Path, dep: Deployment, rel: Release | None = None) -> dict:
    """The raw result of one release on one checkpoint under one deployment: the registry's choice,
    the safe run (owned tensors, unlimited ring) and the deployed run."""
    rel = rel or prepare_release(version, src)
    cfg = read_config(ckpt)
    chosen = resolve(src, cfg.get("architectures") or [])
    result: dict = {"release": version, "registry": chosen, "deployment": dep.describe(), "owned_parameter": _owned_supported()}
    if chosen["class"] != "NemotronH_Nano_VL_V2":
        result["outcome"] = f"other-model: {chosen['class']} ({chosen['how']}, from {chosen['arch']!r})"
        return result
    try:
        safe = load_until_complete(rel, ckpt, dep, safe=True)
    except NotModelled as e:
        result["outcome"] = f"not-modelled: {e}"
        return result
    if safe.rejected:
        result["outcome"] = f"rejected: {safe.rejected}"
        return result
    if safe.stream_failed:
        result["outcome"] = f"stream-fails: {safe.stream_failed}"
        result["safe"] = safe.__dict__
        return result
    seed = {(r["name"], r["digest"]): r for r in safe.removed}
    deployed = load_until_complete(rel, ckpt, dep, safe=False, removed=seed)
    if deployed.stream_failed:
        result["outcome"] = f"stream-fails: {deployed.stream_failed}"
    elif deployed.unattributed:
        result["outcome"] = "unattributed-error: " + deployed.unattributed
    else:
        result["outcome"] = "completed"
    result["safe"] = safe.__dict__
    result["deployed"] = deployed.__dict__
    return result
