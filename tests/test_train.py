"""End-to-end training of the tiny offline model through main.py and train.py (slow: seconds each, CPU).

Covers: LoRA for 2 steps (adapter weights change, base weights do not, every output file is written),
--full_finetune, --merge, resume from a checkpoint, and that GRPO actually learns on a toy reward.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import main

pytestmark = pytest.mark.slow
TOY_REWARD = str(Path(__file__).resolve().parent / "toy_rewards.py") + ":digit_share"


def train(tmp_path: Path, *extra: str, name: str = "run") -> Path:
    out = tmp_path / name
    argv = ["--demo", "--output_dir", str(out), "--report_to", "none", "--eval_every", "0",
            "--no-eval_before_train", *extra]
    assert main.main(argv) == 0
    return out


def log_history(run: Path) -> list[dict]:
    last = max(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    return json.loads((last / "trainer_state.json").read_text())["log_history"]


def test_lora_two_steps_changes_only_the_adapter(tmp_path):
    # the toy reward varies between completions of a random model, so the advantages, and the update, are non-zero
    run = train(tmp_path, "--max_steps", "2", "--save_steps", "1", "--lora_r", "4", "--reward_funcs", TOY_REWARD)
    config = json.loads((run / "run_config.json").read_text())
    from grpo_math.runtime.devices import dtype_name, resolve_dtype

    # --dtype auto: bf16 on a CPU with native bf16, else fp32; run_config.json says which
    assert config["args"]["max_steps"] == 2 and config["device"] == "cpu"
    assert config["dtype"] == dtype_name(resolve_dtype("cpu", "auto"))
    assert config["versions"]["trl"] == "1.16.0"
    for d in ("checkpoint-1", "checkpoint-2", "final"):
        assert (run / d / "adapter_model.safetensors").is_file(), d
    assert (run / "checkpoint-2" / "optimizer.pt").is_file()  # resumable
    assert (run / "final" / "tokenizer_config.json").is_file()

    first = load_file(run / "checkpoint-1" / "adapter_model.safetensors")
    final = load_file(run / "final" / "adapter_model.safetensors")
    lora_b = [k for k in final if "lora_B" in k]
    assert lora_b, "no LoRA B matrices saved"
    # B starts at zero, so any non-zero B shows the optimizer moved the adapter
    assert any(final[k].abs().sum() > 0 for k in lora_b)
    assert any(not torch.equal(first[k], final[k]) for k in final)

    # the frozen base is untouched: the adapter holds only LoRA tensors, and the base file is the shipped one
    assert all("lora_" in k for k in final)
    assert all(v.dtype == torch.float32 for v in final.values())  # fp32 master weights, also under bf16
    from grpo_math.models.warm_start import SHIPPED

    reference = load_file(SHIPPED / "model.safetensors")
    base = load_file(run / "base_model" / "model.safetensors")
    assert base.keys() == reference.keys() and all(torch.equal(base[k], reference[k]) for k in base)


def test_full_finetune_and_resume(tmp_path):
    run = train(tmp_path, "--max_steps", "2", "--save_steps", "1", "--full_finetune", "--learning_rate", "1e-3",
                "--reward_funcs", TOY_REWARD)
    assert (run / "final" / "model.safetensors").is_file()
    assert not (run / "final" / "adapter_config.json").exists()
    base = load_file(run / "base_model" / "model.safetensors")
    tuned = load_file(run / "final" / "model.safetensors")
    assert any(not torch.equal(base[k], tuned[k]) for k in tuned)

    # resume: continue the same run to step 3 from its last checkpoint
    argv = ["--demo", "--output_dir", str(run), "--report_to", "none", "--eval_every", "0", "--no-eval_before_train",
            "--max_steps", "3", "--save_steps", "1", "--full_finetune", "--learning_rate", "1e-3",
            "--reward_funcs", TOY_REWARD, "--resume_from_checkpoint", "latest"]
    assert main.main(argv) == 0
    assert (run / "checkpoint-3").is_dir()
    assert [h["step"] for h in log_history(run) if "loss" in h] == [1, 2, 3]


def test_merge_writes_a_full_model(tmp_path):
    run = train(tmp_path, "--max_steps", "1", "--merge")
    merged = run / "final" / "merged"
    assert (merged / "model.safetensors").is_file() and (merged / "config.json").is_file()
    assert not (merged / "adapter_config.json").exists()


def test_the_demo_raises_held_out_accuracy(tmp_path):
    """The demo as a user runs it (its own rewards: format and accuracy), seed 1: greedy accuracy on 64 held-out
    problems, scored by eval.py's code, rises by at least 20 points from step 0 to step 24."""
    out = tmp_path / "demo"
    assert main.main(["--demo", "--seed", "1", "--output_dir", str(out), "--report_to", "none"]) == 0
    report = json.loads((out / "training_report.json").read_text())["eval"]
    assert report["first_step"] == 0 and report["last_step"] == 24
    assert report["last_accuracy"] - report["first_accuracy"] >= 0.20, report
    records = json.loads((out / "train_log.json").read_text())
    assert [r["step"] for r in records if "eval_accuracy" in r] == [0, 8, 16, 24]


def test_overwriting_a_run_removes_only_what_the_tool_wrote(tmp_path):
    from grpo_math.runs import rundir

    for d in ("checkpoint-4", "final", "runs", "base_model", "my_notes"):
        (tmp_path / d).mkdir()
    for f in ("run_config.json", "train_log.json", "eval_curve.png", "my_results.json"):
        (tmp_path / f).write_text("{}")
    rundir.clear_run_dir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base_model", "my_notes", "my_results.json"]


def test_a_user_reward_file_is_imported_once_per_run(tmp_path):
    """checks.resolve loads the rewards once; training, the reward check and the in-run eval reuse them."""
    counter = tmp_path / "imports.txt"
    reward_file = tmp_path / "counted_reward.py"
    reward_file.write_text(
        "from pathlib import Path\n"
        f"with open({str(counter)!r}, 'a') as f:\n"
        "    f.write('imported\\n')\n\n"
        "def length_share(completions, **kwargs):\n"
        "    texts = [c[0]['content'] if isinstance(c, list) else c for c in completions]\n"
        "    return [min(len(t), 32) / 32 for t in texts]\n"
    )
    train(tmp_path, "--max_steps", "2", "--save_steps", "2", "--reward_funcs", f"{reward_file}:length_share",
          "accuracy", "--eval_every", "1", "--eval_before_train", "--eval_samples", "4")
    assert counter.read_text().splitlines() == ["imported"]


def test_an_untested_trl_version_stops_with_one_line():
    from grpo_math.training.trainer import TRLVersionError, check_trl_version

    assert check_trl_version("1.16.0") == "1.16.0"
    with pytest.raises(TRLVersionError) as e:
        check_trl_version("1.17.2")
    assert "trl 1.17.2" in str(e.value) and "trl==1.16.0" in str(e.value) and "\n" not in str(e.value)
