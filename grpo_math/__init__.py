"""The engine behind main.py, train.py, eval.py, reward.py, data_utils.py, inference.py and visualize.py.

One job per sub-package (ARCHITECTURE.md has the map and which way imports go):

    grading/      what "correct" means: extraction, normalisation, equivalence, the math-verify child
    data/         datasets as the data contract, prompt templates, the built-in arithmetic task
    models/       loading models (hub, local, GGUF), generation and the inference copy, the tiny and demo models
    training/     the GRPOTrainer subclass (every use of TRL internals), callbacks, the checks that build the config
    evaluation/   `evaluate` (generate, grade, pass@k, maj@k), results files and tables
    runs/         the run directory: atomic files, checkpoints, the lock, report, plots, health, provenance
    runtime/      device and dtype, ranks and launches, signals
    config        the frozen run settings (imports nothing from the package)
    cli           what the command lines share, without torch
    rewards       the reward functions, their registry, a user's own reward

Nothing here changes the environment or reads flags at import time.
"""
