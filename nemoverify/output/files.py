"""Where reports and manifests go: checked before any work, written without touching what is verified.

`plan_outputs` runs before anything is read. It refuses, as a usage error (exit 2), an output that
lands inside a checkpoint or file the run reads (links resolved), a directory, a directory that does
not exist or cannot be written, and two outputs with one path. `-` means standard output. A path
naming one of this process's standard streams (`/dev/stdout`, `/dev/stderr`, `/dev/fd/N`,
`/proc/self/fd/N`, or a path to the pipe or file the stream is) is planned as that stream: `-` for
standard output, `STDERR` for standard error, so that two outputs on one stream are refused and a
report on standard output moves the table to standard error, whichever way the stream was named.

`write_output` writes through `atomic.write_atomic`: a regular file whole or not at all, with the
permissions a plain write would give; a character device or a FIFO written through, never replaced;
`-` (or any name of it) to standard output, a name of standard error to standard error, each as it is.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, get_args

from nemoverify.checkpoint import hfcache
from nemoverify.errors import UsageError
from nemoverify.output.atomic import STANDARD_STREAMS, standard_stream, write_atomic

if TYPE_CHECKING:
    from nemoverify.report import Report

STDOUT = "-"
STDERR = "/dev/stderr"  # how a planned output on standard error is spelled, whatever name it was given
STREAM_NAMES = {STDOUT: "standard output", STDERR: "standard error"}
OutputFormat = Literal["table", "json"]  # what a command prints on stdout (--format)
OUTPUT_FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)
ReportFormat = Literal["json", "junit", "sarif"]  # the report files a run writes (--json, --junit-xml, --sarif)


Identity = tuple[int, int]  # (device, inode): a file or directory whatever path reaches it


class Guarded(NamedTuple):
    """A location the run reads, so nothing may be written there (or beneath it, for a tree). Held
    by identity as well as by path: a second mount of the same volume, a bind mount or a hard link
    reaches the same inodes by another spelling."""

    path: str  # resolved: every link followed
    tree: bool
    what: str  # as the user named it, for messages
    identities: frozenset[Identity] = frozenset()  # the file, or the tree's every directory and file


def _identity(st: os.stat_result) -> Identity:
    return st.st_dev, st.st_ino


def _identities(path: str, tree: bool) -> frozenset[Identity]:
    """`path` itself and, for a tree, every directory and file under it (links followed, as a
    reader follows them: a Hugging Face snapshot's files are links into its blobs)."""
    found: set[Identity] = set()
    try:
        found.add(_identity(os.stat(path)))
    except OSError:
        return frozenset()
    if not tree:
        return frozenset(found)
    for directory, _, files in os.walk(path):  # links to directories are not walked, nor read
        for at in (directory, *(os.path.join(directory, name) for name in files)):
            with contextlib.suppress(OSError):  # gone, or a dangling link: nothing to write into
                found.add(_identity(os.stat(at)))
    return frozenset(found)


def guarded(location: str | None, what: str) -> list[Guarded]:
    """What a run reading `location` (a checkpoint PATH, a --against COPY, a --manifest FILE) must
    not write into. Object storage holds nothing local; a cached repo id guards its whole cache entry
    (the snapshot's links point into its blobs). A single .safetensors file guards its directory."""
    if not location or "://" in location:
        return []

    repo = (
        os.path.realpath(hfcache.repo_dir(location))
        if hfcache.looks_like_repo_id(location)
        else hfcache.snapshot_repo(location if os.path.isdir(location) else os.path.dirname(location) or ".")
    )
    if repo is not None:  # a snapshot's files are links into its repository's blobs
        return [Guarded(repo, True, f"{what} {location}", _identities(repo, True))]
    real = os.path.realpath(location)
    if os.path.isfile(real) and real.endswith(".safetensors"):
        # One file of a checkpoint is read with its directory (its config, and what vLLM would stream
        # beside it): nothing lands in that directory either.
        directory = os.path.dirname(real)
        return [
            Guarded(
                directory, True, f"{what}'s directory {os.path.dirname(location) or '.'}", _identities(directory, True)
            )
        ]
    tree = not os.path.isfile(real)
    return [Guarded(real, tree, f"{what} {location}", _identities(real, tree))]


def _inside(target: str, guard: Guarded) -> bool:
    """`target` (resolved) is the guarded file, or in the guarded tree: by its path, or by the
    identity of the file it names or of any directory above it."""
    if _inside_by_path(target, guard):
        return True
    if not guard.identities:
        return False
    at = target
    while True:
        with contextlib.suppress(OSError):
            if _identity(os.stat(at)) in guard.identities:
                return True
        parent = os.path.dirname(at)
        if parent == at:
            return False
        at = parent


def _inside_by_path(target: str, guard: Guarded) -> bool:
    return target == guard.path or (guard.tree and target.startswith(guard.path.rstrip(os.sep) + os.sep))


def check_output(option: str, path: str, guards: Iterable[Guarded]) -> str:
    """The resolved file `option` will write (STDOUT or STDERR for a standard stream, however
    named), or a UsageError saying why it cannot be written."""

    if path == STDOUT:
        return _open_stream(option, path, 1)
    if not path:
        raise UsageError(f"{option}: an empty path; give a file name, or - for standard output")
    target = os.path.realpath(path)
    for guard in guards:
        if _inside(target, guard):
            shown = path if target == os.path.abspath(path) else f"{path} (a link to {target})"
            if not _inside_by_path(target, guard):
                shown = f"{path} (the same file or directory as one of it, by another mount or link)"
            raise UsageError(
                f"{option} {shown} is inside {guard.what}, which this run reads: nemoverify never writes "
                "into what it verifies; choose a path outside it"
            )
    stream = standard_stream(path)  # after the guards: a stream redirected into the checkpoint is refused
    if stream is not None:
        return _open_stream(option, path, stream)
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror or exc}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{option} {path} is a directory; give a file name inside it")
    if st is not None and not stat.S_ISREG(st.st_mode):  # a device, a FIFO: written through
        if not os.access(target, os.W_OK):
            raise UsageError(f"{option} {path}: cannot be written (permission denied)")
        return target
    parent = os.path.dirname(target)
    if not os.path.isdir(parent):
        raise UsageError(f"{option} {path}: no such directory {parent}; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: cannot write in {parent} (permission denied)")
    return target


