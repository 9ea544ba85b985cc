"""Fast generation: the one place that turns prompt token ids into completion token ids, for training and eval.

Two pieces (and `resolve_fast_generation`, which says whether training uses them):

- `generate(model, prompt_ids, max_new_tokens=..., eos_token_ids=..., pad_token_id=...)`: left-pads a batch of
  tokenized prompts, generates (temperature 0 = greedy), and returns each completion cut after its first EOS
  (the EOS kept, as TRL does), without padding. On CUDA it uses a static KV cache kept between calls, so that
  transformers' automatic `torch.compile` of the decode step ("reduce-overhead": CUDA graphs) compiles once.
- `InferenceCopy(model)`: a plain, gradient-free, eval-mode copy of a PEFT-LoRA (or fully fine-tuned) model in
  the training dtype. `sync()` writes into it, in place, the frozen base weights plus the current LoRA delta
  `(B @ A) * scaling`, computed in fp32 from the frozen base each time, so no rounding drift accumulates.
  It costs one extra set of weights (1 GB for 0.5B in bf16, 3 GB for 1.5B): fine on one GPU up to ~1.5B.

`trainer.FastGRPOTrainer` generates its rollouts through these; this module imports nothing from TRL.
Why: stock TRL generates through the LoRA-wrapped training model with a dynamic cache and compile disabled;
on an H200 that is 82 ms per decode step at batch 128 for Qwen2.5-0.5B, against 19 ms merged and 7.9 ms
merged + static cache + compile (issue 6).

    from grpo_math.models.rollout import generate
    completions = generate(model, prompt_ids, max_new_tokens=256, eos_token_ids=[tok.eos_token_id],
                           pad_token_id=tok.pad_token_id)

Departures from stock TRL: rollouts run in eval mode (stock TRL samples with the training model in train mode,
so with LoRA dropout on); `cast_lm_head_to_fp32` is not mirrored in the copy (generate's sampling already
works on fp32 logits). Left out on purpose: batching and length sorting (the caller's job), beam search, stop
strings, DoRA and other LoRA variants, quantized base layers, DeepSpeed ZeRO-3 and FSDP (these fall back to
stock generation with a log line), multimodal prompts (stock generation).
"""

from __future__ import annotations

import copy
import logging
import weakref
from contextlib import nullcontext
from typing import Any

import torch
from transformers import CompileConfig, GenerationConfig, PreTrainedModel, StaticCache

from grpo_math.config import FAST_GENERATION_MODES
from grpo_math.models.decode import decode, left_pad, unsupported

logger = logging.getLogger(__name__)

# Static caches are sized in steps of this many positions, so that a new prompt length rarely means a new cache
# (and a new CUDA graph): the compiled decode step's shapes depend only on batch size and cache length, because
# transformers builds the 4D attention mask for a static cache outside the compiled forward.
CACHE_LEN_STEP = 256
# One static cache per (model, batch size), reused across calls so its tensors keep their addresses.
# Values are (cache, its length in positions).
_STATIC_CACHES: "weakref.WeakKeyDictionary[torch.nn.Module, dict[int, tuple[StaticCache, int]]]" = (
    weakref.WeakKeyDictionary()
)


# ---------------------------------------------------------------------------------------------------------------
# Generation


def generation_config_for(
    *, max_new_tokens: int, eos_token_ids: list[int], pad_token_id: int, temperature: float = 0.0,
    top_p: float = 1.0, top_k: int = 0, min_p: float | None = None, repetition_penalty: float = 1.0,
) -> GenerationConfig:
    """The GenerationConfig `generate` uses: temperature 0 is greedy; top_k 0 means no top-k filter (passed as 0:
    left unset, transformers would apply its default of 50), min_p None no min-p filter; the repetition penalty applies to greedy decoding too, as in transformers."""
    sample = temperature > 0
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=sample,
        temperature=temperature if sample else None,
        top_p=top_p if sample else None,
        top_k=top_k if sample else None,  # 0 turns top-k off; None would mean transformers' default, 50
        min_p=min_p if sample else None,
        # Explicit, so a model's own generation_config.json (Qwen2.5's says 1.1) cannot change what "greedy"
        # means between models; transformers only fills in values left as None.
        repetition_penalty=repetition_penalty,
        eos_token_id=list(eos_token_ids),
        pad_token_id=pad_token_id,
    )


