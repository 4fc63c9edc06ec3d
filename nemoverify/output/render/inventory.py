"""The `inspect` display."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nemoverify.checkpoint.rules import rule
from nemoverify.engine.inventory import Inventory
from nemoverify.output.render.lines import a_terminal, print_unpadded
from nemoverify.output.render.table import human_bytes


def render_inventory(inv: Inventory, console: Console) -> None:
    lines = not a_terminal(console)  # a log keeps each line whole
    arch = inv.architecture or "(no config.json)"
    console.print(
        f"[bold]{escape(inv.root)}[/]  architecture: {arch}  sound encoder: {'yes' if inv.declares_sound else 'no'}",
        soft_wrap=lines,
    )
    if inv.components:
        table = Table(header_style="bold")
        for col in ("Component", "Tensors", "Bytes", "Dtypes", "Skipped by its loader"):
            table.add_column(col, justify="right" if col in ("Tensors", "Bytes") else "left", overflow="fold")
        for c in inv.components.values():
            dtypes = ", ".join(f"{d}x{n}" for d, n in c.dtypes.items())
            table.add_row(
                c.component, str(c.tensors), human_bytes(c.bytes), dtypes, str(len(c.skipped)) if c.skipped else ""
            )
        print_unpadded(console, table)
        shards = Table(
            header_style="bold", title=f"Shards ({'indexed' if inv.indexed else 'no index'})", title_justify="left"
        )
        for col in ("Shard", "Size", "Tensors"):
            shards.add_column(col, justify="left" if col == "Shard" else "right")
        for s in inv.shards:
            shards.add_row(s.name, human_bytes(s.size), str(s.tensors))
        print_unpadded(console, shards)
        for c in inv.components.values():
            for name, reason in c.skipped:
                kind = "unclaimed" if c.component == "unclaimed" else "skipped"
                console.print(f"[yellow]{kind}[/] {escape(name)}: {escape(reason)}", soft_wrap=lines)
            for name, reason in c.raises:
                console.print(f"[bold red]raises[/] {escape(name)}: {escape(reason)}", soft_wrap=lines)
    errors = [p for p in inv.problems if p.severity == "error"]
    for p in inv.problems:
        style = "bold red" if p.severity == "error" else "yellow"
        console.print(f"[{style}]{p.severity}[/] {escape(f'[{p.rule}]')} {escape(p.render())}", soft_wrap=lines)
    for rule_id in dict.fromkeys(p.rule for p in inv.problems):  # how to fix each rule broken, once
        console.print(f"  [dim]fix {escape(f'[{rule_id}]')}:[/] {escape(rule(rule_id).fix)}", soft_wrap=lines)
    raising = sum(len(c.raises) for c in inv.components.values())
    if raising:  # not a structural problem: the load that `check` replays fails on these names
        console.print(f"[bold red]vLLM raises on {raising} tensor(s)[/]: `check` reports each as a load-error")
    if errors:
        console.print(f"[bold red]INVALID[/]: {len(errors)} problem(s)")
    else:
        console.print("[bold green]VALID[/]: structure checks passed")
