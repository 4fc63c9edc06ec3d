"""Every performance figure of nemoverify, each a ratio to its baseline measured side by side in one run.

    python benchmarks/bench.py --dir ~/nvbench                     # everything (issue 30's targets)
    python benchmarks/bench.py --dir ~/nvbench --only small,startup  # some sections

Sections (each a whole process per case unless it says "work": imports before the clock):
  large    2 GB checkpoint, warm: check against a bare Run:ai stream given the same ring (and vLLM's
           default ring, shown), a safetensors read that copies every byte (as `param.copy_` does),
           verify against b3sum and OpenSSF model-signing at each digest they share.
  small    24,362 small tensors: work after imports against a bare stream as a user runs it (cycle
           collector on, as in vLLM) and against one that handles the collector as `check` does
           (frozen after the imports, paused while it runs); whole processes beside them.
  cold     the page cache dropped before every run (root only; skipped with a message elsewhere).
  startup  `nemoverify --help` / `--version` against a minimal Typer app of the same commands
           (minimal_cli.py), and nemoverify's own imports over a whole `check` (`-X importtime`),
           beyond torch, the streamer, typer and rich.

Rounds are interleaved (every case once per round). Each ratio is taken within a round, case over
baseline, and its median and min-max over the rounds are printed, beside the cases' own medians and
min-max in seconds. Targets live here, never in timed tests.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_check import (  # noqa: E402  (no torch in this process: its RSS would taint the children's)
    ENV,
    NEMOVERIFY,
    ROOT,
    SMALL_SPEC,
    WORK_CHECK,
    drop_caches,
    generate,
    load,
    spec_for,
    warm,
)

# The bare stream, as a user writes it. argv[2]: the streamer's environment as `check` sets it (JSON).
STREAM = """
import glob, json, logging, os, sys, time
os.environ.update(json.loads(sys.argv[2]))
logging.disable(logging.INFO)
from runai_model_streamer import SafetensorsStreamer
t0 = time.perf_counter()
with SafetensorsStreamer() as s:
    s.stream_files(sorted(glob.glob(sys.argv[1] + '/*.safetensors')))
    for _ in s.get_tensors():
        pass
print(time.perf_counter() - t0)
"""
# The same, with the cycle collector handled as `check` handles it (cli.runtime freezes it after the
# imports, gc_pause pauses it during the run): the work, not the collector, compared.
STREAM_GC_AS_CHECK = STREAM.replace(
    "t0 = time.perf_counter()\n", "t0 = time.perf_counter()\nimport gc; gc.freeze(); gc.disable()\n"
)
# safetensors as vLLM's default loader uses it: every tensor copied into a parameter-sized buffer, so
# every byte is read (safetensors 0.8 maps the file: get_tensor alone reads nothing).
SAFETENSORS = """
import glob, sys, torch
from safetensors import safe_open
buf = torch.empty(0, dtype=torch.uint8)
for p in sorted(glob.glob(sys.argv[1] + '/*.safetensors')):
    with safe_open(p, framework="pt") as f:
        for k in f.keys():
            t = f.get_tensor(k).reshape(-1).view(torch.uint8)
            if buf.numel() < t.numel():
                buf = torch.empty(t.numel(), dtype=torch.uint8)
            buf[: t.numel()].copy_(t)
