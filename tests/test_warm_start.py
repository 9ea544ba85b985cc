"""The demo's starting point (warm_start.py) and the task levels it is trained on (arithmetic.py)."""

from __future__ import annotations

import json

import pytest

from grpo_math.models import warm_start
from grpo_math.data.arithmetic import arithmetic_split, parse_level
from grpo_math.data.sources import DatasetError, load_math_dataset


def test_the_shipped_checkpoint_is_the_current_recipe_and_tokenizer():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpo_math.models.tiny import build_tokenizer

    record = json.loads((warm_start.SHIPPED / "warm_start.json").read_text())
    assert record["version"] == warm_start.VERSION and record["level"] == warm_start.LEVEL
    assert record["stage_1"]["validation_accuracy"] >= warm_start.STAGE_A_TARGET  # stage 1 reached its target
    assert AutoTokenizer.from_pretrained(warm_start.SHIPPED).get_vocab() == build_tokenizer().get_vocab()
    model = AutoModelForCausalLM.from_pretrained(warm_start.SHIPPED)
    assert 0.4e6 < sum(p.numel() for p in model.parameters()) < 0.6e6


def test_the_recipe_runs_and_writes_a_loadable_model(tmp_path):
    """The regeneration command's code path, with a handful of steps (the real recipe takes minutes)."""
    from transformers import AutoModelForCausalLM

    record = warm_start.train_warm_start(tmp_path / "ws", stage_a_max_steps=2, stage_b_steps=1)
    assert record["stage_1"]["steps"] == 2 and record["stage_2"]["steps"] == 1
    assert json.loads((tmp_path / "ws" / "warm_start.json").read_text()) == record
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "ws") is not None
    copied = warm_start.warm_start_model(tmp_path / "run" / "base_model")  # what --demo puts in its run
    assert (copied / "model.safetensors").read_bytes() == (warm_start.SHIPPED / "model.safetensors").read_bytes()


def test_the_warm_start_never_sees_the_test_split():
    train = {r["question"] for r in arithmetic_split("train", seed=warm_start.SEED, level=warm_start.LEVEL)}
    test = {r["question"] for r in arithmetic_split("test", seed=1, level=warm_start.LEVEL)}
    assert train and test and not train & test


@pytest.mark.parametrize("dataset_id, level", [("arithmetic", 2), ("arithmetic:1", 1), ("arithmetic:3", 3),
                                               ("openai/gsm8k", None), ("arithmetic:x", None)])
def test_levels_by_name(dataset_id, level):
    assert parse_level(dataset_id) == level


def test_level_1_is_one_digit_arithmetic_with_worked_targets():
    rows = load_math_dataset("arithmetic:1", "test", max_samples=200)
    assert all(1 <= int(a) <= 18 for a in rows["answer"])
    for row in arithmetic_split("train", seed=0, level=1)[:200]:
        expr = row["solution"].split("\n")[0]
        left, value = expr.split(" = ")
        assert eval(left) == int(value) == int(row["answer"])  # digits and one operator
        assert row["target"] == f"<think>{expr}</think><answer>\\boxed{{{row['answer']}}}</answer>"


def test_an_unknown_level_is_one_line():
    with pytest.raises(DatasetError, match="arithmetic:1, arithmetic:2, arithmetic:3") as e:
        load_math_dataset("arithmetic:7", "train")
    assert "\n" not in str(e.value)
