"""Pure: docs/harness-results.md and .harness/results.json from the cells written by `python -m
harness run`. The Markdown is committed, so it names the nemoverify commit and the command that
produced the cells, and shows no machine path."""

from __future__ import annotations

import collections
import json
import re
import time
from pathlib import Path

from harness import paths


def _load(out: Path) -> dict[str, dict[str, dict]]:
    """The cells, compared again from what they recorded (the truth and nemoverify's report), so the
    table follows the current harness/compare.py without running anything again."""
    from harness.compare import compare

    cells: dict[str, dict[str, dict]] = {}
    for f in sorted(out.glob("*/*.json")):
        if f.name.endswith(".truth.json"):
            continue
        c = json.loads(f.read_text())
        c["compare"] = compare(c["truth"], {**c["nemoverify"], "report": c["nemoverify_report"]})
        cells.setdefault(c["release"], {})[c["layout"]] = c
    return cells


def _vkey(v: str):
    return tuple(int(x) for x in v.split("."))


def _mark(c: dict) -> str:
    cmp = c["compare"]
    if cmp["agree"]:
        return "agree"
    n = len(cmp["disagreements"])
    states = collections.Counter((r["truth"], r["nemoverify"]) for r in cmp["disagreements"].values())
    top = ", ".join(f"{a}/{b}" + (f"x{k}" if k > 1 else "") for (a, b), k in states.most_common(2))
    return f"**disagree {n}** ({top})"


def _revisions(cells: dict[str, dict[str, dict]]) -> list[str]:
    """How each distinct nemoverify revision the cells compared with is said."""
    out = []
    for c in (c for by_layout in cells.values() for c in by_layout.values()):
        rev = c["nemoverify"].get("revision") or {}
        said = f"commit {rev.get('commit') or 'unknown'}"
        if rev.get("modified"):
            said += " with uncommitted changes to nemoverify/"
        if rev.get("tree_sha256"):
            said += f" (nemoverify/ as run: sha256 {rev['tree_sha256']}...)"
        if said not in out:
            out.append(said)
    return out


def _no_machine_paths(text: str, out: Path) -> str:
    """Machine paths in tracebacks and messages, said relative to what they are."""
    for path, shown in ((out.resolve(), "<cells>"), (paths.WORK, "<work>"), (paths.default_cache().resolve(), "<cache>"), (paths.ROOT, ".")):
        text = text.replace(str(path), shown)
    return re.sub(r"/tmp/[^\s'\"),]*", "<tmp>", text)


