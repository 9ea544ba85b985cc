"""main.py: argument parsing, --config precedence, and the one-line errors for bad flags (before any model loads)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import main
from main import UsageError, parse_args

ROOT = main.Path(main.__file__).resolve().parent


def args_for(*argv, tmp_path=None):
    out = ["--output_dir", str(tmp_path / "run")] if tmp_path else []
    return parse_args([*argv, *out])


def test_defaults_and_the_flags_users_already_type(tmp_path):
    a = args_for(
        "--model_id", "Qwen/Qwen2.5-0.5B-Instruct", "--dataset_id", "openai/gsm8k", "--learning_rate", "2e-5",
        "--num_train_epochs", "2", "--batch_size", "16", "--max_completion_length", "128",
        "--max_prompt_length", "300", "--num_generations", "8", "--device", "cpu", tmp_path=tmp_path,
    )
    assert (a.learning_rate, a.num_train_epochs, a.batch_size) == (2e-5, 2.0, 16)
    assert (a.max_completion_length, a.max_prompt_length, a.num_generations) == (128, 300, 8)
    assert a.reward_funcs == ["format", "accuracy"] and a.report_to == ["tensorboard"]
    assert a.placement.device == "cpu"


def test_per_device_train_batch_size_is_an_alias(tmp_path):
    a = args_for("--per_device_train_batch_size", "4", "--num_generations", "4", "--device", "cpu", tmp_path=tmp_path)
    assert a.batch_size == 4


@pytest.mark.parametrize(
    "argv, message",
    [
        # the generation batch (batch x accumulation) must hold whole groups; the hint is the nearest divisor
        (["--batch_size", "16", "--num_generations", "3"], "--num_generations 3 must divide the generation batch 16"),
        (["--batch_size", "16", "--num_generations", "3"], "try --num_generations 4"),
        (["--batch_size", "4", "--gradient_accumulation_steps", "3", "--num_generations", "8"], "batch 12"),
        # GRPO's advantage is relative to the group: one completion has nothing to compare to
        (["--num_generations", "1"], "at least 2"),
        # unknown reward names list the valid ones
        (["--reward_funcs", "acuracy"], "accuracy"),
        (["--reward_funcs", "format", "accuracy", "--reward_weights", "1.0"], "--reward_weights has 1 value"),
        (["--top_p", "0"], "--top_p"),
        (["--max_steps", "0"], "--max_steps 0"),
        (["--dataset_id", "no/such/file.jsonl"], "no/such/file.jsonl"),
        # a local file without question/answer columns is caught before any model loads
        (["--dataset_id", str(ROOT / "configs" / "accelerate" / "ddp.yaml")], "unsupported extension"),
        (["--dataset_id", "arithmetic", "--split", "validation"], "validation"),
        (["--model_id", "./no_such_model_dir"], "--model_id ./no_such_model_dir"),
        (["--resume_from_checkpoint", "nowhere/checkpoint-5"], "--resume_from_checkpoint"),
        (["--merge", "--full_finetune"], "--merge"),
        # issue 10: what used to pass here and fail after the model loaded, or never
        (["--lora_target_modules", "all-linear", "q_proj"], "all-linear already names every linear layer"),
        (["--resume_weights_only"], "--resume_weights_only says how to resume; give --resume_from_checkpoint"),
        (["--report_to", "tensorbord"], "--report_to tensorbord: not a logging backend"),
    ],
)
def test_bad_flag_combinations_raise_one_line_naming_the_flag(tmp_path, argv, message):
    with pytest.raises(ValueError) as e:
        args_for("--device", "cpu", *argv, tmp_path=tmp_path)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_a_local_file_without_recognised_columns_fails_before_any_model_loads(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "hello", "label": 1}\n')
    with pytest.raises(ValueError, match="rows.jsonl.*no question column.*found: text, label"):
        args_for("--dataset_id", str(data), tmp_path=tmp_path)


def test_argparse_rejects_bad_types_and_choices(tmp_path, capsys):
    for argv in (["--batch_size", "0"], ["--device", "tpu"], ["--prompt_template", "nope"], ["--lora_r", "x"]):
        with pytest.raises(SystemExit) as e:
            args_for(*argv, tmp_path=tmp_path)
        assert e.value.code == 2


def test_config_file_values_and_command_line_precedence(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("learning_rate: 3e-5\nnum_generations: 4\nbatch_size: 8\nreward_funcs: [accuracy]\n"
                   "per_device_train_batch_size: 8\n")
    a = args_for("--config", str(cfg), "--device", "cpu", tmp_path=tmp_path)
    assert a.learning_rate == 3e-5  # YAML reads 3e-5 as a string; it is converted like the flag
    assert (a.num_generations, a.batch_size, a.reward_funcs) == (4, 8, ["accuracy"])
    a = args_for("--config", str(cfg), "--num_generations", "8", "--device", "cpu", tmp_path=tmp_path)
    assert a.num_generations == 8  # the command line wins


def test_demo_defaults_yield_to_config_and_flags(tmp_path):
    a = args_for("--demo", tmp_path=tmp_path)
    assert a.dataset_id == "arithmetic:1" and a.max_steps == main.DEMO_DEFAULTS["max_steps"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("max_steps: 3\n")
    a = args_for("--demo", "--config", str(cfg), "--max_completion_length", "16", tmp_path=tmp_path)
    assert (a.max_steps, a.max_completion_length) == (3, 16)


@pytest.mark.parametrize(
    "content, message",
    [
        ("learning_rat: 1e-5\n", "unknown key(s) learning_rat"),  # a typo is not silently ignored
        ("device: tpu\n", "device: 'tpu' is not one of"),  # choices hold for the file too
        ("batch_size: many\n", "batch_size"),
        ("- a\n- b\n", "mapping"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_config_files(tmp_path, content, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(content)
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        args_for("--config", str(cfg), tmp_path=tmp_path)


def test_missing_config_file(tmp_path):
    with pytest.raises(UsageError, match="--config .*nope.yaml: no such file"):
        args_for("--config", str(tmp_path / "nope.yaml"), tmp_path=tmp_path)


@pytest.mark.parametrize("progress", ["checkpoint-4/", "final/", "train_log.json"])
def test_an_existing_run_is_not_overwritten_by_accident(tmp_path, progress):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run_config.json").write_text(json.dumps({"args": {}}))
    if progress.endswith("/"):
        (tmp_path / "run" / progress).mkdir()
    else:
        (tmp_path / "run" / progress).write_text('[{"step": 1, "loss": 0.5}]')  # one logged step
    with pytest.raises(UsageError, match="already holds a run"):
        args_for("--device", "cpu", tmp_path=tmp_path)
    assert args_for("--device", "cpu", "--overwrite_output_dir", tmp_path=tmp_path).overwrite_output_dir


def test_a_run_that_stopped_before_its_first_step_does_not_block_the_same_command(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run_config.json").write_text(json.dumps({"args": {}}))
    (tmp_path / "run" / "train_log.json").write_text("[]\n")  # what a run that failed at step 1 leaves
    assert args_for("--device", "cpu", tmp_path=tmp_path).output_dir == str(tmp_path / "run")


def test_demo_replaces_only_an_earlier_demo_run(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint-8").mkdir()
    demo = {"demo": True, "model_id": str(tmp_path / "run" / "base_model"), "dataset_id": "arithmetic:1"}
    (tmp_path / "run" / "run_config.json").write_text(json.dumps({"args": demo}))
    assert args_for("--demo", tmp_path=tmp_path).overwrite_output_dir  # rerunning the demo just works
    # a --demo run of the user's own model (issue 23.9) is a real run: it is not the built-in demo
    (tmp_path / "run" / "run_config.json").write_text(json.dumps({"args": {**demo, "model_id": "/m/x.gguf"}}))
    with pytest.raises(UsageError, match="already holds a run"):
        args_for("--demo", "--max_steps", "2", tmp_path=tmp_path)
    (tmp_path / "run" / "run_config.json").write_text(json.dumps({"args": {"demo": False}}))
    with pytest.raises(UsageError, match="already holds a run"):  # a real run is never wiped by --demo
        args_for("--demo", tmp_path=tmp_path)


def test_presets_in_configs_parse(tmp_path):
    for preset in sorted((ROOT / "configs").glob("*.yaml")):
        a = parse_args(["--config", str(preset), "--output_dir", str(tmp_path / preset.stem), "--device", "cpu"])
        assert a.model_id, preset


def test_a_missing_logging_backend_fails_before_anything_is_written(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UsageError, match="--report_to wandb: wandb is not installed here; pip install wandb"):
        args_for("--report_to", "wandb", "--device", "cpu", tmp_path=tmp_path)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["afile", "afile/run"])
def test_an_output_dir_that_is_or_lies_under_a_file_is_one_line(tmp_path, name):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match=f"{tmp_path / 'afile'} is a file, not a directory"):
        parse_args(["--device", "cpu", "--output_dir", str(tmp_path / name)])


def test_the_resume_command_repeats_the_flags_as_typed(tmp_path):
    a = parse_args(["--demo", "--output_dir", str(tmp_path / "r x"), "--reward_weights", "1", "2", "--reward_funcs",
                    "format", "accuracy", "--no-eval_before_train", "--overwrite_output_dir", "--batch_size", "4",
                    "--num_generations", "4"])
    assert a.resume_command == (f"python main.py --demo --batch_size 4 --num_generations 4 --reward_funcs format "
                                f"accuracy --reward_weights 1.0 2.0 --no-eval_before_train --output_dir "
                                f"'{tmp_path / 'r x'}' --resume_from_checkpoint latest")


def test_cli_exit_code_2_and_one_line_without_traceback(tmp_path):
    res = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), "--num_generations", "3", "--output_dir", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=120,
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        "main.py: error: --num_generations 3 must divide the generation batch 8 (--batch_size 8 x "
        "--gradient_accumulation_steps 1); try --num_generations 4"
    ]


# ----------------------------------------------------------------------------------- one validation path (config.py)


@pytest.mark.parametrize("content, message", [
    # YAML values skip argparse's converters; config.check_values holds them to the flag's type and range
    ("batch_size: -4\n", "--batch_size -4 (from --config"),
    ("learning_rate: -1.0e-5\n", "--learning_rate -1e-05 (from --config"),
    ("max_completion_length: 0\n", "--max_completion_length 0 (from --config"),
    ("num_generations: 2.5\n", "2.5 is not an integer"),       # a float is not an integer
    ("lora_r: true\n", "True is not an integer"),              # a bool is not a number
    ("beta: .nan\n", "nan is not a finite number"),            # YAML's NaN
    ("reward_weights: [1.0, .inf]\n", "inf is not a finite number"),
    ("seed: -1\n", "--seed -1 (from --config"),
    ("report_to: [3]\n", "3 is not a string"),
])
def test_yaml_values_pass_the_same_checks_as_flags(tmp_path, content, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("reward_funcs: [format, accuracy]\n" + content if "reward_weights" in content else content)
    with pytest.raises(UsageError) as e:
        args_for("--config", str(cfg), "--device", "cpu", tmp_path=tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_yaml_string_for_a_list_flag_is_one_item(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("reward_funcs: accuracy\nlora_target_modules: q_proj\n")  # not 8 rewards named a, c, c, ...
    a = args_for("--config", str(cfg), "--device", "cpu", tmp_path=tmp_path)
    assert a.reward_funcs == ["accuracy"] and a.lora_target_modules == ["q_proj"] and len(a.rewards) == 1


@pytest.mark.parametrize("argv, message", [
    (["--beta", "nan"], "--beta nan: nan is not a finite number"),
    (["--reward_weights", "1", "nan"], "nan is not a finite number"),
    (["--reward_weights", "0", "0"], "every weight is 0"),
    (["--seed", "-1"], "--seed -1 must be in 0..4294967295"),
    (["--warmup_ratio", "inf"], "--warmup_ratio inf: inf is not a finite number"),
])
def test_non_finite_and_out_of_range_flags_are_one_line_errors(tmp_path, argv, message):
    with pytest.raises(UsageError) as e:
        args_for("--device", "cpu", *argv, tmp_path=tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("argv", [["--learning_rate", "inf"], ["--temperature", "inf"],
                                  ["--num_train_epochs", "inf"], ["--lora_alpha", "nan"]])
def test_argparse_rejects_non_finite_positive_numbers(tmp_path, argv):
    with pytest.raises(SystemExit) as e:
        args_for(*argv, tmp_path=tmp_path)
    assert e.value.code == 2


def test_the_resolved_config_is_frozen_and_holds_the_loaded_rewards(tmp_path):
    import dataclasses

    a = args_for("--device", "cpu", "--reward_funcs", "format", "overlong", "--max_completion_length", "64",
                 tmp_path=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.learning_rate = 1.0
    assert [f.__name__ for f in a.rewards] == ["format", "overlong"]
    assert a.rewards[1]([""], completion_ids=[[0] * 64]) == [-1.0]  # built for this run's 64, not the default
    assert a.learning_rate == 1e-5 and a.model_id == main.config.DEFAULT_MODEL  # resolved defaults
    assert main.RunConfig.from_record(a.to_record()).to_record() == a.to_record()  # run_config.json round trip


def test_the_parser_takes_every_default_from_config():
    parsed = main.build_parser().parse_args([])
    assert {k: getattr(parsed, k) for k in main.config.DEFAULTS} == main.config.DEFAULTS


def test_gradient_checkpointing_is_off_unless_asked_and_reaches_trl_both_ways(tmp_path):
    """TRL 1.16's GRPOConfig defaults checkpointing to True: the tool must pass its own value every time, or no
    run could turn it off (and every step would pay an extra forward pass in the backward)."""
    import train

    cases = {(): False, ("--gradient_checkpointing",): True, ("--no-gradient_checkpointing",): False}
    for flags, expected in cases.items():
        grpo = train.build_grpo_config(args_for("--device", "cpu", *flags, tmp_path=tmp_path))
        assert grpo.gradient_checkpointing is expected, flags
    cfg = tmp_path / "c.yaml"
    cfg.write_text("gradient_checkpointing: true\n")
    a = args_for("--config", str(cfg), "--device", "cpu", tmp_path=tmp_path)
    assert train.build_grpo_config(a).gradient_checkpointing is True
    a = args_for("--config", str(cfg), "--device", "cpu", "--no-gradient_checkpointing", tmp_path=tmp_path)
    assert train.build_grpo_config(a).gradient_checkpointing is False  # the flag beats the YAML


def test_ddp_timeout_reaches_the_trainer_and_is_checked(tmp_path):
    """The other processes wait this long while rank 0 runs the accuracy eval; transformers' 1800 s would end a
    launch whose eval runs longer, so the default is 7200 s and the flag (or a YAML key) changes it."""
    import train

    assert train.build_grpo_config(args_for("--device", "cpu", tmp_path=tmp_path)).ddp_timeout == 7200
    a = args_for("--device", "cpu", "--ddp_timeout", "10800", tmp_path=tmp_path)
    assert train.build_grpo_config(a).ddp_timeout == 10800
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ddp_timeout: 0\n")
    with pytest.raises(UsageError) as e:
        args_for("--config", str(cfg), "--device", "cpu", tmp_path=tmp_path)
    assert "ddp_timeout" in str(e.value) and "\n" not in str(e.value)
