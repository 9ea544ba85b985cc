"""Sampling that does no work twice: each distinct prompt is prefilled once, and finished rows leave the batch.

    from grpo_math.models.decode import decode, unsupported
    if unsupported(model, generation_config) is None:
        completions = decode(model, prompt_ids, generation_config)   # lists of ids, each cut after its EOS

What transformers' `generate` does that a GRPO rollout does not need, and what this loop does instead:

- a group's `num_generations` completions share one prompt, and `generate` runs the prompt's forward pass once
  per completion (8x the prefill at 8 per group); here each distinct prompt runs once and its KV cache is
  copied to the group's rows;
- `generate` keeps every row in the batch until the last one ends, so a batch whose longest completion is 96
  tokens and whose mean is 33 pays for 96 tokens on every row; here a row leaves the batch (its KV cache, mask
  and history with it) at its EOS, and each decode step costs only the rows still running.

Sampling is transformers' own: the same logits processors in the same order (repetition penalty, then
temperature, top-k, top-p, min-p), each setting taken from the passed config, else from the model's
generation_config, else transformers' default (top_k 50), exactly as `generate` merges them, and float32 logits.
Greedy decoding gives the same tokens as `generate` (tests/test_decode.py); sampling draws from the same
distribution but not the same random numbers (the batch shrinks, and `sample_rows` draws by inverse transform). A setting the loop does not implement
(`min_new_tokens`, `no_repeat_ngram_size`, beams, ...) makes `unsupported` name it, and the caller uses
`generate` instead. Measured on two CPU cores (SmolLM2-135M, 32 completions of up to 96 tokens, 4 prompts):
see bench/throughput.py.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (DynamicCache, GenerationConfig, LogitsProcessorList, MinPLogitsWarper,
                          RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
                          TopPLogitsWarper)

# transformers' defaults for the settings this loop implements (GenerationConfig._get_default_generation_params),
# used when neither the passed config nor the model's generation_config sets them, as `generate` does
DEFAULTS = {"do_sample": False, "temperature": 1.0, "top_k": 50, "top_p": 1.0, "min_p": None,
            "repetition_penalty": 1.0}
# settings that change which tokens come out and that this loop does not implement: (name, the value meaning "off")
NOT_IMPLEMENTED = (
    ("min_new_tokens", None), ("min_length", 0), ("no_repeat_ngram_size", 0), ("bad_words_ids", None),
    ("suppress_tokens", None), ("begin_suppress_tokens", None), ("forced_bos_token_id", None),
    ("forced_eos_token_id", None), ("sequence_bias", None), ("typical_p", 1.0), ("epsilon_cutoff", 0.0),
    ("eta_cutoff", 0.0), ("top_h", None), ("num_beams", 1), ("num_return_sequences", 1),
    ("renormalize_logits", False), ("exponential_decay_length_penalty", None), ("stop_strings", None),
    ("watermarking_config", None), ("guidance_scale", None), ("remove_invalid_values", False),
    ("encoder_repetition_penalty", 1.0), ("diversity_penalty", 0.0), ("max_time", None),
    ("return_dict_in_generate", False), ("output_scores", False), ("output_logits", False),
)


def _setting(model: torch.nn.Module, config: GenerationConfig, name: str, default: Any = None) -> Any:
    """A setting as `generate` resolves it: the passed config, else the model's generation_config, else default."""
    value = getattr(config, name, None)
    if value is None:
        value = getattr(getattr(model, "generation_config", None), name, None)
    return default if value is None else value


def unsupported(model: torch.nn.Module, config: GenerationConfig) -> str | None:
    """Why `decode` cannot stand in for `generate` with this config and model (a setting's name), or None."""
    if config.max_new_tokens is None:
        return "max_new_tokens is not set"
    for name, off in NOT_IMPLEMENTED:
        value = _setting(model, config, name)
        if value is not None and value != off:
            return f"{name}={value!r}"
    if getattr(model.config, "is_encoder_decoder", False):
        return "an encoder-decoder model"
    return None


