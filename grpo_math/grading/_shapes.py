"""Answer shapes: a canonical answer as a list, tuple, interval, set, matrix, labelled value or relation.

    compare(parse("(x,y)=(5,8) and (8,5)"), parse("(5, 8), (8, 5)"), scalar_eq, relation_eq)   # True
    compare(parse("4, 500"), parse("4500"), scalar_eq, relation_eq)                  # False: a list is not one number

equivalence.py parses both canonical answers into shapes and compares them item by item; `scalar_eq` and
`relation_eq` (equivalence.py's judge) decide single expressions and single relations. The rules, each a convention (see reward.py's table):
- items are separated at the top level by `,` (a comma followed by a space always separates: `4, 500` is two
  numbers), `;`, and the words `and` / `or`; `;` separates solutions whose `,` parts are tuples (`p=5,q=2;p=7,q=2`);
- a bare list or a set of solutions matches in any order; a tuple or an interval in order, brackets included;
  a list never matches a single value, except a one-element set `\\{3\\}`;
- a label is dropped (`(p,q)=(3,2)`, `m:n=3:5`, `|PQ|=2`, `AB=4`, `x_{1}=...`, `f(x)=1`), except that two
  different single-letter labels (`x=2` against `y=2`) are different answers;
- `x \\in I` is I; an interval answers a gold `a < x < b` or `x \\ge a` (not the other way round: a gold in
  interval notation wants one); one relation compares with another by _algebra.py (`x \\ge 3` is `3 \\le x`,
  `2x+4y=3` is `y=-x/2+3/4`); `\\pm` is its two values;
- matrices (`pmatrix`, `bmatrix`, `array`) compare entry by entry; a sum or product of numeric matrices is
  evaluated first.
Bounded by the answer's length cap (exact.MAX_ANSWER_CHARS) and the any-order matching (at most MAX_ITEMS squared
comparisons).
Left out on purpose: solving an inequality in |x| into intervals, symbolic matrix arithmetic.
"""
from __future__ import annotations

import re
from typing import Callable

from grpo_math.grading._exact import depth, value

MAX_ITEMS = 40  # longer lists are cut there (and then differ from a longer gold)
MAX_NESTING = 20  # brackets deep; deeper answers are compared as text

Scalar = Callable[[str, str], bool]
_REL = re.compile(r"\\(?:le|ge|neq|approx)(?![A-Za-z])|[<>=]")
_WORD_SEP = re.compile(r"(?<![A-Za-z\\])(?:and|or)(?![a-z])")
_SIMPLE_VAR = re.compile(r"[A-Za-z](?:_(?:\{[0-9A-Za-z]+\}|[0-9A-Za-z]))?|\\[A-Za-z]+")
_SUBSCRIPT = re.compile(r"_(?:\{[^{}]*\}|[0-9A-Za-z])")
_LABEL = re.compile(r"(?:[A-Za-z(),:|' {}]|\\[A-Za-z]+)+")
_MATRIX = re.compile(r"\\begin\{([pbBvV]?matrix|array)\}(?:\{[lcr|]*\})?(.*)\\end\{\1\}", re.DOTALL)


