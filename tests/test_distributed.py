"""Several processes and several machines, for real: the demo under torchrun (2 processes), across two "machines"
on one host (torchrun --nnodes 2, one process each), stopped and resumed under accelerate launch with
configs/accelerate/cpu-ddp.yaml, and an impossible flag combination under torchrun. CPU, gloo, loopback only.

Every process runs tests/dist_runner.py, which is main.py's own main() plus a record of what happened inside
it (its evals, the run files it wrote, its final LoRA weights), except the accelerate launch, which runs
main.py itself. Each launch gets a free port, its own session and a deadline; whatever it started is found by
a marker in its environment and stopped by the test (SIGTERM, then SIGKILL), also when an assertion fails.
About 100 s on two idle cores: five launches of two processes, each ~20 s, mostly interpreter and import start.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
RUNNER = str(ROOT / "tests" / "dist_runner.py")
DEADLINE_S = 300  # a launch takes ~20 s on two idle cores; a loaded machine gets plenty, a hang does not get for ever
MARK = "GRPO_MATH_DIST_TEST"  # in every launched process's environment, inherited by what it starts
STEPS, EVAL_EVERY, PER_DEVICE = 4, 2, 8
# evals before training, every 2 steps, and on the final model; completions logged every 2 steps, 16 per step
FLAGS = ["--demo", "--report_to", "none", "--max_steps", str(STEPS), "--save_steps", "2", "--eval_every",
         str(EVAL_EVERY), "--eval_samples", "16", "--log_completions_steps", "2", "--batch_size", str(PER_DEVICE)]
TIMING = {"eval_runtime", "samples_per_second", "step_time"}  # clock readings: the only values two identical runs may differ in

if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("torch.distributed with the gloo backend is not available in this torch build",
                allow_module_level=True)


# ------------------------------------------------------------------------------------------------ launching


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(token: str) -> dict:
    env = {k: v for k, v in os.environ.items()  # nothing of an outer launch leaks into this one
           if not k.startswith(("ACCELERATE_", "TORCHELASTIC_")) and k not in
           ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK")}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1", **{MARK: token})
    if "lo" in {name for _, name in socket.if_nameindex()}:
        env["GLOO_SOCKET_IFNAME"] = "lo"  # gloo's traffic stays on the loopback, whatever the host name resolves to
    return env


def stop_everything(token: str) -> None:
    """SIGTERM, then SIGKILL, every process carrying this launch's marker (torchrun starts its workers in
    sessions of their own, so a process group would miss them)."""
    import psutil

    def marked() -> list:
        found = []
        for p in psutil.process_iter():
            try:
                if p.environ().get(MARK) == token:
                    found.append(p)
            except (psutil.Error, OSError):
                continue
        return found

    for sig in (signal.SIGTERM, signal.SIGKILL):
        procs = marked()
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=10)


def launch(commands: list[list[str]], logs: list[Path]) -> list[int]:
    """Run the commands side by side (the nodes of one launch) and return their exit codes; fail the test past
    DEADLINE_S. Everything they started is stopped before this returns."""
    token = uuid.uuid4().hex
    env = environment(token)
    procs = []
    try:
        for cmd, log in zip(commands, logs):
            with open(log, "w") as f:
                procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
                                              start_new_session=True))
        deadline = time.monotonic() + DEADLINE_S
        for p in procs:
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"{' '.join(commands[procs.index(p)][:6])}... still running after {DEADLINE_S} s; "
                            f"its log ends:\n{tail(logs[procs.index(p)])}")
        return [p.returncode for p in procs]
    finally:
        stop_everything(token)


def tail(log: Path, n: int = 25) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:])


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--master_addr", "127.0.0.1", *args]


def runner(dump: Path, run: Path, *extra: str) -> list[str]:
    return [RUNNER, str(dump), *extra, "--", *FLAGS, "--output_dir", str(run)]


# ------------------------------------------------------------------------------------------------ what must hold


def rank_records(dump: Path, world: int = 2) -> list[dict]:
    return [json.loads((dump / f"rank-{r}.json").read_text()) for r in range(world)]


def check_run(run: Path, dump: Path, log: Path) -> None:
    """One two-process run: both ranks finished with the same weights, rank 0 wrote the run directory once, the
    accuracy eval ran once per eval step and every rank holds its numbers."""
    ranks = rank_records(dump)
    assert [r["exit_code"] for r in ranks] == [0, 0], tail(log)
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["global_step"] for r in ranks] == [STEPS, STEPS]
    # identical adapters: what each rank holds in memory, and what rank 0 saved in final/
    saved = load_file(run / "final" / "adapter_model.safetensors")
    for r in range(2):
        held = load_file(dump / f"rank-{r}.safetensors")
        assert sorted(held) == sorted(saved) and all(torch.equal(held[k], saved[k]) for k in saved)
    # written once, by rank 0: rank 1 wrote none of the run files, and the files hold no duplicates
    assert ranks[1]["wrote"] == [] and "run_config.json" in ranks[0]["wrote"]
    records = json.loads((run / "train_log.json").read_text())
    steps = [r["step"] for r in records]
    assert steps == list(range(STEPS + 1))  # one record per logged step (0: the eval before training)
    rows = [json.loads(line) for line in (run / "completions.jsonl").read_text().splitlines()]
    per_step = {s: sum(r["step"] == s for r in rows) for s in {r["step"] for r in rows}}
    assert per_step == {2: 2 * PER_DEVICE, 4: 2 * PER_DEVICE}  # one generation batch (both ranks') per log
    # the eval: run by rank 0 alone, once per eval step; every rank ends with the numbers train_log.json shows
    eval_steps = [0, *range(EVAL_EVERY, STEPS + 1, EVAL_EVERY)]
    assert [r["evals_run"] for r in ranks] == [len(eval_steps), 0]
    assert [h["step"] for h in ranks[0]["eval_history"]] == eval_steps
    assert ranks[1]["eval_history"] == ranks[0]["eval_history"]
    logged = [{k: v for k, v in r.items() if k.startswith("eval_") or k == "step"} for r in records
              if "eval_accuracy" in r]
    assert logged == ranks[0]["eval_history"]


def comparable_log(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in json.loads((run / "train_log.json").read_text())]


def same_adapter(a: Path, b: Path) -> bool:
    x, y = load_file(a / "final" / "adapter_model.safetensors"), load_file(b / "final" / "adapter_model.safetensors")
    return sorted(x) == sorted(y) and all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The reference: the demo under `torchrun --nproc_per_node 2`, uninterrupted (run dir, dump dir, log)."""
    base = tmp_path_factory.mktemp("two_processes")
    run, dump, log = base / "run", base / "dump", base / "torchrun.log"
    codes = launch([torchrun("--nproc_per_node", "2", "--master_port", str(free_port()), *runner(dump, run))], [log])
    assert codes == [0], tail(log)
    return run, dump, log


