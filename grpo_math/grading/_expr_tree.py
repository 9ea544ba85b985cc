"""LaTeX answers as expression trees: a small parser over canonical LaTeX, and float evaluation of a tree.

    parse(r"\\frac{x+1}{2}")         # ('div', ('add', [('var', 'x'), ('num', Fraction(1, 1))]), ('num', ...))
    clearly_different(parse("x^2"), parse("x^3"))   # True: they differ at a fixed point

Used by _algebra.py, which evaluates trees exactly; the float evaluation here only ever proves two trees
different (at fixed points, never random). The grammar: numbers, single-letter and Greek variables with
subscripts, + - * / ^ !, implicit multiplication (`2x`, `\\frac12\\sqrt3`), `\\frac`, `\\sqrt[n]`, |..|, pi, e, i,
sin..tanh, ln, log and log_b, exp. Left out on purpose: `\\infty`, sums, integrals, limits, unknown macros,
towers (`a^{b^c}`): each raises Undecided.
"""
from __future__ import annotations

import cmath
import math
import re
from fractions import Fraction
from functools import lru_cache


class Undecided(Exception):
    """Outside the exact subset, or over a work limit."""



# ----------------------------------------------------------------------------------------------------------
# Parsing: canonical LaTeX -> tree of tuples
# ----------------------------------------------------------------------------------------------------------
_FUNCS = {"sin", "cos", "tan", "sec", "csc", "cot", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "ln",
          "log", "exp"}
_GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "kappa",
          "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "phi", "varphi", "chi", "psi", "omega", "Omega", "Phi"}
_TOKEN = re.compile(r"\s*(?:([0-9]+(?:\.[0-9]*)?|\.[0-9]+)|\\([A-Za-z]+)|([A-Za-z]+)|([-+*/^_(){}\[\]!|]))")
_BINARY = {"cdot": "*", "times": "*", "div": "/"}


def _tokens(s: str) -> list[str]:
    out, pos = [], 0
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m:
            if s[pos:].strip():
                raise Undecided
            break
        pos = m.end()
        num, cmd, word, op = m.groups()
        if num:
            out.append(num)
        elif cmd:
            out.append(_BINARY.get(cmd, "\\" + cmd))
        elif word:  # `ab` is a*b, but `sin` without its backslash is still sin
            out += ["\\" + word] if word in _FUNCS or word in ("pi", "sqrt") else list(word)
        else:
            out.append(op)
    return out


