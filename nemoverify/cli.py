"""The command line. It parses, calls the library, renders, and picks the exit code; nothing else.

Exit codes: 0 verified, 1 verification failed, 2 usage error, 3 invalid or unreadable checkpoint
(or storage, or a failed rank), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from nemoverify import __version__
from nemoverify.deadline import DEFAULT_STORAGE_TIMEOUT_S
from nemoverify.errors import ExitCode, InvalidCheckpoint, NemoverifyError, redact
from nemoverify.hashing import ALGORITHMS, DEFAULT_MANIFEST_ALGORITHM, MANIFEST_ALGORITHMS, Algorithm
from nemoverify.options import LOADERS, Loader
from nemoverify.outputs import OUTPUT_FORMATS, OutputFormat
from nemoverify.profiles import LOAD_PATHS, LoadPath

if TYPE_CHECKING:
    from rich.console import Console

    from nemoverify.manifests import Manifest
    from nemoverify.outputs import Reports
    from nemoverify.profile_matrix import Matrix
    from nemoverify.report import Report

EXIT_CODES_HELP = (
    "Exit codes: 0 verified; 1 verification failed (a mismatched, missing or corrupted tensor); "
    "2 usage error; 3 invalid or unreadable checkpoint, storage error or failed rank; "
    "4 internal error (a bug: please report it); 130 interrupted."
)


def _epilog(*examples: str, exit_codes: str = EXIT_CODES_HELP) -> str:
    """An Examples section above the exit codes. Help is plain text (no rich markup mode): flags show
    no type, and `\b` keeps each example on its own line."""
    lines = "\n".join(f"  {e}" for e in examples)
    return f"\b\nExamples:\n{lines}\n\n{exit_codes} Set NEMOVERIFY_DEBUG=1 to see the traceback of a crash."


EXAMPLES = {
    "check": (
        "nemoverify check examples/nano-omni-tiny",
        "nemoverify check /ckpt/nano-vl --manifest nano-vl.manifest.json --strict \\",
        "    --json nemoverify.json --junit-xml nemoverify.xml --sarif nemoverify.sarif",
        "nemoverify check /ckpt/nano-vl --against s3://models/nano-vl",
        "nemoverify check nvidia/NVIDIA-Nemotron-Nano-12B-v2-VL-BF16 --nproc 2 --memory-limit 5GB",
        "nemoverify check examples/nano-omni-tiny --sarif - > nemoverify.sarif",
    ),
    "matrix": (
        "nemoverify matrix examples/nano-omni-tiny",
        "nemoverify matrix /ckpt/nano-vl --nproc 1 --json matrix.json",
    ),
    "inspect": ("nemoverify inspect examples/nano-omni-tiny", "nemoverify inspect gs://models/nano-vl --format json"),
    "manifest": (
        "nemoverify manifest /ckpt/nano-vl -o nano-vl.manifest.json",
        "nemoverify manifest /ckpt/nano-vl -o - --algorithm sha256 | gzip > nano-vl.manifest.json.gz",
    ),
    "verify": (
        "nemoverify verify /mnt/upload/nano-vl --manifest nano-vl.manifest.json",
        "nemoverify verify s3://models/nano-vl --manifest nano-vl.manifest.json --junit-xml nemoverify.xml",
    ),
}

app = typer.Typer(
    name="nemoverify",
    help="Verify that a Nemotron Nano VL checkpoint reaches the model intact when loaded the way "
    "production loads it (Run:ai streamer + vLLM's load_weights).",
    epilog=_epilog(
        "nemoverify check examples/nano-omni-tiny",
        "nemoverify manifest /ckpt/nano-vl -o nano-vl.manifest.json",
        "nemoverify verify /mnt/upload/nano-vl --manifest nano-vl.manifest.json",
        "nemoverify check /mnt/upload/nano-vl --manifest nano-vl.manifest.json --sarif nemoverify.sarif",
    ),
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion
    rich_markup_mode=None,  # plain help: no <bool> beside flags, readable in CI logs
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

T = TypeVar("T")


S = TypeVar("S", bound=str)


def _choices(values: tuple[S, ...]) -> dict[str, Any]:
    """Option settings for one of `values` (a Literal's members, defined where they are used): parsed
    here, so a wrong value reads "'yaml': choose one of table, json" (not a validation library's
    "Value error, ..."), shown as table|json, completed."""
    names = list(values)

    def parse(value: object) -> S:
        for v in values:
            if v == value:
                return v
        raise typer.BadParameter(f"{value!r}: choose one of {', '.join(names)}")

    return {"parser": parse, "metavar": "|".join(names), "autocompletion": lambda: names}


def _whole(minimum: int, metavar: str = "N") -> dict[str, Any]:
    """Option settings for a whole number of at least `minimum`, with a plain message."""

    def parse(value: object) -> int:
        if isinstance(value, int):
            number = value
        else:
            try:
                number = int(str(value))
            except ValueError:
                raise typer.BadParameter(f"{value!r} is not a whole number") from None
        if number < minimum:
            raise typer.BadParameter(f"{number} is below the least allowed, {minimum}")
        return number

    return {"parser": parse, "metavar": metavar}


def _size(value: object) -> int:
    from nemoverify.sizes import parse_size

    if isinstance(value, int):
        return value
    try:
        return parse_size(str(value))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _stdout() -> Console:
    from rich.console import Console  # rich only where something is printed (import time: issue 17)

    return Console(highlight=False, soft_wrap=False)


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _fail(message: str, code: ExitCode) -> typer.Exit:
    _stderr().print(f"[bold red]error[/]: {escape(redact(message))}", markup=True, soft_wrap=True)
    return typer.Exit(int(code))


def _import_heavy_modules() -> None:
    """Import torch with SIGINT held back: Ctrl-C during its C++ initialisation aborts the process
    ("exception not rethrown") instead of raising KeyboardInterrupt. A Ctrl-C that arrives meanwhile
    is delivered as soon as the import is done."""
    import signal

    if "torch" in sys.modules:
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        import torch  # noqa: F401
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _run(fn: Callable[[], T], needs_torch: bool = False) -> T:
    """The one place where exceptions become messages and exit codes. A run that ends without a
    verdict (exit 3) still writes every report it was asked for; a usage error (2) writes none."""
    with _interruptible():
        return _run_interruptible(fn, needs_torch)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Inside a run, Ctrl-C raises KeyboardInterrupt (the passes stop, partial files go); outside it,
    the entry point's handler ends the process at once with 130."""
    import signal

    from nemoverify.errors import interrupted_at_once

    outside = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT)
    if outside is not interrupted_at_once:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, interrupted_at_once)