# ------------------------------------------------------------------------------------------------ the tests


def test_two_processes_on_one_machine(two_processes):
    check_run(*two_processes)


def test_two_machines_on_one_host_match_two_processes_on_one(two_processes, tmp_path):
    run, dump = tmp_path / "run", tmp_path / "dump"
    port = str(free_port())
    nodes = [torchrun("--nnodes", "2", "--node_rank", str(n), "--nproc_per_node", "1", "--master_port", port,
                      *runner(dump, run)) for n in (0, 1)]
    logs = [tmp_path / "node0.log", tmp_path / "node1.log"]
    assert launch(nodes, logs) == [0, 0], tail(logs[0]) + "\n---\n" + tail(logs[1])
    check_run(run, dump, logs[0])
    reference = two_processes[0]
    assert same_adapter(run, reference)
    assert comparable_log(run) == comparable_log(reference)
    assert (run / "completions.jsonl").read_bytes() == (reference / "completions.jsonl").read_bytes()


def test_a_stop_on_one_rank_stops_both_and_resumes_under_accelerate_bit_identically(two_processes, tmp_path):
    run, dump, log = tmp_path / "run", tmp_path / "dump", tmp_path / "stopped.log"
    # rank 1 alone gets SIGTERM after step 3: rank 0 learns of it through interrupts.py's all-reduce
    stop = runner(dump, run, "--stop_rank", "1", "--stop_at", "3")
    codes = launch([torchrun("--nproc_per_node", "2", "--master_port", str(free_port()), *stop)], [log])
    assert codes != [0]
    ranks = rank_records(dump)
    assert [(r["exit_code"], r["global_step"]) for r in ranks] == [(143, 3), (143, 3)], tail(log)
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    text = log.read_text()
    assert text.count("resume with:") == 2  # each rank printed how to resume before the launcher stopped either
    assert "resume with: the same torchrun / accelerate launch command (2 processes) with main.py --demo" in text

    # the resume, by accelerate launch and main.py itself: two processes again (rank 1's RNG state is saved)
    log = tmp_path / "resumed.log"
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                  str(ROOT / "configs" / "accelerate" / "cpu-ddp.yaml"), "--main_process_ip", "127.0.0.1",
                  "--main_process_port", str(free_port()), "main.py", *FLAGS, "--output_dir", str(run),
                  "--resume_from_checkpoint", "latest"]
    assert launch([accelerate], [log]) == [0], tail(log)
    text = log.read_text()
    assert text.count("--resume_from_checkpoint latest: ") == 2 and text.count("INFO train: done in") == 2
    assert (run / "checkpoint-4" / "rng_state_1.pth").is_file()
    reference = two_processes[0]
    assert same_adapter(run, reference)
    assert comparable_log(run) == comparable_log(reference)
    assert (run / "completions.jsonl").read_bytes() == (reference / "completions.jsonl").read_bytes()


