"""The plots of a run, drawn from its directory alone: training_metrics.png, metrics_distribution.png, eval_curve.png.

    visualize("ckpts/qwen05-gsm8k")                  # the PNGs and training_report.json, into the run
    visualize(["ckpts/run-a", "ckpts/run-b"])        # overlaid; into ckpts/compare_run-a_vs_run-b/

  training_metrics.png      reward and each reward's mean, loss, completion length, entropy/KL, learning rate,
                            and the learning-signal health fractions, over optimizer steps (smoothed + raw)
  metrics_distribution.png  histograms of reward (per sampled completion), completion length and loss
  eval_curve.png            greedy eval accuracy and format rate over steps (a note when no eval ran)

`visualize.py` is the command line; train.py calls `visualize` at the end of every run. Left out on purpose:
interactive plots (TensorBoard does that).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from grpo_math.runs.health import ZERO_STD_FRACTION
from grpo_math.runs.report import SMOOTHING, build_report, format_summary, load_run, reward_names, series, smooth
from grpo_math.runs.rundir import PLOTS, REPORT, write_atomic

logger = logging.getLogger(__name__)


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
    axes[1, 2].axhline(ZERO_STD_FRACTION, color="0.5", linestyle=":", linewidth=1, label="warning threshold")
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
    write_atomic(out / REPORT, json.dumps(report, indent=2, allow_nan=False) + "\n")  # first: survives a plot failure
    plot_training_metrics(runs, out / PLOTS[0], smoothing)
    plot_distributions(runs, out / PLOTS[1])
    plot_eval_curve(runs, out / PLOTS[2])
    logger.info("plots and %s written to %s", REPORT, out)
    return report


def print_summary(out: Path, health, *, wall_time_s: float, tensorboard: bool, started_from: str | None = None) -> None:
    """Plots and training_report.json, then the summary; plotting errors become a warning."""
    try:
        report = visualize(out)
    except Exception as e:  # noqa: BLE001 - a finished run is worth more than its plots
        logging.getLogger(__name__).warning("could not draw the plots (%s: %s); rerun `python visualize.py %s`", type(e).__name__, e, out)
        written = out / REPORT  # written before the plots, unless the log itself was unreadable
        report = json.loads(written.read_text()) if written.is_file() else {"run_dir": str(out)}
    try:  # run_config.json: the device and dtype the run computed in
        run = json.loads((out / "run_config.json").read_text())
        computed_on = f"{run['device']}, {run['dtype']}"
    except (OSError, ValueError, KeyError, TypeError):
        computed_on = None
    print(format_summary(report, wall_time_s=wall_time_s, warnings=health.warnings, tensorboard=tensorboard,
                         started_from=started_from, computed_on=computed_on), flush=True)
