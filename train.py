"""The training flow, top to bottom: seed, data, model + tokenizer, LoRA, rewards, GRPOConfig, trainer, train, save.

Called by `main.py` with parsed and validated arguments (`python main.py --help` lists them); not a CLI itself.
`build_grpo_config` and `build_lora_config` are the only places where this tool's flag names become TRL and
PEFT names, so each setting has one source of truth, and the resolved result is written to
`OUTPUT_DIR/run_config.json` before the first step.

Departures from stock TRL, each for a reason:
- `--max_prompt_length` is applied here, by dropping longer prompts before training (TRL 1.16 has no such
  option and would otherwise feed arbitrarily long prompts); the count is logged.
- generation goes through `rollout.py` when `--fast_generation` is on (see there); the loss, advantages,
  optimizer and checkpointing are stock `GRPOTrainer`.
Left out on purpose: reward models (rewards are functions here), multimodal prompts, tool calling.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import torch

from callbacks import AccuracyEval, ConsoleProgress, HealthCheck, RunLog, format_summary, use_console_progress
from data_utils import DatasetError, default_eval_split, filter_long_prompts, load_math_dataset
from devices import Placement, dtype_name, is_main_process
from model_io import ModelLoadError, load_model, load_tokenizer
from provenance import git_commit, package_versions
from reward import RewardError, check_reward_funcs, load_reward_funcs

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
RUN_FILES = ("run_config.json", "train_log.json", "completions.jsonl", "training_report.json",
             "training_metrics.png", "metrics_distribution.png", "eval_curve.png", "README.md")


class RunError(RuntimeError):
    """A run that cannot proceed for a reason the user can fix; the message is one line."""


# ---------------------------------------------------------------------------------------------------------------
# The two places where CLI names become library names


def build_lora_config(args: argparse.Namespace):
    """PEFT LoraConfig from --lora_* flags, or None with --full_finetune."""
    if args.full_finetune:
        return None
    from peft import LoraConfig

    targets = args.lora_target_modules
    return LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=targets[0] if targets == ["all-linear"] else targets,
        task_type="CAUSAL_LM",
        bias="none",
    )


def default_learning_rate(args: argparse.Namespace) -> float:
    # LoRA's low-rank update moves the function less per unit step than full fine-tuning: ~10x the rate.
    return args.learning_rate if args.learning_rate else (1e-6 if args.full_finetune else 1e-5)


def build_grpo_config(args: argparse.Namespace, placement: Placement):
    """TRL GRPOConfig from this tool's flags; the precision flags come from the resolved placement."""
    from trl import GRPOConfig

    report_to = [r for r in args.report_to if r != "none"] or "none"
    return GRPOConfig(
        output_dir=args.output_dir,
        # optimisation
        learning_rate=default_learning_rate(args),
        num_train_epochs=args.num_train_epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        lr_scheduler_type=args.lr_scheduler_type,
        warmup_steps=args.warmup_ratio,  # transformers 5: a float below 1 is a ratio of total steps
        max_grad_norm=args.max_grad_norm,
        **({"gradient_checkpointing": True} if args.gradient_checkpointing else {}),  # the kwarg alone warns
        seed=args.seed,
        data_seed=args.seed,
        # GRPO
        num_generations=args.num_generations,
        beta=args.beta,
        loss_type=args.loss_type,
        scale_rewards=args.scale_rewards,
        epsilon=args.epsilon,
        epsilon_high=args.epsilon_high,
        num_iterations=args.num_iterations,
        reward_weights=args.reward_weights,
        # generation
        max_completion_length=args.max_completion_length,
        temperature=args.temperature,
        top_p=args.top_p,
        use_vllm=args.use_vllm,
        vllm_mode=args.vllm_mode,
        # logging and saving
        logging_steps=args.logging_steps,
        report_to=report_to,
        save_strategy="steps",
        save_steps=args.save_steps,
        save_total_limit=args.save_total_limit,
        log_completions=False,  # callbacks.py writes completions.jsonl and TensorBoard text instead
        disable_tqdm=False,
        # device and precision
        **placement.trainer_flags,
    )


# ---------------------------------------------------------------------------------------------------------------
# Provenance


def write_run_config(args: argparse.Namespace, placement: Placement, extra: dict) -> Path:
    """run_config.json: resolved arguments, package versions, device, dtype, git commit."""
    resolved = {k: v for k, v in vars(args).items() if k != "placement"}
    resolved["learning_rate"] = default_learning_rate(args)
    record = {
        "args": resolved,
        "device": placement.device,
        "dtype": dtype_name(placement.dtype),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **extra,
    }
    path = Path(args.output_dir) / "run_config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------------------------
