"""The best checkpoint of a run: the step whose in-run accuracy eval scored highest, kept and named.

    python main.py --demo --eval_every 4 --save_total_limit 1   # RUN/best/ is the best step, final/ the last

The in-run eval (callbacks.AccuracyEval) hands each result to `note_eval`; a strictly higher eval_accuracy at a
step >= 1 is a new best (ties keep the earlier step, as report.py's best_step does; step 0 is the base model,
which has no checkpoint). A new best at a step --save_steps would not save is saved anyway, so the best is
always a checkpoint, and `checkpoints.rotate` never deletes it under --save_total_limit (the limit then keeps
the newest N plus the best one). When that checkpoint is published, `publish_best` makes `RUN/best/` from it.

Why a `best/` directory and not only a pointer in the report: every tool that takes a model directory
(eval.py, inference.py, export_gguf.py, `--model_dir`) can use `RUN/best` as it is, and its files are hard links
to the checkpoint's, so it costs no disk and stays whole even if the checkpoint is deleted by hand later. It
holds what a model needs (weights, configs, tokenizer, trainer_state.json), not the optimizer, scheduler or RNG
state, and `best_checkpoint.json` naming its step, accuracy and source checkpoint (training_report.json and the
summary read that file; eval.sh's table marks the row). A file system without hard links gets copies.
The best so far lives in the trainer's state log (the logged eval_accuracy values), so a resumed run knows it.
Left out on purpose: choosing "best" by any metric but greedy eval accuracy.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from grpo_math.runs import checkpoints
from grpo_math.runs.rundir import as_number

logger = logging.getLogger(__name__)

BEST = "best"
MARKER = "best_checkpoint.json"
_NOT_MODEL = (checkpoints.OPTIMIZER, checkpoints.SCHEDULER, "scaler.pt")  # resuming state, not the model


def best_eval(log_history: list[dict], up_to: int | None = None) -> dict | None:
    """{"step", "eval_accuracy"} of the best eval at a step >= 1 (<= `up_to`) in a trainer's log history."""
    best = None
    for rec in log_history:
        acc, step = as_number(rec.get("eval_accuracy")), rec.get("step")
        if acc is None or not isinstance(step, int) or step < 1 or (up_to is not None and step > up_to):
            continue
        if best is None or acc > best["eval_accuracy"]:
            best = {"step": step, "eval_accuracy": float(acc)}
    return best


def note_eval(trainer: Any, step: int, metrics: dict) -> bool:
    """Record an eval's result on `trainer.best_eval`; True when it is a new best (its checkpoint must exist)."""
    acc = as_number(metrics.get("eval_accuracy"))
    best = getattr(trainer, "best_eval", None)
    if step < 1 or acc is None or (best is not None and acc <= best["eval_accuracy"]):
        return False
    trainer.best_eval = {"step": step, "eval_accuracy": float(acc)}
    logger.info("step %d: new best eval accuracy %.1f%%; checkpoint-%d is kept as %s/", step, 100 * acc, step, BEST)
    return True


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # no hard links here (some network and FAT file systems): a copy
        shutil.copy2(src, dst)


def publish_best(run_dir: str | Path, ckpt: Path, best: dict) -> Path:
    """Make RUN/best/ the model files of `ckpt` (hard links) plus best_checkpoint.json, in one rename."""
    staged = checkpoints.staging_dir(run_dir) / BEST
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    for f in sorted(ckpt.iterdir()):
        if f.is_file() and f.name not in _NOT_MODEL and not f.name.startswith("rng_state"):
            _link_or_copy(f, staged / f.name)
    (staged / MARKER).write_text(json.dumps({**best, "checkpoint": ckpt.name}, indent=2) + "\n", encoding="utf-8")
    target = Path(run_dir) / BEST
    checkpoints.publish(staged, target)
    return target


def read_best(run_dir: str | Path) -> dict | None:
    """{"step", "eval_accuracy", "checkpoint", "path"} from RUN/best/best_checkpoint.json, or None."""
    path = Path(run_dir) / BEST / MARKER
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        out = {"step": int(data["step"]), "eval_accuracy": float(data["eval_accuracy"]),
               "checkpoint": str(data["checkpoint"])}
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("ignoring unreadable %s", path)
        return None
    return {**out, "path": str(Path(run_dir) / BEST)}


def sync_best(run_dir: str | Path, best: dict | None) -> dict | None:
    """At the end of a run: RUN/best/ is this run's best (a resume from an older checkpoint may have left the
    best/ of an abandoned later timeline); rebuilt from its checkpoint, or removed with a warning if that is gone."""
    run_dir = Path(run_dir)
    have = read_best(run_dir)
    if best is not None and have is not None and have["step"] == best["step"]:
        return have
    target = run_dir / BEST
    ckpt = run_dir / f"checkpoint-{best['step']}" if best else None
    if ckpt is not None and ckpt.is_dir():
        publish_best(run_dir, ckpt, best)
        return read_best(run_dir)
    if target.exists():
        logger.warning("removing %s: it is not this run's best checkpoint%s", target,
                       f" (checkpoint-{best['step']} is gone)" if best else "")
        checkpoints.remove(target)
    return None
