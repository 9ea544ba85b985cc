"""The resolved run settings: one frozen `RunConfig`, built once, read by training, the in-run eval and callbacks.

    config = training.checks.resolve({"model_id": "Qwen/Qwen2.5-0.5B-Instruct", "max_steps": 100})  # checked, frozen
    config.rewards            # the reward callables, built once from the resolved config (a user's file.py:fn once)
    config.to_record()        # what run_config.json stores under "args"; RunConfig.from_record reads it back

Every default is declared here, once, as a field default; main.py's parser takes its defaults from `DEFAULTS`
and eval.py reads a run's settings back through `RunConfig.from_record`. Every value goes through one
validation path whatever its source (command line, `--config` YAML, `--demo`): the type from the field's
annotation (no bools as numbers, no floats as integers, finite floats only), the range from `_RULES`, then the
checks between flags and the cheap facts about the machine (paths, a local dataset's columns, the device).
Each failure is a `UsageError` of one line naming the flag, the value and what would work. Left out on purpose:
anything that needs a model or the network (a LoRA target name, a hub id's existence): train.py checks those
right after loading, before it writes anything. This module imports nothing from the package (the bottom of
the import graph, tests/test_layout.py): the cross-flag checks and the build live in `training/checks.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
DEFAULT_DATASET = "openai/gsm8k"
DEFAULT_TEMPLATE = "think"
DEFAULT_REWARDS = ("format", "accuracy")
DEFAULT_MAX_COMPLETION_LENGTH = 256  # room for a short GSM8K chain of thought; training, eval and overlong share it

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")  # TRL 1.16's all
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")  # sequence: GSPO
SCALE_REWARDS = ("group", "batch", "none")
LR_SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine")
FAST_GENERATION_MODES = ("auto", "on", "off")
VLLM_MODES = ("colocate", "server")
DEVICES = ("auto", "cuda", "mps", "cpu")  # devices.py places them (it needs torch; this module does not)
DTYPES = ("auto", "bf16", "fp16", "fp32")
MAX_SEED = 2**32 - 1  # numpy's seed range, which transformers' set_seed also feeds

DEMO_DEFAULTS: dict[str, Any] = {
    # The ~0.5M-parameter tiny model after its supervised warm start (warm_start.py) on one-digit arithmetic:
    # every stage of a real run, and a held-out accuracy that rises, in well under a minute on two CPU cores.
    "dataset_id": "arithmetic:1",
    "output_dir": "ckpts/demo",
    "max_samples": 1024,
    "max_steps": 24,  # greedy held-out accuracy typically ~40% -> 85-100% by then
    "batch_size": 16,
    "num_generations": 4,
    "max_completion_length": 32,  # a worked completion is ~20 tokens: nothing is cut off
    "max_prompt_length": 256,
    "reward_funcs": ["format", "accuracy"],
    "learning_rate": 1e-3,
    "lora_r": 8,
    "lora_alpha": 16,
    "save_steps": 8,
    "eval_every": 8,
    "eval_samples": 64,  # held-out problems per eval: steps of 1.6 points
    "eval_before_train": True,
    "log_completions_steps": 4,
    "device": "cpu",  # the tiny model is faster on CPU than a GPU launch
}


class UsageError(ValueError):
    """A flag, or a combination of flags, that cannot work; the message is one line naming it."""


class TemplateKwargs(argparse.Action):
    """`--chat_template_kwargs enable_thinking=false max_depth=2`: KEY=VALUE words into a dict, each value read
    as YAML reads a scalar (false, 2, 0.5, text), so the flag and a YAML mapping give the same values."""

    def __call__(self, parser, namespace, values, option_string=None):
        import yaml

        out = {}
        for word in values:
            key, sep, text = word.partition("=")
            if not sep or not key:
                parser.error(f"{option_string} {word}: expected KEY=VALUE, e.g. enable_thinking=false")
            try:
                out[key] = yaml.safe_load(text) if text else ""
            except yaml.YAMLError:
                out[key] = text
        setattr(namespace, self.dest, out)


def _list(*items: Any) -> Any:
    return field(default_factory=lambda: list(items))


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a training run. Field names are main.py's flag names; see `main.py --help` for each."""

    # model
    model_id: str | None = None  # resolved: DEFAULT_MODEL, or with --demo the tiny model in OUTPUT_DIR/base_model
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    load_in_4bit: bool = False  # QLoRA: NF4 + double quantisation through bitsandbytes (quantize.py)
    # data
    dataset_id: str = DEFAULT_DATASET
    split: str = "train"
    max_samples: int | None = None
    max_prompt_length: int = 512  # tokens after the chat template; GSM8K's longest prompts are ~250
    prompt_template: str = DEFAULT_TEMPLATE
    prompt_lang: str = "en"
    system_prompt: str | None = None
    # extra variables for the chat template (Qwen3's enable_thinking): training, the length filter, eval, inference
    chat_template_kwargs: dict[str, Any] | None = None
    # LoRA
    lora_r: int = 16
    lora_alpha: float = 32
    lora_dropout: float = 0.0  # PEFT's default; see main.py's --lora_dropout
    lora_target_modules: list[str] = _list("all-linear")
    full_finetune: bool = False
    merge: bool = False
    export_gguf: bool = False  # final/ merged, as f16 and q8_0 GGUF files in the run directory (gguf_export.py)
    # GRPO optimisation
    learning_rate: float | None = None  # resolved: 1e-5 with LoRA, 1e-6 full fine-tuning (LoRA needs ~10x)
    num_train_epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    num_generations: int = 8
    beta: float = 0.0  # no KL term and no reference model: DAPO and Dr. GRPO found it unneeded for reasoning RL
    loss_type: str = "dapo"
    scale_rewards: str = "group"
    epsilon: float = 0.2
    epsilon_high: float | None = None
    delta: float | None = None  # INTELLECT-2's upper bound on the ratio of negative-advantage tokens; None = off
    importance_sampling_level: str = "token"  # sequence = GSPO
    mask_truncated_completions: bool = False  # DAPO: a cut-off completion adds nothing to the loss
    top_entropy_quantile: float = 1.0  # "Beyond the 80/20 rule": 0.2 trains on the top 20% entropy tokens only
    entropy_coef: float = 0.0  # entropy bonus in the loss; 0 = off
    num_iterations: int = 1
    warmup_ratio: float = 0.0
    lr_scheduler_type: str = "constant_with_warmup"
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = False
    reward_funcs: list[str] = _list(*DEFAULT_REWARDS)
    reward_weights: list[float] | None = None
    # generation
    max_completion_length: int = DEFAULT_MAX_COMPLETION_LENGTH
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 = no top-k filter
    min_p: float | None = None  # None = no min-p filter
    repetition_penalty: float = 1.0  # 1 = none; explicit so a model's generation_config.json cannot change it
    fast_generation: str = "auto"
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    vllm_gpu_memory_utilization: float = 0.3  # TRL's default: the share of the GPU vLLM takes when colocated
    # logging and evaluation
    logging_steps: int = 1
    report_to: list[str] = _list("tensorboard")
    log_completions_steps: int = 10
    eval_every: int = 0
    eval_samples: int = 64
    eval_split: str | None = None
    eval_before_train: bool = False
    # seconds every process waits at a meeting point while rank 0 alone works (the accuracy eval, a checkpoint
    # save): transformers' 1800 s default ends a launch whose in-run eval runs longer (a large --eval_samples
    # with long completions on a big model); a process that dies still ends the launch at once (torchrun)
    ddp_timeout: int = 7200
    # output
    output_dir: str = "ckpts/run"
    overwrite_output_dir: bool = False
    save_steps: int = 100
    save_total_limit: int | None = None
    resume_from_checkpoint: str | None = None
    resume_weights_only: bool = False  # a checkpoint without optimizer/RNG state resumes only when asked for
    resume_other_base_model: bool = False  # resuming onto a --model_id other than the run's base only when asked
    seed: int = 42
    debug: bool = False  # full tracebacks for errors in a user's code (rewards) instead of one line
    # how the settings were given
    demo: bool = False
    config: str | None = None
    # resolved, not flags (never written to run_config.json's "args")
    placement: Any = field(default=None, compare=False, repr=False)  # devices.Placement
    rewards: tuple[Callable, ...] = field(default=(), compare=False, repr=False)
    world_size: int = field(default=1, compare=False)
    build_tiny_model: bool = field(default=False, compare=False)  # --demo without --model_id
    resume_command: str | None = field(default=None, compare=False)  # main.py's, printed when a signal stops a run

    def to_record(self) -> dict:
        """The flag values, JSON-ready: run_config.json's "args"."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in FLAG_NAMES}

    @classmethod
    def from_record(cls, args: dict) -> "RunConfig":
        """The settings of an earlier run from its run_config.json "args", unchecked (eval reads, never trains);
        keys this version does not know are ignored, missing ones take today's defaults."""
        return cls(**{k: v for k, v in args.items() if k in FLAG_NAMES})

    @property
    def generation_batch(self) -> int:
        """Completions per optimizer step over all processes."""
        return self.batch_size * self.gradient_accumulation_steps * self.world_size


