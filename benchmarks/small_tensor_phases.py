"""Where `check` spends its time on many small tensors, phase by phase, against the bare stream.

    python benchmarks/small_tensor_phases.py DIR [--rounds 7]

DIR is a checkpoint of many small tensors (bench_check.py --small-tensors writes one, the Omni NVFP4
layout: DIR/omni-nvfp4-like). Every phase runs in this one process after the imports, `rounds`
times, interleaved; the least CPU time of each (all threads: the streamer's readers included) is
printed, which a neighbour's load disturbs far less than wall time. The cycle collector is paused
as in a run (`nemoverify.gc_pause`), and the candidate pass routes every name cold, as a run's does
(the later phases share its cache, as in a run). The rows say what each layer adds per tensor: the streamer's
own Python is the bare stream's cost, and what `check` adds on top is what issue 17's 1.5x target
is about.
"""

from __future__ import annotations

import argparse
import gc
import glob
import logging
import os
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", help="a checkpoint of many small tensors")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; the least CPU time is shown")
    args = parser.parse_args()
    logging.disable(logging.INFO)

    import torch  # noqa: F401  (imports before the clock, as in a run)
    from runai_model_streamer import SafetensorsStreamer

    from nemoverify.checkpoint.layout import open_checkpoint
    from nemoverify.deployment.options import resolve_check
    from nemoverify.deployment.request import Request
    from nemoverify.engine import check as checking
    from nemoverify.engine import passes
    from nemoverify.hashing import tensor_digester
    from nemoverify.model.routing import route

    gc.freeze()  # as the CLI does after its imports
    files = sorted(glob.glob(os.path.join(args.dir, "*.safetensors")))
    checkpoint = open_checkpoint(args.dir)
    options = resolve_check(Request(args.dir)).fitted_to(checkpoint.largest_streamed_tensor, checkpoint.streamed_bytes)
    digest = tensor_digester(options.algorithm)

    def bare_stream() -> None:
        with SafetensorsStreamer() as s:
            s.stream_files(files)
            for _ in s.get_tensors():
                pass

    def stream_and_digest() -> None:  # the least any recorder must do: read dtype, shape, size, bytes
        with SafetensorsStreamer() as s:
            s.stream_files(files)
            for _, t in s.get_tensors():
                t.dtype, tuple(t.shape), t.nbytes, digest(t)

    def candidate_pass() -> None:
        route.cache_clear()  # a run routes every name once, cold, in its candidate pass
        passes.candidate_pass(checkpoint, options)

    def header_parse() -> None:
        open_checkpoint(args.dir)

    def reference_pass() -> None:
        passes.reference_pass(checkpoint, options.algorithm)

    reference = passes.reference_pass(checkpoint, options.algorithm)
    delivered = passes.candidate_pass(checkpoint, options)

    def report() -> None:
        checking.build_report(checkpoint, options, checking.routed_as(reference, options, checkpoint), {0: delivered}, 0)

    phases: list[tuple[str, Callable[[], None]]] = [
        ("bare Run:ai stream (what the baseline pays)", bare_stream),
        ("stream + read dtype, shape, size + digest", stream_and_digest),
        ("candidate pass (stream, replay, record)", candidate_pass),
        ("header parse + layout checks (open_checkpoint)", header_parse),
        ("reference pass (stored bytes, hashed)", reference_pass),
        ("report (compare, summarize, roots)", report),
    ]
    least = dict.fromkeys((name for name, _ in phases), float("inf"))
    gc.disable()
    for _ in range(args.rounds):
        for name, fn in phases:
            t0 = time.process_time()
            fn()
            least[name] = min(least[name], time.process_time() - t0)
    gc.enable()
    n = len(reference)
    bare = least[phases[0][0]]
    print(f"{args.dir}: {n:,} tensors; least CPU time of {args.rounds} interleaved rounds, one process")
    print(f"{'phase':48} {'CPU s':>7} {'us/tensor':>10} {'/ bare':>7}")
    for name, _ in phases:
        s = least[name]
        print(f"{name:48} {s:7.3f} {s / n * 1e6:10.1f} {s / bare:7.2f}")
    ours = sum(least[name] for name, _ in phases[2:])
    print(f"{'check: candidate + header + reference + report':48} {ours:7.3f} {ours / n * 1e6:10.1f} {ours / bare:7.2f}")
    # The header parse must finish before the streamer reads a byte (it trusts its header's offsets),
    # and the report needs both passes: only the reference pass could move to a second process.
    hidden = ours - next(least[name] for name, fn in phases if fn is reference_pass)
    label = "  at best, the reference in a second process"
    print(f"{label:48} {hidden:7.3f} {hidden / n * 1e6:10.1f} {hidden / bare:7.2f}")


if __name__ == "__main__":
    main()
