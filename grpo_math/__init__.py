"""The engine behind main.py, train.py, eval.py, reward.py, data_utils.py, inference.py and visualize.py.

One job per module (ARCHITECTURE.md has the map):

    config, checks        the frozen run settings, and every check of them before anything heavy loads
    data, prompts,        datasets as the data contract; prompt templates; the built-in arithmetic task;
    arithmetic, hub       local path or hub id, and whether the Hub answers
    answers, equivalence, extraction and grading (what "correct" means), exact equivalence, math-verify in a
    grader_worker         killable child
    rewards               the reward functions, their registry, a user's own reward
    rollout               generation and the merged inference copy of the policy (no TRL import)
    trainer               the GRPOTrainer subclass and every use of TRL's private API, version-checked
    callbacks, health,    what a user sees during a run: logs, in-run accuracy eval, console, warnings,
    tensorboard           TensorBoard text
    scoring, results      eval: generate + grade + metrics; results files and the checkpoint table
    report, plots         training_report.json, the summary, and the PNGs
    devices, model_io,    device and dtype; loading models with clear errors; the offline tiny model;
    tiny_model,           versions and commit; the run directory's files
    provenance, rundir
    checkpoints, runlock, whole checkpoints and which one to resume from; one run per directory; SIGTERM and
    interrupts            SIGINT as "save and stop"

Nothing here changes the environment or reads flags at import time.
"""
