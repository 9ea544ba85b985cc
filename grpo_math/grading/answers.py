"""Answer extraction and grading: what "correct" means, once, for the training rewards and for eval.

    extract_answer("<think>..</think><answer>\\boxed{72}</answer>")   # '72'
    grade(completion, gold="#### 72")                                   # prediction, correct, format_ok, ...

Used by `rewards.py` (every reward function), `scoring.py` (eval.py's records) and `sources.py` (`last_boxed`,
`normalize_gold` for gold answers); `equivalence.py` decides whether two answers are equal, `worker.py`
runs math-verify in a killable child for the few symbolic cases.

Extraction (`extract_answer`). Text inside `<think>` never counts: the answer is looked for after the last
`</think>`; an unclosed `<think>` means no answer (a prompt ending in `<think>`, as `r1_zero` does, counts as
the opening tag). In that final part: the last `<answer>...</answer>`, else the boxes (`\\boxed{}`/`\\fbox{}`,
brace-matched), else the last anchored phrase (`#### N`, `The answer is N`, `Answer: N`, `答案是 N`, the
Minerva `Final Answer: The final answer is N. I hope it is correct.`); extraction.py has the rules. Two
different boxed values in one final part are a hedge and give no answer, unless only connectives stand
between them (`\\boxed{2} and \\boxed{3}`): then they are one list answer, which never matches a single gold,
so "box every candidate" never pays. `lenient=True` (eval only, reported apart) also falls back to the last
number. Gold answers (`normalize_gold`): GSM8K's `#### N`, else a solution's boxes (NuminaMath's several boxes
joined as one list, a few words between them allowed), else a long solution's anchored phrase, else the text.

The time bound: every step here is a linear scan of a completion capped at MAX_COMPLETION_CHARS; equivalence
is pure Python with counted work, except math-verify, which runs in a child process that counts its own work
under the parent's clock (see equivalence.py and worker.py), so the bound holds on any thread and the
verdict does not depend on load. Measured with bench/grader.py on a shared, busy 2-core box (load ~4): 34,000-
56,000 simple or GSM8K completions/s, 60-110x TRL's `accuracy_reward` (the ratio moves with the box's load; the
CPU time per completion is what it was before issue 11), 13,000-17,000/s and ~130x on MATH-500 completions
(their symbolic answers are exact arithmetic in this process now); worst of 39 hostile inputs ~120 ms, on the
main thread and on a worker thread alike.

Left out on purpose: partial credit for a near answer, reward for reasoning quality, a language-model judge.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Any

from grpo_math.grading.equivalence import MAX_ANSWER_CHARS, equal
from grpo_math.grading.extraction import (HEDGE, anchored, clean_answer, final_box, joined_boxes,
                                    last_boxed)

MAX_COMPLETION_CHARS = 200_000  # ~50k tokens; a longer completion gets no answer rather than a slow scan


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


def prefills_think(prompt: Any) -> bool:
    """True when the prompt ends in `<think>`, so the completion starts inside the thinking block."""
    if isinstance(prompt, str):
        return prompt.rstrip().endswith("<think>")
    if isinstance(prompt, (list, tuple)) and prompt and isinstance(prompt[-1], dict) \
            and prompt[-1].get("role") == "assistant":  # a continued assistant turn, not a user message
        return _message_text(prompt[-1]).rstrip().endswith("<think>")
    return False


def with_prefill(text: str, prompt: Any) -> str:
    if prefills_think(prompt):
        close = text.find("</think>")
        if "<think>" not in (text if close < 0 else text[:close]):
            return "<think>" + text
    return text



# ----------------------------------------------------------------------------------------------------------
# Extraction
# ----------------------------------------------------------------------------------------------------------
_GSM_RE = re.compile(r"####\s*([^\n]*)")
_THOUSANDS_RE = re.compile(r"(?<=[0-9]),(?=[0-9]{3}(?![0-9]))")


def normalize_gold(gold: str) -> str | None:
    """A gold answer in any common shape to its short final answer, None if nothing usable.

    A GSM8K rationale (`... #### 1,080`) gives `1080`; a solution ending in `\\boxed{}` gives the boxed
    content; a short answer comes back stripped.
    """
    if gold is None:
        return None
    short = _normalize_gold(str(gold))
    return short if short is None or gradable(short) else None


def gradable(answer: str) -> bool:
    """Whether a grader can read `answer`: a short answer (at most MAX_ANSWER_CHARS; a million digits is not
    one) of text, without control characters or the U+FFFD that undecodable bytes become (binary data)."""
    return len(answer) <= MAX_ANSWER_CHARS and "\ufffd" not in answer and not any(
        unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn") and c not in "\t\n\r" for c in answer)


@lru_cache(maxsize=16_384)  # each gold is seen num_generations times per step
def _normalize_gold(gold: str) -> str | None:
    gold = gold.strip()
    if not gold:
        return None
    if "####" in gold:
        ans = _GSM_RE.findall(gold)[-1].strip().rstrip(".")
        return _THOUSANDS_RE.sub("", ans) or None
    if "\\boxed" in gold or "\\fbox" in gold:
        boxed = final_box(gold)  # NuminaMath: `\boxed{1} and \boxed{-2}` is one list answer
        if boxed == HEDGE:  # a few words between boxes still join them; else a step was boxed, then the answer
            boxed = joined_boxes(gold, loose=True) or last_boxed(gold)
        if boxed:
            return boxed
    if len(gold) > MAX_ANSWER_CHARS:
        return None
    if len(gold) > 80 and re.search(r"\s", gold):  # a solution text: its anchored answer, if it states one
        return anchored(gold) or gold
    return gold


def final_region(text: str) -> str | None:
    """The part of a completion that may hold the answer: after the last `</think>`; None if thinking is open."""
    close = text.rfind("</think>")
    if close >= 0:
        region = text[close + len("</think>"):]
        return None if "<think>" in region else region
    return None if "<think>" in text else text


def answer_block(region: str) -> str | None:
    close = region.rfind("</answer>")
    if close < 0:
        return None
    open_ = region.rfind("<answer>", 0, close)
    return None if open_ < 0 else region[open_ + len("<answer>"):close]


def _from_scope(scope: str, in_block: bool) -> str | None:
    box = final_box(scope)
    if box is HEDGE:
        return None
    if box is not None:
        return box
    ans = anchored(scope)
    if ans is None and in_block:
        ans = clean_answer(scope) or None
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
    region = final_region(with_prefill(_canonical_tags(text), prompt))
    if region is None:
        return None
    block = answer_block(region)
    ans = _from_scope(block, True) if block is not None else _from_scope(region, False)
    if ans is None and lenient:
        ans = _last_number(region)
    return ans if ans is None or len(ans) <= MAX_ANSWER_CHARS else None


# ----------------------------------------------------------------------------------------------------------
# Equivalence and grading
# ----------------------------------------------------------------------------------------------------------
def answers_match(pred: str | None, gold: str, *, wait_for_worker: bool = False, normalized: bool = False) -> bool:
    """True when a predicted final answer equals the gold; the gold may be a whole rationale or solution.

    >>> answers_match("1,080", "Total: 1,000 + 80.\\n#### 1080"), answers_match("3 or 4", "4")
    (True, False)

    `wait_for_worker` (eval) waits for a cold math-verify child instead of counting its start-up against the
    per-call time bound; training leaves it False (check_reward_funcs warms the child before step 0).
    `normalized`: the caller already ran `normalize_gold` on this gold (a reward that checked it), so it is not
    normalised twice.
    """
    g = gold if normalized else normalize_gold(gold)
    if g is None or not isinstance(pred, str):
        return False
    return equal(pred, g, wait_for_worker=wait_for_worker)


TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def tag_positions(text: str) -> list[int] | None:
    """Positions of the four tags when each occurs exactly once and in order, else None."""
    if any(text.count(t) != 1 for t in TAGS):
        return None
    pos = [text.find(t) for t in TAGS]
    return pos if pos == sorted(pos) else None


def format_score(completion: Any, prompt: Any = None) -> float:
    """The `format` reward of one completion: 0.5 for one `<think>` pair then one `<answer>` pair,
    1.0 when the answer block also holds a non-empty `\\boxed{}`, else 0."""
    text = with_prefill(completion_text(completion), prompt)
    if len(text) > MAX_COMPLETION_CHARS:
        return 0.0
    pos = tag_positions(text)
    if pos is None:
        return 0.0
    return 1.0 if last_boxed(text[pos[2] + len("<answer>"):pos[3]]) else 0.5


def format_ok(completion: Any, prompt: Any = None) -> bool:
    """The format half of `r1_zero` and eval's format rate: `format_score` 1.0, or for a prompt that ends in
    `<think>` (r1_zero's prefill) 0.5 and up, both pairs present."""
    fs = format_score(completion, prompt)
    return fs >= 0.5 if prefills_think(prompt) else fs == 1.0


def grade(completion: Any, gold: str, prompt: Any = None, *, lenient: bool = False) -> dict:
    """Everything eval.py records about one completion, by the same rules the rewards use.

    Keys: `prediction`, `correct`, `prediction_lenient`, `correct_lenient` (equal to the strict pair unless
    `lenient=True` and the strict extraction found nothing), `format_score` (the `format` reward),
    `format_ok` (format_score == 1.0; for a prompt ending in `<think>`, the r1_zero rule: both pairs present).
    Waits for a cold math-verify child rather than scoring a symbolic answer wrong for lack of it.
    """
    gold = normalize_gold(gold)  # once, for the strict and the lenient reading
    pred = extract_answer(completion, prompt=prompt)
    correct = answers_match(pred, gold, wait_for_worker=True, normalized=True)
    pred_l, correct_l = pred, correct
    if lenient and pred is None:
        pred_l = extract_answer(completion, prompt=prompt, lenient=True)
        correct_l = answers_match(pred_l, gold, wait_for_worker=True, normalized=True)
    return {"prediction": pred, "correct": correct, "prediction_lenient": pred_l, "correct_lenient": correct_l,
            "format_score": format_score(completion, prompt), "format_ok": format_ok(completion, prompt)}

