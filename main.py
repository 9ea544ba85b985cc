"""Train a small language model at math with GRPO (TRL's GRPOTrainer) and LoRA: the command-line entry point.

    python main.py --demo                                   # offline: tiny model, built-in task, CPU, < 60 s
    python main.py --model_id Qwen/Qwen2.5-0.5B-Instruct --dataset_id openai/gsm8k \
        --output_dir ckpts/qwen05-gsm8k --num_generations 8 --max_completion_length 256
    python main.py --config configs/qwen2.5-0.5b-gsm8k.yaml --learning_rate 2e-5   # the command line wins
    accelerate launch --config_file configs/accelerate/ddp.yaml main.py --config ...  # several GPUs

This file only parses and checks. Every flag is checked against the others here, before any model or dataset
loads, and a bad one stops the run with one line naming it (exit code 2). Then `train.run` does the work.
Precedence of settings: the `--demo` defaults, then the `--config` YAML file, then the command line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

import yaml

DEMO_DEFAULTS = {
    # A ~0.5M-parameter random model on one-line arithmetic problems: every stage of a real run in ~20 s on CPU.
    "dataset_id": "arithmetic",
    "output_dir": "ckpts/demo",
    "max_samples": 256,
    "max_steps": 24,
    "batch_size": 16,
    "num_generations": 4,
    "max_completion_length": 32,
    "max_prompt_length": 256,
    # format and accuracy stay at 0 for a random model (the demo's warnings say so); tag_count's partial credit
    # for stray <think>/<answer> tags is something it can learn: its mean rises from 0 to ~0.1 in 24 steps
    "reward_funcs": ["format", "accuracy", "tag_count"],
    "learning_rate": 5e-3,  # a random tiny model needs large steps to move visibly in 24 updates
    "lora_r": 8,
    "lora_alpha": 16,
    "save_steps": 8,
    "eval_every": 8,
    "eval_samples": 16,
    "eval_before_train": True,
    "log_completions_steps": 4,
    "device": "cpu",  # the tiny model is faster on CPU than a GPU launch
}


class UsageError(ValueError):
    """A flag, or a combination of flags, that cannot work."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The whole CLI, in groups; the reward choices come from the reward registry itself."""
    from reward import REWARD_FUNCS  # light import: no model, no math-verify work

    from data_utils import LANGS, TEMPLATES
    from devices import HelpFormatter, add_device_flags

    p = argparse.ArgumentParser(
        prog="main.py",
        description="GRPO + LoRA math-reasoning trainer (TRL GRPOTrainer, PEFT).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of flag names to values; command-line flags win")
    p.add_argument("--demo", action="store_true", help="offline demo: tiny built-in model, arithmetic task, CPU")

    g = p.add_argument_group("model")
    g.add_argument("--model_id", help="hub id or local directory of a causal LM (default: Qwen/Qwen2.5-0.5B-Instruct; "
                                      "with --demo, a tiny model built into OUTPUT_DIR/base_model)")
    add_device_flags(g, "train")
    g.add_argument("--trust_remote_code", action="store_true", help="allow model code from the hub repository")

    g = p.add_argument_group("data")
    g.add_argument("--dataset_id", default="openai/gsm8k",
                   help="openai/gsm8k, AI-MO/NuminaMath-TIR, HuggingFaceH4/MATH-500, arithmetic (built-in), "
                        "a .jsonl/.json/.parquet/.csv file, or a directory with train.jsonl/test.jsonl")
    g.add_argument("--split", default="train", help="training split, datasets slicing allowed (train[:10%%])")
    g.add_argument("--max_samples", type=_positive_int, help="use at most this many training rows (default: all)")
    g.add_argument("--max_prompt_length", type=_positive_int, default=512,
                   help="drop training prompts longer than this many tokens (after the chat template)")
    g.add_argument("--prompt_template", default="think", choices=list(TEMPLATES),
                   help="think: chat, <think>/<answer>; r1_zero: plain text for base models; qwen_math: \\boxed{}")
    g.add_argument("--prompt_lang", default="en", choices=list(LANGS), help="language of the prompt template")
    g.add_argument("--system_prompt", help="replace the template's system prompt with this text")

    g = p.add_argument_group("LoRA")
    g.add_argument("--lora_r", type=_positive_int, default=16, help="LoRA rank")
    g.add_argument("--lora_alpha", type=_positive_float, default=32, help="LoRA scale numerator (scale = alpha/r)")
    g.add_argument("--lora_dropout", type=float, default=0.05, help="dropout on the LoRA input, 0 to 1")
    g.add_argument("--lora_target_modules", nargs="+", default=["all-linear"],
                   help="module names to adapt (q_proj v_proj ...) or all-linear")
    g.add_argument("--full_finetune", action="store_true", help="train all weights instead of a LoRA adapter")
    g.add_argument("--merge", action="store_true", help="also write a merged full model to OUTPUT_DIR/final/merged")

    g = p.add_argument_group("GRPO optimisation")
    g.add_argument("--learning_rate", type=_positive_float,
                   help="peak learning rate (default: 1e-5 with LoRA, 1e-6 full fine-tuning: LoRA needs ~10x)")
    g.add_argument("--num_train_epochs", type=_positive_float, default=1.0, help="passes over the training prompts")
    g.add_argument("--max_steps", type=int, default=-1, help="optimizer steps; overrides epochs when > 0")
    g.add_argument("--batch_size", "--per_device_train_batch_size", dest="batch_size", type=_positive_int, default=8,
                   help="completions per device per micro-step (a multiple of --num_generations, or the "
                        "accumulated batch must be)")
    g.add_argument("--gradient_accumulation_steps", type=_positive_int, default=1, help="micro-steps per update")
    g.add_argument("--num_generations", type=int, default=8, help="completions per prompt (the GRPO group), >= 2")
    g.add_argument("--beta", type=float, default=0.0, help="KL penalty to the reference model; 0 = no reference")
    g.add_argument("--loss_type", default="dapo",
                   choices=["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"], help="loss aggregation (TRL)")
    g.add_argument("--scale_rewards", default="group", choices=["group", "batch", "none"],
                   help="divide advantages by the reward std of the group, the batch, or not at all (Dr. GRPO)")
    g.add_argument("--epsilon", type=_positive_float, default=0.2, help="lower clip range of the policy ratio")
    g.add_argument("--epsilon_high", type=_positive_float, help="upper clip range (DAPO clip-higher); default epsilon")
    g.add_argument("--num_iterations", type=_positive_int, default=1,
                   help="optimisation passes per generation batch (1 = strictly on-policy)")
    g.add_argument("--warmup_ratio", type=float, default=0.0, help="share of steps with linear warm-up, 0 to 1")
    g.add_argument("--lr_scheduler_type", default="constant_with_warmup",
                   choices=["constant", "constant_with_warmup", "linear", "cosine"], help="learning-rate schedule")
    g.add_argument("--max_grad_norm", type=_positive_float, default=1.0, help="gradient clipping norm")
    g.add_argument("--gradient_checkpointing", action="store_true", help="trade compute for memory")
    g.add_argument("--reward_funcs", nargs="+", default=["format", "accuracy"],
                   help=f"rewards to sum: {', '.join(sorted(REWARD_FUNCS))}, or file.py:fn / package.module:fn")
    g.add_argument("--reward_weights", nargs="+", type=float, help="one weight per reward (default: all 1.0)")

    g = p.add_argument_group("generation")
    g.add_argument("--max_completion_length", type=_positive_int, default=256, help="tokens per completion")
    g.add_argument("--temperature", type=_positive_float, default=1.0, help="sampling temperature for rollouts")
    g.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass, (0, 1]")
    g.add_argument("--fast_generation", default="auto", choices=["auto", "on", "off"],
                   help="rollout.py generation (merged LoRA copy, static cache + torch.compile on CUDA); "
                        "auto = on for LoRA and full fine-tuning without vLLM")
    g.add_argument("--use_vllm", action="store_true", help="generate with TRL's vLLM integration (needs vllm)")
    g.add_argument("--vllm_mode", default="colocate", choices=["colocate", "server"],
                   help="colocate: vLLM in this process; server: a `trl vllm-serve` on another GPU")

    g = p.add_argument_group("logging and evaluation")
    g.add_argument("--logging_steps", type=_positive_int, default=1, help="log metrics every N optimizer steps")
    g.add_argument("--report_to", nargs="+", default=["tensorboard"],
                   help="tensorboard, wandb, none, ... (TensorBoard files go to OUTPUT_DIR/runs)")
    g.add_argument("--log_completions_steps", type=_positive_int, default=10,
                   help="write sampled completions to completions.jsonl and TensorBoard every N steps")
    g.add_argument("--eval_every", type=int, default=0, help="greedy accuracy eval every N steps; 0 = never")
    g.add_argument("--eval_samples", type=_positive_int, default=64, help="problems per accuracy eval")
    g.add_argument("--eval_split", help="split for accuracy eval (default: the dataset's test split)")
    g.add_argument("--eval_before_train", action=argparse.BooleanOptionalAction, default=False,
                   help="score the starting model first")

    g = p.add_argument_group("output")
    g.add_argument("--output_dir", default="ckpts/run", help="run directory (checkpoints, logs, plots, final/)")
    g.add_argument("--overwrite_output_dir", action="store_true", help="replace a run already in --output_dir")
    g.add_argument("--save_steps", type=_positive_int, default=100, help="write checkpoint-N every N steps")
    g.add_argument("--save_total_limit", type=_positive_int, help="keep only the newest N checkpoints")
    g.add_argument("--resume_from_checkpoint", help="a checkpoint-N directory, or 'latest' in --output_dir")
    g.add_argument("--seed", type=int, default=42, help="random seed for data order, sampling and init")
    return p


