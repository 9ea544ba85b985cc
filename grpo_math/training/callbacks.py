"""Trainer callbacks that let a user see a GRPO run: metrics log, completions log, accuracy eval, console.

`add_callbacks` (called by train.py) adds these to the trainer and hands each one the trainer:

    RunLog          OUTPUT_DIR/train_log.json (one record per logged step, rewritten atomically at every log, so
                    a crash leaves a valid file), OUTPUT_DIR/completions.jsonl (every --log_completions_steps:
                    prompt, completion, gold answer, each reward, advantage, step) and the same completions as
                    text in TensorBoard; it also measures samples (completions) per second.
    AccuracyEval    greedy accuracy (strict and lenient) on held-out problems every --eval_every steps (at step 0
                    with --eval_before_train, and on the final model), through eval.py's `scoring.evaluate` with
                    the run's rewards; in rank 0 alone; a new best step is saved and kept (best_checkpoint.py).
    ConsoleProgress one tqdm bar (step, samples/s, time left, reward) instead of transformers' per-step dict
                    dump, one line per eval, and the `health.HealthCheck` warnings.

This tool's own metrics (samples_per_second, eval_*) reach TensorBoard, wandb and train_log.json through
`trainer.queue_metrics`, so TRL's `log()` reports them with its own at the same step; the completions come
from `trainer.generation_logs`. Both touch TRL internals, and so live in trainer.py. Left out on purpose:
per-token statistics, images, anything needing a second pass over data.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grpo_math.grading.answers import completion_text
from grpo_math.runs.best_checkpoint import best_eval, note_eval
from grpo_math.config import DEFAULT_MAX_COMPLETION_LENGTH, RunConfig
from grpo_math.runs.health import HealthCheck
from grpo_math.runtime.launch import run_on_main
from grpo_math.rewards import weighted_sum
from grpo_math.runs.rundir import COMPLETIONS_LOG, TRAIN_LOG, as_number, write_atomic
from grpo_math.training.tensorboard import completions_markdown, tensorboard_writer
from grpo_math.training.trainer import generation_logs, guard_reward, queue_metrics, weights_sharded

logger = logging.getLogger(__name__)


def write_records(path: Path, records: list[dict]) -> None:
    """train_log.json: a JSON list, one record per line (a 10k-step log stays small enough to rewrite at every
    log), replaced atomically, so a reader or a crash never sees half a file."""
    body = ",\n".join(json.dumps(r, allow_nan=False) for r in records)
    write_atomic(path, f"[\n{body}\n]\n" if records else "[]\n")


def prompt_key(prompt: Any) -> str:
    """A stable key for a dataset prompt (string or chat messages), to find its gold answer again."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------------------------
# train_log.json, completions.jsonl, throughput


