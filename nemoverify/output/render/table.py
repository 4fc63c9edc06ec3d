"""The rich table a person reads: one row per component, then the tensors that failed."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

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


def render_report(report: Report, console: Console, show: int = 20) -> None:
    """What was compared with what, one row per component, the failed tensors (the first `show`;
    0: all), what a reader should know besides, and the verdict."""
    _print_heading(report, console)
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


def _print_heading(report: Report, console: Console) -> None:
    name = f"[bold]{escape(redact(report.checkpoint))}[/]"
    if not report.replays_load_path:  # verify: the stored bytes against a manifest, nothing replayed
        console.print(
            f"{name}  stored bytes against the manifest {escape(str(report.manifest))}  hash: {report.algorithm}"
        )
    else:
        copy = (
            f"  copy: [bold]{escape(redact(report.copy))}[/] (streamed; findings name its files)" if report.copy else ""
        )
        console.print(
            f"{name}{copy}  candidate: {report.candidate}  reference: {report.reference}  hash: {report.algorithm}"
            + (f"  manifest: {escape(report.manifest)}" if report.manifest else "")
        )
    if report.profile is not None:
        console.print(f"profile: {escape(report.profile.describe())}", soft_wrap=False)
        for note in report.profile.notes:
            console.print(f"[dim]note: {escape(note)}[/]")


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
    if raising:
        # A load that raises serves no model: that comes first, whatever else the replay saw.
        failures = (*raising, *(f for f in failures if "load-error" not in f.kinds))
        others = len(failures) - len(raising)
        console.print(
            f"[bold red]vLLM raises on {len(raising)} tensor(s)[/]: the load fails, no model is served"
            + (f" (listed first; the other {others} failure(s) are what the check found besides)" if others else "")
        )
    listed = failures[:show] if show > 0 else failures
    tensors, shards = len(report.failed_tensors), len(report.failed_shards)
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


def _print_notes(report: Report, console: Console) -> None:
    """Unclaimed tensors, warnings, and what the run did not check."""
    unclaimed = [s.name for s in report.skipped if s.component == "unclaimed"]  # none where nothing was replayed
    if unclaimed:
        console.print(
            f"[yellow]unclaimed[/]: vLLM drops {len(unclaimed)} tensor(s) silently: {escape(', '.join(unclaimed))}"
        )
    for w in report.warnings:
        console.print(f"[yellow]warning[/]: {escape(w.render())}")
    for what in report.not_checked:
        console.print(f"[yellow]not checked[/]: {escape(what)}")


def _verdict(report: Report) -> str:
    if report.ok:
        return (
            f"[bold green]VERIFIED[/]: {report.tensors} tensors, {human_bytes(report.bytes)} in {report.elapsed_s:.2f}s"
        )
    tensors, shards = len(report.failed_tensors), len(report.failed_shards)
    why = [f"{tensors} of {report.tensors} tensors failed"] if tensors or not shards else []
    if shards:
        why.append(f"{shards} shard file(s) differ from the manifest")
    if not tensors and not shards:
        why = ["unclaimed tensors present (--fail-on-unclaimed)"]
    return f"[bold red]FAILED[/]: {'; '.join(why)}"
