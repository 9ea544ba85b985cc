"""Issue 23's reward failures: a reward that calls sys.exit() (or raises any BaseException but the user's Ctrl-C)
is the usual one-line reward error, exit 2, in the pre-training check and mid-run; a run never exits 0 without
final/; a reward that edits its columns in place cannot change what the next reward sees.

The training cases are in-process runs of the tiny demo model (slow: a few seconds each)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import main
from grpo_math.runs import checkpoints
from grpo_math.rewards import REWARD_FUNCS, check_reward_funcs
from grpo_math.training.trainer import guard_reward

TESTS = Path(__file__).resolve().parent
BAD = TESTS / "bad_rewards.py"
ARGV = ["--demo", "--report_to", "none", "--eval_every", "0", "--no-eval_before_train", "--batch_size", "4",
        "--num_generations", "2", "--max_completion_length", "8", "--save_steps", "1", "--seed", "5"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("main.py: error: ")]
    assert len(lines) == 1, err[-2000:]
    return lines[0]


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("reward, steps, message, resume", [
    ("exits_at_step_1", 3, "reward 'exits_at_step_1' called sys.exit(0) at step 1", False),  # exited 0 before
    ("aborts_at_step_1", 3, "reward 'aborts_at_step_1' raised _Abort: gave up at step 1", False),
    ("exits_at_step_3", 4, "reward 'exits_at_step_3' called sys.exit(3) at step 3", True),  # exited 3 silently
])
def test_a_reward_that_exits_mid_run_is_one_line_and_exit_2(tmp_path, capsys, reward, steps, message, resume):
    out = tmp_path / "run"
    code = main.main([*ARGV, "--output_dir", str(out), "--max_steps", str(steps), "--reward_funcs", f"{BAD}:{reward}"])
    assert code == 2
    line = one_line_error(capsys)
    assert message in line
    assert not (out / "final").exists()
    if resume:
        assert "the last checkpoint, checkpoint-2, is complete; resume with: python" in line
        assert checkpoints.resume_problem(out / "checkpoint-2") == (None, [])
    else:
        assert "no checkpoint was saved" in line


def test_a_reward_that_exits_in_the_pre_training_check_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    code = main.main([*ARGV, "--output_dir", str(out), "--max_steps", "2",
                      "--reward_funcs", f"{BAD}:exits_in_the_check"])
    assert code == 2
    assert "reward 'exits_in_the_check' called sys.exit(3) on a perfect completion" in one_line_error(capsys)


def test_a_reward_file_that_exits_when_loaded_is_one_line(tmp_path, capsys):
    mod = tmp_path / "leaves.py"
    mod.write_text("import sys\nsys.exit(0)\n")
    assert main.main([*ARGV, "--output_dir", str(tmp_path / "run"), "--reward_funcs", f"{mod}:fn"]) == 2
    assert "called sys.exit(0)" in one_line_error(capsys)


def test_a_run_that_returns_without_final_is_not_exit_0(tmp_path, capsys, monkeypatch):
    import train

    monkeypatch.setattr(train, "run", lambda config: Path(config.output_dir) / "final")  # returned, wrote nothing
    assert main.main([*ARGV, "--output_dir", str(tmp_path / "run"), "--max_steps", "2"]) == 2
    assert "without writing" in one_line_error(capsys)


# ------------------------------------------------------------------------------------ 11: rewards editing columns


def _spy(seen: dict):
    def spy(completions, answer=None, prompts=None, **kwargs):
        seen.update(answer=list(answer), prompts=[list(p) if isinstance(p, list) else p for p in prompts])
        return [0.0] * len(completions)
    return spy


def test_a_reward_that_edits_its_columns_does_not_change_what_the_next_one_sees():
    import tests.bad_rewards as bad

    prompt = [{"role": "user", "content": "What is 1 + 1?"}]
    # what TRL passes every reward of a step: one dict of columns, the same lists for each
    kwargs = dict(prompts=[prompt, prompt], completions=["\\boxed{2}", "\\boxed{3}"], answer=["2", "2"],
                  completion_ids=[[1], [2]],
                  trainer_state=SimpleNamespace(global_step=0))
    seen: dict = {}
    for fn in (bad.edits_its_columns, _spy(seen)):
        guard_reward(fn)(**kwargs)
    assert seen["answer"] == ["2", "2"] and seen["prompts"] == [prompt, prompt]
    accuracy = guard_reward(REWARD_FUNCS["accuracy"])
    guard_reward(bad.edits_its_columns)(**kwargs)
    assert accuracy(**kwargs) == [1.0, 0.0]  # graded against the true gold, not the "0" the other one wrote


def test_the_pre_training_check_blames_the_reward_that_edits_its_columns_never_the_next():
    import tests.bad_rewards as bad

    for funcs in ([bad.edits_its_columns, REWARD_FUNCS["accuracy"]], [REWARD_FUNCS["accuracy"], bad.edits_its_columns]):
        check_reward_funcs(funcs, gold="72")  # no error: each reward saw its own copies
