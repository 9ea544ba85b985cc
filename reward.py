"""Answer extraction and the reward registry: what "correct" means for training and eval, in one place.

    python reward.py          # self-test table (reward, input, gold, expected, got, pass); exit 1 on a failure

Used by train.py (`load_reward_funcs`, `check_reward_funcs`), eval.py (`grade`) and data_utils.py
(`last_boxed`, `normalize_gold`); equivalence.py decides whether two answers are equal, grader_worker.py runs
math-verify in a killable child for the few symbolic cases.

Extraction (`extract_answer`). Text inside `<think>` never counts: the answer is looked for after the last
`</think>`; an unclosed `<think>` means no answer (a prompt ending in `<think>`, as `r1_zero` does, counts as
the opening tag). In that final part: the last `<answer>...</answer>`, else the last `\\boxed{}`/`\\fbox{}`
(brace-matched), else an anchored phrase (`#### N`, `The answer is N`, `Answer: N`, `答案是 N`). Two different
boxed values in one final part are a hedge and give no answer (only the last would count anyway; refusing
keeps "box every candidate" from ever paying). `lenient=True` (eval only, reported apart) also falls back to
the last number.

The time bound: every step here is a linear scan of a completion capped at MAX_COMPLETION_CHARS; equivalence
is pure Python except math-verify, which runs in a child process under the parent's clock (see
equivalence.py and grader_worker.py), so the bound holds on any thread. Measured with bench/grader.py on a
shared, busy 2-core box: ~47,000 simple or GSM8K completions/s, ~100x TRL's `accuracy_reward` (~470/s there),
and ~10x on MATH-500 completions (symbolic answers go to the child); worst of 27 hostile inputs 0.35-0.55 s
(a symbolic comparison cut off at SYMBOLIC_TIMEOUT_S = 0.5 s), most under 1 ms, on the main thread and on a
worker thread alike.

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
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from equivalence import MAX_ANSWER_CHARS, canon, equal
from grader_worker import shared_worker

logger = logging.getLogger(__name__)

MAX_COMPLETION_CHARS = 200_000  # ~50k tokens; a longer completion gets no answer rather than a slow scan
DEFAULT_MAX_COMPLETION_LENGTH = 256  # only for REWARD_FUNCS["overlong"]; train.py passes the real value


class RewardError(ValueError):
    """A reward that cannot be used: unknown name, missing file or function, bad smoke-call result."""


# ----------------------------------------------------------------------------------------------------------
# Inputs: completions and prompts as strings or chat messages
# ----------------------------------------------------------------------------------------------------------
def _message_text(m: Any) -> str:
    c = m.get("content") if isinstance(m, dict) else m
    if isinstance(c, str):
        return c
    if isinstance(c, list):  # multimodal content parts
        return "".join(p.get("text", "") for p in c if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def completion_text(completion: Any) -> str:
    """The text of a completion given as a string, one message, or a list of chat messages."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)):
        return "\n".join(_message_text(m) for m in completion)
    return _message_text(completion)


def _prefills_think(prompt: Any) -> bool:
    """True when the prompt ends in `<think>`, so the completion starts inside the thinking block."""
    if isinstance(prompt, str):
        return prompt.rstrip().endswith("<think>")
    if isinstance(prompt, (list, tuple)) and prompt and isinstance(prompt[-1], dict) \
            and prompt[-1].get("role") == "assistant":  # a continued assistant turn, not a user message
        return _message_text(prompt[-1]).rstrip().endswith("<think>")
    return False


def _with_prefill(text: str, prompt: Any) -> str:
    if _prefills_think(prompt):
        close = text.find("</think>")
        if "<think>" not in (text if close < 0 else text[:close]):
            return "<think>" + text
    return text


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
# Extraction
# ----------------------------------------------------------------------------------------------------------
_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BRACE_RE = re.compile(r"\\.|[{}]", re.DOTALL)  # `\{`, `\}` (and `\\`) are consumed whole: not grouping