"""
MODEL_SIGNING = """
import sys
from model_signing import hashing
hashing.Config().use_file_serialization(hashing_algorithm=sys.argv[2]).hash(sys.argv[1])
"""
# What the ring of `check` is on this checkpoint, so that the bare stream gets the same.
RING = """
import json, sys
from nemoverify.checkpoint.layout import open_checkpoint
from nemoverify.deployment.options import resolve_check
from nemoverify.deployment.request import Request
from nemoverify.readers.runai import settings_for
c = open_checkpoint(sys.argv[1])
print(json.dumps(settings_for(resolve_check(Request(sys.argv[1])).fitted_to(c.largest_streamed_tensor, c.streamed_bytes)).environment()))
"""
# nemoverify's own imports over a whole default `check` of argv[1] (its table drawn), from
# `-X importtime`: every module imported under a nemoverify module or by one of its functions while
# it runs (the standard library's and xxhash included), except the modules that torch, the streamer,
# safetensors, typer and rich import anyway: those are not ours, even where nemoverify imports one
# first. `-X importtime` shares its nesting across threads: two imports on two threads at once would
# nest wrongly (none did in the runs measured; the passes' threads import little).
OWN_IMPORTS = """
import subprocess, sys
SHARED_PACKAGES = {"torch", "runai_model_streamer", "safetensors", "typer", "click", "rich", "pydantic", "numpy"}
anyway = "import torch, runai_model_streamer, safetensors, typer, typer.main, rich.console, rich.table, rich.progress"
probe = subprocess.run([sys.executable, "-c", anyway + "; import sys; print(*sys.modules)"], capture_output=True, text=True, check=True)
imported_anyway = set(probe.stdout.split())
argv = [sys.executable, "-X", "importtime", "-m", "nemoverify", "check", sys.argv[1]]
run = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
said = [line for line in run.stderr.splitlines() if not line.startswith("import time:")]
assert run.returncode == 0, "\\n".join(said[-20:])
rows = [line[12:].split("|") for line in run.stderr.splitlines() if line.startswith("import time:") and "[us]" not in line]
names = [name.strip() for _, _, name in rows]
first_ours = names.index("nemoverify") if "nemoverify" in names else len(names)
# A module is printed after what it imported: read backwards, each importer before what it imported.
own, parents = 0, []
for i in range(len(rows) - 1, -1, -1):
    us, _, name = rows[i]
    depth = len(name) - len(name.lstrip())
    while parents and parents[-1][0] >= depth:
        parents.pop()
    module = name.strip()
    if module.split(".")[0] in SHARED_PACKAGES:
        whose = "shared"
    elif parents:
        whose = "ours" if module.startswith("nemoverify") and parents[-1][1] != "shared" else parents[-1][1]
    else:  # imported at the top: by the interpreter's start, or later by a function of ours as it runs
        whose = "ours" if module.startswith("nemoverify") or i > first_ours else None
    parents.append((depth, whose))
    own += int(us) if whose == "ours" and module not in imported_anyway else 0
