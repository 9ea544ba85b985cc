"""Plain-words warnings for the silent failures of GRPO, read from the logged metrics of consecutive steps.

    health = HealthCheck(max_completion_length=256)
    for message in health.update(step, logs):       # every training log; returns the warnings to show now
        logger.warning(message)

No learning signal (nearly every group gives all its completions the same reward), truncated completions
(nearly every one hits --max_completion_length), a reward stuck at 0 (or below) for every completion. Pure logic on the numbers TRL logs, so
it is unit-tested without a model; `callbacks.ConsoleProgress` shows the warnings and TensorBoard records them.
Left out on purpose: a warning on the loss alone (GRPO's loss is not a progress measure).
"""

from __future__ import annotations

from grpo_math.runs.rundir import as_number

# HealthCheck thresholds. "Nearly every" = 90%: a few groups with signal still leave most of the batch idle.
ZERO_STD_FRACTION = 0.9  # share of prompt groups whose completions all got the same reward
CLIPPED_FRACTION = 0.9  # share of completions that hit --max_completion_length
PATIENCE = 3  # consecutive logged steps before warning: one bad batch is noise, three is a pattern
CONSTANT_TOL = 1e-6  # reward std below this (within a step, and mean change across steps) counts as constant


class HealthCheck:
    """Plain-words warnings for GRPO's silent failures, from the logged metrics of consecutive steps.

    Feed it every training log (`update(step, logs)`); it returns the warnings to show now. Each condition
    warns once when it has held for PATIENCE logged steps, and again only after it has cleared and come back.
    """

    def __init__(self, max_completion_length: int | None = None, patience: int = PATIENCE) -> None:
        self.max_completion_length = max_completion_length
        self.patience = patience
        self._streaks: dict[str, list[int]] = {}  # condition -> steps it has held, consecutively
        self._warned: set[str] = set()
        self._last_mean: dict[str, float | None] = {}  # reward name -> its mean at the previous logged step
        self.warnings: list[dict] = []  # every warning given: {"step", "kind", "message"}

    def _track(self, kind: str, holds: bool, step: int) -> list[int] | None:
        """Steps of the current streak when it has just reached `patience` (and was not warned), else None."""
        if not holds:
            self._streaks.pop(kind, None)
            self._warned.discard(kind)
            return None
        streak = self._streaks.setdefault(kind, [])
        streak.append(step)
        if len(streak) >= self.patience and kind not in self._warned:
            self._warned.add(kind)
            return streak[-self.patience:]
        return None

    def update(self, step: int, logs: dict) -> list[str]:
        if "reward" not in logs:  # an eval-only record (step 0) says nothing about training
            return []
        out: list[tuple[str, str]] = []
        zero_std = as_number(logs.get("frac_reward_zero_std"))
        steps = self._track("no_signal", zero_std is not None and zero_std >= ZERO_STD_FRACTION, step)
        if steps:
            out.append(("no_signal", (
                f"no learning signal: at steps {steps[0]}-{steps[-1]}, {zero_std:.0%} of prompt groups gave every "
                "completion the same reward, so their advantages are zero and they teach the model nothing. Try "
                "more completions per prompt (--num_generations), a higher --temperature, easier problems, or a "
                "reward with partial credit.")))
        clipped = as_number(logs.get("completions/clipped_ratio"))
        steps = self._track("truncated", clipped is not None and clipped >= CLIPPED_FRACTION, step)
        if steps:
            limit = f" {self.max_completion_length} tokens" if self.max_completion_length else ""
            out.append(("truncated", (
                f"completions cut off: at steps {steps[0]}-{steps[-1]}, {clipped:.0%} of completions hit "
                f"--max_completion_length{limit} before they ended, so most never reach an answer. Raise "
                "--max_completion_length, or ask for shorter reasoning in the prompt (--system_prompt).")))
        constant = []  # (name, value, steps) of rewards that have just been constant for `patience` steps
        for key in logs:
            if not (key.startswith("rewards/") and key.endswith("/mean")):
                continue
            name = key[len("rewards/"):-len("/mean")]
            mean, std = as_number(logs[key]), as_number(logs.get(f"rewards/{name}/std"))
            previous = self._last_mean.get(name)
            # only a reward stuck at 0 or below needs the user: one every completion already earns (format, once
            # learned) is as it should be, and "no learning signal" covers a reward that no longer separates
            steady = (mean is not None and std is not None and std <= CONSTANT_TOL and mean <= CONSTANT_TOL
                      and (previous is None or abs(mean - previous) <= CONSTANT_TOL))
            self._last_mean[name] = mean
            steps = self._track(f"constant:{name}", steady, step)
            if steps:
                constant.append((name, mean, steps))
        if constant:  # one message for all of them: the demo's random model makes every reward constant at once
            names = ", ".join(f"'{n}' = {v:g}" for n, v, _ in constant)
            steps = constant[0][2]
            out.append(("constant:" + ",".join(n for n, _, _ in constant), (
                f"constant reward: at steps {steps[0]}-{steps[-1]}, {names} for every completion, so "
                f"{'it cannot' if len(constant) == 1 else 'they cannot'} tell completions apart. Check that "
                "each can be earned at all (`python reward.py`) and that the prompt asks for what it checks "
                "(--prompt_template).")))
        for kind, message in out:
            self.warnings.append({"step": step, "kind": kind, "message": message})
        return [m for _, m in out]
