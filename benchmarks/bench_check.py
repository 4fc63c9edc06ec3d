"""Speed and memory of nemoverify against bare loads and peer tools, on one generated checkpoint.

    python benchmarks/bench_check.py                   # 2 GB checkpoint, warm page cache
    python benchmarks/bench_check.py --size-gb 8 --small-tensors

Each measurement runs in a fresh process and reports its wall time and peak RSS; the script prints
ratios against the targets of issue 7. Run it on an otherwise idle machine.
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
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from nemoverify.testing.synthetic import Spec, tensor_specs, write_checkpoint  # noqa: E402

# Each child prints one JSON line: {"seconds": wall time of the work, "rss": peak RSS in bytes}.
CHILD_PREFIX = """
import json, sys, time, glob
paths = sorted(glob.glob(sys.argv[1] + '/*.safetensors'))
"""
# Peak RSS from VmHWM: getrusage's ru_maxrss survives exec on Linux, so a child would report the
# peak of the benchmark process that forked it.
CHILD_SUFFIX = """
seconds = time.perf_counter() - t0
hwm = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmHWM:'))
print(json.dumps({"seconds": seconds, "rss": hwm}))
"""
BARE_STREAM = """
import logging; logging.disable(logging.INFO)
from runai_model_streamer import SafetensorsStreamer
t0 = time.perf_counter()
with SafetensorsStreamer() as s:
    s.stream_files(paths)
    for _ in s.get_tensors():
        pass
"""
BARE_SAFETENSORS = """
from safetensors import safe_open
t0 = time.perf_counter()
for p in paths:
    with safe_open(p, framework="pt") as f:
        for k in f.keys():
            f.get_tensor(k)
"""
NEMOVERIFY = """
import torch, runai_model_streamer, safetensors  # imported before the clock, as the bare loads do
import nemoverify.checking
from nemoverify.cli import app
try:
    import typer._adapters  # typer 0.29 imports pydantic on its first parse (0.05 s): an import too
except ImportError:
    pass
t0 = time.perf_counter()
try:
    app(args=sys.argv[2:], prog_name="nemoverify")
except SystemExit as e:
    assert e.code in (0, None), e.code
