"""The training report: what a run directory's logs say, as numbers (training_report.json and the summary).

    run = load_run("ckpts/demo")          # train_log.json, completions.jsonl, run_config.json
    report = build_report(run)            # summary, eval first/last/best, first/last/delta of every metric
    print(format_summary(report, wall_time_s=20.0))

It reads only what a run wrote, so it also works on a run that is still going or that crashed. `plots.py` draws
from the same `load_run` and `series`; train.py prints `format_summary` at the end of every run.
Left out on purpose: per-token statistics (not logged).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from grpo_math.runs.best_checkpoint import BEST, read_best
from grpo_math.runs.rundir import (COMPLETIONS_LOG, FINAL, PLOTS, REPORT, TENSORBOARD_DIR, TRAIN_LOG,
                              read_run_config)

SMOOTHING = 0.6  # EMA weight, TensorBoard's default slider value: follows trends without hiding the last steps


class VisualizeError(ValueError):
    """A run directory that cannot be read; the message names it."""


# ---------------------------------------------------------------------------------------------------------------
# Reading a run


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a line cut by a crash ends the file
    return rows


def load_run(run_dir: str | Path) -> dict:
    """{"name", "dir", "records" (train_log.json), "completions" (completions.jsonl rows), "config"}."""
    path = Path(run_dir)
    log = path / TRAIN_LOG
    if not log.is_file():
        raise VisualizeError(f"{path}: no train_log.json (is this a run directory? it is written at the first "
                             "logged step)")
    try:
        records = json.loads(log.read_text())
    except json.JSONDecodeError as e:
        raise VisualizeError(f"{log}: not valid JSON ({e})") from None
    if not isinstance(records, list):
        raise VisualizeError(f"{log}: expected a list of records")
    config = read_run_config(path) or {}  # an unreadable one is logged and left out of the plots' titles
    return {"name": path.resolve().name, "dir": path, "records": records,
            "completions": _read_jsonl(path / COMPLETIONS_LOG), "config": config}


def is_train_record(record: dict) -> bool:
    """A record of a training step (as opposed to the step-0 eval-only record)."""
    return "reward" in record or "loss" in record


def series(records: list[dict], key: str, *, train_only: bool = True) -> tuple[list[int], list[float]]:
    """(steps, values) of `key`, skipping records without a number for it."""
    steps, values = [], []
    for r in records:
        v = r.get(key)
        if (not train_only or is_train_record(r)) and isinstance(v, (int, float)) and math.isfinite(v):
            steps.append(r["step"])
            values.append(float(v))
    return steps, values


def smooth(values: list[float], weight: float = SMOOTHING) -> list[float]:
    """TensorBoard's debiased exponential moving average (the first point is not pulled towards zero)."""
    out, last, norm = [], 0.0, 0.0
    for v in values:
        last = weight * last + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out.append(last / norm)
    return out


def reward_names(records: list[dict]) -> list[str]:
    names = {k[len("rewards/"):-len("/mean")] for r in records for k in r
             if k.startswith("rewards/") and k.endswith("/mean")}
    return sorted(names)