class RunLog(TrainerCallback):
    """train_log.json, completions.jsonl and completion text in TensorBoard; samples/s per step.

    The gold answer of each logged completion is looked up from its prompt in the training dataset: nothing in
    the training path (rewards, trainer) is wrapped or changed to carry it, and it works for any trainer that
    keeps TRL's generation logs (`trainer.generation_logs`). A prompt that maps to two different answers is
    logged with answer None.
    """

    def __init__(self, output_dir: str | Path, train_dataset=None, *, log_completions_steps: int = 10) -> None:
        self.dir = Path(output_dir)
        self.log_completions_steps = log_completions_steps
        self.records: list[dict] = []
        self.trainer = None
        self._answers: dict[str, Any] = {}
        if train_dataset is not None:
            for prompt, answer in zip(train_dataset["prompt"], train_dataset["answer"]):
                key = prompt_key(prompt)
                self._answers[key] = answer if self._answers.get(key, answer) == answer else None
        self._step_started: float | None = None
        self._last_completions_step = 0
        self._warned_no_logs = False

    @property
    def path(self) -> Path:
        return self.dir / TRAIN_LOG

    # -- events

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        resumed_at = state.global_step
        self.records = [r for r in self._read_records() if r.get("step", 0) <= resumed_at] if resumed_at else []
        self._last_completions_step = resumed_at
        self._keep_completions_up_to(resumed_at)
        write_records(self.path, self.records)

    def on_step_begin(self, args, state, control, **kwargs):
        self._step_started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        # generation + backward + optimizer step; evals, logging and checkpoints happen after and are excluded
        if self._step_started is None or self.trainer is None:
            return
        seconds = time.perf_counter() - self._step_started
        # completions per optimizer step, all processes (TRL's generation batch at its default size)
        per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
        if seconds > 0:
            queue_metrics(self.trainer, {"samples_per_second": per_step / seconds})
        self._step_started = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "train_runtime" in logs:  # transformers' closing log: run totals, not a step (the summary has them)
            return
        self.add_record(state.global_step, logs)
        if self._completions_due(state.global_step, logs):
            self._log_completions(state.global_step)

    # -- train_log.json

    def add_record(self, step: int, logs: dict) -> dict:
        """Merge the numeric values of `logs` into the record of `step` and rewrite train_log.json."""
        values = {k: as_number(v) for k, v in logs.items() if isinstance(v, (int, float)) or hasattr(v, "item")
                  or v is None}
        if self.records and self.records[-1]["step"] == step:
            record = self.records[-1]
            record.update(values)
        else:
            record = {"step": step, **values}
            self.records.append(record)
        write_records(self.path, self.records)
        return record

    def _read_records(self) -> list[dict]:
        """The earlier run's records, on resume; an unreadable log is kept aside, never overwritten."""
        if not self.path.is_file():
            return []
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = None
        if isinstance(data, list):
            return data
        kept = self.path.with_name(self.path.name + ".unreadable")
        try:
            self.path.replace(kept)
        except OSError:
            kept = None
        logger.warning("%s could not be read; the earlier steps' records are %s, and the log restarts at the "
                       "resumed step", self.path, f"kept in {kept}" if kept else "lost")
        return []

    # -- completions.jsonl and TensorBoard text

    def _completions_due(self, step: int, logs: dict) -> bool:
        # "every N steps" holds even when N is not a multiple of --logging_steps: the first log past each multiple
        if "reward" not in logs or step <= 0:
            return False
        return step // self.log_completions_steps > self._last_completions_step // self.log_completions_steps

    def completion_rows(self, step: int) -> list[dict]:
        """The last generation batch as rows: step, prompt, completion, answer, rewards, reward, advantage."""
        logs = generation_logs(self.trainer)
        if logs is None:
            if not self._warned_no_logs:
                logger.warning("this trainer keeps no completions; completions.jsonl stays empty")
                self._warned_no_logs = True
            return []
        names = list(logs["rewards"])
        weights = getattr(self.trainer, "reward_weights", None)
        weights = [float(w) for w in weights.tolist()] if weights is not None else [1.0] * len(names)
        per_func = {name: list(logs["rewards"][name]) for name in names}
        advantages = list(logs["advantages"])
        rows = []
        for i, (prompt, completion) in enumerate(zip(logs["prompt"], logs["completion"])):
            rewards = {name: as_number(per_func[name][i]) if i < len(per_func[name]) else None for name in names}
            rows.append({
                "step": step,
                "prompt": prompt,
                "completion": completion_text(completion),
                "answer": self._answers.get(prompt_key(prompt)),
                "rewards": rewards,
                "reward": weighted_sum(list(rewards.values()), weights),  # as TRL computes the advantage
                "advantage": as_number(advantages[i]) if i < len(advantages) else None,
            })
        return rows

    def _log_completions(self, step: int) -> None:
        self._last_completions_step = step
        rows = self.completion_rows(step)
        if not rows:
            return
        with open(self.dir / COMPLETIONS_LOG, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
        writer = tensorboard_writer(self.trainer)
        if writer is not None:
            writer.add_text("completions", completions_markdown(rows), step)
            writer.flush()

    def _keep_completions_up_to(self, step: int) -> None:
        """A fresh run starts completions.jsonl empty; a resumed one drops rows past the checkpoint."""
        path = self.dir / COMPLETIONS_LOG
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines() if step and path.exists() else []:
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:  # a line cut short by the crash that ended the earlier run
                continue
        write_atomic(path, "".join(line + "\n" for line in kept))


# ---------------------------------------------------------------------------------------------------------------
# Accuracy during training


class AccuracyEval(TrainerCallback):
    """Greedy accuracy on held-out problems every `every` steps, before training, and on the final model.

    `evaluate` is `scoring.evaluate` (eval.py's, so both agree on "correct"); results go into that step's logs as
    eval_accuracy, eval_accuracy_lenient, eval_format_rate, eval_mean_completion_tokens, eval_runtime (s).
    `reward_funcs` are the run's reward callables, passed through, so eval records carry the training reward.
    Under several processes the eval runs once, in rank 0 (its numbers then do not depend on the process count),
    and every rank logs and keeps the same numbers (`launch.run_on_main`); only sharded weights (ZeRO-3, FSDP),
    whose every forward pass needs all ranks, make each rank run it in step with the others.
    """

    def __init__(self, evaluate: Callable, dataset, tokenizer, *, every: int = 0, before_train: bool = False,
                 max_completion_length: int = DEFAULT_MAX_COMPLETION_LENGTH,
                 reward_funcs: list[Callable] | None = None, reward_weights: list[float] | None = None) -> None:
        self.evaluate, self.dataset, self.tokenizer, self.every = evaluate, dataset, tokenizer, every
        self.before_train = before_train
        self.max_completion_length = max_completion_length
        self.reward_funcs = reward_funcs
        self.reward_weights = reward_weights
        self.history: list[dict] = []  # {"step", "eval_accuracy", ...} in order
        self.trainer = None

    def _policy(self):
        """The model to generate with: rollout's synced inference copy when the trainer has one (merged weights,
        ~4x faster than the PEFT wrapper on GPU), else the training model itself."""
        synced_copy = getattr(self.trainer, "synced_copy", None)
        copy = synced_copy() if synced_copy else None
        return copy.model if copy is not None else self.trainer.model

    def run_eval(self) -> dict[str, float]:
        model = self._policy()
        was_training = model.training
        started = time.perf_counter()
        try:
            metrics, _ = self.evaluate(model, self.tokenizer, self.dataset, temperature=0.0,
                                       max_completion_length=self.max_completion_length,
                                       reward_funcs=self.reward_funcs, reward_weights=self.reward_weights)
        finally:
            model.train(was_training)
        out = {f"eval_{k}": float(metrics[k])
               for k in ("accuracy", "accuracy_lenient", "format_rate", "mean_completion_tokens")
               if as_number(metrics.get(k)) is not None}
        out["eval_runtime"] = time.perf_counter() - started
        return out

    def shared_eval(self, step: int) -> dict[str, float]:
        """`run_eval` once for all processes (see the class docstring); every rank gets rank 0's numbers."""
        out = run_on_main(self.run_eval, every_rank=weights_sharded(self.trainer))
        self.history.append({"step": step, **out})
        return out

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer.best_eval = best_eval(state.log_history, state.global_step)  # a resumed run's best
        if self.before_train and state.global_step == 0:  # a resumed run already has its starting score
            self.trainer.log(self.shared_eval(0))  # step 0: TRL has no half-collected metrics yet

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        due = self.every > 0 and step % self.every == 0
        last = step >= state.max_steps  # so "last eval accuracy" is the final model's
        if due or last:
            out = self.shared_eval(step)
            queue_metrics(self.trainer, out)
            control.should_log = True  # this step's record then carries the eval, whatever --logging_steps is
            control.should_save |= note_eval(self.trainer, step, out)  # a new best is saved, whatever --save_steps
        return control


# ---------------------------------------------------------------------------------------------------------------
# Console


class ConsoleProgress(TrainerCallback):
    """A tqdm bar (step, samples/s, time left, reward), one line per eval, and the HealthCheck warnings.

    Replaces transformers' ProgressCallback/PrinterCallback, which print the whole metrics dict every step.
    While the bar is up, log lines (warnings included) are written through tqdm so they do not break it.
    """

    def __init__(self, health: HealthCheck | None = None) -> None:
        self.health = health or HealthCheck()
        self.bar = None
        self._redirect = None
        self.trainer = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self.bar = tqdm(total=state.max_steps, initial=state.global_step, unit="step", dynamic_ncols=True,
                        desc="GRPO", bar_format="{desc} {n_fmt}/{total_fmt} steps |{bar}| "
                                                "{elapsed}<{remaining} left{postfix}")
        self._redirect = logging_redirect_tqdm()
        self._redirect.__enter__()

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.n = state.global_step
            if not control.should_log:  # a logging step redraws in on_log, with the new reward and samples/s
                self.bar.refresh()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "eval_accuracy" in logs:
            self.write(f"step {state.global_step}: eval accuracy {logs['eval_accuracy']:.1%}, "
                       f"format {logs.get('eval_format_rate', float('nan')):.1%}, "
                       f"{logs.get('eval_mean_completion_tokens', float('nan')):.1f} tokens per completion")
        for message in self.health.update(state.global_step, logs):
            logger.warning(message)
            writer = tensorboard_writer(self.trainer)
            if writer is not None:
                writer.add_text("warnings", message, state.global_step)
        if self.bar is not None and "reward" in logs:
            postfix = {}
            if as_number(logs.get("samples_per_second")) is not None:
                postfix["samples/s"] = f"{logs['samples_per_second']:.1f}"
            if as_number(logs.get("reward")) is not None:
                postfix["reward"] = f"{logs['reward']:.3f}"
            self.bar.set_postfix(postfix, refresh=True)

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None

    def on_train_end(self, args, state, control, **kwargs):
        self.close()


def use_console_progress(trainer, console: ConsoleProgress) -> None:
    """Swap transformers' own progress display for `console` (and hand it the trainer)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    console.trainer = trainer
    trainer.add_callback(console)


# ---------------------------------------------------------------------------------------------------------------
# All of them, for a run


def add_callbacks(trainer, config: RunConfig, train_ds, eval_ds, tokenizer) -> ConsoleProgress:
    """train_log.json + completions.jsonl, accuracy eval, and the console bar in place of transformers' dict dump.

    Order matters: RunLog times a step before AccuracyEval's eval runs, and both act before the console reads logs.
    """
    from grpo_math.evaluation.scoring import evaluate  # the same scoring code as eval.py

    run_log = RunLog(config.output_dir, train_ds, log_completions_steps=config.log_completions_steps)
    run_log.trainer = trainer
    trainer.add_callback(run_log)
    if eval_ds is not None:
        # a user's reward that fails in the eval is named like one that fails in a step (train.py's one line)
        rewards = [guard_reward(f, when="the accuracy eval") for f in config.rewards]
        evaluate = functools.partial(evaluate, chat_template_kwargs=config.chat_template_kwargs)  # as in training
        accuracy = AccuracyEval(evaluate, eval_ds, tokenizer, every=config.eval_every,
                                before_train=config.eval_before_train,
                                max_completion_length=config.max_completion_length,
                                reward_funcs=rewards, reward_weights=config.reward_weights)
        accuracy.trainer = trainer
        trainer.add_callback(accuracy)
    console = ConsoleProgress(HealthCheck(max_completion_length=config.max_completion_length))
    use_console_progress(trainer, console)
    return console