def _top_level(s: str, seps: re.Pattern) -> list[str]:
    """Split at matches of `seps` outside brackets and `{}`; empty parts are dropped."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if c == "\\" and s.startswith(("\\{", "\\}"), i):
            depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            m = seps.match(s, i)
            if m and m.end() > i:
                parts.append(s[start:i])
                start = i = m.end()
                continue
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts if p.strip()]


_COMMA = re.compile(r",")
_SEMI = re.compile(r";")
_ITEM_SEP = re.compile(r",|" + _WORD_SEP.pattern)
_CUP = re.compile(r"\\cup(?![A-Za-z])")


def _balanced_pair(s: str, o: str, c: str) -> bool:
    """True when s is `o ... c` with o closing only at the very end (so `(1,2),(3,4)` is not one pair)."""
    if not (s.startswith(o) and s.endswith(c)) or len(s) < len(o) + len(c):
        return False
    depth = 0
    for k, ch in enumerate(s[len(o):len(s) - len(c)]):
        depth += 1 if ch in "([{" else -1 if ch in ")]}" else 0
        if depth < 0:
            return False
    return depth == 0


def parse(c: str) -> tuple:
    """The shape of a canonical answer (see the module docstring)."""
    c = c.strip()
    if depth(c) > MAX_NESTING:
        return ("scalar", c)  # compared as text (and refused by the symbolic steps)
    m = re.match(r"(?:[A-Za-z](?:_(?:\{[0-9A-Za-z]+\}|[0-9A-Za-z]))?|\\[A-Za-z]+)\s*\\in(?![A-Za-z])\s*", c)
    if m:
        c = c[m.end():]
    groups = _top_level(c, _SEMI)
    if len(groups) > 1:
        return ("list", "", [_group(g) for g in groups[:MAX_ITEMS]])
    items = _expand_pm(_top_level(c, _ITEM_SEP))
    if len(items) > 1:
        return ("list", "", [_item(p) for p in items[:MAX_ITEMS]])
    return _item(items[0]) if items else ("scalar", c)


def _group(g: str) -> tuple:
    items = _top_level(g, _COMMA)
    return ("list", "()", [_item(p) for p in items]) if len(items) > 1 else _item(g)


def _expand_pm(items: list[str]) -> list[str]:
    out = []
    for it in items:
        if it.count("\\pm") == 1 and "\\mp" not in it:
            out += [it.replace("\\pm", "+"), it.replace("\\pm", "-")]
        else:
            out.append(it)
    return out


def _item(p: str) -> tuple:
    p = p.strip()
    unions = _top_level(p, _CUP)
    if len(unions) > 1:
        return ("union", [_item(u) for u in unions])
    m = _MATRIX.fullmatch(p)
    for o, cl in (("(", ")"), ("[", "]")):  # `(\begin{pmatrix}..\end{pmatrix})`, `[\begin{array}..\end{array}]`
        if not m and _balanced_pair(p, o, cl):
            m = _MATRIX.fullmatch(p[1:-1].strip())
    if m and "\\begin" not in m.group(2):
        return ("matrix", _rows(m.group(2)))
    if m:
        return _matrix_arithmetic(p) or ("scalar", p)
    rel = _relation(p)
    if rel is not None:
        return rel
    for o, cl, kind in (("\\{", "\\}", "{}"), ("{", "}", ""), ("(", ")", "()"), ("[", "]", "[]"),
                        ("(", "]", "(]"), ("[", ")", "[)")):
        if _balanced_pair(p, o, cl):
            inner = p[len(o):len(p) - len(cl)]
            parts = _top_level(inner, re.compile(r"[,;]"))
            if len(parts) > 1 or kind == "{}":
                return ("list", kind, [_item(x) for x in parts[:MAX_ITEMS]])
            if kind in ("", "()") and parts:
                return _item(parts[0])  # `(x+1)`, `{5}`: grouping only
    return ("scalar", p)


def _rows(body: str) -> list[list[str]]:
    return [[x.strip() for x in r.split("&")] for r in (r.strip() for r in re.split(r"\\\\", body)) if r]


_ONE_MATRIX = re.compile(r"\\begin\{([pb]matrix)\}(.*?)\\end\{\1\}", re.DOTALL)


def _matrix_arithmetic(p: str) -> tuple | None:
    """`A + B`, `A - B`, `A B` (up to four numeric matrices) evaluated exactly: the sum is the same answer."""
    spans = list(_ONE_MATRIX.finditer(p))
    ops = [p[a.end():b.start()].strip() for a, b in zip(spans, spans[1:])]
    if not 2 <= len(spans) <= 4 or p[:spans[0].start()].strip() or p[spans[-1].end():].strip() \
            or any(o not in ("+", "-", "", "\\cdot", "\\times") for o in ops):
        return None
    mats = []
    for m in spans:
        vals = [[value(x) for x in r] for r in _rows(m.group(2))]
        if not vals or any(v is None or v[1] for r in vals for v in r) or len({len(r) for r in vals}) != 1:
            return None
        mats.append([[v[0] for v in r] for r in vals])
    out = mats[0]
    for op, m in zip(ops, mats[1:]):
        if op in ("+", "-"):
            if (len(out), len(out[0])) != (len(m), len(m[0])):
                return None
            out = [[a + b if op == "+" else a - b for a, b in zip(r1, r2)] for r1, r2 in zip(out, m)]
        else:
            if len(out[0]) != len(m):
                return None
            out = [[sum(row[k] * m[k][j] for k in range(len(m))) for j in range(len(m[0]))] for row in out]
    return ("matrix", [[str(x) for x in r] for r in out])


def _is_label(lhs: str) -> bool:
    bare = _SUBSCRIPT.sub("", lhs).strip()
    return bool(bare) and len(lhs) <= 40 and bool(_LABEL.fullmatch(bare)) and bool(re.search(r"[A-Za-z]", bare))


def _relation(p: str) -> tuple | None:
    ops = [(m.start(), m.end(), m.group()) for m in _REL.finditer(p) if _depth_at(p, m.start()) == 0]
    if not ops:
        return None
    parts, start = [], 0
    for s, e, _ in ops:
        parts.append(p[start:s].strip())
        start = e
    parts.append(p[start:].strip())
    names = ["=" if o == "\\approx" else o for _, _, o in ops]
    if any(not x for x in parts):
        return ("scalar", p)
    if names == ["="] and _is_label(parts[0]):
        return ("label", parts[0], _item(parts[1]))
    return ("rel", parts, names)


def _depth_at(s: str, pos: int) -> int:
    depth = 0
    for ch in s[:pos]:
        depth += 1 if ch in "([{" else -1 if ch in ")]}" else 0
    return depth


_UP = {"<": "()", "\\le": "[]"}
_DOWN = {">": "()", "\\ge": "[]"}


def _as_interval(rel: tuple) -> tuple | None:
    """`a < x \\le b` -> ("list", "(]", [a, b]); `x \\ge a` -> [a, \\infty); None when not one variable's range."""
    _, parts, ops = rel
    var = lambda s: bool(_SIMPLE_VAR.fullmatch(s) or _is_label(s))  # noqa: E731
    if len(ops) == 2 and var(parts[1]):
        lo, hi = (parts[0], parts[2]) if all(o in _UP for o in ops) else (parts[2], parts[0]) \
            if all(o in _DOWN for o in ops) else (None, None)
        if lo is None:
            return None
        (o1, o2) = ops if ops[0] in _UP else ops[::-1]
        brackets = {"<": ("(", ")"), "\\le": ("[", "]"), ">": ("(", ")"), "\\ge": ("[", "]")}
        return ("list", brackets[o1][0] + brackets[o2][1], [("scalar", lo), ("scalar", hi)])
    if len(ops) == 1 and ops[0] in ("<", ">", "\\le", "\\ge"):
        (lhs, rhs), op = parts, ops[0]
        if var(rhs) and not var(lhs):
            lhs, rhs, op = rhs, lhs, {"<": ">", ">": "<", "\\le": "\\ge", "\\ge": "\\le"}[op]
        if not var(lhs):
            return None
        closed = op in ("\\le", "\\ge")
        if op in (">", "\\ge"):
            return ("list", ("[" if closed else "(") + ")", [("scalar", rhs), ("scalar", "\\infty")])
        return ("list", "(" + ("]" if closed else ")"), [("scalar", "-\\infty"), ("scalar", rhs)])
    return None


