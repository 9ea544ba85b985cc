"""The offline tiny model: a Qwen2-architecture causal LM of ~0.45M parameters and a tokenizer it trains itself.

`--demo`, the test suite and the CPU benchmarks use it so that everything runs with no network and no
downloaded weights. It is a real `Qwen2ForCausalLM` saved with `save_pretrained`, so every code path
(PEFT LoRA, TRL's GRPOTrainer, eval, inference, merging) is the one a real Qwen model takes.

    python -m grpo_math.models.tiny OUT_DIR   # writes config, weights, tokenizer and chat template to OUT_DIR

The tokenizer is a byte-level BPE (any text encodes, as with Qwen) with single digits split like Qwen's,
trained in well under a second on the prompt templates of `prompts.py` and its arithmetic word problems,
so that prompts are short. The weights are random: the model knows nothing, it is there to move.
Left out on purpose: any pretrained knowledge, and sizes other than one (tests need speed, not choice).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

PAD, BOS_CHAT, EOS = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
# Tags the rewards look for are single tokens, so that a random model can stumble on them and learn them.
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]
VOCAB_SIZE = 1024  # 256 byte symbols + ~760 merges: template phrases become single tokens, prompts stay short

# Qwen's own chat layout, without the default system prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

def _corpus(n: int = 600, seed: int = 0) -> list[str]:
    """What the tiny model will see: every prompt template (both languages) and arithmetic problems."""
    from grpo_math.data.arithmetic import arithmetic_problems
    from grpo_math.data.prompts import LANGS, TEMPLATES, build_prompt

    lines = []
    for template in TEMPLATES:
        for lang in LANGS:
            prompt = build_prompt("", template, lang)
            text = prompt if isinstance(prompt, str) else " ".join(m["content"] for m in prompt)
            lines += [text] * 20  # repeated so the template's phrases become single tokens
    for row in arithmetic_problems(n, seed=seed):
        lines.append(row["question"])
        lines.append(f"<think> {row['solution']} </think> <answer> \\boxed{{{row['answer']}}} </answer>")
    return lines


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Train the byte-level BPE tokenizer (deterministic) and wrap it with pad/eos tokens and a chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD, BOS_CHAT, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=None, padding_side="left"
    )
    fast.add_tokens(TAG_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> Qwen2ForCausalLM:
    """A randomly initialised Qwen2 model sized for CPU tests (~0.45M parameters)."""
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=96,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as in Qwen2.5
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        # Xavier-like 1/sqrt(hidden) instead of the 0.02 tuned for 1000-wide models: at width 96 and 0.02 the
        # tied output embedding is so small that no hidden state can move a logit by more than ~1, and a LoRA
        # policy could never learn anything the tests can see.
        initializer_range=96**-0.5,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def save_tiny_model(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny model and tokenizer to `out_dir` (loadable with `from_pretrained`); reuse it if present."""
    out = Path(out_dir)
    marker = out / "tiny_model.json"
    if marker.is_file() and (out / "config.json").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed=seed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    marker.write_text(json.dumps({"seed": seed, "parameters": n_params}) + "\n")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m grpo_math.models.tiny OUT_DIR")
    path = save_tiny_model(sys.argv[1])
    print(f"tiny model written to {path}")
