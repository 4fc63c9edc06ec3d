"""python -m harness COMMAND   (from the repository root; docs/harness.md)

  fetch  --release V[,V...]|all               fetch the release's load-path sources (PyPI range requests)
  run    --release V[,V...]|all [--layout NAME ...]   build the layouts, run the release's real load path
                                              (in the venv whose streamer the deployment uses), run
                                              nemoverify, compare; one JSON per cell under --out
  exec   --release V --layout NAME ...        (internal) the torch/streamer part of `run`
  table                                       docs/harness-results.md and .harness/results.json from --out
  fingerprints                                nemoverify/deployment/fingerprints.json from every release
  layouts                                     list the layouts

`all` is every release nemoverify knows (nemoverify.deployment.releases.KNOWN_VLLM). Options:
--cache (or HARNESS_CACHE; default .harness/cache) where wheel members are cached; --work where
layouts are built (.harness/work); --out where cells are written (.harness/cells); --venv (streamer
0.17.1) and --venv16 (streamer 0.16.1) the interpreters (.harness/venv, .harness/venv16: `make
harness-setup`); NEMOVERIFY_SRC the nemoverify compared with (default: this working tree).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from harness import paths

# The command docs/harness.md gives: what `table` records for cells that do not say how they were made.
DOCUMENTED = ".harness/venv/bin/python -m harness run --release all --rebuild"


def _versions(s: str) -> list[str]:
    if s == "all":
        return paths.known_releases()
    return [v for part in s.split(",") for v in [part.strip()] if v]


def _layouts(names: list[str] | None):
    from harness.layouts import BY_NAME, LAYOUTS

    if not names or names == ["all"]:
        return list(LAYOUTS)
    return [BY_NAME[n] for n in names]


def _shown(argv: list[str]) -> str:
    """The command line as run, with paths inside the repository made relative to it."""
    root = str(paths.ROOT) + os.sep
    return " ".join(a.replace(root, "") for a in [sys.executable, "-m", "harness", *argv])


def snapshot_nemoverify(python: str) -> tuple[Path, dict]:
    """Copy NEMOVERIFY_SRC's nemoverify/ to .harness/nemoverify-snapshot/ and say which it is: the
    commit, whether nemoverify/ had uncommitted changes, a digest of the copy. A run compares with the
    copy, so edits made to the working tree during a run do not mix two nemoverifys in one table."""

    def git(*args: str) -> str:
        r = subprocess.run(["git", "-C", str(paths.NEMOVERIFY_SRC), *args], capture_output=True, text=True)
        return r.stdout if r.returncode == 0 else ""

    modified = bool(git("status", "--porcelain", "--", "nemoverify").strip())
    package = paths.SNAPSHOT / "nemoverify"
    shutil.rmtree(paths.SNAPSHOT, ignore_errors=True)
    shutil.copytree(paths.NEMOVERIFY_SRC / "nemoverify", package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    digest = hashlib.sha256()
    for f in sorted(p for p in package.rglob("*") if p.is_file()):
        digest.update(f.relative_to(package).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    # A working tree caught mid-edit does not import: refuse to run on it rather than fill cells with it.
    env = {**os.environ, "PYTHONPATH": str(paths.SNAPSHOT)}
    check = subprocess.run([python, "-m", "nemoverify", "--help"], capture_output=True, text=True, env=env)
    if check.returncode:
        raise SystemExit(f"nemoverify in {paths.NEMOVERIFY_SRC} does not run (try again when it does):\n{check.stderr[-2000:]}")
    revision = {"commit": git("rev-parse", "HEAD").strip() or None, "modified": modified, "tree_sha256": digest.hexdigest()[:12]}
    return paths.SNAPSHOT, revision


def cmd_exec(a) -> int:
    """The torch part: load the release once, run each layout, write raw + truth."""
    from harness.runner import prepare_release, run
    from harness.stored import stored_tensors
    from harness.truth import ground_truth

    src = Path(a.src)
    rel = prepare_release(a.release, src)
    out = Path(a.out)
    for layout in _layouts(a.layout):
        ckpt = Path(a.work) / layout.name
        t0 = time.time()
        raw = run(a.release, src, ckpt, layout.deployment, rel)
        gt = ground_truth(raw, stored_tensors(str(ckpt)))
        cell = {"release": a.release, "layout": layout.name, "python": sys.executable, "elapsed_s": round(time.time() - t0, 2), "raw": raw, "truth": gt}
        (out / a.release).mkdir(parents=True, exist_ok=True)
        (out / a.release / f"{layout.name}.truth.json").write_text(json.dumps(cell))
        print(f"{a.release} {layout.name}: {gt['outcome'][:100]} ({cell['elapsed_s']} s)", flush=True)
    return 0


def cmd_run(a) -> int:
    from harness.compare import compare
    from harness.fetch import ensure_sources
    from harness.layouts import build
    from harness.nvcheck import run_nemoverify

    for py in (a.venv, a.venv16):
        if not Path(py).exists():
            print(f"no interpreter {py}: run `make harness-setup` (or pass --venv / --venv16)", file=sys.stderr)
            return 2
    work, out = Path(a.work), Path(a.out)
    layouts = _layouts(a.layout)
    command = _shown(sys.argv[1:] if a.argv is None else a.argv)
    nemoverify_src, revision = snapshot_nemoverify(a.venv)
    releases = _versions(a.release)
    for layout in layouts:
        if a.rebuild or not (work / layout.name / "config.json").exists():
            build(layout, work / layout.name)
    for v in releases:
        src = ensure_sources(v, a.cache)
        groups: dict[str, list[str]] = {}
        for layout in layouts:
            py = a.venv16 if layout.deployment.venv_streamer == "0.16" else a.venv
            groups.setdefault(py, []).append(layout.name)
        for py, names in groups.items():
            cmd = [py, "-m", "harness", "exec", "--release", v, "--src", str(src), "--work", str(work), "--out", str(out), "--layout", *names]
            # A cell left from an earlier run must not pass for this one's.
            for name in names:
                (out / v / f"{name}.truth.json").unlink(missing_ok=True)
                (out / v / f"{name}.json").unlink(missing_ok=True)
            env = {**os.environ, "PYTHONPATH": str(paths.ROOT), "NEMOVERIFY_SRC": str(nemoverify_src)}
            r = subprocess.run(cmd, cwd=paths.ROOT, env=env)
            if r.returncode:
                print(f"exec failed for {v} ({py})", file=sys.stderr)
        for layout in layouts:
            f = out / v / f"{layout.name}.truth.json"
            if not f.exists():
                continue
            cell = json.loads(f.read_text())
            nv = run_nemoverify(work / layout.name, v, layout.deployment, a.venv, nemoverify_src)
            cmp = compare(cell["truth"], nv)
            cell["nemoverify"] = {k: v2 for k, v2 in nv.items() if k != "report"} | {"report_status": (nv["report"] or {}).get("status"), "revision": revision}
            cell["nemoverify_report"] = nv["report"]
            cell["compare"] = cmp
            cell["layout_info"] = layout.as_dict()
            cell["run_command"] = command
            (out / v / f"{layout.name}.json").write_text(json.dumps(cell, indent=1))
            print(f"{v} {layout.name}: {'agree' if cmp['agree'] else 'DISAGREE (' + str(len(cmp['disagreements'])) + ')'}", flush=True)
    return 0


def cmd_table(a) -> int:
    from harness.table import write_results

    write_results(Path(a.out), Path(a.md), Path(a.json), a.command, DOCUMENTED)
    print(f"wrote {a.md} and {a.json}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", default=None, help="wheel-member cache (default: $HARNESS_CACHE or .harness/cache)")
    common.add_argument("--work", default=str(paths.WORK))
    common.add_argument("--out", default=str(paths.CELLS))
    s = sub.add_parser("fetch", parents=[common])
    s.add_argument("--release", required=True, help="V, V1,V2, or all (every release nemoverify knows)")
    s = sub.add_parser("run", parents=[common])
    s.add_argument("--release", required=True, help="V, V1,V2, or all (every release nemoverify knows)")
    s.add_argument("--layout", nargs="*")
    s.add_argument("--venv", default=str(paths.VENV / "bin" / "python"), help="python with runai-model-streamer 0.17.1")
    s.add_argument("--venv16", default=str(paths.VENV16 / "bin" / "python"), help="python with runai-model-streamer 0.16.1")
    s.add_argument("--rebuild", action="store_true", help="build the layouts' checkpoints again")
    s = sub.add_parser("exec", parents=[common])
    s.add_argument("--release", required=True)
    s.add_argument("--src", required=True)
    s.add_argument("--layout", nargs="*")
    s = sub.add_parser("table", parents=[common])
    s.add_argument("--md", default=str(paths.RESULTS_MD))
    s.add_argument("--json", default=str(paths.RESULTS_JSON))
    s.add_argument("--command", default=None, help="the command to record as having produced the cells (default: what the cells recorded)")
    s = sub.add_parser("fingerprints")
    s.add_argument("--cache", default=None, help="wheel-member cache (default: $HARNESS_CACHE or .harness/cache)")
    s.add_argument("--out", default=None, help="default: nemoverify/deployment/fingerprints.json of NEMOVERIFY_SRC")
    sub.add_parser("layouts")
    a = ap.parse_args(argv)
    a.argv = argv
    if a.cmd == "fetch":
        from harness.fetch import ensure_sources

        for v in _versions(a.release):
            print(ensure_sources(v, a.cache))
        return 0
    if a.cmd == "fingerprints":
        from harness.fingerprints import write

        print(f"wrote {write(a.out, a.cache)}")
        return 0
    if a.cmd == "layouts":
        for layout in _layouts(None):
            print(f"{layout.name:26s} {layout.base:22s} {layout.deployment.describe():45s} {layout.what}")
        return 0
    return {"run": cmd_run, "exec": cmd_exec, "table": cmd_table}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
