"""Device and dtype choice (CUDA, MPS, CPU), shared by training, eval and inference.

`auto` picks CUDA, then Apple's MPS, then CPU, and the dtype each trains well in:

| device | auto dtype | why |
|---|---|---|
| CUDA, bf16-capable (Ampere+) | bf16 | same range as fp32, no loss scaling |
| CUDA, older | fp16 | with mixed precision and loss scaling |
| MPS | fp32 | bf16/fp16 training on MPS still produces NaNs on some macOS/torch pairs; fp32 is stable |
| CPU with native bf16 (x86 `avx512_bf16`/`amx_bf16`, Arm `bf16`) | bf16 | about 2x fp32's matmul rate (`cpu_has_native_bf16`) |
| CPU, other | fp32 | without the instructions bf16 is emulated, slower than fp32 |

bf16 on CPU is mixed precision, as on a GPU: the frozen base of a LoRA run is held in bf16, trainable weights
(LoRA adapters, or a fully fine-tuned model) stay fp32 masters, and the forward and backward run under bf16
autocast (TRL's own `bf16=True`).

An explicit `--device cuda` on a machine without CUDA is an error naming the flag, never a silent fallback.
More than one visible GPU in a single process trains on the first and says how to use all of them.
The `--device`/`--dtype` flags that main.py, eval.py and inference.py share are `grpo_math.cli`'s (no torch).
Left out on purpose: XPU/NPU/TPU back ends (untested here), and multi-GPU launch itself (that is
`accelerate launch` / `torchrun`, which set the process rank this module respects).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from grpo_math.config import DEVICES

logger = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}  # config.DTYPES but "auto"


class DeviceError(ValueError):
    """A requested device or dtype this machine cannot honour."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def world_size() -> int:
    """Processes in this launch: `WORLD_SIZE`, set by `accelerate launch` and `torchrun`; 1 for a plain run."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_world_size() -> int:
    """Processes of this launch on this machine: `LOCAL_WORLD_SIZE` (torchrun, accelerate launch); 1 otherwise."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in a single process, and in rank 0 of a distributed launch (the one that writes shared files)."""
    return int(os.environ.get("RANK", "0")) == 0


def resolve_device(requested: str = "auto") -> str:
    """The device to use, as `cuda`, `mps` or `cpu`; raises DeviceError if `requested` is not available."""
    if requested not in DEVICES:
        raise DeviceError(f"--device {requested!r} is not one of {', '.join(DEVICES)}")
    cuda, mps = torch.cuda.is_available(), _mps_available()
    if requested == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cuda" and not cuda:
        raise DeviceError("--device cuda: no CUDA GPU is visible to torch here; try --device auto or --device cpu")
    if requested == "mps" and not mps:
        raise DeviceError("--device mps: Apple MPS is not available here; try --device auto or --device cpu")
    return requested


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively: /proc/cpuinfo lists `avx512_bf16` or `amx_bf16` (x86) or `bf16`
    (Arm). False where that file is absent (macOS, Windows): fp32 stays the safe choice there."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read(1 << 20)
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(value.split()))
    return False


def resolve_dtype(device: str, requested: str = "auto") -> torch.dtype:
    """The compute dtype for `device`; `requested` is one of auto, bf16, fp16, fp32."""
    if requested != "auto" and requested not in DTYPES:
        raise DeviceError(f"--dtype {requested!r} is not one of auto, {', '.join(DTYPES)}")
    if requested == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device == "cpu" and cpu_has_native_bf16():
            return torch.bfloat16
        return torch.float32
    dtype = DTYPES[requested]
    if device == "cpu" and dtype == torch.float16:
        raise DeviceError("--dtype fp16 is not supported on CPU; use --dtype fp32 (or bf16)")
    if device == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise DeviceError("--dtype bf16: this GPU does not support bf16; use --dtype fp16 or --dtype auto")
    return dtype


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


@dataclass(frozen=True)
class Placement:
    """Where a run computes: the device, the compute dtype, and the trainer flags that go with them."""

    device: str
    dtype: torch.dtype

    @property
    def trainer_flags(self) -> dict:
        """TrainingArguments precision/device flags. TRL defaults to bf16=True, which fails on CPU."""
        return {
            "bf16": self.dtype == torch.bfloat16,
            "fp16": self.dtype == torch.float16,
            "use_cpu": self.device == "cpu",
        }

    def load_dtype(self, full_finetune: bool) -> torch.dtype:
        """The dtype model weights are loaded in.

        fp16 full fine-tuning keeps fp32 master weights (the AMP grad scaler cannot unscale fp16
        gradients), and so does bf16 full fine-tuning on CPU (autocast computes in bf16); with LoRA the frozen
        base can be half precision because PEFT keeps adapters in fp32.
        """
        if full_finetune and (self.dtype == torch.float16 or (self.dtype == torch.bfloat16 and self.device == "cpu")):
            return torch.float32
        return self.dtype


def resolve_placement(device: str = "auto", dtype: str = "auto") -> Placement:
    """Resolve `--device` and `--dtype` together, and warn when GPUs would sit idle."""
    dev = resolve_device(device)
    placement = Placement(dev, resolve_dtype(dev, dtype))
    if dev == "cuda" and world_size() == 1 and torch.cuda.device_count() > 1:
        n = torch.cuda.device_count()
        logger.warning(
            "%d GPUs are visible but this is one process: training uses cuda:0 only. To use all of them: "
            "accelerate launch --num_processes %d main.py ...  (see configs/accelerate/)",
            n,
            n,
        )
    return placement