def _boxes(text: str) -> list[str]:
    """Contents of every closed `\\boxed{..}` / `\\fbox{..}` / `\\boxed N`, in order. One linear brace pass."""
    starts = [m.end() for m in _BOX_RE.finditer(text)]
    if not starts:
        return []
    close_of: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_RE.finditer(text, starts[0]):
        c = m.group()
        if c == "{":
            stack.append(m.start())
        elif c == "}" and stack:
            close_of[stack.pop()] = m.start()
    out = []
    for j in starts:
        k = j
        while k < len(text) and text[k] == " ":
            k += 1
        if k < len(text) and text[k] == "{":
            end = close_of.get(k)
            if end is not None:
                out.append(text[k + 1:end].strip())
        elif k > j:  # `\boxed 5`: one token, up to whitespace or `$`
            tok = re.match(r"[^\s$]+", text[k:k + MAX_ANSWER_CHARS])
            if tok:
                out.append(tok.group().rstrip(".,;"))
    return out


def last_boxed(text: str) -> str | None:
    """The brace-matched content of the last `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5`), None if none.

    >>> last_boxed(r"so \\boxed{\\frac{1}{2}} and")
    '\\\\frac{1}{2}'
    """
    if not isinstance(text, str):
        return None
    boxes = _boxes(text)
    return boxes[-1] if boxes else None


_HEDGE = object()  # sentinel: two different boxed answers


def _final_box(scope: str) -> Any:
    """The boxed answer of a scope: None if none, _HEDGE when it boxes two different values."""
    boxes = [b for b in _boxes(scope) if b]
    if not boxes:
        return None
    distinct = {b.replace(" ", "") for b in boxes}
    # several raw spellings may be one value (`\frac12`, `\frac{1}{2}`); more than 4 spellings is a list
    if len(distinct) > 1 and (len(distinct) > 4 or len({canon(b) for b in distinct}) > 1):
        return _HEDGE
    return boxes[-1]


_GSM_RE = re.compile(r"####\s*([^\n]*)")
_THOUSANDS_RE = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")


def normalize_gold(gold: str) -> str | None:
    """A gold answer in any common shape to its short final answer, None if nothing usable.

    A GSM8K rationale (`... #### 1,080`) gives `1080`; a solution ending in `\\boxed{}` gives the boxed
    content; a short answer comes back stripped.
    """
    return None if gold is None else _normalize_gold(str(gold))


@lru_cache(maxsize=16_384)  # each gold is seen num_generations times per step
def _normalize_gold(gold: str) -> str | None:
    gold = gold.strip()
    if not gold:
        return None
    if "####" in gold:
        ans = _GSM_RE.findall(gold)[-1].strip().rstrip(".")
        return _THOUSANDS_RE.sub("", ans) or None
    if "\\boxed" in gold or "\\fbox" in gold:
        boxed = last_boxed(gold)
        if boxed:
            return boxed
    if len(gold) > MAX_ANSWER_CHARS:
        return None
    return gold


def _final_region(text: str) -> str | None:
    """The part of a completion that may hold the answer: after the last `</think>`; None if thinking is open."""
    close = text.rfind("</think>")
    if close >= 0:
        region = text[close + len("</think>"):]
        return None if "<think>" in region else region
    return None if "<think>" in text else text


def _answer_block(region: str) -> str | None:
    close = region.rfind("</answer>")
    if close < 0:
        return None
    open_ = region.rfind("<answer>", 0, close)
    return None if open_ < 0 else region[open_ + len("<answer>"):close]


_ANCHOR_RE = re.compile(
    r"####[ \t]*(?P<a>[^\n]*)"
    r"|(?:\b(?:final\s+)?answer(?:\s+is|\s*[:=])|(?:最终)?答案\s*(?:是|为|為|:|：))[ \t*:：]*(?P<b>[^\n]*)",
    re.IGNORECASE)
# a sentence ends the phrase; commas and semicolons do not, so `3, 4, or 5` stays a (wrong) list
_SENTENCE_END_RE = re.compile(r"\.(?![0-9])|。|!|\?")


def _clean(ans: str) -> str:
    ans = ans.strip().strip("*").strip()
    for a, b in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if ans.startswith(a) and ans.endswith(b) and len(ans) >= len(a) + len(b):
            ans = ans[len(a):len(ans) - len(b)].strip()
    return ans.rstrip(".").strip()


def _anchored(scope: str) -> str | None:
    last = None
    for last in _ANCHOR_RE.finditer(scope):
        pass
    if last is None:
        return None
    ans = last.group("a") if last.group("a") is not None else last.group("b")
    ans = _SENTENCE_END_RE.split(ans, 1)[0] if last.group("b") is not None else ans
    return _clean(ans) or None


