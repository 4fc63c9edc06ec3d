"""Speed and memory of nemoverify against bare loads and peer tools, timed as a user waits for them.

    python benchmarks/bench_check.py                            # 2 GB checkpoint, warm page cache
    python benchmarks/bench_check.py --size-gb 2 --small-tensors --rings 256MiB,1GiB,quarter
    python benchmarks/bench_check.py --cold                     # drops the page cache (root)

Every case is a whole process, timed from its start to its exit, as a user waits for it:
`nemoverify check DIR` against a script that streams the same files (every `*.safetensors` of the
directory, in glob order, as `check` streams them) with the bare Run:ai streamer, `b3sum` and
`sha256sum` over the shards, OpenSSF model-signing's hashing in its own process. Rounds are
interleaved (every case once per round, so a slow spell of the disk or a neighbour's job hits them
all alike); medians and min-max are printed, with `uptime`'s load before and after. Work-only ratios
(imports before the clock) are printed too, labelled as such: the whole-process ones are the targets
(issue 17). Peak RSS is each child's own (wait4), the parent stays light (no torch) so that it does
not leak into the children's figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from nemoverify.testing.synthetic import Spec, tensor_specs  # noqa: E402  (no torch at import)

# Imports from bytecode, as an installed package has it (pip compiles it at install): without
# PYTHONDONTWRITEBYTECODE, which some CI images set, and with nemoverify compiled before the clock.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV["PYTHONPATH"] = ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")
NEMOVERIFY = [sys.executable, "-m", "nemoverify"]

# Whole-process scripts: what a user would write. argv[1] is the checkpoint directory.
BARE_STREAM = """
import glob, logging, sys
logging.disable(logging.INFO)
from runai_model_streamer import SafetensorsStreamer
with SafetensorsStreamer() as s:
    s.stream_files(glob.glob(sys.argv[1] + '/*.safetensors'))
    for _ in s.get_tensors():
        pass
"""
BARE_SAFETENSORS = """
import glob, sys
from safetensors import safe_open
for p in glob.glob(sys.argv[1] + '/*.safetensors'):
    with safe_open(p, framework="pt") as f:
        for k in f.keys():
            f.get_tensor(k)
"""
MODEL_SIGNING = """
import sys
from model_signing import hashing
hashing.Config().use_file_serialization(hashing_algorithm=sys.argv[2]).hash(sys.argv[1])
"""
# Work-only: the same work with the imports before the clock; prints the seconds of the work.
WORK_STREAM = """
import glob, logging, sys, time
logging.disable(logging.INFO)
from runai_model_streamer import SafetensorsStreamer
t0 = time.perf_counter()
with SafetensorsStreamer() as s:
    s.stream_files(glob.glob(sys.argv[1] + '/*.safetensors'))
    for _ in s.get_tensors():
        pass
print(time.perf_counter() - t0)
"""
WORK_CHECK = """
import sys, time
import torch, runai_model_streamer, safetensors  # before the clock, as in WORK_STREAM
import nemoverify.engine.check, nemoverify.cli.app
t0 = time.perf_counter()
try:
    nemoverify.cli.app.run(sys.argv[2:])
except SystemExit as e:
    assert e.code in (0, None), e.code
print(time.perf_counter() - t0)
"""
# nemoverify's own imports, beyond torch and the streamer (which the bare stream pays too): what
# `check` imports before it reads a byte, and the command line's parser, which every run builds,
# timed in one process.
IMPORTS_AFTER_THE_STREAMER = """
import time
import torch, runai_model_streamer, safetensors
t0 = time.perf_counter()
import nemoverify.__main__, nemoverify.cli.app, nemoverify.api, nemoverify.engine.check, nemoverify.deployment.options
import typer.main
typer.main.get_command(nemoverify.cli.app.app)
print(time.perf_counter() - t0)
"""


@dataclass
class Run:
    seconds: float
    rss: int  # peak RSS of the child, bytes
    work: float | None = None  # what the child printed: seconds of work after its imports


@dataclass
class Case:
    name: str
    argv: list[str]
    runs: list[Run] = field(default_factory=list)
    prints_work: bool = False

    def median(self, attr: str = "seconds") -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)

    def span(self, attr: str = "seconds") -> tuple[float, float]:
        values = [getattr(r, attr) for r in self.runs]
        return min(values), max(values)

    @property
    def rss(self) -> int:
        return max(r.rss for r in self.runs)


def own_rss() -> int:
    """This process's peak RSS: Linux carries it across fork and exec into a child's high-water mark,
    so a child's figure at or below it is this process's, not the child's (shown as '-')."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def shown_rss(rss: int) -> str:
    return gb(rss) if rss > own_rss() else "-"


