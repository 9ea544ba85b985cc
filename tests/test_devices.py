"""Device and dtype selection, with CUDA/MPS availability mocked."""

from __future__ import annotations

import pytest
import torch

from grpo_math import devices
from grpo_math.devices import DeviceError, Placement, resolve_device, resolve_dtype, resolve_placement


@pytest.fixture
def machine(monkeypatch):
    """Set what the 'machine' has: machine(cuda=True, mps=False, bf16=True, n_gpu=1)."""

    def set_(cuda=False, mps=False, bf16=True, n_gpu=1):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n_gpu if cuda else 0)
        monkeypatch.setattr(devices, "_mps_available", lambda: mps)
        monkeypatch.delenv("WORLD_SIZE", raising=False)

    return set_


@pytest.mark.parametrize(
    "cuda, mps, expected",
    [
        (True, True, "cuda"),  # CUDA wins over MPS
        (False, True, "mps"),  # a Mac
        (False, False, "cpu"),  # nothing else
    ],
)
def test_auto_device_order(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert resolve_device("auto") == expected


def test_explicit_cuda_without_cuda_names_the_flag(machine):
    machine(cuda=False)
    with pytest.raises(DeviceError, match="--device cuda"):
        resolve_device("cuda")


def test_explicit_mps_without_mps_names_the_flag(machine):
    machine(mps=False)
    with pytest.raises(DeviceError, match="--device mps"):
        resolve_device("mps")


def test_unknown_device_is_rejected(machine):
    machine()
    with pytest.raises(DeviceError, match="tpu"):
        resolve_device("tpu")


@pytest.mark.parametrize(
    "device, bf16, expected",
    [
        ("cuda", True, torch.bfloat16),  # Ampere and newer
        ("cuda", False, torch.float16),  # V100, T4
        ("mps", True, torch.float32),  # stable on every macOS/torch pair
        ("cpu", True, torch.float32),  # CPU half precision is slow and TRL's bf16 default fails there
    ],
)
def test_auto_dtype(machine, device, bf16, expected):
    machine(cuda=device == "cuda", mps=device == "mps", bf16=bf16)
    assert resolve_dtype(device, "auto") == expected


def test_explicit_dtypes_and_their_limits(machine):
    machine(cuda=True, bf16=False)
    assert resolve_dtype("cpu", "fp32") == torch.float32
    with pytest.raises(DeviceError, match="--dtype fp16"):
        resolve_dtype("cpu", "fp16")
    with pytest.raises(DeviceError, match="--dtype bf16"):
        resolve_dtype("cuda", "bf16")  # pre-Ampere GPU
    with pytest.raises(DeviceError, match="'float8'"):
        resolve_dtype("cpu", "float8")  # a misspelt dtype must not quietly become bf16


def test_trainer_flags_match_placement():
    assert Placement("cpu", torch.float32).trainer_flags == {"bf16": False, "fp16": False, "use_cpu": True}
    assert Placement("cuda", torch.bfloat16).trainer_flags == {"bf16": True, "fp16": False, "use_cpu": False}
    assert Placement("cuda", torch.float16).trainer_flags == {"bf16": False, "fp16": True, "use_cpu": False}


def test_fp16_full_finetune_keeps_fp32_master_weights():
    p = Placement("cuda", torch.float16)
    assert p.load_dtype(full_finetune=True) == torch.float32
    assert p.load_dtype(full_finetune=False) == torch.float16


def test_several_gpus_in_one_process_warn_with_the_launch_command(machine, caplog):
    machine(cuda=True, n_gpu=4)
    with caplog.at_level("WARNING"):
        placement = resolve_placement("auto", "auto")
    assert placement.device == "cuda"
    assert "accelerate launch --num_processes 4" in caplog.text


def test_distributed_launch_does_not_warn(machine, monkeypatch, caplog):
    machine(cuda=True, n_gpu=4)
    monkeypatch.setenv("WORLD_SIZE", "4")
    with caplog.at_level("WARNING"):
        resolve_placement("auto", "auto")
    assert "accelerate launch" not in caplog.text
