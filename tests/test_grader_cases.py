"""Issue 11's kinds, one table each: what the grader credits, and what it must not, through the accuracy reward.

    pytest tests/test_grader_cases.py            # ~3 s; the load test (slow) ~30 s more

Each row is (completion, gold, expected reward) with a comment naming its edge; `box(x)` is a well-formed
completion boxing x. The same path serves training and eval (answers.extract_answer + answers.answers_match).
The last test runs every table here and the peer set 5 times while busy processes load every core, and
requires the same verdicts each time: the verdict must not depend on the clock. Left out: the peer set's
agreement (test_peer_cases.py), the hostile set and the gold self-checks (test_reward.py).
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from grpo_math.grading.equivalence import clear_caches
from grpo_math.grading.worker import shared_worker
from grpo_math.rewards import REWARD_FUNCS

THINK = "<think>\nwork\n</think>\n"


def box(x: str) -> str:
    return f"{THINK}<answer>\n\\boxed{{{x}}}\n</answer>"


def ans(x: str) -> str:
    return f"{THINK}<answer>\n{x}\n</answer>"


def reward(completion: str, gold: str) -> float | None:
    return REWARD_FUNCS["accuracy"]([completion], answer=[gold])[0]


@pytest.fixture(scope="module", autouse=True)
def warm_worker():
    assert shared_worker().warm_up(), "math-verify child did not start"


LISTS = [  # a comma followed by a space separates items; a list never matches one number
    (box("4, 500"), "4500", 0.0),                                  # two numbers, not 4500
    (box("7, 250"), "7250", 0.0),                                  # same, another split
    (box("10200"), "10, 200", 0.0),                                # one number against a gold list
    (box("32, 349"), "32349", 0.0),                                # Math-Verify's own case
    (box("32,\\! 349"), "32349", 1.0),                             # MATH's thousands separator `,\!`
    (box("14{,}916"), "14916", 1.0),                               # MATH's `{,}` separator
    (box("1,080"), "1080", 1.0),                                   # a comma with no space: thousands
    (box("10, 200"), "10, 200", 1.0),                              # the list itself
    (box("200, 10"), "10, 200", 1.0),                              # a bare list of solutions: any order
]

MINERVA = [  # `Final Answer: The final answer is X. I hope it is correct.` and other anchored sentences
    ("Work.\nFinal Answer: The final answer is $42$. I hope it is correct.", "42", 1.0),  # Minerva few-shot
    ("Final Answer: The final answer is $\\frac{3}{4}$. I hope it is correct.", "0.75", 1.0),  # LaTeX in it
    ("Final Answer: The final answer is $41$. I hope it is correct.", "42", 0.0),  # a wrong one stays wrong
    ("Final Answer: The largest $n$ is 34.", "34", 1.0),           # `The X is N`
    ("Final Answer: The volume of $ABCD$ is 120. I hope it is correct.", "120", 1.0),  # math in the subject
    ("Final Answer: Jane started 3 hours ago.", "3", 1.0),         # one number in the sentence
    ("Final Answer: maybe 3 hours, or 4.", "3", 0.0),              # a hedge in the sentence: no number taken
    ("The answer is\n\\[\n\\frac{1}{2}\n\\]", "\\frac12", 1.0),    # display math on the next lines
    ("The answer is \\[ \n 9 \n \\]", "9", 1.0),                   # display math opened on the same line
    ("The answer is $$\n2\\sqrt{3}\n$$ units.", "2\\sqrt3", 1.0),  # `$$` display
    ("The answer is $ \n 9 \n $", "9", 0.0),                       # inline math cannot span lines
    ("The answer is 72. I hope it is correct.", "72", 1.0),        # the sentence ends the answer
    ("Thus $x <= 2$ is our answer.", "x \\le 2", 1.0),              # the phrase after the answer
    ("So $5$ is not our answer.", "5", 0.0),                       # ... but not its negation
]

NUMINA = [  # NuminaMath-style golds: labelled, joined, several boxes
    (box("(1, 4)"), "(a,b)=(1,4)", 1.0),                           # labelled tuple
    (box("3:5"), "m:n=3:5", 1.0),                                  # labelled ratio
    (box("2"), "|PQ|=2", 1.0),                                     # labelled length
    (box("4, 5"), "AB=4, CD=5", 1.0),                              # two labelled values
    (box("5, 4"), "AB=4, CD=5", 1.0),                              # ... in any order
    (box("4"), "AB=4, CD=5", 0.0),                                 # half the answer
    (box("2, 5"), "2 or 5", 1.0),                                  # `or` joins a gold list
    (box("6, 8"), "6 \\text{ and } 8", 1.0),                       # `\text{ and }` too
    (box("-1, 2"), "-1;2", 1.0),                                   # `;` too
    (box("(5,2), (7,2)"), "p=5,q=2;p=7,q=2", 1.0),                # `;` between solutions of `,` parts
    (box("1, -2"), "so $\\boxed{1}$ and $\\boxed{-2}$.", 1.0),     # several boxes in a gold solution
    (box("1"), "so $\\boxed{1}$ and $\\boxed{-2}$.", 0.0),         # one of them is not the answer
    (box("-5, \\frac{14}{3}"), "x = -5,\\ p = \\frac{14}{3}", 1.0),  # per-item labels
    (box("x=2"), "y=2", 0.0),                                      # two different unknowns
    ("\\boxed{k = 45} \\quad \\text{and} \\quad \\boxed{n = 2}", "k = 45, n = 2", 1.0),  # joined boxes
    ("\\boxed{(2, 2)} and \\boxed{(6, 2)}", "(2, 2), (6, 2)", 1.0),  # joined tuples
]

RELATIONS = [  # relations, intervals, equations of lines
    (box("x \\geq 5"), "x >= 5", 1.0),                             # ASCII >= is \geq
    (box("x <= 2"), "x \\le 2", 1.0),                              # and the other way
    (box("x \\ge 3"), "3 \\leq x", 1.0),                           # flipped sides
    (box("-x > -1"), "x < 1", 1.0),                                # multiplied by -1
    (box("x > -1"), "x < 1", 0.0),                                 # a different inequality
    (box("x \\le 5"), "x \\ge 5", 0.0),                            # the opposite one
    (box("[-2, 7]"), "-2 \\le x \\le 7", 1.0),                     # an interval for its inequality
    (box("(-2, 7]"), "-2 \\le x \\le 7", 0.0),                     # ... brackets included
    (box("x \\in [-2,7]"), "[-2, 7]", 1.0),                        # `x \in` is dropped
    (box("[5, \\infty)"), "x \\ge 5", 1.0),                        # a one-sided interval
    (box("y=-\\frac{1}{2}x+\\frac{3}{4}"), "2x+4y-3=0", 1.0),      # a line in another arrangement
    (box("-34x-45y+20z-100=0"), "34x+45y-20z+100=0", 1.0),         # a plane times -1
    (box("x^2/16 + y^2/12 = 1/4"), "x^2/4 + y^2/3 = 1", 1.0),      # an ellipse scaled
    (box("x + y - z + 2 = 0"), "5x - 7y + 11z + 4 = 0", 0.0),      # a different plane
    (box("x = 4 = 5"), "5", 0.0),                                  # a chain with a false step
]

NUMBERS = [  # number formats
    (box("1 500"), "1500", 1.0),                                   # a space as thousands separator
    (box("1\u2009500"), "1500", 1.0),                              # a thin space
    (box("1\\,500"), "1500", 1.0),                                 # LaTeX's thin space
    (box("3 4"), "34", 0.0),                                       # but not two numbers
    (box("12.50€"), "12.5", 1.0),                                  # currency after the number
    (box("3.5 m²"), "3.5", 1.0),                                   # a unit with a power
    (box("28 pct"), "28\\%", 1.0),                                 # percent words
    (box("7²"), "72", 0.0),                                        # a superscript is not a digit
    (box("1,22"), "1.22", 1.0),                                    # a decimal comma against a decimal
    (box("1,22"), "122", 0.0),                                     # ... but it is no thousands separator
]

STRUCTURES = [  # matrices, sets, tuples
    (box("\\begin{pmatrix}0 & 0 \\\\ 0 & 0\\end{pmatrix}"), "\\begin{bmatrix}0 & 0 \\\\ 0 & 0\\end{bmatrix}", 1.0),
    (box("\\left[\\begin{array}{cc}1 & 2 \\\\ 3 & 4\\end{array}\\right]"), "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}",
     1.0),                                                         # an array in brackets
    (box("\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}"), "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", 0.0),  # one entry
    (box("\\begin{pmatrix}\\frac12\\\\ 2\\end{pmatrix}"), "\\begin{pmatrix}0.5\\\\2\\end{pmatrix}", 1.0),  # values
    (box("{1,3}"), "(1,3)", 1.0),                                  # `{1,3}` renders as 1,3: the solutions
    (box("{1,3}"), "(3,1)", 0.0),                                  # ... against an ordered pair
    (box("\\{1, 3\\}"), "1, 3", 1.0),                              # a set for a bare list
    (box("(3, 4)"), "(4, 3)", 0.0),                                # tuples are ordered
    (box("\\{-2021, 2021\\}"), "\\pm 2021", 1.0),                   # ± is its two values
]

SYMBOLIC = [  # decided exactly in-process (_algebra.py); the child is not needed for any of these
    (box("\\frac{\\sqrt{3}}{2}"), "\\frac12\\sqrt3", 1.0),         # radicals
    (box("\\sqrt{128}"), "8\\sqrt{2}", 1.0),                       # a radical simplified
    (box("(x+1)^2"), "x^2+2x+1", 1.0),                             # polynomial expansion
    (box("\\frac{x}{7}+\\frac{2}{7}"), "\\frac{x+2}{7}", 1.0),     # rational functions
    (box("\\frac{1}{3x^{2/3}}"), "\\frac{1}{3\\sqrt[3]{x}^2}", 1.0),  # rational exponents
    (box("\\sec^2 y"), "\\tan^2 y+1", 1.0),                        # sin^2 + cos^2 = 1
    (box("\\cos\\frac{\\pi}{3}"), "\\frac12", 1.0),                # exact values at multiples of pi/6
    (box("3\\ln 2"), "\\ln 8", 1.0),                               # logs of primes
    (box("10^{\\frac{\\sqrt{13}-5}{6}}"), "10^{\\frac{-5+\\sqrt{13}}{6}}", 1.0),  # equal symbolic exponents
    (box("\\sqrt{2}+10^{-99}"), "\\sqrt2", 0.0),                   # a tiny difference, exactly
    (box("1.41421356237"), "\\sqrt{2}", 0.0),                      # a decimal is not an irrational
    (box("\\frac{1+\\sqrt{5}}{2}"), "2", 0.0),                     # near 1.6, not 2
    (box("1 + \\frac{1}{e}"), "1 - \\frac{1}{e}", 0.0),            # Math-Verify issue 14
    (box("y^2"), "x^2", 0.0),                                      # different variables
    (box("2i"), "\\sqrt{-4}", 1.0),                                # the principal square root
    (box("-8i"), "(-4)^{3/2}", 1.0),                               # (2i)^3
    (box("8i"), "(-4)^{3/2}", 0.0),
    (box("-\\frac{i}{2}"), "(-4)^{-1/2}", 1.0),                    # 1/(2i)
    (box("\\frac{i}{2}"), "(-4)^{-1/2}", 0.0),
    (box("i\\sqrt2"), "\\sqrt[4]{-4}", 0.0),                       # the fourth root is 1+i
    (box("(\\cos\\frac{\\pi}{3}, 1)"), "(\\frac12, 1)", 1.0),         # exact values inside a tuple too
    (box("\\sqrt2\\cdot\\sqrt2, 1"), "2, 1", 1.0),                    # and inside a list
]

HEDGES = [  # never credited, whatever the joining rules
    ("\\boxed{3} or \\boxed{4}", "4", 0.0),                        # `or` between boxes: a hedge
    ("\\boxed{3}, \\boxed{4}", "4", 0.0),                          # a joined list against one value
    ("\\boxed{3} and then, after checking, \\boxed{4}", "4", 0.0),  # prose between boxes: a hedge
    (box("3 or 4"), "4", 0.0),                                     # `or` inside one box
    ("The answer is 3, 4, or 5.", "3", 0.0),                       # an anchored list
    (box("4 \\pm 1"), "4", 0.0),                                   # ± as a hedge
    (box("x = 3 = 4"), "4", 0.0),                                  # an equation chain
]

TABLES = {"lists": LISTS, "minerva": MINERVA, "numina": NUMINA, "relations": RELATIONS, "numbers": NUMBERS,
          "structures": STRUCTURES, "symbolic": SYMBOLIC, "hedges": HEDGES}
ALL = [(kind, *row) for kind, rows in TABLES.items() for row in rows]


@pytest.mark.parametrize("kind, completion, gold, expected", ALL, ids=[f"{k}-{i}" for i, (k, *_) in enumerate(ALL)])
def test_case(kind, completion, gold, expected):
    assert reward(completion, gold) == expected


def test_symbolic_table_needs_no_child(monkeypatch):
    """The SYMBOLIC rows are decided by exact arithmetic in this process: no clock can change them."""
    from grpo_math.grading.worker import SymbolicWorker
    calls = []
    monkeypatch.setattr(SymbolicWorker, "equivalent", lambda self, *a, **k: calls.append(a))
    clear_caches()
    assert [reward(c, g) for c, g, _ in SYMBOLIC] == [e for _, _, e in SYMBOLIC]
    assert calls == []


BUSY = "import time\nend = time.time() + 120\nwhile time.time() < end:\n    pass\n"  # a bounded busy loop


@pytest.mark.slow
def test_verdicts_are_identical_under_full_cpu_load():
    """Every table here and the peer set, 5 times, caches cleared, while busy processes outnumber the cores."""
    from test_peer_cases import load_peer_cases  # pytest puts tests/ on the import path
    rows = [(c, g) for _, c, g, _ in ALL] + [("\\boxed{2\\sin x\\cos x}", "\\sin 2x")]  # one child case too
    rows += [(c["completion"], c["gold"]) for c in load_peer_cases()]
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range((os.cpu_count() or 2) + 1)]
    try:
        time.sleep(0.5)  # let the load build up
        runs = []
        for _ in range(5):
            clear_caches()
            runs.append([reward(c, g) for c, g in rows])
    finally:
        for p in busy:
            p.kill()
            p.wait()
    assert all(run == runs[0] for run in runs[1:])
    assert runs[0][:len(ALL)] == [e for *_, e in ALL]
