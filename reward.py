"""The reward functions and their registry; `python reward.py` runs the self-test table.

    python reward.py          # self-test table (reward, input, gold, expected, got, pass); exit 1 on a failure

    from reward import load_reward_funcs
    funcs = load_reward_funcs(["format", "accuracy"], max_completion_length=256)

Every reward is `fn(completions, answer, **kwargs) -> list[float | None]`, TRL's contract: one value per
completion (strings or chat messages), None only where the gold answer cannot be parsed; `__name__` is the
metric key (`rewards/<name>/mean`). No reward raises on model output or takes unbounded time.

| name | rule |
|---|---|
| `format` | `<think>`/`<answer>` both present as pairs, in order: 0.5; and `\\boxed{}` inside `<answer>`: 1.0; else 0 |
| `accuracy` | 1.0 when the extracted final answer equals the gold answer (numbers, fractions, LaTeX), else 0 |
| `r1_zero` | 1.0 only when the format is right and the answer is right, else 0 (no format credit for a wrong answer: it invites hacking) |
| `strict_format` | the whole completion is `<think>\\n...\\n</think>\\n<answer>\\n...\\n</answer>` |
| `tag_count` | 0.25 per tag that occurs once and in its place |
| `digit` | the `<answer>` content (its `\\boxed{}` if any) is a plain number or fraction |
| `overlong` | DAPO's soft penalty: 0, falling to -1 over the last quarter of --max_completion_length |

Conventions (choices, not accidents; the last column says where other graders choose otherwise):

| topic | this grader | others |
|---|---|---|
| thinking | the answer is read after the last `</think>`, never inside thinking | |
| where | `<answer>` block, else the boxes, else the last anchored phrase (`#### N`, `The answer is N`, `Answer: N`, `Final Answer: The final answer is N. I hope it is correct.`, `答案是 N`); free text with neither gives no answer | Math-Verify takes free text's last number |
| hedges | two different boxes earn nothing; boxes joined only by connectives (`\\boxed{2} and \\boxed{3}`) are one list answer | Math-Verify takes the last box |
| lists | `, ` always separates (`4, 500` is not 4500); a list never matches a single gold; a bare list or a set of solutions matches in any order, a tuple or an interval in order, brackets included | MATH's is_equiv: lists in order |
| rounding | an exact gold needs an exact answer: 0.333 is not 1/3, a decimal never equals an irrational | Math-Verify, Qwen-Math round |
| chains | `x = 5+5+1 = 7 = 11` earns nothing for 11 (a false step) | Math-Verify takes the last side |
| labels | `(p,q)=(3,2)`, `m:n=3:5`, `AB=4`, `f(x)=1`: the label is dropped; `x=2` does not answer `y=2` | |
| relations | `x >= 3` is `3 \\le x` (algebra, up to a positive factor); an interval answers a gold inequality, not the reverse | |
| numbers | `1,080` and `1 080` are thousands; `25%` answers 25 or 0.25; `\\text{13}` is a word | |

A user's own reward: `--reward_funcs my_rewards.py:my_fn` or `package.module:my_fn`.
The functions live in `grpo_math/rewards.py`, extraction and grading in `grpo_math/grading/answers.py` (shared with
eval.py, so training and eval agree on "correct"); this file is their public face and their self-test.
"""
from __future__ import annotations

import logging
import sys
from typing import Any

from grpo_math.grading.answers import (answers_match, completion_text, extract_answer, format_score,  # noqa: F401
                               grade, last_boxed, normalize_gold)
from grpo_math.rewards import (REWARD_FUNCS, RewardError, accuracy_reward, check_reward_funcs,  # noqa: F401
                               digit_reward, format_reward, load_reward_funcs, make_overlong_reward,
                               r1_zero_reward, strict_format_reward, tag_count_reward, weighted_sum)

