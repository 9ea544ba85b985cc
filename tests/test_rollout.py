"""rollout.py on CPU with the tiny model: generate's contract, the inference copy's sync, FastGRPOTrainer.

Covers: left padding does not change greedy completions; the static-cache path (CUDA's, run here without
compile) gives the same tokens as the plain one; EOS cut and kept; seeded sampling is repeatable and leaves the
caller's RNG alone; after optimizer steps the inference copy's logits equal the PEFT model's (LoRA, rsLoRA,
full fine-tuning, bf16 within bf16 tolerance) with weights written in place and tied embeddings kept; greedy
completions from FastGRPOTrainer equal stock GRPOTrainer's; the trainer re-syncs after each optimizer step;
GRPO still learns through the fast path. The CUDA compile itself needs a GPU: bench/throughput.py --device cuda.
"""

from __future__ import annotations

import copy

import pytest
import torch

from grpo_math.models import rollout
from grpo_math.training import trainer as fast_trainer
from grpo_math.models.rollout import InferenceCopy, cut_after_eos, generate, resolve_fast_generation
from toy_rewards import digit_share
from grpo_math.models.tiny import build_model, build_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture
def model(tok):
    return build_model(tok, seed=0).eval()


def prompts(tok, n: int = 6) -> list[list[int]]:
    """Chat prompts of different lengths, so that the batch needs left padding."""
    out = []
    for i in range(n):
        msgs = [{"role": "user", "content": "Tom has 3 apples and gets 4 more." + " How many now?" * i}]
        out.append(list(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)
                        ["input_ids"]))
    assert len({len(p) for p in out}) == n
    return out


def kw(tok, **extra):
    return {"max_new_tokens": 12, "eos_token_ids": [tok.eos_token_id], "pad_token_id": tok.pad_token_id, **extra}


def lora(model, **cfg):
    from peft import LoraConfig, get_peft_model

    cfg.setdefault("target_modules", "all-linear")
    return get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **cfg))