def _run_interruptible(fn: Callable[[], T], needs_torch: bool) -> T:
    try:
        if needs_torch:
            _import_heavy_modules()
        # Everything imported so far (torch's hundreds of thousands of objects) lives as long as the
        # process: frozen, the cycle collector stops walking it each time a run allocates its tens
        # of thousands of observations (a 24,000-tensor header parse: 0.33 s -> 0.13 s).
        gc.freeze()
        return fn()
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        _stderr().print("interrupted")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except InvalidCheckpoint as exc:
        err = _stderr()
        err.print(f"[bold red]error[/]: {escape(exc.root)}: invalid checkpoint ({len(exc.problems)} problem(s))")
        for p in exc.problems:
            err.print(f"  [{p.rule}] {redact(p.render())}", markup=False, soft_wrap=True)
        _leave_reports(exc)
        raise typer.Exit(int(exc.exit_code)) from None
    except NemoverifyError as exc:
        if exc.exit_code is not ExitCode.USAGE:
            _leave_reports(exc)
        raise _fail(str(exc), exc.exit_code) from None
    except Exception as exc:  # a bug, or a failure we did not foresee: never a verdict, never "invalid"
        if os.environ.get("NEMOVERIFY_DEBUG"):
            traceback.print_exc()
        _leave_reports(exc)
        raise _fail(
            f"internal error, unexpected {type(exc).__name__}: {exc} (a bug in nemoverify, not a verdict on the "
            "checkpoint; set NEMOVERIFY_DEBUG=1 for the traceback and report it)",
            ExitCode.CRASH,
        ) from None


def _leave_reports(error: BaseException) -> None:
    """The reports of a run that `error` ended before its verdict: CI's `if: always()` steps find them."""
    reports = _REPORTS.get()
    if reports is None:
        return
    report = reports.without_verdict(error)
    for message in reports.write(report):
        _fail(message, ExitCode.INVALID)
    if reports.format_json:
        from nemoverify.render.jsonout import report_json

        sys.stdout.write(report_json(report))


