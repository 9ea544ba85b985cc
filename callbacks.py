"""Trainer callbacks that let a user see a GRPO run: metrics log, completions log, accuracy eval, console, summary.

`train.py` adds these to the trainer and hands each one the trainer (`callback.trainer = trainer`):

    RunLog          OUTPUT_DIR/train_log.json (one record per logged step, rewritten atomically at every log, so
                    a crash leaves a valid file), OUTPUT_DIR/completions.jsonl (every --log_completions_steps:
                    prompt, completion, gold answer, each reward, advantage, step) and the same completions as
                    text in TensorBoard; it also measures samples (completions) per second.
    AccuracyEval    greedy accuracy on held-out problems every --eval_every steps (and at step 0 with
                    --eval_before_train, and on the final model), through `eval.evaluate`, the code eval.py runs.
    ConsoleProgress one tqdm bar (step, samples/s, time left, reward) instead of transformers' per-step dict
                    dump, one line per eval, and the HealthCheck warnings.
    HealthCheck     plain-words warnings for the silent failures of GRPO: no learning signal, truncated
                    completions, a constant reward (pure logic on logged metrics, unit-testable).
    format_summary  the end-of-run summary printed by train.py.

How this tool's own metrics (samples_per_second, eval_*) reach TensorBoard, wandb and train_log.json: they are
queued into TRL's per-step metric buffer (`trainer._metrics["train"]`) at the end of a step, so TRL's `log()`
averages and reports them with its own, at the same step, to every reporter. That is a private attribute of
GRPOTrainer 1.16; the alternative, a second `trainer.log()` call, would flush TRL's half-collected metrics into
the wrong record. Left out on purpose: per-token statistics, images, anything needing a second pass over data.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

TRAIN_LOG = "train_log.json"
COMPLETIONS_LOG = "completions.jsonl"
TB_COMPLETIONS_SHOWN = 8  # completions per TensorBoard text entry: enough to compare a group or two, still readable
TB_TEXT_CHARS = 600  # per prompt/completion cell in TensorBoard; the full text is in completions.jsonl

# HealthCheck thresholds. "Nearly every" = 90%: a few groups with signal still leave most of the batch idle.
ZERO_STD_FRACTION = 0.9  # share of prompt groups whose completions all got the same reward
CLIPPED_FRACTION = 0.9  # share of completions that hit --max_completion_length
PATIENCE = 3  # consecutive logged steps before warning: one bad batch is noise, three is a pattern
CONSTANT_TOL = 1e-6  # reward std below this (within a step, and mean change across steps) counts as constant


# ---------------------------------------------------------------------------------------------------------------
# JSON helpers


def as_number(value: Any) -> float | int | None:
    """A JSON-safe number: ints and finite floats as they are, NaN/inf/None as None (JSON has no NaN)."""
    if hasattr(value, "item"):  # a 0-d tensor or numpy scalar
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def write_json_atomic(path: Path, records: list[dict]) -> None:
    """Write a JSON list, one record per line, to a temporary file and rename it over `path`: a reader (or a
    crash) never sees half a file. One line per record keeps a 10k-step log small enough to rewrite each step."""
    tmp = path.with_name(path.name + ".tmp")
    body = ",\n".join(json.dumps(r, allow_nan=False) for r in records)
    tmp.write_text(f"[\n{body}\n]\n" if records else "[]\n")
    os.replace(tmp, path)


def _text(x: Any) -> str:
    """A prompt or completion as plain text: chat messages are joined by their content."""
    if isinstance(x, str):
        return x
    if isinstance(x, list):
        return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in x)
    return str(x)


def prompt_key(prompt: Any) -> str:
    """A stable key for a dataset prompt (string or chat messages), to find its gold answer again."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True, ensure_ascii=False)


def queue_metrics(trainer, metrics: dict[str, float]) -> None:
    """Hand metrics to TRL's buffer so its next `log()` reports them at this step to every reporter (see top)."""
    for name, value in metrics.items():
        value = as_number(value)
        if value is not None:
            trainer._metrics["train"][name].append(float(value))


# ---------------------------------------------------------------------------------------------------------------
# train_log.json, completions.jsonl, throughput