def train_steps(model, tok, steps: int = 3, lr: float = 1e-2) -> None:
    """A few AdamW steps on next-token loss, so that LoRA B (zero at init) and the deltas become non-zero."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    x = torch.tensor([p[:20] for p in prompts(tok, 4)])
    model.train()
    for _ in range(steps):
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def logits(model, tok) -> torch.Tensor:
    x = torch.tensor([p[:20] for p in prompts(tok, 4)])
    with torch.no_grad():
        return model(input_ids=x).logits.float()  # [4, 20, V]


# ---------------------------------------------------------------------------------------------------------------
# generate


def test_left_padding_does_not_change_greedy_completions(model, tok):
    p = prompts(tok)
    batched = generate(model, p, **kw(tok))
    one_by_one = [generate(model, [q], **kw(tok))[0] for q in p]
    assert batched == one_by_one
    assert all(0 < len(c) <= 12 for c in batched)


def test_static_cache_path_matches_plain_and_reuses_its_cache(model, tok):
    p = prompts(tok)
    plain = generate(model, p, **kw(tok), use_static_cache=False)
    static = generate(model, p, **kw(tok), use_static_cache=True)
    cache = rollout._STATIC_CACHES[model][len(p)][0]
    again = generate(model, p, **kw(tok), use_static_cache=True)  # the same cache, reset in place
    assert plain == static == again
    assert rollout._STATIC_CACHES[model][len(p)][0] is cache


@pytest.mark.slow
def test_compiled_decode_step_compiles_once_and_follows_in_place_weight_updates(model, tok):
    """The CUDA design on CPU: torch.compile (aot_eager here; inductor + CUDA graphs on a GPU) of the static-cache
    decode step, then optimizer steps and a sync, then other prompt lengths: same graph, new weights honoured."""
    import torch._dynamo
    from torch._dynamo.utils import counters
    from transformers import CompileConfig

    torch._dynamo.reset()
    counters.clear()
    peft_model = lora(model, r=8, lora_alpha=16)
    ic = InferenceCopy(peft_model)
    config = rollout.generation_config_for(**kw(tok))
    config.compile_config = CompileConfig(backend="aot_eager", mode=None)
    p = prompts(tok, 4)
    first = rollout.generate_with_config(ic.model, p, config, use_static_cache=True, compile_decode=True)
    assert counters["stats"]["unique_graphs"] == 1
    assert first == generate(peft_model, p, **kw(tok))
    train_steps(peft_model, tok)
    ic.sync()
    shorter = [q[3:] for q in p]  # new prompt lengths, same batch size: the same cache and graph
    outs = []
    for batch in (p, shorter):
        outs.append(rollout.generate_with_config(ic.model, batch, config, use_static_cache=True, compile_decode=True))
        assert outs[-1] == generate(peft_model, batch, **kw(tok))
    assert outs[0] != first  # the compiled step reads the updated weights, not a stale capture
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])  # no recompile, no new graph
    with pytest.raises(ValueError, match="needs use_static_cache"):
        rollout.generate_with_config(ic.model, p, config, use_static_cache=False, compile_decode=True)


def test_completions_are_cut_after_the_first_eos_which_is_kept(model, tok):
    table = [
        ([[5, 9, 7, 9, 1]], [9], [[5, 9]]),  # first of two EOS: cut there, EOS kept
        ([[5, 6, 7]], [9], [[5, 6, 7]]),  # no EOS: the whole row
        ([[9, 0, 0]], [8, 9], [[9]]),  # EOS first; any of several ids ends it
    ]
    for rows, eos, want in table:
        assert cut_after_eos(torch.tensor(rows), eos) == want
    # end to end: declare the token greedy decoding emits third as an EOS id
    p = prompts(tok, 2)
    free = generate(model, p, **kw(tok))
    stop = free[0][2]
    cut = generate(model, p, **kw(tok, eos_token_ids=[tok.eos_token_id, stop]))
    assert cut[0] == free[0][: free[0].index(stop) + 1]


def test_seeded_sampling_is_repeatable_and_leaves_the_global_rng_alone(model, tok):
    p = prompts(tok)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = generate(model, p, **kw(tok, temperature=1.0, top_p=0.9, top_k=50, seed=7))
    assert torch.equal(torch.get_rng_state(), before)
    b = generate(model, p, **kw(tok, temperature=1.0, top_p=0.9, top_k=50, seed=7))
    c = generate(model, p, **kw(tok, temperature=1.0, top_p=0.9, top_k=50, seed=8))
    assert a == b and a != c


def test_empty_prompt_is_an_error(model, tok):
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, [[1, 2], []], **kw(tok))


def test_auto_is_on_unless_vllm_generates():
    assert resolve_fast_generation("auto", use_vllm=False, device="cpu")
    assert resolve_fast_generation("auto", use_vllm=False, device="cuda")
    assert not resolve_fast_generation("auto", use_vllm=True, device="cuda")
    assert not resolve_fast_generation("off", use_vllm=False, device="cuda")
    with pytest.raises(ValueError, match="pick one"):
        resolve_fast_generation("on", use_vllm=True, device="cuda")
    with pytest.raises(ValueError, match="not one of"):
        resolve_fast_generation("fast", use_vllm=False, device="cpu")


# ---------------------------------------------------------------------------------------------------------------
# The inference copy


@pytest.mark.parametrize(
    "cfg",
    [
        {"r": 8, "lora_alpha": 16},  # plain LoRA
        {"r": 8, "lora_alpha": 16, "use_rslora": True, "lora_dropout": 0.3},  # rsLoRA scaling; dropout off in eval
        {"r": 4, "lora_alpha": 4, "lora_bias": True, "target_modules": ["q_proj", "k_proj", "v_proj"]},  # bias delta
    ],
    ids=["lora", "rslora_dropout", "lora_bias"],
)
def test_copy_matches_the_peft_model_after_optimizer_steps(model, tok, cfg):
    peft_model = lora(model, **cfg)
    train_steps(peft_model, tok)
    ic = InferenceCopy(peft_model)
    assert not any(p.requires_grad for p in ic.model.parameters()) and not ic.model.training
    assert ic.model.lm_head.weight is ic.model.model.embed_tokens.weight  # the tie survives the copy
    torch.testing.assert_close(logits(ic.model, tok), logits(peft_model, tok), atol=1e-5, rtol=1e-5)

    ptrs = [p.data_ptr() for p in ic.model.parameters()]
    before = logits(ic.model, tok)
    train_steps(peft_model, tok, steps=2)
    ic.sync()
    assert [p.data_ptr() for p in ic.model.parameters()] == ptrs  # written in place: CUDA graphs stay valid
    after = logits(ic.model, tok)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, logits(peft_model, tok), atol=1e-5, rtol=1e-5)
    p = prompts(tok)
    assert generate(ic.model, p, **kw(tok)) == generate(peft_model, p, **kw(tok))


def test_copy_handles_fan_in_fan_out_layers_of_another_architecture(tok):
    """GPT-2 keeps weights as [in, out] (Conv1D): the delta must be transposed, as peft's merge does."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=2, n_positions=128))
    peft_model = lora(gpt2, r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"], fan_in_fan_out=True)
    train_steps(peft_model, tok)
    ic = InferenceCopy(peft_model)
    torch.testing.assert_close(logits(ic.model, tok), logits(peft_model, tok), atol=1e-5, rtol=1e-5)


def test_sync_starts_from_the_frozen_base_every_time(model, tok):
    peft_model = lora(model, r=8, lora_alpha=16)
    train_steps(peft_model, tok)
    ic = InferenceCopy(peft_model, dtype=torch.bfloat16)
    q = peft_model.get_base_model().model.layers[0].self_attn.q_proj
    want = (q.base_layer.weight.float() + q.get_delta_weight("default").float()).to(torch.bfloat16)
    for _ in range(3):  # repeated syncs give the same bits: nothing accumulates in the copy
        ic.sync()
        assert torch.equal(ic.model.model.layers[0].self_attn.q_proj.weight, want)
    # "within dtype tolerance": against the fp32 PEFT model, the bf16 copy errs no more than the PEFT model
    # itself run in bf16 (the merged copy rounds once per weight; measured: 0.080 vs 0.085 max on logits ~7)
    exact = logits(peft_model, tok)
    copy_err = (logits(ic.model, tok) - exact).abs()
    cast_err = (logits(copy.deepcopy(peft_model).to(torch.bfloat16), tok) - exact).abs()
    assert copy_err.max() <= 1.5 * cast_err.max() and copy_err.mean() <= 1.5 * cast_err.mean()
    assert copy_err.max() > 0  # the copy really computes in bf16


def test_full_finetuning_syncs_too(model, tok):
    model.requires_grad_(True)
    ic = InferenceCopy(model)
    train_steps(model, tok, lr=1e-3)
    assert not torch.allclose(logits(ic.model, tok), logits(model, tok))
    ic.sync()
    torch.testing.assert_close(logits(ic.model, tok), logits(model, tok), atol=1e-6, rtol=1e-6)
    assert ic.model.lm_head.weight is ic.model.model.embed_tokens.weight


def test_lora_variants_are_refused_with_a_way_out(model, tok):
    peft_model = lora(model, r=4, lora_alpha=8, use_dora=True)
    with pytest.raises(rollout.UnsupportedModelError, match="fast_generation off"):
        InferenceCopy(peft_model)


# ---------------------------------------------------------------------------------------------------------------
# The trainer


def make_trainer(tok, cls, tmp_path, *, steps: int = 2, lr: float = 5e-4, full: bool = False, seed: int = 0, **extra):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig

    rows = [{"prompt": [{"role": "user", "content": f"{n} has {a} apples and gets {a + 3} more. How many?"}]}
            for a, n in enumerate(["Tom", "Ann", "Li", "Sam", "Mia", "Ben", "Zoe", "Max"])]
    config = GRPOConfig(
        output_dir=str(tmp_path / cls.__name__), use_cpu=True, bf16=False, report_to="none", seed=seed,
        per_device_train_batch_size=16, num_generations=4, max_completion_length=16, learning_rate=lr,
        max_steps=steps, logging_steps=1, save_strategy="no", disable_tqdm=True, **extra,
    )
    peft_config = None if full else LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                               task_type="CAUSAL_LM")
    return cls(model=build_model(tok, seed=0), reward_funcs=digit_share, args=config, processing_class=tok,
               train_dataset=Dataset.from_list(rows * 4), peft_config=peft_config)


