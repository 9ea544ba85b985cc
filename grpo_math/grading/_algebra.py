"""Exact symbolic equality in pure Python: expressions evaluated in _polynomials.py's ring, bounded work.

    same_value(r"\\frac{\\sqrt3}{2}", r"\\frac12\\sqrt{3}")   # True
    same_value("(x+1)^2", "x^2+2x+1")                   # True
    same_value(r"\\tan^2 y + 1", r"\\sec^2 y")           # True
    same_value(r"\\sqrt2 + 10^{-99}", r"\\sqrt2")         # False, exactly
    same_value(r"2\\sin x\\cos x", r"\\sin 2x")         # None: not decided here (math-verify's child decides)

equivalence.py's symbolic step, before any child process. A canonical LaTeX answer is parsed (_expr_tree.py)
and evaluated exactly: sums of monomials with `Fraction` coefficients in variables (any rational exponent),
radicals of primes (`\\sqrt{12}` is 2*2^(1/2), `\\sqrt[3]{16}` is 2*2^(1/3), i is (-1)^(1/2)), pi, e, and opaque
atoms (sin u, cos u, ln of a sum, a radical of a sum, a symbolic power) named by their argument's canonical
form. Quotients stay numerator/denominator and compare by cross-multiplying. tan, cot, sec, csc are written
through sin and cos, sin^2 u is rewritten 1 - cos^2 u, sin and cos at multiples of pi/6 and pi/4 are exact
radicals, ln of a monomial is a sum of logs of primes and variables (ln 8 = 3 ln 2, log_2 8 = 3).

Two expressions are equal when their difference is the zero polynomial; unequal, exactly, when it is not and
nothing opaque is involved (distinct monomials in radicals of primes, variables and one of pi or e are
linearly independent over Q); otherwise a float check at fixed points can only prove them unequal, and a
difference it cannot see (`\\sin x + 10^{-20}` against `\\sin x`) is left undecided (None). Deterministic by
construction: no clock, no randomness, no float in a True verdict; the work is counted and capped
(_polynomials.py's limits, integer exponents up to 10,000 for one term and 100 for a sum, radicands up to 10^9).
Left out on purpose: angle-sum and double-angle identities, identities of logs of sums, denesting radicals,
factorising (all left to math-verify), sums, integrals, limits.

Why it stays (this module, _expr_tree and _polynomials: ~730 lines), measured by `python bench/algebra.py`
(1,000 MATH-500 completions: the reference solution as the thinking, the gold or another problem's answer
boxed; the 331-case peer set; shared 2-core box under load):

| | math-verify child calls per 1,000 | completions/s | peer set agreement |
|---|---|---|---|
| with the algebra | 0 | ~17,000-32,000 | 307/331 (0 child calls) |
| without it (same_value/same_relation undecided) | 20 | ~3,100-4,900 | 295/331 (18 child calls) |

Every MATH-500 gold that reached the child without it is decided in-process with it, exactly and without a
clock; grading is ~5x faster on that set, and 12 more peer cases agree. Kept.
"""
from __future__ import annotations

import math
from fractions import Fraction

from grpo_math.grading._exact import depth
from grpo_math.grading._expr_tree import Undecided, clearly_different, parse
from grpo_math.grading._polynomials import ONE, Ring, factor, key, reduced

MAX_CHARS = 400  # longest expression parsed
MAX_NESTING = 20  # brackets deep; the parser recurses about four frames per level


_TRIG_RATIO = {"tan": ("sin", "cos"), "cot": ("cos", "sin"), "sec": (None, "cos"), "csc": (None, "sin")}
_H = Fraction(1, 2)
_S3 = {(("#3", _H),): _H}  # sqrt(3)/2
_S2 = {(("#2", _H),): _H}  # sqrt(2)/2
_NEG = lambda p: {m: -c for m, c in p.items()}  # noqa: E731
# cos(k pi / 12) for k = 0..23, where it is a plain radical (multiples of pi/6 and pi/4); None elsewhere
_EXACT_COS = {0: ONE, 2: _S3, 3: _S2, 4: {(): _H}, 6: {}, 8: {(): -_H}, 9: _NEG(_S2), 10: _NEG(_S3),
              12: {(): Fraction(-1)}, 14: _NEG(_S3), 15: _NEG(_S2), 16: {(): -_H}, 18: {}, 20: {(): _H},
              21: _S2, 22: _S3}