class RunLog(TrainerCallback):
    """train_log.json, completions.jsonl and completion text in TensorBoard; samples/s per step.

    The gold answer of each logged completion is looked up from its prompt in the training dataset: nothing in
    the training path (rewards, trainer) is wrapped or changed to carry it, and it works for any trainer that
    keeps TRL's `_logs`. A prompt that maps to two different answers is logged with answer None.
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
        write_json_atomic(self.path, self.records)

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
        write_json_atomic(self.path, self.records)
        return record

    def _read_records(self) -> list[dict]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return []
        return data if isinstance(data, list) else []

    # -- completions.jsonl and TensorBoard text

    def _completions_due(self, step: int, logs: dict) -> bool:
        # "every N steps" holds even when N is not a multiple of --logging_steps: the first log past each multiple
        if "reward" not in logs or step <= 0:
            return False
        return step // self.log_completions_steps > self._last_completions_step // self.log_completions_steps

    def completion_rows(self, step: int) -> list[dict]:
        """The last generation batch as rows: step, prompt, completion, answer, rewards, reward, advantage."""
        logs = getattr(self.trainer, "_logs", None)
        if not logs or not logs.get("prompt"):
            if not self._warned_no_logs:
                logger.warning("this trainer keeps no completions (_logs); completions.jsonl stays empty")
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
            parts = [w * r for w, r in zip(weights, rewards.values()) if r is not None]
            rows.append({
                "step": step,
                "prompt": prompt,
                "completion": _text(completion),
                "answer": self._answers.get(prompt_key(prompt)),
                "rewards": rewards,
                "reward": sum(parts) if parts else None,  # weighted sum, as TRL computes the advantage from it
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
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, path)


def tensorboard_writer(trainer):
    """The SummaryWriter of the trainer's TensorBoard callback, or None when TensorBoard is not reporting."""
    from transformers.integrations import TensorBoardCallback

    if trainer is None:
        return None
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TensorBoardCallback) and cb.tb_writer is not None:
            return cb.tb_writer
    return None


def _cell(text: str) -> str:
    text = text if len(text) <= TB_TEXT_CHARS else text[:TB_TEXT_CHARS] + " …"
    # model output is text, not HTML: a tag it writes (<think>, or one TensorBoard allows, like <b>) shows as written
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", "\\|").replace("\n", "<br>") or " "


def completions_markdown(rows: list[dict], limit: int = TB_COMPLETIONS_SHOWN) -> str:
    """A markdown table of the first `limit` rows (TensorBoard renders it); prompts shown by their last turn."""
    names = list(rows[0]["rewards"]) if rows else []
    head = "| answer | " + " | ".join(names) + " | advantage | question | completion |"
    lines = [head, "|" + "---|" * (len(names) + 4)]
    for row in rows[:limit]:
        prompt = row["prompt"]
        question = prompt[-1].get("content", "") if isinstance(prompt, list) and prompt else _text(prompt)
        rewards = " | ".join("–" if row["rewards"][n] is None else f"{row['rewards'][n]:.2f}" for n in names)
        adv = "–" if row["advantage"] is None else f"{row['advantage']:+.2f}"
        lines.append(f"| {_cell(str(row['answer']))} | {rewards} | {adv} | {_cell(question)} | "
                     f"{_cell(row['completion'])} |")
    if len(rows) > limit:
        lines.append(f"\n{limit} of {len(rows)} completions shown; all are in completions.jsonl")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Accuracy during training


