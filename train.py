"""The training flow, top to bottom: seed, data, tokenizer, rewards, model + LoRA, GRPOConfig, trainer, train, save.

    python main.py --demo                      # main.py parses and checks the flags, then calls train.run(config)

`run(config)` takes the frozen `grpo_math.config.RunConfig` and never changes it. The two places where this
tool's flag names become library names are here: `build_lora_config` (PEFT) and `build_grpo_config` (TRL).
The rest is the engine in `grpo_math/`: data/sources.py loads the data contract, rewards.py the reward functions,
trainer.py the GRPOTrainer subclass (fast rollouts from rollout.py), callbacks.py what a user sees while it
runs, plots.py and report.py what they see after. Around the flow: runlock.py keeps a second run out of the
directory, interrupts.py turns SIGTERM/SIGINT into "save and stop", checkpoints.py decides what `latest` is,
and nothing of the run is written until training starts (the demo's tiny base model aside), so a run that
fails earlier leaves the directory as it was. final/ is written aside and renamed into place, like a checkpoint.
Left out on purpose: anything a flag does not ask for (no hidden schedules, no automatic hyper-parameters).
"""

from __future__ import annotations

import logging
import signal
import time
import warnings
from pathlib import Path

import torch

from grpo_math.models import gguf_export
from grpo_math.runs import best_checkpoint, checkpoints, plots, rundir
from grpo_math.runs.checkpoints import CheckpointError, where_to_resume  # where_to_resume: main.py's too
from grpo_math.config import RunConfig
from grpo_math.data.sources import DatasetError, check_system_prompt, default_eval_split, filter_long_prompts, load_math_dataset
from grpo_math.runtime.devices import dtype_name, is_main_process
from grpo_math.runs.divergence import Diverged
from grpo_math.runtime.interrupts import GracefulStop, Stopped
from grpo_math.models.loading import ModelLoadError, load_model, load_tokenizer, merged_model
from grpo_math.runs.provenance import write_run_config
from grpo_math.runs.diskfull import DiskFull, is_disk_full, writing
from grpo_math.training.memory import check_before_load, is_out_of_memory, oom_line, probe_first_step
from grpo_math.models.quantize import prepare_for_training
from grpo_math.rewards import RewardError, RewardFailure, check_reward_funcs
from grpo_math.runs.runlock import RunDirBusy, RunLock

logger = logging.getLogger(__name__)

# What --demo trains, in the words of the end-of-run summary (grpo_math/models/warm_start.py has the recipe).
DEMO_START = ("the tiny model after a supervised warm start on arithmetic:1's train split: it mostly answers at "
              "once, sometimes works the sum out (python -m grpo_math.models.warm_start)")


class RunError(RuntimeError):
    """A run that cannot proceed for a reason the user can fix; the message is one line."""


# ---------------------------------------------------------------------------------------------------------------
# The two places where this tool's names become library names


def build_lora_config(config: RunConfig):
    """PEFT LoraConfig from --lora_* flags, or None with --full_finetune."""
    if config.full_finetune:
        return None
    from peft import LoraConfig

    targets = config.lora_target_modules
    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets[0] if targets == ["all-linear"] else targets,
        task_type="CAUSAL_LM",
        bias="none",
    )


def build_grpo_config(config: RunConfig):
    """TRL GRPOConfig from this tool's flags; the precision flags come from the resolved placement."""
    from trl import GRPOConfig

    report_to = [r for r in config.report_to if r != "none"] or "none"
    return GRPOConfig(
        output_dir=config.output_dir,
        # optimisation
        learning_rate=config.learning_rate,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float below 1 is a ratio of total steps
        max_grad_norm=config.max_grad_norm,
        # always passed, both ways: TRL 1.16 defaults it to True, which would recompute every layer's forward in
        # the backward of every run (transformers 5's name; `gradient_checkpointing` is its deprecated alias)
        activation_checkpointing=config.gradient_checkpointing,
        seed=config.seed,
        data_seed=config.seed,
        # GRPO
        num_generations=config.num_generations,
        beta=config.beta,
        loss_type=config.loss_type,
        scale_rewards=config.scale_rewards,
        epsilon=config.epsilon,
        epsilon_high=config.epsilon_high,
        delta=config.delta, entropy_coef=config.entropy_coef, importance_sampling_level=config.importance_sampling_level,
        mask_truncated_completions=config.mask_truncated_completions, top_entropy_quantile=config.top_entropy_quantile,
        num_iterations=config.num_iterations,
        reward_weights=config.reward_weights,
        # generation
        max_completion_length=config.max_completion_length,
        temperature=config.temperature,
        top_p=config.top_p,
        top_k=config.top_k, min_p=config.min_p, repetition_penalty=config.repetition_penalty,
        chat_template_kwargs=config.chat_template_kwargs,  # TRL renders training prompts with them
        use_vllm=config.use_vllm,
        vllm_mode=config.vllm_mode, vllm_gpu_memory_utilization=config.vllm_gpu_memory_utilization,
        # logging and saving
        logging_steps=config.logging_steps,
        report_to=report_to,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        log_completions=False,  # callbacks.py writes completions.jsonl and TensorBoard text instead
        disable_tqdm=False,
        ddp_timeout=config.ddp_timeout,  # used by CUDA launches; transformers leaves gloo on CPU at torch's 30 min
        # device and precision
        **config.placement.trainer_flags,
    )


