"""The memory check before launch: peak memory estimated from the settings and the model's shape, before the
weights load, against what the device has; and the one-line message for an out-of-memory error mid-run.

    shape = model_shape(config.model_id)                      # config.json only, on the meta device: no weights
    est = estimate(config, shape, prompt_len=longest_prompt)  # bytes per part, and the total
    check(config, est)                                        # logs the estimate; warns with the flags that fit

What it counts (per process), with e the bytes of the training dtype:
1. weights: every parameter in the load dtype; with --load_in_4bit the decoder's linear layers take 4.5 bits
   (NF4 + 8-bit block scales + their fp32 scales) and the rest is fp32 (prepare_model_for_kbit_training);
   plus the inference copy of rollout.py (fast generation), one more set of weights in e;
2. trainable state: LoRA's A and B in fp32 with gradient and two Adam moments (16 bytes a parameter), or every
   weight's gradient and moments in full fine-tuning; a reference model when --beta > 0 without LoRA;
3. generation: the KV cache of the whole generation batch (--batch_size x --gradient_accumulation_steps
   sequences) at the longest prompt plus --max_completion_length, rounded up to rollout.py's 256-position
   static cache on CUDA;
4. the training pass on one micro-batch (--batch_size sequences of that length): the activations autograd
   keeps per layer (norm inputs and outputs, q/k/v, attention output, the MLP's gate/up/product, LoRA's
   dropout output and mask, or without dropout under autocast its input's copy outside the fast path), one layer's worth with --gradient_checkpointing; and the logits of the completion
   positions in e plus four fp32 copies (TRL's fp32 cast, log-softmax, entropy, and their gradient).
The parts never all peak at once (generation ends before the training pass), so the total is the weights and
state plus the larger of 3 and 4. It leaves out the CUDA context (~0.5 GB), allocator fragmentation and
vLLM's own pool; on CPU it is the growth of the process' resident memory (tests/test_memory.py measures it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from grpo_math.config import RunConfig

logger = logging.getLogger(__name__)

GiB = 1024**3
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4-bit weight, an 8-bit scale per 64 weights, an fp32 per 256 scales
STATIC_CACHE_STEP = 256  # rollout.CACHE_LEN_STEP, repeated here so this module needs no transformers import
LOGIT_FP32_COPIES = 4  # fp32 logits, log-softmax, entropy, and the logits' gradient


@dataclass(frozen=True)
class Shape:
    """What the estimate needs of a model: from its config.json, counted on the meta device."""

    n_params: int  # unique parameters (tied embeddings once)
    n_decoder_linear: int  # weights of the decoder's linear layers (what 4-bit quantises and LoRA adapts)
    lora_per_rank: int  # sum of (in + out) over the linear layers LoRA adapts: LoRA parameters = r x this
    lora_in_features: int  # sum of in_features over those layers (LoRA's dropout keeps its input)
    layers: int
    hidden: int
    intermediate: int
    q_dim: int
    kv_dim: int
    vocab: int


def model_shape(model_id: str, targets: list[str] | None = None, trust_remote_code: bool = False) -> Shape:
    """The Shape of `model_id` (hub id, directory or .gguf) from its config alone; LoRA `targets` as the flag."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from grpo_math.models.loading import _source

    cfg = AutoConfig.from_pretrained(_source(model_id), trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=trust_remote_code)
    targets = targets or ["all-linear"]
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n != "lm_head"
               and not n.endswith(".lm_head")]
    adapted = [m for n, m in linears if targets == ["all-linear"] or any(n == t or n.endswith("." + t)
                                                                          for t in targets)]
    text = cfg.get_text_config(decoder=True)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    return Shape(
        n_params=sum(p.numel() for p in model.parameters()),
        n_decoder_linear=sum(m.weight.numel() for _, m in linears),
        lora_per_rank=sum(m.in_features + m.out_features for m in adapted),
        lora_in_features=sum(m.in_features for m in adapted),
        layers=text.num_hidden_layers, hidden=text.hidden_size,
        intermediate=getattr(text, "intermediate_size", 4 * text.hidden_size),
        q_dim=text.num_attention_heads * head_dim, kv_dim=kv_heads * head_dim, vocab=text.vocab_size,
    )


@dataclass
class Estimate:
    """Bytes per part (see the module docstring) and the peak they add up to."""

    parts: dict[str, float] = field(default_factory=dict)

    @property
    def peak(self) -> float:
        p = self.parts
        return (p["weights"] + p["inference copy"] + p["trainable state"] + p["reference model"]
                + p.get("runtime (CPU)", 0) + max(p["generation KV cache"], p["activations"] + p["logits"]))

    def line(self) -> str:
        parts = ", ".join(f"{k} {_gib(v)}" for k, v in self.parts.items() if v)
        return f"estimated peak memory {_gib(self.peak)} ({parts}; generation and the training pass do not overlap)"


