"""The loss pass's LoRA layers under mixed precision: their inputs used as they come, not copied to fp32 and back.

PEFT casts each LoRA layer's input to the adapter's dtype before `lora_A` (`cast_input_dtype_enabled`). With
fp32 adapters (the master weights) over a bf16 or fp16 base under autocast, that makes an fp32 copy of the input
and autocast casts the copy straight back for the matmul: a second bf16 copy of an input the base layer already
keeps, kept for the backward once per LoRA layer. The round trip is exact (bf16 -> fp32 -> bf16 gives the same
bits), so under autocast skipping the cast changes no number (tests/test_lora_inputs.py: the same loss and
gradients, bit for bit). For SmolLM2-135M with LoRA on all seven linear layers that is about 10 KB per token
per layer; `bench/throughput.py --shape smollm2 --arms project`'s peak memory fell from 2.91 to 2.57 GiB in
micro-batches of 8 completions; in one batch of 32 it is 6.6 GiB, under stock TRL's 6.96 with checkpointing.
Without autocast nothing changes: the cast is then needed (or a no-op) and PEFT keeps it; DoRA and PEFT's other
LoRA variants keep it too (they use the input outside the autocast matmuls, where its dtype could matter).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def uncast_lora_inputs(model: torch.nn.Module, mixed_precision: str) -> Iterator[None]:
    """PEFT's `disable_input_dtype_casting` over `model` while `mixed_precision` ("bf16", "fp16", "no": the
    accelerator's setting, whose autocast wraps the model's forward) is on and no layer is a LoRA variant (DoRA);
    a no-op otherwise."""
    if mixed_precision not in ("bf16", "fp16") or any(getattr(m, "lora_variant", None) for m in model.modules()):
        yield
        return
    from peft.helpers import disable_input_dtype_casting

    with disable_input_dtype_casting(model):
        yield
