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

`train.py` does the same at the end of every training run (grpo_math/runs/plots.py draws, grpo_math/runs/report.py
counts). It reads only what the run wrote, so it also works on a
run that is still going or that crashed. Left out on purpose: interactive plots (TensorBoard does that) and
per-token statistics (not logged).
"""


from __future__ import annotations

import argparse
import sys
from pathlib import Path

from grpo_math.runs.plots import default_out_dir, visualize
from grpo_math.runs.report import SMOOTHING, VisualizeError, build_report, load_run, smooth  # noqa: F401 - the API
from grpo_math.runs.rundir import PLOTS, REPORT


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