def own_frames(text: str, root: Path = ROOT) -> list[str]:
    """Traceback frames (`File "..."`) of the project's own files: under ROOT, but not inside a virtual
    environment kept there (a folder with pyvenv.cfg, e.g. .venv/, where torchrun's own code lives)."""
    paths = [Path(p) for p in re.findall(r'File "([^"]+)"', text)]
    return [str(p) for p in paths if p.is_relative_to(root)
            and not (root / p.relative_to(root).parts[0] / "pyvenv.cfg").exists()]


def test_own_frames_leaves_out_a_virtual_environment_in_the_project(tmp_path):
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    text = f'  File "{tmp_path}/.venv/bin/torchrun", line 8\n  File "{tmp_path}/main.py", line 3\n  File "/usr/x.py"'
    assert own_frames(text, tmp_path) == [f"{tmp_path}/main.py"]


def test_an_impossible_combination_stops_every_rank_in_one_line_before_loading(tmp_path):
    run, log = tmp_path / "run", tmp_path / "torchrun.log"
    cmd = torchrun("--nproc_per_node", "2", "--master_port", str(free_port()), "main.py", *FLAGS,
                   "--num_generations", "3", "--output_dir", str(run))
    started = time.monotonic()
    assert launch([cmd], [log]) != [0]
    text = log.read_text()
    line = ("main.py: error: --num_generations 3 must divide the generation batch 16 (--batch_size 8 x "
            "--gradient_accumulation_steps 1 x 2 processes); try --num_generations 4")
    assert text.count(line) == 2, text  # once per rank: neither was stopped before it said why
    assert text.count("exitcode  : 2 ") == 2  # torchrun's report: both exited with the error's code, not a signal
    assert not own_frames(text)  # no traceback of ours (torchrun prints its own, maybe from a .venv in ROOT)
    assert not run.exists()  # nothing loaded, nothing written
    assert time.monotonic() - started < 120


# ------------------------------------------------------------------------------------------------ run_on_main


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("not picklable")


def _share_on_two_ranks(rank: int, port: int, out: str) -> None:
    from grpo_math.runtime.launch import run_on_main
    from grpo_math.rewards import RewardFailure

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    ran: list[int] = []
    seen = {"value": run_on_main(lambda: ran.append(rank) or {"made_by": rank})}

    def fail():
        ran.append(rank)
        raise RewardFailure("reward 'mine' raised ValueError: bad at the accuracy eval")

    for name, compute in (("error", fail), ("unpicklable", lambda: (_ for _ in ()).throw(Unpicklable("odd")))):
        try:
            run_on_main(compute)
        except Exception as e:  # noqa: BLE001 - what each rank gets is the point
            seen[name] = f"{type(e).__name__}: {e}"
    seen["every_rank"] = run_on_main(lambda: ran.append(rank) or rank, every_rank=True)
    seen["ran"] = ran
    Path(out, f"rank-{rank}.json").write_text(json.dumps(seen))
    dist.destroy_process_group()


def test_run_on_main_runs_once_and_hands_every_rank_the_result_or_the_error(tmp_path):
    import torch.multiprocessing as mp

    context = mp.start_processes(_share_on_two_ranks, args=(free_port(), str(tmp_path)), nprocs=2, join=False,
                                 start_method="spawn")
    deadline = time.monotonic() + 120
    try:
        while not context.join(timeout=1):  # raises if a rank failed
            assert time.monotonic() < deadline, "the two ranks did not finish within 120 s"
    finally:
        for p in context.processes:
            if p.is_alive():
                p.kill()
    r0, r1 = (json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1))
    assert r0["value"] == r1["value"] == {"made_by": 0}  # computed by rank 0, seen by both
    assert r0["error"] == r1["error"] == "RewardFailure: reward 'mine' raised ValueError: bad at the accuracy eval"
    assert r1["unpicklable"] == "RuntimeError: Unpicklable: odd"  # its text still reaches the other rank
    assert r0["unpicklable"] == "Unpicklable: odd"  # rank 0 raises its own
    assert r0["every_rank"] == r1["every_rank"] == 0
    assert r0["ran"] == [0, 0, 0] and r1["ran"] == [1]  # value, error, every_rank; rank 1 only the last
