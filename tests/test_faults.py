"""Fault injection: real training processes SIGKILLed at many moments (inside checkpoint saves too), each resumed
with `--resume_from_checkpoint latest`; SIGTERM and SIGINT stops resumed with the command they print. Every
resume must succeed and every chain must end with an adapter bit-identical to an uninterrupted run's.

tests/fault_runner.py does the killing (one warm parent, a forked child per attempt); this file is the plan
and what must hold. About 40 training processes, ~1.5 minutes on two cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TOY_REWARD = str(ROOT / "tests" / "toy_rewards.py") + ":digit_share"  # varies between completions: real updates
ARGV = ["--demo", "--report_to", "none", "--eval_every", "0", "--no-eval_before_train", "--max_steps", "6",
        "--save_steps", "1", "--save_total_limit", "2", "--batch_size", "4", "--num_generations", "2",
        "--max_completion_length", "8", "--reward_funcs", TOY_REWARD, "--seed", "3"]


def kill(write: str, at: int, mode: str = "after") -> dict:
    return {"kill": write, "at": at, "mode": mode}


# Where each process dies. The n-th call counts from the start of that process, which resumes from the last
# complete checkpoint; each checkpoint save makes, in order: the adapter (safetensors), training_args.bin,
# optimizer.pt, scheduler.pt, rng_state.pth (torch.save x4), trainer_state.json, ~14 fsyncs, the publishing
# rename; then --save_total_limit's rotation (a rename, an rmtree). "cut" tears the file in half first.
INSIDE_SAVES = [
    kill("safetensors", 1, "cut"), kill("torch.save", 1, "cut"), kill("torch.save", 2, "cut"),
    kill("torch.save", 3, "before"), kill("torch.save", 4, "cut"), kill("state_json", 1, "before"),
    kill("state_json", 1, "cut"), kill("fsync", 3), kill("fsync", 12), kill("rename", 1, "before"),
    kill("rename", 1),  # published, not yet rotated
    kill("safetensors", 2, "cut"), kill("torch.save", 6, "cut"), kill("rename", 2, "before"),
    kill("rename", 3),  # the next checkpoint published while rotation's deletion is half done
]
OTHER_MOMENTS = [
    kill("replace", 2, "before"), kill("replace", 4),  # train_log.json rewrites: at the start, after a step's log
    kill("rmtree", 1, "before"), kill("fsync", 30),  # inside the first and second save of a process
    kill("state_json", 3, "cut"),  # the third save of a process, after two rotations
    # by the clock, wherever the run then is (loading, generating, a backward pass): machine-dependent, so the
    # last ones may find the run finished, which the check allows
    {"after_s": 0.4}, {"after_s": 0.9}, {"after_s": 1.4}, {"after_s": 1.9},
]
SECOND_SAVES = [  # the same saves one checkpoint later in the process, and rotation's deletion
    {"after_s": 0.2},  # while the flags are checked
    kill("torch.save", 5, "cut"), kill("state_json", 2, "before"), kill("rename", 2),
    kill("fsync", 16), kill("safetensors", 2, "before"), kill("rmtree", 3, "before"),
]
SIGNALS = [
    {"signal": "SIGTERM", "event": "replace", "at": 3},  # mid-run: finish the step, save, exit 143
    {"signal": "SIGINT", "event": "replace", "at": 2},  # Ctrl-C: the same, exit 130, no KeyboardInterrupt
    {"signal": "SIGTERM", "event": "replace", "at": 2, "again": {"event": "torch.save", "at": 2}},  # a second
    # signal during the save it asked for: exit at once, the checkpoints already published stay valid
]
PLAN = {"argv": ARGV, "chains": [
    {"name": "reference", "attempts": []},
    {"name": "saves", "attempts": INSIDE_SAVES},
    {"name": "moments", "attempts": OTHER_MOMENTS},
    {"name": "second_saves", "attempts": SECOND_SAVES},
    # checkpoints every 4 steps, so a signal's checkpoint is one the schedule would not have written
    {"name": "signals", "attempts": SIGNALS, "extra_argv": ["--save_steps", "4"]},
]}


@pytest.fixture(scope="module")
def faults(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("faults")
    plan, results = base / "plan.json", base / "results.json"
    plan.write_text(json.dumps({**PLAN, "base": str(base / "runs")}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run([sys.executable, str(ROOT / "tests" / "fault_runner.py"), str(plan), str(results)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(results.read_text())
    print(f"\nfault injection: {sum(len(c['attempts']) for c in out['chains'])} runs in {out['seconds']} s")
    return {c["name"]: c for c in out["chains"]}


def adapter(chain: dict) -> dict[str, torch.Tensor]:
    assert chain["adapter"], f"{chain['name']}: no final adapter"
    return load_file(chain["adapter"])


def check_chain(chain: dict, planned: list[dict]) -> int:
    """What must hold for every chain; returns how many of its processes a fault ended."""
    attempts = chain["attempts"]
    *fired, last = attempts
    assert (last["outcome"], last["code"]) == ("exit", 0), last.get("log_tail")
    # every planned fault fired (a run that finished instead would test nothing), then a clean run finished;
    # only faults by the clock may find the run already done
    assert [a["spec"] for a in fired] == planned[:len(fired)]
    assert last["spec"] == {} or all("after_s" in spec for spec in planned[len(fired):])
    for spec, a in zip(planned, fired):
        code = 128 + {"SIGTERM": 15, "SIGINT": 2}[spec["signal"]] if "signal" in spec else None
        assert (a["outcome"], a["code"]) == (("exit", code) if code else ("killed", None)), (spec, a.get("log_tail"))
    for a in attempts:
        assert not a["traceback"], a.get("log_tail")
        # atomic saves: a kill never leaves an incomplete checkpoint-N/, only an unfinished .partial/
        assert not a["state"]["incomplete"], a["state"]
        assert a["skipped"] == 0
    assert last["state"]["staged"] == []
    return len(fired)


def assert_identical(chain: dict, reference: dict) -> None:
    got, want = adapter(chain), adapter(reference)
    assert got.keys() == want.keys()
    different = [k for k in want if not torch.equal(got[k], want[k])]
    assert not different, f"{chain['name']}: {len(different)} tensors differ from the uninterrupted run"


def test_the_reference_run_learns_something(faults):
    lora_b = [v for k, v in adapter(faults["reference"]).items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at 0: the runs below really train


@pytest.mark.parametrize("name, planned", [("saves", INSIDE_SAVES), ("moments", OTHER_MOMENTS),
                                           ("second_saves", SECOND_SAVES)])
def test_sigkill_anywhere_then_latest_resumes_bit_identically(faults, name, planned):
    killed = check_chain(faults[name], planned)
    assert killed >= len(planned) - 3  # at most the 3 last faults by the clock came too late
    assert_identical(faults[name], faults["reference"])
    print(f"{name}: {killed} SIGKILLs, {killed} resumes with latest, final adapter bit-identical")
    if name == "saves":  # a save killed half-way is cleaned up by the next run, with a line saying so
        assert any(a["state"]["staged"] for a in faults[name]["attempts"][:-1])


def test_sigterm_and_sigint_save_print_the_resume_command_and_exit_143_130(faults):
    chain = faults["signals"]
    check_chain(chain, SIGNALS)
    first, second, double = chain["attempts"][:3]
    for a in (first, second):
        assert "the last checkpoint, checkpoint-" in a["message"] and "is complete; resume with: python main.py" \
            in a["message"] and a["message"].endswith("--resume_from_checkpoint latest")
    assert "checkpoint-1" in first["state"]["complete"]  # saved at the signal, though --save_steps is 4
    assert "log_tail" not in double or "again: exiting now" in double["log_tail"]
    assert_identical(chain, faults["reference"])