def cut_after_eos(completions: torch.Tensor | list[list[int]], eos_token_ids: list[int]) -> list[list[int]]:
    """Each row of [B, T] completion ids (a tensor or lists) up to and including its first EOS (the whole row
    if none): what training and eval score, whichever generator (generate, streaming, vLLM) produced it."""
    eos = set(eos_token_ids)
    out = []
    for row in completions.tolist() if isinstance(completions, torch.Tensor) else completions:
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
    seed: int | None = None, use_static_cache: bool | None = None, compile_decode: bool | None = None,
    streamer: Any = None, compact: bool = True,
) -> list[list[int]]:
    """`generate` with a ready GenerationConfig (the trainer passes TRL's own, so sampling semantics match).

    Without a static cache (CPU and MPS by default) it runs decode.py's loop, which prefills each distinct
    prompt once and drops finished rows, when the config allows (`decode.unsupported`) and `compact` is on;
    otherwise transformers' `generate`.

    `generation_config.eos_token_id` holds the ids that end a completion; `pad_token_id` must be set. Its
    `cache_implementation` and `disable_compile` are overridden here (TRL turns compile off). `compile_decode` None
    means: with a static cache on CUDA, where "reduce-overhead" CUDA graphs pay; elsewhere it runs eagerly.
    `compile_decode=True` off CUDA is for tests (pass a `compile_config` with a cheap backend such as "eager").
    """
    device = next(model.parameters()).device
    if use_static_cache is None:
        use_static_cache = device.type == "cuda"
    if compile_decode is None:
        compile_decode = use_static_cache and device.type == "cuda"
    if compile_decode and not use_static_cache:
        raise ValueError("generate: compile_decode=True needs use_static_cache=True (a dynamic cache changes shape every step)")
    eos = generation_config.eos_token_id
    eos_token_ids = [eos] if isinstance(eos, int) else list(eos or [])
    rng = torch.random.fork_rng(devices=[device] if device.type == "cuda" else []) if seed is not None else nullcontext()
    if compact and not use_static_cache and streamer is None and unsupported(model, generation_config) is None:
        with rng:  # decode.py: each distinct prompt prefilled once, finished rows out of the batch
            if seed is not None:
                torch.manual_seed(seed)
            return decode(model, prompt_ids, generation_config)
    input_ids, attention_mask = left_pad(prompt_ids, generation_config.pad_token_id, device)  # [B, P]
    config = copy.deepcopy(generation_config)
    config.cache_implementation = None  # the cache, if static, is passed in below
    config.disable_compile = not compile_decode
    if compile_decode:
        # transformers compiles the decode step only (prefill shapes vary), once per model, with this config
        config.compile_config = config.compile_config or CompileConfig(mode="reduce-overhead")
        config.compile_config._compile_all_devices = device.type != "cuda" or None
    with rng, torch.no_grad():  # not inference_mode: a reused static cache is written in place later
        if seed is not None:
            torch.manual_seed(seed)
        kwargs: dict[str, Any] = {"streamer": streamer} if streamer is not None else {}
        if use_static_cache:
            # Our own persistent cache rather than cache_implementation="static": generate would allocate a new
            # one per call, and new tensor addresses would make the compiled decode step re-record its graphs.
            kwargs["past_key_values"] = _static_cache(model, input_ids.size(0), input_ids.size(1) + config.max_new_tokens)
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config, **kwargs)
    return cut_after_eos(out[:, input_ids.size(1):].cpu(), eos_token_ids)  # [B, <=T] -> lists


