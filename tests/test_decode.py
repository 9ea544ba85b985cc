"""decode.py, the rollout loop that prefills each distinct prompt once and drops finished rows, on the tiny model.

Covers: greedy completions identical to transformers' `generate` (duplicated prompts of different lengths,
with and without a repetition penalty, and through a LoRA inference copy); top-k 1 sampling is greedy; the
first sampled token follows the tempered softmax; EOS cut and kept, nothing past max_new_tokens; a setting the
loop does not implement falls back to `generate`; seeded sampling repeats; per-token log-probabilities of the
bf16 path against fp32 within a stated tolerance.
"""

from __future__ import annotations

import pytest
import torch

from grpo_math.models import decode as decode_mod
from grpo_math.models import rollout
from grpo_math.models.decode import decode, logits_processors, unsupported
from grpo_math.models.tiny import build_model, build_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return build_model(tok, seed=0).eval()


@pytest.fixture(scope="module")
def demo():
    """The demo's warm-started tiny model: it answers and stops, so rows end at different steps."""
    from transformers import AutoModelForCausalLM

    from grpo_math.models.warm_start import SHIPPED

    return AutoModelForCausalLM.from_pretrained(SHIPPED, dtype=torch.float32).eval()


def prompts(tok, n: int = 4, repeat: int = 3) -> list[list[int]]:
    """`n` chat prompts of different lengths, each `repeat` times in a row (a GRPO batch's groups)."""
    out = []
    for i in range(n):
        msgs = [{"role": "user", "content": "What is 3 + 4?" + " Think." * (2 * i)}]
        ids = list(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)
                   ["input_ids"])
        out += [ids] * repeat
    return out


def config(tok, **extra):
    return rollout.generation_config_for(max_new_tokens=extra.pop("max_new_tokens", 24),
                                         eos_token_ids=[tok.eos_token_id], pad_token_id=tok.pad_token_id, **extra)


def plain(model, prompt_ids, cfg, **kw):
    return rollout.generate_with_config(model, prompt_ids, cfg, compact=False, **kw)


def arithmetic(tok, repeat: int = 3) -> list[list[int]]:
    """Demo-style questions of different lengths, each `repeat` times."""
    out = []
    for q in ["What is 3 + 4?", "What is 12 - 5?", "Tom has 7 apples and eats 2. How many are left?", "What is 9+9?"]:
        ids = list(tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                           tokenize=True, return_dict=True)["input_ids"])
        out += [ids] * repeat
    return out


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_completions_equal_generate(demo, tok, penalty):
    cfg = config(tok, repetition_penalty=penalty, max_new_tokens=48)
    batch = arithmetic(tok)
    ours = rollout.generate_with_config(demo, batch, cfg)
    assert ours == plain(demo, batch, cfg)
    assert len({len(c) for c in ours}) > 1 and tok.eos_token_id in ours[0]  # rows ended at different steps


def test_greedy_through_a_lora_inference_copy_equals_generate(tok):
    from peft import LoraConfig, get_peft_model

    peft = get_peft_model(build_model(tok, seed=1), LoraConfig(task_type="CAUSAL_LM", target_modules="all-linear",
                                                               init_lora_weights=False))
    copy = rollout.InferenceCopy(peft)
    cfg = config(tok)
    assert copy.generate(prompts(tok, 3, 2), cfg) == plain(copy.model, prompts(tok, 3, 2), cfg)


def test_completions_end_at_their_first_eos_or_the_length_limit(model, tok):
    eos = tok.eos_token_id
    out = decode(model, prompts(tok, 3, 4), config(tok, temperature=1.5, max_new_tokens=10))
    assert len(out) == 12
    for c in out:
        assert 1 <= len(c) <= 10
        assert eos not in c[:-1]  # an EOS only as the last token (kept, as TRL keeps it)


def test_top_k_one_sampling_is_greedy(model, tok):
    batch = prompts(tok)
    assert decode(model, batch, config(tok, temperature=0.7, top_k=1)) == plain(model, batch, config(tok))


def test_first_token_follows_the_tempered_softmax(model, tok):
    (prompt,) = prompts(tok, 1, 1)
    cfg = config(tok, temperature=2.0, max_new_tokens=1)
    torch.manual_seed(0)
    n = 4000
    first = torch.tensor([c[0] for c in decode(model, [prompt] * n, cfg)])
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([prompt])).logits[0, -1].float() / 2.0, dim=-1)
    seen = torch.bincount(first, minlength=probs.numel()).float() / n
    top = probs.topk(5).indices
    assert (seen[top] - probs[top]).abs().max() < 0.03, (seen[top], probs[top])


def test_seeded_sampling_repeats(model, tok):
    cfg = config(tok, temperature=1.0)
    batch = prompts(tok)
    assert rollout.generate_with_config(model, batch, cfg, seed=3) == rollout.generate_with_config(model, batch, cfg,
                                                                                                   seed=3)


def test_a_setting_the_loop_lacks_falls_back_to_generate(model, tok, monkeypatch):
    cfg = config(tok, max_new_tokens=8)
    cfg.min_new_tokens = 8
    assert unsupported(model, cfg) == "min_new_tokens=8"
    monkeypatch.setattr(rollout, "decode", lambda *a, **k: pytest.fail("decode ran with min_new_tokens set"))
    out = rollout.generate_with_config(model, prompts(tok, 2, 1), cfg)
    assert [len(c) for c in out] == [8, 8]


def test_settings_merge_as_generate_does(model, tok):
    """None falls back to the model's generation_config, then transformers' default (top_k 50); top_k 0 is off."""
    cfg = config(tok, temperature=0.9)
    cfg.top_k = None
    names = [type(p).__name__ for p in logits_processors(model, cfg)[0]]
    assert names == ["TemperatureLogitsWarper", "TopKLogitsWarper"]
    cfg.top_k = 0
    assert [type(p).__name__ for p in logits_processors(model, cfg)[0]] == ["TemperatureLogitsWarper"]
    assert decode_mod.DEFAULTS["top_k"] == 50


def test_bf16_log_probabilities_stay_close_to_fp32(tok):
    """The bf16 path (CPUs with native bf16): a completion's per-token log-probabilities under bf16 autocast over
    the bf16 model, as the loss pass computes them, within 0.05 nats of fp32's."""
    model = build_model(tok, seed=0).eval()
    batch = prompts(tok, 2, 1)
    completion = plain(model, batch[:1], config(tok, max_new_tokens=16))[0]
    ids = torch.tensor([batch[0] + completion])
    n = len(completion)

    def logps(m, autocast):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            lp = torch.log_softmax(m(ids).logits[0, -n - 1:-1].float(), dim=-1)
        return lp.gather(-1, ids[0, -n:, None]).squeeze(-1)

    fp32 = logps(model, False)
    bf16 = logps(build_model(tok, seed=0).eval().to(torch.bfloat16), True)
    assert (bf16 - fp32).abs().max() < 0.05, (bf16 - fp32).abs().max()