def _gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB / 10 else f"{n / 2**20:.1f} MiB"


def _bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


# On CPU the figure compared is the process's resident memory, which also holds what any step needs whatever the
# model: the allocator's arenas, autograd's and the data pipeline's buffers. Measured with bench/memory_check.py
# in a fresh process (TRL and PEFT imported before the model loads): about 100 MiB for the tiny demo model, whose
# own tensors are under 10 MiB. On an accelerator the device's free memory is read after its context exists.
CPU_RUNTIME_BYTES = 100 * 2**20


def estimate(config: RunConfig, shape: Shape, prompt_len: int) -> Estimate:
    """Peak memory of one training process with `config` on a model of `shape`, prompts up to `prompt_len`."""
    placement = config.placement
    e = _bytes(placement.dtype)  # activations, KV cache and the inference copy
    load = _bytes(placement.load_dtype(config.full_finetune))
    lora = not config.full_finetune
    if config.load_in_4bit:
        weights = shape.n_decoder_linear * NF4_BYTES + (shape.n_params - shape.n_decoder_linear) * 4
    else:
        weights = shape.n_params * load
    fast = config.fast_generation != "off" and not config.use_vllm and not config.load_in_4bit
    if lora:
        trainable = config.lora_r * shape.lora_per_rank * 16  # fp32 weight, gradient, two Adam moments
    else:
        trainable = shape.n_params * (load + load + 2 * load)  # gradient and two moments in the weights' dtype
    seq = prompt_len + config.max_completion_length
    gen_rows = config.batch_size * config.gradient_accumulation_steps
    cache_len = -(-seq // STATIC_CACHE_STEP) * STATIC_CACHE_STEP if placement.device == "cuda" else seq
    kv = 2 * shape.layers * shape.kv_dim * cache_len * gen_rows * e + gen_rows * shape.vocab * 4 * 2
    tokens = config.batch_size * seq
    per_layer_token = e * (6 * shape.hidden + 2 * (shape.q_dim + 2 * shape.kv_dim) + 4 * shape.intermediate)
    if lora and config.lora_dropout > 0:
        per_layer_token += (e + 1) * shape.lora_in_features / shape.layers  # dropout's output and mask
    elif lora and e < 4 and not fast:  # PEFT's input cast under autocast (lora_inputs.py skips it in the fast path)
        per_layer_token += e * shape.lora_in_features / shape.layers
    if config.gradient_checkpointing:  # each layer's input, and one layer rebuilt at a time
        activations = tokens * (per_layer_token + e * shape.hidden * shape.layers)
    else:
        activations = tokens * per_layer_token * shape.layers
    logits = config.batch_size * config.max_completion_length * shape.vocab * (e + 4 * LOGIT_FP32_COPIES)
    return Estimate({
        "weights": weights,
        "inference copy": shape.n_params * e if fast else 0,
        "trainable state": trainable,
        "reference model": shape.n_params * load if (config.beta > 0 and not lora) else 0,
        "generation KV cache": kv,
        "activations": activations,
        "logits": logits,
        "runtime (CPU)": CPU_RUNTIME_BYTES if placement.device == "cpu" else 0,
    })


def available(device: str) -> int | None:
    """Bytes this process can still use on `device`: free CUDA memory, MPS's recommended limit less what is
    allocated, the machine's available RAM on CPU; None when unknown."""
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    if device == "mps":
        mps = getattr(torch, "mps", None)
        if mps is not None and hasattr(mps, "recommended_max_memory"):
            return mps.recommended_max_memory() - mps.current_allocated_memory()
        return None
    import psutil

    return psutil.virtual_memory().available


def fixes(config: RunConfig, shape: Shape, prompt_len: int, budget: float) -> list[str]:
    """Up to three flag changes, each of which alone brings the estimate under `budget`, cheapest first."""
    import dataclasses

    tries: list[tuple[str, dict]] = []
    if not config.gradient_checkpointing:
        tries.append(("--gradient_checkpointing", {"gradient_checkpointing": True}))
    for b in (config.batch_size // 2, config.batch_size // 4):  # the same generation batch in smaller pieces
        if b >= 1 and config.batch_size % b == 0:
            ga = config.gradient_accumulation_steps * config.batch_size // b
            flag = f"--batch_size {b} --gradient_accumulation_steps {ga}"
            tries.append((flag, {"batch_size": b, "gradient_accumulation_steps": ga}))
    if not config.load_in_4bit and not config.full_finetune and not config.use_vllm:
        tries.append(("--load_in_4bit", {"load_in_4bit": True}))
    if config.max_completion_length > 64:
        tries.append((f"--max_completion_length {config.max_completion_length // 2}",
                      {"max_completion_length": config.max_completion_length // 2}))
    out = [flag for flag, change in tries
           if estimate(dataclasses.replace(config, **change), shape, prompt_len).peak <= budget]
    return out[:3]


def longest_prompt(dataset, tokenizer, chat_template_kwargs: dict | None = None) -> int:
    """Tokens of the longest prompt in `dataset`, encoded as training encodes it."""
    from grpo_math.data.sources import encode_prompts

    longest = 0
    for start in range(0, len(dataset), 256):
        ids = encode_prompts(tokenizer, dataset[start:start + 256]["prompt"], chat_template_kwargs)
        longest = max([longest, *map(len, ids)])
    return longest


def check(config: RunConfig, shape: Shape, prompt_len: int) -> Estimate:
    """Log the estimate; warn, naming the flags that would fit, when it exceeds what the device has."""
    est = estimate(config, shape, prompt_len)
    have = available(config.placement.device)
    where = f"{config.placement.device}" + (f", {_gib(have)} available" if have is not None else "")
    logger.info("%s [%s]", est.line(), where)
    if have is not None and est.peak > have:
        options = fixes(config, shape, prompt_len, have)
        logger.warning("the estimate (%s) exceeds the %s available on %s: this run will likely run out of "
                       "memory in its first step; %s", _gib(est.peak), _gib(have), config.placement.device,
                       "try " + ", or ".join(options) if options else
                       "lower --batch_size and --max_completion_length, or use a smaller model")
    return est


def probe(model: torch.nn.Module, batch_size: int, seq_len: int, vocab: int) -> None:
    """One forward and backward pass of a micro-batch at the worst shape the run can meet (`batch_size`
    sequences of the longest prompt plus the full completion length), gradients dropped after: an
    out-of-memory error of the training pass happens here, in the first minute, not at the step where a long
    prompt first meets a completion that never stops. Generation's KV cache is smaller than this pass for the
    shapes this tool trains (see `estimate`), so it is not probed separately."""
    device = next(p for p in model.parameters() if p.requires_grad).device
    ids = torch.randint(0, vocab, (batch_size, seq_len), device=device, generator=None)
    was_training = model.training
    model.train()
    try:
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits  # [B, S, V]
        loss = torch.log_softmax(logits.float(), dim=-1).mean()
        loss.backward()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    del logits, loss
    if device.type == "cuda":
        torch.cuda.empty_cache()


def check_before_load(config: RunConfig, train_ds, tokenizer) -> Estimate | None:
    """train.py's step: the estimate for this run, logged (and warned about), before the weights load."""
    try:
        shape = model_shape(config.model_id, config.lora_target_modules, config.trust_remote_code)
    except (OSError, ValueError) as e:  # the model load right after says it better
        logger.info("no memory estimate: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        return None
    return check(config, shape, longest_prompt(train_ds, tokenizer, config.chat_template_kwargs))


def probe_first_step(model: torch.nn.Module, config: RunConfig, train_ds, tokenizer) -> None:
    """`probe` at this run's worst shape; an out-of-memory error becomes a MemoryError of one line."""
    seq = longest_prompt(train_ds, tokenizer, config.chat_template_kwargs) + config.max_completion_length
    try:
        probe(model, config.batch_size, seq, model.get_input_embeddings().num_embeddings)
    except RuntimeError as e:
        if not is_out_of_memory(e):
            raise
        raise MemoryError(f"out of memory before the first step: a micro-batch of {config.batch_size} x {seq} "
                          f"tokens (the longest prompt at full completion length) does not fit; lower "
                          f"{OOM_FLAGS}") from None
    logger.info("memory probe: %d x %d tokens, forward and backward, fit", config.batch_size, seq)


OOM_FLAGS = ("--batch_size (raising --gradient_accumulation_steps), --max_completion_length, or add "
             "--gradient_checkpointing / --load_in_4bit")


def oom_line(step: int) -> str:
    """What an out-of-memory error at `step` tells the user (train.py adds where to resume from)."""
    return f"out of memory at step {step}; lower {OOM_FLAGS}"


def is_out_of_memory(error: BaseException) -> bool:
    """torch's OutOfMemoryError (CUDA, MPS), the CPU allocator's failure, or Python's MemoryError."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())
