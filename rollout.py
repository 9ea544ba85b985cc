"""Fast generation: the one place that turns prompt token ids into completion token ids, for training and eval.

    from rollout import generate
    completions = generate(model, prompt_ids, max_new_tokens=256, eos_token_ids=[tok.eos_token_id],
                           pad_token_id=tok.pad_token_id)               # greedy; temperature>0 samples

`generate` left-pads a batch of prompts, runs `model.generate` and returns each completion cut after its first
EOS (the EOS kept, as TRL does), without padding. On CUDA it uses a static KV cache kept between calls, so that
transformers' automatic `torch.compile` of the decode step compiles once and its CUDA graphs stay valid.

Left out on purpose: batching and sorting by length (the caller's job), beam search, stop strings.
"""

from __future__ import annotations

import logging
import weakref
from contextlib import nullcontext

import torch
from transformers import GenerationConfig, StaticCache

logger = logging.getLogger(__name__)

# Static caches are sized in steps of this many positions, so that a new prompt length rarely means a new cache
# (and with it a new CUDA graph): the compiled decode step's shapes depend only on batch size and cache length.
CACHE_LEN_STEP = 256
# One static cache per (model, batch size), reused across calls: its tensors keep their addresses.
# Values are (cache, its length in positions).
_STATIC_CACHES: "weakref.WeakKeyDictionary[torch.nn.Module, dict[int, tuple[StaticCache, int]]]" = (
    weakref.WeakKeyDictionary()
)


def generation_config_for(
    *, max_new_tokens: int, eos_token_ids: list[int], pad_token_id: int, temperature: float = 0.0,
    top_p: float = 1.0, top_k: int = 0,
) -> GenerationConfig:
    """The GenerationConfig `generate` uses: temperature 0 is greedy; top_k 0 means no top-k filter."""
    sample = temperature > 0
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sample,
        temperature=temperature if sample else None,
        top_p=top_p if sample else None,
        top_k=top_k if sample and top_k > 0 else None,
        eos_token_id=list(eos_token_ids),
        pad_token_id=pad_token_id,
    )


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


def cut_after_eos(completions: torch.Tensor, eos_token_ids: list[int]) -> list[list[int]]:
    """Each row of [B, T] completion ids up to and including its first EOS (the whole row if none)."""
    rows = completions.tolist()
    eos = set(eos_token_ids)
    out = []
    for row in rows:
        end = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        out.append(row[:end])
    return out


def _static_cache(model: torch.nn.Module, batch_size: int, needed_len: int) -> StaticCache:
    """A zeroed static cache for `batch_size` rows and at least `needed_len` positions, reused when it fits."""
    per_model = _STATIC_CACHES.setdefault(model, {})
    cache, length = per_model.get(batch_size, (None, 0))
    if cache is None or length < needed_len:
        length = -(-needed_len // CACHE_LEN_STEP) * CACHE_LEN_STEP
        logger.info("new static KV cache: batch %d x %d positions", batch_size, length)
        cache = StaticCache(config=model.config.get_text_config(decoder=True), max_cache_len=length)
        per_model[batch_size] = (cache, length)
    else:
        cache.reset()  # zeroes in place: the compiled decode step keeps reading the same tensors
    return cache


def generate_with_config(
    model: torch.nn.Module, prompt_ids: list[list[int]], generation_config: GenerationConfig, *,
    seed: int | None = None, use_static_cache: bool | None = None,
) -> list[list[int]]:
    """`generate` with a ready GenerationConfig (the trainer passes TRL's own, so sampling semantics match).

    `generation_config.eos_token_id` must be the list of ids that end a completion; `pad_token_id` must be set.
    """
    device = next(model.parameters()).device
    if use_static_cache is None:
        use_static_cache = device.type == "cuda"
    eos = generation_config.eos_token_id
    eos_token_ids = [eos] if isinstance(eos, int) else list(eos or [])
    input_ids, attention_mask = left_pad(prompt_ids, generation_config.pad_token_id, device)
    config = GenerationConfig.from_dict(generation_config.to_dict())
    kwargs = {}
    if use_static_cache:
        # Our own persistent cache rather than cache_implementation="static": generate would allocate a new one
        # per call, and new tensor addresses invalidate the CUDA graphs of the compiled decode step.
        config.cache_implementation = None
        config.disable_compile = device.type != "cuda"  # compile only where it pays (CUDA graphs)
        kwargs["past_key_values"] = _static_cache(model, input_ids.size(0), input_ids.size(1) + config.max_new_tokens)
    else:
        config.cache_implementation = None
        config.disable_compile = True
    rng = torch.random.fork_rng(devices=[device] if device.type == "cuda" else []) if seed is not None else nullcontext()
    with rng, torch.no_grad():  # not inference_mode: the reused cache is updated in place later
        if seed is not None:
            torch.manual_seed(seed)
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config, **kwargs)
    return cut_after_eos(out[:, input_ids.size(1):].cpu(), eos_token_ids)


def generate(
    model: torch.nn.Module, prompt_ids: list[list[int]], *, max_new_tokens: int, eos_token_ids: list[int],
    pad_token_id: int, temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, seed: int | None = None,
    use_static_cache: bool | None = None,
) -> list[list[int]]:
    """Completions for a batch of tokenized prompts, each cut after its first EOS (kept), no padding.

    The caller chooses the batch (sort prompts by length for less padding) and puts the model in eval mode.
    temperature 0 is greedy; `seed` makes sampling repeatable without touching the caller's RNG state.
    `use_static_cache` None means on for CUDA (where the decode step is then compiled), off elsewhere.
    """
    config = generation_config_for(
        max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids, pad_token_id=pad_token_id,
        temperature=temperature, top_p=top_p, top_k=top_k,
    )
    return generate_with_config(model, prompt_ids, config, seed=seed, use_static_cache=use_static_cache)
