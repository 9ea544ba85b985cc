"""Issue 23's bad input, each one line and exit 2 (or the corrected behaviour): YAML keys given twice, alias
bombs in a config file, a reward listed twice, `--demo` over a run that is not the built-in demo. Fast: nothing
here loads a model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import main
from grpo_math import safe_yaml
from grpo_math.runs import rundir
from main import UsageError, parse_args

ROOT = Path(__file__).resolve().parents[1]


def args_for(tmp_path, *argv):
    return parse_args([*argv, "--output_dir", str(tmp_path / "run"), "--device", "cpu"])


def alias_bomb(key: str, item: str, levels: int = 9) -> str:
    """About 500 bytes of YAML that stand for 9**levels list items under `key`."""
    body, prev = f"[&a [{', '.join([item] * 9)}]", "a"
    for name in "bcdefghijklmnop"[:levels - 1]:
        body += f", &{name} [{', '.join(['*' + prev] * 9)}]"
        prev = name
    return f"{key}: {body}]\n"


# ------------------------------------------------------------------------------------ 14: a key given twice


@pytest.mark.parametrize("content, key", [
    ("max_steps: 6\nmax_steps: 9999\n", "max_steps"),  # the case: the last one silently won
    ("learning_rate: 1e-5\nseed: 1\nlearning_rate: 2e-5\n", "learning_rate"),  # not next to each other
    ("seed: 1\n'seed': 2\n", "seed"),  # quoted or not, the same key
])
def test_a_yaml_key_given_twice_is_one_line_naming_it(tmp_path, content, key):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(content)
    with pytest.raises(UsageError, match=rf"--config .*c.yaml: key '{key}' is given twice \(lines"):
        args_for(tmp_path, "--config", str(cfg))


def test_a_key_once_in_each_of_two_mappings_is_fine():
    assert safe_yaml.load("a: {x: 1}\nb: {x: 2}\n") == {"a": {"x": 1}, "b": {"x": 2}}


# ------------------------------------------------------------------------------------ 15: YAML alias bombs


@pytest.mark.parametrize("key, item", [("reward_funcs", "accuracy"), ("reward_weights", "1.0"),
                                       ("lora_target_modules", "q_proj")])
def test_an_alias_bomb_is_refused_at_once_and_small(tmp_path, key, item):
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(alias_bomb(key, item))
    assert len(cfg.read_bytes()) < 600
    t0 = time.perf_counter()
    # the peak memory of the whole process (VmHWM, KB: unlike ru_maxrss it is not inherited from the forked
    # pytest process across exec, so a large test process cannot make it fail)
    probe = ("import sys, main; code = main.main(['--config', sys.argv[1]]); "
             "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM'))); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", probe, str(cfg)], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "aliases are not allowed" in lines[0] and len(lines[0]) < 600
    assert int(proc.stdout.split()[-1]) < 300 * 1024  # KB: refused before torch is imported
    assert time.perf_counter() - t0 < 30  # generous for a loaded machine; the check itself is milliseconds


def test_an_alias_anywhere_in_a_config_is_refused(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("reward_funcs: &r [accuracy]\nreport_to: *r\n")
    with pytest.raises(UsageError, match="alias \\*r found: aliases are not allowed"):
        args_for(tmp_path, "--config", str(cfg))


def test_errors_never_show_a_huge_value(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("reward_weights: [" + ", ".join(["x"] * 200_000) + "]\n")  # a long list of non-numbers
    with pytest.raises(UsageError) as e:
        args_for(tmp_path, "--config", str(cfg))
    assert len(str(e.value)) < 600


# ------------------------------------------------------------------------------------ 17: a reward listed twice


@pytest.mark.parametrize("rewards", [
    ["accuracy", "format", "accuracy"],
    ["tests/toy_rewards.py:digit_share", "./tests/toy_rewards.py:digit_share"],  # one file, two spellings
    ["format"] * 100_000,  # a generated list: one line at once, not one log line per copy
])
def test_a_reward_listed_twice_is_one_line(tmp_path, rewards):
    with pytest.raises(UsageError, match=r"--reward_funcs lists '.*' more than once"):
        args_for(tmp_path, "--demo", "--reward_funcs", *rewards)


# ------------------------------------------------------------------------------------ 9: --demo replaces the demo only


def _earlier_run(run: Path, args: dict) -> None:
    (run / "checkpoint-4").mkdir(parents=True)
    (run / "final").mkdir()
    (run / "run_config.json").write_text(json.dumps({"args": args}))


def test_demo_over_a_demo_run_of_another_model_is_refused(tmp_path):
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF")
    _earlier_run(tmp_path / "run", {"demo": True, "model_id": str(gguf), "dataset_id": "arithmetic:1"})
    with pytest.raises(UsageError, match="already holds a run.*--overwrite_output_dir"):
        args_for(tmp_path, "--demo", "--model_id", str(gguf), "--max_steps", "2")
    assert (tmp_path / "run" / "final").is_dir() and (tmp_path / "run" / "checkpoint-4").is_dir()


def test_demo_over_a_demo_run_of_another_dataset_is_refused(tmp_path, shared_data):
    run = tmp_path / "run"
    _earlier_run(run, {"demo": True, "model_id": str(run / "base_model"), "dataset_id": str(shared_data / "gsm8k")})
    with pytest.raises(UsageError, match="already holds a run"):
        args_for(tmp_path, "--demo")


def test_the_built_in_demo_is_replaced_with_a_line_naming_what_went(tmp_path):
    run = tmp_path / "run"
    _earlier_run(run, {"demo": True, "model_id": str(run / "base_model"), "dataset_id": "arithmetic:1"})
    (run / "notes.txt").write_text("mine")
    assert rundir.is_demo_run(run) and args_for(tmp_path, "--demo").overwrite_output_dir
    assert rundir.clear_run_dir(run) == ["checkpoint-4/", "final/", "run_config.json"]
    assert (run / "notes.txt").read_text() == "mine"  # never a user's own file


# ------------------------------------------------------------------------------------ 8: resume onto another base


def test_resuming_onto_another_base_model_is_refused_naming_both(tmp_path):
    base, other = tmp_path / "base", tmp_path / "other"
    base.mkdir(), other.mkdir()
    _earlier_run(tmp_path / "run", {"model_id": str(base), "dataset_id": "arithmetic:1"})
    resume = ("--dataset_id", "arithmetic:1", "--resume_from_checkpoint", "latest")
    with pytest.raises(UsageError, match=f"trained from {base}, but --model_id is {other}.*--resume_other_base_model"):
        args_for(tmp_path, "--model_id", str(other), *resume)
    with pytest.raises(UsageError, match="trained from"):  # a checkpoint named by its path: the same check
        args_for(tmp_path, "--model_id", str(other), "--dataset_id", "arithmetic:1",
                 "--resume_from_checkpoint", str(tmp_path / "run" / "checkpoint-4"))
    assert args_for(tmp_path, "--model_id", str(base), *resume).model_id == str(base)  # the same base: fine
    assert args_for(tmp_path, "--model_id", str(base) + "/", *resume).model_id  # the same directory, spelt otherwise
    forced = args_for(tmp_path, "--model_id", str(other), *resume, "--resume_other_base_model")
    assert forced.model_id == str(other) and "resume_other_base_model" not in forced.resume_command


# ------------------------------------------------------------------------------------ 16: a huge system prompt


def _tokenizers(tiny_model_dir):
    from transformers import AutoTokenizer

    found = [AutoTokenizer.from_pretrained(tiny_model_dir)]
    qwen = ROOT.parent / "shared" / "data" / "tokenizers" / "qwen2.5-instruct"
    if qwen.is_dir():
        found.append(AutoTokenizer.from_pretrained(qwen))
    return found


def test_a_system_prompt_over_the_limit_alone_is_refused_before_any_prompt_is_built(tiny_model_dir):
    from grpo_math.data.sources import DatasetError, check_system_prompt

    for tokenizer in _tokenizers(tiny_model_dir):
        t0 = time.process_time()
        with pytest.raises(DatasetError, match=r"--system_prompt \(50,000,000 characters\) is \d+ or more tokens on "
                                               r"its own, over --max_prompt_length 512"):
            check_system_prompt("word " * 10_000_000, tokenizer, 512)  # 50 MB: only a prefix is tokenized
        assert time.process_time() - t0 < 20  # seconds of CPU, not minutes: the whole text is never tokenized
        n = len(tokenizer("You are careful. " * 40, add_special_tokens=False)["input_ids"])
        with pytest.raises(DatasetError, match=rf"is {n} tokens on its own"):  # exact when short
            check_system_prompt("You are careful. " * 40, tokenizer, n - 1)
        check_system_prompt("You are careful. " * 40, tokenizer, n)  # at the limit: fine
        check_system_prompt(None, tokenizer, 1)


@pytest.mark.slow
def test_main_refuses_a_50_mb_system_prompt_in_one_line(tmp_path, capsys):
    assert main.main(["--demo", "--output_dir", str(tmp_path / "run"), "--report_to", "none",
                      "--system_prompt", "word " * 10_000_000]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "--system_prompt (50,000,000 characters)" in err
    assert not (tmp_path / "run" / "run_config.json").exists()
