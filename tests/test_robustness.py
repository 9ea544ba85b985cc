"""Runs that go wrong (issue 10), each a clear one-line error or the right recovery: no traceback, nothing written
before the error, nothing earlier lost. Incomplete and unresumable checkpoints, rewards that fail mid-run, a
full disk, a second run in the same directory, failures only known after loading. Kills and signals are in
test_faults.py; the flag and YAML checks in test_main.py; bad data files in test_data_utils.py.

In-process runs of the tiny demo model (slow: a few seconds each).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import main
from grpo_math.runs import checkpoints, runlock
from grpo_math.rewards import RewardFailure

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
ARGV = ["--demo", "--report_to", "none", "--eval_every", "0", "--no-eval_before_train", "--batch_size", "4",
        "--num_generations", "2", "--max_completion_length", "8", "--save_steps", "1", "--seed", "5"]
TOY = str(TESTS / "toy_rewards.py") + ":digit_share"


@pytest.fixture(autouse=True)
def info_logs(caplog):
    caplog.set_level(logging.INFO)  # the lines that name skipped checkpoints and taken-over locks


def train(out: Path, *extra: str, reward: str = TOY, steps: int = 3) -> int:
    return main.main([*ARGV, "--output_dir", str(out), "--max_steps", str(steps), "--reward_funcs", reward, *extra])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("main.py: error: ")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


def adapter(path: Path) -> dict:
    return load_file(path / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """An uninterrupted 3-step run with a checkpoint at every step."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert train(out) == 0
    return out