# ---------------------------------------------------------------------------------------------------------------
# The report


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def build_report(run: dict) -> dict:
    """Summary statistics, best step, eval first/last, and first/last/delta/min/max/mean of every metric."""
    records = run["records"]
    train = [r for r in records if is_train_record(r)]
    keys = sorted({k for r in records for k, v in r.items() if k != "step" and isinstance(v, (int, float))})
    metrics = {}
    for key in keys:
        steps, values = series(records, key, train_only=not key.startswith("eval_"))
        if values:
            metrics[key] = {"first": values[0], "last": values[-1], "delta": values[-1] - values[0],
                            "min": min(values), "max": max(values), "mean": _mean(values), "n": len(values),
                            "first_step": steps[0], "last_step": steps[-1]}
    col = lambda key: series(records, key)[1]  # noqa: E731 - a local shorthand
    summary = {
        "steps": max((r["step"] for r in train), default=0),
        "logged_steps": len(train),
        "mean_reward": _mean(col("reward")),
        "mean_loss": _mean(col("loss")),
        "mean_completion_tokens": _mean(col("completions/mean_length")),
        "mean_clipped_ratio": _mean(col("completions/clipped_ratio")),
        "mean_frac_reward_zero_std": _mean(col("frac_reward_zero_std")),
        "mean_samples_per_second": _mean(col("samples_per_second")),
        "total_step_time_s": sum(col("step_time")) if col("step_time") else None,
    }
    eval_steps, accuracy = series(records, "eval_accuracy", train_only=False)
    ev: dict[str, Any] = {"steps": eval_steps, "accuracy": accuracy,
                          "format_rate": [r.get("eval_format_rate") for r in records
                                          if isinstance(r.get("eval_accuracy"), (int, float))]}
    if accuracy:
        best = max(range(len(accuracy)), key=lambda i: (accuracy[i], -i))  # ties: the earliest step
        ev.update(first_step=eval_steps[0], first_accuracy=accuracy[0], last_step=eval_steps[-1],
                  last_accuracy=accuracy[-1], delta_accuracy=accuracy[-1] - accuracy[0],
                  best_step=eval_steps[best], best_accuracy=accuracy[best])
        best_step = {"by": "eval_accuracy", "step": eval_steps[best], "value": accuracy[best]}
    else:
        r_steps, rewards = series(records, "reward")
        if rewards:
            i = max(range(len(rewards)), key=lambda j: (rewards[j], -j))
            best_step = {"by": "reward (no eval ran)", "step": r_steps[i], "value": rewards[i]}
        else:
            best_step = None
    done = [c.get("reward") for c in run["completions"] if isinstance(c.get("reward"), (int, float))]
    args = run["config"].get("args", {})
    return {
        "run_dir": str(run["dir"]),
        "config": {k: args.get(k) for k in ("model_id", "dataset_id", "max_steps", "num_generations",
                                            "max_completion_length", "learning_rate", "beta", "reward_funcs")
                   if k in args},
        "summary": summary,
        "best_step": best_step,
        # the kept best checkpoint (RUN/best/, best_checkpoint.py): the best eval at a step >= 1, or None
        "best_checkpoint": read_best(run["dir"]),
        "eval": ev,
        "completions": {"rows": len(run["completions"]),
                        "steps": sorted({c.get("step") for c in run["completions"]} - {None}),
                        "mean_reward": _mean(done)},
        "metrics": metrics,
    }



# ---------------------------------------------------------------------------------------------------------------
# The end-of-run summary


def _fmt(value: Any, spec: str = ".4g") -> str:
    return "n/a" if value is None else format(value, spec)


def format_summary(report: dict, *, wall_time_s: float, warnings: list[dict] | None = None,
                   tensorboard: bool = True, started_from: str | None = None, computed_on: str | None = None) -> str:
    """The end-of-run summary, from a `build_report` dict; a few lines a user reads at a glance. `started_from`
    says what the model was before this run, when that is not plain from the command (the demo's warm start)."""
    s = report.get("summary", {})
    run_dir = report.get("run_dir", ".")
    lines = [f"Run finished: {s.get('steps', 0)} steps in {wall_time_s:.1f} s (wall time) -> {run_dir}"]
    if started_from:
        lines.append(f"  started from             {started_from}")
    if computed_on:  # the device and the dtype --dtype auto chose (bf16 on a CPU with native bf16)
        lines.append(f"  device, dtype            {computed_on}")
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
    best = report.get("best_checkpoint")
    if best:
        lines.append(f"  best checkpoint          step {best['step']} ({best['eval_accuracy']:.1%} eval accuracy) -> "
                     f"{best['path']} (= {best['checkpoint']}; final/ is the last step)")
    if warnings:
        kinds = sorted({w["kind"].split(":")[0] for w in warnings})
        lines.append(f"  warnings                 {len(warnings)} ({', '.join(kinds)}); see the log above")
    outputs = [name for name in (TRAIN_LOG, COMPLETIONS_LOG, *PLOTS, REPORT, FINAL, BEST)
               if (Path(run_dir) / name).exists()]
    lines.append(f"  outputs                  {run_dir}/ {', '.join(outputs)}")
    if tensorboard:
        lines.append(f"  TensorBoard              tensorboard --logdir {Path(run_dir) / TENSORBOARD_DIR}")
    return "\n".join(lines)