class _Parser:
    """Recursive descent from canonical LaTeX to a tree (no values: _algebra evaluates trees exactly, this module
    in floats). Its grammar, one method per rule; anything else raises Undecided:

        expr       := signed (("+" | "-") signed)*
        signed     := ("+" | "-")* term
        term       := power (("*" | "/") power | power)*           -- juxtaposition multiplies: `2x`, `3\\sqrt2`
        power      := postfix ("^" exponent)?                     -- no towers
        exponent   := ("+" | "-") exponent | group | postfix
        postfix    := atom "!"*
        group      := "{" expr "}" | "(" expr ")" | DIGIT | atom  -- `\\frac12`: one digit per argument, as TeX
        atom       := "{" expr "}" | "(" expr ")" | "[" expr "]" | "|" expr "|" | NUMBER
                    | LETTER subscript? | "\\frac" group group | "\\sqrt" ("[" expr "]")? group
                    | "\\pi" | "e" | "i" | GREEK subscript? | function
        subscript  := "_" (ALNUM | "{" ALNUM+ "}")
        function   := FUNC ("^" exponent)? fn_arg                 -- \\sin^2 x; log_b, ln, exp, sin..tanh
        fn_arg     := "(" expr ")" | "{" expr "}" | "[" expr "]" | factor+
    """

    def __init__(self, s: str) -> None:
        self.t, self.i = _tokens(s), 0
        if not self.t:
            raise Undecided

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise Undecided
        self.i += 1
        return tok

    def parse(self) -> tuple:
        tree = self.expr()
        if self.peek() is not None:
            raise Undecided
        return tree

    def expr(self) -> tuple:
        terms = [self.signed()]
        while self.peek() in ("+", "-"):
            sign = self.take()
            term = self.signed()
            terms.append(term if sign == "+" else ("neg", term))
        return terms[0] if len(terms) == 1 else ("add", terms)

    def signed(self) -> tuple:
        if self.peek() in ("+", "-"):
            sign = self.take()
            if self.peek() in ("+", "-"):
                raise Undecided  # `--72`: a doubled sign is a typo or a trick, not an answer
            return ("neg", self.term()) if sign == "-" else self.term()
        return self.term()

    def term(self) -> tuple:
        node = self.power()
        while True:
            tok = self.peek()
            if tok in ("*", "/"):
                self.take()
                rhs = self.power()
                node = ("mul", [node, rhs]) if tok == "*" else ("div", node, rhs)
            elif tok is not None and self._starts_factor(tok):
                node = ("mul", [node, self.power()])
            else:
                return node

    @staticmethod
    def _starts_factor(tok: str) -> bool:
        return tok[0].isdigit() or tok[0] == "." or tok[0].isalpha() or tok in ("(", "{", "[") \
            or (tok[0] == "\\" and tok not in ("\\right",))

    def power(self) -> tuple:
        base = self.postfix()
        if self.peek() != "^":
            return base
        self.take()
        exp = self.exponent()
        if self.peek() == "^":
            raise Undecided  # towers
        return ("pow", base, exp)

    def exponent(self) -> tuple:
        if self.peek() in ("-", "+"):
            return ("neg", self.exponent()) if self.take() == "-" else self.exponent()
        if self.peek() in ("{", "("):
            return self.group()
        return self.atom()

    def postfix(self) -> tuple:
        node = self.atom()
        while self.peek() == "!":
            self.take()
            node = ("fact", node)
        return node

    def group(self) -> tuple:
        """A braced or bracketed group; a bare token stands for one (`\\frac12`, `\\sqrt3`, `x^2`)."""
        close = {"{": "}", "(": ")", "[": "]"}.get(self.peek() or "")
        if close is None:
            tok = self.peek() or ""
            if tok[:1].isdigit():  # `\frac12` is 1/2: one digit per argument, as TeX reads it
                self.t[self.i:self.i + 1] = [tok[0]] + ([tok[1:]] if tok[1:] else [])
            return self.atom()
        self.take()
        node = self.expr()
        self.take(close)
        return node

    def atom(self) -> tuple:
        tok = self.peek()
        if tok is None:
            raise Undecided
        if tok in ("{", "(", "["):
            return self.group()
        if tok == "|":
            self.take()
            node = self.expr()
            self.take("|")
            return ("abs", node)
        self.take()
        if tok[0].isdigit() or tok[0] == ".":
            return ("num", Fraction(tok))
        if tok[0].isalpha():
            return self.subscripted(tok)
        name = tok[1:]
        if name == "frac":
            return ("div", self.group(), self.group())
        if name == "sqrt":
            index = ("num", Fraction(2))
            if self.peek() == "[":
                index = self.group()
            return ("pow", self.group(), ("div", ("num", Fraction(1)), index))
        if name == "pi":
            return ("var", "\\pi")
        if name in _GREEK:
            return self.subscripted(tok)
        if name in _FUNCS:
            return self.function(name)
        raise Undecided  # \infty, \sum, \int, unknown macros

    def subscripted(self, name: str) -> tuple:
        if self.peek() == "_":
            self.take()
            sub = self.take()
            if sub == "{":
                parts = []
                while self.peek() != "}":
                    parts.append(self.take())
                self.take("}")
                sub = "".join(parts)
            name = f"{name}_{sub}"
        if name == "e":
            return ("var", "e")  # Euler's number, as math-verify reads it
        if name == "i":
            return ("pow", ("num", Fraction(-1)), ("num", Fraction(1, 2)))
        return ("var", name)

    def function(self, name: str) -> tuple:
        power = None
        if self.peek() == "^":  # \sin^2 x
            self.take()
            power = self.exponent()
        if name == "log" and self.peek() == "_":
            self.take()
            base = self.group() if self.peek() in ("{", "(") else self.atom()
            node = ("div", ("fn", "ln", self.fn_arg()), ("fn", "ln", base))
        else:
            node = ("fn", name, self.fn_arg())
        return ("pow", node, power) if power is not None else node

    def fn_arg(self) -> tuple:
        if self.peek() in ("(", "{", "["):
            return self.group()
        factors = [self.power()]  # `\sin 2x` is sin(2x); `\sin b \cos a` is sin(b) cos(a)
        while self.peek() is not None and self._starts_factor(self.peek()) and self.peek()[1:] not in _FUNCS:
            factors.append(self.power())
        return factors[0] if len(factors) == 1 else ("mul", factors)