def _from_scope(scope: str, in_block: bool) -> str | None:
    box = _final_box(scope)
    if box is _HEDGE:
        return None
    if box is not None:
        return box
    ans = _anchored(scope)
    if ans is None and in_block:
        ans = _clean(scope) or None
    return ans


def _last_number(region: str) -> str | None:
    nums = re.findall(r"-?[0-9]+(?:,[0-9]{3})*(?:\.[0-9]+)?", region[-MAX_ANSWER_CHARS * 10:])
    return nums[-1].replace(",", "") if nums else None


_TAG_VARIANT_RE = re.compile(r"<\s*(/?)\s*(think|thinking|answer)\s*>", re.IGNORECASE)


def _canonical_tag(m: re.Match) -> str:
    return f"<{m.group(1)}{'answer' if m.group(2).lower() == 'answer' else 'think'}>"


def _canonical_tags(text: str) -> str:
    """`<THINK>`, `< /think >`, `<thinking>` -> `<think>`...: a spelling variant must not hide thinking."""
    return _TAG_VARIANT_RE.sub(_canonical_tag, text)


def extract_answer(text: str, *, lenient: bool = False, prompt: str | None = None) -> str | None:
    """The final answer of a completion (string or chat messages), None if it gives none.

    >>> extract_answer("<think>maybe \\\\boxed{3}</think><answer>\\\\boxed{72}</answer>")
    '72'
    >>> extract_answer("<think>the answer is 72") is None   # unclosed think: no answer
    True
    """
    text = completion_text(text)
    if len(text) > MAX_COMPLETION_CHARS:
        return None
    region = _final_region(_with_prefill(_canonical_tags(text), prompt))
    if region is None:
        return None
    block = _answer_block(region)
    ans = _from_scope(block, True) if block is not None else _from_scope(region, False)
    if ans is None and lenient:
        ans = _last_number(region)
    return ans if ans is None or len(ans) <= MAX_ANSWER_CHARS else None


# ----------------------------------------------------------------------------------------------------------
# Equivalence and grading
# ----------------------------------------------------------------------------------------------------------
def answers_match(pred: str | None, gold: str, *, wait_for_worker: bool = False) -> bool:
    """True when a predicted final answer equals the gold; the gold may be a whole rationale or solution.

    >>> answers_match("1,080", "Total: 1,000 + 80.\\n#### 1080"), answers_match("3 or 4", "4")
    (True, False)

    `wait_for_worker` (eval) waits for a cold math-verify child instead of counting its start-up against the
    per-call time bound; training leaves it False (check_reward_funcs warms the child before step 0).
    """
    g = normalize_gold(gold)
    if g is None or not isinstance(pred, str):
        return False
    return equal(pred, g, wait_for_worker=wait_for_worker)


_TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def _tag_positions(text: str) -> list[int] | None:
    """Positions of the four tags when each occurs exactly once and in order, else None."""
    if any(text.count(t) != 1 for t in _TAGS):
        return None
    pos = [text.find(t) for t in _TAGS]
    return pos if pos == sorted(pos) else None


def format_score(completion: Any, prompt: Any = None) -> float:
    """The `format` reward of one completion: 0.5 for one `<think>` pair then one `<answer>` pair,
    1.0 when the answer block also holds a non-empty `\\boxed{}`, else 0."""
    text = _with_prefill(completion_text(completion), prompt)
    if len(text) > MAX_COMPLETION_CHARS:
        return 0.0
    pos = _tag_positions(text)
    if pos is None:
        return 0.0
    return 1.0 if last_boxed(text[pos[2] + len("<answer>"):pos[3]]) else 0.5


def grade(completion: Any, gold: str, prompt: Any = None, *, lenient: bool = False) -> dict:
    """Everything eval.py records about one completion, by the same rules the rewards use.

    Keys: `prediction`, `correct`, `prediction_lenient`, `correct_lenient` (equal to the strict pair unless
    `lenient=True` and the strict extraction found nothing), `format_score` (the `format` reward),
    `format_ok` (format_score == 1.0; for a prompt ending in `<think>`, the r1_zero rule: both pairs present).
    Waits for a cold math-verify child rather than scoring a symbolic answer wrong for lack of it.
    """
    pred = extract_answer(completion, prompt=prompt)
    correct = answers_match(pred, gold, wait_for_worker=True)
    pred_l, correct_l = pred, correct
    if lenient and pred is None:
        pred_l = extract_answer(completion, prompt=prompt, lenient=True)
        correct_l = answers_match(pred_l, gold, wait_for_worker=True)
    fs = format_score(completion, prompt)
    return {"prediction": pred, "correct": correct, "prediction_lenient": pred_l, "correct_lenient": correct_l,
            "format_score": fs, "format_ok": fs >= 0.5 if _prefills_think(prompt) else fs == 1.0}