_RESOLVED = {"placement", "rewards", "world_size", "build_tiny_model", "resume_command"}
FLAG_NAMES = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in _RESOLVED)
DEFAULTS: dict[str, Any] = {f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING
                                     else f.default) for f in dataclasses.fields(RunConfig) if f.name in FLAG_NAMES}

# Ranges and closed sets, by flag. Types come from the annotations above; these are the values within a type.
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    **{name: (lambda v: v >= 1, "a positive integer") for name in (
        "max_samples", "max_prompt_length", "lora_r", "batch_size", "gradient_accumulation_steps", "num_iterations",
        "max_completion_length", "logging_steps", "log_completions_steps", "eval_samples", "save_steps",
        "save_total_limit", "ddp_timeout")},
    **{name: (lambda v: v > 0, "a positive number") for name in (
        "lora_alpha", "learning_rate", "num_train_epochs", "epsilon", "epsilon_high", "temperature", "max_grad_norm")},
    "num_generations": (lambda v: v >= 2, "at least 2: GRPO needs at least 2 completions per prompt"),
    "max_steps": (lambda v: v >= 1 or v == -1, "a positive number of steps (or -1 for epochs)"),
    "eval_every": (lambda v: v >= 0, ">= 0 (0 = never)"),
    "beta": (lambda v: v >= 0, ">= 0"),
    "top_p": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "top_k": (lambda v: v >= 0, ">= 0 (0 = no top-k filter)"),
    "min_p": (lambda v: 0 <= v <= 1, "in [0, 1] (typical: 0.01 to 0.2)"),
    "repetition_penalty": (lambda v: 0 < v <= 10, "in (0, 10] (1 = none; above 1 discourages repeats)"),
    "top_entropy_quantile": (lambda v: 0 <= v <= 1, "in [0, 1] (1 = every token; the paper uses 0.2)"),
    "entropy_coef": (lambda v: 0 <= v <= 1, "in [0, 1] (0 = no entropy bonus; typical: 0.001 to 0.01)"),
    "delta": (lambda v: v > 1, "above 1 (a bound on the policy ratio; INTELLECT-2 uses 4)"),
    "vllm_gpu_memory_utilization": (lambda v: 0 < v <= 1, "in (0, 1] (the share of GPU memory vLLM takes)"),
    "importance_sampling_level": (lambda v: v in IMPORTANCE_SAMPLING_LEVELS,
                                  f"one of {', '.join(IMPORTANCE_SAMPLING_LEVELS)} (sequence = GSPO)"),
    "chat_template_kwargs": (lambda v: all(isinstance(k, str) and k.isidentifier() for k in v),
                             "a mapping of template variable names (identifiers) to values"),
    "lora_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "warmup_ratio": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "seed": (lambda v: 0 <= v <= MAX_SEED, f"in 0..{MAX_SEED}"),
    "device": (lambda v: v in DEVICES, f"one of {', '.join(DEVICES)}"),
    "dtype": (lambda v: v in DTYPES, f"one of {', '.join(DTYPES)}"),
    "loss_type": (lambda v: v in LOSS_TYPES, f"one of {', '.join(LOSS_TYPES)}"),
    "scale_rewards": (lambda v: v in SCALE_REWARDS, f"one of {', '.join(SCALE_REWARDS)}"),
    "lr_scheduler_type": (lambda v: v in LR_SCHEDULERS, f"one of {', '.join(LR_SCHEDULERS)}"),
    "fast_generation": (lambda v: v in FAST_GENERATION_MODES, f"one of {', '.join(FAST_GENERATION_MODES)}"),
    "vllm_mode": (lambda v: v in VLLM_MODES, f"one of {', '.join(VLLM_MODES)}"),
    "reward_funcs": (lambda v: len(v) >= 1, "at least one reward"),
    "lora_target_modules": (lambda v: len(v) >= 1, "at least one module name"),
}