"""
MODEL_SIGNING = """
from model_signing import hashing
t0 = time.perf_counter()
hashing.Config().use_file_serialization(hashing_algorithm=sys.argv[2]).hash(sys.argv[1])
"""


def child(body: str, *args: str) -> dict[str, float]:
    code = CHILD_PREFIX + body + CHILD_SUFFIX
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def spec_for(size_gb: float) -> Spec:
    """Grow the language model until the checkpoint reaches the size asked for."""
    import math

    import torch

    layers = 4
    while True:
        spec = Spec(
            layers=layers,
            hidden=2048,
            ffn=8192,
            vocab=32768,
            vit_hidden=640,
            vit_blocks=8,
            projector_hidden=4096,
            sound=True,
            shards=max(3, math.ceil(size_gb / 2)),  # shards of about 2 GB: the generator holds one at a time
        )

        size = sum(math.prod(shape) * getattr(torch, dt).itemsize for _, dt, shape in tensor_specs(spec))
        if size >= size_gb * 1e9:
            return spec
        layers += 4


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def measure(path: str, repeat: int, cold: bool, warm_target: float = 1.25, bulk: bool = True) -> None:
    """Every case once per round, `repeat` rounds; medians and ratios. `bulk` says whether the
    checkpoint is the bulk one (the verify targets) or the small-tensor one (the per-tensor target)."""
    size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".safetensors"))
    with open(os.path.join(path, "model.safetensors.index.json")) as f:
        ntensors = len(json.load(f)["weight_map"])
    shards = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".safetensors"))
    manifests = {}
    for algorithm in ("blake3", "sha256"):
        manifests[algorithm] = os.path.join(tempfile.mkdtemp(), f"{algorithm}.json")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "nemoverify",
                "manifest",
                path,
                "-o",
                manifests[algorithm],
                "-q",
                "--algorithm",
                algorithm,
            ],
            check=True,
        )
    print(
        f"\ncheckpoint {path}: {gb(size)} in {ntensors:,} tensors; {'cold' if cold else 'warm'} cache; median of {repeat} interleaved runs"
    )

    def sha256sum() -> dict[str, float]:
        return {"seconds": timed(["sha256sum", *shards]), "rss": 0}

    stream, reader, check = "bare Run:ai stream (no hashing, no replay)", "bare safetensors read", "nemoverify check"
    verify, verify_sha = "nemoverify verify (blake3, the default)", "nemoverify verify (sha256 manifest)"
    ms, ms_b3 = "OpenSSF model-signing (sha256, its default)", "OpenSSF model-signing (blake3)"
    cases: list[tuple[str, Callable[[], dict[str, float]]]] = [
        (stream, lambda: child(BARE_STREAM, path)),
        (reader, lambda: child(BARE_SAFETENSORS, path)),
        (check, lambda: child(NEMOVERIFY, path, "check", path, "-q")),
        ("nemoverify check --stress", lambda: child(NEMOVERIFY, path, "check", path, "-q", "--stress")),
        (
            "nemoverify check --memory-limit 256MiB",
            lambda: child(NEMOVERIFY, path, "check", path, "-q", "--memory-limit", str(256 << 20)),
        ),
        (verify, lambda: child(NEMOVERIFY, path, "verify", path, "--manifest", manifests["blake3"], "-q")),
        (verify_sha, lambda: child(NEMOVERIFY, path, "verify", path, "--manifest", manifests["sha256"], "-q")),
        ("sha256sum over the shards", sha256sum),
    ]
    try:
        import model_signing  # noqa: F401

        cases.append((ms, lambda: child(MODEL_SIGNING, path, "sha256")))
        cases.append((ms_b3, lambda: child(MODEL_SIGNING, path, "blake3")))
    except ImportError:
        print("(model-signing not installed: pip install model-signing pyopenssl in this environment to compare)")
    # Interleaved: every round runs each case once, so slow spells of the disk hit all of them alike.
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in cases}
    for _ in range(repeat):
        for name, fn in cases:
            if cold and not drop_caches():
                raise SystemExit("--cold needs permission to write /proc/sys/vm/drop_caches")
            runs[name].append(fn())
    med = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items()}
    rss = {name: max(r["rss"] for r in rs) for name, rs in runs.items()}
    print(f"{'what':48} {'median s':>8} {'min-max s':>11} {'GB/s':>6} {'peak RSS':>9}")
    for name, rs in runs.items():
        secs = [r["seconds"] for r in rs]
        shown = gb(rss[name]) if rss[name] else "-"
        print(f"{name:48} {med[name]:8.2f} {min(secs):5.2f}-{max(secs):<5.2f} {size / med[name] / 1e9:6.2f} {shown:>9}")

    def ratio(label: str, a: str, b: str, target: str, met: bool) -> None:
        print(f"ratio {label:36} {med[a] / med[b]:5.2f}  (target {target} -> {'met' if met else 'NOT met'})")

    if cold:
        both = med[stream] + med[reader]
        print(
            f"ratio {'check / (stream + safetensors read)':36} {med[check] / both:5.2f}  "
            f"(target <= 1.1 -> {'met' if med[check] <= 1.1 * both else 'NOT met'})"
        )
    else:
        ratio("check / bare stream", check, stream, f"<= {warm_target:g}", med[check] <= warm_target * med[stream])
    if not bulk:
        print("(verify on 1.5 KB tensors is per-tensor work, not hashing: shown, no target)")
        return
    sha = "sha256sum over the shards"
    ratio("verify / sha256sum", verify, sha, "<= 1", med[verify] <= med[sha])
    if ms in med:
        ratio("verify / model-signing", verify, ms, "< 1, each tool's default", med[verify] < med[ms])
        ratio("verify / model-signing, both blake3", verify, ms_b3, "< 1, same algorithm", med[verify] < med[ms_b3])
        same = med[verify_sha] / med[ms]
        print(f"ratio {'verify / model-signing, both sha256':36} {same:5.2f}  (same algorithm: both at sha256's speed)")
    print(f"peak RSS of check: {gb(rss[check])} for a {gb(size)} checkpoint (the ring: a quarter of available memory)")


def memory_scaling(base: str, sizes: list[float], ring: int = 256 << 20) -> None:
    """Peak RSS of check with a fixed ring on checkpoints that differ only in the language model:
    the issue's bound is ring + multimodal clones + the tensor being loaded + a constant."""
    from nemoverify.checkpoint.layout import open_checkpoint
    from nemoverify.model.routing import MULTIMODAL, route

    baseline = child(
        "import torch, runai_model_streamer, safetensors, nemoverify.checking, nemoverify.cli\nt0 = time.perf_counter()\n",
        base,
    )["rss"]
    print(f"\npeak RSS of check --memory-limit {ring >> 20}MiB; baseline (the imports alone) {gb(baseline)}")
    print(
        f"{'checkpoint':>10} {'language model':>15} {'clones':>8} {'largest':>8} {'peak RSS':>9} {'peak - baseline - ring - clones - largest':>42}"
    )
    for size_gb in sizes:
        path = os.path.join(base, f"nano-{size_gb:g}gb")
        if not os.path.exists(path):
            write_checkpoint(path, spec_for(size_gb))
        ck = open_checkpoint(path)
        lm = sum(i.nbytes for _, i in ck.tensors() if route(i.name).component == "language_model")
        clones = sum(i.nbytes for _, i in ck.tensors() if route(i.name).component in MULTIMODAL)
        largest = max(i.nbytes for _, i in ck.tensors())
        # The most of three runs: when the allocator hands memory back varies by 0.1 GB run to run.
        peak = max(child(NEMOVERIFY, path, "check", path, "-q", "--memory-limit", str(ring))["rss"] for _ in range(3))
        rest = peak - baseline - ring - clones - largest
        print(f"{gb(ck.total_bytes):>10} {gb(lm):>15} {gb(clones):>8} {gb(largest):>8} {gb(peak):>9} {gb(rest):>42}")