def _open_stream(option: str, path: str, fd: int) -> str:
    """STDOUT or STDERR for a report on that stream, refused before any work where the stream is
    closed (`>&-`): found after the run, it would lose the verdict's report."""

    try:
        os.fstat(fd)
    except OSError:
        raise UsageError(f"{option} {path}: {STANDARD_STREAMS[fd]} is closed") from None
    return STDOUT if fd == 1 else STDERR


def plan_outputs(
    requested: Mapping[str, str | None],
    guards: Iterable[Guarded] = (),
    stdout_taken_by: str | None = None,
) -> dict[str, str]:
    """Check every output asked for ({option: path or None}) before the run starts; return
    {option: path} for those given, a path naming a standard stream as STDOUT or STDERR.
    `stdout_taken_by` names what else prints data on standard output (`--format json`), which a `-`
    output would interleave with."""
    guards = list(guards)
    planned: dict[str, str] = {}
    seen: dict[str, str] = {}
    if stdout_taken_by:
        seen[STDOUT] = stdout_taken_by
    for option, path in requested.items():
        if path is None:
            continue
        target = check_output(option, path, guards)
        if target not in STREAM_NAMES and _is_character_device(target):
            planned[option] = path  # /dev/null takes any number of reports
            continue
        if target in seen:
            where = STREAM_NAMES.get(target, path)
            raise UsageError(f"{seen[target]} and {option} both write to {where}; give each its own file")
        seen[target] = option
        planned[option] = target if target in STREAM_NAMES else path
    return planned


