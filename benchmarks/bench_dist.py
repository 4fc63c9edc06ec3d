"""Distributed streaming over NCCL: `check --nproc N --device cuda` against a bare distributed
Run:ai stream of the same files, both timed end to end (process start included).

    python benchmarks/bench_dist.py --nproc 2 --size-gb 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench_check import spec_for  # noqa: E402

from nemoverify.testing.synthetic import write_checkpoint  # noqa: E402


def wall(cmd: list[str]) -> tuple[float, int]:
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return time.perf_counter() - t0, rc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--size-gb", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    path = os.path.join(tempfile.mkdtemp(prefix="nemoverify-dist-"), "ckpt")
    write_checkpoint(path, spec_for(args.size_gb))
    n = str(args.nproc)
    py = sys.executable
    bare = [
        py,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        n,
        os.path.join(HERE, "bare_dist_stream.py"),
        path,
    ]
    check = [py, "-m", "nemoverify", "check", path, "--nproc", n, "--device", "cuda", "-q"]
    cases = {"bare distributed Run:ai stream (torchrun)": bare, f"nemoverify check --nproc {n} --device cuda": check}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeat):
        for name, cmd in cases.items():
            secs, rc = wall(cmd)
            assert rc == 0, (name, rc)
            times[name].append(secs)
    size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".safetensors"))
    print(f"checkpoint {size / 1e9:.2f} GB; {args.nproc} ranks over NCCL; median of {args.repeat}, end to end")
    for name, secs in times.items():
        print(f"{name:48} {statistics.median(secs):7.2f} s  (runs: {', '.join(f'{s:.2f}' for s in secs)})")
    names = list(cases)
    print(
        f"ratio check / bare distributed stream: {statistics.median(times[names[1]]) / statistics.median(times[names[0]]):.2f}"
    )
    out = os.path.join(tempfile.gettempdir(), "legacy.json")
    rc = subprocess.run([*check, "--vllm", "0.20", "--stress", "--json", out]).returncode
    with open(out) as f:
        report = json.load(f)
    print(
        f"--vllm 0.20 --stress: exit {rc}; ranks {report['ranks']}; failed tensors {len({m['name'] for m in report['mismatches']})} of {report['tensors']}"
    )


if __name__ == "__main__":
    main()