@contextlib.contextmanager
def _progress(enabled: bool, totals: dict[str, int]) -> Iterator[Callable[[str, int], None]]:
    err = _stderr() if enabled else None
    if err is None or not err.is_terminal:
        yield lambda phase, n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    with Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        tasks = {phase: progress.add_task(phase, total=total) for phase, total in totals.items()}
        batched = _Batched(lambda phase, n: progress.advance(tasks[phase], n), tasks)
        yield batched
        batched.flush()


class _Batched:
    """Progress from any thread, handed to rich at most every PROGRESS_EVERY_S: a rich update per
    tensor (25,000 of them) would cost more than hashing them."""

    PROGRESS_EVERY_S = 0.05

    def __init__(self, advance: Callable[[str, int], None], phases: Iterable[str]) -> None:
        self._advance = advance
        self._pending = dict.fromkeys(phases, 0)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def __call__(self, phase: str, nbytes: int) -> None:
        if phase not in self._pending:
            return
        with self._lock:
            self._pending[phase] += nbytes
            if time.monotonic() - self._last < self.PROGRESS_EVERY_S:
                return
        self.flush()

    def flush(self) -> None:
        with self._lock:
            pending = [(p, n) for p, n in self._pending.items() if n]
            self._pending = dict.fromkeys(self._pending, 0)
            self._last = time.monotonic()
        for phase, n in pending:
            self._advance(phase, n)


def _write_output(path: str, text: str) -> None:
    from nemoverify.outputs import write_output

    try:
        write_output(path, text)
    except OSError as exc:
        raise _fail(f"cannot write {path}: {exc.strerror or exc}", ExitCode.USAGE) from None


def _bounded(work: Callable[[], T], seconds: float, *paths: str | None) -> Callable[[], T]:
    """`work` under the object-storage deadline (nemoverify.deadline) when a path is an object URL."""

    def run() -> T:
        from nemoverify.deadline import storage_deadline

        with storage_deadline(seconds, *paths):
            return work()

    return run


def _plan_outputs(
    requested: dict[str, str | None], reads: list[tuple[str | None, str]], stdout_taken_by: str | None
) -> None:
    """Refuse (exit 2) outputs that cannot be written or would land in what the run reads, before any work."""
    from nemoverify.outputs import guarded, plan_outputs

    guards = [g for location, what in reads for g in guarded(location, what)]
    _run(lambda: plan_outputs(requested, guards, stdout_taken_by))


# The report files of the running command, checked before it started (see _plan_reports); _run and
# _emit write them. Reset by the app callback at the start of every invocation.
_REPORTS: contextvars.ContextVar[Reports | None] = contextvars.ContextVar("reports", default=None)


def _plan_reports(
    path: str,
    json_file: str | None,
    junit_xml: str | None,
    sarif: str | None,
    output_format: OutputFormat = "table",
    quiet: bool = False,
    against: str | None = None,
    manifest: str | None = None,
) -> Reports:
    """Check every report path before the run starts: a bad one is a usage error (exit 2), found
    before any work, never after a verdict that it would then lose."""
    from nemoverify.outputs import plan_reports

    stdout = "--format json" if output_format == "json" and not quiet else None
    reports = _run(lambda: plan_reports(path, json_file, junit_xml, sarif, against, manifest, stdout))
    _REPORTS.set(reports)
    return reports