def _is_character_device(path: str) -> bool:
    try:
        return stat.S_ISCHR(os.stat(path).st_mode)
    except OSError:
        return False


def write_output(path: str, text: str | bytes) -> None:
    """Write `text` to `path` as `atomic.write_atomic` does: `-` is standard output (and so is any
    name of it; a name of standard error is standard error: see `atomic.standard_stream`), a regular file is
    replaced whole, a character device or a FIFO is written through (a FIFO nobody reads is an error,
    not a wait), a link is followed, anything else is refused."""

    write_atomic(path, text)


def _written_through(path: str) -> bool:
    """A standard stream, a FIFO or a device: written as it is read, so a stalled reader can block it."""
    if path in (STDOUT, STDERR):
        return True
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False  # a new file


@dataclass(frozen=True)
class Reports:
    """The report files one `check` or `verify` asks for, each at a path already checked, and what
    the run reads, for the report of a run that ends without a verdict."""

    json: str | None = None
    junit: str | None = None
    sarif: str | None = None
    checkpoint: str = ""
    copy: str | None = None
    manifest: str | None = None
    format_json: bool = False  # --format json: the report is printed on stdout too, verdict or not

    @property
    def to_stdout(self) -> bool:
        """A report goes to standard output, so the table goes to standard error instead."""
        return STDOUT in (self.json, self.junit, self.sarif)

    def write(self, report: Report) -> list[str]:
        """Write every report asked for, each whole; return a message per file that could not be."""
        failed = []
        asked: list[tuple[str | None, ReportFormat]] = [(self.json, "json"), (self.junit, "junit"), (self.sarif, "sarif")]
        wanted = [(path, kind) for path, kind in asked if path]
        # Files first: a stream or FIFO whose reader stalls must not keep the others from being written.
        for path, kind in sorted(wanted, key=lambda item: _written_through(item[0])):
            try:
                write_output(path, renderer(kind)(report))
            except BrokenPipeError:
                raise  # stdout went away: exit 141 (cli.app)
            except OSError as exc:
                failed.append(f"cannot write {path}: {exc.strerror or exc}")
        return failed

    def without_verdict(self, error: BaseException) -> Report:
        """The report of a run that `error` ended before a verdict (exit 3, or 4 for a crash)."""
        from nemoverify.report import Report, problems_of

        status, problems = problems_of(error, self.checkpoint, self.manifest)
        return Report.without_verdict(self.checkpoint, status, problems, self.manifest, self.copy)


def renderer(kind: ReportFormat) -> Callable[[Report], str]:
    """The renderer of one report format, imported by a run that writes that format only (the
    JUnit one alone costs 7 ms of imports)."""
    if kind == "json":
        from nemoverify.output.render.jsonout import report_json

        return report_json
    if kind == "junit":
        from nemoverify.output.render.junit import report_junit

        return report_junit
    if kind == "sarif":
        from nemoverify.output.render.sarif import report_sarif

        return report_sarif
    raise ValueError(f"no report format {kind!r}")


def plan_reports(
    checkpoint: str,
    json: str | None = None,
    junit: str | None = None,
    sarif: str | None = None,
    copy: str | None = None,
    manifest: str | None = None,
    stdout_taken_by: str | None = None,
) -> Reports:
    """Check the report paths of a run over `checkpoint` (streaming `copy`, checking against
    `manifest`) before it starts: nothing may land in any of the three."""
    guards = guarded(checkpoint, "the checkpoint") + guarded(copy, "the copy") + guarded(manifest, "the manifest")
    planned = plan_outputs({"--json": json, "--junit-xml": junit, "--sarif": sarif}, guards, stdout_taken_by)
    json, junit, sarif = planned.get("--json"), planned.get("--junit-xml"), planned.get("--sarif")
    return Reports(json, junit, sarif, checkpoint, copy, manifest, stdout_taken_by == "--format json")