@pytest.mark.slow
def test_greedy_completions_match_stock_trl(tok, tmp_path):
    greedy = {"generation_kwargs": {"do_sample": False}}
    stock = make_trainer(tok, __import__("trl").GRPOTrainer, tmp_path, **greedy)
    fast = make_trainer(tok, fast_trainer.FastGRPOTrainer, tmp_path, **greedy)
    p = prompts(tok)
    want, _ = stock._generate_single_turn(p, None, {}, 4)
    got, logprobs = fast._generate_single_turn(p, None, {}, 4)
    assert got == want and logprobs is None
    assert fast.inference_copy is not None  # the fast path ran, not a fallback to stock


@pytest.mark.slow
@pytest.mark.parametrize("full", [False, True], ids=["lora", "full_finetune"])
def test_trainer_resyncs_after_each_optimizer_step(tok, tmp_path, full):
    trainer = make_trainer(tok, fast_trainer.FastGRPOTrainer, tmp_path, steps=2, lr=1e-2, full=full)
    trainer.train()
    ic = trainer.inference_copy
    assert ic.syncs == 2 and trainer._copy_synced_step == 1  # built at step 0, synced at step 1
    policy = trainer.accelerator.unwrap_model(trainer.model).eval()
    assert not torch.allclose(logits(ic.model, tok), logits(policy, tok))  # step 2's update is not in yet
    trainer._generate_single_turn(prompts(tok, 2), None, {}, 4)  # the next generation syncs first
    assert trainer._copy_synced_step == 2
    torch.testing.assert_close(logits(ic.model, tok), logits(policy, tok), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_grpo_learns_a_toy_reward_through_the_fast_path(tok, tmp_path):
    """The foundation issue's learning test, through FastGRPOTrainer: 30 steps raise the digit share clearly.

    The rate is large because the tiny model's tied embeddings are small (std 0.02) and LoRA leaves them frozen:
    at 1e-2 and below the digit share does not move in 30 steps, with stock TRL as with this path (measured;
    both give the same rewards step for step in fp32). At 3e-2 it goes from ~0.005 to ~0.85. The rate is
    aggressive enough that one run in five stalls: over seeds 0-4, decode.py's loop ended at 0.13, 0.92, 0.70,
    0.94, 0.91 and transformers' generate at 0.87, 0.92, 0.81, 0.93, 0.89 (measured); seed 1 is used.
    """
    trainer = make_trainer(tok, fast_trainer.FastGRPOTrainer, tmp_path, steps=30, lr=3e-2, seed=1)
    trainer.train()
    assert trainer.inference_copy is not None and trainer.inference_copy.syncs == 30
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    assert len(rewards) == 30
    start, end = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert end > start + 0.3, f"mean reward {start:.3f} -> {end:.3f}"