def write_results(out: Path, md: Path, js: Path, command: str | None = None, documented: str = "") -> None:
    from harness.layouts import BY_NAME, LAYOUTS

    cells = _load(out)
    releases = sorted(cells, key=_vkey)
    layouts = [layout.name for layout in LAYOUTS if any(layout.name in cells[r] for r in releases)]
    commands = [command] if command else sorted({c.get("run_command") or documented for by_layout in cells.values() for c in by_layout.values()})
    n_cells = sum(len(by_layout) for by_layout in cells.values())
    n_agree = sum(c["compare"]["agree"] for by_layout in cells.values() for c in by_layout.values())
    lines = [
        "# Differential results: the real vLLM load path vs nemoverify",
        "",
        "Made by the differential harness (docs/harness.md), which runs each release's own load-path code (fetched",
        "from its wheel, never committed) over each layout's checkpoint with the real runai-model-streamer, and",
        "compares every tensor's fate with `python -m nemoverify check --json`.",
        "",
        f"- nemoverify: {'; '.join(_revisions(cells))}",
        f"- cells made by: {'; '.join(f'`{c}`' for c in commands)}, then `python -m harness table`",
        f"- generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {n_cells} cells ({len(releases)} releases x {len(layouts)} layouts), {n_agree} agree, {n_cells - n_agree} disagree",
        "",
        "Per-tensor vocabulary: intact / corrupted / overwritten / dropped / load-error, run-level rejected / other-model /",
        "stream-fails. A cell says `agree` when every tensor has the same state in both; otherwise the number of tensors",
        "that differ and the most common (truth/nemoverify) pairs. Columns: vLLM releases; rows: layouts (listed at the end).",
        "",
        "## Per-tensor agreement (release x layout)",
        "",
    ]
    # compress identical columns
    def colsig(r):
        return tuple(_mark(cells[r][name]) if name in cells[r] else "-" for name in layouts)

    groups: list[list[str]] = []
    for r in releases:
        if groups and colsig(groups[-1][-1]) == colsig(r):
            groups[-1].append(r)
        else:
            groups.append([r])
    heads = [g[0] if len(g) == 1 else f"{g[0]}-{g[-1]}" for g in groups]
    lines.append("| layout | " + " | ".join(heads) + " |")
    lines.append("|---|" + "---|" * len(heads))
    for name in layouts:
        lines.append(f"| {name} | " + " | ".join(_mark(cells[g[0]][name]) if name in cells[g[0]] else "-" for g in groups) + " |")
    lines += ["", "(Releases in one column had identical cells for every layout.)", ""]
    # verdict table
    lines += ["## Run-level verdicts (truth / nemoverify)", "", "| layout | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for name in layouts:
        row = []
        for g in groups:
            c = cells[g[0]].get(name)
            if not c:
                row.append("-")
                continue
            cmp = c["compare"]
            t, n = cmp["truth_verdict"], cmp["nemoverify_verdict"]
            row.append(t if t == n else f"**{t} / {n}**")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    lines.append("")
    # disagreements, grouped by identical content across releases
    lines += ["## Every disagreement", ""]
    for name in layouts:
        seen: dict[str, list[str]] = {}
        detail: dict[str, list[str]] = {}
        for r in releases:
            c = cells[r].get(name)
            if not c or c["compare"]["agree"]:
                continue
            ds = c["compare"]["disagreements"]
            rows = []
            run_level = {"rejected", "other-model", "stream-fails", "not-modelled"}
            if len(ds) == len(c["compare"]["rows"]) and ({d["truth"] for d in ds.values()} <= run_level or {d["nemoverify"] for d in ds.values()} == {"rejected"}):
                tr = collections.Counter(d["truth"] for d in ds.values())
                nvc = collections.Counter(d["nemoverify"] for d in ds.values())
                one = next(iter(ds.values()))
                rows.append(
                    f"  - all {len(ds)} tensors: truth {dict(tr)} ({(one['truth_detail'] or '').strip()[:260]}) vs nemoverify {dict(nvc)}"
                    + (f" ({(one['nemoverify_detail'] or '').strip()[:260]})" if one["nemoverify"] == "rejected" else "")
                )
                key = "\n".join(rows)
                seen.setdefault(key, []).append(r)
                detail[key] = rows
                continue
            for i, d in sorted(ds.items()):
                dest = ", ".join(f"{x[0]}" + (f"[{x[1]}]" if x[1] is not None else "") for x in d["destinations"]) or "none"
                said = "; ".join(x for x in ((d["truth_detail"] or "").strip()[:220], f"destination {dest}") if x)
                rows.append(f"  - `{i}`: truth **{d['truth']}** ({said}) vs nemoverify **{d['nemoverify']}** ({(d['nemoverify_detail'] or '').strip()[:220]})")
            key = "\n".join(rows)
            seen.setdefault(key, []).append(r)
            detail[key] = rows
        if not seen:
            continue
        lines.append(f"### {name}: {BY_NAME[name].what} ({BY_NAME[name].deployment.describe()})")
        lines.append("")
        for key, rs in seen.items():
            c = cells[rs[0]][name]
            lines.append(f"- releases {', '.join(rs)}: truth outcome `{c['compare']['truth_outcome'][:200]}`, nemoverify `{c['compare']['nemoverify_run'][:200]}`; {len(detail[key])} tensors:")
            lines.extend(detail[key][:40])
            if len(detail[key]) > 40:
                lines.append(f"  - ... {len(detail[key]) - 40} more (.harness/results.json)")
        lines.append("")
    lines += ["## Layouts", "", "| layout | base | deployment | what |", "|---|---|---|---|"]
    for name in layouts:
        layout = BY_NAME[name]
        lines.append(f"| {name} | {layout.base} | {layout.deployment.describe()} | {layout.what} |")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(_no_machine_paths("\n".join(lines) + "\n", out))
    data = {
        "commands": commands,
        "nemoverify": _revisions(cells),
        "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "releases": releases,
        "layouts": {name: BY_NAME[name].as_dict() for name in layouts},
        "cells": {
            r: {
                name: {
                    "truth_outcome": c["truth"]["outcome"],
                    "truth_checks": c["truth"]["checks"],
                    "registry": c["raw"].get("registry"),
                    "load_errors_in_removal_order": (c["raw"].get("deployed") or {}).get("removed", []),
                    "stream_calls": (c["raw"].get("deployed") or {}).get("stream_calls", []),
                    "nemoverify_command": c["nemoverify"]["command"],
                    "nemoverify_run": c["compare"]["nemoverify_run"],
                    "agree": c["compare"]["agree"],
                    "truth_verdict": c["compare"]["truth_verdict"],
                    "nemoverify_verdict": c["compare"]["nemoverify_verdict"],
                    "tensors": {
                        i: {
                            "state": t["state"],
                            "destinations": t.get("destinations", []),
                            "detail": t.get("detail", ""),
                            "nemoverify": c["compare"]["rows"][i]["nemoverify"],
                        }
                        for i, t in c["truth"]["tensors"].items()
                    },
                }
                for name, c in sorted(cells[r].items())
            }
            for r in releases
        },
    }
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_text(json.dumps(data, indent=1))
