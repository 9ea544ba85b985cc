"""Divergence: non-finite losses, gradients, weights and logits, found where they start and named in one line.

    python main.py --demo --learning_rate 1000     # "training diverged at step 3: the gradient norm is nan; ..."

A learning rate a thousand times too high makes the gradient norm NaN a few steps in; the optimizer then writes
NaN into every weight, the next save publishes them as a complete checkpoint, and sampling dies with torch's
"probability tensor contains inf, nan". Here instead: trainer.py stops at the first non-finite loss or gradient
(before the optimizer step, so the weights in memory stay those of the last good step) with a line naming
the step and what to lower; no checkpoint or final/ is written from non-finite weights; `--resume_from_checkpoint
latest` skips a checkpoint whose weights are not finite (an older version's), and a model whose weights are not
finite is named as such when it loads. Reading a checkpoint's values needs no torch (numpy on the safetensors
bytes), so checkpoints.py stays light. Left out on purpose: automatic recovery (lowering the rate, skipping the
batch): the user decides.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

_CHUNK = 1 << 24  # elements read at a time: a large shard never sits in memory whole

# safetensors dtypes, as (unsigned view, exponent mask): a float is inf or NaN when every exponent bit is set
_FLOATS = {"F64": (np.uint64, 0x7FF0000000000000), "F32": (np.uint32, 0x7F800000), "F16": (np.uint16, 0x7C00),
           "BF16": (np.uint16, 0x7F80)}


class Diverged(RuntimeError):
    """Training produced a non-finite loss, gradient, weight or logit; the message is one line."""


def what_to_lower(learning_rate: float) -> str:
    return (f"lower --learning_rate (now {learning_rate:g}; LoRA runs use ~1e-5, full fine-tuning ~1e-6), or "
            "--max_grad_norm")


def safetensors_nonfinite(path: Path) -> str | None:
    """The name of the first tensor in the .safetensors file `path` holding inf or NaN, or None. The caller has
    checked the file is whole (checkpoints.weights_problem)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n) if path.stat().st_size > 8 + n else None
    for name, info in header.items():
        if name == "__metadata__" or info.get("dtype") not in _FLOATS or data is None:
            continue
        view, mask = _FLOATS[info["dtype"]]
        start, end = (int(x) for x in info["data_offsets"])
        values = data[start:end].view(view)
        for i in range(0, len(values), _CHUNK):
            if ((values[i:i + _CHUNK] & view(mask)) == view(mask)).any():
                return name
    return None


def checkpoint_nonfinite(ckpt: Path) -> str | None:
    """Why the weights of `ckpt` cannot be trusted (a tensor holding inf or NaN), or None. Safetensors files only
    (this tool writes nothing else)."""
    files = sorted(p for p in ckpt.glob("*.safetensors") if p.is_file())
    for f in files:
        try:
            name = safetensors_nonfinite(f)
        except (OSError, ValueError, KeyError, TypeError, struct.error):
            continue  # unreadable: weights_problem's to report
        if name:
            return f"its weights are not finite ({name} in {f.name} holds inf or NaN: the run had diverged)"
    return None


def nonfinite_parameter(model: Any, trainable_only: bool = False) -> str | None:
    """The name of the first parameter of `model` holding inf or NaN, or None; one device sync in all."""
    import torch

    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad or not trainable_only]
    named = [(n, p) for n, p in named if p.is_floating_point() and p.numel()]
    if not named:
        return None
    with torch.no_grad():
        ok = torch.stack([torch.isfinite(p).all().to("cpu", non_blocking=True) for _, p in named])
    if bool(ok.all()):
        return None
    return named[int((~ok).nonzero()[0])][0]


def nonfinite_gradient(model: Any) -> bool:
    """Whether any gradient of `model` holds inf or NaN (after clipping: a NaN norm makes every one NaN)."""
    import torch

    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return False
    with torch.no_grad():
        return not bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def is_nonfinite_sampling(e: BaseException) -> bool:
    """Whether `e` is torch's refusal to sample from non-finite probabilities (logits that were inf or NaN)."""
    text = str(e)
    return isinstance(e, RuntimeError) and "probability tensor contains" in text
