"""nemoverify: does a Nemotron Nano VL checkpoint reach the model intact when loaded as production loads it?

`checkpoint` reads safetensors headers, the shard index and config.json strictly; `readers` read
the tensors (the stored bytes as the reference, the Run:ai Model Streamer as the candidate);
`deployment` says what each vLLM and streamer release does, and `model` replays that release's
`load_weights`, hashing each tensor the moment the model would copy it. `engine` runs both passes
and compares them into a frozen `report.Report`, which `output` writes as a table, JSON or CI
formats. `api` holds the verbs; `cli` only parses, calls them, renders and picks the exit code.

    import nemoverify
    report = nemoverify.check("path/to/checkpoint", vllm="0.20", streamer="0.16")
    print(report.ok, [f.name for f in report.failures])

Names are imported on first use, so `import nemoverify` (and `nemoverify --help`) stays light.
"""

from __future__ import annotations

# First: under the `nemoverify` command, Ctrl-C from here on exits 130 without a traceback.
from nemoverify import interrupts  # noqa: F401  # isort: skip

from importlib import import_module
from typing import TYPE_CHECKING, Any

from nemoverify._version import __version__

_EXPORTS = {
    "check": "nemoverify.api",
    "verify": "nemoverify.api",
    "manifest": "nemoverify.api",
    "inspect": "nemoverify.api",
    "matrix": "nemoverify.api",
    "CheckOptions": "nemoverify.deployment.options",
    "resolve_check": "nemoverify.deployment.options",
    "Profile": "nemoverify.deployment.profiles",
    "resolve_profile": "nemoverify.deployment.profiles",
    "VLLM_RELEASES": "nemoverify.deployment.releases",
    "STREAMER_RELEASES": "nemoverify.deployment.releases",
    "Report": "nemoverify.report",
    "Finding": "nemoverify.report",
    "Observation": "nemoverify.observations",
    "ComponentSummary": "nemoverify.report",
    "Manifest": "nemoverify.engine.manifests",
    "Inventory": "nemoverify.engine.inventory",
    "Matrix": "nemoverify.engine.matrix",
    "Problem": "nemoverify.checkpoint.problems",
    "ExitCode": "nemoverify.errors",
    "NemoverifyError": "nemoverify.errors",
    "InvalidCheckpoint": "nemoverify.checkpoint.problems",
    "UsageError": "nemoverify.errors",
}
__all__ = [
    "__version__",
    "check",
    "verify",
    "manifest",
    "inspect",
    "matrix",
    "CheckOptions",
    "resolve_check",
    "Profile",
    "resolve_profile",
    "VLLM_RELEASES",
    "STREAMER_RELEASES",
    "Report",
    "Finding",
    "Observation",
    "ComponentSummary",
    "Manifest",
    "Inventory",
    "Matrix",
    "Problem",
    "ExitCode",
    "NemoverifyError",
    "InvalidCheckpoint",
    "UsageError",
]

if TYPE_CHECKING:
    from nemoverify.api import check, inspect, manifest, matrix, verify
    from nemoverify.checkpoint.problems import InvalidCheckpoint, Problem
    from nemoverify.deployment.options import CheckOptions, resolve_check
    from nemoverify.deployment.profiles import Profile, resolve_profile
    from nemoverify.deployment.releases import STREAMER_RELEASES, VLLM_RELEASES
    from nemoverify.engine.inventory import Inventory
    from nemoverify.engine.manifests import Manifest
    from nemoverify.engine.matrix import Matrix
    from nemoverify.errors import ExitCode, NemoverifyError, UsageError
    from nemoverify.observations import Observation
    from nemoverify.report import ComponentSummary, Finding, Report


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nemoverify' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # looked up once
    return value
