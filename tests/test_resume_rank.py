"""Resuming with a different LoRA rank (issue 23, point 5): one line naming both ranks and the fix, exit 2,
before any model loads; nothing of the run is touched. Today: a traceback of 56 `size mismatch` lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import main
from grpo_math.runs.checkpoints import lora_rank_problem

ARGV = ["--demo", "--report_to", "none", "--eval_every", "0", "--no-eval_before_train", "--batch_size", "4",
        "--num_generations", "2", "--max_completion_length", "8", "--save_steps", "1", "--seed", "5"]


@pytest.mark.parametrize("trained, asked, problem", [
    (8, 8, None),
    (8, 4, "--lora_r 4: checkpoint-3 was trained with LoRA rank 8 (its adapter_config.json); resume with "
           "--lora_r 8, or start a new run in another --output_dir"),
    (8, None, None),  # --full_finetune on an adapter checkpoint: not this check's business
    (None, 4, None),  # a full fine-tuning checkpoint
])
def test_lora_rank_problem_names_both_ranks(trained, asked, problem, tmp_path):
    ckpt = tmp_path / "checkpoint-3"
    ckpt.mkdir()
    if trained is not None:
        (ckpt / "adapter_config.json").write_text(json.dumps({"r": trained, "lora_alpha": 16}))
    assert lora_rank_problem(ckpt, asked) == problem


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_resuming_with_another_rank_is_one_line_and_the_same_rank_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main.main([*ARGV, "--output_dir", str(out), "--max_steps", "2", "--lora_r", "8"]) == 0
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    rc = main.main([*ARGV, "--output_dir", str(out), "--max_steps", "3", "--lora_r", "4",
                    "--resume_from_checkpoint", "latest"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "size mismatch" not in err
    assert [x for x in err.splitlines() if x.startswith("main.py: error: ")] == [
        "main.py: error: --lora_r 4: checkpoint-2 was trained with LoRA rank 8 (its adapter_config.json); resume "
        "with --lora_r 8, or start a new run in another --output_dir"]
    assert sorted(p.name for p in out.iterdir()) == before
    assert main.main([*ARGV, "--output_dir", str(out), "--max_steps", "3", "--lora_r", "8",
                      "--resume_from_checkpoint", "latest"]) == 0
    assert (out / "checkpoint-3").is_dir() and Path(out / "final" / "adapter_config.json").is_file()
