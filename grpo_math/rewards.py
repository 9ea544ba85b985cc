"""The reward functions, their registry, and loading a user's own: `fn(completions, answer, **kwargs) -> list`.

    funcs = load_reward_funcs(["format", "accuracy"], max_completion_length=256)
    funcs[1](["<think>..</think><answer>\\boxed{72}</answer>"], answer=["72"])     # [1.0]

Every reward follows TRL's contract: one float (or None, where the gold answer cannot be parsed) per
completion; `completions` are strings or chat messages; `__name__` is the metric key (`rewards/<name>/mean`).
None of them raises on model output or takes unbounded time: they read completions through `answers.py`.
`load_reward_funcs` is called once per run (training.checks.resolve, from the resolved run
settings), so a user's `file.py:fn` module runs once.
The table of rules is in the top-level `reward.py`, with the self-test (`python reward.py`).
Left out on purpose: partial credit for a near answer, reward for reasoning quality, a language-model judge.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import numbers
import re
import sys
from pathlib import Path
from typing import Any, Callable

from grpo_math.grading.answers import (MAX_COMPLETION_CHARS, TAGS, answer_block, answers_match, clean_answer,
                               completion_text, extract_answer, final_region, format_ok, format_score, last_boxed,
                               normalize_gold, prefills_think, tag_positions, with_prefill)
from grpo_math.config import DEFAULT_MAX_COMPLETION_LENGTH
from grpo_math.grading.worker import shared_worker

logger = logging.getLogger(__name__)


class RewardError(ValueError):
    """A reward that cannot be used: unknown name, missing file or function, bad smoke-call result."""


class RewardFailure(RuntimeError):
    """A reward that raised, or returned something that is not a reward, during training; one line."""


FLOAT32_MAX = 3.4028234663852886e38  # TRL holds rewards in float32: past this a finite float becomes inf


def values_problem(values: Any, n: int, where: str = "") -> str | None:
    """What is wrong with a reward function's return value for `n` completions, or None; `where` (" at step 3")
    goes after what it returned.

    One value per completion, each a finite number in float32's range, or None; a bool is not a number
    (a reward returning True almost always meant something else).
    """
    if not isinstance(values, (list, tuple)) or len(values) != n:
        got = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        return (f"returned {got} values for {n} completions{where}; it must return a list with one float (or None) "
                "per completion")
    for i, v in enumerate(values):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):  # numpy floats are Real
            return f"returned {v!r} (completion {i}){where}; rewards must be finite numbers or None"
        if abs(v) > FLOAT32_MAX:
            return f"returned {v!r} (completion {i}){where}, which overflows float32 (TRL's reward type) to inf"
    return None



def fresh_copy(value: Any) -> Any:
    """`value` with every list, tuple and dict in it copied (strings and numbers are immutable; anything else,
    such as TRL's trainer state or a logging callback, is passed as is): what each reward is called with, so a
    reward that edits its `answer` list or clears `prompts` cannot change what the next reward sees."""
    if isinstance(value, list):
        return [fresh_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: fresh_copy(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(fresh_copy(v) for v in value)
    return value


def describe_failure(e: BaseException) -> str:
    """What a reward did, in words: "raised KeyError: 'x'", or "called sys.exit(3)" (a reward's exit is not the
    run's: it must not end a run silently, let alone with exit code 0)."""
    if isinstance(e, SystemExit):
        return f"called sys.exit({'' if e.code is None else repr(e.code)[:100]})"
    detail = " ".join(str(e).split())[:200]
    return f"raised {type(e).__name__}: {detail}"


def _per_item(values: Any, n: int, name: str) -> list:
    """Broadcast a keyword column to one value per completion (a single string or chat prompt repeats)."""
    if values is None:
        return [None] * n
    if isinstance(values, (str, dict)):
        return [values] * n
    values = list(values)
    if values and all(isinstance(v, dict) for v in values):  # one chat conversation, not a batch
        return [values] * n
    if len(values) == n:
        return values
    if len(values) == 1:
        return values * n
    raise ValueError(f"{name}: got {len(values)} values for {n} completions")

# ----------------------------------------------------------------------------------------------------------
# Rewards: fn(completions, answer=None, prompts=None, completion_ids=None, **kwargs) -> list[float | None]
# ----------------------------------------------------------------------------------------------------------
def _golds(answer: Any, kwargs: dict, n: int, name: str) -> list:
    gold = answer if answer is not None else kwargs.get("solution")  # TRL's own datasets call it `solution`
    if gold is None:
        raise RewardError(f"reward {name!r} needs the dataset's `answer` column, and none was passed")
    return _per_item(gold, n, "answer")


def _texts(completions: list, prompts: Any) -> list[str]:
    """Each completion as text, with `<think>` put back in front where the prompt itself opened it."""
    ps = _per_item(prompts, len(completions), "prompts")
    return [with_prefill(completion_text(c), p) for c, p in zip(completions, ps)]


def _named(name: str) -> Callable[[Callable], Callable]:
    def wrap(fn: Callable) -> Callable:
        fn.__name__ = fn.__qualname__ = name  # the metric key: rewards/<name>/mean
        return fn
    return wrap


@_named("format")
def format_reward(completions: list, answer: Any = None, prompts: Any = None, completion_ids: Any = None,
                  **kwargs: Any) -> list[float | None]:
    """One `<think>` pair then one `<answer>` pair: 0.5; with a `\\boxed{}` inside `<answer>`: 1.0; else 0.

    >>> format_reward(["<think>x</think><answer>\\\\boxed{2}</answer>", "2"])
    [1.0, 0.0]
    """
    ps = _per_item(prompts, len(completions), "prompts")
    return [format_score(c, p) for c, p in zip(completions, ps)]


@_named("accuracy")
def accuracy_reward(completions: list, answer: Any = None, prompts: Any = None, completion_ids: Any = None,
                    **kwargs: Any) -> list[float | None]:
    """1.0 when the extracted final answer equals the gold, else 0.0; None where the gold is unusable.

    >>> accuracy_reward(["<think>..</think><answer>\\\\boxed{72}</answer>", "<think>72"], answer=["72", "72"])
    [1.0, 0.0]
    """
    golds = _golds(answer, kwargs, len(completions), "accuracy")
    ps = _per_item(prompts, len(completions), "prompts")
    preds = [extract_answer(c, prompt=p) for c, p in zip(completions, ps)]
    normal = [normalize_gold(g) for g in golds]  # once per gold; the dataset's golds were normalised at load
    out: list[float | None] = [None if g is None else float(answers_match(x, g, normalized=True))
                               for x, g in zip(preds, normal)]
    log_extra = kwargs.get("log_extra")
    if callable(log_extra):  # TRL's completions table gets what the grader read
        log_extra("prediction", ["" if x is None else x for x in preds])
    return out


@_named("r1_zero")
def r1_zero_reward(completions: list, answer: Any = None, prompts: Any = None, completion_ids: Any = None,
                   **kwargs: Any) -> list[float | None]:
    """1.0 only when the format is right and the answer is right (no format credit for a wrong answer: it
    invites hacking). Format right is `answers.format_ok`, as in eval's format rate."""
    golds = _golds(answer, kwargs, len(completions), "r1_zero")
    ps = _per_item(prompts, len(completions), "prompts")
    out: list[float | None] = []
    for c, g, p in zip(completions, map(normalize_gold, golds), ps):  # each gold normalised once
        if g is None:
            out.append(None)
            continue
        out.append(float(format_ok(c, p) and answers_match(extract_answer(c, prompt=p), g, normalized=True)))
    return out


_STRICT_RE = re.compile(r"<think>\n[\s\S]*\n</think>\n<answer>\n[\s\S]*\n</answer>\n?")


@_named("strict_format")
def strict_format_reward(completions: list, answer: Any = None, prompts: Any = None, completion_ids: Any = None,
                         **kwargs: Any) -> list[float | None]:
    """1.0 when the whole completion is `<think>\\n...\\n</think>\\n<answer>\\n...\\n</answer>`, else 0."""
    out = []
    for t in _texts(completions, prompts):
        ok = len(t) <= MAX_COMPLETION_CHARS and tag_positions(t) is not None and _STRICT_RE.fullmatch(t)
        out.append(1.0 if ok else 0.0)
    return out


@_named("tag_count")
def tag_count_reward(completions: list, answer: Any = None, prompts: Any = None, completion_ids: Any = None,
                     **kwargs: Any) -> list[float | None]:
    """0.25 per tag that occurs once and in its place: `<think>` first, `</think>` after it, `<answer>`
    after that, `</answer>` after `<answer>` and last (only whitespace after it)."""
    out = []
    for t in _texts(completions, prompts):
        t = t[:MAX_COMPLETION_CHARS]
        score, prev = 0.0, -1
        for k, tag in enumerate(TAGS):
            at = t.find(tag)
            placed = t.count(tag) == 1 and at > prev
            if k == 0:
                placed = placed and not t[:at].strip()
            if k == 3:
                placed = placed and not t[at + len(tag):].strip()
            if placed:
                score += 0.25
                prev = at
        out.append(score)
    return out


_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+|[0-9]{1,3}(?:,[0-9]{3})+)(?:\.[0-9]+)?|[+-]?\.[0-9]+"
                        r"|[+-]?[0-9]+/[0-9]+|[+-]?\\[dt]?frac\{[0-9]+\}\{[0-9]+\}")


