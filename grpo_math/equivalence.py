"""Answer equivalence: are two short final answers the same? Exact where possible, symbolic only if needed.

Used through answers.answers_match (which first normalises the gold); run reward.py's self-test or
tests/test_reward.py to exercise it. Steps, cheapest first, with no sympy object ever built in this process:
1. canonical LaTeX text equal (`\\dfrac`->`\\frac`, `\\frac43`, `\\sqrt2`, `\\left`, `\\text{}`, `$`, spaces,
   `x =`); plain-word answers compare case-insensitively;
2. exact rationals: an arithmetic subset (`1,080`, `$`, `%`, `72.0`, U+2212, `\\frac{-3}{4}`, `2^{10}`, `5!`,
   `1.5\\times10^3`, simple units) evaluated exactly by exact.py, so near-equal huge fractions differ.
   Sizes are capped: results over ~1,200 digits, factorials over 300!, nesting over 20 are refused (then only
   the text comparison of step 1 can match). A numeric gold is decided here and never goes further;
3. tuples, intervals and sets element by element (brackets must agree; sets and bare lists in any order);
4. everything else goes to math-verify in a child process (grader_worker.py) under a deadline, but only after
   a screen that refuses power towers, exponents of 100 and more, factorials over 20, `\\sum`/`\\prod`/`\\int`,
   unknown commands, words, decimals, and relations/`\\pm`/lists the gold does not have.

Steps 1-3 are linear-time pure Python on capped inputs; step 4 is bounded by the parent's own clock.
Left out on purpose: approximate credit (0.333 is not 1/3), unit conversion (1 m is not 100 cm), symbolic
equality of long or deeply nested expressions (refused, counted wrong), non-ASCII digits other than full-width.
"""
from __future__ import annotations

import re
import time
from functools import lru_cache

from grpo_math.exact import MAX_ANSWER_CHARS, PLAIN_NUMBER, depth, num_eq, value
from grpo_math.grader_worker import shared_worker

MAX_SYMBOLIC_CHARS = 300  # longest answer math-verify is asked about
SYMBOLIC_TIMEOUT_S = 0.5  # per comparison, for the math-verify child; leaves room under the 1 s promise


# ----------------------------------------------------------------------------------------------------------
# Canonical form
# ----------------------------------------------------------------------------------------------------------
_UNICODE = {0x2212: "-", 0xFE63: "-", 0x00D7: "\\times ", 0x00F7: "\\div ", 0x00B7: "\\cdot ", 0x22C5: "\\cdot ",
            0x03C0: "\\pi ", 0x221A: "\\sqrt", 0x221E: "\\infty ", 0x00B0: "^\\circ", 0x2264: "\\le ",
            0x2265: "\\ge ", 0x2260: "\\neq ", 0x00A0: " ", 0x2009: " ", 0x202F: " ", 0x3000: " "}
_UNICODE.update({c: chr(c - 0xFEE0) for c in range(0xFF01, 0xFF5F)})  # full-width ASCII (Chinese output)
_SUBS = [(re.compile(p), r) for p, r in [
    (r"\\\$", ""), (r"\$", ""), (r"\\[()\[\]]", ""), (r"\\%", "%"),
    (r"\\(?:left|right)\.", ""), (r"\\(?:left|right|[bB]igg?[lr]?)(?![A-Za-z])", ""),
    (r"\\(?:displaystyle|textstyle|!)", ""), (r"(?<!\\)\\[,;:> ]|~|\\q?quad(?![A-Za-z])", " "),
    (r"\\[dtc]frac(?![A-Za-z])", r"\\frac"), (r"\{,\}", ","),
    (r"\\(?:text|textbf|textit|textnormal|textrm|mathrm|mathbf|mathit|mbox|operatorname)\s*\{([^{}]*)\}",
     r" \1 "),
    (r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![A-Za-z])|\\degree(?![A-Za-z])", ""),
    (r"\\frac\s*([0-9A-Za-z])", r"\\frac{\1}"), (r"(\\frac\{[^{}]*\})\s*([0-9A-Za-z])", r"\1{\2}"),
    (r"\\sqrt\s*([0-9A-Za-z])", r"\\sqrt{\1}"), (r"([\^_])\{([0-9A-Za-z])\}", r"\1\2"),
    (r"\\(?:leq|leqslant)(?![A-Za-z])", r"\\le"), (r"\\(?:geq|geqslant)(?![A-Za-z])", r"\\ge"),
    (r"\\ne(?![A-Za-z])", r"\\neq"), (r"\\lt(?![A-Za-z])", "<"), (r"\\gt(?![A-Za-z])", ">"),
    (r"\\(?:dots|cdots)(?![A-Za-z])", r"\\ldots"), (r"\\varnothing(?![A-Za-z])", r"\\emptyset"),
    (r"\s+", " "), (r"(?<![0-9A-Za-z]) | (?![0-9A-Za-z])", ""), (r"(\\[A-Za-z]+) (?=[0-9])", r"\1"),
]]
_LHS_RE = re.compile(r"^(?:[A-Za-z]|\\[A-Za-z]+)(?:_[0-9A-Za-z]|_\{[0-9A-Za-z]+\})?(?:\([A-Za-z]\))?(?:=|\\in)(?!=)")
_BAD_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\xad\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ufff9-\ufffc]")


