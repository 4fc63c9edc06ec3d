"""What a person reads: on a terminal, the rich table (one row per component, then the tensors that
failed); anywhere else (a CI log, a file, a pipe), the same in lines that a log keeps whole: one
line per component and per failure with the full tensor name, no wrapping, no padding, the verdict
last."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from nemoverify.output.render.lines import a_terminal
from nemoverify.redaction import redact
from nemoverify.report import Report


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _count(n: int, style: str) -> Text:
    return Text(str(n), style=style if n else "dim")


def render_report(report: Report, console: Console, show: int = 20, log: bool | None = None) -> None:
    """What was compared with what, one row per component, the failed tensors (the first `show`;
    0: all), what a reader should know besides, and the verdict. `log` (default: the console is no
    terminal) writes lines instead of tables."""
    if log is None:
        log = not a_terminal(console)
    _print_heading(report, console, soft_wrap=log)
    if report.cause:
        console.print(f"[bold red]cause[/]: {escape(report.cause)}", soft_wrap=log)
    if log:
        _print_log(report, console, show)
        return
    console.print(_components_table(report, wide=console.width >= 100))
    if report.ranks:
        bad = [str(r) for r, ok in report.ranks.items() if not ok]
        console.print(
            f"ranks: {len(report.ranks)}; "
            + (f"[bold red]ranks with failed tensors: {', '.join(bad)}[/]" if bad else "[green]all agree[/]")
        )
    _print_failures(report, console, show)
    _print_notes(report, console)
    console.print(_verdict(report))


def _print_log(report: Report, console: Console, show: int) -> None:
    """The report as a log keeps it: each line whole (soft wrap: no line breaks, no padding)."""

    def say(text: str) -> None:
        console.print(text, soft_wrap=True)

    def whole(text: str) -> str:  # a line separator in a name must not split its line in a log
        return escape(text.translate(_LINE_BREAKS))

    for name, c in report.components.items():
        status = "[green]ok[/]" if c.ok else "[bold red]FAIL[/]"
        say(
            f"{name}: {c.tensors} tensors, {human_bytes(c.bytes)}: {c.matched} matched, {c.mismatched} mismatched, "
            f"{c.missing} missing, {c.skipped} skipped, digest {c.candidate_digest[:12]}: {status}"
        )
    if report.ranks:
        bad = [str(r) for r, ok in report.ranks.items() if not ok]
        say(f"ranks: {len(report.ranks)}; " + (f"ranks with failed tensors: {', '.join(bad)}" if bad else "all agree"))
    failures = report.failures
    raising = sum(1 for f in failures if "load-error" in f.kinds)
    if raising:
        say(f"[bold red]vLLM raises on {raising} tensor(s)[/]: the load fails, no model is served")
    listed = failures[:show] if show > 0 else failures
    if failures:
        tensors, shards = len(report.failed_tensors), len(report.failed_shards)
        say(f"Failed tensors ({tensors})" + (f" and shard files ({shards})" if shards else ""))
    for f in listed:
        where = f" in {escape(redact(f.files[0]))}" if f.files else ""
        say(f"[bold red]failed[/] {whole(f.name)} ({f.component}){where}: {whole(f.message)}")
    if len(listed) < len(failures):
        say(f"... and {len(failures) - len(listed)} more (--show 0 lists every one; every one is in --json)")
    _print_notes(report, console, soft_wrap=True)
    console.print(_verdict(report), soft_wrap=True)


# What str.splitlines() breaks a line at, written as an escape instead.
_LINE_BREAKS = {c: repr(chr(c))[1:-1] for c in (0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)}


def _print_heading(report: Report, console: Console, soft_wrap: bool = False) -> None:
    name = f"[bold]{escape(redact(report.checkpoint))}[/]"
    if not report.replays_load_path:  # verify: the stored bytes against a manifest, nothing replayed
        console.print(
            f"{name}  stored bytes against the manifest {escape(str(report.manifest))}  hash: {report.algorithm}",
            soft_wrap=soft_wrap,
        )
    else:
        copy = (
            f"  copy: [bold]{escape(redact(report.copy))}[/] (streamed; findings name its files)" if report.copy else ""
        )
        console.print(
            f"{name}{copy}  candidate: {report.candidate}  reference: {report.reference}  hash: {report.algorithm}"
            + (f"  manifest: {escape(report.manifest)}" if report.manifest else ""),
            soft_wrap=soft_wrap,
        )
    if report.profile is not None:
        ranks = int(str(report.options.get("ranks", 1)))
        streaming = f"distributed streaming over {ranks} ranks" if ranks > 1 else "one process"
        console.print(f"profile: {escape(report.profile.describe())}, {streaming}", soft_wrap=soft_wrap)
        for note in report.profile.notes:
            console.print(f"[dim]note: {escape(note)}[/]", soft_wrap=soft_wrap)


def _components_table(report: Report, wide: bool) -> Table:
    """One row per component; the digest column only where it fits (it is the first to give up)."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False, header_style="bold")
    table.add_column("Component", no_wrap=True)
    for col in ("Tensors", "Bytes", "Matched", "Mismatch", "Missing", "Skipped"):  # fits 80 columns
        table.add_column(col, justify="right", no_wrap=True)
    if wide:
        table.add_column("Digest", no_wrap=True)
    table.add_column("", no_wrap=True)
    for name, c in report.components.items():
        status = Text("ok", style="green") if c.ok else Text("FAIL", style="bold red")
        cells: list[str | Text] = [
            name,
            str(c.tensors),
            human_bytes(c.bytes),
            _count(c.matched, "green"),
            _count(c.mismatched, "bold red"),
            _count(c.missing, "bold red"),
            _count(c.skipped, "yellow"),
        ]
        table.add_row(*cells, *([c.candidate_digest[:12]] if wide else []), status)
    return table


