"""One process of a multi-process test run (tests/test_distributed.py): main.py's own `main()`, plus a record of
what happened inside this process, which the test cannot see from outside.

    torchrun --nproc_per_node 2 tests/dist_runner.py DUMP_DIR [--stop_rank R --stop_at STEP] -- MAIN.PY FLAGS

It writes DUMP_DIR/rank-R.json (rank, world size, exit code, how many accuracy evals this process ran itself,
the eval numbers it ended up with, the run files it wrote) and DUMP_DIR/rank-R.safetensors (the LoRA weights
this process holds in memory at the end, under the names PEFT saves them with). With --stop_rank/--stop_at,
that one rank sends itself SIGTERM at the end of step STEP, so the other ranks can only learn of it through
interrupts.py's all-reduce. Nothing else is changed: the flags, the trainer and the files are main.py's.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import main
from grpo_math.training import callbacks
from grpo_math.runtime import interrupts
from grpo_math.runs import rundir
from grpo_math.evaluation import scoring

RANK = int(os.environ.get("RANK", "0"))


def _parse(argv: list[str]) -> tuple[Path, int | None, int | None, list[str]]:
    split = argv.index("--")
    own, main_argv = argv[:split], argv[split + 1:]
    dump, stop_rank, stop_at = Path(own[0]), None, None
    for flag, value in zip(own[1::2], own[2::2]):
        if flag == "--stop_rank":
            stop_rank = int(value)
        elif flag == "--stop_at":
            stop_at = int(value)
        else:
            raise SystemExit(f"dist_runner.py: unknown flag {flag}")
    return dump, stop_rank, stop_at, main_argv


def instrument(record: dict, stop_rank: int | None, stop_at: int | None) -> None:
    """Count this process's evals and run-file writes, keep its trainer, and plant the SIGTERM."""
    evaluate = scoring.evaluate

    def counted_evaluate(*args, **kwargs):
        record["evals_run"] += 1
        return evaluate(*args, **kwargs)

    scoring.evaluate = counted_evaluate  # callbacks.add_callbacks imports it at call time

    add_callbacks = callbacks.add_callbacks

    def keep_trainer(trainer, *args, **kwargs):
        record["trainer"] = trainer
        return add_callbacks(trainer, *args, **kwargs)

    callbacks.add_callbacks = keep_trainer

    write_atomic = rundir.write_atomic

    def noted_write(path, text):
        record["wrote"].append(Path(path).name)
        return write_atomic(path, text)

    rundir.write_atomic = callbacks.write_atomic = noted_write  # train.py, and callbacks.py's own import

    log_completions = callbacks.RunLog._log_completions

    def noted_completions(self, step):
        record["wrote"].append(f"completions at step {step}")
        return log_completions(self, step)

    callbacks.RunLog._log_completions = noted_completions

    if stop_rank == RANK and stop_at is not None:
        on_step_end = interrupts.GracefulStop.on_step_end

        def stop_here(self, args, state, control, **kwargs):
            if state.global_step == stop_at and self.signum is None:
                os.kill(os.getpid(), signal.SIGTERM)  # handled at once, in this (the main) thread
            return on_step_end(self, args, state, control, **kwargs)

        interrupts.GracefulStop.on_step_end = stop_here


def dump(out: Path, record: dict) -> None:
    import torch.distributed as dist
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    trainer = record.pop("trainer", None)
    if trainer is not None:
        accuracy = next((c for c in trainer.callback_handler.callbacks if isinstance(c, callbacks.AccuracyEval)),
                        None)
        record["eval_history"] = accuracy.history if accuracy is not None else []
        weights = get_peft_model_state_dict(trainer.accelerator.unwrap_model(trainer.model))
        save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(out / f"rank-{RANK}.safetensors"))
        record["global_step"] = trainer.state.global_step
    record["world_size"] = dist.get_world_size() if dist.is_initialized() else 1
    (out / f"rank-{RANK}.json").write_text(json.dumps(record, indent=1, default=str) + "\n")


def run(argv: list[str]) -> int:
    out, stop_rank, stop_at, main_argv = _parse(argv)
    out.mkdir(parents=True, exist_ok=True)
    record: dict = {"rank": RANK, "evals_run": 0, "wrote": []}
    instrument(record, stop_rank, stop_at)
    code = main.main(main_argv)
    record["exit_code"] = code
    dump(out, record)
    return code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