print(own / 1e6)
"""


@dataclass
class Case:
    name: str
    argv: list[str]
    work: bool = False  # the child prints the seconds of its work (imports before the clock)
    root: str = ROOT  # the nemoverify checkout the child imports (--compare-with: an older one)
    seconds: list[float] = field(default_factory=list)

    def run(self) -> None:
        env = ENV if self.root == ROOT else {**ENV, "PYTHONPATH": self.root}
        t0 = time.perf_counter()
        proc = subprocess.run(self.argv, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(self.argv)[:300]}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
        self.seconds.append(float(proc.stdout.split()[-1]) if self.work else wall)


def py(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def rounds(cases: list[Case], repeat: int, before_each: object = None) -> str:
    """Every case once per round; returns the load average before -> after."""
    before = load()
    for _ in range(repeat):
        for case in cases:
            if callable(before_each):
                before_each()
            case.run()
    return f"load average {before} -> {load()}"


def table(title: str, cases: list[Case], size: int | None = None) -> None:
    print(f"\n{title}")
    print(f"  {'case':66} {'median s':>8} {'min-max s':>13}" + (f" {'GB/s':>6}" if size else ""))
    for c in cases:
        m = statistics.median(c.seconds)
        rate = f" {size / m / 1e9:6.2f}" if size else ""
        print(f"  {c.name:66} {m:8.3f} {min(c.seconds):6.3f}-{max(c.seconds):<6.3f}{rate}")


RESULTS: list[tuple[str, str]] = []


def ratio(label: str, case: Case, base: Case, target: float | None, diff: bool = False) -> None:
    """Per-round ratios (or differences, in ms), median and min-max; against the target if any."""
    pairs = list(zip(case.seconds, base.seconds, strict=True))
    values = [(a - b) * 1000 if diff else a / b for a, b in pairs]
    med = statistics.median(values)
    unit = " ms" if diff else "x"
    verdict = "shown" if target is None else ("met" if med <= target else "NOT met")
    goal = "" if target is None else f"target <= {target:g}{unit}: "
    line = f"{med:7.2f}{unit} ({min(values):.2f}-{max(values):.2f})  {goal}{verdict}"
    print(f"  ratio {label:64} {line}")
    RESULTS.append((label, line))


def shards_of(path: str) -> list[str]:
    return sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors"))


def ring_env(path: str) -> str:
    out = subprocess.run(py(RING, path), env=ENV, capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def large(path: str, repeat: int, signing_python: str | None) -> None:
    shards = shards_of(path)
    size = sum(os.path.getsize(s) for s in shards)
    tmp = tempfile.mkdtemp(prefix="nemoverify-bench-")
    manifests = {a: os.path.join(tmp, f"{a}.json") for a in ("blake3", "sha256")}
    for algorithm, out in manifests.items():
        subprocess.run([*NEMOVERIFY, "manifest", path, "-o", out, "-q", "--algorithm", algorithm], env=ENV, check=True)
    env = ring_env(path)
    ring = json.loads(env).get("RUNAI_STREAMER_MEMORY_LIMIT")
    ring_label = f"{int(ring) >> 20} MiB" if ring else "the environment's"
    stream = Case(f"bare Run:ai stream, check's ring ({ring_label})", py(STREAM, path, env))
    check = Case("nemoverify check (defaults)", [*NEMOVERIFY, "check", path, "-q"])
    vllm = Case("bare Run:ai stream, vLLM's default ring (the streamer's 40 GB)", py(STREAM, path, "{}"))
    st = Case("safetensors, every tensor copied into a buffer (every byte read)", py(SAFETENSORS, path))
    verify = Case(
        "nemoverify verify (blake3 manifest)", [*NEMOVERIFY, "verify", path, "--manifest", manifests["blake3"], "-q"]
    )
    verify_sha = Case(
        "nemoverify verify (sha256 manifest)", [*NEMOVERIFY, "verify", path, "--manifest", manifests["sha256"], "-q"]
    )
    cases = [stream, check, vllm, st, verify, verify_sha]
    b3 = Case("b3sum over the shards", ["b3sum", *shards]) if shutil.which("b3sum") else None
    if b3:
        cases.append(b3)
    else:
        print("(no b3sum: apt-get install b3sum to compare)")
    signing = {}
    if signing_python:
        for a in ("blake3", "sha256"):
            signing[a] = Case(f"OpenSSF model-signing ({a})", [signing_python, "-c", MODEL_SIGNING, path, a])
        cases += signing.values()
    else:
        print("(model-signing not found: pip install model-signing, or --model-signing-python)")
    note = rounds(cases, repeat, lambda: warm(shards))
    table(
        f"large tensors: {size / 1e9:.2f} GB, {len(shards)} shards, warm, whole process; {repeat} rounds; {note}",
        cases,
        size,
    )
    ratio("check / bare stream, same ring (whole process)", check, stream, 1.05)
    ratio("check / bare stream, vLLM's default ring", check, vllm, None)
    ratio("check / safetensors copying every byte", check, st, None)
    if b3:
        ratio("verify (blake3) / b3sum, warm", verify, b3, 1.15)
    if signing:
        ratio("verify / model-signing, both blake3", verify, signing["blake3"], 1.0)
        ratio("verify / model-signing, both sha256", verify_sha, signing["sha256"], 1.0)
    shutil.rmtree(tmp, ignore_errors=True)


def small(path: str, repeat: int, older: str | None) -> None:
    env = ring_env(path)
    user = Case("work: bare stream as a user runs it (collector on, as in vLLM)", py(STREAM, path, env), work=True)
    same = Case(
        "work: bare stream, collector frozen + paused as check does", py(STREAM_GC_AS_CHECK, path, env), work=True
    )
    check = Case("work: nemoverify check", py(WORK_CHECK, path, "check", path, "-q"), work=True)
    whole_stream = Case("whole process: bare stream", py(STREAM, path, env))
    whole_check = Case("whole process: nemoverify check", [*NEMOVERIFY, "check", path, "-q"])
    cases = [user, same, check, whole_stream, whole_check]
    if older:
        before = Case(f"work: nemoverify check, {older}", py(WORK_CHECK, path, "check", path, "-q"), work=True, root=older)
        cases.append(before)
    with open(os.path.join(path, "model.safetensors.index.json")) as f:
        n = len(json.load(f)["weight_map"])
    note = rounds(cases, repeat, lambda: warm(shards_of(path)))
    table(f"small tensors: {n:,} tensors, warm; {repeat} rounds; {note}", cases)
    ratio("check / bare stream as a user runs it (work)", check, user, 1.3)
    ratio("check / bare stream, collector handled the same (work)", check, same, 2.0)
    ratio("whole process: check / bare stream", whole_check, whole_stream, None)
    if older:
        ratio(f"check / check of {older} (work)", check, before, None)
        ratio(f"check of {older} / bare stream as a user runs it (work)", before, user, None)
        ratio(f"check of {older} / bare stream, collector handled the same", before, same, None)


def cold(path: str, repeat: int) -> None:
    if not drop_caches():
        print("\ncold: skipped (cannot write /proc/sys/vm/drop_caches: needs root outside a container)")
        return
    shards = shards_of(path)
    size = sum(os.path.getsize(s) for s in shards)
    env = ring_env(path)
    tmp = tempfile.mkdtemp(prefix="nemoverify-bench-")
    manifest = os.path.join(tmp, "blake3.json")
    subprocess.run([*NEMOVERIFY, "manifest", path, "-o", manifest, "-q"], env=ENV, check=True)
    stream = Case("bare Run:ai stream, same ring", py(STREAM, path, env))
    st = Case("safetensors, every byte copied", py(SAFETENSORS, path))
    check = Case("nemoverify check", [*NEMOVERIFY, "check", path, "-q"])
    verify = Case("nemoverify verify (blake3)", [*NEMOVERIFY, "verify", path, "--manifest", manifest, "-q"])
    dd = Case(
        "sequential read (dd, direct I/O)",
        ["sh", "-c", " && ".join(f"dd if={s} of=/dev/null bs=16M iflag=direct status=none" for s in shards)],
    )
    cases = [stream, st, check, verify, dd]
    b3 = Case("b3sum over the shards", ["b3sum", *shards]) if shutil.which("b3sum") else None
    if b3:
        cases.append(b3)
    note = rounds(cases, repeat, drop_caches)
    table(f"cold page cache: {size / 1e9:.2f} GB, whole process; {repeat} rounds; {note}", cases, size)
    ratio("cold: check / bare stream", check, stream, None)
    ratio("cold: check / safetensors copying every byte", check, st, None)
    ratio("cold: verify / sequential read", verify, dd, None)
    if b3:
        ratio("cold: verify / b3sum", verify, b3, None)
    shutil.rmtree(tmp, ignore_errors=True)


def startup(repeat: int, older: str | None, checkpoint: str) -> None:
    script = shutil.which("nemoverify", path=os.path.dirname(sys.executable))
    ours = [sys.executable, script] if script else NEMOVERIFY  # the installed command, as a user runs it
    minimal = [sys.executable, os.path.join(HERE, "minimal_cli.py")]
    cases = [
        Case("nemoverify --help", [*ours, "--help"]),
        Case("minimal Typer app, same commands: --help", [*minimal, "--help"]),
        Case("nemoverify --version", [*ours, "--version"]),
        Case("minimal Typer app: --version", [*minimal, "--version"]),
        Case("work: nemoverify's own imports over a check (-X importtime)", py(OWN_IMPORTS, checkpoint), work=True),
    ]
    if older:
        cases.append(Case(f"nemoverify --help, {older}", [*ours, "--help"], root=older))
        cases.append(Case(f"nemoverify --version, {older}", [*ours, "--version"], root=older))
    note = rounds(cases, repeat)
    table(f"start-up, whole process; {repeat} rounds; {note}", cases)
    ratio("nemoverify --help - minimal app --help", cases[0], cases[1], 40, diff=True)
    ratio("nemoverify --version - minimal app --version", cases[2], cases[3], 40, diff=True)
    own = cases[4].seconds
    line = (
        f"{statistics.median(own) * 1000:7.2f} ms ({min(own) * 1000:.2f}-{max(own) * 1000:.2f})  target < 40 ms: "
        + ("met" if statistics.median(own) < 0.040 else "NOT met")
    )
    print(f"  {'own imports beyond torch, the streamer, typer and rich':70} {line}")
    RESULTS.append(("own imports beyond torch, the streamer, typer and rich", line))
    if older:
        ratio(f"nemoverify --help - that of {older}", cases[0], cases[5], None, diff=True)
        ratio(f"nemoverify --version - that of {older}", cases[2], cases[6], None, diff=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", help="where checkpoints are written once and reused (default: a temporary one)")
    parser.add_argument("--size-gb", type=float, default=2.2, help="the large checkpoint (default 2.2: over 2 GB)")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds (default 5; cold: 3)")
    parser.add_argument("--only", default="startup,large,small,cold", help="sections, comma-separated")
    parser.add_argument("--compare-with", metavar="DIR", help="an older checkout, timed beside (small, start-up)")
    parser.add_argument(
        "--model-signing-python",
        default=None,
        help="a Python with model-signing installed (default: this one, if it has it)",
    )
    args = parser.parse_args()
    only = set(args.only.split(","))
    signing = args.model_signing_python
    if signing is None:
        probe = subprocess.run(py("import model_signing"), capture_output=True)
        signing = sys.executable if probe.returncode == 0 else None
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(ROOT, "nemoverify")], check=True, env=ENV)
    base = args.dir or tempfile.mkdtemp(prefix="nemoverify-bench-")
    print(f"{os.cpu_count()} cores; python {sys.version.split()[0]}; {load()}")
    try:
        bulk = os.path.join(base, f"nano-{args.size_gb:g}gb")
        few = os.path.join(base, "omni-nvfp4-like")
        if "startup" in only:
            generate(few, SMALL_SPEC)  # the own imports are those of a check of it
            startup(max(args.repeat, 10), args.compare_with, few)
        if only & {"large", "cold"}:
            generate(bulk, spec_for(args.size_gb))
        if "large" in only:
            large(bulk, args.repeat, signing)
        if "small" in only:
            generate(few, SMALL_SPEC)
            small(few, args.repeat, args.compare_with)
        if "cold" in only:
            cold(bulk, min(args.repeat, 3))
        print("\nsummary")
        for label, line in RESULTS:
            print(f"  {label:64} {line}")
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
