"""The best checkpoint (best_checkpoint.py): found in the log, never rotated away, published as best/, named in
the report and marked in eval.sh's table. Fast: fake checkpoint directories, no training."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from grpo_math.runs import best_checkpoint
from grpo_math.runs import checkpoints
from grpo_math.evaluation import results
from grpo_math.runs.report import format_summary


def fake_checkpoint(run: Path, step: int) -> Path:
    ckpt = run / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    for name in ("adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "rng_state.pth"):
        (ckpt / name).write_text(f"{name} of step {step}")
    return ckpt


def test_best_eval_from_the_log_ignores_step_0_and_keeps_the_earlier_of_ties():
    log = [{"step": 0, "eval_accuracy": 0.9},  # the base model: no checkpoint to keep
           {"step": 4, "eval_accuracy": 0.5}, {"step": 4, "loss": 1.0},
           {"step": 8, "eval_accuracy": 0.7}, {"step": 12, "eval_accuracy": 0.7},  # a tie: step 8 stays
           {"step": 16, "eval_accuracy": 0.8}]
    assert best_checkpoint.best_eval(log) == {"step": 16, "eval_accuracy": 0.8}
    assert best_checkpoint.best_eval(log, up_to=12) == {"step": 8, "eval_accuracy": 0.7}  # a resume at step 12
    assert best_checkpoint.best_eval([{"step": 0, "eval_accuracy": 1.0}]) is None


def test_note_eval_says_when_a_step_must_be_saved():
    trainer = SimpleNamespace(best_eval=None)
    assert best_checkpoint.note_eval(trainer, 4, {"eval_accuracy": 0.5})
    assert not best_checkpoint.note_eval(trainer, 8, {"eval_accuracy": 0.5})  # no better: no extra save
    assert not best_checkpoint.note_eval(trainer, 0, {"eval_accuracy": 1.0})
    assert best_checkpoint.note_eval(trainer, 12, {"eval_accuracy": 0.6})
    assert trainer.best_eval == {"step": 12, "eval_accuracy": 0.6}


def test_rotation_keeps_the_best_and_best_dir_is_its_model(tmp_path):
    run = tmp_path / "run"
    for step in (4, 8, 12):
        fake_checkpoint(run, step)
    best = {"step": 4, "eval_accuracy": 0.75}
    best_checkpoint.publish_best(run, run / "checkpoint-4", best)
    checkpoints.rotate(run, 1, run / "checkpoint-12", best=run / "checkpoint-4")
    assert sorted(p.name for p in run.iterdir()) == ["best", "checkpoint-12", "checkpoint-4"]
    names = sorted(p.name for p in (run / "best").iterdir())
    assert names == ["adapter_config.json", "adapter_model.safetensors", "best_checkpoint.json"]  # no optimizer
    assert (run / "best" / "adapter_model.safetensors").read_text() == "adapter_model.safetensors of step 4"
    assert best_checkpoint.read_best(run) == {**best, "checkpoint": "checkpoint-4", "path": str(run / "best")}
    checkpoints.rotate(run, 1, run / "checkpoint-12")  # without a best, the limit alone decides
    assert not (run / "checkpoint-4").exists() and (run / "best" / "adapter_model.safetensors").is_file()


def test_sync_best_replaces_a_stale_best_and_removes_one_without_a_checkpoint(tmp_path):
    run = tmp_path / "run"
    fake_checkpoint(run, 4), fake_checkpoint(run, 8)
    best_checkpoint.publish_best(run, run / "checkpoint-8", {"step": 8, "eval_accuracy": 0.9})  # another timeline
    assert best_checkpoint.sync_best(run, {"step": 4, "eval_accuracy": 0.5})["checkpoint"] == "checkpoint-4"
    assert best_checkpoint.sync_best(run, {"step": 20, "eval_accuracy": 0.5}) is None
    assert not (run / "best").exists()


def test_the_summary_and_the_eval_table_name_the_best(tmp_path):
    run = tmp_path / "run"
    fake_checkpoint(run, 4)
    best_checkpoint.publish_best(run, run / "checkpoint-4", {"step": 4, "eval_accuracy": 0.75})
    best = best_checkpoint.read_best(run)
    text = format_summary({"run_dir": str(run), "summary": {}, "best_checkpoint": best}, wall_time_s=1.0)
    assert "best checkpoint          step 4 (75.0% eval accuracy)" in text and str(run / "best") in text
    out = tmp_path / "results"
    out.mkdir()
    for name, step, acc in (("base", None, 0.5), ("checkpoint-4", 4, 0.75), ("checkpoint-8", 8, 0.6)):
        (out / f"{name}.json").write_text(json.dumps({"metrics": {"accuracy": acc, "n": 8}, "config": {
            "step": step, "run_dir": str(run), "dataset_id": "arithmetic", "split": "test"}}))
    summary = results.summarize(out)
    assert [r["name"] for r in summary["rows"] if r["best"]] == ["checkpoint-4"]
    table = results.format_table(summary)
    assert "checkpoint-4 *" in table and "checkpoint-8 *" not in table and "* the best in-run eval (step 4" in table