def logits_processors(model: torch.nn.Module, config: GenerationConfig) -> tuple[LogitsProcessorList, bool]:
    """transformers' processors for this config, in `generate`'s order, and whether to sample."""
    s = {name: _setting(model, config, name, default) for name, default in DEFAULTS.items()}
    out = LogitsProcessorList()
    if s["repetition_penalty"] != 1.0:
        out.append(RepetitionPenaltyLogitsProcessor(penalty=s["repetition_penalty"]))
    if s["do_sample"]:
        if s["temperature"] != 1.0:
            out.append(TemperatureLogitsWarper(s["temperature"]))
        if s["top_k"] != 0:
            out.append(TopKLogitsWarper(top_k=s["top_k"], min_tokens_to_keep=1))
        if s["top_p"] < 1.0:
            out.append(TopPLogitsWarper(top_p=s["top_p"], min_tokens_to_keep=1))
        if s["min_p"] is not None:
            out.append(MinPLogitsWarper(min_p=s["min_p"], min_tokens_to_keep=1))
    return out, bool(s["do_sample"])


def left_pad(prompt_ids: list[list[int]], pad_token_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded `input_ids` and `attention_mask`, both [B, P] with P the longest prompt."""
    if not prompt_ids or any(len(p) == 0 for p in prompt_ids):
        raise ValueError("generate: every prompt needs at least one token (got an empty batch or an empty prompt)")
    width = max(len(p) for p in prompt_ids)
    ids = torch.full((len(prompt_ids), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for i, p in enumerate(prompt_ids):
        ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p):] = 1
    return ids.to(device), mask.to(device)


def sample_rows(scores: torch.Tensor) -> torch.Tensor:
    """One token per row of [b, V] scores, drawn from softmax(scores): the distribution `torch.multinomial` draws
    from, by inverse transform (one uniform number per row against the cumulative probabilities) instead of
    multinomial's one exponential draw per vocabulary entry, which on CPU was 19 ms of a 50 ms SmolLM2 decode step.
    A token of probability 0 (cut by top-k, top-p, min-p) is never drawn: its cumulative sum equals the one before
    it, and the first entry above the uniform number is taken."""
    cdf = torch.softmax(scores, dim=-1, dtype=torch.float32).cumsum_(dim=-1)  # [b, V]
    u = torch.rand(cdf.size(0), 1, device=cdf.device, dtype=cdf.dtype) * cdf[:, -1:]  # below the total: always found
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.size(1) - 1)


@torch.no_grad()
def decode(model: torch.nn.Module, prompt_ids: list[list[int]], config: GenerationConfig) -> list[list[int]]:
    """Completions for `prompt_ids` (one per row, duplicates welcome), each cut after its first EOS (kept).

    `config` gives max_new_tokens, eos_token_id, pad_token_id and the sampling settings; check it with
    `unsupported` first. The caller seeds the RNG and puts the model in eval mode.
    """
    device = next(model.parameters()).device
    eos = config.eos_token_id
    eos_ids = torch.tensor([eos] if isinstance(eos, int) else list(eos or []), device=device)
    processors, sample = logits_processors(model, config)

    # 1. the prefill, once per distinct prompt; each row then takes a view of its prompt's KV cache
    distinct: dict[tuple[int, ...], int] = {}
    source = [distinct.setdefault(tuple(p), len(distinct)) for p in prompt_ids]  # row -> distinct prompt
    ids, mask = left_pad([list(p) for p in distinct], config.pad_token_id, device)  # [U, P]
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # as `generate` sets them for left padding
    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
                logits_to_keep=1)
    rows = torch.tensor(source, device=device)
    cache.batch_select_indices(rows)
    logits = out.logits[rows, -1].to(torch.float32)  # [B, V]
    history, mask, next_position = ids[rows], mask[rows], positions[rows, -1] + 1  # [B, P], [B, P], [B]
    alive = torch.arange(len(prompt_ids), device=device)  # the original row of each row still running
    completions: list[list[int]] = [[] for _ in prompt_ids]

    # 2. one token per running row per step; a row that emits EOS leaves the batch
    for step in range(config.max_new_tokens):
        scores = processors(history, logits)
        tokens = sample_rows(scores) if sample else scores.argmax(dim=-1)  # [b]
        for row, token in zip(alive.tolist(), tokens.tolist()):
            completions[row].append(token)
        running = ~torch.isin(tokens, eos_ids)
        if step == config.max_new_tokens - 1 or not bool(running.any()):
            break
        if not bool(running.all()):
            keep = running.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            alive, tokens, history, mask, next_position = (alive[keep], tokens[keep], history[keep], mask[keep],
                                                           next_position[keep])
        history = torch.cat([history, tokens[:, None]], dim=1)
        mask = torch.cat([mask, mask.new_ones(mask.size(0), 1)], dim=1)
        out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=next_position[:, None],
                    past_key_values=cache, use_cache=True)
        next_position = next_position + 1
        logits = out.logits[:, -1].to(torch.float32)
    return completions
