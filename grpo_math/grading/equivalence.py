"""Answer equivalence: are two short final answers the same? Exact wherever possible, the same on every run.

Used through answers.answers_match (which first normalises the gold); run reward.py's self-test or
tests/test_reward.py and tests/test_grader_cases.py to exercise it. Steps, cheapest first:
1. canonical LaTeX text equal (`\\dfrac`->`\\frac`, `\\frac43`, `\\sqrt2`, `\\left`, `\\text{}`, `$`, spaces, `>=`
   -> `\\ge`, `14{,}916` and `11,\\!111` -> `14,916`); plain-word answers compare case-insensitively;
2. exact rationals (_exact.py): `1,080`, `1 080`, `$`, `%`, `72.0`, `\\frac{-3}{4}`, `2^{10}`, `5!`, units, with a
   label dropped (`x = 5`, `k=1`) and a decimal comma read as a point against a decimal gold (`1,22`). A numeric
   gold is decided here, exactly (_algebra.py may show `\\cos\\frac{\\pi}{3}` is 1/2), and never reaches the child;
3. shapes (_shapes.py): lists, tuples, intervals, sets, matrices, labels, relations, compared item by item;
4. each pair of single expressions: exact value, then _algebra.py's exact polynomial arithmetic (radicals, pi, e,
   rational functions, sin/cos/tan, logs, relations up to a factor), then, only for what that leaves undecided
   and passes a screen (no power towers, exponents under 100, factorials up to 20, no `\\sum`/`\\int`, no words,
   no base-n numerals, no decimal against a symbolic gold, no relation the gold does not have), math-verify in
   a child (worker.py): double-angle and other identities _algebra.py does not know.

Deterministic verdicts. Steps 1-3 and _algebra.py are pure Python with counted work (one polynomials.Ring budget
and at most MAX_COMPARISONS algebra comparisons per answer): the same inputs give the same verdict on any
thread under any load. The child counts its own work too (grader_worker.CALL_BUDGET Python calls per request,
~0.15 s of CPU) and says "not equal" when it runs out, so its verdict does not depend on the clock either. The
parent's deadline (SYMBOLIC_TIMEOUT_S, one for the whole comparison, shared by at most MAX_CHILD_CALLS
requests) stays only as a safety net. What can still reach it, and so depend on load: a child request that
fits the budget but not the deadline (more than ~3 busy processes per core stretch 0.15 s of CPU past 0.5 s;
only identities _algebra.py leaves to the child get there), one sympy call that works long inside C (counted as
not equal either way), a caller that waits while another thread's request holds the one shared child, and the
first requests after a kill when the spare child is not warm yet. A cut is always "not equal", never "equal",
so no load credits a wrong answer; the ordinary cases (tests/test_grader_cases.py, the peer set) never reach it.
Left out on purpose: approximate credit (0.333 is not 1/3), unit conversion (1 m is not 100 cm), symbolic
equality of long or deeply nested expressions (refused, counted wrong), non-ASCII digits other than full-width.
"""
from __future__ import annotations

import re
import time

from grpo_math.grading import _expr_tree as expr_tree, _shapes as shapes
from grpo_math.grading._algebra import same_relation, same_value
from grpo_math.grading._canonical import canon
from grpo_math.grading._exact import MAX_ANSWER_CHARS, depth, num_eq, value
from grpo_math.grading.worker import shared_worker
from grpo_math.grading._polynomials import Ring

MAX_SYMBOLIC_CHARS = 300  # longest answer math-verify is asked about
SYMBOLIC_TIMEOUT_S = 0.5  # per comparison, for the math-verify child: a safety net under the 1 s promise
MAX_CHILD_CALLS = 4  # child requests per comparison (item pairs of a list); past it an undecided pair is unequal
MAX_COMPARISONS = 200  # algebra comparisons per answer (a 14-item list in any order); then unequal


_LABEL_EQ = re.compile(r"^((?:[A-Za-z](?:_\{?[0-9A-Za-z]+\}?)?|\\[A-Za-z]+)(?:\([A-Za-z]\))?)(?:=|\\approx)(?!=)")


def _label(c: str) -> tuple[str, str]:
    """(`x`, `5`) for `x = 5`, (``, c) when c is not one label and its value (a chain `x = 3 = 4` is not)."""
    m = _LABEL_EQ.match(c)
    if m and not re.search(r"=|<|>|\\le|\\ge|\\neq|\\approx", c[m.end():]):
        return m.group(1), c[m.end():]
    return "", c


_DECIMAL_COMMA = re.compile(r"([+-]?[0-9]+),([0-9]+)")


def _number(c: str, other_is_decimal: bool) -> tuple | None:
    """Exact value of a canonical answer, label dropped; `1,22` reads as 1.22 when the other side is a decimal."""
    c = _label(c)[1]
    v = value(c)
    if v is None and other_is_decimal:
        m = _DECIMAL_COMMA.fullmatch(c)
        if m and not re.fullmatch(r"[+-]?[1-9][0-9]{0,2}(?:,[0-9]{3})+", c):  # a comma that cannot be thousands
            v = value(f"{m.group(1)}.{m.group(2)}")
    return v


