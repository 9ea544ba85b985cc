"""The memory estimate (grpo_math/training/memory.py) next to the measured peak, for one training step on CPU.

    python bench/memory_check.py --demo                                   # the demo's settings
    python bench/memory_check.py --config configs/smollm2-135m-arithmetic.yaml --model_id PATH.gguf

Runs main.py's flow for one step (--max_steps 1, no in-run eval) with the given flags in this process and
prints the estimate and the measured growth of the process' peak resident memory from just before the model
loads to the end of the step (the CPU analogue of torch.cuda.max_memory_allocated; tracemalloc does not see
torch's allocations). tests/test_memory.py calls `measure`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _peak_rss() -> int:
    """The process' peak resident memory in bytes: VmHWM where there is /proc (a fresh process's own, unlike
    ru_maxrss, which keeps the high-water mark of the process it was forked from across exec), else ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) * 1024
    except (OSError, StopIteration, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def measure(argv: list[str]) -> dict:
    """{"estimate": bytes, "measured": bytes, "parts": {...}} for one training step with main.py flags `argv`."""
    import psutil

    import main
    import train
    from grpo_math.training import memory
    from grpo_math.training import trainer  # noqa: F401 - TRL, PEFT and the trainer imported before the
    # measurement starts: their import memory is the same whatever the model, and not what the estimate counts

    seen: dict = {}
    original_check, original_load = memory.check, train.load_model

    def check(config, shape, prompt_len):
        est = original_check(config, shape, prompt_len)
        seen["estimate"], seen["parts"], seen["prompt_len"] = est.peak, est.parts, prompt_len
        return est

    def load_model(*args, **kwargs):
        seen["before"] = psutil.Process().memory_info().rss
        return original_load(*args, **kwargs)

    memory.check, train.load_model = check, load_model
    try:
        with tempfile.TemporaryDirectory() as out:
            code = main.main([*argv, "--max_steps", "1", "--eval_every", "0", "--no-eval_before_train",
                              "--report_to", "none", "--output_dir", str(Path(out) / "run"),
                              "--save_steps", "1000"])
    finally:
        memory.check, train.load_model = original_check, original_load
    if code:
        raise RuntimeError(f"main.py exited {code}")
    peak = _peak_rss()
    return {"estimate": seen["estimate"], "measured": peak - seen["before"], "parts": seen["parts"],
            "prompt_len": seen["prompt_len"]}


if __name__ == "__main__":
    if importlib.util.find_spec("main") is None:  # run as a script: the checkout's main.py is not importable
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        sys.exit(subprocess.run([sys.executable, __file__, *sys.argv[1:]], env=env).returncode)
    r = measure(sys.argv[1:])
    print(json.dumps({k: (round(v / 2**20, 1) if isinstance(v, float | int) and k != "prompt_len" else v)
                      for k, v in r.items() if k != "parts"}), "MiB")
    print({k: round(v / 2**20, 1) for k, v in r["parts"].items()}, "MiB")
    print(f"estimate / measured = {r['estimate'] / r['measured']:.2f}")
