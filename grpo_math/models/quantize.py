"""QLoRA: the base model in 4 bits (NF4, double quantisation) through bitsandbytes, LoRA trained on top.

    python main.py --demo --load_in_4bit          # the tiny model, 4-bit, on CPU (bitsandbytes >= 0.49 runs there)

`check_device` runs with the other checks before anything loads; `quantization_config` is what model_io.py
passes to `from_pretrained`; `prepare_for_training` is PEFT's `prepare_model_for_kbit_training` plus one
CPU fix (below). The LoRA adapter itself stays in full precision, and `--merge` reloads the base unquantised
(train.py), so a merged model is not rounded through 4 bits.

Devices: bitsandbytes 0.50 registers 4-bit kernels for CUDA, CPU (its pure-PyTorch and AVX-512 ones), MPS
and XPU. This tool places models on CUDA, MPS or CPU, so 4-bit is refused only where bitsandbytes is missing
or its CUDA library did not load. MPS is allowed because bitsandbytes supports it, untested here.

The CPU fix: on a CPU with AVX512-BF16, bitsandbytes 0.50 repacks a 4-bit layer's weight *in place* into an
inference-only layout the first time the layer runs in eval mode without gradients (a rollout, the accuracy
eval). That layout has no backward pass (LoRA layers below it would get no gradient in the next training
step) and it fails on layers whose input width is not a multiple of the 64-weight block (the tiny model's
96). Training therefore turns that repacking off on every 4-bit layer.
Left out on purpose: 8-bit loading, FP4, and 4-bit full fine-tuning (bitsandbytes weights take no gradient).
"""

from __future__ import annotations

import importlib.util
import logging

import torch

from grpo_math.config import UsageError

logger = logging.getLogger(__name__)

QUANT_TYPE = "nf4"  # the QLoRA paper's data type: quantiles of a normal distribution, as trained weights are


def check_device(device: str) -> None:
    """Raise UsageError naming --load_in_4bit and the device when bitsandbytes cannot run 4-bit there."""
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UsageError("--load_in_4bit: bitsandbytes is not installed here; pip install bitsandbytes "
                         "(requirements.txt pins it), or drop --load_in_4bit")
    if device == "cuda":
        import bitsandbytes  # noqa: F401 - loads its CUDA library, or falls back to CPU-only with a warning
        from bitsandbytes.cextension import ErrorHandlerMockBNBNativeLibrary, lib

        if isinstance(lib, ErrorHandlerMockBNBNativeLibrary):
            raise UsageError("--load_in_4bit --device cuda: bitsandbytes found no CUDA library for this GPU "
                             "(python -m bitsandbytes says why); reinstall it for your CUDA, or drop --load_in_4bit")
    elif device not in ("cpu", "mps"):
        raise UsageError(f"--load_in_4bit: bitsandbytes cannot run 4-bit on device {device}; use cuda or cpu")


def quantization_config(compute_dtype: torch.dtype):
    """transformers' BitsAndBytesConfig: NF4 weights, double quantisation, matmuls in `compute_dtype`."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=QUANT_TYPE,
        bnb_4bit_use_double_quant=True,  # quantises the block scales too: ~0.4 bit per weight saved
        bnb_4bit_compute_dtype=compute_dtype,
    )


def is_4bit(model: torch.nn.Module) -> bool:
    """Whether `model` (a transformers model, or a PEFT model around one) holds bitsandbytes 4-bit layers."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base, "is_loaded_in_4bit", False))


def prepare_for_training(model: torch.nn.Module, gradient_checkpointing: bool) -> torch.nn.Module:
    """PEFT's k-bit preparation (norms and embeddings in fp32, input gradients for checkpointing), and the
    CPU repacking turned off on every 4-bit layer (see the module docstring)."""
    from bitsandbytes.nn import Linear4bit
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    n = 0
    for module in model.modules():
        if isinstance(module, Linear4bit):
            module.support_avx512bf16_for_cpu = False
            n += 1
    logger.info("4-bit base: %d layers in %s with double quantisation", n, QUANT_TYPE.upper())
    return model