def _plain_verdict(p: str, g: str, *, labels: bool = False) -> tuple[bool | None, tuple | None]:
    """The steps `equal` and `_Judge.scalar` share, cheapest first: the same canonical text, the same word
    (case-insensitive: `Yes`, `\\text{Evelyn}`), then exact numbers. Returns (the verdict, or None when these
    steps cannot decide; the gold's exact value, or None). An exact gold is decided here against an exact
    prediction, and a decimal gold (`gv[1]`) against anything; a symbolic prediction for an exact gold is left
    to the caller (`\\cos\\frac{\\pi}{3}` for 1/2). With `labels`, `x = 2` does not answer `y = 2`."""
    if p == g:
        return True, None
    if re.fullmatch(r"[A-Za-z ]+", p) and re.fullmatch(r"[A-Za-z ]+", g):
        return p.lower() == g.lower(), None
    gv = _number(g, "." in p)
    if gv is None:
        return None, None
    if labels:
        pl, gl = _label(p)[0], _label(g)[0]
        if pl and gl and pl != gl:
            return False, gv
    pv = _number(p, "." in g)
    if pv is not None:
        return num_eq(pv, gv), gv
    return (False, gv) if gv[1] else (None, gv)


# ----------------------------------------------------------------------------------------------------------
# The symbolic screen (for the child only)
# ----------------------------------------------------------------------------------------------------------
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
        if re.search(r"[0-9]{16}|[0-9]_", s) or re.search(r"\^\s*-?\s*\{?\s*-?[0-9]{3}", s):
            return False  # huge literals, base-n numerals (`204_5`: text only), exponents of 100 and more
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


# ----------------------------------------------------------------------------------------------------------
# Equivalence
# ----------------------------------------------------------------------------------------------------------
class _Judge:
    """One comparison's scalar and relation verdicts, sharing one deadline and a cap on child requests."""

    def __init__(self, timeout_s: float, wait_for_worker: bool) -> None:
        self.deadline = time.monotonic() + timeout_s
        self.wait_for_worker = wait_for_worker
        self.child_calls = 0
        self.ring = Ring()  # one work limit for every algebra comparison of this answer
        self.comparisons = 0  # pairs compared by algebra; past MAX_COMPARISONS a pair counts as unequal

    def child(self, p: str, g: str) -> bool:
        if self.child_calls >= MAX_CHILD_CALLS or not _symbolic_ok(p, g):
            return False
        self.child_calls += 1
        worker = shared_worker()
        if self.wait_for_worker:
            worker.warm_up()
            self.deadline = max(self.deadline, time.monotonic() + SYMBOLIC_TIMEOUT_S)
        return bool(worker.equivalent(p, g, deadline=self.deadline))

    def scalar(self, p: str, g: str) -> bool:
        p, g = p.strip(), g.strip()
        verdict, gv = _plain_verdict(p, g)
        if verdict is not None:
            return verdict
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            return False
        verdict = same_value(p, g, self.ring)
        if gv is not None:
            return verdict is True  # `\cos\frac{\pi}{3}` for 1/2
        return verdict if verdict is not None else self.child(p, g)

    def relation(self, p: tuple, g: tuple) -> bool:
        if len(p[2]) != 1 or len(g[2]) != 1:
            return False  # an equation chain `x = 5+5+1 = 7 = 11`
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            return False
        pr, gr = (p[1][0], p[2][0], p[1][1]), (g[1][0], g[2][0], g[1][1])
        verdict = same_relation(pr, gr, self.ring)
        return verdict if verdict is not None else self.child(" ".join(pr), " ".join(gr))


def clear_caches() -> None:
    """Forget cached canonical forms, values, parsed expressions and math-verify verdicts (benchmarks, tests)."""
    canon.cache_clear()
    value.cache_clear()
    expr_tree.parse.cache_clear()
    shared_worker().clear_cache()


def equal(pred: str, gold: str, *, timeout_s: float = SYMBOLIC_TIMEOUT_S, wait_for_worker: bool = False) -> bool:
    """True when two short final answers are the same mathematical answer (gold already normalised).

    >>> equal("1,080", "1080"), equal(r"\\dfrac43", r"\\frac{4}{3}"), equal("(x+1)^2", "x^2+2x+1")
    (True, True, True)
    >>> equal("0.333", r"\\frac13"), equal("3, 4, 5", "4"), equal("4, 500", "4500")
    (False, False, False)

    `timeout_s` is the safety net for the whole comparison (only the math-verify child can come near it);
    `wait_for_worker` (eval) first waits for a cold child instead of counting its start-up against it.
    """
    if not isinstance(pred, str) or not isinstance(gold, str) or len(pred) > MAX_ANSWER_CHARS:
        return False
    gc, pc = canon(gold), canon(pred)
    if gc is None or pc is None or not pc:
        return False
    verdict, gv = _plain_verdict(pc, gc, labels=True)
    if verdict is not None:
        return verdict
    if gv is not None:  # a numeric gold is decided here, exactly, and never goes to the child
        return same_value(_label(pc)[1], _label(gc)[1]) is True  # `\cos\frac{\pi}{3}` for 1/2
    judge = _Judge(timeout_s, wait_for_worker)
    return shapes.compare(shapes.parse(pc), shapes.parse(gc), judge.scalar, judge.relation)
