"""Exact values of arithmetic answers: a tiny recursive-descent parser over a subset of LaTeX, on `Fraction`s.

    value("1,080")          # (Fraction(1080), False)
    value("\\frac{3}{4}")   # (Fraction(3, 4), False);  value("25%") -> (Fraction(25), True)

equivalence.py's step 2: `1,080`, `1 080`, `$`, `%`, `pct`, `72.0`, `\\frac{-3}{4}`, `2^{10}`, `5!`, `1.5\\times10^3`,
mixed numbers, currency after the number (`12.50€`) and simple units (`3.5 m²`) evaluate exactly, so near-equal
huge fractions differ; `4, 500` (a comma and a space) is a list, not a number. Sizes are capped: results over
~1,200 digits, factorials over 300!, nesting over 20 are refused (None), and a refused answer is compared as text.
Linear in the input on capped inputs; never builds a sympy object. Left out on purpose: irrational values
(symbolic, equivalence.py's step 4), approximate equality (0.333 is not 1/3).
"""
from __future__ import annotations

import math
import re
from fractions import Fraction
from functools import lru_cache

MAX_ANSWER_CHARS = 1_000  # a final answer longer than this is not a short answer; refuse rather than parse
MAX_BITS = 4_000  # ~1,200 decimal digits: bigger exact intermediates are refused
MAX_NESTING = 20  # brace/paren depth the exact parser accepts (recursion stays far from Python's limit)
PLAIN_NUMBER = re.compile(r"-?[0-9]{1,300}(?:\.[0-9]{1,100})?")

_TOKEN_RE = re.compile(r"\s*(?:([0-9]+(?:\.[0-9]*)?|\.[0-9]+)|(\\frac|\\sqrt|\\cdot|\\times|\\div)(?![A-Za-z])"
                       r"|([-+*/^(){}!]))")
_NOT_UNIT = {"or", "and", "to", "plus", "minus", "times", "over", "divided", "by", "than", "more", "less",
             "at", "least", "most", "not", "nor", "either", "between", "about", "approximately", "around",
             "roughly", "nearly", "almost", "maybe", "possibly", "probably", "perhaps", "if", "is", "are",
             "equals", "pi", "sqrt", "frac", "ln", "log", "sin", "cos", "tan", "inf", "infinity", "squared",
             "cubed", "root", "power", "factorial", "thousand", "million", "billion", "trillion", "hundred",
             "dozen", "half", "halves", "quarter", "third", "thirds", "mod", "modulo", "base", "point", "percent",
             "per", "of", "cent", "negative", "positive", "sq", "cdot", "ldots", "infty", "cup", "cap", "pm", "mp"}


class _Refused(Exception):
    """The expression is outside the exact subset or over a size cap."""


class _ArithmeticParser:
    """Recursive descent over plain arithmetic, evaluated to one exact Fraction as it parses (the value of a
    number-like answer; no variables). Its grammar, one method per rule; anything else raises _Refused:

        expr    := unary (("+" | "-") unary)*
        unary   := ("+" | "-")? term
        term    := power (("*" | "/" | "\\cdot" | "\\times" | "\\div") power)*
        power   := postfix ("^" "-"? postfix)?          -- an integer exponent; no towers
        postfix := atom "!"*                            -- factorials of 0..300
        atom    := NUMBER | "(" expr ")" | "{" expr "}" | "\\frac" group group | "\\sqrt" group
    """

    def __init__(self, s: str) -> None:
        self.toks: list[tuple[str, str]] = []
        pos = 0
        while pos < len(s):
            m = _TOKEN_RE.match(s, pos)
            if not m or m.end() == pos:
                if s[pos:].strip() == "":
                    break
                raise _Refused
            kind = "num" if m.group(1) else "cmd" if m.group(2) else "op"
            self.toks.append((kind, m.group(m.lastindex)))
            pos = m.end()
        self.i = 0

    def _peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def _take(self, want: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks) or (want is not None and self.toks[self.i][1] != want):
            raise _Refused
        self.i += 1
        return self.toks[self.i - 1]

    @staticmethod
    def _check(x: Fraction) -> Fraction:
        if x.numerator.bit_length() + x.denominator.bit_length() > MAX_BITS:
            raise _Refused
        return x

    def value(self) -> Fraction:
        v = self._expr()
        if self.i != len(self.toks):
            raise _Refused  # juxtaposition (`3 4`, `2\pi`) is not arithmetic here
        return v

    def _expr(self) -> Fraction:
        v = self._unary()
        while self._peek() in ("+", "-"):
            op = self._take()[1]
            w = self._unary()
            v = self._check(v + w if op == "+" else v - w)
        return v

    def _unary(self) -> Fraction:
        sign = 1
        if self._peek() in ("+", "-"):
            sign = -1 if self._take()[1] == "-" else 1
        return sign * self._term()

    def _term(self) -> Fraction:
        v = self._power()
        while self._peek() in ("*", "/", "\\cdot", "\\times", "\\div"):
            op = self._take()[1]
            w = self._power()
            if op in ("/", "\\div"):
                if w == 0:
                    raise _Refused
                v = self._check(v / w)
            else:
                v = self._check(v * w)
        return v

    def _power(self) -> Fraction:
        base = self._postfix()
        if self._peek() != "^":
            return base
        self._take()
        sign = 1
        if self._peek() == "-":  # `2^-1`
            self._take()
            sign = -1
        exp = sign * self._postfix()
        if exp.denominator != 1 or self._peek() == "^":  # fractional powers, towers: not here
            raise _Refused
        e = exp.numerator
        size = base.numerator.bit_length() + base.denominator.bit_length()
        if abs(base) != 1 and (abs(e) > 100_000 or size * abs(e) > MAX_BITS or (base == 0 and e < 0)):
            raise _Refused
        return self._check(base ** e if abs(base) != 1 else base ** (e % 2))

    def _postfix(self) -> Fraction:
        v = self._atom()
        while self._peek() == "!":
            self._take()
            if v.denominator != 1 or not 0 <= v <= 300:
                raise _Refused
            v = Fraction(math.factorial(int(v)))
        return v

    def _atom(self) -> Fraction:
        kind, tok = self._take()
        if kind == "num":
            if len(tok) > 400:
                raise _Refused  # compared as text only
            return Fraction(tok)
        if tok in ("(", "{"):
            v = self._expr()
            self._take(")" if tok == "(" else "}")
            return v
        if tok == "\\frac":
            num, den = self._group(), self._group()
            if den == 0:
                raise _Refused
            return self._check(num / den)
        if tok == "\\sqrt":
            v = self._group()
            rn, rd = (math.isqrt(v.numerator), math.isqrt(v.denominator)) if v >= 0 else (0, 0)
            if v < 0 or rn * rn != v.numerator or rd * rd != v.denominator:
                raise _Refused  # irrational: symbolic
            return Fraction(rn, rd)
        raise _Refused

    def _group(self) -> Fraction:
        self._take("{")
        v = self._expr()
        self._take("}")
        return v


