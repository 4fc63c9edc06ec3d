"""The five commands. Each builds its request from its arguments (every option declared once, in
`options`; the parameter names are the request's fields and the outputs'), calls the library, renders
and picks the exit code. The renderers import rich, so they are imported where something is printed."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import TYPE_CHECKING, NoReturn

import typer

from nemoverify import interrupts
from nemoverify.checkpoint.limits import DEFAULT_MAX_TENSORS
from nemoverify.cli import runtime
from nemoverify.cli.options import (
    Against,
    CheckAlgorithm,
    Concurrency,
    Device,
    Distributed,
    ExtraConfig,
    FailOnUnclaimed,
    FileAlone,
    Format,
    InventoryJson,
    Json,
    JunitXml,
    Loader,
    Manifest,
    ManifestAlgorithm,
    MatrixAlgorithm,
    MatrixNproc,
    MatrixStreamer,
    MatrixVllm,
    MaxBytes,
    MaxTensors,
    MemoryLimit,
    Nproc,
    Output,
    Outputs,
    PathArgument,
    Quiet,
    RankTimeout,
    RequiredManifest,
    Sarif,
    Show,
    StorageMinRate,
    StorageTimeout,
    Strategy,
    Streamer,
    Stress,
    Strict,
    TextOnly,
    Vllm,
)
from nemoverify.cli.progress import progress
from nemoverify.deployment.request import DEFAULT_RANK_TIMEOUT_S, DEFAULT_STORAGE_TIMEOUT_S, Request
from nemoverify.errors import ExitCode
from nemoverify.hashing import DEFAULT_MANIFEST_ALGORITHM
from nemoverify.interrupts import running_as_the_command
from nemoverify.output.files import STDOUT, Reports, guarded, plan_outputs, plan_reports, write_output
from nemoverify.storage_watch import DEFAULT_MINIMUM_RATE

if TYPE_CHECKING:
    from nemoverify.checkpoint.problems import Problem
    from nemoverify.progress import Progress
    from nemoverify.report import Report


def check(
    path: PathArgument,
    file_alone: FileAlone = False,
    loader: Loader = "runai",
    vllm: Vllm = "auto",
    streamer: Streamer = None,
    stress: Stress = False,
    strategy: Strategy = None,
    memory_limit: MemoryLimit = None,
    concurrency: Concurrency = None,
    text_only: TextOnly = False,
    algorithm: CheckAlgorithm = None,
    output_format: Format = "table",
    json_file: Json = None,
    strict: Strict = False,
    fail_on_unclaimed: FailOnUnclaimed = False,
    manifest: Manifest = None,
    against: Against = None,
    nproc: Nproc = 1,
    distributed: Distributed = False,
    device: Device = "cpu",
    model_loader_extra_config: ExtraConfig = None,
    rank_timeout: RankTimeout = DEFAULT_RANK_TIMEOUT_S,
    max_bytes: MaxBytes = None,
    max_tensors: MaxTensors = DEFAULT_MAX_TENSORS,
    storage_timeout: StorageTimeout = DEFAULT_STORAGE_TIMEOUT_S,
    storage_min_rate: StorageMinRate = DEFAULT_MINIMUM_RATE,
    junit_xml: JunitXml = None,
    sarif: Sarif = None,
    show: Show = 20,
    quiet: Quiet = False,
) -> None:
    """Load the checkpoint with the reference reader and through the candidate loader + the load path of
    the deployment profile (--vllm, --streamer); compare every tensor, per component (and against a
    manifest, if given)."""
    from nemoverify import api  # imported by a command that runs: --help and --version stay light

    request, outputs = Request.taking(locals()), Outputs.taking(locals())
    reports = _plan_reports(request, outputs)
    report = runtime.run(
        lambda: api.run_check(request, watch=_watch(outputs)),
        leave=_leaving(reports),
        needs_torch=True,
        storage_timeout=storage_timeout,
        storage_min_rate=storage_min_rate,
        paths=(path, against),
    )
    if report is None:
        raise typer.Exit(0)  # a rank other than 0 under torchrun: rank 0 carries the verdict
    _emit(report, reports, outputs)


def matrix(
    path: PathArgument,
    file_alone: FileAlone = False,
    vllm: MatrixVllm = "auto",
    streamer: MatrixStreamer = None,
    nproc: MatrixNproc = 2,
    device: Device = "cpu",
    model_loader_extra_config: ExtraConfig = None,
    algorithm: MatrixAlgorithm = None,
    rank_timeout: RankTimeout = DEFAULT_RANK_TIMEOUT_S,
    max_tensors: MaxTensors = DEFAULT_MAX_TENSORS,
    output_format: Format = "table",
    json_file: Json = None,
    strict: Strict = False,
    quiet: Quiet = False,
) -> None:
    """The checkpoint against every deployment profile nemoverify knows: each vLLM release x streamer
    0.16 / 0.17 behaviour x one process / distributed, as deployed and under stress. Which of your
    deployments is exposed?"""
    from nemoverify import api  # imported by a command that runs: --help and --version stay light

    request, outputs = Request.taking(locals()), Outputs.taking(locals())
    json_file = _plan({"--json": json_file}, path, outputs).get("--json")
    base = runtime.run(lambda: api.matrix_options(request))
    started = time.monotonic()

    def leave(error: BaseException) -> None:  # no verdict: the JSON asked for still says why
        from nemoverify.engine.matrix import matrix_without_verdict

        no_verdict = matrix_without_verdict(path, base, nproc, time.monotonic() - started, error)
        _leave_json(json.dumps(no_verdict, indent=2) + "\n", json_file, outputs.json_on_stdout)

    result = runtime.run(lambda: api.run_matrix(request, base, watch=_watch(outputs)), leave=leave, needs_torch=True)
    text = json.dumps(result.to_dict(), indent=2) + "\n"
    if json_file:
        _write_output(json_file, text)
    if outputs.json_on_stdout:
        sys.stdout.write(text)
    elif not quiet:
        from nemoverify.output.render.matrix import render_matrix

        render_matrix(result, runtime.stderr() if json_file == STDOUT else runtime.stdout())
    raise typer.Exit(int(ExitCode.VERIFIED if result.ok else ExitCode.FAILED))


def inspect(
    path: PathArgument,
    file_alone: FileAlone = False,
    output_format: Format = "table",
    json_file: InventoryJson = None,
    strict: Strict = False,
    max_tensors: MaxTensors = DEFAULT_MAX_TENSORS,
    storage_timeout: StorageTimeout = DEFAULT_STORAGE_TIMEOUT_S,
    storage_min_rate: StorageMinRate = DEFAULT_MINIMUM_RATE,
) -> None:
    """Show what the checkpoint holds (components, dtypes, shards, what each loader skips) and every
    structural problem, without reading a tensor. Exit 3 if any problem is an error."""
    from nemoverify import api  # imported by a command that runs: --help and --version stay light

    outputs = Outputs.taking(locals())
    json_file = _plan({"--json": json_file}, path, outputs).get("--json")

    def leave(error: BaseException) -> None:  # no inventory: the JSON asked for still says why
        from nemoverify.engine.inventory import without_inventory

        _leave_json(json.dumps(without_inventory(path, error), indent=2) + "\n", json_file, outputs.json_on_stdout)

    inventory = runtime.run(
        lambda: api.inspect(path, strict=strict, file_alone=file_alone, max_tensors=max_tensors),
        leave=leave,
        storage_timeout=storage_timeout,
        storage_min_rate=storage_min_rate,
        paths=(path,),
    )
    text = json.dumps(inventory.to_dict(), indent=2) + "\n"
    if json_file:
        _write_output(json_file, text)
    if outputs.json_on_stdout:
        sys.stdout.write(text)
    else:
        from nemoverify.output.render.inventory import render_inventory

        render_inventory(inventory, runtime.stderr() if json_file == STDOUT else runtime.stdout())
    raise typer.Exit(int(inventory.exit_code))


def manifest(
    path: PathArgument,
    output: Output,
    file_alone: FileAlone = False,
    algorithm: ManifestAlgorithm = DEFAULT_MANIFEST_ALGORITHM,
    strict: Strict = False,
    max_bytes: MaxBytes = None,
    max_tensors: MaxTensors = DEFAULT_MAX_TENSORS,
    storage_timeout: StorageTimeout = DEFAULT_STORAGE_TIMEOUT_S,
    storage_min_rate: StorageMinRate = DEFAULT_MINIMUM_RATE,
    quiet: Quiet = False,
) -> None:
    """Record one digest per tensor, per-shard sizes and per-component and whole-model roots."""
    from nemoverify import api  # imported by a command that runs: --help and --version stay light

    output = _plan({"--output": output}, path, Outputs())["--output"]

    def warn(problem: Problem) -> None:
        if not quiet:
            runtime.stderr().print(f"[yellow]warning[/]: {runtime.escape(problem.render())}")

    recorded = runtime.run(
        lambda: api.manifest(
            path,
            algorithm=algorithm,
            strict=strict,
            max_bytes=max_bytes,
            max_tensors=max_tensors,
            file_alone=file_alone,
            watch=_watch(Outputs(quiet=quiet)),
            warn=warn,
        ),
        storage_timeout=storage_timeout,
        storage_min_rate=storage_min_rate,
        paths=(path,),
    )
    from nemoverify.engine.manifests import compressed_if_named

    _write_output(output, compressed_if_named(output, recorded.to_json()))
    if not quiet:
        where = "the manifest to standard output" if output == STDOUT else output
        (runtime.stderr() if output == STDOUT else runtime.stdout()).print(
            f"wrote {where}: {len(recorded.tensors)} tensors, {recorded.algorithm} root {recorded.root()}",
            markup=False,
            soft_wrap=True,
        )


def verify(
    path: PathArgument,
    manifest: RequiredManifest,
    file_alone: FileAlone = False,
    output_format: Format = "table",
    json_file: Json = None,
    junit_xml: JunitXml = None,
    sarif: Sarif = None,
    strict: Strict = False,
    max_bytes: MaxBytes = None,
    max_tensors: MaxTensors = DEFAULT_MAX_TENSORS,
    storage_timeout: StorageTimeout = DEFAULT_STORAGE_TIMEOUT_S,
    storage_min_rate: StorageMinRate = DEFAULT_MINIMUM_RATE,
    show: Show = 20,
    quiet: Quiet = False,
) -> None:
    """Check only the stored bytes against a manifest, as fast as the disk allows (no loader replay)."""
    from nemoverify import api  # imported by a command that runs: --help and --version stay light

    request, outputs = Request.taking(locals()), Outputs.taking(locals())
    reports = _plan_reports(request, outputs)
    report = runtime.run(
        lambda: api.run_verify(request, watch=_watch(outputs)),
        leave=_leaving(reports),
        storage_timeout=storage_timeout,
        storage_min_rate=storage_min_rate,
        paths=(path,),
    )
    _emit(report, reports, outputs)


def _watch(outputs: Outputs) -> Callable[[dict[str, int]], AbstractContextManager[Progress]]:
    return lambda phases: progress(not outputs.quiet, phases)


def _plan(requested: dict[str, str | None], path: str, outputs: Outputs) -> dict[str, str]:
    """Refuse (exit 2), before any work, an output that cannot be written or would land in the checkpoint."""

    stdout = "--format json" if outputs.json_on_stdout else None
    return runtime.run(lambda: plan_outputs(requested, guarded(path, "the checkpoint"), stdout))


def _plan_reports(request: Request, outputs: Outputs) -> Reports:
    """Every report path, checked before the run starts: a bad one is a usage error (exit 2), found
    before any work, never after a verdict that it would then lose."""
    stdout = "--format json" if outputs.json_on_stdout else None
    return runtime.run(
        lambda: plan_reports(
            request.path,
            outputs.json_file,
            outputs.junit_xml,
            outputs.sarif,
            request.against,
            request.manifest,
            stdout,
        )
    )


def _leaving(reports: Reports) -> runtime.Leave:
    """The reports of a run that an error ended before its verdict: CI's `if: always()` steps find them."""

    def leave(error: BaseException) -> None:
        report = reports.without_verdict(error)
        for message in reports.write(report):
            runtime.fail(message, ExitCode.INVALID)
        if reports.format_json:
            from nemoverify.output.render.jsonout import report_json

            sys.stdout.write(report_json(report))

    return leave


