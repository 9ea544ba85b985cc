"""User rewards that go wrong mid-run, for tests/test_robustness.py: each behaves (the toy digit share) on the
pre-training check and until step 3, then returns something that is not a reward, or raises.

    python main.py --demo --reward_funcs tests/bad_rewards.py:returns_inf
"""

FROM_STEP = 3


def digit_share(completions, **kwargs) -> list[float]:
    """As tests/toy_rewards.py's: the share of a completion's characters that are digits."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [sum(ch in "0123456789" for ch in t) / max(len(t), 1) for t in texts]


def _from_step_3(completions, trainer_state, value):
    out = digit_share(completions)
    if trainer_state is not None and trainer_state.global_step + 1 >= FROM_STEP:
        out[0] = value() if callable(value) else value
    return out


def returns_inf(completions, trainer_state=None, **kwargs):
    return _from_step_3(completions, trainer_state, float("inf"))


def returns_nan(completions, trainer_state=None, **kwargs):
    return _from_step_3(completions, trainer_state, float("nan"))


def returns_1e308(completions, trainer_state=None, **kwargs):  # finite in Python, inf in TRL's float32
    return _from_step_3(completions, trainer_state, 1e308)


def returns_text(completions, trainer_state=None, **kwargs):
    return _from_step_3(completions, trainer_state, "0.5")


def huge(completions, trainer_state=None, **kwargs):  # fits float32; two of them summed do not
    return _from_step_3(completions, trainer_state, 3e38)


def raises(completions, trainer_state=None, **kwargs):
    def fail():
        raise KeyError("answer_text")

    return _from_step_3(completions, trainer_state, fail)


def raises_at_step_1(completions, trainer_state=None, **kwargs):
    if trainer_state is not None:
        raise RuntimeError("cannot reach the grading server")
    return digit_share(completions)


def exits_at_step_1(completions, trainer_state=None, **kwargs):  # sys.exit(0) once made the run exit 0, silently
    if trainer_state is not None:
        raise SystemExit(0)
    return digit_share(completions)


def exits_at_step_3(completions, trainer_state=None, **kwargs):
    def leave():
        raise SystemExit(3)

    return _from_step_3(completions, trainer_state, leave)


def exits_in_the_check(completions, **kwargs):
    raise SystemExit(3)


class _Abort(BaseException):
    """Neither an Exception nor the user's Ctrl-C."""


def aborts_at_step_1(completions, trainer_state=None, **kwargs):
    if trainer_state is not None:
        raise _Abort("gave up")
    return digit_share(completions)


def edits_its_columns(completions, answer=None, prompts=None, **kwargs):
    """Grades, then 'cleans up' by editing the lists it was given in place."""
    out = digit_share(completions)
    if answer is not None:
        answer[:] = ["0"] * len(answer)
    if prompts is not None:
        for p in prompts:
            if isinstance(p, list):
                p.clear()
        prompts.clear()
    return out
