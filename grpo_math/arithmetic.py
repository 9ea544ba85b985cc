"""The built-in offline task: seeded one-sentence arithmetic word problems, GSM8K-shaped, split by question hash.

    from grpo_math.arithmetic import arithmetic_split
    rows = arithmetic_split("test", seed=0)      # [{"question", "answer", "solution"}, ...]

`--dataset_id arithmetic` loads it (data.py), `--demo` trains on it, and the tiny model's tokenizer is trained on
its phrasing. Left out on purpose: anything a small model cannot learn in minutes (large numbers, long chains).
"""
from __future__ import annotations

import random
import zlib

ARITHMETIC_SIZES = {"train": 5000, "test": 500}  # plenty for --demo; test is kept small so eval stays quick

_NAMES = ("Ana", "Ben", "Chen", "Dara", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kemal", "Lin")
_THINGS = ("apples", "books", "coins", "pens", "stamps", "shells", "cards", "marbles", "eggs", "stickers")
_QUESTIONS = {
    "add": ("{n} has {a} {t} and gets {b} more. How many {t} does {n} have now?",
            "A box holds {a} {t} and {n} adds {b}. How many {t} are in the box?"),
    "sub": ("{n} has {a} {t} and gives away {b}. How many {t} are left?",
            "There were {a} {t} and {n} used {b}. How many {t} remain?"),
    "mul": ("{n} buys {a} bags with {b} {t} in each. How many {t} is that?",
            "There are {a} rows of {b} {t}. How many {t} are there in all?"),
    "two_step": ("{n} has {a} {t}, gets {b} more, then loses {c}. How many {t} are left?",
                 "A jar has {a} {t}; {n} adds {b} and takes out {c}. How many {t} are in it?"),
}


def _one_problem(rng: random.Random) -> dict:
    kind = rng.choice(tuple(_QUESTIONS))
    a, b, c = rng.randint(2, 50), rng.randint(2, 50), 0
    if kind == "add":
        steps = [(f"{a} + {b}", a + b)]
    elif kind == "sub":
        a, b = max(a, b) + 1, min(a, b)  # answers stay positive
        steps = [(f"{a} - {b}", a - b)]
    elif kind == "mul":
        a, b = rng.randint(2, 12), rng.randint(2, 12)  # times-table sized, so answers stay small
        steps = [(f"{a} * {b}", a * b)]
    else:
        c = rng.randint(1, a + b - 1)
        steps = [(f"{a} + {b}", a + b), (f"{a + b} - {c}", a + b - c)]
    question = rng.choice(_QUESTIONS[kind]).format(n=rng.choice(_NAMES), t=rng.choice(_THINGS), a=a, b=b, c=c)
    answer = str(steps[-1][1])
    solution = "\n".join(f"{expr} = {value}" for expr, value in steps) + f"\n#### {answer}"  # GSM8K style
    return {"question": question, "answer": answer, "solution": solution}


def arithmetic_problems(n: int, seed: int = 0) -> list[dict]:
    """The first `n` raw `{"question", "answer", "solution"}` rows of the seeded generator (both splits mixed)."""
    rng = random.Random(seed)
    return [_one_problem(rng) for _ in range(n)]


def arithmetic_split(split: str, seed: int) -> list[dict]:
    # The split is a hash of the question text, not the seed: train and test can never share a question,
    # whatever seeds they were drawn with.
    rng, rows, seen = random.Random(seed), [], set()
    while len(rows) < ARITHMETIC_SIZES[split]:
        row = _one_problem(rng)
        is_test = zlib.crc32(row["question"].encode()) % 10 == 0
        if is_test == (split == "test") and row["question"] not in seen:
            seen.add(row["question"])
            rows.append(row)
    return rows