def _leave_json(text: str, json_file: str | None, on_stdout: bool) -> None:
    """The JSON of a command (`matrix`, `inspect`) that an error ended before its result: written to
    --json and printed under --format json all the same. A file that cannot be written is one more
    error line; the run's own exit code stands."""
    if json_file:
        try:
            write_output(json_file, text)
        except OSError as exc:
            runtime.fail(f"cannot write {json_file}: {exc.strerror or exc}", ExitCode.INVALID)
    if on_stdout:
        sys.stdout.write(text)


def _write_output(path: str, text: str | bytes) -> None:
    try:
        write_output(path, text)
    except BrokenPipeError:
        raise  # stdout went away: exit 141 (cli.app), not an unwritable file
    except OSError as exc:
        raise runtime.fail(f"cannot write {path}: {exc.strerror or exc}", ExitCode.USAGE) from None


def _emit(report: Report, reports: Reports, outputs: Outputs) -> NoReturn:
    """Write the requested files (each whole), print, and exit with the verdict. A file that cannot
    be written is an error on stderr; the verdict still decides the exit code unless it was 0."""
    if running_as_the_command():  # the time a person waited, the imports included
        report = replace(report, elapsed_s=time.monotonic() - interrupts.STARTED)
    failed = reports.write(report)
    for message in failed:
        runtime.fail(message, ExitCode.USAGE)
    if outputs.json_on_stdout:
        from nemoverify.output.render.jsonout import report_json

        sys.stdout.write(report_json(report))
    elif not outputs.quiet:
        from nemoverify.output.render.table import render_report

        # A report on standard output (`--json -`) keeps it clean: the table goes to stderr.
        render_report(report, runtime.stderr() if reports.to_stdout else runtime.stdout(), outputs.show)
    code = ExitCode.VERIFIED if report.ok else ExitCode.FAILED
    raise typer.Exit(int(ExitCode.USAGE if failed and code is ExitCode.VERIFIED else code))
