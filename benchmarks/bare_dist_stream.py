"""One rank of a bare distributed Run:ai stream (no hashing, no replay): the baseline for
`check --nproc N --device cuda`. Start it with torchrun; see bench_dist.py."""

from __future__ import annotations

import glob
import logging
import os
import sys

import torch
import torch.distributed as dist


def main() -> None:
    logging.disable(logging.INFO)
    local = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    dist.init_process_group("nccl")
    os.environ["RUNAI_STREAMER_DIST"] = "1"
    from runai_model_streamer import SafetensorsStreamer

    paths = sorted(glob.glob(os.path.join(sys.argv[1], "*.safetensors")))
    with SafetensorsStreamer() as s:
        s.stream_files(paths, device=f"cuda:{local}", is_distributed=True)
        assert s.file_streamer.is_distributed, "the streamer fell back to non-distributed streaming"
        for _ in s.get_tensors():
            pass
    torch.cuda.synchronize()
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
