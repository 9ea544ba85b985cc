"""Grader speed and worst case: this project's `accuracy` reward against TRL's `accuracy_reward`, one run.

    python bench/grader.py                 # ~1 min on a 2-core box
    python bench/grader.py --n 500         # quicker

Prints completions per second for short "The answer is \\boxed{N}." completions and for realistic GSM8K and MATH-500 completions (built from the real reference
solutions in ../shared/data when present, else synthetic arithmetic), for both graders side by side, the
ratio, and how often they disagree; then the time of every input of `tests/hostile_inputs.py` on this grader, on the
main thread and on a worker thread, the worst, and how many were credited (all are wrong answers). Half of the realistic completions carry a wrong final answer, so both branches are timed.

Left out on purpose: TRL on the hostile set (one input there hangs math-verify for ever, Math-Verify issue
65), GPU anything, and a warm-up-free cold start (the math-verify child is started first, as
`check_reward_funcs` does before training; its cold start costs ~1 s once).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from grpo_math.grading.answers import normalize_gold
from grpo_math.grading.equivalence import clear_caches
from grpo_math.grading.worker import shared_worker
from grpo_math.rewards import REWARD_FUNCS

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def hostile_cases() -> list:
    """tests/hostile_inputs.py's cases, loaded from its path (the tests own that table; no sys.path edit)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "hostile_inputs.py"
    spec = importlib.util.spec_from_file_location("hostile_inputs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.hostile_cases()


def _completion(reasoning: str, answer: str) -> list[dict]:
    text = f"<think>\n{reasoning.strip()}\n</think>\n<answer>\n\\boxed{{{answer}}}\n</answer>"
    return [{"role": "assistant", "content": text}]


def simple_set(n: int, rng: random.Random) -> tuple[list, list]:
    """(completions, golds): one short sentence and a boxed integer, right half the time."""
    golds = [str(rng.randint(-999, 99_999)) for _ in range(n)]
    comps = [[{"role": "assistant", "content": f"The answer is \\boxed{{{g if k % 2 == 0 else int(g) + 1}}}."}]
             for k, g in enumerate(golds)]
    return comps, golds


def gsm8k_set(n: int, rng: random.Random) -> tuple[list, list]:
    """(completions, golds): GSM8K rationales as the thinking, the gold (or gold + 1) boxed."""
    path = DATA / "gsm8k" / "test.jsonl"
    if path.exists():
        rows = [json.loads(line) for line in path.open()]
    else:  # synthetic stand-in so the bench runs without the data
        rows = [{"answer": f"{a} + {b} = {a + b}\n#### {a + b}"}
                for a, b in ((rng.randint(1, 999), rng.randint(1, 999)) for _ in range(n))]
    comps, golds = [], []
    for k in range(n):
        row = rows[k % len(rows)]
        gold = normalize_gold(row["answer"])
        reasoning = re.sub(r"<<[^>]*>>", "", row["answer"].split("####")[0])
        given = gold if k % 2 == 0 else str(int(gold) + 1)
        comps.append(_completion(reasoning, given))
        golds.append(gold)
    return comps, golds


def math_set(n: int, rng: random.Random) -> tuple[list, list]:
    """(completions, golds): MATH-500 solutions as the thinking, the gold (or a wrong answer) boxed."""
    path = DATA / "math500" / "test.jsonl"
    if not path.exists():
        return gsm8k_set(n, rng)
    rows = [json.loads(line) for line in path.open()]
    comps, golds = [], []
    for k in range(n):
        row = rows[k % len(rows)]
        wrong = rows[(k * 7 + 3) % len(rows)]["answer"]
        comps.append(_completion(row["solution"], row["answer"] if k % 2 == 0 else wrong))
        golds.append(row["answer"])
    return comps, golds


def throughput(fn, comps: list, golds: list, key: str) -> tuple[float, list]:
    """Completions per second, one reward call per completion (as many small calls as TRL makes)."""
    clear_caches()  # no verdict carried over from an earlier pass
    t0 = time.perf_counter()
    out = [fn([c], **{key: [g]})[0] for c, g in zip(comps, golds)]
    return len(comps) / (time.perf_counter() - t0), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="realistic completions per set (default 2000)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    rng = random.Random(0)
    ours = REWARD_FUNCS["accuracy"]
    try:
        from trl.rewards import accuracy_reward as trl_reward
    except ImportError:
        trl_reward = None
    shared_worker().warm_up()

    print(f"{'set':<8}{'grader':<26}{'completions/s':>14}{'mean reward':>13}")
    sets = (("simple", simple_set(args.n, rng)), ("GSM8K", gsm8k_set(args.n, rng)), ("MATH", math_set(args.n // 4, rng)))
    for name, (comps, golds) in sets:
        ours(comps[:50], answer=golds[:50])  # first-call costs (regex compile) out of the timing
        rate, ours_out = throughput(ours, comps, golds, "answer")
        print(f"{name:<8}{'reward.accuracy':<26}{rate:>14,.0f}{sum(ours_out) / len(ours_out):>13.3f}")
        if trl_reward is not None:
            # TRL's parser needs delimiters around a bare gold (`x^3+3x-6` alone parses to nothing)
            trl_rate, trl_out = throughput(trl_reward, comps, [f"\\boxed{{{g}}}" for g in golds], "solution")
            scored = [x for x in trl_out if x is not None]
            disagree = sum(a != b for a, b in zip(ours_out, trl_out))
            print(f"{name:<8}{'trl accuracy_reward':<26}{trl_rate:>14,.0f}{sum(scored) / max(1, len(scored)):>13.3f}"
                  f"   ratio {rate / trl_rate:.1f}x, {disagree} disagreements")

    def timed(case: tuple[str, str, str]) -> tuple[float, float | None]:
        t0 = time.perf_counter()
        got = ours([case[1]], answer=[case[2]])[0]
        return (time.perf_counter() - t0) * 1000, got

    cases = hostile_cases()
    clear_caches()
    main_thread = [timed(c) for c in cases]
    clear_caches()
    with ThreadPoolExecutor(max_workers=1) as pool:  # where TRL may call rewards: no signal timeouts there
        worker_thread = list(pool.map(timed, cases))
    print(f"\n{'hostile input':<36}{'ms':>9}{'ms (thread)':>13}  reward  gold")
    for (name, _, gold), (ms, got), (tms, tgot) in zip(cases, main_thread, worker_thread):
        print(f"{name:<36}{ms:>9.1f}{tms:>13.1f}  {got!s:<6}  {gold[:24]}")
    worst = max(ms for ms, _ in main_thread + worker_thread)
    credited = sum(got != 0.0 for _, got in main_thread + worker_thread)
    print(f"worst hostile completion: {worst:.0f} ms over {len(cases)} inputs x 2 threads; credited: {credited}")


if __name__ == "__main__":
    main()
