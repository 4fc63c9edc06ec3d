"""Every option of the command line, declared once: a command's signature names the ones it takes
(`commands`), and its parameter names are the request's fields (`deployment.request.Request`) or
the outputs' (`Outputs`). Choices come from the modules that define them; values are parsed here
with plain messages ("'yaml': choose one of table, json"), and grouped into help panels."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Annotated, Any, TypeVar

import typer

from nemoverify.cli.sizes import parse_size
from nemoverify.deployment.releases import LOAD_PATHS
from nemoverify.deployment.request import LOADERS
from nemoverify.hashing import ALGORITHMS, MANIFEST_ALGORITHMS
from nemoverify.output.files import OUTPUT_FORMATS
from nemoverify.storage_watch import MAX_STORAGE_TIMEOUT_S, MinimumRate

S = TypeVar("S", bound=str)

PROFILE = "Deployment profile"
INPUTS = "Inputs"
REPORTS = "Reports"
LIMITS = "Limits"
POLICY = "Policy"
MAX_PIECE = 16 << 20  # a reader's blocking read asks for SIZE at once: kept to a buffer's size
MAX_SECONDS = MAX_STORAGE_TIMEOUT_S  # a week: beyond it, a typo rather than a plan (and torch overflows)


def _choices(values: tuple[S, ...]) -> dict[str, Any]:
    """One of `values` (a Literal's members, defined where they are used), shown as a|b, completed."""
    names = list(values)

    def parse(value: object) -> S:
        for v in values:
            if v == value:
                return v
        raise typer.BadParameter(f"{value!r}: choose one of {', '.join(names)}")

    def complete(incomplete: str) -> list[str]:
        return [n for n in names if n.startswith(incomplete)]

    return {"parser": parse, "metavar": "|".join(names), "autocompletion": complete}


def _whole(minimum: int, metavar: str = "N", maximum: int | None = None) -> dict[str, Any]:
    """A whole number of at least `minimum` (and at most `maximum`)."""

    def parse(value: object) -> int:
        try:
            number = value if isinstance(value, int) else int(str(value))
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not a whole number") from None
        if number < minimum:
            raise typer.BadParameter(f"{number} is below the least allowed, {minimum}")
        if maximum is not None and number > maximum:
            raise typer.BadParameter(f"{number} is above the most allowed, {maximum}")
        return number

    return {"parser": parse, "metavar": metavar}


def _size(value: object) -> int:
    """Bytes as people write them (256MiB, 5GB, plain bytes; -1 unlimited)."""
    if isinstance(value, int):
        return value
    try:
        return parse_size(str(value))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _bound(value: object) -> int:
    """A bound in bytes, as --memory-limit takes sizes, never negative."""
    if str(value).strip().startswith("-"):
        raise typer.BadParameter(f"{str(value)!r}: a bound cannot be negative")
    return _size(value)


def _seconds(value: object) -> float:
    """Seconds, 0 to MAX_SECONDS (a fraction allowed)."""
    try:
        seconds = float(str(value))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a number of seconds") from None
    if not math.isfinite(seconds):
        raise typer.BadParameter(f"{value!r} is not a number of seconds")
    if seconds < 0:
        raise typer.BadParameter(f"{value} is below the least allowed, 0")
    if seconds > MAX_SECONDS:
        raise typer.BadParameter(f"{value} is above the most allowed, {MAX_SECONDS} (a week)")
    return seconds


def _minimum_rate(value: object) -> MinimumRate | None:
    """SIZE/SECONDS (1MiB/30s, 256KiB/10s), or 0 for none."""
    if isinstance(value, MinimumRate) or value is None:
        return value
    text = str(value).strip()
    if text == "0":
        return None
    size, slash, seconds = text.partition("/")
    if not slash:
        raise typer.BadParameter(f"{text!r}: write SIZE/SECONDS, as 1MiB/30s or 1MiB/30 (or 0 for none)")
    rate = MinimumRate(_bound(size), _seconds(seconds.removesuffix("s")))
    if not 1 <= rate.size <= MAX_PIECE or rate.seconds < 1:
        raise typer.BadParameter(f"{text!r}: 1 byte to 16MiB, in at least 1 s (or 0 for none)")
    return rate


def _option(*flags: str, panel: str, **settings: Any) -> Any:
    return typer.Option(*flags, rich_help_panel=panel, **settings)


PathArgument = Annotated[
    str,
    typer.Argument(
        metavar="PATH",
        show_default=False,
        help="The checkpoint: a directory (sharded with model.safetensors.index.json, or one model.safetensors), "
        "a .safetensors file, s3://bucket/prefix, gs://bucket/prefix, az://container/prefix, or a Hugging Face "
        "repo id (org/name) already in the local Hugging Face cache (never downloaded).",
    ),
]

# Inputs
Manifest = Annotated[
    str | None,
    _option(
        "--manifest",
        metavar="FILE",
        panel=INPUTS,
        help="Also check every tensor, as the candidate delivers it, against this manifest.",
    ),
]
FileAlone = Annotated[
    bool,
    _option(
        "--file-alone",
        panel=INPUTS,
        help="Judge a .safetensors PATH alone, though its directory holds others (vLLM, given the directory, "
        "loads them all; without this, such a PATH is refused, exit 3).",
    ),
]
RequiredManifest = Annotated[
    str, _option("--manifest", metavar="FILE", panel=INPUTS, help="The manifest to check against.")
]
Against = Annotated[
    str | None,
    _option(
        "--against",
        metavar="COPY",
        panel=INPUTS,
        help="Stream this copy (s3://, gs:// or az://bucket/prefix, a directory, a cached repo id) through the load "
        "path and compare it with PATH as the reference: did the upload arrive intact, and does it load right?",
    ),
]
CheckAlgorithm = Annotated[
    str | None,
    _option(
        "--algorithm",
        panel=INPUTS,
        help="Per-tensor hash, recorded in every report. Default xxh3-128 (lin128 with --device cuda), or the manifest's.",
        **_choices(ALGORITHMS),
    ),
]
MatrixAlgorithm = Annotated[
    str | None,
    _option(
        "--algorithm",
        panel=INPUTS,
        help="Per-tensor hash. Default xxh3-128 (lin128 with --device cuda).",
        **_choices(ALGORITHMS),
    ),
]
ManifestAlgorithm = Annotated[
    str,
    _option(
        "--algorithm",
        panel=INPUTS,
        help="Digest algorithm: blake3 (cryptographic, fastest), sha256 (recomputable with sha256sum-like tools) or "
        "xxh3-128 (fast, not cryptographic: catches accidents, not tampering). lin128 is refused: it compares "
        "loaders, it does not guard bytes.",
        **_choices(MANIFEST_ALGORITHMS),
    ),
]

# The deployment profile
Loader = Annotated[
    str,
    _option(
        "--loader",
        panel=PROFILE,
        help="Candidate loader. 'safetensors' replays the load path over the safetensors library: a baseline.",
        **_choices(LOADERS),
    ),
]
Vllm = Annotated[
    str,
    _option(
        "--vllm",
        metavar="VERSION",
        panel=PROFILE,
        help="The vLLM release the deployment runs (0.20.1, 0.33, ...): its load path, routing, text-only rule and "
        "iterator. 'auto': the installed vLLM, else the newest release nemoverify knows.",
    ),
]
Streamer = Annotated[
    str | None,
    _option(
        "--streamer",
        metavar="VERSION",
        panel=PROFILE,
        help="The runai-model-streamer release the deployment runs (0.15, 0.16, 0.17): whether tensors are views "
        "into reused buffers. Default: the installed one; another release is emulated.",
    ),
]
MatrixVllm = Annotated[
    str,
    _option(
        "--vllm",
        metavar="VERSION",
        panel=PROFILE,
        help="Only the rows of this vLLM release (0.20, 0.26.0, ...). 'auto' (the default): every release row.",
    ),
]
MatrixStreamer = Annotated[
    str | None,
    _option(
        "--streamer",
        metavar="VERSION",
        panel=PROFILE,
        help="Only the rows of this runai-model-streamer release (0.15 and 0.16 behave alike, 0.17). Default: both.",
    ),
]
Stress = Annotated[
    bool,
    _option(
        "--stress",
        "--reuse-buffers",
        panel=PROFILE,
        help="Worst case instead of production's buffers: borrowed views, a ring of the largest tensor, staging "
        "buffers of the largest tensor. A pass means safe even then.",
    ),
]
Strategy = Annotated[
    str | None,
    _option(
        "--strategy",
        panel=PROFILE,
        help="Override the release's load path: 'fixed' is vLLM after PR 42244, 'legacy' before it (keeps "
        "references). For experiments; the report says it was overridden.",
        **_choices(LOAD_PATHS),
    ),
]
MemoryLimit = Annotated[
    int | None,
    _option(
        "--memory-limit",
        parser=_size,
        metavar="SIZE",
        panel=PROFILE,
        help="RUNAI_STREAMER_MEMORY_LIMIT: bytes or a size (256MiB, 5GB), -1 unlimited, 0 a ring of the largest "
        "tensor. Default: the environment's RUNAI_STREAMER_MEMORY_LIMIT, else 256 MiB, or 64 MiB a core past 4 "
        "cores up to an eighth of the checkpoint (measured fastest; production's 40 GB where the ring decides the "
        "verdict), raised to two of the largest tensor, within a quarter of available memory (a container's "
        "cgroup limit counts) (0 with --stress).",
    ),
]
Concurrency = Annotated[
    int | None,
    _option(
        "--concurrency", panel=PROFILE, help="RUNAI_STREAMER_CONCURRENCY: the streamer's reader threads.", **_whole(1)
    ),
]
TextOnly = Annotated[
    bool,
    _option(
        "--text-only",
        panel=PROFILE,
        help="Replay text-only mode (every modality limit 0): mlp1, vision and sound are skipped.",
    ),
]
ExtraConfig = Annotated[
    str | None,
    _option(
        "--model-loader-extra-config",
        metavar="JSON",
        panel=PROFILE,
        help="vLLM's --model-loader-extra-config JSON: distributed, concurrency, memory_limit.",
    ),
]
Nproc = Annotated[
    int,
    _option(
        "--nproc",
        panel=PROFILE,
        help="Run the streamer's distributed mode across N local processes (torch elastic launch; gloo on the CPU, "
        "NCCL with --device cuda).",
        **_whole(1),
    ),
]
MatrixNproc = Annotated[
    int,
    _option(
        "--nproc",
        panel=PROFILE,
        help="Ranks for the distributed rows (gloo on the CPU, NCCL with --device cuda); 1 skips them.",
        **_whole(1),
    ),
]
Distributed = Annotated[
    bool,
    _option(
        "--distributed",
        panel=PROFILE,
        help="This process is one rank of a group started by torchrun; rank 0 prints the report.",
    ),
]
Device = Annotated[
    str,
    _option("--device", metavar="cpu|cuda|cuda:N", panel=PROFILE, help="Where the streamer delivers tensors."),
]

# Policy
Strict = Annotated[
    bool,
    _option("--strict", panel=POLICY, help="Treat warnings (unknown architecture, unindexed shards) as errors."),
]
FailOnUnclaimed = Annotated[
    bool,
    _option(
        "--fail-on-unclaimed",
        panel=POLICY,
        help="Fail (exit 1) when tensors exist that no component claims (vLLM drops them silently).",
    ),
]

# Limits
MaxBytes = Annotated[
    int | None,
    _option(
        "--max-bytes",
        parser=_bound,
        metavar="SIZE",
        panel=LIMITS,
        help="Refuse (exit 3), before reading, a checkpoint declaring more tensor data than SIZE: bytes or a size "
        "(500GB, 1TiB).",
    ),
]
MaxTensors = Annotated[
    int,
    _option(
        "--max-tensors",
        panel=LIMITS,
        help="Refuse (exit 3), before parsing the headers, a checkpoint declaring more tensors than N in all "
        "(each parsed tensor costs about 1 KiB).",
        **_whole(1),
    ),
]
StorageTimeout = Annotated[
    float,
    _option(
        "--storage-timeout",
        parser=_seconds,
        metavar="SECONDS",
        panel=LIMITS,
        help="Overall deadline, in seconds, for a run that reads s3://, gs:// or az:// (0: none; at most a week); "
        "past it, exit 3.",
    ),
]
StorageMinRate = Annotated[
    MinimumRate | None,
    _option(
        "--storage-min-rate",
        parser=_minimum_rate,
        metavar="SIZE/SECONDS",
        panel=LIMITS,
        help="Each request to s3://, gs:// or az:// must deliver at least SIZE (or finish) every SECONDS, or the "
        "run ends, exit 3, naming the object and the server: a stalled or trickling store (0: no minimum).",
    ),
]
RankTimeout = Annotated[
    int,
    _option(
        "--rank-timeout",
        panel=LIMITS,
        help="Seconds a rank may wait on the others (process-group and broadcast timeout; at most a week).",
        **_whole(1, "SECONDS", MAX_SECONDS),
    ),
]

# Reports
Format = Annotated[str, _option("--format", panel=REPORTS, help="What to print on stdout.", **_choices(OUTPUT_FORMATS))]
Json = Annotated[
    str | None,
    _option(
        "--json",
        metavar="FILE",
        panel=REPORTS,
        help="Also write the whole JSON report to FILE (whole or not at all; - for stdout).",
    ),
]
InventoryJson = Annotated[
    str | None,
    _option("--json", metavar="FILE", panel=REPORTS, help="Also write the inventory as JSON to FILE."),
]
JunitXml = Annotated[
    str | None,
    _option(
        "--junit-xml",
        metavar="FILE",
        panel=REPORTS,
        help="Write a JUnit XML report (one test case per component) to FILE (- for stdout).",
    ),
]
Sarif = Annotated[
    str | None,
    _option(
        "--sarif",
        metavar="FILE",
        panel=REPORTS,
        help="Write a SARIF 2.1.0 log (one result per failed tensor) to FILE (- for stdout).",
    ),
]
Output = Annotated[
    str,
    _option(
        "-o",
        "--output",
        metavar="FILE",
        panel=REPORTS,
        help="Manifest file to write (whole or not at all; - for stdout).",
    ),
]
Show = Annotated[
    int,
    _option("--show", panel=REPORTS, help="How many failed tensors the table lists (0: all).", **_whole(0)),
]
Quiet = Annotated[
    bool,
    _option("-q", "--quiet", panel=REPORTS, help="Print nothing; the exit code is the answer."),
]


@dataclass(frozen=True)
class Outputs:
    """What a command prints and writes besides its verdict."""

    output_format: str = "table"
    json_file: str | None = None
    junit_xml: str | None = None
    sarif: str | None = None
    show: int = 20
    quiet: bool = False

    @classmethod
    def taking(cls, given: dict[str, Any]) -> Outputs:
        """The outputs made of those of `given` (a command's arguments) that are its fields."""
        return cls(**{f.name: given[f.name] for f in fields(cls) if f.name in given})

    @property
    def json_on_stdout(self) -> bool:
        return self.output_format == "json" and not self.quiet
