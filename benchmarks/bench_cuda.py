"""check --device cuda against a bare Run:ai stream of the same files, one process, on a generated
checkpoint: the default digest as `check` resolves it (where the tensors land: one process streams
to the CPU, as vLLM does) against the other digest, so that the default is the measured faster one.

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
from dataclasses import replace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
from bench_check import spec_for  # noqa: E402

from nemoverify.checkpoint.layout import open_checkpoint  # noqa: E402
from nemoverify.deployment.options import resolve_check  # noqa: E402
from nemoverify.deployment.request import Request  # noqa: E402
from nemoverify.engine.check import check_load as check  # noqa: E402
from nemoverify.engine.passes import candidate_pass  # noqa: E402
from nemoverify.readers.runai import environment, settings_for  # noqa: E402
from nemoverify.testing.synthetic import write_checkpoint  # noqa: E402


def bare_stream(paths: list[str], device: str, env: dict[str, str] | None = None) -> float:
    from runai_model_streamer import SafetensorsStreamer

    t0 = time.perf_counter()
    with environment(env or {}), SafetensorsStreamer() as s:
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
    default = resolve_check(Request(path, device=args.device))
    other = "lin128" if default.algorithm != "lin128" else "xxh3-128"
    print(
        f"check --device {args.device}, one process: default digest {default.algorithm} (the tensors land on the CPU)"
    )
    ring = settings_for(default.fitted_to(ckpt.largest_streamed_tensor, ckpt.streamed_bytes)).environment()
    cases = {
        "bare Run:ai stream to the CPU, check's ring": lambda: bare_stream(paths, "cpu", ring),
        "bare Run:ai stream to the CPU (as vLLM streams, one process)": lambda: bare_stream(paths, "cpu"),
        "bare Run:ai stream to the GPU": lambda: bare_stream(paths, args.device),
        f"candidate pass, default digest ({default.algorithm})": lambda: timed(lambda: candidate_pass(ckpt, default)),
        f"check --device cuda, default digest ({default.algorithm})": lambda: timed(lambda: check(ckpt, default)),
        f"check --device cuda --algorithm {other}": lambda: timed(
            lambda: check(ckpt, replace(default, algorithm=other))
        ),
    }
    results: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.repeat):
        for name, fn in cases.items():
            results[name].append(fn())
    for name, secs in results.items():
        med = statistics.median(secs)
        print(f"{name:64} {med:7.2f} s ({min(secs):.2f}-{max(secs):.2f})  {size / med / 1e9:6.2f} GB/s")
    for base in list(cases)[:3]:
        stream = statistics.median(results[base])
        for name in list(cases)[3:]:
            print(f"ratio {name} / {base}: {statistics.median(results[name]) / stream:.2f}")


if __name__ == "__main__":
    main()