# ----------------------------------------------------------------------------------------------------------
# Rewards: fn(completions, answer=None, prompts=None, completion_ids=None, **kwargs) -> list[float | None]
# ----------------------------------------------------------------------------------------------------------
def _golds(answer: Any, kwargs: dict, n: int, name: str) -> list:
    gold = answer if answer is not None else kwargs.get("solution")  # TRL's own datasets call it `solution`
    if gold is None:
        raise RewardError(f"reward {name!r} needs the dataset's `answer` column, and none was passed")
    return _per_item(gold, n, "answer")


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
    out: list[float | None] = [None if normalize_gold(g) is None else float(answers_match(x, g))
                               for x, g in zip(preds, golds)]
    log_extra = kwargs.get("log_extra")
    if callable(log_extra):  # TRL's completions table gets what the grader read
        log_extra("prediction", ["" if x is None else x for x in preds])
    return out


@_named("r1_zero")
def r1_zero_reward(completions: list, answer: Any = None, prompts: Any = None, completion_ids: Any = None,
                   **kwargs: Any) -> list[float | None]:
    """1.0 only when the format is right and the answer is right (no format credit for a wrong answer: it
    invites hacking). Format right is `grade`'s `format_ok`."""
    golds = _golds(answer, kwargs, len(completions), "r1_zero")
    ps = _per_item(prompts, len(completions), "prompts")
    out: list[float | None] = []
    for c, g, p in zip(completions, golds, ps):
        if normalize_gold(g) is None:
            out.append(None)
            continue
        fs = format_score(c, p)
        ok = fs >= 0.5 if _prefills_think(p) else fs == 1.0
        out.append(float(ok and answers_match(extract_answer(c, prompt=p), g)))
    return out


_STRICT_RE = re.compile(r"<think>\n[\s\S]*\n</think>\n<answer>\n[\s\S]*\n</answer>\n?")


@_named("strict_format")
def strict_format_reward(completions: list, answer: Any = None, prompts: Any = None, completion_ids: Any = None,
                         **kwargs: Any) -> list[float | None]:
    """1.0 when the whole completion is `<think>\\n...\\n</think>\\n<answer>\\n...\\n</answer>`, else 0."""
    ps = _per_item(prompts, len(completions), "prompts")
    out = []
    for c, p in zip(completions, ps):
        t = _with_prefill(completion_text(c), p)
        ok = len(t) <= MAX_COMPLETION_CHARS and _tag_positions(t) is not None and _STRICT_RE.fullmatch(t)
        out.append(1.0 if ok else 0.0)
    return out


@_named("tag_count")
def tag_count_reward(completions: list, answer: Any = None, prompts: Any = None, completion_ids: Any = None,
                     **kwargs: Any) -> list[float | None]:
    """0.25 per tag that occurs once and in its place: `<think>` first, `</think>` after it, `<answer>`
    after that, `</answer>` after `<answer>` and last (only whitespace after it)."""
    ps = _per_item(prompts, len(completions), "prompts")
    out = []
    for c, p in zip(completions, ps):
        t = _with_prefill(completion_text(c), p)[:MAX_COMPLETION_CHARS]
        score, prev = 0.0, -1
        for k, tag in enumerate(_TAGS):
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
    ps = _per_item(prompts, len(completions), "prompts")
    out = []
    for c, p in zip(completions, ps):
        t = _with_prefill(completion_text(c), p)
        region = _final_region(t) if len(t) <= MAX_COMPLETION_CHARS else None
        block = _answer_block(region) if region is not None else None
        if block is not None:
            block = _clean(last_boxed(block) or block).replace("\u2212", "-")
        out.append(1.0 if block is not None and _NUMBER_RE.fullmatch(block) else 0.0)
    return out


