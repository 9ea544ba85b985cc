"""Answer extraction, answer equivalence and the reward registry (work in progress: extraction helpers first).

Run `python reward.py` for the self-test table (added in a later commit).
"""
from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 1_000  # a final answer longer than this is not a short answer; refuse rather than parse it

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _brace_content(text: str, start: int) -> str | None:
    """The content of the brace group opening at text[start] == '{', or None if unbalanced."""
    depth, i, n = 0, start, len(text)
    while i < n:
        c = text[i]
        if c == "\\":  # `\{` and `\}` are literal braces, not grouping
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """The brace-matched content of the last `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5`), None if none.

    >>> last_boxed(r"so \\boxed{\\frac{1}{2}} and")
    '\\\\frac{1}{2}'
    """
    if not isinstance(text, str):
        return None
    for m in reversed(list(_BOX_RE.finditer(text))):
        j = m.end()
        while j < len(text) and text[j] == " ":
            j += 1
        if j < len(text) and text[j] == "{":
            content = _brace_content(text, j)
            if content is not None:
                return content.strip()
            continue  # unclosed: try an earlier box
        if j > m.end():  # `\boxed 5`: the token after the space, up to `$` or whitespace
            tok = re.match(r"[^\s$]+", text[j:])
            if tok:
                return tok.group(0).rstrip(".,;")
    return None


_GSM_RE = re.compile(r"####\s*([^\n]*)")


def normalize_gold(gold: str) -> str | None:
    """A gold answer in any common shape to its short final answer, None if nothing usable.

    A GSM8K rationale (`... #### 1,080`) gives `1080`; a solution ending in `\\boxed{}` gives the boxed
    content; a short answer comes back stripped.
    """
    if gold is None:
        return None
    gold = str(gold).strip()
    if not gold:
        return None
    if "####" in gold:
        m = list(_GSM_RE.finditer(gold))[-1]
        ans = m.group(1).strip().rstrip(".")
        ans = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", ans)  # thousands separators
        return ans or None
    if "\\boxed" in gold or "\\fbox" in gold:
        boxed = last_boxed(gold)
        if boxed:
            return boxed
    if len(gold) > MAX_ANSWER_CHARS:
        return None
    return gold