def shown(value: Any, limit: int = 200) -> str:
    """`repr(value)` cut to about `limit` characters, built without ever expanding more than that: an error
    message never holds a 50 MB string or a list of millions."""
    if isinstance(value, (list, tuple)):
        parts, size = [], 0
        for item in value:
            parts.append(shown(item, limit))
            size += len(parts[-1]) + 2
            if size > limit:
                return "[" + ", ".join(parts)[:limit] + f"... ({len(value)} items)]"
        return "[" + ", ".join(parts) + "]"
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + f"... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _flag(name: str, value: Any, origin: dict[str, str]) -> str:
    flat = isinstance(value, list) and len(value) <= 50 and not any(isinstance(v, (list, dict)) for v in value)
    shown_value = " ".join(map(str, value)) if flat else None if isinstance(value, (list, dict, tuple)) else value
    if shown_value is None or len(str(shown_value)) > 200:
        shown_value = shown(value)
    where = f" (from {origin[name]})" if name in origin else ""
    return f"--{name} {shown_value}{where}"


def _kind_ok(value: Any, kind: Any) -> bool:
    """Whether `value` fits a field annotation: int, float, bool, str, list[...] and `X | None`."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return any(_kind_ok(value, k) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        return isinstance(value, list) and all(_kind_ok(v, item) for v in value)
    if typing.get_origin(kind) is dict:  # chat_template_kwargs: names to JSON scalars
        return isinstance(value, dict) and all(
            isinstance(k, str) and (v is None or isinstance(v, (bool, str)) or _kind_ok(v, float))
            for k, v in value.items())
    if kind is float:  # an int is a float here (YAML's `learning_rate: 1`), a bool never is
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind) if isinstance(kind, type) else True


def _kind_name(kind: Any) -> str:
    names = {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}
    if typing.get_origin(kind) is dict:
        return "a mapping of names to true/false, numbers or strings"
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        return " or ".join(_kind_name(k) for k in typing.get_args(kind) if k is not type(None))
    if typing.get_origin(kind) is list:
        return f"a list of {_kind_name(typing.get_args(kind)[0]).removeprefix('an ').removeprefix('a ')}s"
    return names.get(kind, str(kind))


_HINTS = typing.get_type_hints(RunConfig)


def check_values(values: dict[str, Any], origin: dict[str, str] | None = None) -> dict[str, Any]:
    """Type and range of every flag value; returns them with ints widened to floats where a float is meant
    and a single string where a list is meant made a one-item list. Raises UsageError naming the first bad one."""
    origin = origin or {}
    unknown = sorted(set(values) - set(FLAG_NAMES))
    if unknown:
        raise UsageError(f"unknown setting(s) {', '.join(unknown)}; settings are flag names, e.g. learning_rate")
    out = {}
    for name, value in values.items():
        kind = _HINTS[name]
        list_kind = next((k for k in (kind, *typing.get_args(kind)) if typing.get_origin(k) is list), None)
        if isinstance(value, str) and list_kind is not None:
            value = [value]  # YAML `reward_funcs: accuracy` means what `--reward_funcs accuracy` means
        if not _kind_ok(value, kind):
            item = typing.get_args(list_kind)[0] if list_kind is not None and isinstance(value, list) else None
            bad = next((v for v in value if not _kind_ok(v, item)), value) if item is not None else value
            what = _kind_name(item) if item is not None and bad is not value else _kind_name(kind)
            raise UsageError(f"{_flag(name, value, origin)}: {shown(bad)} is not {what}")
        if float in (kind, *typing.get_args(kind)) and isinstance(value, int):
            value = float(value)
        if list_kind == list[float] and isinstance(value, list):
            value = [float(v) for v in value]
        rule = _RULES.get(name)
        if rule and value is not None and not rule[0](value):
            raise UsageError(f"{_flag(name, value, origin)} must be {rule[1]}")
        out[name] = value
    return out
