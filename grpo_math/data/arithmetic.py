"""The built-in offline task: seeded one-sentence arithmetic word problems, GSM8K-shaped, in levels.

    --dataset_id arithmetic        # level 2: numbers to 50, add, subtract, times tables, two steps
    --dataset_id arithmetic:1      # level 1: one-digit add and subtract (answers 1 to 18); what --demo learns
    --dataset_id arithmetic:3      # level 3: numbers to 999, two steps, times tables to 20

    from grpo_math.data.arithmetic import arithmetic_split
    rows = arithmetic_split("test", seed=0, level=1)      # [{"question", "answer", "solution"}, ...]

Each level has a train split of 5,000 and a test split of 500 problems. The split is a hash of the question
text, not the seed, so train and test never share a question whatever seeds drew them; they do share the
underlying facts at level 1 (there are only 81 one-digit sums), as GSM8K's splits share arithmetic: a held-out
problem is a new question, not a new fact. `solution` is GSM8K-style (`7 + 5 = 12\\n#### 12`); `target` is the
completion a supervised warm start is trained on (warm_start.py). `--demo` trains on level 1; the tiny model's
tokenizer is trained on this phrasing. Left out on purpose: anything a 1M-parameter model cannot learn in
seconds at level 1, and words for numbers.
"""
from __future__ import annotations

import random
import re
import zlib

ARITHMETIC_SIZES = {"train": 5000, "test": 500}  # plenty for --demo; test is kept small so eval stays quick
LEVELS = (1, 2, 3)
DEFAULT_LEVEL = 2  # plain `arithmetic`, as before levels existed: the same problems, draw for draw
_ID_RE = re.compile(r"arithmetic(?::([0-9]+))?")

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


def parse_level(dataset_id: str) -> int | None:
    """The level of a built-in dataset id (`arithmetic` is level 2, `arithmetic:1` level 1), else None.

    >>> parse_level("arithmetic"), parse_level("arithmetic:1"), parse_level("openai/gsm8k")
    (2, 1, None)
    """
    m = _ID_RE.fullmatch(dataset_id)
    if m is None:
        return None
    return int(m.group(1)) if m.group(1) else DEFAULT_LEVEL


def _steps(kind: str, rng: random.Random, level: int) -> tuple[list[tuple[str, int]], tuple[int, int, int]]:
    """The worked steps [(expression, value)] of one problem and its numbers (a, b, c)."""
    if level == 1:
        if kind == "add":
            a, b = rng.randint(1, 9), rng.randint(1, 9)
            return [(f"{a} + {b}", a + b)], (a, b, 0)
        a = rng.randint(2, 18)
        b = rng.randint(1, min(9, a - 1))  # one-digit subtrahend, positive answer
        return [(f"{a} - {b}", a - b)], (a, b, 0)
    top, table = (50, 12) if level == 2 else (999, 20)
    a, b, c = rng.randint(2, top), rng.randint(2, top), 0
    if kind == "add":
        steps = [(f"{a} + {b}", a + b)]
    elif kind == "sub":
        a, b = max(a, b) + 1, min(a, b)  # answers stay positive
        steps = [(f"{a} - {b}", a - b)]
    elif kind == "mul":
        a, b = rng.randint(2, table), rng.randint(2, table)  # times-table sized, so answers stay small
        steps = [(f"{a} * {b}", a * b)]
    else:
        c = rng.randint(1, a + b - 1)
        steps = [(f"{a} + {b}", a + b), (f"{a + b} - {c}", a + b - c)]
    return steps, (a, b, c)


def _one_problem(rng: random.Random, level: int = DEFAULT_LEVEL) -> dict:
    kind = rng.choice(("add", "sub") if level == 1 else tuple(_QUESTIONS))
    steps, (a, b, c) = _steps(kind, rng, level)
    question = rng.choice(_QUESTIONS[kind]).format(n=rng.choice(_NAMES), t=rng.choice(_THINGS), a=a, b=b, c=c)
    answer = str(steps[-1][1])
    work = ", ".join(f"{expr} = {value}" for expr, value in steps)
    return {"question": question, "answer": answer,
            "solution": "\n".join(f"{expr} = {value}" for expr, value in steps) + f"\n#### {answer}",  # GSM8K style
            "target": f"<think>{work}</think><answer>\\boxed{{{answer}}}</answer>"}


def arithmetic_problems(n: int, seed: int = 0, level: int = DEFAULT_LEVEL) -> list[dict]:
    """The first `n` raw rows of the seeded generator (both splits mixed)."""
    rng = random.Random(seed)
    return [_one_problem(rng, level) for _ in range(n)]


def arithmetic_split(split: str, seed: int, level: int = DEFAULT_LEVEL) -> list[dict]:
    """The `split` ("train" or "test") of a level: ARITHMETIC_SIZES[split] distinct questions."""
    if level not in LEVELS:
        raise ValueError(f"arithmetic:{level}: no such level; levels are {', '.join(map(str, LEVELS))}")
    rng, rows, seen = random.Random(seed), [], set()
    while len(rows) < ARITHMETIC_SIZES[split]:
        row = _one_problem(rng, level)
        is_test = zlib.crc32(row["question"].encode()) % 10 == 0
        if is_test == (split == "test") and row["question"] not in seen:
            seen.add(row["question"])
            rows.append(row)
    return rows