def _version(value: bool) -> None:
    if value:
        print(f"nemoverify {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    _REPORTS.set(None)


PathArg = Annotated[
    str,
    typer.Argument(
        help="The checkpoint: a directory (sharded with model.safetensors.index.json, or one model.safetensors), "
        "a .safetensors file, s3://bucket/prefix, gs://bucket/prefix, or a Hugging Face repo id (org/name) "
        "already in the local Hugging Face cache (never downloaded).",
        metavar="PATH",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    str | None,
    typer.Option(
        "--json", help="Also write the whole JSON report to FILE (whole or not at all; - for stdout).", metavar="FILE"
    ),
]
ManifestOpt = Annotated[
    str | None,
    typer.Option(
        "--manifest",
        help="Also check every tensor, as the candidate delivers it, against this manifest.",
        metavar="FILE",
    ),
]
JunitOpt = Annotated[
    str | None,
    typer.Option(
        "--junit-xml",
        help="Write a JUnit XML report (one test case per component) to FILE (- for stdout).",
        metavar="FILE",
    ),
]
SarifOpt = Annotated[
    str | None,
    typer.Option(
        "--sarif", help="Write a SARIF 2.1.0 log (one result per failed tensor) to FILE (- for stdout).", metavar="FILE"
    ),
]
ShowOpt = Annotated[int, typer.Option(help="How many failed tensors the table lists (0: all).", **_whole(0))]
FormatOpt = Annotated[
    OutputFormat, typer.Option("--format", help="What to print on stdout.", **_choices(OUTPUT_FORMATS))
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing; the exit code is the answer.")]
StrictOpt = Annotated[
    bool, typer.Option("--strict", help="Treat warnings (unknown architecture, unindexed shards) as errors.")
]
StorageTimeoutOpt = Annotated[
    float,
    typer.Option(
        help="Overall deadline, in seconds, for a run that reads s3://, gs:// or az:// (0: none); past it, exit 3.",
        min=0,
        metavar="SECONDS",
    ),
]
MaxBytesOpt = Annotated[
    int | None,
    typer.Option(
        help="Refuse (exit 3), before reading, a checkpoint declaring more tensor data than N bytes.",
        min=0,
        metavar="N",
    ),
]


# The options of `check`, declared here so that its signature reads as the list of what it takes.
LoaderOpt = Annotated[
    Loader,
    typer.Option(
        help="Candidate loader. 'safetensors' replays the load path over the safetensors library: a baseline.",
        **_choices(LOADERS),
    ),
]
VllmOpt = Annotated[
    str,
    typer.Option(
        "--vllm",
        help="The vLLM release the deployment runs (0.20.1, 0.33, ...): its load path, routing, text-only rule and iterator. 'auto': the installed vLLM, else the newest release nemoverify knows.",
        metavar="VERSION",
    ),
]
StreamerOpt = Annotated[
    str | None,
    typer.Option(
        "--streamer",
        help="The runai-model-streamer release the deployment runs (0.15, 0.16, 0.17): whether tensors are views into reused buffers. Default: the installed one; another release is emulated.",
        metavar="VERSION",
        show_default=False,
    ),
]
StressOpt = Annotated[
    bool,
    typer.Option(
        "--stress",
        "--reuse-buffers",
        help="Worst case instead of production's buffers: borrowed views, a ring of the largest tensor, staging buffers of the largest tensor. A pass means safe even then.",
    ),
]
StrategyOpt = Annotated[
    LoadPath | None,
    typer.Option(
        help="Override the release's load path: 'fixed' is vLLM after PR 42244, 'legacy' before it (keeps references). For experiments; the report says it was overridden.",
        show_default=False,
        **_choices(LOAD_PATHS),
    ),
]
MemoryLimitOpt = Annotated[
    int | None,
    typer.Option(
        help="RUNAI_STREAMER_MEMORY_LIMIT: bytes or a size (256MiB, 5GB), -1 unlimited, 0 a ring of the largest tensor. Default: the environment's RUNAI_STREAMER_MEMORY_LIMIT, else 256 MiB (measured fastest; production's 40 GB where the ring decides the verdict), raised to two of the largest tensor, within a quarter of available memory (a container's cgroup limit counts) (0 with --stress).",
        parser=_size,
        metavar="SIZE",
    ),
]
ConcurrencyOpt = Annotated[
    int | None, typer.Option(help="RUNAI_STREAMER_CONCURRENCY: the streamer's reader threads.", **_whole(1))
]
TextOnlyOpt = Annotated[
    bool,
    typer.Option(
        "--text-only", help="Replay text-only mode (every modality limit 0): mlp1, vision and sound are skipped."
    ),
]
CheckAlgorithmOpt = Annotated[
    Algorithm | None,
    typer.Option(
        help="Per-tensor hash, recorded in every report. Default xxh3-128 (lin128 with --device cuda), or the manifest's.",
        show_default=False,
        **_choices(ALGORITHMS),
    ),
]
FailOnUnclaimedOpt = Annotated[
    bool,
    typer.Option(
        "--fail-on-unclaimed",
        help="Fail (exit 1) when tensors exist that no component claims (vLLM drops them silently).",
    ),
]
AgainstOpt = Annotated[
    str | None,
    typer.Option(
        "--against",
        help="Stream this copy (s3:// or gs://bucket/prefix, a directory, a cached repo id) through the load path and compare it with PATH as the reference: did the upload arrive intact, and does it load right?",
        metavar="COPY",
    ),
]
NprocOpt = Annotated[
    int,
    typer.Option(
        help="Run the streamer's distributed mode across N local processes (torch elastic launch; gloo on the CPU, NCCL with --device cuda).",
        **_whole(1),
    ),
]
DistributedOpt = Annotated[
    bool,
    typer.Option(
        "--distributed", help="This process is one rank of a group started by torchrun; rank 0 prints the report."
    ),
]
CheckDeviceOpt = Annotated[str, typer.Option(help="Where the streamer delivers tensors: cpu, cuda or cuda:N.")]
CheckExtraConfigOpt = Annotated[
    str | None,
    typer.Option(
        help="vLLM's --model-loader-extra-config JSON: distributed, concurrency, memory_limit.", metavar="JSON"
    ),
]
RankTimeoutOpt = Annotated[
    int,
    typer.Option(
        help="Seconds a rank may wait on the others (process-group and broadcast timeout).",
        **_whole(1, "SECONDS"),
    ),
]


@app.command(
    epilog=_epilog(*EXAMPLES["check"]),
    short_help="Load the checkpoint as production does and compare every tensor with its stored bytes.",
)
def check(
    path: PathArg,
    loader: LoaderOpt = "runai",
    vllm: VllmOpt = "auto",
    streamer: StreamerOpt = None,
    stress: StressOpt = False,
    strategy: StrategyOpt = None,
    memory_limit: MemoryLimitOpt = None,
    concurrency: ConcurrencyOpt = None,
    text_only: TextOnlyOpt = False,
    algorithm: CheckAlgorithmOpt = None,
    output_format: FormatOpt = "table",
    json_file: JsonOpt = None,
    strict: StrictOpt = False,
    fail_on_unclaimed: FailOnUnclaimedOpt = False,
    manifest: ManifestOpt = None,
    against: AgainstOpt = None,
    nproc: NprocOpt = 1,
    distributed: DistributedOpt = False,
    device: CheckDeviceOpt = "cpu",
    model_loader_extra_config: CheckExtraConfigOpt = None,
    rank_timeout: RankTimeoutOpt = 300,
    max_bytes: MaxBytesOpt = None,
    storage_timeout: StorageTimeoutOpt = DEFAULT_STORAGE_TIMEOUT_S,
    junit_xml: JunitOpt = None,
    sarif: SarifOpt = None,
    show: ShowOpt = 20,
    quiet: QuietOpt = False,
) -> None:
    """Load the checkpoint with the reference reader and through the candidate loader + the load path of
    the deployment profile (--vllm, --streamer); compare every tensor, per component (and against a
    manifest, if given)."""
    from nemoverify import api

    _plan_reports(path, json_file, junit_xml, sarif, output_format, quiet, against, manifest)

    def work() -> Report | None:
        return api.check(
            path,
            manifest=manifest,
            against=against,
            vllm=vllm,
            streamer=streamer,
            stress=stress,
            strategy=strategy,
            loader=loader,
            memory_limit=memory_limit,
            concurrency=concurrency,
            text_only=text_only,
            algorithm=algorithm,
            strict=strict,
            fail_on_unclaimed=fail_on_unclaimed,
            device=device,
            model_loader_extra_config=model_loader_extra_config,
            nproc=nproc,
            distributed=distributed,
            rank_timeout=rank_timeout,
            max_bytes=max_bytes,
            watch=lambda phases: _progress(not quiet, phases),
        )

    report = _run(_bounded(work, storage_timeout, path, against), needs_torch=True)
    if report is None:
        raise typer.Exit(0)  # a rank other than 0 under torchrun: rank 0 carries the verdict
    _emit(report, output_format, json_file, junit_xml, sarif, quiet, show)


def _emit(
    report: Report,
    output_format: OutputFormat,
    json_file: str | None,
    junit_xml: str | None,
    sarif: str | None,
    quiet: bool,
    show: int,
) -> None:
    """Write the requested files (each whole), print, and exit with the verdict. A file that cannot
    be written is an error on stderr; the verdict still decides the exit code unless it was 0."""
    from nemoverify.outputs import Reports

    reports = _REPORTS.get() or Reports(json_file, junit_xml, sarif)
    failed = reports.write(report)
    for message in failed:
        _fail(message, ExitCode.USAGE)
    if not quiet:
        if output_format == "json":
            from nemoverify.render.jsonout import report_json

            sys.stdout.write(report_json(report))
        else:
            from nemoverify.render.table import render_report

            # A report on standard output (`--json -`) keeps it clean: the table goes to stderr.
            render_report(report, _stderr() if reports.to_stdout else _stdout(), show)
    code = ExitCode.VERIFIED if report.ok else ExitCode.FAILED
    raise typer.Exit(int(ExitCode.USAGE if failed and code is ExitCode.VERIFIED else code))


MATRIX_EXIT_HELP = (
    "Exit codes: 0 no deployment corrupts the checkpoint as deployed; 1 at least one does (stress-only failures "
    "do not fail); 2 usage error; 3 invalid or unreadable checkpoint, storage error or failed rank; "
    "4 internal error; 130 interrupted."
)


@app.command(
    epilog=_epilog(*EXAMPLES["matrix"], exit_codes=MATRIX_EXIT_HELP),
    short_help="The checkpoint against every deployment profile: which of your deployments is exposed?",
)
def matrix(
    path: PathArg,
    nproc: Annotated[
        int,
        typer.Option(
            help="Ranks for the distributed rows (gloo on the CPU, NCCL with --device cuda); 1 skips them.",
            **_whole(1),
        ),
    ] = 2,
    device: Annotated[
        str, typer.Option(help="Where distributed rows stream: cpu, or cuda (one GPU per rank).")
    ] = "cpu",
    model_loader_extra_config: Annotated[
        str | None,
        typer.Option(help="vLLM's --model-loader-extra-config JSON: concurrency, memory_limit.", metavar="JSON"),
    ] = None,
    algorithm: Annotated[
        Algorithm | None,
        typer.Option(
            help="Per-tensor hash. Default xxh3-128 (lin128 with --device cuda).",
            show_default=False,
            **_choices(ALGORITHMS),
        ),
    ] = None,
    rank_timeout: Annotated[
        int,
        typer.Option(
            help="Seconds a rank may wait on the others (process-group and broadcast timeout).",
            **_whole(1, "SECONDS"),
        ),
    ] = 300,
    output_format: FormatOpt = "table",
    json_file: JsonOpt = None,
    strict: StrictOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The checkpoint against every deployment profile nemoverify knows: each vLLM release x streamer
    0.16 / 0.17 behaviour x one process / distributed, as deployed and under stress. Which of your
    deployments is exposed?"""
    from nemoverify import api
    from nemoverify.options import resolve_check
    from nemoverify.outputs import STDOUT

    stdout = "--format json" if output_format == "json" and not quiet else None
    _plan_outputs({"--json": json_file}, [(path, "the checkpoint")], stdout)
    base = _run(
        lambda: resolve_check(
            algorithm=algorithm,
            strict=strict,
            device=device,
            extra_config=model_loader_extra_config,
            nproc=nproc,
        )
    )

    def work() -> Matrix:
        return api.run_matrix(path, base, nproc, rank_timeout, watch=lambda phases: _progress(not quiet, phases))

    result = _run(work, needs_torch=True)
    import json

    text = json.dumps(result.to_dict(), indent=2) + "\n"
    if json_file:
        _write_output(json_file, text)
    if not quiet:
        if output_format == "json":
            sys.stdout.write(text)
        else:
            from nemoverify.render.profile_matrix import render_matrix

            render_matrix(result, _stderr() if json_file == STDOUT else _stdout())
    raise typer.Exit(int(ExitCode.VERIFIED if result.ok else ExitCode.FAILED))


@app.command(
    epilog=_epilog(*EXAMPLES["inspect"]),
    short_help="Show components, dtypes, shards and every structural problem, from the headers alone.",
)
def inspect(
    path: PathArg,
    output_format: FormatOpt = "table",
    json_file: Annotated[
        str | None, typer.Option("--json", help="Also write the inventory as JSON to FILE.", metavar="FILE")
    ] = None,
    strict: StrictOpt = False,
    storage_timeout: StorageTimeoutOpt = DEFAULT_STORAGE_TIMEOUT_S,
) -> None:
    """Show what the checkpoint holds (components, dtypes, shards, what each loader skips) and every
    structural problem, without reading a tensor. Exit 3 if any problem is an error."""
    import json

    from nemoverify import api
    from nemoverify.outputs import STDOUT

    stdout = "--format json" if output_format == "json" else None
    _plan_outputs({"--json": json_file}, [(path, "the checkpoint")], stdout)
    inventory = _run(_bounded(lambda: api.inspect(path), storage_timeout, path))
    text = json.dumps(inventory.to_dict(), indent=2) + "\n"
    if json_file:
        _write_output(json_file, text)
    if output_format == "json":
        sys.stdout.write(text)
    else:
        from nemoverify.render.inventory import render_inventory

        render_inventory(inventory, _stderr() if json_file == STDOUT else _stdout())
    bad = [p for p in inventory.problems if strict or p.severity == "error"]
    raise typer.Exit(int(ExitCode.INVALID if bad else ExitCode.VERIFIED))


@app.command(
    epilog=_epilog(*EXAMPLES["manifest"]),
    short_help="Record one digest per tensor, so that every copy can be verified later.",
)
def manifest(
    path: PathArg,
    output: Annotated[
        str,
        typer.Option(
            "--output", "-o", help="Manifest file to write (whole or not at all; - for stdout).", metavar="FILE"
        ),
    ],
    algorithm: Annotated[
        Algorithm,
        typer.Option(
            help="Digest algorithm: blake3 (cryptographic, fastest), sha256 (recomputable with sha256sum-like tools) or xxh3-128 (fast, not cryptographic: catches accidents, not tampering). lin128 is refused: it compares loaders, it does not guard bytes.",
            **_choices(MANIFEST_ALGORITHMS),
        ),
    ] = DEFAULT_MANIFEST_ALGORITHM,
    strict: StrictOpt = False,
    max_bytes: MaxBytesOpt = None,
    storage_timeout: StorageTimeoutOpt = DEFAULT_STORAGE_TIMEOUT_S,
    quiet: QuietOpt = False,
) -> None:
    """Record one digest per tensor, per-shard sizes and per-component and whole-model roots."""
    from nemoverify import api
    from nemoverify.outputs import STDOUT

    _plan_outputs({"--output": output}, [(path, "the checkpoint")], None)

    def work() -> Manifest:
        return api.manifest(
            path,
            algorithm=algorithm,
            strict=strict,
            max_bytes=max_bytes,
            watch=lambda phases: _progress(not quiet, phases),
        )

    recorded = _run(_bounded(work, storage_timeout, path))
    _write_output(output, recorded.to_json())
    if not quiet:
        (_stderr() if output == STDOUT else _stdout()).print(
            f"wrote {'the manifest to standard output' if output == STDOUT else output}: "
            f"{len(recorded.tensors)} tensors, {recorded.algorithm} root {recorded.root()}",
            markup=False,
        )


@app.command(
    epilog=_epilog(*EXAMPLES["verify"]),
    short_help="Check the stored bytes against a manifest, as fast as the disk allows.",
)
def verify(
    path: PathArg,
    manifest: Annotated[str, typer.Option("--manifest", help="The manifest to check against.", metavar="FILE")],
    output_format: FormatOpt = "table",
    json_file: Annotated[
        str | None,
        typer.Option("--json", help="Also write the whole JSON report to FILE (atomically).", metavar="FILE"),
    ] = None,
    junit_xml: JunitOpt = None,
    sarif: SarifOpt = None,
    strict: StrictOpt = False,
    max_bytes: MaxBytesOpt = None,
    storage_timeout: StorageTimeoutOpt = DEFAULT_STORAGE_TIMEOUT_S,
    show: ShowOpt = 20,
    quiet: QuietOpt = False,
) -> None:
    """Check only the stored bytes against a manifest, as fast as the disk allows (no loader replay)."""
    from nemoverify import api

    _plan_reports(path, json_file, junit_xml, sarif, output_format, quiet, manifest=manifest)

    def work() -> Report:
        return api.verify(
            path, manifest, strict=strict, max_bytes=max_bytes, watch=lambda phases: _progress(not quiet, phases)
        )

    _emit(_run(_bounded(work, storage_timeout, path)), output_format, json_file, junit_xml, sarif, quiet, show)


def main() -> None:
    from nemoverify.deadline import own_process

    own_process()  # the object-storage deadline may end this process
    try:
        app(prog_name="nemoverify")
    except SystemExit as exc:
        if exc.code == ExitCode.INTERRUPTED:
            # Interrupted: the message is printed and every partial output file removed, so end now
            # rather than wait for torch and the streamer's native threads to wind down.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(int(ExitCode.INTERRUPTED))
        raise
