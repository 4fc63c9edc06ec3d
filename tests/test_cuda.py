"""On NVIDIA GPUs: with distributed streaming the streamer delivers into device memory, the replay
clones there, and lin128 is computed there; the CPU reproduces every digest exactly. Without it,
vLLM streams to the CPU and copies, and so does a one-process check. Skipped without a GPU (CI has
none): run with `python -m pytest -m gpu` on a GPU machine (two GPUs for the distributed ones)."""

from __future__ import annotations

import json

import pytest
import torch

from nemoverify.hashing import lin128

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU"),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.uint8, torch.float8_e4m3fn, torch.int64])
@pytest.mark.parametrize("numel", [0, 1, 7, 4097, (1 << 22) + 13])
def test_lin128_on_the_gpu_equals_the_cpu(dtype: torch.dtype, numel: int) -> None:
    cpu = torch.randn(numel).to(dtype) if dtype.is_floating_point else torch.randint(0, 100, (numel,), dtype=dtype)
    assert lin128(cpu.cuda()) == lin128(cpu)
    if numel > 1:  # a misaligned view on the device
        assert lin128(cpu.view(torch.uint8)[1:].cuda()) == lin128(cpu.view(torch.uint8)[1:])


def test_a_one_process_check_on_cuda_streams_to_the_cpu_as_vllm_does(cli, omni_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.json"
    result = cli("check", omni_checkpoint, "--device", "cuda", "--json", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["algorithm"] == "xxh3-128" and report["options"]["device"] == "cuda"


def test_the_pre_fix_path_under_stress_fails_on_one_gpu_because_vllm_streams_to_the_cpu(cli, omni_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    # Not distributed: vLLM streams into the CPU ring and copies to the GPU afterwards, so the pre-fix
    # lists of references go stale in the ring exactly as on a CPU-only machine.
    result = cli("check", omni_checkpoint, "--device", "cuda", "--vllm", "0.20", "--stress")
    assert result.exit_code == 1, result.output


two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")


@two_gpus
def test_distributed_on_two_gpus_verifies_with_a_device_digest(cli, omni_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.json"
    result = cli("check", omni_checkpoint, "--nproc", "2", "--device", "cuda", "--json", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["algorithm"] == "lin128" and report["ranks"] == {"0": True, "1": True}


@two_gpus
def test_distributed_on_two_gpus_the_pre_fix_path_under_stress_fails_on_every_rank(cli, omni_checkpoint: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "r.json"
    result = cli("check", omni_checkpoint, "--nproc", "2", "--device", "cuda", "--vllm", "0.20", "--stress", "--json", str(out))
    assert result.exit_code == 1, result.output
    assert json.loads(out.read_text())["ranks"] == {"0": False, "1": False}


def test_a_host_digest_on_cuda_copies_back_and_verifies(cli, vl_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    assert cli("check", vl_checkpoint, "--device", "cuda:0", "--algorithm", "xxh3-128").exit_code == 0


def test_a_device_that_does_not_exist_is_a_usage_error(cli, vl_checkpoint: str) -> None:  # type: ignore[no-untyped-def]
    assert cli("check", vl_checkpoint, "--device", f"cuda:{torch.cuda.device_count()}").exit_code == 2