# ---------------------------------------------------------------------------------------------------------------
# The flow


def run(config: RunConfig) -> Path:
    """Train with GRPO as configured (see main.py); returns the final/ directory.

    Holds the run directory's lock (runlock.py) from start to end, and handles SIGTERM/SIGINT throughout
    (interrupts.py): a signal ends the run with `Stopped`, after saving a checkpoint when it came mid-training.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # TRL 1.16 calls transformers 5's deprecated gradient_checkpointing names (a warning each time): theirs to
    # rename, not the user's
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
    lock = RunLock(config.output_dir) if is_main_process() else None  # rank 0 alone writes the shared files
    stop = GracefulStop(before_exit=lock.release if lock else None)
    try:
        if lock is not None:
            lock.acquire()
    except RunDirBusy as e:
        raise RunError(str(e)) from None
    except OSError as e:
        raise RunError(f"--output_dir {config.output_dir}: cannot write there ({e.strerror})") from None
    stop.install()
    try:
        return _run(config, stop)
    except Stopped as e:
        tail = (f"final/ is complete; `python visualize.py {config.output_dir}` redraws the plots" if stop.finished
                else where_to_resume(config))
        raise Stopped(e.signum, f"{e}; {tail}") from None
    except DiskFull as e:  # nothing written is lost: checkpoints and final/ are published whole or not at all
        raise RunError(f"{e}; free some, then: {where_to_resume(config)}") from None
    finally:
        stop.restore()
        if lock is not None:
            lock.release()


def _run(config: RunConfig, stop: GracefulStop) -> Path:
    from transformers import set_seed

    from grpo_math.training import trainer as guarded
    from grpo_math.training.callbacks import add_callbacks
    from grpo_math.models.loading import check_lora_targets
    from grpo_math.models.rollout import resolve_fast_generation

    t0 = time.time()
    out = Path(config.output_dir)
    main_process = is_main_process()
    if main_process:
        checkpoints.clear_staging(out)  # saves a killed run left unfinished
    try:
        resume = checkpoints.resolve_resume(config)
    except CheckpointError as e:
        raise RunError(str(e)) from None

    # 1. seed: data order, LoRA init and sampling all follow it
    set_seed(config.seed)

    # 2. data (a bad dataset fails before any model loads), then the tokenizer to drop long prompts
    if config.build_tiny_model:  # --demo: the tiny model after its supervised warm start (shipped)
        from grpo_math.models.warm_start import warm_start_model

        with writing("the demo's base model", config.model_id):
            warm_start_model(config.model_id)
    try:  # the tokenizer first: a system prompt over the limit alone fails before any prompt is built
        tokenizer = load_tokenizer(config.model_id, config.trust_remote_code)
        check_system_prompt(config.system_prompt, tokenizer, config.max_prompt_length)
        train_ds = load_math_dataset(
            config.dataset_id, config.split, max_samples=config.max_samples, prompt_template=config.prompt_template,
            prompt_lang=config.prompt_lang, system_prompt=config.system_prompt, seed=config.seed,
        )
        train_ds, n_dropped = filter_long_prompts(train_ds, tokenizer, config.max_prompt_length,
                                                  config.chat_template_kwargs)
    except (DatasetError, ModelLoadError) as e:
        raise RunError(str(e)) from None
    logger.info("training prompts: %d (%d dropped as longer than %d tokens)", len(train_ds), n_dropped,
                config.max_prompt_length)
    eval_ds = load_eval_dataset(config)
    per_step = config.generation_batch // config.num_generations
    if len(train_ds) < per_step:
        # TRL's sampler would yield no batch at all and "train" for 0 steps
        raise RunError(
            f"--dataset_id {config.dataset_id}: {len(train_ds)} usable prompt(s) but each step needs {per_step} "
            f"distinct prompts (generation batch / --num_generations); use more data or a smaller --batch_size"
        )

    # 3. rewards (loaded once, by checks.resolve): each is called on a perfect completion before any model loads
    try:
        check_reward_funcs(list(config.rewards), gold=str(train_ds[0]["answer"]), prompt=train_ds[0]["prompt"],
                           conversational=not isinstance(train_ds[0]["prompt"], str))
    except RewardError as e:
        raise RunError(str(e)) from None

    # 4. model (+ LoRA, which the trainer applies from the config; its target names are checked here first)
    if main_process:
        check_before_load(config, train_ds, tokenizer)  # the memory estimate, from the model's config alone
    try:
        model = load_model(config.model_id, config.placement.load_dtype(config.full_finetune),
                           config.trust_remote_code, load_in_4bit=config.load_in_4bit, device=config.placement.device)
        if not config.full_finetune:
            check_lora_targets(model, config.lora_target_modules, config.model_id)
        if config.export_gguf:  # an architecture GGUF export cannot write fails now, not after training
            gguf_export.check_architecture(model.config.model_type)
    except (ModelLoadError, gguf_export.GGUFExportError) as e:
        raise RunError(str(e) if not isinstance(e, gguf_export.GGUFExportError) else f"--export_gguf: {e}") from None
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    peft_config = build_lora_config(config)
    if config.load_in_4bit:
        model = prepare_for_training(model, config.gradient_checkpointing)

    # 5. config and trainer (stock generation or rollout.py's, both with whole checkpoints and checked rewards)
    grpo_config = build_grpo_config(config)
    if config.placement.device == "cuda" and config.world_size == 1:
        guarded.use_one_gpu(grpo_config)
    use_fast = resolve_fast_generation(config.fast_generation, use_vllm=config.use_vllm,
                                      device=config.placement.device)
    trainer = (guarded.FastGRPOTrainer if use_fast else guarded.GuardedGRPOTrainer)(
        model=model,
        reward_funcs=list(config.rewards),
        args=grpo_config,
        train_dataset=train_ds,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.resume_weights_only = config.resume_weights_only
    fast = getattr(trainer, "fast_path", False)  # FastGRPOTrainer may have turned itself off (ZeRO-3, FSDP)
    logger.info("generator: %s", "rollout.py" if fast else "TRL vLLM" if config.use_vllm else "stock TRL")
    _log_parameters(trainer.model)
    console = add_callbacks(trainer, config, train_ds, eval_ds, tokenizer)
    trainer.add_callback(stop)

    if config.placement.device != "cpu" and not resume:  # CPU memory is not a hard wall worth a probe step
        try:  # the longest prompts at full completion length, before anything is written
            probe_first_step(trainer.model, config, train_ds, tokenizer)
        except MemoryError as e:
            raise RunError(str(e)) from None
    # 6. train; the first write to the run directory is here, so a run that failed before left it as it was
    if main_process:
        if config.overwrite_output_dir and not resume and (out / rundir.RUN_CONFIG).exists():
            removed = rundir.clear_run_dir(out)  # --overwrite_output_dir, or --demo over the built-in demo
            logger.warning("replacing the earlier run in %s: removed %s", out, ", ".join(removed) or "nothing")
        with writing(rundir.RUN_CONFIG, out / rundir.RUN_CONFIG):
            write_run_config(config, {"dtype": dtype_name(config.placement.dtype), "train_rows": len(train_ds),
                                      "dropped_long_prompts": n_dropped})
    stop.training = True  # from here a signal means "save and stop after the step in progress"
    try:
        trainer.train(resume_from_checkpoint=resume)
    except guarded.AlreadyTrained as e:
        logger.info("%s is at %s: nothing left to train; writing final/ from it", resume, e)
    except RewardFailure as e:
        if config.debug:
            raise
        raise RunError(f"{e}; {where_to_resume(config)}") from None
    except Diverged as e:  # a non-finite loss, gradient, weight or logit: nothing non-finite was written
        raise RunError(f"{e}; {where_to_resume(config)}") from None
    except (OSError, RuntimeError, MemoryError) as e:  # out of memory, or a full disk outside a checkpoint's save
        if is_out_of_memory(e):
            raise RunError(f"{oom_line(trainer.state.global_step + 1)}; {where_to_resume(config)}") from None
        if not is_disk_full(e, out):
            raise
        raise DiskFull(f"no space left on the device writing {getattr(e, 'filename', None) or out}") from e
    finally:
        console.close()  # the bar and its log redirection, also when a step raises
        stop.training = False
    if stop.signum is not None:
        raise Stopped(stop.signum, f"stopped by {signal.Signals(stop.signum).name} at step {trainer.state.global_step}")

    # 7. save: adapter (or full model) + tokenizer under final/, optionally a merged model; written aside and
    # renamed into place, so an interrupted save never leaves half of a final/
    stop.stage = "while writing final/"
    final = out / rundir.FINAL
    staged = checkpoints.staging_dir(out) / rundir.FINAL
    try:
        guarded.check_finite_weights(trainer, "final/")
    except Diverged as e:
        raise RunError(f"{e}; {where_to_resume(config)}") from None
    try:
        with writing("final/", staged):
            trainer.save_model(str(staged))  # collective under DeepSpeed/FSDP: every process calls it, rank 0 saves
            trainer.accelerator.wait_for_everyone()  # every shard is on disk before rank 0 renames final/ into place
            if trainer.is_world_process_zero():
                tokenizer.save_pretrained(str(staged))
                if config.merge:
                    merged = merged_model(config, trainer.accelerator.unwrap_model(trainer.model), staged)
                    merged.save_pretrained(str(staged / "merged"))
                    tokenizer.save_pretrained(str(staged / "merged"))
                checkpoints.publish(staged, final)
                best_checkpoint.sync_best(out, trainer.best_eval)  # best/: this run's best step (a resume may move it)
    except DiskFull:
        if trainer.is_world_process_zero():
            checkpoints.discard(staged)  # gives the space back; the checkpoints are untouched
        raise
    if config.export_gguf and trainer.is_world_process_zero():  # final/, merged in float32: RUN/final.{f16,q8_0}.gguf
        try:
            with writing("the GGUF export of final/", out):
                gguf_export.export_model_dir(final, out, stem=rundir.FINAL)
        except gguf_export.GGUFExportError as e:
            raise RunError(f"--export_gguf: {e}; final/ is complete: python export_gguf.py {out}") from None
    stop.stage, stop.finished = "while drawing the plots", True
    logger.info("done in %.1f s; final model in %s", time.time() - t0, final)

    # 8. plots, training_report.json and the summary; a plotting failure never fails a finished run
    if trainer.is_world_process_zero():
        plots.print_summary(out, console.health, wall_time_s=time.time() - t0,
                            tensorboard="tensorboard" in config.report_to,
                            started_from=DEMO_START if config.build_tiny_model else None)
    return final


# ---------------------------------------------------------------------------------------------------------------
# The steps' helpers




def load_eval_dataset(config: RunConfig):
    """The first --eval_samples problems of --eval_split (default: the dataset's test split), or None."""
    if not (config.eval_every or config.eval_before_train):
        return None
    split = config.eval_split or default_eval_split(config.dataset_id)
    try:
        ds = load_math_dataset(
            config.dataset_id, split, max_samples=config.eval_samples, prompt_template=config.prompt_template,
            prompt_lang=config.prompt_lang, system_prompt=config.system_prompt, seed=config.seed,
        )
    except DatasetError as e:
        raise RunError(f"--eval_split {split}: {e}") from None
    if "[" not in split and split == config.split.split("[")[0]:  # the whole training split (slices: user's call)
        logger.warning("accuracy eval uses split %r, the training split: it measures fit, not generalisation "
                       "(pass --eval_split)", split)
    when = f"every {config.eval_every} steps" if config.eval_every else "before training"
    logger.info("accuracy eval: %d problems of %s [%s], greedy, %s and on the final model", len(ds),
                config.dataset_id, split, when)
    return ds


def _log_parameters(model: torch.nn.Module) -> None:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("parameters: %s trainable of %s (%.2f%%)", f"{trainable:,}", f"{total:,}",
                100 * trainable / max(total, 1))