class AccuracyEval(TrainerCallback):
    """Greedy accuracy on held-out problems every `every` steps, before training, and on the final model.

    `evaluate` is `eval.evaluate` (the code eval.py runs, so training and eval agree on "correct"). Results go
    into that step's logs as eval_accuracy, eval_format_rate, eval_mean_completion_tokens, eval_runtime (s).
    """

    def __init__(self, evaluate: Callable, dataset, tokenizer, *, every: int = 0, before_train: bool = False,
                 at_end: bool = True, max_completion_length: int = 512, reward_funcs: list[str] | None = None,
                 reward_weights: list[float] | None = None) -> None:
        self.evaluate = evaluate
        self.dataset = dataset
        self.tokenizer = tokenizer
        self.every = every
        self.before_train = before_train
        self.at_end = at_end
        self.max_completion_length = max_completion_length
        self.reward_funcs = reward_funcs  # names of the run's own rewards: eval records carry the training reward
        self.reward_weights = reward_weights
        self.history: list[dict] = []  # {"step", "eval_accuracy", ...} in order
        self.trainer = None

    def _policy(self):
        """The model to generate with: rollout's synced inference copy when the trainer has one (merged weights,
        ~4x faster than the PEFT wrapper on GPU), else the training model itself."""
        synced_copy = getattr(self.trainer, "synced_copy", None)
        copy = synced_copy() if synced_copy else None
        return copy.model if copy is not None else self.trainer.model

    def run_eval(self, step: int) -> dict[str, float]:
        model = self._policy()
        was_training = model.training
        started = time.perf_counter()
        try:
            metrics, _ = self.evaluate(model, self.tokenizer, self.dataset, temperature=0.0,
                                       max_completion_length=self.max_completion_length,
                                       reward_funcs=self.reward_funcs, reward_weights=self.reward_weights)
        finally:
            model.train(was_training)
        out = {f"eval_{k}": float(metrics[k]) for k in ("accuracy", "format_rate", "mean_completion_tokens")
               if as_number(metrics.get(k)) is not None}
        out["eval_runtime"] = time.perf_counter() - started
        self.history.append({"step": step, **out})
        return out

    def on_train_begin(self, args, state, control, **kwargs):
        if self.before_train and state.global_step == 0:  # a resumed run already has its starting score
            self.trainer.log(self.run_eval(0))  # step 0: TRL has no half-collected metrics yet

    def on_step_end(self, args, state, control, **kwargs):
        step = state.global_step
        due = self.every > 0 and step % self.every == 0
        last = self.at_end and step >= state.max_steps  # so "last eval accuracy" is the final model's
        if due or last:
            queue_metrics(self.trainer, self.run_eval(step))
            control.should_log = True  # this step's record then carries the eval, whatever --logging_steps is
        return control


# ---------------------------------------------------------------------------------------------------------------
# Warnings