def _load_config_file(path: str, parser: argparse.ArgumentParser) -> dict:
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as e:
        raise UsageError(f"--config {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: expected a mapping of flag names to values")
    known = {a.dest for a in parser._actions} | {"per_device_train_batch_size"}
    unknown = sorted(set(data) - known - {"config", "help"})
    if unknown:
        raise UsageError(f"--config {path}: unknown key(s) {', '.join(unknown)}; keys are flag names, e.g. learning_rate")
    if "per_device_train_batch_size" in data:
        data["batch_size"] = data.pop("per_device_train_batch_size")
    actions = {a.dest: a for a in parser._actions}
    for key, value in data.items():  # YAML reads 1e-5 as a string: convert as the flag would
        convert = actions[key].type
        try:
            if convert and isinstance(value, str):
                data[key] = convert(value)
            elif convert and isinstance(value, list):
                data[key] = [convert(v) if isinstance(v, str) else v for v in value]
        except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
            raise UsageError(f"--config {path}: {key}: {value!r} is not valid ({e})") from None
        choices = actions[key].choices
        values = data[key] if isinstance(data[key], list) else [data[key]]
        if choices and any(v not in choices for v in values):
            raise UsageError(f"--config {path}: {key}: {data[key]!r} is not one of {', '.join(map(str, choices))}")
    return data


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse with the precedence demo < config file < command line, then validate."""
    parser = build_parser()
    first = parser.parse_args(argv)
    defaults: dict = {}
    if first.demo:
        defaults.update(DEMO_DEFAULTS)
    if first.config:
        defaults.update(_load_config_file(first.config, parser))
    if defaults:
        parser.set_defaults(**defaults)
        args = parser.parse_args(argv)
    else:
        args = first
    validate_args(args)
    return args


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists()


def _is_demo_run(run_dir: Path) -> bool:
    try:
        return bool(json.loads((run_dir / "run_config.json").read_text())["args"].get("demo"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def validate_args(args: argparse.Namespace) -> None:
    """Cross-flag checks, before anything heavy loads. Raises UsageError (or a subclass of ValueError)."""
    from data_utils import check_dataset_id, is_offline_source, load_math_dataset
    from devices import resolve_placement
    from reward import load_reward_funcs

    if args.num_generations < 2:
        raise UsageError(f"--num_generations {args.num_generations}: GRPO needs at least 2 completions per prompt")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    gen_batch = args.batch_size * args.gradient_accumulation_steps * world
    if gen_batch % args.num_generations:
        divisors = [d for d in range(2, gen_batch + 1) if gen_batch % d == 0]
        hint = min(divisors, key=lambda d: (abs(d - args.num_generations), -d)) if divisors else None
        raise UsageError(
            f"--num_generations {args.num_generations} must divide the generation batch {gen_batch} "
            f"(--batch_size {args.batch_size} x --gradient_accumulation_steps {args.gradient_accumulation_steps}"
            + (f" x {world} processes" if world > 1 else "")
            + ")" + (f"; try --num_generations {hint}" if hint else "")
        )
    names = args.reward_funcs
    load_reward_funcs(names, max_completion_length=args.max_completion_length)  # unknown names fail here
    if args.reward_weights is not None and len(args.reward_weights) != len(names):
        raise UsageError(
            f"--reward_weights has {len(args.reward_weights)} value(s) but --reward_funcs has {len(names)} "
            f"({' '.join(names)}); give one weight per reward"
        )
    if not 0 < args.top_p <= 1:
        raise UsageError(f"--top_p {args.top_p} must be in (0, 1]")
    if not 0 <= args.lora_dropout < 1:
        raise UsageError(f"--lora_dropout {args.lora_dropout} must be in [0, 1)")
    if not 0 <= args.warmup_ratio < 1:
        raise UsageError(f"--warmup_ratio {args.warmup_ratio} must be in [0, 1)")
    if args.beta < 0:
        raise UsageError(f"--beta {args.beta} must be >= 0")
    if args.eval_every < 0:
        raise UsageError(f"--eval_every {args.eval_every} must be >= 0 (0 = never)")
    if args.max_steps == 0 or args.max_steps < -1:
        raise UsageError(f"--max_steps {args.max_steps} must be a positive number of steps (or -1 for epochs)")
    if args.merge and args.full_finetune:
        raise UsageError("--merge applies to LoRA runs; a --full_finetune run's final/ is already a full model")
    if args.use_vllm and importlib.util.find_spec("vllm") is None:
        raise UsageError("--use_vllm: vllm is not installed here; pip install vllm, or drop --use_vllm")
    if args.use_vllm and args.fast_generation == "on":
        raise UsageError("--fast_generation on and --use_vllm both choose the generator; pick one")
    if args.model_id and _looks_like_path(args.model_id) and not Path(args.model_id).expanduser().exists():
        raise UsageError(f"--model_id {args.model_id}: no such directory (a hub id looks like Org/Name)")
    check_dataset_id(args.dataset_id)
    if is_offline_source(args.dataset_id):  # columns and split of a local file are cheap to check now
        load_math_dataset(args.dataset_id, args.split, max_samples=1, prompt_template=args.prompt_template,
                          prompt_lang=args.prompt_lang, system_prompt=args.system_prompt, seed=args.seed)
    resume = args.resume_from_checkpoint
    if resume and resume != "latest" and not Path(resume).is_dir():
        raise UsageError(f"--resume_from_checkpoint {resume}: no such checkpoint directory (or use 'latest')")
    out = Path(args.output_dir)
    if args.demo and not resume and _is_demo_run(out):
        args.overwrite_output_dir = True  # rerunning the demo replaces the previous demo run, and only that
    if (out / "run_config.json").exists() and not (resume or args.overwrite_output_dir):
        raise UsageError(
            f"--output_dir {out} already holds a run; pass --resume_from_checkpoint latest to continue it, "
            "--overwrite_output_dir to replace it, or another --output_dir"
        )
    args.placement = resolve_placement(args.device, args.dtype)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except ValueError as e:  # UsageError, DatasetError, RewardError, DeviceError: all one-line, user-facing
        print(f"main.py: error: {e}", file=sys.stderr)
        return 2
    import train  # heavy imports (torch, transformers, trl) only after the flags are known to be good

    try:
        train.run(args)
    except train.RunError as e:
        print(f"main.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