@_named("digit")
def digit_reward(completions: list, answer: Any = None, prompts: Any = None, completion_ids: Any = None,
                 **kwargs: Any) -> list[float | None]:
    """1.0 when the `<answer>` content (its `\\boxed{}` if any) is a plain number or fraction, else 0."""
    out = []
    for t in _texts(completions, prompts):
        region = final_region(t) if len(t) <= MAX_COMPLETION_CHARS else None
        block = answer_block(region) if region is not None else None
        if block is not None:
            block = clean_answer(last_boxed(block) or block).replace("\u2212", "-")
        out.append(1.0 if block is not None and _NUMBER_RE.fullmatch(block) else 0.0)
    return out


class OverlongReward:
    """DAPO's soft overlong penalty: 0 up to `max_completion_length - buffer` tokens, then falling linearly
    to -1 at `max_completion_length` (and -1 beyond). `buffer` defaults to a quarter of the length.

    Length is `len(completion_ids[i])` when TRL passes the ids, else the whitespace-separated word count
    (an underestimate of tokens, so the penalty starts late rather than early). A class rather than a closure,
    so a run's reward pickles (multiprocessing, accelerate) and is built from the resolved config, not inside it.

    >>> OverlongReward(100, 20)(["w " * 50, "w " * 90, "w " * 120])
    [0.0, -0.5, -1.0]
    """

    __name__ = "overlong"  # TRL logs a reward under its function's __name__

    def __init__(self, max_completion_length: int, buffer: int | None = None) -> None:
        if not isinstance(max_completion_length, int) or max_completion_length <= 0:
            raise RewardError(f"overlong: max_completion_length must be a positive int, got {max_completion_length!r}")
        buf = max(1, max_completion_length // 4) if buffer is None else int(buffer)
        if not 0 < buf <= max_completion_length:
            raise RewardError(f"overlong: buffer {buffer!r} must be in 1..{max_completion_length}")
        self.max_completion_length, self.buffer, self.start = max_completion_length, buf, max_completion_length - buf

    def __call__(self, completions: list, answer: Any = None, prompts: Any = None, completion_ids: Any = None,
                 **kwargs: Any) -> list[float | None]:
        if completion_ids is not None:
            lengths = [len(ids) for ids in completion_ids]
        else:
            lengths = [len(completion_text(c).split()) for c in completions]
        top, start, buf = self.max_completion_length, self.start, self.buffer
        return [0.0 if n <= start else -1.0 if n >= top else (start - n) / buf for n in lengths]

    def __repr__(self) -> str:
        return f"OverlongReward({self.max_completion_length}, buffer={self.buffer})"


make_overlong_reward = OverlongReward  # the name tests, reward.py and users' code know


REWARD_FUNCS: dict[str, Callable] = {
    "format": format_reward,
    "accuracy": accuracy_reward,
    "r1_zero": r1_zero_reward,
    "strict_format": strict_format_reward,
    "tag_count": tag_count_reward,
    "digit": digit_reward,
    # At the default length, for direct calls and the self-test; a run's `overlong` is always built by
    # `load_reward_funcs` from its own --max_completion_length.
    "overlong": make_overlong_reward(DEFAULT_MAX_COMPLETION_LENGTH),
}


def weighted_sum(values: list[float | None], weights: list[float]) -> float | None:
    """The total reward of one completion as TRL computes it (a nansum): None terms are skipped, and a
    completion every reward returned None for gets None.

    >>> weighted_sum([1.0, None, 0.5], [1.0, 2.0, 2.0])
    2.0
    """
    terms = [w * v for w, v in zip(weights, values) if v is not None]
    return sum(terms) if terms else None


# ----------------------------------------------------------------------------------------------------------
# Choosing and checking rewards
# ----------------------------------------------------------------------------------------------------------
def _valid_names() -> str:
    return ", ".join(REWARD_FUNCS) + ", or path/to/file.py:fn, or package.module:fn"


def _load_user_reward(spec: str) -> Callable:
    where, _, fn_name = spec.rpartition(":")
    if not where or not fn_name.isidentifier():
        raise RewardError(f"--reward_funcs {spec!r}: expected path/to/file.py:fn or package.module:fn")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser()
        if not path.is_file():
            raise RewardError(f"--reward_funcs {spec!r}: file {str(path)!r} not found")
        mod_name = f"user_reward_{path.stem}_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module  # dataclasses and pickling look modules up here
        try:
            module_spec.loader.exec_module(module)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # the user's file (a sys.exit() too): which one and why, then stop
            raise RewardError(f"--reward_funcs {spec!r}: running {str(path)!r} {describe_failure(e)}") from e
    else:
        try:
            module = importlib.import_module(where)
        except Exception as e:  # ImportError, or an error inside the user's module
            raise RewardError(f"--reward_funcs {spec!r}: cannot import module {where!r} "
                              f"({type(e).__name__}: {e})") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise RewardError(f"--reward_funcs {spec!r}: {where!r} has no function {fn_name!r}")
    return fn


def load_reward_funcs(names: list[str], *, max_completion_length: int) -> list[Callable]:
    """Reward functions for `--reward_funcs` names: registry names or a user's `file.py:fn` / `pkg.mod:fn`.

    `overlong` is built for `max_completion_length`, the run's own. A user's file is executed by each call:
    a run calls this once, when its config is resolved.

    >>> [f.__name__ for f in load_reward_funcs(["format", "accuracy"], max_completion_length=256)]
    ['format', 'accuracy']
    """
    if isinstance(names, str):
        names = [names]
    if not names:
        raise RewardError(f"no reward functions chosen; valid: {_valid_names()}")
    funcs = []
    for name in names:
        if name == "overlong":
            funcs.append(make_overlong_reward(max_completion_length))
        elif name in REWARD_FUNCS:
            funcs.append(REWARD_FUNCS[name])
        elif ":" in name:
            funcs.append(_load_user_reward(name))
        else:
            raise RewardError(f"unknown reward {name!r}; valid: {_valid_names()}")
    return funcs


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


def check_reward_funcs(funcs: list[Callable], *, gold: str = "72", prompt: Any = None,
                       conversational: bool = True) -> None:
    """Call every reward once, before training, on two perfect completions built from `gold`.

    Raises RewardError naming the reward that raised, returned the wrong number of values, or returned a
    value that is not a finite number or None. Also starts the math-verify child so step 0 does not wait.
    """
    if prompt is None:
        prompt = [{"role": "user", "content": "What is 70 + 2?"}] if conversational else \
            "User: What is 70 + 2?\nAssistant: <think>"
    g = normalize_gold(gold) or gold
    body = f"\nThe sum is {g}.\n</think>\n<answer>\n\\boxed{{{g}}}\n</answer>"
    text = body if prefills_think(prompt) else "<think>" + body
    completion = [{"role": "assistant", "content": text}] if conversational else text
    n = 2
    kwargs = dict(prompts=[prompt] * n, completions=[completion] * n, answer=[gold] * n,
                  completion_ids=[list(range(8))] * n, trainer_state=None, log_extra=_noop, log_metric=_noop)
    shared_worker().warm_up()
    for fn in funcs:
        name = getattr(fn, "__name__", repr(fn))
        try:  # its own copies: a reward that edits them must not make the next one fail (and be blamed)
            values = fn(**fresh_copy(kwargs))
        except KeyboardInterrupt:  # the user's own Ctrl-C
            raise
        except BaseException as e:  # sys.exit() too: named, then training stops
            raise RewardError(f"reward {name!r} {describe_failure(e)} on a perfect completion (the pre-training "
                              "check, step 0)") from e
        problem = values_problem(values, n, " on a perfect completion")
        if problem:
            raise RewardError(f"reward {name!r} {problem}")
        if all(v is None for v in values):
            logger.warning("reward %s returned None for a perfect completion with gold %r: it will skip every "
                           "such row (is the gold answer usable?)", name, gold)
        logger.info("reward %s on a perfect completion: %s", name, values)


