"""A toy reward the tiny random model can raise quickly, used by the learning test (and an example of a user reward).

    python main.py --demo --reward_funcs tests/toy_rewards.py:digit_share
"""


def digit_share(completions, **kwargs) -> list[float]:
    """Share of the completion's characters that are ASCII digits, in [0, 1]."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch in "0123456789" for ch in t) / max(len(t), 1) for t in texts]
