"""Train a small language model at math with GRPO (TRL's GRPOTrainer) and LoRA: the command-line entry point.

    python main.py --demo                                   # offline: tiny model, built-in task, CPU, < 60 s
    python main.py --model_id Qwen/Qwen2.5-0.5B-Instruct --dataset_id openai/gsm8k \
        --output_dir ckpts/qwen05-gsm8k --num_generations 8 --max_completion_length 256
    python main.py --config configs/qwen2.5-0.5b-gsm8k.yaml --learning_rate 2e-5   # the command line wins
    accelerate launch --config_file configs/accelerate/ddp.yaml main.py --config ...  # several GPUs
    torchrun --nproc_per_node 2 main.py --demo                                        # two processes

This file only parses. Precedence of settings: the `--demo` defaults, then the `--config` YAML file, then the
command line. `grpo_math.training.checks.resolve` then checks every value, whatever its source, and every flag
against the others, before any model or dataset loads: a bad one stops the run with one line naming it
(exit code 2). Then `train.run` does the work with the frozen config. Exit codes: 0 done, 2 a one-line error,
143 / 130 stopped by SIGTERM / SIGINT after saving a checkpoint (the resume command is printed). Under several
processes each one checks the flags and prints its own error, and a failing one waits for the others to reach
their exit too (launch.exit_together), so the launcher stops none of them half-way.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import shlex
import sys
from pathlib import Path

from grpo_math import config, safe_yaml
from grpo_math.cli import FlagParser, HelpFormatter, add_device_flags
from grpo_math.config import DEMO_DEFAULTS, RunConfig, UsageError  # DEMO_DEFAULTS: tests, users


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def build_parser() -> FlagParser:
    """The whole CLI, in groups, with its table of flags (`.flags`); the reward choices come from the reward
    registry itself."""
    from grpo_math.data.prompts import LANGS, TEMPLATES
    from grpo_math.rewards import REWARD_FUNCS  # light import: no model, no math-verify work

    p = FlagParser(  # p.flags: the table of flags, for the YAML file and the resume command
        prog="main.py",
        description="GRPO + LoRA math-reasoning trainer (TRL GRPOTrainer, PEFT).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file of flag names to values; command-line flags win")
    p.add_argument("--demo", action="store_true", help="offline demo: tiny built-in model, arithmetic task, CPU")

    g = p.add_argument_group("model")
    g.add_argument("--model_id", help=f"hub id, local directory or .gguf file of a causal LM "
                                       f"(default: {config.DEFAULT_MODEL}; "
                                       "with --demo, a tiny model built into OUTPUT_DIR/base_model)")
    add_device_flags(g, "train")
    g.add_argument("--trust_remote_code", action="store_true", help="allow model code from the hub repository")
    g.add_argument("--load_in_4bit", action="store_true",
                   help="QLoRA: the base model in 4 bits (NF4, double quantisation; bitsandbytes), LoRA on top; "
                        "--merge reloads the base unquantised; not with --full_finetune or --use_vllm")

    g = p.add_argument_group("data")
    g.add_argument("--dataset_id",
                   help="openai/gsm8k, AI-MO/NuminaMath-TIR, HuggingFaceH4/MATH-500, arithmetic (built-in), "
                        "a .jsonl/.json/.parquet/.csv file, or a directory with train.jsonl/test.jsonl")
    g.add_argument("--split", help="training split, datasets slicing allowed (train[:10%%])")
    g.add_argument("--max_samples", type=_positive_int, help="use at most this many training rows (default: all)")
    g.add_argument("--max_prompt_length", type=_positive_int,
                   help="drop training prompts longer than this many tokens (after the chat template)")
    g.add_argument("--prompt_template", choices=list(TEMPLATES),
                   help="think: chat, <think>/<answer>; r1_zero: plain text for base models; qwen_math: \\boxed{}")
    g.add_argument("--prompt_lang", choices=list(LANGS), help="language of the prompt template")
    g.add_argument("--system_prompt", help="replace the template's system prompt with this text")
    g.add_argument("--chat_template_kwargs", nargs="+", action=config.TemplateKwargs, metavar="KEY=VALUE",
                   help="variables for the chat template, e.g. enable_thinking=false (Qwen3); training prompts, "
                        "the length filter, the accuracy eval, eval.py and inference.py all see them (default: none)")

    g = p.add_argument_group("LoRA")
    g.add_argument("--lora_r", type=_positive_int, help="LoRA rank")
    g.add_argument("--lora_alpha", type=_positive_float, help="LoRA scale numerator (scale = alpha/r)")
    g.add_argument("--lora_dropout", type=float,
                   help="dropout on the LoRA input, 0 to 1 (default 0, PEFT's: rollouts sample without dropout, so "
                        "dropout in the loss pass trains a policy other than the one sampled, and on CPU it was a "
                        "third of a SmolLM2 step)")
    g.add_argument("--lora_target_modules", nargs="+",
                   help="module names to adapt (q_proj v_proj ...) or all-linear")
    g.add_argument("--full_finetune", action="store_true", help="train all weights instead of a LoRA adapter")
    g.add_argument("--merge", action="store_true", help="also write a merged full model to OUTPUT_DIR/final/merged")
    g.add_argument("--export_gguf", action="store_true",
                   help="also write the merged final model as OUTPUT_DIR/final.f16.gguf and final.q8_0.gguf "
                        "(llama.cpp, Ollama; Llama and Qwen2 models); later: python export_gguf.py RUN_DIR")

    g = p.add_argument_group("GRPO optimisation")
    g.add_argument("--learning_rate", type=_positive_float,
                   help="peak learning rate (default: 1e-5 with LoRA, 1e-6 full fine-tuning: LoRA needs ~10x)")
    g.add_argument("--num_train_epochs", type=_positive_float, help="passes over the training prompts")
    g.add_argument("--max_steps", type=int, help="optimizer steps; overrides epochs when > 0")
    g.add_argument("--batch_size", "--per_device_train_batch_size", dest="batch_size", type=_positive_int,
                   help="completions per device per micro-step (a multiple of --num_generations, or the "
                        "accumulated batch must be)")
    g.add_argument("--gradient_accumulation_steps", type=_positive_int, help="micro-steps per update")
    g.add_argument("--num_generations", type=int, help="completions per prompt (the GRPO group), >= 2")
    g.add_argument("--beta", type=float, help="KL penalty to the reference model; 0 = no reference")
    g.add_argument("--loss_type", choices=list(config.LOSS_TYPES),
                   help="loss aggregation (TRL); luspo goes with --importance_sampling_level sequence")
    g.add_argument("--scale_rewards", choices=list(config.SCALE_REWARDS),
                   help="divide advantages by the reward std of the group, the batch, or not at all (Dr. GRPO)")
    g.add_argument("--epsilon", type=_positive_float, help="lower clip range of the policy ratio")
    g.add_argument("--epsilon_high", type=_positive_float, help="upper clip range (DAPO clip-higher); default epsilon")
    g.add_argument("--delta", type=float,
                   help="two-sided clipping (INTELLECT-2): upper bound on the ratio, > 1 + epsilon (default: off)")
    g.add_argument("--importance_sampling_level", choices=list(config.IMPORTANCE_SAMPLING_LEVELS),
                   help="policy ratio per token, or one per sequence (sequence = GSPO) (default: token)")
    g.add_argument("--mask_truncated_completions", action=argparse.BooleanOptionalAction,
                   help="leave completions cut off at --max_completion_length out of the loss (DAPO) (default: off)")
    g.add_argument("--top_entropy_quantile", type=float,
                   help="train only on this top share of tokens by entropy, 0 to 1 (default 1 = all; paper: 0.2)")
    g.add_argument("--entropy_coef", type=float,
                   help="weight of an entropy bonus in the loss, 0 to 1 (default 0 = off; typical 0.001-0.01)")
    g.add_argument("--num_iterations", type=_positive_int,
                   help="optimisation passes per generation batch (1 = strictly on-policy)")
    g.add_argument("--warmup_ratio", type=float, help="share of steps with linear warm-up, 0 to 1")
    g.add_argument("--lr_scheduler_type", choices=list(config.LR_SCHEDULERS), help="learning-rate schedule")
    g.add_argument("--max_grad_norm", type=_positive_float, help="gradient clipping norm")
    g.add_argument("--gradient_checkpointing", action=argparse.BooleanOptionalAction,
                   help="keep only each layer's input and recompute its forward in the backward: activation "
                        "memory drops to about one layer's worth (the estimate printed at start shows it), for a "
                        "second forward pass per step (roughly a third more compute); off by default")
    g.add_argument("--reward_funcs", nargs="+",
                   help=f"rewards to sum: {', '.join(sorted(REWARD_FUNCS))}, or file.py:fn / package.module:fn")
    g.add_argument("--reward_weights", nargs="+", type=float, help="one weight per reward (default: all 1.0)")

    g = p.add_argument_group("generation")
    g.add_argument("--max_completion_length", type=_positive_int, help="tokens per completion")
    g.add_argument("--temperature", type=_positive_float, help="sampling temperature for rollouts")
    g.add_argument("--top_p", type=float, help="nucleus sampling mass, (0, 1]")
    g.add_argument("--top_k", type=int, help="sample from the k likeliest tokens only (default 0 = no filter)")
    g.add_argument("--min_p", type=float,
                   help="drop tokens below this share of the likeliest token's probability, 0 to 1 (default: off)")
    g.add_argument("--repetition_penalty", type=float,
                   help="above 1 discourages repeating prompt and earlier tokens, (0, 10] (default 1 = none)")
    g.add_argument("--fast_generation", choices=list(config.FAST_GENERATION_MODES),
                   help="rollout.py generation (merged LoRA copy, static cache + torch.compile on CUDA); "
                        "auto = on for LoRA and full fine-tuning without vLLM")
    g.add_argument("--use_vllm", action="store_true", help="generate with TRL's vLLM integration (needs vllm)")
    g.add_argument("--vllm_mode", choices=list(config.VLLM_MODES),
                   help="colocate: vLLM in this process; server: a `trl vllm-serve` on another GPU")
    g.add_argument("--vllm_gpu_memory_utilization", type=float,
                   help="with --use_vllm --vllm_mode colocate: share of GPU memory vLLM takes, (0, 1] (default 0.3)")

    g = p.add_argument_group("logging and evaluation")
    g.add_argument("--logging_steps", type=_positive_int, help="log metrics every N optimizer steps")
    g.add_argument("--report_to", nargs="+",
                   help="tensorboard, wandb, none, ... (TensorBoard files go to OUTPUT_DIR/runs)")
    g.add_argument("--log_completions_steps", type=_positive_int,
                   help="write sampled completions to completions.jsonl and TensorBoard every N steps")
    g.add_argument("--eval_every", type=int, help="greedy accuracy eval every N steps; 0 = never")
    g.add_argument("--eval_samples", type=_positive_int, help="problems per accuracy eval")
    g.add_argument("--eval_split", help="split for accuracy eval (default: the dataset's test split)")
    g.add_argument("--eval_before_train", action=argparse.BooleanOptionalAction,
                   help="score the starting model first")
    g.add_argument("--ddp_timeout", type=_positive_int, metavar="SECONDS",
                   help="several processes on GPUs: how long the others wait while rank 0 runs the accuracy eval "
                        "or saves; raise it when one eval takes longer")
    g.add_argument("--debug", action="store_true",
                   help="show the full traceback of an error in your own code (a reward) instead of one line")

    g = p.add_argument_group("output")
    g.add_argument("--output_dir", help="run directory (checkpoints, logs, plots, final/)")
    g.add_argument("--overwrite_output_dir", action="store_true", help="replace a run already in --output_dir")
    g.add_argument("--save_steps", type=_positive_int, help="write checkpoint-N every N steps")
    g.add_argument("--save_total_limit", type=_positive_int, help="keep only the newest N checkpoints")
    g.add_argument("--resume_from_checkpoint",
                   help="a checkpoint-N directory, or 'latest': the newest complete one in --output_dir")
    g.add_argument("--resume_weights_only", action="store_true",
                   help="resume from a checkpoint that lacks optimizer.pt or rng_state.pth: its weights and step, "
                        "with a fresh optimizer and random state (the run will not match an uninterrupted one)")
    g.add_argument("--resume_other_base_model", action="store_true",
                   help="resume onto a --model_id other than the base the run was trained from (the adapter is "
                        "then applied to weights it was not trained with)")
    g.add_argument("--seed", type=int, help="random seed for data order, sampling and init")
    p.set_defaults(**copy.deepcopy(config.DEFAULTS))  # every default is declared once, in config.RunConfig
    return p


def _read_config_file(argv: list[str] | None) -> tuple[str, dict] | None:
    """The `--config` file's path and mapping, read before the parser (which imports torch) is built: a file
    that cannot be used (an alias bomb, a key given twice) fails in a fraction of a second and a few MB."""
    words, path = list(sys.argv[1:] if argv is None else argv), None
    for i, word in enumerate(words):  # the last one wins, as in argparse; argparse itself checks the rest
        if word == "--config" and i + 1 < len(words):
            path = words[i + 1]
        elif word.startswith("--config="):
            path = word.partition("=")[2]
    return None if path is None else (path, safe_yaml.load_config(path))


def _load_config_file(path: str, parser: FlagParser, data: dict) -> dict:
    """The flag values of a `--config` YAML file (safe_yaml.load_config's mapping): keys checked against the
    flags, strings converted as the flag would convert them (YAML reads 1e-5 as a string), choices checked;
    ranges are config.resolve's job."""
    known = set(parser.flags) | {"per_device_train_batch_size"}
    unknown = sorted(str(k)[:80] for k in set(data) - known - {"config", "help"})
    if unknown:
        raise UsageError(f"--config {path}: unknown key(s) {', '.join(unknown)}; keys are flag names, "
                         "e.g. learning_rate")
    if "per_device_train_batch_size" in data:
        data["batch_size"] = data.pop("per_device_train_batch_size")
    actions = parser.flags
    for key, value in data.items():
        convert = actions[key].type
        try:
            if convert and isinstance(value, str):
                data[key] = convert(value)
            elif convert and isinstance(value, list):
                data[key] = [convert(v) if isinstance(v, str) else v for v in value]
        except (TypeError, ValueError, argparse.ArgumentTypeError) as e:
            raise UsageError(f"--config {path}: {key}: {config.shown(value)} is not valid ({e})") from None
        choices = actions[key].choices
        values = data[key] if isinstance(data[key], list) else [data[key]]
        if choices and any(v not in choices for v in values):
            raise UsageError(f"--config {path}: {key}: {config.shown(data[key])} is not one of "
                             f"{', '.join(map(str, choices))}")
    return data


def _given_on_command_line(parser: FlagParser, argv: list[str] | None) -> dict:
    """The flags the command line itself sets (not the defaults), with their values."""
    unset = object()
    probe = copy.deepcopy(parser)
    probe.set_defaults(**{dest: unset for dest in probe.flags if dest != "help"})
    return {k: v for k, v in vars(probe.parse_args(argv)).items() if v is not unset}


def parse_args(argv: list[str] | None = None) -> RunConfig:
    """Parse with the precedence demo < config file < command line, then check and freeze (checks.resolve)."""
    from_yaml = _read_config_file(argv)
    parser = build_parser()
    parser.parse_args(argv)  # --help, and argparse's own errors (bad types, choices): exit here
    given = _given_on_command_line(parser, argv)
    values: dict = {}
    origin: dict[str, str] = {}
    if given.get("demo"):
        values.update(DEMO_DEFAULTS)
        origin.update(dict.fromkeys(DEMO_DEFAULTS, "--demo"))
    if given.get("config"):
        if from_yaml is None or from_yaml[0] != given["config"]:  # spelt otherwise (--conf FILE): read it now
            from_yaml = (given["config"], safe_yaml.load_config(given["config"]))
        from_file = _load_config_file(given["config"], parser, from_yaml[1])
        values.update(from_file)
        origin.update(dict.fromkeys(from_file, f"--config {given['config']}"))
    values.update(given)
    for key in given:
        origin.pop(key, None)
    from grpo_math.training.checks import resolve  # torch: only once the flags are parsed

    return dataclasses.replace(resolve(values, origin), resume_command=resume_command(parser, given))


def resume_command(parser: FlagParser, given: dict) -> str:
    """The command that continues this run from its newest checkpoint: the same flags as typed (the same
    --demo and --config, so the same output directory), with --resume_from_checkpoint latest; under several
    processes, what the launcher must start with the same process count."""
    from grpo_math.runtime.devices import world_size  # torch: already imported by checks.resolve

    actions = {dest: a for dest, a in parser.flags.items() if a.option_strings}
    script = sys.argv[0] if sys.argv and Path(sys.argv[0]).name == "main.py" else "main.py"
    words = [script]
    for dest, value in given.items():
        if dest in ("resume_from_checkpoint", "resume_weights_only", "overwrite_output_dir", "resume_other_base_model"):
            continue  # the new checkpoint is complete: no weights-only, and nothing to overwrite
        flag = actions[dest].option_strings[0]
        if isinstance(value, bool):
            words.append(flag if value else flag.replace("--", "--no-", 1))
        elif isinstance(value, dict):  # --chat_template_kwargs KEY=VALUE ...
            words += [flag, *(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in value.items())]
        elif value is not None:
            words += [flag, *map(str, value if isinstance(value, list) else [value])]
    command = shlex.join([*words, "--resume_from_checkpoint", "latest"])
    if world_size() > 1:  # the launcher's own flags are not ours to know; the process count must not change
        return f"the same torchrun / accelerate launch command ({world_size()} processes) with {command}"
    return f"python {command}"


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if code and os.environ.get("WORLD_SIZE", "1") != "1":  # one process: no torch import on the way out
        from grpo_math.runtime.launch import exit_together

        exit_together()  # under torchrun: every rank prints its own line before the launcher stops the others
    return code


def _main(argv: list[str] | None) -> int:
    try:
        run_config = parse_args(argv)
    except ValueError as e:  # UsageError, DatasetError, RewardError, DeviceError: all one-line, user-facing
        print(f"main.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C while a user's reward module or a dataset check runs
        print("main.py: interrupted before training started; nothing was written", file=sys.stderr)
        return 130
    try:  # heavy imports (torch, transformers, trl) only after the flags are known to be good
        import train
        import grpo_math.training.trainer  # noqa: F401 - checks the installed TRL version before anything is written
    except ImportError as e:  # a missing package, or a TRL version the trainer was not tested with: one line
        print(f"main.py: error: {e}", file=sys.stderr)
        return 2

    try:
        final = train.run(run_config)
    except train.RunError as e:
        print(f"main.py: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # code of the user's or a library's that called sys.exit(): never a silent exit 0
        print(f"main.py: error: training ended early by sys.exit({'' if e.code is None else e.code!r}) without "
              f"writing final/; {train.where_to_resume(run_config)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before train.py's signal handling began: nothing was written yet
        print("main.py: interrupted before training started; nothing was written", file=sys.stderr)
        return 130
    except train.Stopped as e:  # SIGTERM or SIGINT: train.py saved what there was to save
        print(f"main.py: {e}", file=sys.stderr, flush=True)
        return e.exit_code
    from grpo_math.runtime.devices import is_main_process

    if is_main_process() and not Path(final).is_dir():  # a training run never exits 0 without final/
        print(f"main.py: error: training returned without writing {final}; {train.where_to_resume(run_config)}",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