def make_overlong_reward(max_completion_length: int, buffer: int | None = None) -> Callable:
    """DAPO's soft overlong penalty: 0 up to `max_completion_length - buffer` tokens, then falling linearly
    to -1 at `max_completion_length` (and -1 beyond). `buffer` defaults to a quarter of the length.

    Length is `len(completion_ids[i])` when TRL passes the ids, else the whitespace-separated word count
    (an underestimate of tokens, so the penalty starts late rather than early).

    >>> make_overlong_reward(100, 20)(["w " * 50, "w " * 90, "w " * 120])
    [0.0, -0.5, -1.0]
    """
    if not isinstance(max_completion_length, int) or max_completion_length <= 0:
        raise RewardError(f"overlong: max_completion_length must be a positive int, got {max_completion_length!r}")
    buf = max(1, max_completion_length // 4) if buffer is None else int(buffer)
    if not 0 < buf <= max_completion_length:
        raise RewardError(f"overlong: buffer {buffer!r} must be in 1..{max_completion_length}")
    start = max_completion_length - buf

    @_named("overlong")
    def overlong(completions: list, answer: Any = None, prompts: Any = None, completion_ids: Any = None,
                 **kwargs: Any) -> list[float | None]:
        if completion_ids is not None:
            lengths = [len(ids) for ids in completion_ids]
        else:
            lengths = [len(completion_text(c).split()) for c in completions]
        return [0.0 if n <= start else -1.0 if n >= max_completion_length else (start - n) / buf
                for n in lengths]

    return overlong


REWARD_FUNCS: dict[str, Callable] = {
    "format": format_reward,
    "accuracy": accuracy_reward,
    "r1_zero": r1_zero_reward,
    "strict_format": strict_format_reward,
    "tag_count": tag_count_reward,
    "digit": digit_reward,
    "overlong": make_overlong_reward(DEFAULT_MAX_COMPLETION_LENGTH),
}


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
        except Exception as e:  # noqa: BLE001 - the user's file: report which one and why, then stop
            raise RewardError(f"--reward_funcs {spec!r}: running {str(path)!r} failed: {type(e).__name__}: {e}") from e
    else:
        try:
            module = importlib.import_module(where)
        except Exception as e:  # noqa: BLE001 - ImportError, or an error inside the user's module
            raise RewardError(f"--reward_funcs {spec!r}: cannot import module {where!r} "
                              f"({type(e).__name__}: {e})") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise RewardError(f"--reward_funcs {spec!r}: {where!r} has no function {fn_name!r}")
    return fn


def load_reward_funcs(names: list[str], *, max_completion_length: int | None = None) -> list[Callable]:
    """Reward functions for `--reward_funcs` names: registry names or a user's `file.py:fn` / `pkg.mod:fn`.

    >>> [f.__name__ for f in load_reward_funcs(["format", "accuracy"])]
    ['format', 'accuracy']
    """
    if isinstance(names, str):
        names = [names]
    if not names:
        raise RewardError(f"no reward functions chosen; valid: {_valid_names()}")
    funcs = []
    for name in names:
        if name == "overlong" and max_completion_length is not None:
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
    text = body if _prefills_think(prompt) else "<think>" + body
    completion = [{"role": "assistant", "content": text}] if conversational else text
    n = 2
    kwargs = dict(prompts=[prompt] * n, completions=[completion] * n, answer=[gold] * n,
                  completion_ids=[list(range(8))] * n, trainer_state=None, log_extra=_noop, log_metric=_noop)
    shared_worker().warm_up()
    for fn in funcs:
        name = getattr(fn, "__name__", repr(fn))
        try:
            values = fn(**kwargs)
        except Exception as e:  # noqa: BLE001 - reported with the reward's name, then training stops
            raise RewardError(f"reward {name!r} raised {type(e).__name__}: {e} on a perfect completion") from e
        if not isinstance(values, (list, tuple)) or len(values) != n:
            got = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
            raise RewardError(f"reward {name!r} returned {got} values for {n} completions; it must return a list "
                              f"with one float (or None) per completion")
        for v in values:
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real)  # numpy floats are Real
                                  or not math.isfinite(v)):
                raise RewardError(f"reward {name!r} returned {v!r}; rewards must be finite numbers or None")
        if all(v is None for v in values):
            logger.warning("reward %s returned None for a perfect completion with gold %r: it will skip every "
                           "such row (is the gold answer usable?)", name, gold)
        logger.info("reward %s on a perfect completion: %s", name, values)


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
