"""Fault injection for tests/test_faults.py: real training processes killed at chosen moments, then resumed.

    PYTHONPATH=. OMP_NUM_THREADS=1 python tests/fault_runner.py PLAN.json RESULTS.json

PLAN.json: {"base": DIR, "argv": [main.py flags], "chains": [{"name": NAME, "attempts": [spec, ...],
"extra_argv": [flags]}, ...]}. Each chain trains into DIR/NAME: the first attempt with its flags, every later
one with `--resume_from_checkpoint latest` added (or, after a signal, the exact resume command the run
printed), until a run finishes. A spec says how its attempt ends:

    {"kill": "torch.save", "at": 3, "mode": "cut"}   the process SIGKILLs itself at the 3rd call, in this process,
                                                     of an instrumented write (see WRITES); mode "before" the
                                                     call, "after" it, or "cut": after it, with the file cut to
                                                     half its size first (a write torn by the kill)
    {"after_s": 1.5}                                 the runner SIGKILLs it 1.5 s after it started
    {"signal": "SIGTERM", "event": "replace", "at": 4, "again": {"event": "torch.save", "at": 2}}
                                                     the process sends itself the signal at that call (and, with
                                                     "again", a second time at that call counted from the first)
    {}                                               no fault: it must finish

The runner imports torch, transformers and TRL once and forks one child per attempt, so that an attempt costs
seconds, not an interpreter start. RESULTS.json holds one record per attempt (outcome, exit code, the log's
last lines when it went wrong, the checkpoints left) and the final adapter of each chain.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import torch  # noqa: F401 - imported before the forks, so children start warm

import main
import train  # noqa: F401
from grpo_math.runs import checkpoints, rundir
from grpo_math.grading import worker as grader_worker

# The plans use a reward that never grades symbolically: not starting the math-verify child saves ~0.7 s a run.
grader_worker.SymbolicWorker.warm_up = lambda self, timeout_s=60.0: True

# name -> (object, attribute, index of the path argument or None)
WRITES = {
    "torch.save": ("torch", "save", 1),  # training_args.bin, optimizer.pt, scheduler.pt, rng_state.pth
    "safetensors": ("peft.peft_model", "safe_save_file", 1),  # adapter_model.safetensors
    "state_json": ("transformers.trainer_callback:TrainerState", "save_to_json", 1),  # trainer_state.json
    "fsync": ("os", "fsync", None),  # checkpoints.publish, before the rename
    "rename": ("os", "rename", 0),  # the publishing rename, and rotation's
    "replace": ("os", "replace", 0),  # write_atomic: train_log.json, run_config.json, completions.jsonl
    "rmtree": ("shutil", "rmtree", 0),  # rotation, clearing .partial/
}


def _owner(spec: str):
    import importlib

    module, _, attr = spec.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj


def instrument(event: str, at: int, action) -> None:
    """Call `action(path)` at the `at`-th call of the write `event` in this process (or before it)."""
    owner_name, attr, path_index = WRITES[event]
    owner = _owner(owner_name)
    original = getattr(owner, attr)
    count = [0]

    def patched(*args, **kwargs):
        count[0] += 1
        hit = count[0] == at
        if hit and action.mode == "before":
            action(None)
        result = original(*args, **kwargs)
        if hit and action.mode != "before":
            path = args[path_index] if path_index is not None and len(args) > path_index else None
            action(str(path) if path is not None else None)
        return result

    setattr(owner, attr, patched)


class Kill:
    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, path: str | None) -> None:
        if self.mode == "cut" and path and os.path.isfile(path):
            os.truncate(path, os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)


class SendSignal:
    """Send this process `signum`; then, if `again` = {"event", "at"} is given, again at that call counted from
    now (the second signal, which must end the process at once)."""

    mode = "after"

    def __init__(self, signum: int, again: dict | None = None) -> None:
        self.signum = signum
        self.again = again

    def __call__(self, path: str | None) -> None:
        if self.again:
            instrument(self.again["event"], self.again["at"], SendSignal(self.signum))
        os.kill(os.getpid(), self.signum)


def child(argv: list[str], log: Path, spec: dict) -> None:
    """The forked training process: its output to `log`, its fault installed, then main.main."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        if "kill" in spec:
            instrument(spec["kill"], spec["at"], Kill(spec.get("mode", "after")))
        if "signal" in spec:
            instrument(spec["event"], spec["at"], SendSignal(getattr(signal, spec["signal"]), spec.get("again")))
        rc = main.main(argv)
    except BaseException:  # noqa: BLE001 - a traceback in the log is what the test looks for
        import traceback

        traceback.print_exc()
        rc = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def attempt(argv: list[str], log: Path, spec: dict, timeout_s: float = 120.0) -> tuple[str, int | None, float]:
    """Fork one attempt and wait for it: ("killed" | "exit" | "timeout", exit code, seconds)."""
    sys.stdout.flush()
    sys.stderr.flush()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        child(argv, log, spec)
    deadline = started + spec.get("after_s", timeout_s)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            if "after_s" not in spec:
                return "timeout", None, time.monotonic() - started
            break
        time.sleep(0.02)
    seconds = time.monotonic() - started
    if os.WIFSIGNALED(status):
        return ("killed" if os.WTERMSIG(status) == signal.SIGKILL else f"signal {os.WTERMSIG(status)}"), None, seconds
    return "exit", os.WEXITSTATUS(status), seconds


