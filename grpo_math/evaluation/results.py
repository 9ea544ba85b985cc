"""Results files of eval.py: the partial records file an interrupted eval resumes from, the one-line summary,
and the comparison of a run's checkpoints (results/<run>/summary.json and the table eval.sh prints).

    summary = summarize("results/demo")      # base.json, checkpoint-N.json, final.json -> summary.json
    print(format_table(summary))             # accuracy, lenient, format, tokens, each with its change from base

A partial file starts with a header line holding the eval's settings; a rerun with the same settings (every
RESUME_KEYS value equal) resumes from it, one with other settings moves it aside to `.stale` and starts over.
Left out on purpose: comparing results on different data (summarize warns and leaves the rows side by side).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from grpo_math.runs.best_checkpoint import read_best
from grpo_math.runs.rundir import CHECKPOINT_RE, write_atomic

logger = logging.getLogger(__name__)

# Settings that change what a record means: a partial file or an earlier result is reused only when all agree.
# Left out: batch_size and device (resuming with a smaller batch after an out-of-memory error is the point).
RESUME_KEYS = ("model_dir", "model_fingerprint", "base_model", "dataset_id", "split", "limit", "prompt_template",
               "prompt_lang", "system_prompt", "max_prompt_length", "max_completion_length", "temperature", "top_p",
               "num_samples", "seed", "reward_funcs", "reward_weights", "dtype", "use_vllm")
SUMMARY_COLUMNS = ("accuracy", "accuracy_lenient", "format_rate", "mean_completion_tokens")


class EvalError(ValueError):
    """Bad input to eval.py (a flag, a results directory); the message is one line naming it."""


@dataclass(frozen=True)
class EvalSettings:
    """Every setting of one eval, resolved once by eval.py (flags, then the run's RunConfig, then its defaults),
    as training's are one frozen RunConfig. `to_record()` is the results file's "config" (JSON, same keys)."""

    model_dir: str
    model_fingerprint: str | None
    base_model: str | None
    run_dir: str | None
    step: int | None
    dataset_id: str
    split: str
    limit: int | None
    prompt_template: str
    prompt_lang: str
    system_prompt: str | None
    chat_template_kwargs: dict | None
    max_prompt_length: int
    max_completion_length: int
    temperature: float
    top_p: float
    num_samples: int
    seed: int
    batch_size: int
    reward_funcs: list[str]
    reward_weights: list[float] | None
    device: str
    dtype: str
    use_vllm: bool
    output_file: str
    versions: dict
    git_commit: str | None
    command: str
    # known once the data and tokenizer are loaded, then once the eval has run
    dropped_long_prompts: int | None = None
    dropped_no_usable_gold: int | None = None
    dropped_empty_question: int | None = None
    n_examples: int | None = None
    started: str | None = None
    finished: str | None = None

    def to_record(self) -> dict:
        """The settings as the results file stores them (the timestamps only once known)."""
        record = dataclasses.asdict(self)
        for late in ("dropped_long_prompts", "dropped_no_usable_gold", "dropped_empty_question", "n_examples", "started", "finished"):
            if record[late] is None:
                del record[late]
        return record


def _record(config: EvalSettings | dict) -> dict:
    return config.to_record() if isinstance(config, EvalSettings) else config


def differing_settings(a: EvalSettings | dict, b: EvalSettings | dict) -> list[str]:
    """The RESUME_KEYS on which two eval configs differ (a results file's "config", or EvalSettings)."""
    a, b = _record(a), _record(b)
    return [k for k in RESUME_KEYS if a.get(k) != b.get(k)]


def summary_line(config: EvalSettings | dict, metrics: dict, path: Path) -> str:
    config = _record(config)
    k = config["num_samples"]
    correct = round(metrics["accuracy"] * metrics["num_completions"])
    parts = [f"accuracy {100 * metrics['accuracy']:.1f}% ({correct}/{metrics['num_completions']})",
             f"lenient {100 * metrics['accuracy_lenient']:.1f}%", f"format {100 * metrics['format_rate']:.1f}%"]
    if k > 1:
        parts += [f"pass@{k} {100 * metrics[f'pass@{k}']:.1f}%", f"maj@{k} {100 * metrics[f'maj@{k}']:.1f}%"]
    parts += [f"{metrics['mean_completion_tokens']:.1f} tokens", f"truncated {100 * metrics['truncation_rate']:.1f}%"]
    if metrics.get("completions_per_second"):
        parts.append(f"{metrics['completions_per_second']:.1f} completions/s")
    if metrics.get("num_resumed"):
        parts.append(f"{metrics['num_resumed']} resumed")
    name = Path(config["model_dir"]).name if config["run_dir"] else config["model_dir"]
    return f"{name}: " + ", ".join(parts) + f" -> {path}"


def open_partial(partial: Path, config: EvalSettings | dict) -> None:
    """Keep a partial file written with the same settings; move any other aside; start one with a header."""
    if partial.is_file():
        try:
            with open(partial, encoding="utf-8") as f:
                header = json.loads(f.readline()).get("config") or {}
        except (ValueError, AttributeError):
            header = {}
        differ = differing_settings(header, config) if header else ["header"]
        if not differ:
            logger.info("resuming from %s", partial)
            return
        stale = partial.with_name(partial.name + ".stale")
        logger.warning("%s was written with other settings (%s); moved to %s, starting over", partial,
                       ", ".join(differ), stale)
        partial.replace(stale)
    write_atomic(partial, json.dumps({"config": _record(config)}, ensure_ascii=False) + "\n")



# ---------------------------------------------------------------------------------------------------------------
# Comparing a run's results (eval.sh)


def _order(name: str) -> tuple[int, int]:
    m = CHECKPOINT_RE.fullmatch(name)
    return (0, 0) if name == "base" else (1, int(m.group(1))) if m else (2, 0)


def summarize(results_dir: str | Path) -> dict:
    """Collect base.json, checkpoint-N.json and final.json of `results_dir` into summary.json (written
    atomically) with each one's change from base; returns the summary."""
    d = Path(results_dir)
    names = re.compile(r"base|final|checkpoint-\d+")
    files = sorted((f for f in d.glob("*.json") if names.fullmatch(f.stem)), key=lambda f: _order(f.stem))
    if not files:
        raise EvalError(f"--summarize {results_dir}: no base.json, checkpoint-N.json or final.json there")
    rows = []
    for f in files:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
            metrics, config = data["metrics"], data["config"]
        except (ValueError, KeyError, TypeError) as e:
            raise EvalError(f"{f}: not an eval.py results file ({e})") from None
        step = 0 if f.stem == "base" else config.get("step")
        rows.append({"name": f.stem, "step": step, **{k: metrics.get(k) for k in SUMMARY_COLUMNS},
                     "n": metrics.get("n"), "dataset": f"{config.get('dataset_id')} [{config.get('split')}]",
                     "file": f.name})
    if len({(r["dataset"], r["n"]) for r in rows}) > 1:
        logger.warning("%s: results on different data are not comparable: %s", d,
                       "; ".join(f"{r['name']}: {r['dataset']} n={r['n']}" for r in rows))
    base = next((r for r in rows if r["name"] == "base"), None)
    for r in rows:
        for k in SUMMARY_COLUMNS:
            r[f"delta_{k}"] = r[k] - base[k] if base and None not in (r[k], base[k]) else None
    best = _best_of_run(d)  # the run's kept best checkpoint (best_checkpoint.py), marked in the table
    for r in rows:
        r["best"] = bool(best) and r["step"] == best["step"] and r["name"] != "base"
    summary = {"results_dir": str(d), "base": base["name"] if base else None, "rows": rows,
               "best_checkpoint": best}
    write_atomic(d / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _best_of_run(d: Path) -> dict | None:
    """The run's best_checkpoint.json, found through the run_dir its results name (eval.py writes it)."""
    for f in d.glob("*.json"):
        try:
            run_dir = json.loads(f.read_text(encoding="utf-8"))["config"]["run_dir"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if run_dir:
            return read_best(run_dir)
    return None


def format_table(summary: dict) -> str:
    """The comparison table eval.sh prints: percentages, and the change from base in points."""
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    def delta(v: float | None, scale: float = 100.0, unit: str = "pp") -> str:
        return "" if v is None else f" ({scale * v:+.1f}{unit})"

    head = f"{'checkpoint':<16}{'step':>6}  {'accuracy':<18}{'lenient':<18}{'format':<18}{'tokens':<16}"
    lines = [head, "-" * len(head)]
    for r in summary["rows"]:
        base = r["name"] == "base"
        lines.append(
            f"{r['name'] + (' *' if r.get('best') else ''):<16}{'-' if r['step'] is None else r['step']:>6}  "
            f"{pct(r['accuracy']) + ('' if base else delta(r['delta_accuracy'])):<18}"
            f"{pct(r['accuracy_lenient']) + ('' if base else delta(r['delta_accuracy_lenient'])):<18}"
            f"{pct(r['format_rate']) + ('' if base else delta(r['delta_format_rate'])):<18}"
            f"{'-' if r['mean_completion_tokens'] is None else format(r['mean_completion_tokens'], '.1f')}"
            f"{'' if base else delta(r['delta_mean_completion_tokens'], 1.0, '')}")
    best = summary.get("best_checkpoint")
    if best and any(r.get("best") for r in summary["rows"]):
        lines.append(f"* the best in-run eval (step {best['step']}, {best['eval_accuracy']:.1%}), kept as {best['path']}")
    return "\n".join(lines)


