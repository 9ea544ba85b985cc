"""What "correct" means, for the rewards and eval alike: extraction, normalisation and equivalence.

    answers       the public API: extract an answer, normalise a gold, grade one against the other
    extraction    where the final answer sits in a text (boxes, anchored phrases, display math)
    equivalence   are two final answers equal: canonical text, numbers, shapes, expressions, the child
    worker        math-verify in a child process that counts its own work

Modules with a leading underscore are this package's own (`_canonical`, `_exact`, `_shapes`, `_expr_tree`,
`_polynomials`, `_algebra`: canonical text and the in-process exact engines); nothing outside `grading/` imports them.
"""

__all__ = ["answers", "equivalence", "extraction", "worker"]  # the public modules; `_name` ones are this package's own