def peak_rss(argv: list[str]) -> int:
    """One child's own peak RSS: wait4 on it (not the largest child so far)."""
    proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}")
    return int(usage.ru_maxrss) * 1024


def timed(argv: list[str], prints_work: bool = False) -> Run:
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {code}\n{err.decode(errors='replace')[-2000:]}")
    lines = out.decode().strip().splitlines()
    work = float(lines[-1]) if prints_work else None
    return Run(seconds, int(usage.ru_maxrss) * 1024, work)


def py(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def spec_for(size_gb: float, step: int = 4, **shape: Any) -> Spec:
    """Grow the language model `step` layers at a time until the checkpoint reaches the size asked
    for; `shape` overrides the default dimensions (gpu_profiles.py: tensors past 1 GiB)."""
    from nemoverify.testing.synthetic import _nbytes

    dims: dict[str, Any] = dict(hidden=2048, ffn=8192, vocab=32768, vit_hidden=640, vit_blocks=8, projector_hidden=4096)
    dims |= shape
    layers = step
    while True:
        # shards of about 2 GB: the generator holds one at a time
        spec = Spec(layers=layers, sound=True, shards=max(3, math.ceil(size_gb / 2)), **dims)
        if sum(_nbytes(dt, shape) for _, dt, shape in tensor_specs(spec)) >= size_gb * 1e9:
            return spec
        layers += step


SMALL_SPEC = Spec(layers=52, hidden=128, ffn=64, experts=128, quant="nvfp4", sound=True, shards=3)


def generate(path: str, spec: Spec) -> None:
    """In a child, so that torch never loads into this process (its RSS would taint the children's)."""
    if os.path.exists(path):
        return
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from nemoverify.testing.synthetic import Spec, write_checkpoint\n"
        f"write_checkpoint(sys.argv[2], Spec(**{spec.__dict__!r}))\n"
    )
    subprocess.run([sys.executable, "-c", code, ROOT, path], check=True)


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def warm(paths: list[str]) -> None:
    for p in paths:
        with open(p, "rb") as f:
            while f.read(16 << 20):
                pass


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def parse_ring(text: str) -> tuple[str, list[str]]:
    """A --memory-limit ring; 'quarter': a quarter of available memory (the default before issue 17)."""
    if text == "quarter":
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
        return f"{available // 4 / 1e9:.1f} GB (a quarter of available memory)", ["--memory-limit", str(available // 4)]
    return text, ["--memory-limit", text]


def measure(path: str, repeat: int, cold: bool, bulk: bool, rings: list[str]) -> dict[str, object]:
    """Every case once per round, `repeat` rounds. `bulk`: the bulk checkpoint (the check, verify and
    memory targets) or the small-tensor one (the per-tensor target, work after imports)."""
    shards = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors"))
    size = sum(os.path.getsize(s) for s in shards)
    with open(os.path.join(path, "model.safetensors.index.json")) as f:
        ntensors = len(json.load(f)["weight_map"])
    tmp = tempfile.mkdtemp(prefix="nemoverify-bench-manifests-")
    manifests = {}
    for algorithm in ("blake3", "sha256"):
        manifests[algorithm] = os.path.join(tmp, f"{algorithm}.json")
        subprocess.run(
            [*NEMOVERIFY, "manifest", path, "-o", manifests[algorithm], "-q", "--algorithm", algorithm],
            check=True,
            env=ENV,
        )
    stream, reader, check = "bare Run:ai stream, own process", "bare safetensors read, own process", "nemoverify check"
    verify, verify_sha = "nemoverify verify (blake3 manifest)", "nemoverify verify (sha256 manifest)"
    cases = [
        Case(stream, py(BARE_STREAM, path)),
        Case(check, [*NEMOVERIFY, "check", path, "-q"]),
        Case("work only: bare Run:ai stream", py(WORK_STREAM, path), prints_work=True),
        Case("work only: nemoverify check", py(WORK_CHECK, path, "check", path, "-q"), prints_work=True),
    ]
    if bulk or cold:
        cases.append(Case(reader, py(BARE_SAFETENSORS, path)))
    if bulk:
        cases.append(Case("nemoverify check --stress", [*NEMOVERIFY, "check", path, "-q", "--stress"]))
        for ring in rings:
            label, flags = parse_ring(ring)
            if flags:
                cases.append(Case(f"nemoverify check, ring {label}", [*NEMOVERIFY, "check", path, "-q", *flags]))
        cases += [
            Case(verify, [*NEMOVERIFY, "verify", path, "--manifest", manifests["blake3"], "-q"]),
            Case(verify_sha, [*NEMOVERIFY, "verify", path, "--manifest", manifests["sha256"], "-q"]),
        ]
        if shutil.which("b3sum"):
            cases.append(Case("b3sum over the shards", ["b3sum", *shards]))
        else:
            print("(b3sum not found: apt-get install b3sum to compare)")
        cases.append(Case("sha256sum over the shards", ["sha256sum", *shards]))
        try:
            import importlib.util

            found = importlib.util.find_spec("model_signing") is not None
        except ImportError:
            found = False
        if found:
            cases.append(Case("OpenSSF model-signing (blake3)", py(MODEL_SIGNING, path, "blake3")))
            cases.append(Case("OpenSSF model-signing (sha256, its default)", py(MODEL_SIGNING, path, "sha256")))
        else:
            print("(model-signing not installed: pip install model-signing to compare)")
        if cold:
            cases.append(Case("sequential read of the shards (dd, direct I/O)", ["sh", "-c", _dd(shards)]))
    before = load()
    for _ in range(repeat):
        for case in cases:
            if cold:
                if not drop_caches():
                    raise SystemExit("--cold needs permission to write /proc/sys/vm/drop_caches")
            else:
                warm(shards)
            case.runs.append(timed(case.argv, case.prints_work))
    after = load()
    print(
        f"\ncheckpoint {path}: {gb(size)} in {ntensors:,} tensors, {len(shards)} shards; "
        f"{'cold' if cold else 'warm'} page cache; {repeat} interleaved rounds; load average {before} -> {after}"
    )
    print(
        f"{'whole process, start to exit (as a user waits)':52} {'median s':>8} {'min-max s':>11} {'GB/s':>6} {'peak RSS':>9}"
    )
    for case in cases:
        if case.prints_work:
            continue
        lo, hi = case.span()
        m = case.median()
        print(f"{case.name:52} {m:8.2f} {lo:5.2f}-{hi:<5.2f} {size / m / 1e9:6.2f} {shown_rss(case.rss):>9}")
    print(f"{'work only (imports before the clock)':52}")
    for case in cases:
        if case.prints_work:
            lo, hi = case.span("work")
            print(
                f"{case.name:52} {case.median('work'):8.2f} {lo:5.2f}-{hi:<5.2f} {size / case.median('work') / 1e9:6.2f}"
            )
    by = {c.name: c for c in cases}
    med = {c.name: c.median() for c in cases}
    work = {c.name: c.median("work") for c in cases if c.prints_work}
    results: dict[str, object] = {"size": size, "tensors": ntensors}

    def ratio(label: str, value: float, target: str, ok: bool | None) -> None:
        tail = f"(target {target} -> {verdict(ok)})" if ok is not None else f"({target})"
        print(f"ratio {label:58} {value:5.2f}  {tail}")

    check_work = work["work only: nemoverify check"] / work["work only: bare Run:ai stream"]
    if bulk and not cold:
        r = med[check] / med[stream]
        ratio("check / bare stream, whole process", r, "<= 1.15", r <= 1.15)
        ratio("  work only: check / bare stream", check_work, "work-only, not the target", None)
        if "b3sum over the shards" in med:
            r = med[verify] / med["b3sum over the shards"]
            ratio("verify / b3sum, whole process, warm", r, "<= 2", r <= 2)
        if "OpenSSF model-signing (blake3)" in med:
            r = med[verify] / med["OpenSSF model-signing (blake3)"]
            ratio("verify / model-signing, both blake3, whole process", r, "<= 1", r <= 1)
            r = med[verify_sha] / med["OpenSSF model-signing (sha256, its default)"]
            ratio("verify / model-signing, both sha256, whole process", r, "same digest, shown", None)
        r = med[verify] / med["sha256sum over the shards"]
        ratio("verify / sha256sum, whole process", r, "shown", None)
        half = by[check].rss / size
        ratio(
            "peak RSS of check / checkpoint size",
            half,
            "< 0.5 for checkpoints over 2 GB" + ("" if size > 2e9 else ": this one is smaller, shown"),
            half < 0.5 if size > 2e9 else None,
        )
    if not bulk:
        ratio("check / bare stream, work after imports", check_work, "<= 1.5", check_work <= 1.5)
        r = med[check] / med[stream]
        ratio("  whole process: check / bare stream", r, "start-up dominates here, shown", None)
    if cold:
        both = med[stream] + med[reader]
        r = med[check] / both
        ratio("cold: check / (bare stream + bare safetensors read)", r, "<= 1.1", r <= 1.1)
        if bulk:
            dd = med["sequential read of the shards (dd, direct I/O)"]
            r = med[verify] / dd
            ratio("cold: verify / the disk's sequential read", r, "<= 1.1", r <= 1.1)
    results["cases"] = {c.name: {"median": c.median(), "rss": c.rss} for c in cases}
    shutil.rmtree(tmp, ignore_errors=True)
    return results


def _dd(shards: list[str]) -> str:
    return " && ".join(f"dd if={s} of=/dev/null bs=16M iflag=direct status=none" for s in shards)


def startup(path: str, repeat: int) -> None:
    """nemoverify's own imports (beyond torch and the streamer), `--help` and `inspect`, whole process."""
    cases = [
        Case("nemoverify's own imports (in process, after torch + streamer)", py(IMPORTS_AFTER_THE_STREAMER), prints_work=True),
        Case("nemoverify --help, whole process", [*NEMOVERIFY, "--help"]),
        Case("nemoverify inspect DIR, whole process", [*NEMOVERIFY, "inspect", path]),
        Case("python -c 'import torch, runai_model_streamer' (both pay it)", py("import torch, runai_model_streamer")),
    ]
    before = load()
    for _ in range(repeat):
        for case in cases:
            case.runs.append(timed(case.argv, case.prints_work))
    print(f"\nstart-up; {repeat} interleaved rounds; load average {before} -> {load()}")
    print(f"{'':64} {'median s':>8} {'min-max s':>11}")
    for case in cases:
        attr = "work" if case.prints_work else "seconds"
        lo, hi = case.span(attr)
        print(f"{case.name:64} {case.median(attr):8.3f} {lo:5.3f}-{hi:<5.3f}")
    own = cases[0].median("work")
    print(f"target: own imports < 0.15 s -> {verdict(own < 0.15)} ({own:.3f} s, the parser's construction included)")
    for case in cases[1:3]:
        m = case.median()
        print(f"target: {case.name.split(',')[0]} < 0.5 s -> {verdict(m < 0.5)} ({m:.3f} s)")


def memory_scaling(base: str, sizes: list[float], ring: str) -> None:
    """Peak RSS of check, default ring or the one given, on checkpoints that differ only in the
    language model: flat in its size, and under half the checkpoint past 2 GB."""
    print(f"\npeak RSS of check ({'the defaults' if ring == 'default' else '--memory-limit ' + ring}), most of 3 runs")
    print(f"{'checkpoint':>10} {'peak RSS':>9} {'RSS / size':>10}")
    for size_gb in sizes:
        path = os.path.join(base, f"nano-{size_gb:g}gb")
        generate(path, spec_for(size_gb))
        size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".safetensors"))
        flags = [] if ring == "default" else parse_ring(ring)[1]
        peak = max(peak_rss([*NEMOVERIFY, "check", path, "-q", *flags]) for _ in range(3))
        print(f"{gb(size):>10} {gb(peak):>9} {peak / size:10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=2.0, help="checkpoint size to generate (default 2)")
    parser.add_argument("--dir", help="where to write the checkpoints (default: a temporary directory, removed after)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians are reported (default 3)")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before every run (needs root)")
    parser.add_argument(
        "--small-tensors", action="store_true", help="also the Omni NVFP4 layout of 25,000+ small tensors"
    )
    parser.add_argument("--small-tensors-only", action="store_true", help="only the layout of small tensors")
    parser.add_argument(
        "--rings",
        default="quarter",
        metavar="SIZE,...",
        help="also check with these --memory-limit rings ('quarter': a quarter of available memory, the default "
        "before issue 17); default quarter. The default ring is 256 MiB.",
    )
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up measurements")
    parser.add_argument(
        "--memory-sizes",
        metavar="GB,GB",
        help="also peak RSS of check with the defaults at these checkpoint sizes (e.g. 1,4)",
    )
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(ROOT, "nemoverify")], check=True, env=ENV)
    base = args.dir or tempfile.mkdtemp(prefix="nemoverify-bench-")
    rings = [r for r in args.rings.split(",") if r]
    try:
        path = os.path.join(base, f"nano-{args.size_gb:g}gb")
        if not args.small_tensors_only:
            generate(path, spec_for(args.size_gb))
            if not args.no_startup and not args.cold:
                startup(path, max(args.repeat, 5))
            measure(path, args.repeat, args.cold, True, rings)
        if args.small_tensors or args.small_tensors_only:
            small = os.path.join(base, "omni-nvfp4-like")
            generate(small, SMALL_SPEC)
            measure(small, args.repeat, args.cold, False, [])
        if args.memory_sizes:
            memory_scaling(base, [float(x) for x in args.memory_sizes.split(",")], "default")
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
