"""The command line. It parses (argparse: nothing to import beyond the standard library), calls the
library, renders, and picks the exit code; nothing else.

Exit codes: 0 verified, 1 verification failed, 2 usage error, 3 invalid or unreadable checkpoint
(or storage, or a failed rank), 4 internal error (a bug), 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import gc
import os
import shutil
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from nemoverify._version import __version__
from nemoverify.checkpoint.problems import InvalidCheckpoint
from nemoverify.completion import SHELLS, commands
from nemoverify.deadline import DEFAULT_STORAGE_TIMEOUT_S
from nemoverify.deployment.options import LOADERS, Loader
from nemoverify.deployment.profiles import LOAD_PATHS, LoadPath
from nemoverify.errors import ExitCode, NemoverifyError
from nemoverify.hashing import ALGORITHMS, DEFAULT_MANIFEST_ALGORITHM, MANIFEST_ALGORITHMS, Algorithm
from nemoverify.output.files import OUTPUT_FORMATS, OutputFormat
from nemoverify.redaction import redact

if TYPE_CHECKING:
    from rich.console import Console

    from nemoverify.checkpoint.problems import Problem
    from nemoverify.engine.manifests import Manifest
    from nemoverify.engine.matrix import Matrix
    from nemoverify.output.files import Reports
    from nemoverify.report import Report

EXIT_CODES_HELP = (
    "Exit codes: 0 verified; 1 verification failed (a mismatched, missing or corrupted tensor); "
    "2 usage error; 3 invalid or unreadable checkpoint, storage error or failed rank; "
    "4 internal error (a bug: please report it); 130 interrupted."
)


def _epilog(*examples: str, exit_codes: str = EXIT_CODES_HELP) -> str:
    """An Examples section above the exit codes. Help is plain text: the examples keep their lines
    (indented lines are never rewrapped, see _HelpFormatter), the exit codes wrap to the terminal."""
    lines = "\n".join(f"  {e}" for e in examples)
    return f"Examples:\n{lines}\n\n{exit_codes} Set NEMOVERIFY_DEBUG=1 to see the traceback of a crash."


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

DESCRIPTION = (
    "Verify that a Nemotron Nano VL checkpoint reaches the model intact when loaded the way production loads it "
    "(Run:ai streamer + vLLM's load_weights)."
)
EPILOG = _epilog(
    "nemoverify check examples/nano-omni-tiny",
    "nemoverify manifest /ckpt/nano-vl -o nano-vl.manifest.json",
    "nemoverify verify /mnt/upload/nano-vl --manifest nano-vl.manifest.json",
    "nemoverify check /mnt/upload/nano-vl --manifest nano-vl.manifest.json --sarif nemoverify.sarif",
)

T = TypeVar("T")
S = TypeVar("S", bound=str)
F = TypeVar("F", bound=Callable[..., None])


def _choices(values: tuple[S, ...]) -> dict[str, Any]:
    """Option settings for one of `values` (a Literal's members, defined where they are used): parsed
    here, so a wrong value reads "'yaml': choose one of table, json", shown as table|json, completed
    (nemoverify.completion reads `choices`)."""
    names = list(values)

    def parse(value: str) -> S:
        for v in values:
            if v == value:
                return v
        raise argparse.ArgumentTypeError(f"{value!r}: choose one of {', '.join(names)}")

    return {"type": parse, "choices": values, "metavar": "|".join(names)}


def _whole(minimum: int, metavar: str = "N") -> dict[str, Any]:
    """Option settings for a whole number of at least `minimum`, with a plain message."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"{number} is below the least allowed, {minimum}")
        return number

    return {"type": parse, "metavar": metavar}


def _size(value: str) -> int:
    from nemoverify.sizes import parse_size

    try:
        return parse_size(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _bound(value: str) -> int:
    """A bound in bytes, as --memory-limit takes sizes (5GB, 1TiB, plain bytes), never negative."""
    if value.strip().startswith("-"):
        raise argparse.ArgumentTypeError(f"{value!r}: a bound cannot be negative")
    return _size(value)


def _seconds(value: str) -> float:
    """Seconds, 0 or more (a fraction allowed), with a plain message."""
    import math

    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not math.isfinite(seconds):
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds")
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{value} is below the least allowed, 0")
    return seconds


def _stdout() -> Console:
    from rich.console import Console  # rich only where something is printed (import time: issue 17)

    return Console(highlight=False, soft_wrap=False)


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _fail(message: str, code: ExitCode) -> SystemExit:
    _stderr().print(f"[bold red]error[/]: {escape(redact(message))}", markup=True, soft_wrap=True)
    return SystemExit(int(code))


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
    except KeyboardInterrupt:
        _stderr().print("interrupted")
        raise SystemExit(int(ExitCode.INTERRUPTED)) from None
    except InvalidCheckpoint as exc:
        err = _stderr()
        err.print(f"[bold red]error[/]: {escape(exc.root)}: invalid checkpoint ({len(exc.problems)} problem(s))")
        for p in exc.problems:
            err.print(f"  [{p.rule}] {redact(p.render())}", markup=False, soft_wrap=True)
        _leave_reports(exc)
        raise SystemExit(int(exc.exit_code)) from None
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


def _leave_reports(error: BaseException, reports: Reports | None = None) -> None:
    """The reports of a run that `error` ended before its verdict: CI's `if: always()` steps find them.
    `reports`: the run's, where this is called off the run's thread (the storage deadline's timer)."""
    reports = reports or _REPORTS.get()
    if reports is None:
        return
    report = reports.without_verdict(error)
    for message in reports.write(report):
        _fail(message, ExitCode.INVALID)
    if reports.format_json:
        from nemoverify.output.render.jsonout import report_json

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


def _leave_json(text: str, json_file: str | None, on_stdout: bool) -> None:
    """The JSON of a command (`matrix`, `inspect`) that an error ended before its result: written
    to --json and printed under --format json all the same, so that CI's `if: always()` steps find
    why. A file that cannot be written is one more error line; the run's own exit code stands."""
    from nemoverify.output.files import write_output

    if json_file:
        try:
            write_output(json_file, text)
        except OSError as exc:
            _fail(f"cannot write {json_file}: {exc.strerror or exc}", ExitCode.INVALID)
    if on_stdout:
        sys.stdout.write(text)


def _write_output(path: str, text: str) -> None:
    from nemoverify.output.files import write_output

    try:
        write_output(path, text)
    except OSError as exc:
        raise _fail(f"cannot write {path}: {exc.strerror or exc}", ExitCode.USAGE) from None


def _bounded(
    work: Callable[[], T], seconds: float, *paths: str | None, leave: Callable[[BaseException], None] | None = None
) -> Callable[[], T]:
    """`work` under the object-storage deadline (nemoverify.deadline) when a path is an object URL.
    `leave` writes what the command was asked to write when an error ends `work`, or the deadline
    does (default: the run's reports, which `_run` leaves on an error)."""

    def run() -> T:
        from nemoverify.deadline import storage_deadline

        reports = _REPORTS.get()  # read here: the deadline's timer thread does not share this context

        def leave_reports(error: BaseException) -> None:
            _leave_reports(error, reports)

        try:
            with storage_deadline(seconds, *paths, on_expiry=leave or leave_reports):
                return work()
        except Exception as exc:
            # Out of the block, the deadline is settled: it cannot also write (one document, not two).
            if leave is not None and getattr(exc, "exit_code", None) is not ExitCode.USAGE:
                leave(exc)
            raise

    return run


def _plan_outputs(
    requested: dict[str, str | None], reads: list[tuple[str | None, str]], stdout_taken_by: str | None
) -> dict[str, str]:
    """Refuse (exit 2) outputs that cannot be written or would land in what the run reads, before any
    work. Returns each output as it is to be written (a name of a standard stream: `-` or its stream)."""
    from nemoverify.output.files import guarded, plan_outputs

    guards = [g for location, what in reads for g in guarded(location, what)]
    return _run(lambda: plan_outputs(requested, guards, stdout_taken_by))


# The report files of the running command, checked before it started (see _plan_reports); _run and
# _emit write them. Reset by run() at the start of every invocation.
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
    from nemoverify.output.files import plan_reports

    stdout = "--format json" if output_format == "json" and not quiet else None
    reports = _run(lambda: plan_reports(path, json_file, junit_xml, sarif, against, manifest, stdout))
    _REPORTS.set(reports)
    return reports


# Every option is declared once, here, as argparse's add_argument arguments; each command lists the
# ones it takes (see _command), and its parameters are their destinations.
Option = tuple[tuple[str, ...], dict[str, Any]]


def _option(*flags: str, **settings: Any) -> Option:
    return flags, settings


PATH = _option(
    "path",
    metavar="PATH",
    help="The checkpoint: a directory (sharded with model.safetensors.index.json, or one model.safetensors), "
    "a .safetensors file, s3://bucket/prefix, gs://bucket/prefix, or a Hugging Face repo id (org/name) "
    "already in the local Hugging Face cache (never downloaded).",
)
JSON = _option(
    "--json",
    dest="json_file",
    metavar="FILE",
    help="Also write the whole JSON report to FILE (whole or not at all; - for stdout).",
)
MANIFEST = _option(
    "--manifest", metavar="FILE", help="Also check every tensor, as the candidate delivers it, against this manifest."
)
JUNIT = _option(
    "--junit-xml",
    metavar="FILE",
    help="Write a JUnit XML report (one test case per component) to FILE (- for stdout).",
)
SARIF = _option(
    "--sarif", metavar="FILE", help="Write a SARIF 2.1.0 log (one result per failed tensor) to FILE (- for stdout)."
)
SHOW = _option("--show", default=20, help="How many failed tensors the table lists (0: all).", **_whole(0))
FORMAT = _option(
    "--format", dest="output_format", default="table", help="What to print on stdout.", **_choices(OUTPUT_FORMATS)
)
QUIET = _option("-q", "--quiet", action="store_true", help="Print nothing; the exit code is the answer.")
STRICT = _option(
    "--strict", action="store_true", help="Treat warnings (unknown architecture, unindexed shards) as errors."
)
STORAGE_TIMEOUT = _option(
    "--storage-timeout",
    type=_seconds,
    default=DEFAULT_STORAGE_TIMEOUT_S,
    metavar="SECONDS",
    help="Overall deadline, in seconds, for a run that reads s3://, gs:// or az:// (0: none); past it, exit 3.",
)
MAX_BYTES = _option(
    "--max-bytes",
    type=_bound,
    metavar="SIZE",
    help="Refuse (exit 3), before reading, a checkpoint declaring more tensor data than SIZE: bytes or a size (500GB, 1TiB).",
)

# The options of `check` alone.
LOADER = _option(
    "--loader",
    default="runai",
    help="Candidate loader. 'safetensors' replays the load path over the safetensors library: a baseline.",
    **_choices(LOADERS),
)
VLLM = _option(
    "--vllm",
    default="auto",
    metavar="VERSION",
    help="The vLLM release the deployment runs (0.20.1, 0.33, ...): its load path, routing, text-only rule and iterator. 'auto': the installed vLLM, else the newest release nemoverify knows.",
)
STREAMER = _option(
    "--streamer",
    metavar="VERSION",
    help="The runai-model-streamer release the deployment runs (0.15, 0.16, 0.17): whether tensors are views into reused buffers. Default: the installed one; another release is emulated.",
)
STRESS = _option(
    "--stress",
    "--reuse-buffers",
    action="store_true",
    help="Worst case instead of production's buffers: borrowed views, a ring of the largest tensor, staging buffers of the largest tensor. A pass means safe even then.",
)
STRATEGY = _option(
    "--strategy",
    help="Override the release's load path: 'fixed' is vLLM after PR 42244, 'legacy' before it (keeps references). For experiments; the report says it was overridden.",
    **_choices(LOAD_PATHS),
)
MEMORY_LIMIT = _option(
    "--memory-limit",
    type=_size,
    metavar="SIZE",
    help="RUNAI_STREAMER_MEMORY_LIMIT: bytes or a size (256MiB, 5GB), -1 unlimited, 0 a ring of the largest tensor. Default: the environment's RUNAI_STREAMER_MEMORY_LIMIT, else 256 MiB (measured fastest; production's 40 GB where the ring decides the verdict), raised to two of the largest tensor, within a quarter of available memory (a container's cgroup limit counts) (0 with --stress).",
)
CONCURRENCY = _option("--concurrency", help="RUNAI_STREAMER_CONCURRENCY: the streamer's reader threads.", **_whole(1))
TEXT_ONLY = _option(
    "--text-only",
    action="store_true",
    help="Replay text-only mode (every modality limit 0): mlp1, vision and sound are skipped.",
)
CHECK_ALGORITHM = _option(
    "--algorithm",
    help="Per-tensor hash, recorded in every report. Default xxh3-128 (lin128 with --device cuda), or the manifest's.",
    **_choices(ALGORITHMS),
)
FAIL_ON_UNCLAIMED = _option(
    "--fail-on-unclaimed",
    action="store_true",
    help="Fail (exit 1) when tensors exist that no component claims (vLLM drops them silently).",
)
AGAINST = _option(
    "--against",
    metavar="COPY",
    help="Stream this copy (s3:// or gs://bucket/prefix, a directory, a cached repo id) through the load path and compare it with PATH as the reference: did the upload arrive intact, and does it load right?",
)
NPROC = _option(
    "--nproc",
    default=1,
    help="Run the streamer's distributed mode across N local processes (torch elastic launch; gloo on the CPU, NCCL with --device cuda).",
    **_whole(1),
)
DISTRIBUTED = _option(
    "--distributed",
    action="store_true",
    help="This process is one rank of a group started by torchrun; rank 0 prints the report.",
)
DEVICE = _option("--device", default="cpu", help="Where the streamer delivers tensors: cpu, cuda or cuda:N.")
EXTRA_CONFIG = _option(
    "--model-loader-extra-config",
    metavar="JSON",
    help="vLLM's --model-loader-extra-config JSON: distributed, concurrency, memory_limit.",
)
RANK_TIMEOUT = _option(
    "--rank-timeout",
    default=300,
    help="Seconds a rank may wait on the others (process-group and broadcast timeout).",
    **_whole(1, "SECONDS"),
)

# name -> (the command, its one-line summary, its options, the exit codes its help lists)
_COMMANDS: dict[str, tuple[Callable[..., None], str, tuple[Option, ...], str]] = {}


def _command(summary: str, *options: Option, exit_codes: str = EXIT_CODES_HELP) -> Callable[[F], F]:
    """Register a command: its docstring is its help, its parameters the destinations of `options`."""

    def register(fn: F) -> F:
        _COMMANDS[fn.__name__] = (fn, summary, options, exit_codes)
        return fn

    return register


@_command(
    "Load the checkpoint as production does and compare every tensor with its stored bytes.",
    PATH,
    LOADER,
    VLLM,
    STREAMER,
    STRESS,
    STRATEGY,
    MEMORY_LIMIT,
    CONCURRENCY,
    TEXT_ONLY,
    CHECK_ALGORITHM,
    FORMAT,
    JSON,
    STRICT,
    FAIL_ON_UNCLAIMED,
    MANIFEST,
    AGAINST,
    NPROC,
    DISTRIBUTED,
    DEVICE,
    EXTRA_CONFIG,
    RANK_TIMEOUT,
    MAX_BYTES,
    STORAGE_TIMEOUT,
    JUNIT,
    SARIF,
    SHOW,
    QUIET,
)
def check(
    path: str,
    loader: Loader,
    vllm: str,
    streamer: str | None,
    stress: bool,
    strategy: LoadPath | None,
    memory_limit: int | None,
    concurrency: int | None,
    text_only: bool,
    algorithm: Algorithm | None,
    output_format: OutputFormat,
    json_file: str | None,
    strict: bool,
    fail_on_unclaimed: bool,
    manifest: str | None,
    against: str | None,
    nproc: int,
    distributed: bool,
    device: str,
    model_loader_extra_config: str | None,
    rank_timeout: int,
    max_bytes: int | None,
    storage_timeout: float,
    junit_xml: str | None,
    sarif: str | None,
    show: int,
    quiet: bool,
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
        raise SystemExit(0)  # a rank other than 0 under torchrun: rank 0 carries the verdict
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
    from nemoverify.output.files import Reports

    reports = _REPORTS.get() or Reports(json_file, junit_xml, sarif)
    failed = reports.write(report)
    for message in failed:
        _fail(message, ExitCode.USAGE)
    if not quiet:
        if output_format == "json":
            from nemoverify.output.render.jsonout import report_json

            sys.stdout.write(report_json(report))
        else:
            from nemoverify.output.render.table import render_report

            # A report on standard output (`--json -`) keeps it clean: the table goes to stderr.
            render_report(report, _stderr() if reports.to_stdout else _stdout(), show)
    code = ExitCode.VERIFIED if report.ok else ExitCode.FAILED
    raise SystemExit(int(ExitCode.USAGE if failed and code is ExitCode.VERIFIED else code))


MATRIX_EXIT_HELP = (
    "Exit codes: 0 no deployment corrupts the checkpoint or fails to load it as deployed; 1 at least one does (stress-only failures "
    "do not fail); 2 usage error; 3 invalid or unreadable checkpoint, storage error or failed rank; "
    "4 internal error; 130 interrupted."
)


@_command(
    "The checkpoint against every deployment profile: which of your deployments is exposed?",
    PATH,
    _option(
        "--nproc",
        default=2,
        help="Ranks for the distributed rows (gloo on the CPU, NCCL with --device cuda); 1 skips them.",
        **_whole(1),
    ),
    _option("--device", default="cpu", help="Where distributed rows stream: cpu, or cuda (one GPU per rank)."),
    _option(
        "--model-loader-extra-config",
        metavar="JSON",
        help="vLLM's --model-loader-extra-config JSON: concurrency, memory_limit.",
    ),
    _option(
        "--algorithm", help="Per-tensor hash. Default xxh3-128 (lin128 with --device cuda).", **_choices(ALGORITHMS)
    ),
    RANK_TIMEOUT,
    FORMAT,
    JSON,
    STRICT,
    QUIET,
    exit_codes=MATRIX_EXIT_HELP,
)
def matrix(
    path: str,
    nproc: int,
    device: str,
    model_loader_extra_config: str | None,
    algorithm: Algorithm | None,
    rank_timeout: int,
    output_format: OutputFormat,
    json_file: str | None,
    strict: bool,
    quiet: bool,
) -> None:
    """The checkpoint against every deployment profile nemoverify knows: each vLLM release x streamer
    0.16 / 0.17 behaviour x one process / distributed, as deployed and under stress. Which of your
    deployments is exposed?"""
    from nemoverify import api
    from nemoverify.engine.matrix import matrix_without_verdict
    from nemoverify.output.files import STDOUT

    stdout = "--format json" if output_format == "json" and not quiet else None
    json_file = _plan_outputs({"--json": json_file}, [(path, "the checkpoint")], stdout).get("--json")
    base = _run(lambda: api.matrix_options(nproc, device, model_loader_extra_config, algorithm, strict))

    import json

    started = time.monotonic()

    def leave(error: BaseException) -> None:  # no verdict: the JSON asked for still says why
        no_verdict = matrix_without_verdict(path, base, nproc, time.monotonic() - started, error)
        _leave_json(json.dumps(no_verdict, indent=2) + "\n", json_file, output_format == "json" and not quiet)

    def work() -> Matrix:
        return api.run_matrix(path, base, nproc, rank_timeout, watch=lambda phases: _progress(not quiet, phases))

    result = _run(_bounded(work, 0, path, leave=leave), needs_torch=True)  # 0: matrix takes no storage deadline
    text = json.dumps(result.to_dict(), indent=2) + "\n"
    if json_file:
        _write_output(json_file, text)
    if not quiet:
        if output_format == "json":
            sys.stdout.write(text)
        else:
            from nemoverify.output.render.matrix import render_matrix

            render_matrix(result, _stderr() if json_file == STDOUT else _stdout())
    raise SystemExit(int(ExitCode.VERIFIED if result.ok else ExitCode.FAILED))


@_command(
    "Show components, dtypes, shards and every structural problem, from the headers alone.",
    PATH,
    FORMAT,
    _option("--json", dest="json_file", metavar="FILE", help="Also write the inventory as JSON to FILE."),
    STRICT,
    STORAGE_TIMEOUT,
)
def inspect(
    path: str, output_format: OutputFormat, json_file: str | None, strict: bool, storage_timeout: float
) -> None:
    """Show what the checkpoint holds (components, dtypes, shards, what each loader skips) and every
    structural problem, without reading a tensor. Exit 3 if any problem is an error."""
    import json

    from nemoverify import api
    from nemoverify.output.files import STDOUT

    stdout = "--format json" if output_format == "json" else None
    json_file = _plan_outputs({"--json": json_file}, [(path, "the checkpoint")], stdout).get("--json")

    def leave(error: BaseException) -> None:  # no inventory: the JSON asked for still says why
        from nemoverify.engine.inventory import without_inventory

        _leave_json(json.dumps(without_inventory(path, error), indent=2) + "\n", json_file, output_format == "json")

    inventory = _run(_bounded(lambda: api.inspect(path), storage_timeout, path, leave=leave))
    if strict:  # what refuses the checkpoint is reported as the error it then is
        from dataclasses import replace

        inventory = replace(inventory, problems=tuple(replace(p, severity="error") for p in inventory.problems))
    text = json.dumps(inventory.to_dict(), indent=2) + "\n"
    if json_file:
        _write_output(json_file, text)
    if output_format == "json":
        sys.stdout.write(text)
    else:
        from nemoverify.output.render.inventory import render_inventory

        render_inventory(inventory, _stderr() if json_file == STDOUT else _stdout())
    bad = [p for p in inventory.problems if strict or p.severity == "error"]
    raise SystemExit(int(ExitCode.INVALID if bad else ExitCode.VERIFIED))


@_command(
    "Record one digest per tensor, so that every copy can be verified later.",
    PATH,
    _option(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="Manifest file to write (whole or not at all; - for stdout).",
    ),
    _option(
        "--algorithm",
        default=DEFAULT_MANIFEST_ALGORITHM,
        help="Digest algorithm: blake3 (cryptographic, fastest), sha256 (recomputable with sha256sum-like tools) or xxh3-128 (fast, not cryptographic: catches accidents, not tampering). lin128 is refused: it compares loaders, it does not guard bytes.",
        **_choices(MANIFEST_ALGORITHMS),
    ),
    STRICT,
    MAX_BYTES,
    STORAGE_TIMEOUT,
    QUIET,
)
def manifest(
    path: str,
    output: str,
    algorithm: Algorithm,
    strict: bool,
    max_bytes: int | None,
    storage_timeout: float,
    quiet: bool,
) -> None:
    """Record one digest per tensor, per-shard sizes and per-component and whole-model roots."""
    from nemoverify import api
    from nemoverify.output.files import STDOUT

    output = _plan_outputs({"--output": output}, [(path, "the checkpoint")], None)["--output"]

    def warn(problem: Problem) -> None:
        if not quiet:
            _stderr().print(f"[yellow]warning[/]: {escape(problem.render())}")

    def work() -> Manifest:
        return api.manifest(
            path,
            algorithm=algorithm,
            strict=strict,
            max_bytes=max_bytes,
            watch=lambda phases: _progress(not quiet, phases),
            warn=warn,
        )

    recorded = _run(_bounded(work, storage_timeout, path))
    _write_output(output, recorded.to_json())
    if not quiet:
        (_stderr() if output == STDOUT else _stdout()).print(
            f"wrote {'the manifest to standard output' if output == STDOUT else output}: "
            f"{len(recorded.tensors)} tensors, {recorded.algorithm} root {recorded.root()}",
            markup=False,
        )


@_command(
    "Check the stored bytes against a manifest, as fast as the disk allows.",
    PATH,
    _option("--manifest", required=True, metavar="FILE", help="The manifest to check against."),
    FORMAT,
    _option("--json", dest="json_file", metavar="FILE", help="Also write the whole JSON report to FILE (atomically)."),
    JUNIT,
    SARIF,
    STRICT,
    MAX_BYTES,
    STORAGE_TIMEOUT,
    SHOW,
    QUIET,
)
def verify(
    path: str,
    manifest: str,
    output_format: OutputFormat,
    json_file: str | None,
    junit_xml: str | None,
    sarif: str | None,
    strict: bool,
    max_bytes: int | None,
    storage_timeout: float,
    show: int,
    quiet: bool,
) -> None:
    """Check only the stored bytes against a manifest, as fast as the disk allows (no loader replay)."""
    from nemoverify import api

    _plan_reports(path, json_file, junit_xml, sarif, output_format, quiet, manifest=manifest)

    def work() -> Report:
        return api.verify(
            path, manifest, strict=strict, max_bytes=max_bytes, watch=lambda phases: _progress(not quiet, phases)
        )

    _emit(_run(_bounded(work, storage_timeout, path)), output_format, json_file, junit_xml, sarif, quiet, show)


class _HelpFormatter(argparse.HelpFormatter):
    """Plain help, readable in CI logs, at most 80 columns: a paragraph with indented lines (the
    examples) keeps its lines; every other paragraph wraps. An option's help ends with its default,
    or with [required]."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=34, width=min(shutil.get_terminal_size().columns, 80) - 2)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.strip("\n").split("\n\n"):
            if any(line.startswith(" ") for line in paragraph.splitlines()):
                paragraphs.append(textwrap.indent(paragraph, indent))
            else:
                paragraphs.append(
                    textwrap.fill(" ".join(paragraph.split()), width, initial_indent=indent, subsequent_indent=indent)
                )
        return "\n\n".join(paragraphs)

    def _format_action(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._SubParsersAction):  # the commands, without a COMMAND line above
            return "".join(self._format_action(command) for command in action._get_subactions())
        return super()._format_action(action)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings or action.nargs == 0:
            return super()._format_action_invocation(action)
        metavar = self._format_args(action, self._get_default_metavar_for_optional(action))
        return f"{', '.join(action.option_strings)} {metavar}"  # -o, --output FILE (not -o FILE, --output FILE)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.required:
            return f"{text}  [required]"
        if action.default not in (None, False, argparse.SUPPRESS):
            return f"{text}  [default: {action.default}]"
        return text


# Every parser: plain help, -h added last (after the options, see _add_help), and no abbreviations
# (--form for --format): a script that relied on one would break when an option is added.
_PARSER_SETTINGS: dict[str, Any] = {"formatter_class": _HelpFormatter, "add_help": False, "allow_abbrev": False}
if sys.version_info >= (3, 14):
    _PARSER_SETTINGS["color"] = False  # 3.14 colours help and errors on a terminal by default: keep them plain


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command, option, default, choice list and help text. Shell
    completion (nemoverify.completion) is generated from it, and the tests read it."""
    parser = argparse.ArgumentParser(
        prog="nemoverify",
        usage="%(prog)s [OPTIONS] COMMAND [ARGS]...",
        description=DESCRIPTION,
        epilog=EPILOG,
        **_PARSER_SETTINGS,
    )
    parser.add_argument(
        "-V", "--version", action="version", version=f"nemoverify {__version__}", help="Print the version and exit."
    )
    parser.add_argument(
        "--completion",
        action=_PrintCompletion,
        default=argparse.SUPPRESS,
        help='Print the shell completion script and exit: eval "$(nemoverify --completion bash)".',
        **_choices(SHELLS),
    )
    _add_help(parser)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True)
    for name, (fn, summary, options, exit_codes) in _COMMANDS.items():
        command = subparsers.add_parser(
            name,
            help=summary,
            prog=f"nemoverify {name}",
            usage="%(prog)s [OPTIONS] PATH",
            description=" ".join((fn.__doc__ or "").split()),
            epilog=_epilog(*EXAMPLES[name], exit_codes=exit_codes),
            **_PARSER_SETTINGS,
        )
        for flags, settings in options:
            command.add_argument(*flags, **settings)
        _add_help(command)
    return parser


def _add_help(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-h", "--help", action="help", help="Show this message and exit.")


class _PrintCompletion(argparse.Action):
    """--completion SHELL: print the script generated from the parser itself, and exit 0."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        from nemoverify.completion import script

        sys.stdout.write(script(parser, values))
        parser.exit()


def run(argv: Sequence[str] | None = None) -> None:
    """Parse `argv` (default: the process's arguments) and run the command, in this process. Ends
    with SystemExit carrying the exit code, or returns (exit 0). No arguments: the help on stderr,
    exit 2."""
    _REPORTS.set(None)
    args = sys.argv[1:] if argv is None else list(argv)
    if not args and os.environ.get("_NEMOVERIFY_COMPLETE"):
        return  # a completion script of the typer-based CLI, at a TAB: offer nothing, print no help
    parser = build_parser()
    if not args:
        parser.print_help(sys.stderr)
        raise SystemExit(int(ExitCode.USAGE))
    namespace, unknown = parser.parse_known_args(args)
    settings = vars(namespace)
    name = settings.pop("command")
    if unknown:  # said by the command's parser, so the message names the command and shows its usage
        commands(parser)[name].error(f"unrecognized arguments: {' '.join(unknown)}")
    command, _, _, _ = _COMMANDS[name]
    command(**settings)


def main() -> None:
    from nemoverify.deadline import own_process

    own_process()  # the object-storage deadline may end this process
    try:
        run()
    except SystemExit as exc:
        if exc.code == ExitCode.INTERRUPTED:
            # Interrupted: the message is printed and every partial output file removed, so end now
            # rather than wait for torch and the streamer's native threads to wind down.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(int(ExitCode.INTERRUPTED))
        raise
