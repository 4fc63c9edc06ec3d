"""The matrix as a person reads it: one row per vLLM release range and streamer behaviour, the
outcome as deployed beside the outcome under stress."""

from __future__ import annotations

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from nemoverify.engine.matrix import Cell, Matrix
from nemoverify.output.render.lines import a_terminal, print_unpadded

_SHORT = {"language_model": "LM", "mlp1": "mlp1", "vision": "vision", "sound": "sound", "unclaimed": "unclaimed"}


def _outcome(cell: Cell | None) -> Text:
    if cell is None:
        return Text("-", style="dim")
    if not cell.supported:
        return Text("not routed here", style="dim")
    if cell.safe:
        return Text("SAFE", style="green")
    if cell.refused_config is not None:
        return Text("refuses the loader config", style="bold red")
    said = []
    if cell.raises:
        said.append(f"vLLM raises on {sum(cell.raises.values())} ({_parts(cell.raises)})")
    if cell.corrupted:
        said.append(f"{cell.total} corrupted ({_parts(cell.corrupted)})")
    return Text("; ".join(said), style="bold red")


def _parts(counts: dict[str, int]) -> str:
    return ", ".join(f"{_SHORT[c]} {n}" for c, n in counts.items())


def _key(cell: Cell | None) -> tuple[object, ...]:
    if cell is None:
        return (None,)
    return (
        cell.supported,
        tuple(sorted(cell.corrupted.items())),
        tuple(sorted(cell.raises.items())),
        cell.refused_config is not None,
    )


def render_matrix(matrix: Matrix, console: Console) -> None:
    lines = not a_terminal(console)  # a log keeps each line whole
    streaming = f"distributed: {matrix.nproc} ranks ({matrix.device})" if matrix.nproc else "distributed: not run"
    console.print(
        f"[bold]{escape(matrix.checkpoint)}[/]  {matrix.tensors} tensors  hash: {matrix.algorithm}  {streaming}",
        soft_wrap=lines,
    )
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    table.add_column("vLLM", no_wrap=True)
    table.add_column("streamer", no_wrap=True)
    table.add_column("streaming", no_wrap=True)
    table.add_column("as deployed", overflow="fold")
    table.add_column("stress", overflow="fold")
    by = {(c.vllm.name, c.streamer.name, c.distributed, c.stress): c for c in matrix.cells}
    releases = list(dict.fromkeys(c.vllm for c in matrix.cells))
    for distributed in (False, True):
        for streamer in dict.fromkeys(c.streamer.name for c in matrix.cells):
            rows: list[tuple[str, str, Cell | None, Cell | None]] = []
            for release in releases:
                deployed = by.get((release.name, streamer, distributed, False))
                stress = by.get((release.name, streamer, distributed, True))
                if deployed is None and stress is None:
                    continue
                if rows and (_key(rows[-1][2]), _key(rows[-1][3])) == (_key(deployed), _key(stress)):
                    first = rows[-1][0].split("-")[0]
                    rows[-1] = (first, release.name.split("-")[-1], rows[-1][2], rows[-1][3])
                else:
                    rows.append((release.name.split("-")[0], release.name.split("-")[-1], deployed, stress))
            for first, last, deployed, stress in rows:
                name = first if first == last else f"{first}-{last}"
                shown = deployed or stress
                emulated = "*" if shown is not None and shown.emulated else ""
                table.add_row(
                    name,
                    streamer + emulated,
                    f"{matrix.nproc} ranks" if distributed else "one process",
                    _outcome(deployed),
                    _outcome(stress),
                )
    print_unpadded(console, table)
    for w in matrix.warnings:
        console.print(f"[yellow]warning[/]: {escape(w.render())}", soft_wrap=lines)
    if any(c.emulated for c in matrix.cells):
        console.print("[dim]* emulated on the installed streamer[/]")
    exposed = matrix.exposed
    if exposed:
        names = sorted(
            {
                f"vLLM {c.vllm.name} + streamer {c.streamer.name}{' distributed' if c.distributed else ''}"
                for c in exposed
            }
        )
        console.print(f"[bold red]EXPOSED as deployed[/]: {escape('; '.join(names))}", soft_wrap=lines)
    failing = matrix.fails_to_load
    if failing:
        names = sorted({f"vLLM {c.vllm.name}{' distributed' if c.distributed else ''}" for c in failing})
        console.print(
            f"[bold red]FAILS TO LOAD as deployed[/] (vLLM raises or refuses its config): {escape('; '.join(names))}",
            soft_wrap=lines,
        )
        for why in dict.fromkeys(c.refused_config for c in failing if c.refused_config):
            console.print(f"  {escape(str(why))}", soft_wrap=lines)
    if not exposed and not failing:
        console.print(
            "[bold green]No deployment corrupts this checkpoint as deployed[/]"
            + ("; under stress some would" if any(not c.safe and c.supported for c in matrix.cells) else ""),
            soft_wrap=lines,
        )
    console.print(f"{len(matrix.cells)} profiles in {matrix.elapsed_s:.1f}s")