# ----------------------------------------------------------------------------------------------------------
# Self-test: python reward.py
# ----------------------------------------------------------------------------------------------------------
_T, _A = "<think>\nreasoning\n</think>\n", "<answer>\n{}\n</answer>"
R1 = "A conversation between User and Assistant. ... User: What is 70+2?\nAssistant: <think>"
SELF_TEST_CASES: list[tuple[str, str, str, Any, float | None]] = [
    # (reward, completion, gold, prompt, expected)
    ("accuracy", _T + _A.format("\\boxed{72}"), "72", None, 1.0),
    ("accuracy", _T + _A.format("\\boxed{1,080}"), "Step...\n#### 1,080", None, 1.0),
    ("accuracy", _T + _A.format("\\boxed{\\$18.00}"), "18", None, 1.0),
    ("accuracy", _T + _A.format("\\boxed{25\\%}"), "25", None, 1.0),
    ("accuracy", _T + _A.format("\\boxed{\u221272}"), "-72", None, 1.0),
    ("accuracy", _T + _A.format("\\boxed{x = 5}"), "5", None, 1.0),
    ("accuracy", _T + _A.format("\\boxed{0.75}"), "\\frac{3}{4}", None, 1.0),
    ("accuracy", _T + _A.format("\\boxed{\\frac43}"), "\\frac{4}{3}", None, 1.0),
    ("accuracy", _T + _A.format("\\boxed{11\\sqrt2}"), "11\\sqrt{2}", None, 1.0),
    ("accuracy", _T + _A.format("\\boxed{(3, \\frac{\\pi}{2})}"), "\\left( 3, \\frac{\\pi}{2} \\right)", None, 1.0),
    ("accuracy", "Work...\n#### 72", "72", None, 1.0),
    ("accuracy", "所以答案是 72。", "72", None, 1.0),
    ("accuracy", "The answer is 72 apples.", "72", None, 1.0),
    ("accuracy", "\n2+70=72\n</think> <answer>72</answer>", "72", R1, 1.0),
    ("accuracy", "<think>it is \\boxed{72}</think>", "72", None, 0.0),
    ("accuracy", "<think>so \\boxed{72}", "72", None, 0.0),
    ("accuracy", _T + _A.format("3, 4, 5"), "4", None, 0.0),
    ("accuracy", "The answer is 3 or 4.", "4", None, 0.0),
    ("accuracy", _T + _A.format("\\boxed{3} or \\boxed{4}"), "4", None, 0.0),
    ("accuracy", _T + _A.format("\\boxed{0.333}"), "\\frac{1}{3}", None, 0.0),
    ("accuracy", _T + _A.format("\\boxed{\\frac{10^{30}+1}{10^{30}}}"), "1", None, 0.0),
    ("accuracy", _T + _A.format("\\boxed{2^{2^{2^{2^{2}}}}}"), "4", None, 0.0),
    ("accuracy", _T + _A.format("\\boxed{72}"), "", None, None),
    ("format", _T + _A.format("\\boxed{72}"), "72", None, 1.0),
    ("format", _T + _A.format("72"), "72", None, 0.5),
    ("format", "\\boxed{72}", "72", None, 0.0),
    ("format", "\nreasoning\n</think>\n<answer>\n\\boxed{72}\n</answer>", "72", R1, 1.0),
    ("r1_zero", " 70+2 </think> <answer>72</answer>", "72", R1, 1.0),
    ("r1_zero", " 70+2 </think> <answer>73</answer>", "72", R1, 0.0),
    ("r1_zero", "<think>x</think><answer>72</answer>", "72", None, 0.0),
    ("strict_format", _T + _A.format("72"), "72", None, 1.0),
    ("strict_format", "<think>x</think><answer>72</answer>", "72", None, 0.0),
    ("tag_count", _T + _A.format("72"), "72", None, 1.0),
    ("tag_count", "<think>\nx\n</think>\n", "72", None, 0.5),
    ("digit", _T + _A.format("\\boxed{-1,080.5}"), "72", None, 1.0),
    ("digit", _T + _A.format("seventy-two"), "72", None, 0.0),
    ("overlong", "word " * 100, "72", None, 0.0),
    ("overlong", "word " * 256, "72", None, -1.0),
]


def self_test() -> int:
    """Print the table of SELF_TEST_CASES and return the number of failures."""
    failures = 0
    print(f"{'reward':<14}{'input':<46}{'gold':<22}{'expected':>9}{'got':>7}  pass")
    for name, completion, gold, prompt, expected in SELF_TEST_CASES:
        got = REWARD_FUNCS[name]([completion], answer=[gold], prompts=[prompt])[0]
        ok = got == expected
        failures += not ok
        shown = repr(completion)[1:-1].replace("\\\\", "\\")
        shown = shown if len(shown) <= 44 else "..." + shown[-41:]  # the answer is at the end
        print(f"{name:<14}{shown:<46}{repr(gold)[1:-1].replace(chr(92) * 2, chr(92))[:20]:<22}{str(expected):>9}{str(got):>7}  "
              f"{'ok' if ok else 'FAIL'}")
    print(f"{len(SELF_TEST_CASES) - failures}/{len(SELF_TEST_CASES)} passed")
    return failures


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(1 if self_test() else 0)