def generate(
    model: torch.nn.Module, prompt_ids: list[list[int]], *, max_new_tokens: int, eos_token_ids: list[int],
    pad_token_id: int, temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, seed: int | None = None,
    use_static_cache: bool | None = None, streamer: Any = None, min_p: float | None = None,
    repetition_penalty: float = 1.0, compact: bool = True,
) -> list[list[int]]:
    """Completions for a batch of tokenized prompts, each cut after its first EOS (kept), no padding.

    The caller chooses the batch (sort prompts by length for less padding; with a static cache, longest batch
    first, so that one cache, and one compiled graph, fits every later batch) and puts the model in eval mode;
    for a PEFT model, `InferenceCopy(model).model` generates ~4x faster on GPU. temperature 0 is greedy;
    `seed` makes sampling repeatable without touching the caller's RNG state. `use_static_cache` None means on
    for CUDA (where the decode step is then compiled), off elsewhere. `streamer` is transformers' hook
    (`TextStreamer`: inference.py --stream), for a batch of one. `compact` False keeps transformers' `generate`
    (see `generate_with_config`).
    """
    config = generation_config_for(
        max_new_tokens=max_new_tokens, eos_token_ids=eos_token_ids, pad_token_id=pad_token_id,
        temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p, repetition_penalty=repetition_penalty,
    )
    return generate_with_config(model, prompt_ids, config, seed=seed, use_static_cache=use_static_cache,
                                streamer=streamer, compact=compact)


# ---------------------------------------------------------------------------------------------------------------
# The inference copy


class UnsupportedModelError(ValueError):
    """A model the inference copy cannot mirror (DoRA, quantized layers, ...); the message names the module."""


def _lora_classes() -> tuple[type, type]:
    from peft.tuners.lora import LoraLayer
    from peft.utils import ModulesToSaveWrapper

    return LoraLayer, ModulesToSaveWrapper


