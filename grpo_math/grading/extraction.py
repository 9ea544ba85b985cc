"""Where the final answer sits in a text: boxes (one, a hedge, or a list), anchored phrases, display math.

    final_box(r"so \\boxed{3} or \\boxed{4}")                 # HEDGE: two candidate answers
    final_box(r"\\boxed{(2,2)} \\quad\\text{and}\\quad \\boxed{(6,2)}")   # '(2,2), (6,2)': one answer, a list
    anchored("Final Answer: The final answer is $42$. I hope it is correct.")   # '$42$'

answers.py reads completions and gold solutions through these; each is one linear scan of a capped text.
Rules (conventions, listed in reward.py's table):
- boxes: `\\boxed{..}`, `\\fbox{..}`, `\\boxed N`, brace-matched. Several different boxes are one list answer when
  nothing but connectives lies between them (`,` `;` `and` `\\quad` `$` `\\(` `\\)` a label like `y_2 =`), else a
  hedge (no answer); a list never matches a single gold, so boxing every candidate never pays;
- anchored phrases: the last of `#### N`, `The answer is N`, `Answer: N`, `Answer $N$`, `答案是 N`. The answer
  runs to the end of its sentence; `The final answer is X` inside it, or `The largest $n$ is X`, gives X; a
  sentence with exactly one number and no hedging word gives that number (`Jane started 3 hours ago`); display
  math that opens after the phrase and closes on a later line (`\\[ ... \\]`, `$$ ... $$`) is taken whole;
  a math span right before `is our answer` / `is the final answer` is the answer (`Thus $x \\le 2$ is our answer`).
Left out on purpose: the last number of free text (eval's `lenient` mode only), answers split over sentences.
"""
from __future__ import annotations

import re

from grpo_math.grading._canonical import canon
from grpo_math.grading._exact import MAX_ANSWER_CHARS, value

HEDGE = "<hedge>"  # final_box's marker for two different boxed answers

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BRACE_RE = re.compile(r"\\.|[{}]", re.DOTALL)  # `\{`, `\}` (and `\\`) are consumed whole: not grouping