def _print_failures(report: Report, console: Console, show: int) -> None:
    failures = report.failures  # one per tensor (or shard file), whatever ranks and sources found it
    if not failures:
        return
    raising = [f for f in failures if "load-error" in f.kinds]
    if raising:  # a load that raises serves no model: listed first after missing files (report order)
        others = len(failures) - len(raising)
        console.print(
            f"[bold red]vLLM raises on {len(raising)} tensor(s)[/]: the load fails, no model is served"
            + (f" (the other {others} failure(s) are what the check found besides)" if others else "")
        )
    listed = failures[:show] if show > 0 else failures
    tensors, shards = len(report.failed_tensors), len(report.failed_shards)
    if console.width < 120:  # a table this narrow would break tensor names mid-word: a name per line
        console.print(f"[bold]Failed tensors ({tensors})" + (f" and shard files ({shards})" if shards else "") + "[/]")
        for f in listed:
            console.print(f"  [bold]{escape(f.name)}[/] [dim]({f.component})[/]", soft_wrap=True)
            console.print(Padding(Text(f.short_message), (0, 0, 0, 6)))
        if len(listed) < len(failures):
            console.print(f"... and {len(failures) - len(listed)} more (every one is in --json)")
        return
    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        title=f"Failed tensors ({tensors})" + (f" and shard files ({shards})" if shards else ""),
        header_style="bold",
        title_justify="left",
    )
    table.add_column("Tensor", overflow="fold", ratio=3)
    table.add_column("Component", no_wrap=True)
    table.add_column("Problem", overflow="fold", ratio=2)
    for f in listed:
        table.add_row(f.name, f.component, f.short_message)
    console.print(table)
    if len(listed) < len(failures):
        console.print(f"... and {len(failures) - len(listed)} more (every one is in --json)")


def _print_notes(report: Report, console: Console, soft_wrap: bool = False) -> None:
    """Unclaimed tensors, warnings, and what the run did not check."""
    unclaimed = [s.name for s in report.skipped if s.component == "unclaimed"]  # none where nothing was replayed
    if unclaimed and not any(f.component == "unclaimed" for f in report.failures):  # else listed as failures
        console.print(
            f"[yellow]unclaimed[/]: vLLM drops {len(unclaimed)} tensor(s) silently: {escape(', '.join(unclaimed))}",
            soft_wrap=soft_wrap,
        )
    for w in report.warnings:
        console.print(f"[yellow]warning[/]: {escape(w.render())}", soft_wrap=soft_wrap)
    for what in report.not_checked:
        console.print(f"[yellow]not checked[/]: {escape(what)}", soft_wrap=soft_wrap)


def _verdict(report: Report) -> str:
    if report.ok:
        return (
            f"[bold green]VERIFIED[/]: {report.tensors} tensors, {human_bytes(report.bytes)} in {report.elapsed_s:.2f}s"
        )
    tensors, shards = len(report.failed_tensors), len(report.failed_shards)
    unclaimed = sum(1 for f in report.failed_tensors if f.kinds == ("unclaimed",))
    why = [f"{tensors} of {report.tensors} tensors failed"] if tensors or not shards else []
    if unclaimed:
        why[0] += f" ({unclaimed} unclaimed tensors present, --fail-on-unclaimed)"
    if shards:
        why.append(f"{shards} shard file(s) differ from the manifest")
    return f"[bold red]FAILED[/]: {'; '.join(why)}"
