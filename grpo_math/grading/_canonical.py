"""The canonical text of a short answer: one spelling for what LaTeX, Unicode and habit write many ways.

    canon(r"\\dfrac43")     # '\\frac{4}{3}'
    canon("14{,}916")       # '14,916'
    canon("x\u2009\u2265\u20093")  # 'x\\ge3'

The first step of both extraction (are several boxed answers the same one?) and equivalence (equal text is an
equal answer), so it lives below both: extraction does not import comparison. Left out on purpose: anything
that needs a value (that is _exact's) or a tree (_expr_tree's).
"""
from __future__ import annotations

import re
from functools import lru_cache

from grpo_math.grading._exact import MAX_ANSWER_CHARS, PLAIN_NUMBER

_UNICODE = {0x2212: "-", 0xFE63: "-", 0x00D7: "\\times ", 0x00F7: "\\div ", 0x00B7: "\\cdot ", 0x22C5: "\\cdot ",
            0x03C0: "\\pi ", 0x221A: "\\sqrt", 0x221E: "\\infty ", 0x00B0: "^\\circ", 0x2264: "\\le ",
            0x2265: "\\ge ", 0x2260: "\\neq ", 0x00A0: " ", 0x2009: " ", 0x202F: " ", 0x3000: " "}
_UNICODE.update({c: chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)})  # full-width ASCII (Chinese output)
_SUBS = [(re.compile(p), r) for p, r in [
    (r",\\!\s*", ","), (r"\{\s*,\s*\}", ","),  # MATH's thousands separators: `11,\!111`, `14{,}916`
    (r"\\\$", ""), (r"\$", ""), (r"\\[()\[\]]", ""), (r"\\%", "%"),
    (r"\\(?:left|right)\.", ""), (r"\\(?:left|right|[bB]igg?[lr]?)(?![A-Za-z])", ""),
    (r"\\(?:displaystyle|textstyle|!)", ""), (r"(?<!\\)\\[,;:> ]|~|\\q?quad", " "),
    (r"\\[dtc]frac(?![A-Za-z])", r"\\frac"),
    (r"\\(?:text|textbf|textit|textnormal|textrm|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}",
     r" \1 "),
    (r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![A-Za-z])|\\degree(?![A-Za-z])", ""),
    (r"\\frac\s*([0-9A-Za-z])", r"\\frac{\1}"), (r"(\\frac\{[^{}]*\})\s*([0-9A-Za-z])", r"\1{\2}"),
    (r"\\sqrt\s*([0-9A-Za-z])", r"\\sqrt{\1}"), (r"([\^_])\{([0-9A-Za-z])\}", r"\1\2"),
    (r"\\(?:leq|leqslant)(?![A-Za-z])|<=", r"\\le"), (r"\\(?:geq|geqslant)(?![A-Za-z])|>=", r"\\ge"),
    (r"\\ne(?![A-Za-z])|!=", r"\\neq"), (r"\\lt(?![A-Za-z])", "<"), (r"\\gt(?![A-Za-z])", ">"),
    (r"\+\s*\\infty", r"\\infty"),
    (r"\\(?:dots|cdots)(?![A-Za-z])", r"\\ldots"), (r"\\varnothing(?![A-Za-z])", r"\\emptyset"),
    # spaces: one at most, and only between two word characters or after a comma (`4, 500` stays a list)
    (r"\s+", " "), (r"(?<![0-9A-Za-z,]) | (?![0-9A-Za-z])", ""), (r"(\\[A-Za-z]+) (?=[0-9])", r"\1"),
]]
_BAD_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\xad\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffc]")


@lru_cache(maxsize=65_536)
def canon(s: str) -> str | None:
    """Canonical text of a short answer; None for text no honest answer contains (NUL, zero-width chars)."""
    if PLAIN_NUMBER.fullmatch(s):
        return s  # most answers: nothing to rewrite
    if len(s) > MAX_ANSWER_CHARS or _BAD_CHARS.search(s):
        return None
    m = re.fullmatch(r"[\s$]*\\text\s*\{\s*([0-9.,]+)\s*\}[\s$]*", s)
    if m:
        return f"\\text{{{m.group(1)}}}"  # digits in text mode are a word, not a number (Math-Verify issue 37)
    if s.startswith("\\boxed{") and s.count("{") > s.count("}"):
        s = s[len("\\boxed{"):]  # an unclosed box around a whole answer
    s = s.translate(_UNICODE)
    for _ in range(3):  # \text inside \text, \frac43 inside \text, ...
        before = s
        for pat, rep in _SUBS:
            s = pat.sub(rep, s)
        if s == before or "\\" not in s:
            break
    s = s.strip().rstrip(".").strip()
    if s.startswith("\\boxed{") and s.endswith("}"):
        s = s[len("\\boxed{"):-1]
    m = re.fullmatch(r"\(([A-Za-z])\)", s)  # multiple choice `(C)` -> `C`
    return m.group(1) if m else s
