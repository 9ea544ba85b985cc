"""The run directory: atomic files, whole checkpoints, the lock, report, plots, health warnings, provenance.

    rundir        the run directory's file names, atomic writes, reading a run back
    checkpoints   whole checkpoints, what makes one resumable, which one `latest` means
    runlock       one run at a time in a run directory
    divergence    non-finite losses, gradients, weights: named where they start, never published
    report        training_report.json's numbers and the end-of-run summary
    plots         the PNGs
    health        plain-words warnings for GRPO's silent failures
    provenance    package versions and the git commit
    diskfull      a full disk while writing: one line naming what was being written
    best_checkpoint  the best in-run eval's checkpoint, kept as best/
"""

__all__ = ["best_checkpoint", "checkpoints", "diskfull", "divergence", "health", "plots", "provenance", "report", "rundir", "runlock"]  # the public modules; `_name` ones are this package's own