def state_of(run: Path) -> dict:
    """The checkpoints a kill left: complete ones, incomplete ones (with why), and unfinished saves."""
    complete, incomplete = [], {}
    for _, ckpt in rundir.checkpoint_dirs(run):
        problem, missing = checkpoints.resume_problem(ckpt)
        if problem or missing:
            incomplete[ckpt.name] = problem or f"missing {missing}"
        else:
            complete.append(ckpt.name)
    staging = checkpoints.staging_dir(run)
    return {"complete": complete, "incomplete": incomplete,
            "staged": sorted(p.name for p in staging.iterdir()) if staging.is_dir() else []}


def run_chain(base: Path, argv: list[str], chain: dict) -> dict:
    run = base / chain["name"]
    argv = [*argv, *chain.get("extra_argv", [])]
    records = []
    specs = list(chain["attempts"])
    resume_argv = None  # after a signal: the command the run printed
    for i in range(len(specs) + 4):  # the planned faults, then at most 4 clean attempts to finish
        spec = specs[i] if i < len(specs) else {}
        this_argv = ([*argv, "--output_dir", str(run)] if i == 0 else
                     resume_argv or [*argv, "--output_dir", str(run), "--resume_from_checkpoint", "latest"])
        log = base / f"{chain['name']}-{i}.log"
        outcome, code, seconds = attempt(this_argv, log, spec)
        text = log.read_text(errors="replace")
        record = {"spec": spec, "outcome": outcome, "code": code, "seconds": round(seconds, 2),
                  "traceback": "Traceback" in text, "state": state_of(run),
                  "skipped": text.count("--resume_from_checkpoint latest: skipping")}
        printed = [line for line in text.splitlines() if "resume with: " in line]
        resume_argv = None
        if "rerun the same command" in text:  # stopped before its first checkpoint
            resume_argv = [*argv, "--output_dir", str(run)]
        if printed:
            record["message"] = printed[-1]
            words = shlex.split(printed[-1].split("resume with: ", 1)[1])
            resume_argv = words[2:]  # drop "python main.py"
        if outcome != "killed" and code != 0 or record["traceback"]:
            record["log_tail"] = text[-3000:]
        records.append(record)
        if outcome == "exit" and code == 0:  # finished (a planned fault that never fired shows as this too)
            break
    adapter = run / rundir.FINAL / "adapter_model.safetensors"
    return {"name": chain["name"], "attempts": records, "adapter": str(adapter) if adapter.is_file() else None}


def main_(plan_path: str, results_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    base = Path(plan["base"])
    base.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = {"chains": [run_chain(base, plan["argv"], chain) for chain in plan["chains"]]}
    results["seconds"] = round(time.monotonic() - started, 1)
    Path(results_path).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main_(*sys.argv[1:3])