def _base_of(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a PeftModel (with LoRA layers injected), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class InferenceCopy:
    """A plain copy of `model` (a PeftModel with LoRA, or a plain model being fully fine-tuned) for generation.

    `.model` is a `PreTrainedModel` of the base architecture in `dtype` (default: the base weights' dtype) on
    `device` (default: the source's), `eval()` and without gradients. Call `sync()` after the source's weights
    change; it writes the weights in place (`copy_`), never rebinding a Parameter, so compiled graphs stay valid.
    """

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype | None = None, device: torch.device | str | None = None):
        lora_cls, saved_cls = _lora_classes()
        self.source = model
        base = _base_of(model)
        first = next(p for p in base.parameters() if p.is_floating_point())
        self.dtype = dtype or first.dtype
        self.device = torch.device(device) if device is not None else first.device

        # 1. the empty model: built on the meta device (no random init), then given real, uninitialised storage
        config = copy.deepcopy(base.config)
        config.use_cache = True  # gradient checkpointing turns it off on the training model's config
        with torch.device("meta"):
            plain = type(base)._from_config(config, dtype=self.dtype)
        plain.to_empty(device=self.device)
        plain.tie_weights()  # to_empty gives each name its own storage; tied embeddings must share one again
        plain.generation_config = copy.deepcopy(base.generation_config)
        plain.requires_grad_(False).eval()
        self.model: PreTrainedModel = plain

        # 2. the plan: for every plain parameter, the source module and attribute it comes from, and the LoRA
        #    layer whose delta is added (None for plain copies). Tied weights appear under both names: harmless.
        self._plan: list[tuple[torch.Tensor, torch.nn.Module, str, Any]] = []
        for name, dst in plain.named_parameters(remove_duplicate=False):
            path, _, attr = name.rpartition(".")
            src_mod = self._resolve(base, path, saved_cls)
            lora = None
            if isinstance(src_mod, lora_cls):
                self._check_lora(src_mod, path)
                lora, src_mod = src_mod, src_mod.get_base_layer()
            src = getattr(src_mod, attr, None)
            if not isinstance(src, torch.Tensor) or src.shape != dst.shape or not src.is_floating_point():
                raise UnsupportedModelError(
                    f"inference copy: no matching floating-point source for {name} {tuple(dst.shape)} "
                    f"(found {type(src).__name__}); use --fast_generation off"
                )
            self._plan.append((dst, src_mod, attr, lora))
        # Non-persistent buffers (rotary inv_freq) came out of to_empty uninitialised: copy them once.
        with torch.no_grad():
            for name, dst in plain.named_buffers(remove_duplicate=False):
                path, _, attr = name.rpartition(".")
                src = getattr(self._resolve(base, path, saved_cls), attr)
                dst.copy_(src)
        self.syncs = 0
        self.sync()

    @staticmethod
    def _resolve(base: torch.nn.Module, path: str, saved_cls: type) -> torch.nn.Module:
        """The source module at a plain module path, looking through modules_to_save wrappers."""
        mod = base
        for part in [p for p in path.split(".") if p]:
            mod = mod._modules[part]
            if isinstance(mod, saved_cls):
                active = mod.active_adapters
                mod = mod.modules_to_save[active[0]] if active else mod.original_module
        return mod

    @staticmethod
    def _check_lora(layer: torch.nn.Module, path: str) -> None:
        for adapter in layer.active_adapters:
            if adapter in getattr(layer, "lora_variant", {}):
                raise UnsupportedModelError(
                    f"inference copy: {path} uses a LoRA variant ({type(layer.lora_variant[adapter]).__name__}, "
                    "e.g. DoRA) that is not a plain (B @ A) * scaling delta; use --fast_generation off"
                )

    @staticmethod
    def _deltas(lora: Any, attr: str) -> list[torch.Tensor]:
        """fp32 deltas of a LoRA layer's active adapters for its `weight` or `bias` (none when disabled or merged)."""
        if lora.disable_adapters or lora.merged:
            return []  # merged: the base layer already holds the delta
        out = []
        for adapter in lora.active_adapters:
            if adapter not in lora.lora_A and adapter not in getattr(lora, "lora_embedding_A", {}):
                continue
            if attr == "weight" and adapter in lora.lora_A and lora.lora_A[adapter].weight.dim() == 2:
                # Linear: (B @ A) * scaling as peft's get_delta_weight, but in fp32 whatever the adapter dtype
                a, b = lora.lora_A[adapter].weight.float(), lora.lora_B[adapter].weight.float()
                delta = (b @ a) * lora.scaling[adapter]  # [out, in]
                out.append(delta.T if lora.fan_in_fan_out else delta)
            elif attr == "weight":  # embeddings, convolutions: peft's own formula
                out.append(lora.get_delta_weight(adapter).float())
            elif attr == "bias" and lora.lora_bias.get(adapter, False):
                out.append(lora.lora_B[adapter].bias.float() * lora.scaling[adapter])
        return out

    @torch.no_grad()
    def sync(self) -> None:
        """Write the source's current weights into the copy: base + LoRA delta in fp32, then cast, in place."""
        for dst, src_mod, attr, lora in self._plan:
            src = getattr(src_mod, attr)
            if lora is not None:
                deltas = self._deltas(lora, attr)
                if deltas:
                    merged = src.detach().to(self.device, torch.float32, copy=True)  # never the source itself
                    for d in deltas:
                        merged += d.to(self.device)
                    dst.copy_(merged)
                    continue
            if self.syncs and not src.requires_grad:
                continue  # frozen and without a delta: unchanged since the first sync
            dst.copy_(src.detach())
        self.syncs += 1

    def generate(self, prompt_ids: list[list[int]], generation_config: GenerationConfig, *,
                 seed: int | None = None, use_static_cache: bool | None = None,
                 compile_decode: bool | None = None) -> list[list[int]]:
        """Completions from the copy (see `generate_with_config`)."""
        return generate_with_config(self.model, prompt_ids, generation_config, seed=seed,
                                    use_static_cache=use_static_cache, compile_decode=compile_decode)


# ---------------------------------------------------------------------------------------------------------------
# Choosing the generator


def resolve_fast_generation(mode: str, *, use_vllm: bool, device: str) -> bool:
    """Whether training generates through `rollout.py`: `auto` is on unless vLLM generates, on every device.

    Measured with bench/throughput.py on two shared CPU cores, LoRA r16, 32 completions x 64 tokens: generation
    0.94 -> 0.76 s (tiny model) and 5.41 -> 4.47 s (10M Qwen2 layout), steps 1.06x and 1.03x faster, because
    the merged copy skips the adapters' extra matmuls; full fine-tuning is even. On CUDA the static cache and
    compile add to that (issue 6). So `auto` has no device rule; `device` is there for a back end where the
    copy would not pay (none known: MPS is untested).
    """
    if mode not in FAST_GENERATION_MODES:
        raise ValueError(f"--fast_generation {mode!r} is not one of {', '.join(FAST_GENERATION_MODES)}")
    if use_vllm:
        if mode == "on":
            raise ValueError("--fast_generation on and --use_vllm both choose the generator; pick one")
        return False
    return mode != "off"