@lru_cache(maxsize=4096)  # a list's items are parsed once, however many pairs they are compared in
def parse(s: str) -> tuple:
    """The expression tree of a canonical LaTeX expression (never mutated); raises Undecided outside the subset."""
    return _Parser(s).parse()


# ----------------------------------------------------------------------------------------------------------
# Numeric evaluation (only ever used to prove two expressions different)
# ----------------------------------------------------------------------------------------------------------
_POINTS = ((0.5772156649, 1.3247179572, 0.7390851332, 1.6180339887, 0.9189385332),
           (1.2020569031, 0.3183098862, 1.4142135624, 0.2614972128, 0.6931471806))
_NUM_FUNCS = {"sin": cmath.sin, "cos": cmath.cos, "tan": cmath.tan, "sec": lambda z: 1 / cmath.cos(z),
              "csc": lambda z: 1 / cmath.sin(z), "cot": lambda z: 1 / cmath.tan(z), "arcsin": cmath.asin,
              "arccos": cmath.acos, "arctan": cmath.atan, "sinh": cmath.sinh, "cosh": cmath.cosh,
              "tanh": cmath.tanh, "ln": cmath.log, "log": cmath.log10, "exp": cmath.exp}


def _num(node: tuple, env: dict[str, complex]) -> complex:
    kind = node[0]
    if kind == "num":
        return complex(node[1])
    if kind == "var":
        return {"\\pi": math.pi, "e": math.e}.get(node[1], env.get(node[1], 0))
    if kind == "neg":
        return -_num(node[1], env)
    if kind == "add":
        return sum(_num(c, env) for c in node[1])
    if kind == "mul":
        out = complex(1)
        for c in node[1]:
            out *= _num(c, env)
        return out
    if kind == "div":
        return _num(node[1], env) / _num(node[2], env)
    if kind == "pow":
        base, exp = _num(node[1], env), _num(node[2], env)
        if base.imag == 0 and base.real < 0 and exp.imag == 0 and (1 / exp.real) % 2 == 1:
            return -((-base) ** exp)  # real odd roots of negatives
        return base ** exp
    if kind == "fact":
        return complex(math.gamma(_num(node[1], env).real + 1))
    if kind == "abs":
        return complex(abs(_num(node[1], env)))
    return _NUM_FUNCS[node[1]](_num(node[2], env))


def _names(node: tuple, out: set) -> set:
    if node[0] == "var":
        out.add(node[1])
    for child in node[1:]:
        if isinstance(child, tuple):
            _names(child, out)
        elif isinstance(child, list):
            for c in child:
                _names(c, out)
    return out


def clearly_different(a: tuple, b: tuple) -> bool:
    names = sorted(_names(a, set()) | _names(b, set()))
    for point in _POINTS:
        env = {n: complex(point[k % len(point)] + k // len(point)) for k, n in enumerate(names)}
        try:
            va, vb = _num(a, env), _num(b, env)
        except (ZeroDivisionError, OverflowError, ValueError, KeyError):
            continue
        if not (cmath.isfinite(va) and cmath.isfinite(vb)):
            continue
        if abs(va - vb) > 1e-6 * max(1.0, abs(va), abs(vb)):
            return True
    return False
