"""Evaluation: batched generation, grading, pass@k and maj@k; results files and tables.

    scoring       `evaluate` (eval.py and the in-run eval)
    results       the resumable partial file, the summary line, the checkpoint table
"""

__all__ = ["results", "scoring"]  # the public modules; `_name` ones are this package's own