def boxes(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every closed `\\boxed{..}` / `\\fbox{..}` / `\\boxed N`, in order. One linear pass."""
    starts = [(m.start(), m.end()) for m in _BOX_RE.finditer(text)]
    if not starts:
        return []
    close_of: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_RE.finditer(text, starts[0][1]):
        c = m.group()
        if c == "{":
            stack.append(m.start())
        elif c == "}" and stack:
            close_of[stack.pop()] = m.start()
    out = []
    for start, j in starts:
        k = j
        while k < len(text) and text[k] == " ":
            k += 1
        if k < len(text) and text[k] == "{":
            end = close_of.get(k)
            if end is not None:
                out.append((start, end + 1, text[k + 1:end].strip()))
        elif k > j:  # `\boxed 5`: one token, up to whitespace or `$`
            tok = re.match(r"[^\s$]+", text[k:k + MAX_ANSWER_CHARS])
            if tok:
                out.append((start, k + tok.end(), tok.group().rstrip(".,;")))
    return out


def last_boxed(text: str) -> str | None:
    """The brace-matched content of the last `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5`), None if none.

    >>> last_boxed(r"so \\boxed{\\frac{1}{2}} and")
    '\\\\frac{1}{2}'
    """
    if not isinstance(text, str):
        return None
    found = boxes(text)
    return found[-1][2] if found else None


# what may stand between the boxes of one list answer: punctuation, math delimiters, spacing, `and`, a label
_CONNECTIVES = re.compile(
    r"(?:\s|[,;&.]|\$|\\[()\[\]]|\\q?quad(?![A-Za-z])|\\[,;:! ]|\\\\|\\text\s*\{\s*(?:and|,)?\s*\}|\band\b"
    r"|[A-Za-z](?:_\{?[0-9A-Za-z]+\}?)?\s*=)*")


def joined_boxes(text: str, *, loose: bool = False) -> str | None:
    """The boxes of `text` as one list answer `a, b, c` when only connectives lie between them, else None.

    `loose` (gold solutions only, which are trusted): up to three words of any kind may lie between them too
    (`\\boxed{1} papers and \\boxed{2} bins`), but no sentence end.
    """
    found = [b for b in boxes(text) if b[2]]
    if len(found) < 2 or len(found) > 40:
        return None
    for (_, end, _), (start, _, _) in zip(found, found[1:]):
        gap = text[end:start]
        if not (_CONNECTIVES.fullmatch(gap) or loose and len(gap.split()) <= 3 and not re.search(r"[.\n]", gap)):
            return None
    return ", ".join(b[2] for b in found)


def final_box(scope: str) -> str | None:
    """The boxed answer of a scope: None if none, HEDGE for two different answers, `a, b` for a joined list.

    Several spellings of one value (`\\frac12`, `\\frac{1}{2}`) are one answer, not a hedge.
    """
    found = [b for _, _, b in boxes(scope) if b]
    if not found:
        return None
    distinct = {b.replace(" ", "") for b in found}
    if len(distinct) == 1:
        return found[-1]
    if len(distinct) <= 4:  # more than 4 raw spellings is a list, not one value spelt several ways
        canonical = {canon(b) for b in distinct}
        values = {value(c) if c else None for c in canonical}
        if len(canonical) == 1 or (len(values) == 1 and None not in values):  # `15\frac{39}{40}` = `\frac{639}{40}`
            return found[-1]
    return joined_boxes(scope) or HEDGE


# ----------------------------------------------------------------------------------------------------------
# Anchored phrases
# ----------------------------------------------------------------------------------------------------------
_ANCHOR_RE = re.compile(  # `Answer $9$`: the bare word counts only when math follows it at once
    r"####|\b(?:final\s+)?answer(?:\s+is|\s*[:=]|(?=\s*(?:\$|\\[\[(])))|(?:最终)?答案\s*(?:是|为|為|:|：)",
    re.IGNORECASE)
# a sentence ends the phrase; commas and semicolons do not, so `3, 4, or 5` stays a (wrong) list
_SENTENCE_END_RE = re.compile(r"\.(?![0-9])|。|!|\?")
_DISPLAY = {"\\[": "\\]", "$$": "$$"}
_HEDGE_WORDS = re.compile(r"\b(?:or|not|no|maybe|perhaps|possibly|probably|either|between|except|nor|about|"
                          r"approximately|around|roughly|nearly|almost)\b", re.IGNORECASE)


def clean_answer(ans: str) -> str:
    ans = ans.strip().strip("*").strip()
    for a, b in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if ans.startswith(a) and ans.endswith(b) and len(ans) >= len(a) + len(b):
            ans = ans[len(a):len(ans) - len(b)].strip()
    return ans.rstrip(".").strip()


def _statement_value(ans: str) -> str:
    """`The final answer is $42$` -> `$42$`; `The largest $n$ is 34` -> `34`; `Jane started 3 hours ago` -> `3`."""
    if not re.match(r"[A-Za-z]", ans):
        return ans  # starts with the answer itself
    outside = re.sub(r"\$[^$]*\$|\\\(.*?\\\)", lambda m: "_" * len(m.group()), ans)  # math masked, same length
    stmt = list(re.finditer(r"\s(?:is|are|was|equals)\s", outside))
    if stmt:
        return ans[stmt[-1].end():].strip().strip('"').strip()
    numbers = re.findall(r"-?[0-9][0-9,]*(?:\.[0-9]+)?", ans)
    if len(numbers) == 1 and "$" not in ans and "\\" not in ans and not _HEDGE_WORDS.search(ans):
        return numbers[0]
    return ans


# the phrase after the answer: `Thus $x \le 2$ is our answer.` (one math span, right before it)
_ANSWER_AFTER_RE = re.compile(
    r"(\$[^$\n]{1,200}\$|\\\([^\n]{1,200}?\\\))\s*is\s+(?:our|the|my)\s+(?:final\s+)?answer\b", re.IGNORECASE)


def anchored(scope: str) -> str | None:
    """The answer after the last anchored phrase of a scope (see the module docstring), None if none."""
    last = after = None
    for last in _ANCHOR_RE.finditer(scope):
        pass
    for after in _ANSWER_AFTER_RE.finditer(scope):
        pass
    if after is not None and (last is None or after.start() > last.end()):
        return clean_answer(after.group(1)) or None
    if last is None:
        return None
    rest = scope[last.end():]
    line = rest.split("\n", 1)[0]
    if last.group() == "####":
        return clean_answer(line) or None
    head = line.strip(" \t*:：")
    if head in _DISPLAY or not head:  # `The answer is\n\\[\n42\n\\]` or `The answer is \\[ \n 42 \n \\]`
        body = rest.lstrip(" \t*:：\n")
        opener = next((o for o in _DISPLAY if body.startswith(o)), None)
        if opener:
            close = body.find(_DISPLAY[opener], len(opener))
            if 0 < close < MAX_ANSWER_CHARS:
                return clean_answer(body[:close + len(_DISPLAY[opener])]) or None
        return None
    ans = _SENTENCE_END_RE.split(head, 1)[0]
    return clean_answer(_statement_value(clean_answer(ans))) or None