def _loses_sign(n: dict, d: dict, e: Fraction) -> bool:
    """True when an even root would make a variable's power odd: sqrt(x^2) is |x|, not x (kept opaque)."""
    if e.denominator % 2:
        return False
    return any(x.denominator == 1 and x.numerator % 2 == 0 and (x * e).denominator == 1 and (x * e).numerator % 2
               for m in (*n, *d) for name, x in m if not name.startswith(("#", "@")))


def _pi_multiple(n: dict, d: dict) -> Fraction | None:
    """t when n/d is t*pi, in turns of pi (so 1/2 is pi/2); None otherwise."""
    if d != ONE or len(n) > 1:
        return None
    if not n:
        return Fraction(0)
    (m, c), = n.items()
    return c if m == (("\\pi", Fraction(1)),) else None


class _RingEvaluator:
    """Evaluates a tree to (numerator, denominator) polynomials."""

    def __init__(self, ring: Ring) -> None:
        self.ring = ring  # shared by every comparison of one answer, so its work limit bounds them all
        self.opaque = False  # an atom whose value the ring cannot see through (sin, ln, a radical of a sum)
        self.transcendentals: set[str] = set()

    def atom(self, name: str, exp: Fraction = Fraction(1)) -> tuple[dict, dict]:
        self.opaque |= name.startswith("@")
        mono, factor = reduced({name: exp})
        return {mono: factor}, ONE

    def normal(self, n: dict, d: dict) -> tuple[dict, dict]:
        """A one-term denominator is divided out (`1/\\sqrt2` is `\\sqrt2/2`), so constants stay polynomials."""
        if len(d) != 1:
            return n, d
        (m, c), = d.items()
        inverse, factor = reduced({name: -e for name, e in m})
        return self.ring.mul(n, {inverse: factor / c}), ONE

    def eval(self, node: tuple) -> tuple[dict, dict]:
        kind = node[0]
        r = self.ring
        if kind == "num":
            return ({(): r.check(node[1])} if node[1] else {}), ONE
        if kind == "var":
            if node[1] in ("\\pi", "e"):
                self.transcendentals.add(node[1])
            return self.atom(node[1])
        if kind == "neg":
            n, d = self.eval(node[1])
            return {m: -c for m, c in n.items()}, d
        if kind == "add":
            n, d = self.eval(node[1][0])
            for child in node[1][1:]:
                n2, d2 = self.eval(child)
                n, d = (r.add(n, n2), d) if d == d2 else (r.add(r.mul(n, d2), r.mul(n2, d)), r.mul(d, d2))
            return n, d
        if kind == "mul":
            n, d = self.eval(node[1][0])
            for child in node[1][1:]:
                n2, d2 = self.eval(child)
                n, d = r.mul(n, n2), (d if d2 == ONE else d2 if d == ONE else r.mul(d, d2))
            return n, d
        if kind == "div":
            (n1, d1), (n2, d2) = self.eval(node[1]), self.eval(node[2])
            if not n2:
                raise Undecided  # division by zero
            return self.normal(r.mul(n1, d2), r.mul(d1, n2))
        if kind == "pow":
            return self.pow(node[1], node[2])
        if kind == "fact":
            n, d = self.eval(node[1])
            if d != ONE or len(n) > 1 or (n and (next(iter(n)) != () or n[()].denominator != 1)):
                raise Undecided
            v = n.get((), Fraction(0))
            if not 0 <= v <= 20:
                raise Undecided
            return {(): Fraction(math.factorial(int(v)))}, ONE
        if kind == "abs":
            n, d = self.eval(node[1])
            if d == ONE and set(n) <= {()}:
                return {(): abs(c) for c in n.values()}, ONE
            return self.atom("@abs" + key(n, d))
        if kind == "fn":
            return self.function(node[1], *self.eval(node[2]))
        raise Undecided

    def function(self, name: str, n: dict, d: dict) -> tuple[dict, dict]:
        """sin, cos (exact at multiples of pi/6 and pi/4), the other four through them; ln of a monomial as a
        sum of logs of primes and variables; anything else an opaque atom."""
        if name in _TRIG_RATIO:  # tan = sin/cos, sec = 1/cos, ...
            top, bottom = _TRIG_RATIO[name]
            num = self.function(top, n, d) if top else (ONE, ONE)
            den = self.function(bottom, n, d)
            return self.normal(self.ring.mul(num[0], den[1]), self.ring.mul(num[1], den[0]))
        if name in ("sin", "cos"):
            turns = _pi_multiple(n, d)
            twelfths = None if turns is None else turns * 12 - (6 if name == "sin" else 0)  # sin u = cos(u - pi/2)
            k = int(twelfths) % 24 if twelfths is not None and twelfths.denominator == 1 else None
            if k in _EXACT_COS:
                return _EXACT_COS[k], ONE
            return self.atom(f"@{name}" + key(n, d))
        if name == "ln" and d == ONE and len(n) == 1:
            (m, c), = n.items()
            if c > 0 and all(not x.startswith(("@", "#")) and not (e.denominator == 1 and e.numerator % 2 == 0)
                             for x, e in m):  # ln(x^2) is 2 ln|x|, not 2 ln x: left opaque
                out: dict = {}
                for p, k in list(factor(c.numerator).items()) + [(p, -k) for p, k in factor(c.denominator).items()]:
                    out = self.ring.add(out, {((f"@ln#{p}", Fraction(1)),): Fraction(k)})
                for x, e in m:
                    out = self.ring.add(out, {((f"@ln{x}", Fraction(1)),): e})
                self.opaque = True
                return out, ONE
        if name == "exp" and not n:
            return ONE, ONE
        return self.atom(f"@{name}" + key(n, d))

    def reduce_trig(self, p: dict) -> dict:
        """sin(u)^k -> sin(u)^(k mod 2) (1 - cos(u)^2)^(k//2) in every term: sin^2 + cos^2 is 1 whatever u is."""
        out: dict = {}
        for m, c in p.items():
            high = [(name, e) for name, e in m if name.startswith("@sin") and e >= 2 and e.denominator == 1]
            term = {tuple((x, e % 2 if (x, e) in high else e) for x, e in m if (x, e) not in high or e % 2): c}
            for name, e in high:
                one_minus_cos2 = {(): Fraction(1), ((("@cos" + name[4:]), Fraction(2)),): Fraction(-1)}
                term = self.ring.mul(term, self.ring.power(one_minus_cos2, int(e) // 2))
            out = self.ring.add(out, term)
        return out

    def pow(self, base_node: tuple, exp_node: tuple) -> tuple[dict, dict]:
        n, d = self.eval(base_node)
        en, ed = self.eval(exp_node)
        if ed != ONE or set(en) - {()}:  # a symbolic exponent: 2^x, 10^{\sqrt{13}}
            if n == {(("e", Fraction(1)),): Fraction(1)} and d == ONE:
                return self.atom("@exp" + key(en, ed))
            return self.atom("@pow" + key(n, d) + key(en, ed))
        e = en.get((), Fraction(0))
        if e.denominator == 1:
            k = int(e)
            if abs(k) > 10_000:
                raise Undecided
            if k < 0:
                if not n:
                    raise Undecided
                n, d, k = d, n, -k
            return self.normal(self.ring.power(n, k), self.ring.power(d, k))
        if len(n) == 1 and len(d) == 1 and not _loses_sign(n, d, e):  # a monomial to a rational power
            (mn, cn), = n.items()
            (md, cd), = d.items()
            c = cn / cd
            sign = None
            if c < 0 and e.denominator % 2 == 0:
                if e.denominator != 2:  # a fourth root of a negative is not i times a real: undecided here
                    return self.atom("@pow" + key(n, d) + repr(e))
                # principal value: (-4)^(1/2) = 2i, (-4)^(3/2) = (2i)^3 = -8i, (-4)^(-1/2) = -i/2
                i_power = Fraction(1) if e.numerator % 4 == 1 else Fraction(-1)
                sign = ({(("#-1", Fraction(1, 2)),): i_power}, ONE)
                c = -c
            out = self.radical(c, e)
            for name, x in mn:
                out = (self.ring.mul(out[0], self.atom(name, x * e)[0]), out[1])
            for name, x in md:
                out = (self.ring.mul(out[0], self.atom(name, -x * e)[0]), out[1])
            return (self.ring.mul(out[0], sign[0]), out[1]) if sign else out
        return self.atom("@pow" + key(n, d) + repr(e))

    def radical(self, c: Fraction, e: Fraction) -> tuple[dict, dict]:
        """c**e for rational c and rational non-integer e, as coefficient times radicals of primes."""
        sign = Fraction(-1) if c < 0 else Fraction(1)  # odd roots of negatives: (-8)^(1/3) = -2
        if c < 0 and e.numerator % 2 == 0:
            sign = Fraction(1)
        c = abs(c)
        if c == 0:
            if e < 0:
                raise Undecided
            return {}, ONE
        coef, mono = sign, []
        for p, k in list(factor(c.numerator).items()) + [(p, -k) for p, k in factor(c.denominator).items()]:
            x = k * e
            whole = math.floor(x)
            coef *= Fraction(p) ** whole
            if x - whole:
                mono.append((f"#{p}", x - whole))
        return {tuple(sorted(mono)): self.ring.check(coef)}, ONE


# ----------------------------------------------------------------------------------------------------------
# Public: expressions and relations
# ----------------------------------------------------------------------------------------------------------
def _difference(a: tuple, b: tuple, ring: Ring) -> tuple[dict, dict, _RingEvaluator]:
    ev = _RingEvaluator(ring)
    (n1, d1), (n2, d2) = ev.eval(a), ev.eval(b)
    diff = ev.ring.add(ev.ring.mul(n1, d2), ev.ring.mul(n2, d1), -1)
    return ev.reduce_trig(diff), ev.ring.mul(d1, d2), ev


def _exact_verdicts(ev: _RingEvaluator) -> bool:
    """True when a nonzero formal difference proves the values differ (nothing opaque, one transcendental)."""
    return not ev.opaque and len(ev.transcendentals) <= 1


def _too_big(*exprs: str) -> bool:
    return any(len(e) > MAX_CHARS or depth(e) > MAX_NESTING for e in exprs)


def same_value(a: str, b: str, ring: Ring | None = None) -> bool | None:
    """Whether two canonical expressions are equal: True/False when decided exactly, None when not.

    `ring` carries the work limit across several comparisons (equivalence.py shares one per answer).
    """
    if _too_big(a, b):
        return None
    try:
        ta, tb = parse(a), parse(b)
        diff, _, ev = _difference(ta, tb, ring or Ring())
        if not diff:
            return True
        if _exact_verdicts(ev):
            return False
        return False if clearly_different(ta, tb) else None
    except (Undecided, RecursionError, ArithmeticError, ValueError, TypeError):
        return None


_FLIP = {"<": ">", "\\le": "\\ge"}


def same_relation(a: tuple[str, str, str], b: tuple[str, str, str], ring: Ring | None = None) -> bool | None:
    """Whether `lhs op rhs` relations are the same (`x \\ge 3` and `3 \\le x`; `2x+4y=3` and `y=-x/2+3/4`).

    Each becomes `D op 0` with op in (=, \\neq, >, \\ge): equal when the ops agree and one D is a rational
    multiple of the other (positive for inequalities). None when undecided.
    """
    try:
        forms = []
        for lhs, op, rhs in (a, b):
            if op in _FLIP:
                lhs, op, rhs = rhs, _FLIP[op], lhs
            if _too_big(lhs, rhs):
                return None
            n, d, ev = _difference(parse(lhs), parse(rhs), ring or Ring())
            if op in (">", "\\ge") and (set(d) - {()}):
                return None  # a variable denominator may flip an inequality
            forms.append((op, n, d.get((), Fraction(1)) if op in (">", "\\ge") else Fraction(1), ev))
    except (Undecided, RecursionError, ArithmeticError, ValueError, TypeError):
        return None
    (op1, n1, s1, ev1), (op2, n2, s2, ev2) = forms
    if op1 != op2:
        return False
    if not n1 or not n2:
        return not n1 and not n2
    m = min(n1)
    if m not in n2 or set(n1) != set(n2):
        return False if _exact_verdicts(ev1) and _exact_verdicts(ev2) else None
    c = n1[m] / n2[m]
    if any(n1[k] != c * n2[k] for k in n1):
        return False if _exact_verdicts(ev1) and _exact_verdicts(ev2) else None
    return c * s2 / s1 > 0 if op1 in (">", "\\ge") else True