@lru_cache(maxsize=65_536)
def canon(s: str) -> str | None:
    """Canonical text of a short answer; None for text no honest answer contains (NUL, zero-width chars)."""
    if PLAIN_NUMBER.fullmatch(s):
        return s  # most answers: nothing to rewrite
    if len(s) > MAX_ANSWER_CHARS or _BAD_CHARS.search(s):
        return None
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
    m = _LHS_RE.match(s)
    if m and not re.search(r"=|<|>|\\le|\\ge|\\neq", s[m.end():]):  # `x = 5` -> `5`, not `x = 5 = 6`
        s = s[m.end():]
    m = re.fullmatch(r"\(([A-Za-z])\)", s)  # multiple choice `(C)` -> `C`
    return m.group(1) if m else s



# ----------------------------------------------------------------------------------------------------------
# Lists, symbolic screen, equivalence
# ----------------------------------------------------------------------------------------------------------
_BRACKETS = [("\\{", "\\}"), ("(", ")"), ("[", "]"), ("(", "]"), ("[", ")")]


def _split_top(s: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, c in enumerate(s):
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return parts


def _as_list(c: str) -> tuple[str, list[str]] | None:
    """(bracket kind, elements) when a canonical answer is a tuple, interval, set or bare list."""
    for o, cl in _BRACKETS:
        if c.startswith(o) and c.endswith(cl) and len(c) > len(o) + len(cl):
            inner = c[len(o):len(c) - len(cl)]
            parts = _split_top(inner)
            if len(parts) > 1 and _balanced(inner):
                return o + cl, [canon(p) or p for p in parts]
    parts = _split_top(c)
    return ("", [canon(p) or p for p in parts]) if len(parts) > 1 and _balanced(c) else None


def _expand_pm(kind_items: tuple[str, list[str]] | None, c: str) -> tuple[str, list[str]] | None:
    """`1 \\pm \\sqrt{19}` is the list of its two values (as a bare list or set of solutions)."""
    kind, items = kind_items or ("", [c])
    if kind not in ("", "\\{\\}"):
        return kind_items
    out = []
    for it in items:
        if it.count("\\pm") == 1 and "\\mp" not in it:
            out += [it.replace("\\pm", "+"), it.replace("\\pm", "-")]
        else:
            out.append(it)
    return (kind, out) if len(out) > 1 else kind_items


def _balanced(s: str) -> bool:
    d = 0
    for ch in s:
        d += ch in "({[" and 1 or ch in ")}]" and -1 or 0
        if d < 0:
            return False
    return d == 0


_COMPATIBLE = {"": {"", "()", "\\{\\}"}, "()": {"()", ""}, "\\{\\}": {"\\{\\}", ""}}


def _scalar(p: str, g: str) -> bool | None:
    if p == g:
        return True
    pv, gv = value(p), value(g)
    if pv is not None and gv is not None:
        return num_eq(pv, gv)
    return None


def _compare_lists(pc: str, gc: str) -> bool | None:
    pl, gl = _as_list(pc), _as_list(gc)
    if "\\pm" in gc and "\\pm" not in pc:
        gl = _expand_pm(gl, gc)
    if pl is None and gl is None:
        return None
    if pl is None or gl is None:
        return False  # a list against one value: a hedge, or the wrong shape
    (pk, ps), (gk, gs) = pl, gl
    if pk not in _COMPATIBLE.get(gk, {gk}) or len(ps) != len(gs):
        return False
    if gk in ("", "\\{\\}"):  # sets and bare lists of solutions: any order
        left = list(ps)
        for g in gs:
            hit = next((k for k, p in enumerate(left) if _scalar(p, g)), None)
            if hit is None:
                return None if any(_scalar(p, g) is None for p in left) else False
            left.pop(hit)
        return True
    verdicts = [_scalar(p, g) for p, g in zip(ps, gs)]
    return False if False in verdicts else True if all(verdicts) else None


_SYMBOLIC_CHARS = re.compile(r"[0-9A-Za-z\\{}()\[\]^_+\-*/=<>|,.!'& ]*")
_SAFE_COMMANDS = {
    "frac", "sqrt", "pi", "cdot", "times", "div", "sin", "cos", "tan", "sec", "csc", "cot", "arcsin", "arccos",
    "arctan", "sinh", "cosh", "tanh", "log", "ln", "exp", "infty", "pm", "mp", "le", "ge", "neq", "cup", "cap",
    "in", "emptyset", "ldots", "mathbb", "begin", "end", "pmatrix", "bmatrix", "circ", "alpha", "beta", "gamma",
    "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota", "kappa", "lambda", "mu", "nu",
    "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta",
    "Lambda", "Xi", "Pi", "Sigma", "Phi", "Psi", "Omega", "vec", "overline", "hat", "bar", "prime", "\\",
}
_GOLD_ONLY = ("=", "<", ">", "\\le", "\\ge", "\\neq", "\\pm", "\\mp", "\\cup", "\\cap", "\\in", "\\infty", "|")


def _symbolic_ok(pc: str, gc: str) -> bool:
    """Screen before math-verify: only short, tame expressions whose shape the gold shares."""
    for s in (pc, gc):
        if len(s) > MAX_SYMBOLIC_CHARS or not _SYMBOLIC_CHARS.fullmatch(s) or depth(s) > 10:
            return False
        if any(cmd not in _SAFE_COMMANDS for cmd in re.findall(r"\\([A-Za-z]+|\\)", s)):
            return False  # \sum, \prod, \int, \lim, \binom, unknown macros
        if re.search(r"[0-9]{16}", s) or re.search(r"\^\s*-?\s*\{?\s*-?[0-9]{3}", s):
            return False  # huge literals, exponents of 100 and more
        for m in re.finditer(r"!", s):
            lit = re.search(r"([0-9]+)$", s[:m.start()])
            if not lit or int(lit.group(1)) > 20:
                return False  # (n+1)!, 2004!
        for m in re.finditer(r"\^", s):  # towers: `a^{b^c}`, `a^b^c`
            rest = s[m.end():].lstrip()
            if rest.startswith("{"):
                end = next((k for k, d in _runningdepth(rest) if d == 0), None)
                if end is None or "^" in rest[:end] or rest[end + 1:].lstrip().startswith("^"):
                    return False
            elif re.match(r"-?(?:[0-9]+|[A-Za-z]|\\[A-Za-z]+)\s*\^", rest):
                return False
    for tok in _GOLD_ONLY:
        if tok in pc and tok not in gc:
            return False  # `\pm 4`, `x = 3 = 4`, `2x = 8`: a relation the gold is not
    if "." in pc and "." not in gc:
        return False  # a decimal is never an exact match for a symbolic gold
    bare_p, bare_g = re.sub(r"\\[A-Za-z]+", " ", pc), re.sub(r"\\[A-Za-z]+", " ", gc)
    if set(re.findall(r"[A-Za-z]", bare_p)) != set(re.findall(r"[A-Za-z]", bare_g)):
        return False  # different variables: not equal (math-verify's strict mode agrees), and no child call
    return set(re.findall(r"[A-Za-z]{2,}", bare_p)) <= set(re.findall(r"[A-Za-z]{2,}", bare_g))  # `3 or 4`, prose


def _runningdepth(s: str):
    d = 0
    for k, c in enumerate(s):
        d += 1 if c == "{" else -1 if c == "}" else 0
        yield k, d


def clear_caches() -> None:
    """Forget cached canonical forms, values and math-verify verdicts (benchmarks, tests)."""
    canon.cache_clear()
    value.cache_clear()
    shared_worker().clear_cache()


def equal(pred: str, gold: str, *, timeout_s: float = SYMBOLIC_TIMEOUT_S, wait_for_worker: bool = False) -> bool:
    """True when two short final answers are the same mathematical answer (gold already normalised).

    >>> equal("1,080", "1080"), equal(r"\\dfrac43", r"\\frac{4}{3}")
    (True, True)
    >>> equal("0.333", r"\\frac13"), equal("3, 4, 5", "4")
    (False, False)

    `timeout_s` bounds the symbolic step (the only one that can be slow); `wait_for_worker` (eval) first
    waits for a cold math-verify child instead of counting its start-up against the bound.
    """
    if not isinstance(pred, str) or not isinstance(gold, str) or len(pred) > MAX_ANSWER_CHARS:
        return False
    gc, pc = canon(gold), canon(pred)
    if gc is None or pc is None or not pc:
        return False
    if pc == gc:
        return True
    if re.fullmatch(r"[A-Za-z ]+", pc) and re.fullmatch(r"[A-Za-z ]+", gc):
        return pc.lower() == gc.lower()  # text answers: `Yes`, `\text{Evelyn}`
    gv, pv = value(gc), value(pc)
    if gv is not None:
        # a numeric gold needs a number: the exact answer decides, and no symbolic work is ever done for it
        return pv is not None and num_eq(pv, gv)
    verdict = _compare_lists(pc, gc)
    if verdict is not None:
        return verdict
    if not _symbolic_ok(pc, gc):
        return False
    worker = shared_worker()
    if wait_for_worker:
        worker.warm_up()
    return bool(worker.equivalent(pc, gc, deadline=time.monotonic() + timeout_s))
