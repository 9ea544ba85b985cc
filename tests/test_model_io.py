"""loading.py: loading models, adapters and tokenizers, and the one-line errors when that cannot work."""

from __future__ import annotations

import json
import time

import pytest
import torch

from grpo_math.data import hub
from grpo_math.models import loading as model_io
from grpo_math.models.loading import ModelLoadError, load_for_inference, load_tokenizer, resolve_base_model


def test_tiny_model_loads_with_left_padding_and_a_pad_token(tiny_model_dir):
    tok = load_tokenizer(str(tiny_model_dir))
    assert tok.padding_side == "left" and tok.pad_token is not None
    model, tok, base = load_for_inference(str(tiny_model_dir), torch.float32, "cpu")
    assert base == str(tiny_model_dir) and not model.training


def test_unreachable_hub_fails_fast_with_a_hint(monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda: False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    start = time.time()
    with pytest.raises(ModelLoadError, match=r"could not load 'no-org/no-model'.*--demo"):
        load_tokenizer("no-org/no-model")
    assert time.time() - start < 10  # no 50 s of retries against a Hub that is not there


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "no such directory"),  # a path that does not exist
        (lambda d: d.mkdir(), "neither a model"),  # an empty directory
        (lambda d: (d.mkdir(), (d / "config.json").write_text("{not json")), "cannot load|missing or corrupted"),
    ],
    ids=["missing", "empty", "corrupted-config"],
)
def test_bad_model_directories(tmp_path, setup, message):
    d = tmp_path / "model"
    setup(d)
    with pytest.raises(ModelLoadError, match=message):
        load_for_inference(str(d), torch.float32, "cpu")


def test_adapter_base_resolution_order(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    adapter = run / "final"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model_dir)}))
    assert resolve_base_model(adapter) == str(tiny_model_dir)  # the adapter's own record
    assert resolve_base_model(adapter, "Org/Other") == "Org/Other"  # --base_model wins

    # the recorded base has moved: fall back to the run's run_config.json
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/moved/away/model"}))
    (run / "run_config.json").write_text(json.dumps({"args": {"model_id": str(tiny_model_dir)}}))
    assert resolve_base_model(adapter) == str(tiny_model_dir)

    # nothing resolves: one line that says what to pass
    (run / "run_config.json").unlink()
    with pytest.raises(ModelLoadError, match="cannot find the adapter's base model.*--base_model"):
        resolve_base_model(adapter)


def test_corrupted_adapter_is_named(tmp_path, tiny_model_dir):
    adapter = tmp_path / "final"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({
        "base_model_name_or_path": str(tiny_model_dir), "peft_type": "LORA", "r": 4, "lora_alpha": 8,
        "target_modules": ["q_proj"], "task_type": "CAUSAL_LM"}))
    (adapter / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="corrupted or mismatched LoRA adapter"):
        load_for_inference(str(adapter), torch.float32, "cpu")


def test_run_config_is_found_from_a_checkpoint(tmp_path):
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "run_config.json").write_text(json.dumps({"args": {"model_id": "x"}}))
    assert model_io.find_run_config(tmp_path / "checkpoint-5")["args"]["model_id"] == "x"
