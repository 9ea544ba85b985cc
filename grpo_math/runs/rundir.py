"""The run directory: the names of the files a run writes, writing them atomically, and reading a run back.

    ckpts/<run>/run_config.json, train_log.json, completions.jsonl, checkpoint-N/, final/, runs/, plots, report

Every module that writes or reads these names takes them from here, so a renamed file cannot leave a reader
behind. `write_atomic` is the one way this tool replaces a file that someone may be reading (a temporary file
in the same directory, flushed and fsynced, then renamed over the old one): a crash or a full disk leaves the
old file or the new one, never half of either. Left out on purpose: locking the directory (`runlock.py`)
and what makes a checkpoint complete (`checkpoints.py`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

RUN_CONFIG = "run_config.json"
TRAIN_LOG = "train_log.json"
COMPLETIONS_LOG = "completions.jsonl"
REPORT = "training_report.json"
PLOTS = ("training_metrics.png", "metrics_distribution.png", "eval_curve.png")
FINAL = "final"
BASE_MODEL = "base_model"  # the demo's tiny model, built into its run directory
TENSORBOARD_DIR = "runs"
STAGING = ".partial"  # checkpoints and final/ while written (checkpoints.py), and checkpoints being deleted
CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)")
# Everything a run writes at the top of its directory, and so everything an overwrite may remove.
RUN_FILES = (RUN_CONFIG, TRAIN_LOG, TRAIN_LOG + ".unreadable", COMPLETIONS_LOG, REPORT, *PLOTS, "README.md")


def as_number(value: Any) -> float | int | None:
    """A JSON-safe number: ints and finite floats as they are, NaN/inf/None as None (JSON has no NaN)."""
    if hasattr(value, "item"):  # a 0-d tensor or numpy scalar
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def cache_dir(kind: str) -> Path:
    """The tool's cache for things built once and reused by every run (converted GGUF models, the demo's warm
    start): `$GRPO_MATH_CACHE/<kind>`, default `~/.cache/grpo_math/<kind>`."""
    root = os.environ.get("GRPO_MATH_CACHE") or Path.home() / ".cache" / "grpo_math"
    return Path(root).expanduser() / kind


def publish_dir(tmp: Path, final: Path, marker: str) -> Path:
    """Move the finished directory `tmp` to `final` in one rename. `marker`, a file written last, tells a
    finished directory from an interrupted one: a finished `final` from another process is kept (and `tmp`
    removed), an unfinished one is replaced."""
    try:
        os.replace(tmp, final)
    except OSError:  # `final` exists and is not empty
        if not (final / marker).is_file():
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_atomic(path: str | Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) so that readers and crashes see the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left behind when the write or the rename failed


def checkpoint_dirs(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every `checkpoint-N` directory in `run_dir`, in step order (complete or not)."""
    d = Path(run_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), c) for c in d.iterdir() if (m := CHECKPOINT_RE.fullmatch(c.name)) and c.is_dir()]
    return sorted(found)


def read_run_config(run_dir: str | Path) -> dict | None:
    """The run_config.json of `run_dir`, or None when there is none or it is unreadable (logged)."""
    path = Path(run_dir) / RUN_CONFIG
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        logger.warning("ignoring unreadable %s", path)
        return None
    return data if isinstance(data, dict) else None


def find_run(model_dir: str | Path) -> tuple[Path, dict] | None:
    """(run directory, its run_config.json) of the run a `final/` or `checkpoint-N/` directory (or the run
    itself) belongs to, or None."""
    d = Path(model_dir).expanduser().resolve()
    for cand in (d, d.parent):
        found = read_run_config(cand)
        if found is not None:
            return cand, found
    return None


def find_run_config(model_dir: str | Path) -> dict | None:
    """The run_config.json of the run a `final/` or `checkpoint-N/` directory (or the run itself) belongs to."""
    found = find_run(model_dir)
    return found[1] if found else None


def holds_a_run(run_dir: str | Path) -> bool:
    """True when `run_dir` holds a run that got somewhere: a checkpoint, final/, or a logged step. A run that
    stopped before its first step leaves only its run_config.json and an empty log: nothing to keep."""
    d = Path(run_dir)
    if not (d / RUN_CONFIG).is_file():
        return False
    if checkpoint_dirs(d) or (d / FINAL).is_dir():
        return True
    try:
        return bool(json.loads((d / TRAIN_LOG).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def is_demo_run(run_dir: str | Path) -> bool:
    """True when `run_dir` holds the built-in demo, which `--demo` may replace without asking: a `--demo` run of
    its own tiny base model (RUN_DIR/base_model) on the built-in arithmetic task. A `--demo` run of a model or
    dataset of the user's (--model_id X.gguf) is a real run: replacing it takes --overwrite_output_dir."""
    args = (read_run_config(run_dir) or {}).get("args")
    if not (isinstance(args, dict) and args.get("demo") is True):
        return False
    model, dataset = args.get("model_id"), args.get("dataset_id")
    if not (isinstance(model, str) and isinstance(dataset, str) and dataset.startswith("arithmetic")):
        return False
    try:
        return Path(model).name == BASE_MODEL and Path(model).parent.resolve() == Path(run_dir).resolve()
    except (OSError, RuntimeError, ValueError):
        return False


def clear_run_dir(out: str | Path) -> list[str]:
    """Remove the outputs of an earlier run in `out`: only names this tool writes, never a user's own files.
    Returns the names removed (directories with a trailing /), sorted, for the line that says so."""
    removed = []
    for child in sorted(Path(out).iterdir()):
        if child.is_dir() and (CHECKPOINT_RE.fullmatch(child.name) or child.name in (FINAL, TENSORBOARD_DIR,
                                                                                      STAGING, "best")):
            shutil.rmtree(child)
            removed.append(child.name + "/")
        elif child.is_file() and child.name in RUN_FILES:
            child.unlink()
            removed.append(child.name)
    return removed
        # base_model/ stays: the demo's tiny base is rebuilt identically