@pytest.fixture
def run_copy(finished, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    shutil.rmtree(out / "final")
    return out


# ------------------------------------------------------------------------------------ incomplete checkpoints


def _empty(c: Path):  # a SIGKILL or a full disk at the start of a save (issue: "Can't find a valid checkpoint")
    for f in c.iterdir():
        f.unlink()


def _cut(name: str):
    def cut(c: Path):
        (c / name).write_bytes((c / name).read_bytes()[: (c / name).stat().st_size // 2])
    return cut


DAMAGE = {  # what is done to the newest checkpoint, and the reason the log must give for skipping it
    "empty": (_empty, "trainer_state.json is missing (the save did not finish)"),
    "adapter cut": (_cut("adapter_model.safetensors"), "adapter_model.safetensors is truncated"),
    "optimizer cut": (_cut("optimizer.pt"), "optimizer.pt is truncated or corrupt"),
    "rng cut": (_cut("rng_state.pth"), "rng_state.pth is truncated or corrupt"),
    "no trainer_state": (lambda c: (c / "trainer_state.json").unlink(), "trainer_state.json is missing"),
    "trainer_state cut": (_cut("trainer_state.json"), "trainer_state.json is truncated or corrupt"),
    "no adapter_config": (lambda c: (c / "adapter_config.json").unlink(), "adapter_config.json is missing"),
}


@pytest.mark.parametrize("damage", ["empty", "adapter cut"])
def test_latest_skips_an_incomplete_checkpoint_names_why_and_ends_identical(run_copy, finished, damage, caplog):
    spoil, reason = DAMAGE[damage]
    spoil(run_copy / "checkpoint-3")
    assert train(run_copy, "--resume_from_checkpoint", "latest") == 0
    assert f"skipping checkpoint-3: {reason}" in caplog.text
    assert "resume_from_checkpoint latest: " + str(run_copy / "checkpoint-2") in caplog.text
    # step 3 was redone from checkpoint-2: the same weights as the uninterrupted run
    got, want = adapter(run_copy / "final"), adapter(finished / "final")
    assert all(torch.equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_every_kind_of_incomplete_checkpoint_is_skipped_with_its_reason(run_copy, damage, caplog):
    spoil, reason = DAMAGE[damage]
    spoil(run_copy / "checkpoint-3")
    assert checkpoints.find_resume(run_copy, "latest") == run_copy / "checkpoint-2"
    assert f"skipping checkpoint-3: {reason}" in caplog.text
    with pytest.raises(checkpoints.CheckpointError, match=reason.split(" (")[0]):  # named: a one-line error
        checkpoints.find_resume(run_copy, str(run_copy / "checkpoint-3"))


def test_naming_an_incomplete_checkpoint_is_a_one_line_error(run_copy, capsys):
    _cut("adapter_model.safetensors")(run_copy / "checkpoint-3")
    assert train(run_copy, "--resume_from_checkpoint", str(run_copy / "checkpoint-3")) == 2
    assert "adapter_model.safetensors is truncated (" in one_line_error(capsys)
    assert not (run_copy / "final").exists()


def test_a_checkpoint_without_its_optimizer_needs_resume_weights_only(run_copy, capsys, caplog):
    (run_copy / "checkpoint-3" / "optimizer.pt").unlink()
    assert train(run_copy, "--resume_from_checkpoint", "latest", steps=4) == 2
    line = one_line_error(capsys)
    assert f"{run_copy / 'checkpoint-3' / 'optimizer.pt'} is missing" in line and "--resume_weights_only" in line
    assert f"--resume_from_checkpoint {run_copy / 'checkpoint-2'} (the newest complete one)" in line
    assert not (run_copy / "checkpoint-4").exists()  # nothing trained, nothing written
    # asked for explicitly, it resumes from the weights and says what that means
    assert train(run_copy, "--resume_from_checkpoint", "latest", "--resume_weights_only", steps=4) == 0
    assert "will not match an uninterrupted one" in caplog.text
    assert (run_copy / "checkpoint-4").is_dir() and (run_copy / "final").is_dir()


@pytest.mark.parametrize("missing", ["rng_state.pth", "scheduler.pt"])
def test_a_checkpoint_without_its_rng_or_schedule_is_an_error_naming_the_file(run_copy, missing):
    (run_copy / "checkpoint-3" / missing).unlink()
    for requested in ("latest", str(run_copy / "checkpoint-3")):
        with pytest.raises(checkpoints.CheckpointError, match=f"checkpoint-3/{missing} is missing"):
            checkpoints.find_resume(run_copy, requested)
    assert checkpoints.find_resume(run_copy, "latest", weights_only=True) == run_copy / "checkpoint-3"


def test_latest_without_any_complete_checkpoint_starts_from_step_0(run_copy, finished, caplog):
    for c in run_copy.glob("checkpoint-*"):
        _empty(c)
    assert train(run_copy, "--resume_from_checkpoint", "latest") == 0
    assert "no complete checkpoint in" in caplog.text and "(3 incomplete one(s) skipped); starting from step 0" \
        in caplog.text
    got, want = adapter(run_copy / "final"), adapter(finished / "final")
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_resuming_a_finished_schedule_trains_no_extra_step(run_copy, finished, caplog):
    # transformers would run one step past --max_steps when resumed from the last checkpoint
    assert train(run_copy, "--resume_from_checkpoint", "latest") == 0
    assert "nothing left to train" in caplog.text and not (run_copy / "checkpoint-4").exists()
    got, want = adapter(run_copy / "final"), adapter(finished / "final")
    assert all(torch.equal(got[k], want[k]) for k in want)


# ---------------------------------------------------------------------------------------- rewards mid-run


@pytest.mark.parametrize("reward, message", [
    ("returns_inf", "reward 'returns_inf' returned inf (completion 0) at step 3; rewards must be finite numbers"),
    ("returns_1e308", "reward 'returns_1e308' returned 1e+308 (completion 0) at step 3, which overflows float32"),
    ("returns_text", "reward 'returns_text' returned '0.5' (completion 0) at step 3"),
    ("raises", "reward 'raises' raised KeyError: 'answer_text' at step 3"),
])
def test_a_reward_that_fails_mid_run_is_named_with_the_step_and_the_last_checkpoint_stays(tmp_path, capsys,
                                                                                           reward, message):
    out = tmp_path / "run"
    assert train(out, reward=f"{TESTS / 'bad_rewards.py'}:{reward}", steps=4) == 2
    line = one_line_error(capsys)
    assert message in line
    assert "the last checkpoint, checkpoint-2, is complete; resume with: python main.py" in line
    assert checkpoints.resume_problem(out / "checkpoint-2") == (None, [])
    assert not (out / "checkpoint-3").exists() and not (out / ".partial").exists()


def test_every_bad_value_is_caught_where_the_reward_returns_it():
    from types import SimpleNamespace

    from grpo_math.training.trainer import guard_reward

    state = SimpleNamespace(global_step=6)
    for value, message in [(float("nan"), "returned nan (completion 1) at step 7"), (float("-inf"), "returned -inf"),
                           (-1e39, "returned -1e+39 (completion 1) at step 7, which overflows float32"),
                           (None, None), (True, "returned True"), ([1], "returned [1]")]:
        def reward(completions, value=value, **kwargs):
            return [0.5, value]
        reward.__name__ = "mine"
        call = guard_reward(reward)
        if message is None:
            assert call(completions=["a", "b"], trainer_state=state) == [0.5, None]  # None: no reward, allowed
            continue
        with pytest.raises(RewardFailure, match=re.escape(f"reward 'mine' {message}")):
            call(completions=["a", "b"], trainer_state=state)
    with pytest.raises(RewardFailure, match="returned 1 values for 2 completions.* at step 7"):
        guard_reward(lambda completions, **kw: [0.0])(completions=["a", "b"], trainer_state=state)


def test_rewards_whose_weighted_sum_overflows_are_an_error(tmp_path, capsys):
    huge = f"{TESTS / 'bad_rewards.py'}:huge"
    assert main.main([*ARGV, "--output_dir", str(tmp_path / "run"), "--max_steps", "4",
                      "--reward_funcs", huge, TOY, "--reward_weights", "2", "1"]) == 2
    line = one_line_error(capsys)
    assert "reward 'huge' returned 3e+38 (completion 0) at step 3" in line and "overflows float32" in line


def test_debug_shows_the_reward_s_own_traceback(tmp_path):
    with pytest.raises(RewardFailure) as e:
        train(tmp_path / "run", "--debug", reward=f"{TESTS / 'bad_rewards.py'}:raises", steps=4)
    assert isinstance(e.value.__cause__, KeyError)


def test_a_run_that_failed_at_step_1_does_not_block_the_same_command(tmp_path, capsys):
    out, reward = tmp_path / "run", f"{TESTS / 'bad_rewards.py'}:raises_at_step_1"
    for _ in range(2):  # the same error both times, never "already holds a run"
        assert train(out, reward=reward) == 2
        assert "reward 'raises_at_step_1' raised RuntimeError: cannot reach the grading server at step 1; no " \
               "checkpoint was saved: rerun the same command" in one_line_error(capsys)


# ---------------------------------------------------------------------------------------------- a full disk


def test_a_full_disk_during_a_save_keeps_the_last_checkpoint_and_resumes(tmp_path, capsys, monkeypatch, finished):
    real_save, calls = torch.save, {"n": 0}

    def save(obj, f, *a, **k):
        calls["n"] += 1
        if calls["n"] == 10:  # checkpoint-3's optimizer.pt (4 files per save: args, optimizer, scheduler, RNG)
            raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *a, **k)

    out = tmp_path / "run"
    monkeypatch.setattr(torch, "save", save)
    assert train(out) == 2
    line = one_line_error(capsys)
    assert "no space left on the device writing" in line and "optimizer.pt" in line
    assert "the last checkpoint, checkpoint-2, is complete" in line
    assert not (out / "checkpoint-3").exists() and not (out / ".partial").exists()  # the space is given back
    monkeypatch.setattr(torch, "save", real_save)
    assert train(out, "--resume_from_checkpoint", "latest") == 0
    got, want = adapter(out / "final"), adapter(finished / "final")
    assert all(torch.equal(got[k], want[k]) for k in want)


# ------------------------------------------------------------------------------------ the output directory


def test_a_second_live_run_in_the_same_directory_is_refused_with_its_pid(tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen(  # another run: holds the lock until told to stop
        [sys.executable, "-c", "import sys; from grpo_math.runs.runlock import RunLock; RunLock(sys.argv[1]).acquire(); "
                               "print('held', flush=True); sys.stdin.read()", str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    try:
        assert holder.stdout.readline().strip() == "held"
        assert train(out) == 2
        assert f"is in use by another run (PID {holder.pid}" in one_line_error(capsys)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing of ours written
    finally:
        holder.communicate("")
    assert train(out, steps=1) == 0  # the other run ended: its lock is free


def test_the_lock_names_its_holder_and_leaves_nothing_behind(tmp_path):
    first, second = runlock.RunLock(tmp_path / "new"), runlock.RunLock(tmp_path / "new")
    first.acquire()
    assert runlock.holder(tmp_path / "new")["pid"] == os.getpid()
    with pytest.raises(runlock.RunDirBusy, match=rf"in use by another run \(PID {os.getpid()}, started "):
        second.acquire()
    first.release()
    assert runlock.holder(tmp_path / "new") is None and not (tmp_path / "new").exists()  # it made the directory


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_log_line(tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    (out / runlock.LOCK_NAME).write_text(json.dumps({"pid": 999999, "started": "2026-01-01T00:00:00"}))
    assert train(out, steps=1) == 0
    assert f"taking over the lock of {out} from PID 999999, which is no longer running" in caplog.text
    assert not (out / runlock.LOCK_NAME).exists()  # released at the end


def test_a_lora_target_that_does_not_exist_fails_before_anything_is_written(tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "run"
    argv = ["--model_id", str(tiny_model_dir), "--lora_target_modules", "nonexistent_proj"]
    assert train(out, *argv) == 2
    line = one_line_error(capsys)
    assert "--lora_target_modules nonexistent_proj: " in line and "its linear layers are " in line
    assert "q_proj" in line and not out.exists()
    assert train(out, "--model_id", str(tiny_model_dir), "--lora_target_modules", "q_proj", "v_proj",
                 steps=1) == 0  # the fixed command just runs


def test_a_layer_lora_cannot_adapt_is_named(tmp_path, tiny_model_dir, capsys):
    assert train(tmp_path / "run", "--model_id", str(tiny_model_dir), "--lora_target_modules", "input_layernorm") == 2
    assert "--lora_target_modules input_layernorm: in " in one_line_error(capsys)
    assert not (tmp_path / "run").exists()