class HealthCheck:
    """Plain-words warnings for GRPO's silent failures, from the logged metrics of consecutive steps.

    Feed it every training log (`update(step, logs)`); it returns the warnings to show now. Each condition
    warns once when it has held for PATIENCE logged steps, and again only after it has cleared and come back.
    """

    def __init__(self, max_completion_length: int | None = None, patience: int = PATIENCE) -> None:
        self.max_completion_length = max_completion_length
        self.patience = patience
        self._streaks: dict[str, list[int]] = {}  # condition -> steps it has held, consecutively
        self._warned: set[str] = set()
        self._last_mean: dict[str, float | None] = {}  # reward name -> its mean at the previous logged step
        self.warnings: list[dict] = []  # every warning given: {"step", "kind", "message"}

    def _track(self, kind: str, holds: bool, step: int) -> list[int] | None:
        """Steps of the current streak when it has just reached `patience` (and was not warned), else None."""
        if not holds:
            self._streaks.pop(kind, None)
            self._warned.discard(kind)
            return None
        streak = self._streaks.setdefault(kind, [])
        streak.append(step)
        if len(streak) >= self.patience and kind not in self._warned:
            self._warned.add(kind)
            return streak[-self.patience:]
        return None

    def update(self, step: int, logs: dict) -> list[str]:
        if "reward" not in logs:  # an eval-only record (step 0) says nothing about training
            return []
        out: list[tuple[str, str]] = []
        zero_std = as_number(logs.get("frac_reward_zero_std"))
        steps = self._track("no_signal", zero_std is not None and zero_std >= ZERO_STD_FRACTION, step)
        if steps:
            out.append(("no_signal", (
                f"no learning signal: at steps {steps[0]}-{steps[-1]}, {zero_std:.0%} of prompt groups gave every "
                "completion the same reward, so their advantages are zero and they teach the model nothing. Try "
                "more completions per prompt (--num_generations), a higher --temperature, easier problems, or a "
                "reward with partial credit.")))
        clipped = as_number(logs.get("completions/clipped_ratio"))
        steps = self._track("truncated", clipped is not None and clipped >= CLIPPED_FRACTION, step)
        if steps:
            limit = f" {self.max_completion_length} tokens" if self.max_completion_length else ""
            out.append(("truncated", (
                f"completions cut off: at steps {steps[0]}-{steps[-1]}, {clipped:.0%} of completions hit "
                f"--max_completion_length{limit} before they ended, so most never reach an answer. Raise "
                "--max_completion_length, or ask for shorter reasoning in the prompt (--system_prompt).")))
        constant = []  # (name, value, steps) of rewards that have just been constant for `patience` steps
        for key in logs:
            if not (key.startswith("rewards/") and key.endswith("/mean")):
                continue
            name = key[len("rewards/"):-len("/mean")]
            mean, std = as_number(logs[key]), as_number(logs.get(f"rewards/{name}/std"))
            previous = self._last_mean.get(name)
            steady = (mean is not None and std is not None and std <= CONSTANT_TOL
                      and (previous is None or abs(mean - previous) <= CONSTANT_TOL))
            self._last_mean[name] = mean
            steps = self._track(f"constant:{name}", steady, step)
            if steps:
                constant.append((name, mean, steps))
        if constant:  # one message for all of them: the demo's random model makes every reward constant at once
            names = ", ".join(f"'{n}' = {v:g}" for n, v, _ in constant)
            steps = constant[0][2]
            out.append(("constant:" + ",".join(n for n, _, _ in constant), (
                f"constant reward: at steps {steps[0]}-{steps[-1]}, {names} for every completion, so "
                f"{'it cannot' if len(constant) == 1 else 'they cannot'} tell completions apart. Check that "
                "each can be earned at all (`python reward.py`) and that the prompt asks for what it checks "
                "(--prompt_template).")))
        for kind, message in out:
            self.warnings.append({"step": step, "kind": kind, "message": message})
        return [m for _, m in out]


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
# End of run


def _fmt(value: Any, spec: str = ".4g") -> str:
    return "n/a" if value is None else format(value, spec)


def format_summary(report: dict, *, wall_time_s: float, warnings: list[dict] | None = None,
                   tensorboard: bool = True) -> str:
    """The end-of-run summary, from a `visualize.build_report` dict; a few lines a user reads at a glance."""
    s = report.get("summary", {})
    run_dir = report.get("run_dir", ".")
    lines = [f"Run finished: {s.get('steps', 0)} steps in {wall_time_s:.1f} s (wall time) -> {run_dir}"]
    lines.append(f"  mean reward              {_fmt(s.get('mean_reward'))}")
    lines.append(f"  mean loss                {_fmt(s.get('mean_loss'))}")
    clipped = s.get("mean_clipped_ratio")
    lines.append(f"  mean completion tokens   {_fmt(s.get('mean_completion_tokens'), '.1f')}"
                 + (f"  ({clipped:.0%} cut off at --max_completion_length)" if clipped is not None else ""))
    ev = report.get("eval") or {}
    if ev.get("steps"):
        lines.append(f"  eval accuracy            {ev['first_accuracy']:.1%} at step {ev['first_step']} -> "
                     f"{ev['last_accuracy']:.1%} at step {ev['last_step']} (greedy decoding)")
    else:
        lines.append("  eval accuracy            none (pass --eval_every N to score held-out problems)")
    if warnings:
        kinds = sorted({w["kind"].split(":")[0] for w in warnings})
        lines.append(f"  warnings                 {len(warnings)} ({', '.join(kinds)}); see the log above")
    outputs = [name for name in ("train_log.json", "completions.jsonl", "training_metrics.png",
                                 "metrics_distribution.png", "eval_curve.png", "training_report.json", "final")
               if (Path(run_dir) / name).exists()]
    lines.append(f"  outputs                  {run_dir}/ {', '.join(outputs)}")
    if tensorboard:
        lines.append(f"  TensorBoard              tensorboard --logdir {Path(run_dir) / 'runs'}")
    return "\n".join(lines)