# The flow


def _resolve_resume(args: argparse.Namespace) -> str | bool | None:
    if args.resume_from_checkpoint != "latest":
        return args.resume_from_checkpoint
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
    if last is None:
        raise RunError(f"--resume_from_checkpoint latest: no checkpoint-N directory in {args.output_dir}")
    return last


def prepare_model_id(args: argparse.Namespace) -> str:
    """The model to train; with --demo and no --model_id, the tiny offline model built into the run directory."""
    if args.model_id:
        return args.model_id
    if args.demo:
        from tiny_model import save_tiny_model

        return str(save_tiny_model(Path(args.output_dir) / "base_model", seed=args.seed).resolve())
    return DEFAULT_MODEL


def run(args: argparse.Namespace) -> Path:
    """Train with GRPO as configured by `args` (see main.py); returns the final/ directory."""
    from transformers import set_seed
    from trl import GRPOTrainer

    import rollout

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # TRL 1.16 calls a transformers 5 property that warns on every step; it is theirs to rename, not the user's
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    t0 = time.time()
    placement: Placement = args.placement
    out = Path(args.output_dir)
    main_process = is_main_process()
    fresh_start = args.overwrite_output_dir and not args.resume_from_checkpoint
    if main_process and fresh_start and (out / "run_config.json").exists():
        _clear_run_dir(out)
    resume = _resolve_resume(args) if args.resume_from_checkpoint else None

    # 1. seed: data order, LoRA init and sampling all follow it
    set_seed(args.seed)

    # 2. data (a bad dataset fails before any model loads), then the tokenizer to drop long prompts
    args.model_id = prepare_model_id(args)
    try:
        train_ds = load_math_dataset(
            args.dataset_id, args.split, max_samples=args.max_samples, prompt_template=args.prompt_template,
            prompt_lang=args.prompt_lang, system_prompt=args.system_prompt, seed=args.seed,
        )
        tokenizer = load_tokenizer(args.model_id, args.trust_remote_code)
        train_ds, n_dropped = filter_long_prompts(train_ds, tokenizer, args.max_prompt_length)
    except (DatasetError, ModelLoadError) as e:
        raise RunError(str(e)) from None
    logger.info("training prompts: %d (%d dropped as longer than %d tokens)", len(train_ds), n_dropped,
                args.max_prompt_length)
    eval_ds = load_eval_dataset(args)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = args.batch_size * args.gradient_accumulation_steps * world // args.num_generations
    if len(train_ds) < per_step:
        # TRL's sampler would yield no batch at all and "train" for 0 steps
        raise RunError(
            f"--dataset_id {args.dataset_id}: {len(train_ds)} usable prompt(s) but each step needs {per_step} "
            f"distinct prompts (generation batch / --num_generations); use more data or a smaller --batch_size"
        )

    # 3. rewards: each is called once on a perfect completion before any model loads
    try:
        reward_funcs = load_reward_funcs(args.reward_funcs, max_completion_length=args.max_completion_length)
        check_reward_funcs(reward_funcs, gold=str(train_ds[0]["answer"]), prompt=train_ds[0]["prompt"],
                           conversational=not isinstance(train_ds[0]["prompt"], str))
    except RewardError as e:
        raise RunError(str(e)) from None

    # 4. model (+ LoRA, which the trainer applies from the config)
    try:
        model = load_model(args.model_id, placement.load_dtype(args.full_finetune), args.trust_remote_code)
    except ModelLoadError as e:
        raise RunError(str(e)) from None
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    peft_config = build_lora_config(args)

    # 5. config and trainer
    config = build_grpo_config(args, placement)
    if placement.device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        config._n_gpu = 1  # one process uses one GPU; Trainer would otherwise wrap the model in DataParallel
    if main_process:
        write_run_config(args, placement, {"train_rows": len(train_ds), "dropped_long_prompts": n_dropped})
    fast = rollout.resolve_fast_generation(args.fast_generation, use_vllm=args.use_vllm, device=placement.device)
    logger.info("generator: %s", "rollout.py" if fast else "TRL vLLM" if args.use_vllm else "stock TRL")
    trainer = (rollout.FastGRPOTrainer if fast else GRPOTrainer)(
        model=model,
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=train_ds,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    _log_parameters(trainer.model)
    console = add_callbacks(trainer, args, train_ds, eval_ds, tokenizer)

    # 6. train
    try:
        trainer.train(resume_from_checkpoint=resume)
    finally:
        console.close()  # the bar and its log redirection, also when a step raises

    # 7. save: adapter (or full model) + tokenizer under final/, optionally a merged model
    final = out / "final"
    trainer.save_model(str(final))  # collective under DeepSpeed/FSDP: every process calls it, rank 0 writes
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(final))
        if args.merge:
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(str(final / "merged"))
            tokenizer.save_pretrained(str(final / "merged"))
    logger.info("done in %.1f s; final model in %s", time.time() - t0, final)

    # 8. plots, training_report.json and the summary; a plotting failure never fails a finished run
    if trainer.is_world_process_zero():
        print_summary(out, console.health, wall_time_s=time.time() - t0,
                      tensorboard="tensorboard" in args.report_to)
    return final