def depth(s: str) -> int:
    d = best = 0
    for c in s:
        if c in "({[":
            d += 1
            best = max(best, d)
        elif c in ")}]":
            d -= 1
    return best


@lru_cache(maxsize=65_536)
def value(c: str) -> tuple[Fraction, bool] | None:
    """(exact value, is_percent) of a canonical answer that is plain arithmetic, else None."""
    if PLAIN_NUMBER.fullmatch(c):
        return Fraction(c), False
    s, pct = c, False
    if s.endswith("%"):
        s, pct = s[:-1], True
    else:
        word = re.search(r"(?<![A-Za-z])(?:percent|percentage|pct)$", s, re.IGNORECASE)
        if word:
            s, pct = s[:word.start()], True
    s = s.rstrip()
    if s.endswith(("€", "£", "¥", "元")):  # currency after the number: `12.50€`
        s = s[:-1]
    # a unit tail made of words (`72 apples`, `5 cm^2`, `3.5 m²`, `3 \text{ hours}`): a linear scan, not a regex
    i = len(s)
    unit = re.search(r"(?:\^\{?[23]\}?|[²³])$", s)
    j = unit.start() if unit and re.search(r"[A-Za-z]$", s[:unit.start()]) else i
    i = j
    while i > 0 and (s[i - 1].isascii() and (s[i - 1].isalpha() or s[i - 1] in " .")):
        i -= 1
    tail = s[i:].strip()
    if tail and i > 0 and s[i - 1] != "\\":
        words = tail.replace(".", " ").lower().split()
        squared_metre = j < len(s) and words == ["m"]  # `m²`, `m^3`: the one single-letter unit taken
        if words and len(words) <= 3 and (squared_metre or all(len(w) >= 2 and w not in _NOT_UNIT for w in words)):
            s = s[:i]
    s = s.strip()
    if s.startswith(("$", "€", "£", "¥")):
        s = s[1:]
    # thousands: `1,080` and `1 080` (a space or thin space); `4, 500` (comma and space) is a list, never 4500
    if re.fullmatch(r"[+-]?[1-9][0-9]{0,2}(?:(?:,[0-9]{3})+|(?: [0-9]{3})+)(?:\.[0-9]+)?", s):
        s = s.replace(",", "").replace(" ", "")
    mixed = re.fullmatch(r"([+-]?)([0-9]+)\\frac\{([0-9]+)\}\{([0-9]+)\}", s)
    if mixed and 0 < int(mixed[3]) < int(mixed[4]) and len(s) < 100:  # `1\frac{4}{5}` is 9/5 (MATH's mixed numbers)
        v = int(mixed[2]) + Fraction(int(mixed[3]), int(mixed[4]))
        return (-v if mixed[1] == "-" else v), pct
    if not s or len(s) > MAX_ANSWER_CHARS or depth(s) > MAX_NESTING:
        return None
    try:
        return _ArithmeticParser(s).value(), pct
    except (_Refused, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def num_eq(p: tuple[Fraction, bool], g: tuple[Fraction, bool]) -> bool:
    (pv, ppct), (gv, gpct) = p, g
    if ppct == gpct:
        return pv == gv
    if ppct:  # `25%` answers a gold of 25 (GSM8K drops the sign) or 0.25
        return pv == gv or pv / 100 == gv
    return pv == gv or pv == gv / 100

