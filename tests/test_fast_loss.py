"""trainer.eager_lm_head: TRL's fused LM head on labelled positions only, in small tiles, gives TRL's numbers.

Covers: on a fixed batch (left padding, prompt positions unlabelled, completions of different lengths) the
per-token log-probabilities, entropies, the loss and its gradient match TRL's own settings within float
rounding, in fp32 and under bf16 autocast; TRL's module settings are restored afterwards, also after an error;
FastGRPOTrainer's loss pass uses it.
"""

from __future__ import annotations

import pytest
import torch
from trl.kernels import chunked_logprob
from trl.trainer import utils as trl_utils

from grpo_math.models.tiny import build_model, build_tokenizer
from grpo_math.training.trainer import TRL_TILE, FastGRPOTrainer, eager_lm_head

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def batch(vocab: int):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (4, 30), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding
    mask[2, 25:] = 0  # a completion that ended early
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :12] = -100  # the prompt is not scored
    return ids, mask, labels


def scores(model, ids, mask, labels, autocast: bool):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    out.loss.backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return out.log_probs.detach(), out.entropy.detach(), out.loss.detach(), grad


@pytest.mark.parametrize("autocast", [False, True])
def test_log_probabilities_loss_and_gradient_match_trl(autocast):
    tok = build_tokenizer()
    model = build_model(tok, seed=0)
    trl_utils.add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))
    ids, mask, labels = batch(len(tok))
    want = scores(model, ids, mask, labels, autocast)
    with eager_lm_head(torch.device("cpu")):
        assert trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE != TRL_TILE[1]  # the settings really changed
        got = scores(model, ids, mask, labels, autocast)
    tol = 2e-2 if autocast else 1e-5
    for w, g in zip(want, got):
        assert torch.allclose(w, g, atol=tol, rtol=tol), (w - g).abs().max()
    assert (got[0][labels[:, 1:] == -100] == 0).all()  # unlabelled positions are 0, as in TRL


def test_trl_settings_are_restored_also_after_an_error():
    before = trl_utils._use_triton, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE, chunked_logprob.TOKEN_CHUNK_SIZE
    with pytest.raises(RuntimeError), eager_lm_head(torch.device("cpu")):
        raise RuntimeError("boom")
    assert (trl_utils._use_triton, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE, chunked_logprob.TOKEN_CHUNK_SIZE) == before
    assert (chunked_logprob.TOKEN_CHUNK_SIZE, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE) == TRL_TILE
    with eager_lm_head(torch.device("cuda")):  # a no-op where TRL's own choice is right
        assert trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE == TRL_TILE[1]


def test_the_fast_trainer_scores_with_it(monkeypatch):
    from trl import GRPOTrainer

    seen = []
    monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies",
                        lambda self, *a, **k: seen.append(trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE))
    trainer = FastGRPOTrainer.__new__(FastGRPOTrainer)
    trainer.model = torch.nn.Linear(1, 1)
    trainer.accelerator = type("A", (), {"device": torch.device("cpu"), "mixed_precision": "no"})()
    trainer._get_per_token_logps_and_entropies(None, None, None, 1)
    assert seen == [4096]