# ---------------------------------------------------------------------------------------------------------------
# Seeing the run: eval data, callbacks, summary (callbacks.py and visualize.py do the work)


def load_eval_dataset(args: argparse.Namespace):
    """The first --eval_samples problems of --eval_split (default: the dataset's test split), or None."""
    if not (args.eval_every or args.eval_before_train):
        return None
    split = args.eval_split or default_eval_split(args.dataset_id)
    try:
        ds = load_math_dataset(
            args.dataset_id, split, max_samples=args.eval_samples, prompt_template=args.prompt_template,
            prompt_lang=args.prompt_lang, system_prompt=args.system_prompt, seed=args.seed,
        )
    except DatasetError as e:
        raise RunError(f"--eval_split {split}: {e}") from None
    if "[" not in split and split == args.split.split("[")[0]:  # the whole training split (slices: user's call)
        logger.warning("accuracy eval uses split %r, the training split: it measures fit, not generalisation "
                       "(pass --eval_split)", split)
    when = f"every {args.eval_every} steps" if args.eval_every else "before training"
    logger.info("accuracy eval: %d problems of %s [%s], greedy, %s and on the final model", len(ds),
                args.dataset_id, split, when)
    return ds


def add_callbacks(trainer, args: argparse.Namespace, train_ds, eval_ds, tokenizer) -> ConsoleProgress:
    """train_log.json + completions.jsonl, accuracy eval, and the console bar in place of transformers' dict dump.

    Order matters: RunLog times a step before AccuracyEval's eval runs, and both act before the console reads logs.
    """
    run_log = RunLog(args.output_dir, train_ds, log_completions_steps=args.log_completions_steps)
    run_log.trainer = trainer
    trainer.add_callback(run_log)
    if eval_ds is not None:
        from eval import evaluate  # the same scoring code as eval.py

        accuracy = AccuracyEval(evaluate, eval_ds, tokenizer, every=args.eval_every,
                                before_train=args.eval_before_train, max_completion_length=args.max_completion_length,
                                reward_funcs=args.reward_funcs, reward_weights=args.reward_weights)
        accuracy.trainer = trainer
        trainer.add_callback(accuracy)
    console = ConsoleProgress(HealthCheck(max_completion_length=args.max_completion_length))
    use_console_progress(trainer, console)
    return console


def print_summary(out: Path, health: HealthCheck, *, wall_time_s: float, tensorboard: bool) -> None:
    """Plots and training_report.json (visualize.py), then the summary; plotting errors become a warning."""
    import visualize

    try:
        report = visualize.visualize(out)
    except Exception as e:  # noqa: BLE001 - a finished run is worth more than its plots
        logger.warning("could not draw the plots (%s: %s); rerun `python visualize.py %s`", type(e).__name__, e, out)
        written = out / visualize.REPORT  # written before the plots, unless the log itself was unreadable
        report = json.loads(written.read_text()) if written.is_file() else {"run_dir": str(out)}
    print(format_summary(report, wall_time_s=wall_time_s, warnings=health.warnings, tensorboard=tensorboard),
          flush=True)


def _clear_run_dir(out: Path) -> None:
    """Remove the outputs of an earlier run in `out`: only names this tool writes, never a user's own files."""
    import shutil

    for child in out.iterdir():
        if child.is_dir() and (child.name.startswith("checkpoint-") or child.name in ("final", "runs")):
            shutil.rmtree(child)
        elif child.is_file() and child.name in RUN_FILES:
            child.unlink()
        # base_model/ stays: the demo's tiny base is rebuilt identically


def _log_parameters(model: torch.nn.Module) -> None:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("parameters: %s trainable of %s (%.2f%%)", f"{trainable:,}", f"{total:,}",
                100 * trainable / max(total, 1))
