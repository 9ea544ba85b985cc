"""TRL's own `accuracy_reward` (math-verify) on this project's data contract, for `bench/learning.py --arm stock`.

    python main.py ... --reward_funcs bench/trl_accuracy.py:accuracy

TRL's reward reads the gold answer from a `solution` column; this project's `solution` is a worked solution
("15 - 1 = 14\\n#### 14") and its `answer` column is the bare answer, so the answer goes in boxed, the form
TRL's parser reads first. Nothing else changes: TRL's parsing, verification and its None for an unparseable gold.
"""

from __future__ import annotations

from trl.rewards import accuracy_reward


def accuracy(completions: list, answer: list[str], **kwargs) -> list[float | None]:
    """1.0 when math-verify finds the completion's answer equal to the gold `answer`, else 0.0 (TRL's rules)."""
    kwargs.pop("solution", None)
    return accuracy_reward(completions, solution=[f"\\boxed{{{a}}}" for a in answer], **kwargs)