# ----------------------------------------------------------------------------------------------------------
# Comparison
# ----------------------------------------------------------------------------------------------------------
_COMPATIBLE = {"": {"", "()", "{}"}, "()": {"()", ""}, "{}": {"{}", ""}}


def compare(p: tuple, g: tuple, scalar: Scalar, relation: Callable) -> bool:
    """Whether prediction shape p answers gold shape g; `scalar` decides single expressions, `relation` relations."""
    pk, gk = p[0], g[0]
    if gk == "label":
        if pk == "label":
            if p[1] == g[1]:
                return compare(p[2], g[2], scalar, relation)
            if _SIMPLE_VAR.fullmatch(p[1]) and _SIMPLE_VAR.fullmatch(g[1]):
                return False  # x = 2 is not y = 2
            return compare(p[2], g[2], scalar, relation)
        if pk == "rel" and g[2][0] == "scalar":
            return bool(relation(p, ("rel", [g[1], g[2][1]], ["="])))
        return compare(p, g[2], scalar, relation)
    if pk == "label":
        if gk == "rel" and p[2][0] == "scalar":
            return bool(relation(("rel", [p[1], p[2][1]], ["="]), g))
        return compare(p[2], g, scalar, relation)
    if pk == "rel" or gk == "rel":
        if pk == gk:
            if len(p[2]) == 1 and len(g[2]) == 1:
                return bool(relation(p, g))
            pi, gi = _as_interval(p), _as_interval(g)
            if pi and gi:
                return compare(pi, gi, scalar, relation)
            return p[2] == g[2] and all(scalar(a, b) for a, b in zip(p[1], g[1]))
        if pk == "rel":
            return False  # an inequality does not answer a gold interval (Math-Verify's default agrees)
        interval = _as_interval(g)
        return p[0] == "list" and interval is not None and compare(p, interval, scalar, relation)
    if pk == "scalar" and gk == "scalar":
        return scalar(p[1], g[1])
    if pk == "matrix" or gk == "matrix":
        return pk == gk and len(p[1]) == len(g[1]) and all(
            len(a) == len(b) and all(scalar(x, y) for x, y in zip(a, b)) for a, b in zip(p[1], g[1]))
    if pk == "union" or gk == "union":
        return pk == gk and _any_order(p[1], g[1], scalar, relation)
    if pk != gk:  # a list against one value
        if gk == "list" and g[1] == "{}" and len(g[2]) == 1:
            return compare(p, g[2][0], scalar, relation)
        if pk == "list" and p[1] == "{}" and len(p[2]) == 1:
            return compare(p[2][0], g, scalar, relation)
        return False
    (_, pkind, pitems), (_, gkind, gitems) = p, g
    if pkind not in _COMPATIBLE.get(gkind, {gkind}):
        return False
    if gkind in ("", "{}"):
        return _any_order(pitems, gitems, scalar, relation)
    if len(pitems) != len(gitems):
        return False
    return all(compare(a, b, scalar, relation) for a, b in zip(pitems, gitems))


def _distinct(items: list) -> list:
    """Items with exact repeats dropped: a set of solutions lists each once (`(3,17), (3,17)` is one)."""
    seen: set = set()
    return [it for it in items if not (repr(it) in seen or seen.add(repr(it)))]


def _any_order(pitems: list, gitems: list, scalar: Scalar, relation: Callable) -> bool:
    """Every gold item matched by a distinct prediction item (greedy; items are distinct in practice)."""
    pitems, gitems = _distinct(pitems), _distinct(gitems)
    if len(pitems) != len(gitems):
        return False
    left = list(pitems)
    for g in gitems:
        hit = next((k for k, p in enumerate(left) if compare(p, g, scalar, relation)), None)
        if hit is None:
            return False
        left.pop(hit)
    return True