def beyond_memory(base: str) -> None:
    """A checkpoint 1.2x this machine's memory, checked with the defaults: it must verify, with a
    peak RSS well under the machine's memory (there is no swap to hide in here)."""
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))
    size_gb = 1.2 * total / 1e9
    path = os.path.join(base, f"nano-{size_gb:.0f}gb")
    if not os.path.exists(path):
        t0 = time.perf_counter()
        write_checkpoint(path, spec_for(size_gb))
        print(f"\n(generated {path} in {time.perf_counter() - t0:.0f} s)")
    size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".safetensors"))
    result = child(NEMOVERIFY, path, "check", path, "-q")  # asserts exit code 0: verified
    print(
        f"\nlarger than memory: {gb(size)} checkpoint, {gb(total)} of memory, no swap: check verified it in "
        f"{result['seconds']:.1f} s at {size / result['seconds'] / 1e9:.2f} GB/s, peak RSS {gb(result['rss'])}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=2.0, help="checkpoint size to generate (default 2)")
    parser.add_argument("--dir", help="where to write the checkpoints (default: a temporary directory, removed after)")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved rounds; medians are reported")
    parser.add_argument("--cold", action="store_true", help="drop the page cache before every run (needs root)")
    parser.add_argument(
        "--small-tensors", action="store_true", help="also the Omni NVFP4-like layout of 25,000+ small tensors"
    )
    parser.add_argument("--small-tensors-only", action="store_true", help="only the layout of small tensors")
    parser.add_argument(
        "--beyond-memory", action="store_true", help="also check a checkpoint 1.2x this machine's memory (slow)"
    )
    parser.add_argument(
        "--memory-sizes", metavar="GB,GB", help="also peak RSS with a fixed ring at these checkpoint sizes (e.g. 1,4)"
    )
    args = parser.parse_args()
    base = args.dir or tempfile.mkdtemp(prefix="nemoverify-bench-")
    try:
        path = os.path.join(base, f"nano-{args.size_gb:g}gb")
        if not os.path.exists(path) and not args.small_tensors_only:
            write_checkpoint(path, spec_for(args.size_gb))
        if not args.small_tensors_only:
            measure(path, args.repeat, args.cold)
        if args.small_tensors or args.small_tensors_only:
            small = os.path.join(base, "omni-nvfp4-like")
            if not os.path.exists(small):
                write_checkpoint(
                    small, Spec(layers=52, hidden=128, ffn=64, experts=128, quant="nvfp4", sound=True, shards=3)
                )
            measure(small, args.repeat, args.cold, warm_target=2.0, bulk=False)  # issue 7: 25,000+ small tensors, <= 2x
        if args.memory_sizes:
            memory_scaling(base, [float(x) for x in args.memory_sizes.split(",")])
        if args.beyond_memory:
            beyond_memory(base)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
