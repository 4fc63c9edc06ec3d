"""check --device cuda against a bare Run:ai stream to the same GPU, on a generated checkpoint.

python benchmarks/bench_cuda.py --size-gb 8
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
from bench_check import spec_for  # noqa: E402

from nemoverify.checkpoint.layout import open_checkpoint  # noqa: E402
from nemoverify.deployment.options import CheckOptions  # noqa: E402
from nemoverify.engine.check import check_load as check  # noqa: E402
from nemoverify.engine.passes import candidate_pass  # noqa: E402
from nemoverify.testing.synthetic import write_checkpoint  # noqa: E402


def bare_stream(paths: list[str], device: str) -> float:
    from runai_model_streamer import SafetensorsStreamer

    t0 = time.perf_counter()
    with SafetensorsStreamer() as s:
        s.stream_files(paths, device=device)
        for _ in s.get_tensors():
            pass
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-gb", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cuda:0")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    path = os.path.join(tempfile.mkdtemp(prefix="nemoverify-cuda-"), "ckpt")
    write_checkpoint(path, spec_for(args.size_gb))
    ckpt = open_checkpoint(path)
    paths = [s.location for s in ckpt.shards]
    size = ckpt.total_bytes
    print(
        f"{torch.cuda.get_device_name()}: checkpoint {size / 1e9:.2f} GB in {ckpt.tensor_count} tensors, {os.cpu_count()} CPU cores"
    )
    cases = {
        "bare Run:ai stream to the GPU": lambda: bare_stream(paths, args.device),
        "candidate pass on the GPU (replay + lin128 on device)": lambda: timed(
            lambda: candidate_pass(ckpt, CheckOptions(device=args.device, algorithm="lin128"))
        ),
        "check --device cuda (both passes, lin128)": lambda: timed(
            lambda: check(ckpt, CheckOptions(device=args.device, algorithm="lin128"))
        ),
        "check --device cuda --algorithm xxh3-128 (copy back)": lambda: timed(
            lambda: check(ckpt, CheckOptions(device=args.device))
        ),
    }
    results: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeat):
        for name, fn in cases.items():
            results[name].append(fn())
    for name, secs in results.items():
        med = statistics.median(secs)
        print(f"{name:56} {med:7.2f} s  {size / med / 1e9:6.2f} GB/s")
    stream = statistics.median(results["bare Run:ai stream to the GPU"])
    for name in list(cases)[1:]:
        print(f"ratio {name} / bare stream: {statistics.median(results[name]) / stream:.2f}")


if __name__ == "__main__":
    main()
