"""Issue 23.7, divergence: the first non-finite gradient stops the run with one line naming the step and what to
lower; no checkpoint or final/ holds non-finite weights; `latest` skips an older version's non-finite checkpoint
with a line; a model whose weights are not finite is named as such when it loads."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import main
from grpo_math.runs import checkpoints
from grpo_math.runs.checkpoints import CheckpointError
from grpo_math.runs.divergence import checkpoint_nonfinite, safetensors_nonfinite
from grpo_math.models.loading import ModelLoadError, load_model

# the demo with --learning_rate 1000 (a slip for 1e-3): the gradient norm is NaN a few steps in
DIVERGING = ["--demo", "--learning_rate", "1000", "--max_steps", "8", "--save_steps", "1", "--report_to", "none",
             "--eval_every", "0", "--no-eval_before_train"]


@pytest.fixture(scope="module")
def diverged(tmp_path_factory):
    import torch as t

    before = t.get_num_threads()
    t.set_num_threads(1)
    out = tmp_path_factory.mktemp("diverged") / "run"
    try:
        code = main.main([*DIVERGING, "--output_dir", str(out)])
    finally:
        t.set_num_threads(before)
    return out, code


@pytest.mark.slow
def test_a_diverging_run_stops_at_the_first_non_finite_step_in_one_line(diverged, capsys):
    out, code = diverged
    assert code == 2
    saved = sorted(p.name for p in out.glob("checkpoint-*"))
    assert saved and not (out / "final").exists()
    for ckpt in out.glob("checkpoint-*"):  # every published checkpoint holds finite weights
        assert all(torch.isfinite(v).all() for v in load_file(ckpt / "adapter_model.safetensors").values())
        assert checkpoint_nonfinite(ckpt) is None


@pytest.mark.slow
def test_the_divergence_line_names_the_step_and_what_to_lower(tmp_path, capsys):
    out = tmp_path / "run"
    assert main.main([*DIVERGING, "--output_dir", str(out), "--save_steps", "100"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.startswith("main.py: error: ")]
    assert len(lines) == 1
    assert "training diverged at step" in lines[0] or "non-finite logits" in lines[0]
    assert "lower --learning_rate (now 1000" in lines[0] and "no checkpoint was saved" in lines[0]


def _nan_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    tensors = load_file(dst / "adapter_model.safetensors")
    name = sorted(tensors)[-1]
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, dst / "adapter_model.safetensors")
    return dst


@pytest.mark.slow
def test_latest_skips_a_non_finite_checkpoint_with_a_line(diverged, tmp_path, caplog):
    out, _ = diverged
    run = tmp_path / "run"
    shutil.copytree(out, run)
    good = sorted(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    step = int(good.name.split("-")[1])
    bad = _nan_copy(good, run / f"checkpoint-{step + 1}")  # what an older version published
    with caplog.at_level(logging.WARNING):
        assert checkpoints.find_resume(run, "latest") == good
    assert f"skipping {bad.name}: its weights are not finite" in caplog.text
    with pytest.raises(CheckpointError, match="its weights are not finite"):
        checkpoints.find_resume(run, str(bad))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), None])
def test_non_finite_values_are_found_in_each_float_type(tmp_path, dtype, value):
    tensors = {"a": torch.randn(3, 5).to(dtype), "b": torch.randn(1000).to(dtype), "i": torch.arange(4)}
    if value is not None:
        tensors["b"][-1] = value
    save_file(tensors, tmp_path / "w.safetensors")
    assert safetensors_nonfinite(tmp_path / "w.safetensors") == (None if value is None else "b")


def test_a_model_with_non_finite_weights_is_named_when_it_loads(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    weights = load_file(model_dir / "model.safetensors")
    name = sorted(k for k in weights if weights[k].is_floating_point())[0]
    weights[name][0] = float("nan")
    save_file(weights, model_dir / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"weights are not finite .* non-finite logits"):
        load_model(str(model_dir), torch.float32)
