"""Deployment profiles on several GPUs (issue 41749's configuration): the matrix with NCCL ranks on
the shipped examples and on a generated checkpoint whose largest tensors outgrow production's 1 GiB
staging buffers, then a clean check as deployed against a bare distributed stream.

    python benchmarks/gpu_profiles.py matrix --nproc 2 --size-gb 6      # the matrices
    python benchmarks/gpu_profiles.py timing --nproc 2 --size-gb 6      # check vs bare stream, 0.20 as deployed

The generated checkpoint is written once under $TMPDIR/nemoverify-gpu-profiles and reused.
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
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from bench_check import spec_for  # noqa: E402

from nemoverify.testing.synthetic import Spec, write_checkpoint  # noqa: E402

GIB = 1 << 30


def big_spec(size_gb: float) -> Spec:
    """Embeddings and lm_head of 144,000 x 4,096 BF16 (1.18 GB each, more than a 1 GiB staging
    buffer); MLP layers added until the checkpoint reaches `size_gb`."""
    return spec_for(size_gb, step=2, hidden=4096, ffn=16384, vocab=144_000, heads=32, kv_heads=8, vit_blocks=4)


def checkpoint(size_gb: float) -> str:
    path = os.path.join(tempfile.gettempdir(), "nemoverify-gpu-profiles", f"{size_gb:g}gb")
    if not os.path.exists(os.path.join(path, "config.json")):
        t0 = time.perf_counter()
        write_checkpoint(path, big_spec(size_gb))
        print(f"wrote {path} in {time.perf_counter() - t0:.0f}s", flush=True)
    return path


def nemoverify(*args: str) -> tuple[int, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nemoverify", *args], capture_output=True, text=True)
    print(f"$ nemoverify {' '.join(args)}   # exit {proc.returncode}, {time.perf_counter() - t0:.1f}s", flush=True)
    if proc.returncode not in (0, 1):
        print(proc.stderr[-3000:], flush=True)
    return proc.returncode, proc.stdout


def matrices(args: argparse.Namespace) -> None:
    paths = [os.path.join(ROOT, "examples", e) for e in ("nano-omni-tiny", "nano-12b-v2-vl-tiny")]
    paths.append(checkpoint(args.size_gb))
    for path in paths:
        _, out = nemoverify("matrix", path, "--nproc", str(args.nproc), "--device", "cuda")
        print(out, flush=True)


def timing(args: argparse.Namespace) -> None:
    path = checkpoint(args.size_gb)
    n = str(args.nproc)
    bare = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", n]
    bare += [os.path.join(HERE, "bare_dist_stream.py"), path]
    check = [sys.executable, "-m", "nemoverify", "check", path, "--nproc", n, "--device", "cuda", "-q"]
    cases = {"bare distributed Run:ai stream (torchrun)": bare, f"nemoverify check --nproc {n} --device cuda": check}
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeat):
        for name, cmd in cases.items():
            t0 = time.perf_counter()
            rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
            assert rc == 0, (name, rc)
            times[name].append(time.perf_counter() - t0)
    size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path) if f.endswith(".safetensors"))
    print(f"checkpoint {size / 1e9:.2f} GB; {n} ranks over NCCL; median of {args.repeat}, end to end")
    for name, secs in times.items():
        print(f"{name:48} {statistics.median(secs):7.2f} s  (runs: {', '.join(f'{s:.2f}' for s in secs)})")
    a, b = (statistics.median(v) for v in times.values())
    print(f"ratio check / bare distributed stream: {b / a:.2f}", flush=True)
    for extra in (["--vllm", "0.20", "--streamer", "0.16"], ["--vllm", "0.22", "--streamer", "0.16", "--stress"]):
        out = os.path.join(tempfile.gettempdir(), "profile.json")
        rc, _ = nemoverify("check", path, "--nproc", n, "--device", "cuda", *extra, "--json", out, "-q")
        with open(out) as f:
            report = json.load(f)
        failed = {m["name"] for m in report["mismatches"]}
        by_rank = {r: sum(1 for m in report["mismatches"] if m["rank"] == int(r)) for r in report["ranks"]}
        print(f"  ranks {report['ranks']}; failed tensors {len(failed)} of {report['tensors']}; per rank {by_rank}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["matrix", "timing"])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--size-gb", type=float, default=6.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    (matrices if args.what == "matrix" else timing)(args)


if __name__ == "__main__":
    main()
