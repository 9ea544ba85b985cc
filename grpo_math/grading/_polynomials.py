"""Exact polynomial arithmetic over Q with radicals of primes: the ring _algebra.py evaluates answers in.

    ring = Ring(); ring.mul({(("x", Fraction(1)),): Fraction(1)}, ONE)   # x * 1

A polynomial is a dict {monomial: Fraction}; a monomial is a sorted tuple of (name, exponent) with exponent a
nonzero Fraction. Names: variables (`x`, `a_1`, `\\pi`, `e`), `#p` for a prime p (`#2` with exponent 1/2 is
sqrt 2; exponents of `#p` stay in [0, 1), the rest is pulled into the coefficient, so sqrt2 * sqrt2 is 2;
`#-1` with exponent 1/2 is i), and `@...` opaque atoms named by their argument's canonical key. Every product
is counted: past WORK_LIMIT term multiplications, MAX_TERMS terms or MAX_BITS bits in a coefficient the
operation raises Undecided. Left out on purpose: division of polynomials (_algebra.py keeps quotients as
numerator/denominator pairs), factorisation, radicals of anything but rationals.
"""
from __future__ import annotations

import math
from fractions import Fraction

from grpo_math.grading._expr_tree import Undecided

WORK_LIMIT = 12_000  # term operations per answer: ~0.1 s of Fraction arithmetic at the very worst
MAX_TERMS = 400  # terms in one polynomial
MAX_BITS = 4_000  # bits of one coefficient (numerator + denominator)
MAX_EXPONENT = 100  # integer powers of a sum
MAX_RADICAND = 10**9  # trial division stays under ~3 ms


# ----------------------------------------------------------------------------------------------------------
# The exact ring: polynomials {monomial: Fraction}, a monomial a sorted tuple of (name, exponent)
# ----------------------------------------------------------------------------------------------------------
ONE: dict = {(): Fraction(1)}


class Ring:
    def __init__(self) -> None:
        self.work = 0

    def spend(self, n: int) -> None:
        self.work += n
        if self.work > WORK_LIMIT:
            raise Undecided

    @staticmethod
    def check(c: Fraction) -> Fraction:
        if c.numerator.bit_length() + c.denominator.bit_length() > MAX_BITS:
            raise Undecided
        return c

    @staticmethod
    def _put(out: dict, m: tuple, v: Fraction) -> None:
        """Add v to the term m of out, dropping the term when it cancels."""
        v += out.get(m, 0)
        if v:
            out[m] = v
        else:
            out.pop(m, None)

    @staticmethod
    def _capped(out: dict) -> dict:
        if len(out) > MAX_TERMS:
            raise Undecided
        return out

    def add(self, p: dict, q: dict, sign: int = 1) -> dict:
        self.spend(len(q))
        out = dict(p)
        for m, c in q.items():
            self._put(out, m, sign * c)
        return self._capped(out)

    def mul(self, p: dict, q: dict) -> dict:
        self.spend(len(p) * len(q))
        out: dict = {}
        for m1, c1 in p.items():
            for m2, c2 in q.items():
                m, k = mono_mul(m1, m2)
                self._put(out, m, self.check(c1 * c2 * k))
        return self._capped(out)

    def power(self, p: dict, k: int) -> dict:
        if k > MAX_EXPONENT and len(p) > 1:
            raise Undecided
        out, base = ONE, p
        while k:
            if k & 1:
                out = self.mul(out, base)
            k >>= 1
            if k:
                base = self.mul(base, base)
        return out


def mono_mul(m1: tuple, m2: tuple) -> tuple[tuple, Fraction]:
    """Product of two monomials and the rational factor that reducing prime radicals pulls out."""
    if not m1 or not m2:
        return (m1 or m2), Fraction(1)
    exps = dict(m1)
    for name, e in m2:
        exps[name] = exps.get(name, 0) + e
    return reduced(exps)


def reduced(exps: dict) -> tuple[tuple, Fraction]:
    """A monomial with every prime radical's exponent in [0, 1), and the rational factor pulled out."""
    factor = Fraction(1)
    for name in [n for n in exps if n[0] == "#"]:
        whole = math.floor(exps[name])  # p^(7/2) = p^3 * p^(1/2)
        if whole:
            factor *= Fraction(int(name[1:])) ** whole
            exps[name] -= whole
    return tuple(sorted((n, e) for n, e in exps.items() if e)), factor


def factor(n: int) -> dict[int, int]:
    if n > MAX_RADICAND:
        raise Undecided
    out, p = {}, 2
    while p * p <= n:
        while n % p == 0:
            out[p] = out.get(p, 0) + 1
            n //= p
        p += 1 if p == 2 else 2
    if n > 1:
        out[n] = out.get(n, 0) + 1
    return out


def key(num: dict, den: dict) -> str:
    """A canonical name for a quotient (den scaled to leading coefficient 1)."""
    lead = den[min(den)]
    return repr((sorted((m, c / lead) for m, c in num.items()), sorted((m, c / lead) for m, c in den.items())))
