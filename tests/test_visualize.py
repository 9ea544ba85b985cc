"""visualize.py on synthetic run directories: the report's numbers, the plots, overlays, crashed runs, the CLI.

A real tiny run is visualized in tests/test_callbacks.py (the slow end-to-end test regenerates its plots).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

import visualize
from grpo_math.runs import plots

ROOT = Path(__file__).resolve().parents[1]


def make_run(run_dir: Path, *, steps: int = 30, eval_every: int | None = 10, beta: float = 0.0,
             seed: int = 0) -> Path:
    """A run directory as train.py leaves it: rewards and accuracy rising, lengths falling, some noise."""
    rng = random.Random(seed)
    run_dir.mkdir(parents=True)
    records = [{"step": 0, "epoch": 0, "eval_accuracy": 0.1, "eval_format_rate": 0.0,
                "eval_mean_completion_tokens": 200.0}] if eval_every else []
    completions = []
    for s in range(1, steps + 1):
        p = s / steps
        fmt, acc = min(1.0, 0.2 + p + rng.gauss(0, 0.03)), 0.1 + 0.5 * p + rng.gauss(0, 0.03)
        r = {"step": s, "epoch": s / 100, "loss": rng.gauss(0.0, 0.02), "grad_norm": 0.3, "learning_rate": 1e-5,
             "reward": fmt + acc, "reward_std": 0.5, "rewards/format/mean": fmt, "rewards/format/std": 0.3,
             "rewards/accuracy/mean": acc, "rewards/accuracy/std": 0.4, "completions/mean_length": 200 - 100 * p,
             "completions/min_length": 30.0, "completions/max_length": 256.0,
             "completions/clipped_ratio": 0.5 - 0.4 * p, "frac_reward_zero_std": 0.6 - 0.5 * p,
             "entropy": 0.9 - 0.3 * p, "step_time": 10.0, "samples_per_second": 6.4}
        if beta:
            r["kl"] = 0.003 * s
        if eval_every and s % eval_every == 0:
            r.update(eval_accuracy=0.1 + 0.4 * p, eval_format_rate=p, eval_mean_completion_tokens=200 - 90 * p)
        records.append(r)
        if s % 10 == 0:
            for _ in range(8):
                f, a = float(rng.random() < fmt), float(rng.random() < acc)
                completions.append({"step": s, "prompt": [{"role": "user", "content": "1+1?"}], "completion": "2",
                                    "answer": "2", "rewards": {"format": f, "accuracy": a}, "reward": f + a,
                                    "advantage": 0.0})
    (run_dir / "train_log.json").write_text(json.dumps(records))
    (run_dir / "completions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in completions))
    (run_dir / "run_config.json").write_text(json.dumps({"args": {"max_completion_length": 256, "beta": beta,
                                                                  "model_id": "tiny", "dataset_id": "arithmetic"}}))
    return run_dir


def test_report_numbers(tmp_path):
    run = make_run(tmp_path / "a")
    report = visualize.build_report(visualize.load_run(run))
    records = json.loads((run / "train_log.json").read_text())
    rewards = [r["reward"] for r in records if "reward" in r]
    s = report["summary"]
    assert s["steps"] == 30 and s["logged_steps"] == 30  # the step-0 eval record is not a training step
    assert s["mean_reward"] == pytest.approx(sum(rewards) / 30)
    assert s["mean_completion_tokens"] == pytest.approx(sum(200 - 100 * k / 30 for k in range(1, 31)) / 30)
    assert s["total_step_time_s"] == pytest.approx(300.0)
    m = report["metrics"]["reward"]
    assert (m["first"], m["last"], m["n"]) == (rewards[0], rewards[-1], 30)
    assert m["delta"] == pytest.approx(rewards[-1] - rewards[0]) and m["min"] == min(rewards)
    ev = report["eval"]
    assert ev["steps"] == [0, 10, 20, 30] and ev["first_accuracy"] == 0.1
    assert ev["last_accuracy"] == pytest.approx(0.5) and ev["delta_accuracy"] == pytest.approx(0.4)
    assert report["best_step"] == {"by": "eval_accuracy", "step": 30, "value": ev["last_accuracy"]}
    assert report["metrics"]["eval_accuracy"]["first_step"] == 0  # eval metrics keep the step-0 record
    assert report["completions"]["rows"] == 24 and report["completions"]["steps"] == [10, 20, 30]
    assert report["config"]["max_completion_length"] == 256


def test_best_step_falls_back_to_reward_without_eval(tmp_path):
    report = visualize.build_report(visualize.load_run(make_run(tmp_path / "a", eval_every=None)))
    assert report["best_step"]["by"].startswith("reward") and report["eval"]["steps"] == []
    rewards = {k: v["max"] for k, v in report["metrics"].items()}
    assert report["best_step"]["value"] == rewards["reward"]


@pytest.mark.parametrize("values, weight, expected", [
    ([3.0, 3.0, 3.0], 0.6, [3.0, 3.0, 3.0]),  # a constant stays constant (debiased: no pull towards 0)
    ([1.0, 5.0], 0.0, [1.0, 5.0]),  # weight 0: no smoothing
    ([0.0, 1.0], 0.5, [0.0, 2 / 3]),  # (0.5*0.5*0 + 0.5*1) / (1 - 0.25)
])
def test_smooth(values, weight, expected):
    assert visualize.smooth(values, weight) == pytest.approx(expected)


def test_one_run_writes_three_plots_and_the_report_into_the_run(tmp_path):
    run = make_run(tmp_path / "a", beta=0.04)
    report = visualize.visualize(run)
    import matplotlib.image

    for name in visualize.PLOTS:
        image = matplotlib.image.imread(run / name)
        assert image.shape[1] > 900 and image.std() > 0.05, name
    assert json.loads((run / "training_report.json").read_text()) == report
    assert report["metrics"]["kl"]["last"] == pytest.approx(0.09)


def test_no_eval_draws_a_note_instead_of_an_empty_axis(tmp_path, monkeypatch):
    notes = []
    real = plots._note
    monkeypatch.setattr(plots, "_note", lambda ax, text: (notes.append(text), real(ax, text)))
    visualize.visualize(make_run(tmp_path / "a", eval_every=None))
    assert any("No accuracy eval" in n and "--eval_every" in n for n in notes)
    assert (tmp_path / "a" / "eval_curve.png").stat().st_size > 5_000


def test_overlay_of_two_runs_goes_to_a_compare_directory(tmp_path, capsys):
    a, b = make_run(tmp_path / "a", seed=1), make_run(tmp_path / "b", seed=2, eval_every=15, beta=0.04)
    assert visualize.main([str(a), str(b)]) == 0
    out = tmp_path / "compare_a_vs_b"
    report = json.loads((out / "training_report.json").read_text())
    assert [Path(r["run_dir"]).name for r in report["runs"]] == ["a", "b"]
    assert report["runs"][1]["eval"]["steps"] == [0, 15, 30]
    assert all((out / name).stat().st_size > 10_000 for name in visualize.PLOTS)
    assert not (a / "training_metrics.png").exists()  # the runs themselves are left alone
    assert "compare_a_vs_b" in capsys.readouterr().out


def test_a_crashed_run_with_a_torn_completions_line_still_plots(tmp_path):
    run = make_run(tmp_path / "a", steps=12)
    with open(run / "completions.jsonl", "a") as f:
        f.write('{"step": 12, "prompt": "cut sh')  # the process died mid-line
    (run / "run_config.json").unlink()
    report = visualize.visualize(run)
    assert report["completions"]["rows"] == 8 and report["summary"]["steps"] == 12


def test_empty_log_of_a_run_that_died_before_its_first_step(tmp_path):
    run = tmp_path / "a"
    run.mkdir()
    (run / "train_log.json").write_text("[]")
    report = visualize.visualize(run)
    assert report["summary"]["steps"] == 0 and report["best_step"] is None
    assert all((run / name).exists() for name in visualize.PLOTS)


def test_an_unreadable_run_config_is_left_out_not_a_traceback(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "train_log.json").write_text("[]")
    (run / "run_config.json").write_text("{cut off")
    assert visualize.main([str(run)]) == 0
    assert (run / "training_report.json").is_file()


def test_cli_error_names_the_directory(tmp_path, capsys):
    assert visualize.main([str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no train_log.json" in capsys.readouterr().err


def test_importing_changes_nothing():
    # the Agg backend is chosen inside the plot functions, so importing visualize leaves matplotlib alone
    code = "import sys, visualize; print('matplotlib' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "False", res.stderr
