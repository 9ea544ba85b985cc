"""Where a number came from: package versions and the git commit, recorded in run_config.json and eval results.

Shared by train.py and eval.py so that a training run and its evaluation describe their environment the same way.
"""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

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
