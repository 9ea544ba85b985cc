"""Device and dtype selection, with CUDA/MPS availability mocked; what a launch (accelerate's sharding, processes
per GPU) allows, from its environment."""

from __future__ import annotations

import re

import pytest
import torch

from grpo_math.runtime import devices
from grpo_math.runtime.devices import DeviceError, Placement, resolve_device, resolve_dtype, resolve_placement
from grpo_math.runtime.launch import sharding


@pytest.fixture
def machine(monkeypatch):
    """Set what the 'machine' has: machine(cuda=True, mps=False, bf16=True, n_gpu=1)."""

    def set_(cuda=False, mps=False, bf16=True, n_gpu=1):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: n_gpu if cuda else 0)
        monkeypatch.setattr(devices, "_mps_available", lambda: mps)
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda *a: bf16)  # bf16: the GPU's, or the CPU's
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
        ("cpu", True, torch.bfloat16),  # native bf16 (avx512_bf16, amx_bf16, Arm bf16): about 2x fp32
        ("cpu", False, torch.float32),  # emulated bf16 would be slower than fp32
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


X86_BF16 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n"
X86_OLD = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize("cpuinfo, native", [(X86_BF16, True), (X86_OLD, False), (ARM_BF16, True), ("", False),
                                             ("model name\t: avx512_bf16 in a name\n", False)])
def test_native_bf16_is_read_from_the_cpu_flags(cpuinfo, native):
    assert devices.cpu_has_native_bf16(cpuinfo) is native


def test_cpu_bf16_keeps_fp32_master_weights_for_full_finetuning():
    p = Placement("cpu", torch.bfloat16)
    assert p.trainer_flags == {"bf16": True, "fp16": False, "use_cpu": True}  # TRL's autocast
    assert p.load_dtype(full_finetune=True) == torch.float32
    assert p.load_dtype(full_finetune=False) == torch.bfloat16  # the frozen LoRA base; adapters stay fp32


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


# ----------------------------------------------------------------------------------------- the launch (issue 14)


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, None),  # a plain run, torchrun, accelerate's DDP
        ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, None),  # ZeRO-2: whole weights
        ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, "DeepSpeed ZeRO-3"),
        ({"ACCELERATE_USE_DEEPSPEED": "false", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, None),  # not in use
        ({"ACCELERATE_USE_FSDP": "True"}, "FSDP"),
    ],
)
def test_sharding_is_read_from_what_accelerate_launch_sets(env, expected):
    assert sharding(env) == expected


def test_a_deepspeed_json_names_the_stage_when_the_accelerate_config_does_not(tmp_path):
    ds = tmp_path / "ds.json"
    ds.write_text('{"zero_optimization": {"stage": 3}}')
    assert sharding({"ACCELERATE_USE_DEEPSPEED": "1", "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(ds)}) == "DeepSpeed ZeRO-3"
    ds.write_text('{"zero_optimization": {"stage": 2}}')
    assert sharding({"ACCELERATE_USE_DEEPSPEED": "1", "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(ds)}) is None


@pytest.mark.parametrize(
    "env, argv, message",
    [
        ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, ["--fast_generation", "on"],
         "--fast_generation on: this accelerate launch shards the weights (DeepSpeed ZeRO-3)"),
        ({"ACCELERATE_USE_FSDP": "true"}, ["--fast_generation", "on"], "shards the weights (FSDP)"),
        ({"ACCELERATE_USE_FSDP": "true"}, ["--merge"], "--merge: this accelerate launch shards the weights (FSDP)"),
    ],
)
def test_what_a_sharded_launch_cannot_do_is_one_line_before_loading(env, argv, message, monkeypatch, tmp_path):
    from main import parse_args

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        parse_args(["--demo", "--output_dir", str(tmp_path / "run"), *argv])
    assert "\n" not in str(e.value)
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    parse_args(["--demo", "--output_dir", str(tmp_path / "run"), *argv])  # fine under DDP or one process


def test_more_processes_than_gpus_on_a_machine_is_refused(machine, monkeypatch, tmp_path):
    from main import parse_args

    machine(cuda=True, n_gpu=1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    argv = ["--demo", "--device", "cuda", "--dtype", "fp32", "--output_dir", str(tmp_path / "run")]
    with pytest.raises(ValueError, match=r"2 processes on this machine but 1 GPU\(s\) visible.*--num_processes 1"):
        parse_args(argv)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")  # two machines, one GPU and one process each
    assert parse_args(argv).placement.device == "cuda"
