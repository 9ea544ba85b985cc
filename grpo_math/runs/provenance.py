"""Where a number came from: package versions and the git commit, recorded in run_config.json and eval results.

Shared by train.py and eval.py so that a training run and its evaluation describe their environment the same way.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from grpo_math.config import RunConfig
from grpo_math.runs.rundir import RUN_CONFIG, write_atomic

PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "math-verify")


def package_versions() -> dict[str, str | None]:
    """Python and the versions of the packages that decide a run's numbers (None where not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def git_commit() -> str | None:
    """The commit of this checkout, or None outside git."""
    try:
        here = Path(__file__).resolve().parent
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        return res.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_run_config(config: RunConfig, extra: dict) -> Path:
    """run_config.json: resolved arguments, package versions, device, git commit, and `extra` (the dtype's name,
    the data's counts)."""
    record = {
        "args": config.to_record(),
        "device": config.placement.device,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **extra,
    }
    path = Path(config.output_dir) / RUN_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=2, default=str) + "\n")
    return path
