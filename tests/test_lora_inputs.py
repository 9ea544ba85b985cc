"""lora_inputs.uncast_lora_inputs: under autocast, the same loss and gradient bit for bit, less kept for the backward.

Covers: a bf16 base with fp32 LoRA adapters under bf16 autocast gives the identical loss and adapter gradients
with PEFT's input cast skipped, and keeps fewer bytes for the backward; without mixed precision PEFT's cast
stays on; PEFT's setting is restored afterwards; FastGRPOTrainer's loss pass uses it.
"""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer

from grpo_math.models.tiny import build_model, build_tokenizer
from grpo_math.training.lora_inputs import uncast_lora_inputs
from grpo_math.training.trainer import FastGRPOTrainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def lora_model():
    tok = build_tokenizer()
    model = build_model(tok, seed=0).to(torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0,
                                             init_lora_weights=False))  # B != 0: the adapters change the output
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()  # fp32 masters, as train.py keeps them
    ids = torch.randint(3, len(tok), (4, 24), generator=torch.Generator().manual_seed(0))
    return model, ids


def loss_grads_and_saved_bytes(model, ids, mixed_precision: str):
    model.zero_grad()
    saved = {}  # storage -> bytes: a tensor kept by several ops is held once

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), uncast_lora_inputs(model, mixed_precision):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
    return loss.detach(), grads, sum(saved.values())


def test_under_autocast_the_loss_and_gradients_are_identical_and_less_is_kept():
    model, ids = lora_model()
    loss, grads, kept = loss_grads_and_saved_bytes(model, ids, "no")  # PEFT as it comes
    loss_u, grads_u, kept_u = loss_grads_and_saved_bytes(model, ids, "bf16")
    assert grads and all(g.dtype == torch.float32 for g in grads)
    assert torch.equal(loss, loss_u)
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_u))
    assert kept_u < 0.95 * kept, (kept_u, kept)  # one bf16 copy of the input per LoRA layer fewer


def test_without_mixed_precision_peft_keeps_its_cast_and_the_setting_is_restored():
    model, _ = lora_model()
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    with uncast_lora_inputs(model, "no"):
        assert all(m.cast_input_dtype_enabled for m in layers)
    with pytest.raises(RuntimeError), uncast_lora_inputs(model, "bf16"):
        assert not any(m.cast_input_dtype_enabled for m in layers)
        raise RuntimeError("boom")
    assert all(m.cast_input_dtype_enabled for m in layers)


def test_the_fast_trainer_loss_pass_uses_it(monkeypatch):
    from trl import GRPOTrainer

    model, _ = lora_model()
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    seen = []
    monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies",
                        lambda self, *a, **k: seen.append([m.cast_input_dtype_enabled for m in layers]))
    trainer = FastGRPOTrainer.__new__(FastGRPOTrainer)
    trainer.model = model
    trainer.accelerator = type("A", (), {"device": torch.device("cpu"), "mixed_precision": "bf16"})()
    trainer._get_per_token_logps_and_entropies(model, None, None, 1)
    assert seen and not any(seen[0])
    assert all(m.cast_input_dtype_enabled for m in layers)


def test_dora_keeps_peft_s_cast():
    tok = build_tokenizer()
    model = get_peft_model(build_model(tok, seed=0), LoraConfig(r=4, target_modules="all-linear", use_dora=True))
    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    with uncast_lora_inputs(model, "bf16"):
        assert all(m.cast_input_dtype_enabled for m in layers)
