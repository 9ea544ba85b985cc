"""Does the in-process algebra earn its lines? math-verify child calls, speed and peer agreement, with and without it.

    python bench/algebra.py              # ~10 s on a 2-core box: 1,000 MATH-500 completions and the peer set, twice
    python bench/algebra.py --n 4000

The completions are bench/grader.py's realistic MATH-500 set (the reference solution as the thinking, the gold
or another problem's answer boxed, half each; synthetic arithmetic without ../shared/data). "Without" replaces
grading/_algebra.py's two entry points (same_value, same_relation) by "undecided", so everything they decide
falls to the next step, as if the module were gone. The figures are in grading/_algebra.py's docstring.
Left out on purpose: timing the child's cold start (it is warmed first, as training does).
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import grader  # bench/grader.py, beside this file

from grpo_math.grading import equivalence, worker
from grpo_math.rewards import REWARD_FUNCS

PEERS = Path(__file__).resolve().parents[1] / "tests" / "peer_cases.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="MATH-500 completions (default 1000)")
    n = ap.parse_args().n
    calls = 0
    real_call = worker.SymbolicWorker.equivalent

    def counted(self, *args, **kwargs):
        nonlocal calls
        calls += 1
        return real_call(self, *args, **kwargs)

    worker.SymbolicWorker.equivalent = counted
    same_value, same_relation = equivalence.same_value, equivalence.same_relation
    comps, golds = grader.math_set(n, random.Random(0))
    peers = [json.loads(line) for line in PEERS.open()]
    accuracy = REWARD_FUNCS["accuracy"]
    worker.shared_worker().warm_up()
    for algebra in (True, False):
        equivalence.same_value = same_value if algebra else (lambda *a, **k: None)
        equivalence.same_relation = same_relation if algebra else (lambda *a, **k: None)
        equivalence.clear_caches()
        calls, t0 = 0, time.perf_counter()
        credited = sum(accuracy([c], answer=[g])[0] == 1.0 for c, g in zip(comps, golds))
        speed, math_calls = n / (time.perf_counter() - t0), calls
        equivalence.clear_caches()
        calls = 0
        agree = sum(accuracy([[{"role": "assistant", "content": p["completion"]}]], answer=[p["gold"]])[0]
                    == p["verdict"] for p in peers)
        print(f"algebra {'on ' if algebra else 'off'}: MATH-500 {n} completions: {1000 * math_calls / n:.0f} child "
              f"calls per 1,000, {credited} credited, {speed:.0f} completions/s; peer set {agree}/{len(peers)} "
              f"agree, {calls} child calls")


if __name__ == "__main__":
    main()
