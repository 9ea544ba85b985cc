"""Plots and a training report from a run directory alone (train_log.json, completions.jsonl, run_config.json).

    python visualize.py ckpts/qwen05-gsm8k              # writes the PNGs and training_report.json into the run
    python visualize.py ckpts/run-a ckpts/run-b         # overlays runs; writes to ckpts/compare_run-a_vs_run-b/
    python visualize.py ckpts/run-a ckpts/run-b --out_dir plots/ab --smoothing 0.8

Writes:
  training_metrics.png      reward and each reward's mean, loss, completion length, entropy/KL, learning rate,
                            and the learning-signal health fractions, over optimizer steps (smoothed + raw)
  metrics_distribution.png  histograms of reward (per sampled completion), completion length and loss
  eval_curve.png            greedy eval accuracy and format rate over steps (a note when no eval ran)
  training_report.json      summary statistics, best step, and first/last/delta/min/max/mean of every metric;
                            for several runs, {"runs": [one report per run]}

`train.py` runs this at the end of every training run. It reads only what the run wrote, so it also works on a
run that is still going or that crashed. Left out on purpose: interactive plots (TensorBoard does that) and
per-token statistics (not logged).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SMOOTHING = 0.6  # EMA weight, TensorBoard's default slider value: follows trends without hiding the last steps
WARN_FRACTION = 0.9  # drawn on the health panel; the threshold callbacks.HealthCheck warns at
PLOTS = ("training_metrics.png", "metrics_distribution.png", "eval_curve.png")
REPORT = "training_report.json"
EVAL_KEYS = ("eval_accuracy", "eval_format_rate", "eval_mean_completion_tokens")


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
    log = path / "train_log.json"
    if not log.is_file():
        raise VisualizeError(f"{path}: no train_log.json (is this a run directory? it is written at the first "
                             "logged step)")
    try:
        records = json.loads(log.read_text())
    except json.JSONDecodeError as e:
        raise VisualizeError(f"{log}: not valid JSON ({e})") from None
    if not isinstance(records, list):
        raise VisualizeError(f"{log}: expected a list of records")
    config_file = path / "run_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    return {"name": path.resolve().name, "dir": path, "records": records,
            "completions": _read_jsonl(path / "completions.jsonl"), "config": config}


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
        "eval": ev,
        "completions": {"rows": len(run["completions"]),
                        "steps": sorted({c.get("step") for c in run["completions"]} - {None}),
                        "mean_reward": _mean(done)},
        "metrics": metrics,
    }


# ---------------------------------------------------------------------------------------------------------------
# Plots


def _pyplot():
    """pyplot on the file-only Agg backend (set here, not at import: importing this module changes nothing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _note(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="0.35", wrap=True)


def _colors(n: int) -> list:
    plt = _pyplot()
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return [cycle[i % len(cycle)] for i in range(n)]


def _line(ax, steps, values, *, color, label, smoothing: float, linestyle="-") -> None:
    """The smoothed curve, solid, over the raw values, faint (markers when there are few points)."""
    if not values:
        return
    few = len(values) <= 20
    ax.plot(steps, values, color=color, alpha=0.3, linewidth=1, linestyle=linestyle, marker="o" if few else None,
            markersize=3)
    ax.plot(steps, smooth(values, smoothing), color=color, linewidth=2, linestyle=linestyle, label=label)


def _label(run: dict, what: str, n_runs: int) -> str:
    return what if n_runs == 1 else f"{run['name']}: {what}"


def _readable_y(ax) -> None:
    """Plain tick labels (no "+6.629" offset), and a flat series drawn flat rather than as magnified noise."""
    ax.ticklabel_format(axis="y", useOffset=False)
    lo, hi = ax.get_ylim()
    mid, span = (lo + hi) / 2, hi - lo
    floor = 0.02 * abs(mid)  # a span under 2% of the level is not a trend worth a full-height wiggle
    if 0 < span < floor:
        ax.set_ylim(mid - floor / 2, mid + floor / 2)


def _finish(ax, title: str, ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    if ax.get_lines():
        _readable_y(ax)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    ax.set_title(title, fontsize=12)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")


def plot_training_metrics(runs: list[dict], path: Path, smoothing: float = SMOOTHING) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(18, 10))
    n = len(runs)
    styles = ["-", "--", ":", "-."]
    ax_kl = None  # a right-hand axis for KL, made only when some run logged it (--beta > 0)
    limits: set[int] = set()  # --max_completion_length lines drawn, one per distinct value
    for i, run in enumerate(runs):
        recs = run["records"]
        names = reward_names(recs)
        colors = _colors(1 + len(names)) if n == 1 else [_colors(n)[i]] * (1 + len(names))
        ax = axes[0, 0]
        _line(ax, *series(recs, "reward"), color=colors[0], label=_label(run, "total reward", n), smoothing=smoothing)
        for j, name in enumerate(names):
            _line(ax, *series(recs, f"rewards/{name}/mean"), color=colors[j + 1], smoothing=smoothing,
                  label=_label(run, f"{name} (mean)", n), linestyle=styles[(j + 1) % len(styles)])
        c = _colors(n)[i] if n > 1 else _colors(1)[0]
        c2 = _colors(n)[i] if n > 1 else _colors(2)[1]  # a panel's second series: own colour for one run
        _line(axes[0, 1], *series(recs, "loss"), color=c, label=_label(run, "loss", n), smoothing=smoothing)
        steps, mean_len = series(recs, "completions/mean_length")
        _line(axes[0, 2], steps, mean_len, color=c, label=_label(run, "mean", n), smoothing=smoothing)
        lo_steps, lo = series(recs, "completions/min_length")
        hi_steps, hi = series(recs, "completions/max_length")
        if n == 1 and lo and lo_steps == hi_steps:  # overlaid bands of several runs only make mud
            axes[0, 2].fill_between(lo_steps, lo, hi, color=c, alpha=0.12, label="min-max in the batch")
        limit = run["config"].get("args", {}).get("max_completion_length")
        if limit and limit not in limits:
            limits.add(limit)
            axes[0, 2].axhline(limit, color="0.3", linestyle=":", linewidth=1.5,
                               label=f"--max_completion_length {limit}")
        _line(axes[1, 0], *series(recs, "entropy"), color=c, label=_label(run, "entropy", n), smoothing=smoothing)
        kl_steps, kl = series(recs, "kl")
        if kl:
            ax_kl = ax_kl or axes[1, 0].twinx()
            _line(ax_kl, kl_steps, kl, color=c2, label=_label(run, "KL (right axis)", n), smoothing=smoothing,
                  linestyle="--")
            ax_kl.set_ylabel("KL to reference (nats per token)")
        _line(axes[1, 1], *series(recs, "learning_rate"), color=c, label=_label(run, "learning rate", n),
              smoothing=0.0)
        _line(axes[1, 2], *series(recs, "frac_reward_zero_std"), color=c, smoothing=smoothing,
              label=_label(run, "groups with zero reward std", n))
        _line(axes[1, 2], *series(recs, "completions/clipped_ratio"), color=c2, linestyle="--", smoothing=smoothing,
              label=_label(run, "completions cut at max length", n))
    _finish(axes[0, 0], "Reward", "reward (mean per completion)")
    _finish(axes[0, 1], "Loss", "GRPO loss")
    _finish(axes[0, 2], "Completion length", "tokens per completion")
    title = "Policy entropy and KL" if ax_kl else "Policy entropy (KL not computed: --beta 0)"
    _finish(axes[1, 0], title, "entropy (nats per token)")
    if ax_kl is not None:  # one legend for both axes
        h1, l1 = axes[1, 0].get_legend_handles_labels()
        h2, l2 = ax_kl.get_legend_handles_labels()
        axes[1, 0].legend(h1 + h2, l1 + l2, fontsize=8, loc="best")
    _finish(axes[1, 1], "Learning rate", "learning rate")
    axes[1, 1].ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    axes[1, 2].axhline(WARN_FRACTION, color="0.5", linestyle=":", linewidth=1, label="warning threshold")
    axes[1, 2].set_ylim(-0.03, 1.05)
    _finish(axes[1, 2], "Learning signal health (lower is better)", "fraction of batch")
    for ax in axes.flat:
        if not ax.get_lines() and not ax.collections:
            _note(ax, "not logged")
    names = ", ".join(r["name"] for r in runs)
    fig.suptitle(f"GRPO training metrics: {names}\nbold lines: smoothed (EMA {smoothing}); faint: per logged step",
                 fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bins(values: list[float]) -> list[float]:
    """Even histogram bin edges over all runs' values: 20 bins, fewer for few values, one around a constant."""
    lo, hi = (min(values), max(values)) if values else (0.0, 0.0)
    if hi - lo <= 1e-12:
        return [lo - 0.5, hi + 0.5]
    k = 20 if len(values) >= 40 else max(5, len(values) // 2)
    return [lo + (hi - lo) * i / k for i in range(k + 1)]


def _discrete_bars(ax, runs: list[dict], values_of_runs: list[list[float]], colors: list) -> bool:
    """Side-by-side bars per distinct value, for per-completion rewards (sums of a few fixed levels)."""
    distinct = sorted({v for values in values_of_runs for v in values})
    if not 1 <= len(distinct) <= 12:
        return False
    gap = min((b - a for a, b in zip(distinct, distinct[1:])), default=1.0)
    width = 0.8 * gap / len(runs)
    for i, (run, values, c) in enumerate(zip(runs, values_of_runs, colors)):
        if not values:
            continue
        x = [v + (i - (len(runs) - 1) / 2) * width for v in distinct]
        ax.bar(x, [values.count(v) for v in distinct], width=width, color=c, alpha=0.6, edgecolor=c,
               label=_label(run, f"n={len(values)}, mean {sum(values) / len(values):.3g}", len(runs)))
        ax.axvline(sum(values) / len(values), color=c, linestyle="--", linewidth=1.5)
    ax.set_xticks(distinct)
    ax.set_xlim(distinct[0] - gap, distinct[-1] + gap)
    return True


def plot_distributions(runs: list[dict], path: Path) -> None:
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    colors = _colors(len(runs))
    n = len(runs)
    per_completion = all(run["completions"] for run in runs)
    panels_of_runs = []
    for run in runs:
        if per_completion:
            rewards = [x["reward"] for x in run["completions"] if isinstance(x.get("reward"), (int, float))]
        else:
            rewards = series(run["records"], "reward")[1]
        panels_of_runs.append([rewards, series(run["records"], "completions/mean_length")[1],
                               series(run["records"], "loss")[1]])
    for k, ax in enumerate(axes):
        if k == 0 and per_completion and _discrete_bars(ax, runs, [p[0] for p in panels_of_runs], colors):
            continue
        bins = _bins([v for panels in panels_of_runs for v in panels[k]])  # shared, so runs compare bar for bar
        for run, panels, c in zip(runs, panels_of_runs, colors):
            values = panels[k]
            if values:
                ax.hist(values, bins=bins, color=c, alpha=0.5, edgecolor=c,
                        label=_label(run, f"n={len(values)}, mean {sum(values) / len(values):.3g}", n))
                ax.axvline(sum(values) / len(values), color=c, linestyle="--", linewidth=1.5)
    what = "per sampled completion (completions.jsonl)" if per_completion else "mean per logged step"
    for ax, title, xlabel in [(axes[0], f"Reward, {what}", "reward"),
                              (axes[1], "Mean completion length, per logged step", "tokens per completion"),
                              (axes[2], "Loss, per logged step", "GRPO loss")]:
        ax.set_title(title, fontsize=12)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, title="dashed: mean", title_fontsize=8)
        else:
            _note(ax, "not logged")
    fig.suptitle(f"Distributions: {', '.join(r['name'] for r in runs)}", fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_eval_curve(runs: list[dict], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    colors = _colors(len(runs))
    n = len(runs)
    any_eval = False
    metric_colors = _colors(2)
    for i, (run, c) in enumerate(zip(runs, colors)):
        for j, (key, style, marker, what) in enumerate([("eval_accuracy", "-", "o", "accuracy"),
                                                        ("eval_format_rate", "--", "s", "format rate")]):
            steps, values = series(run["records"], key, train_only=False)
            if values:
                any_eval = True
                ax.plot(steps, [100 * v for v in values], linestyle=style, marker=marker, linewidth=2,
                        color=metric_colors[j] if n == 1 else c, label=_label(run, what, n))
        steps, acc = series(run["records"], "eval_accuracy", train_only=False)
        if acc:
            ax.annotate(f"{100 * acc[-1]:.1f}%", (steps[-1], 100 * acc[-1]), textcoords="offset points",
                        xytext=(6, 6 - 14 * i), color=metric_colors[0] if n == 1 else c, fontsize=9)
    if any_eval:
        ax.set_ylim(-3, 103)
        ax.set_xlabel("optimizer step (0 = before training)")
        ax.set_ylabel("% of held-out problems (greedy)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9, loc="best")
    else:
        ax.set_axis_off()
        _note(ax, "No accuracy eval in this run.\nPass --eval_every N (and --eval_before_train) to score "
                  "held-out problems during training.")
    ax.set_title(f"Eval accuracy and format rate: {', '.join(r['name'] for r in runs)}", fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------------
# Entry points


def default_out_dir(run_dirs: list[Path]) -> Path:
    """The run itself for one run; a sibling compare_<a>_vs_<b> directory for several."""
    if len(run_dirs) == 1:
        return run_dirs[0]
    names = [p.resolve().name for p in run_dirs]
    label = "_vs_".join(names) if len(names) <= 3 else f"{len(names)}_runs"
    return run_dirs[0].resolve().parent / f"compare_{label}"


def visualize(run_dirs: list[str | Path] | str | Path, out_dir: str | Path | None = None,
              smoothing: float = SMOOTHING) -> dict:
    """Write the three PNGs and training_report.json; returns the report (one run) or {"runs": [...]}."""
    if isinstance(run_dirs, (str, Path)):
        run_dirs = [run_dirs]
    dirs = [Path(d) for d in run_dirs]
    runs = [load_run(d) for d in dirs]
    out = Path(out_dir) if out_dir else default_out_dir(dirs)
    out.mkdir(parents=True, exist_ok=True)
    reports = [build_report(run) for run in runs]
    report = reports[0] if len(reports) == 1 else {"runs": reports}
    tmp = out / (REPORT + ".tmp")  # the report first: it survives a plotting failure
    tmp.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    tmp.replace(out / REPORT)
    plot_training_metrics(runs, out / PLOTS[0], smoothing)
    plot_distributions(runs, out / PLOTS[1])
    plot_eval_curve(runs, out / PLOTS[2])
    logger.info("plots and %s written to %s", REPORT, out)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="visualize.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories (with train_log.json)")
    p.add_argument("--out_dir", help="where to write (default: the run itself; for several runs, "
                                     "a compare_<a>_vs_<b> directory next to the first)")
    p.add_argument("--smoothing", type=float, default=SMOOTHING, help="EMA weight for the curves, 0 (none) to <1")
    args = p.parse_args(argv)
    if not 0 <= args.smoothing < 1:
        p.error(f"--smoothing {args.smoothing} must be in [0, 1)")
    try:
        report = visualize(args.run_dirs, args.out_dir, args.smoothing)
    except VisualizeError as e:
        print(f"visualize.py: error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out_dir) if args.out_dir else default_out_dir([Path(d) for d in args.run_dirs])
    for r in report.get("runs", [report]):
        s, ev = r["summary"], r["eval"]
        acc = (f", eval accuracy {ev['first_accuracy']:.1%} -> {ev['last_accuracy']:.1%}"
               if ev.get("accuracy") else "")
        reward = "n/a" if s["mean_reward"] is None else f"{s['mean_reward']:.3f}"
        print(f"{r['run_dir']}: {s['steps']} steps, mean reward {reward}{acc}")
    print(f"wrote {', '.join(PLOTS)} and {REPORT} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
