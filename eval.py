"""Score a model or checkpoint on a math split, and compare the checkpoints of a run.

    python eval.py --model_dir ckpts/demo/final --dataset_id ../shared/data/gsm8k --split "test[:16]"
    python eval.py --model_dir Qwen/Qwen2.5-0.5B-Instruct --num_samples 8 --temperature 0.7   # pass@8, maj@8
    python eval.py --summarize results/demo        # summary.json + table of a run's results (eval.sh calls it)

"Correct" is `reward.grade`, the extraction and equivalence the training rewards use, and each record's
`reward` is the run's own reward sum (`reward_funcs` x `reward_weights` from run_config.json, through
`reward.load_reward_funcs`, given completions in the shape TRL gives them), so an eval number and a training
curve mean the same thing. Settings the run fixed (dataset, prompt template and language, completion length,
rewards) default to the run's; a flag overrides. Generation goes through `rollout.generate`, batched with
prompts sorted by length (longest first, so an out-of-memory shows in the first batch), or vLLM (`--use_vllm`).

The output JSON (`--output_file`, default results/<run>/<checkpoint>.json) holds `config` (all that is needed
to reproduce the numbers), `metrics` and `records` (one per example and sample). Records are appended to
`<output_file>.partial.jsonl` as each batch finishes; a rerun with the same output file and the same settings
resumes from it, a rerun with different settings moves it aside to `.stale` and starts over (the user asked for
new settings; the old partial stays on disk until the next mismatch). The final JSON is written atomically,
so a failed run never truncates an earlier results file.

Metrics: `accuracy` is the mean of `correct` over every completion (with K samples that is the pass@1
estimate); `pass@K` is the unbiased estimator of Chen et al. 2021, 1 - C(n-c, K)/C(n, K) per problem, averaged;
`maj@K` scores the most common prediction of each problem (equivalent answers grouped by
`reward.answers_match`, ties to the first seen, no answer never votes).
A resumed eval writes the records an uninterrupted one would have, sampled ones included, as long as the batch
size is the same (each batch's seed is fixed by its place in the length order; a different --batch_size on
resume is allowed, for an out-of-memory error, and then only the statistics are the same).
`--run_dir` takes those defaults for a model that is not inside the run (eval.sh passes it for the base
model); `--skip_existing` leaves a results file alone when its settings and weights match (eval.sh uses it).
Left out on purpose: beam search, a judge model, several processes or GPUs in one eval.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_DATASET = "openai/gsm8k"
DEFAULT_TEMPLATE = "think"
DEFAULT_REWARDS = ["format", "accuracy"]  # main.py's default --reward_funcs
DEFAULT_MAX_COMPLETION_LENGTH = 512  # without a run to take it from: room for a GSM8K chain of thought
# Settings that change what a record means: a partial file or an earlier result is reused only when all agree.
# Left out: batch_size and device (resuming with a smaller batch after an out-of-memory error is the point).
RESUME_KEYS = ("model_dir", "model_fingerprint", "base_model", "dataset_id", "split", "limit", "prompt_template",
               "prompt_lang", "system_prompt", "max_prompt_length", "max_completion_length", "temperature", "top_p",
               "num_samples", "seed", "reward_funcs", "reward_weights", "dtype", "use_vllm")
SUMMARY_COLUMNS = ("accuracy", "accuracy_lenient", "format_rate", "mean_completion_tokens")

# (prompt ids of a batch, seed or None) -> completion ids cut after the first EOS: rollout.generate or vLLM
GenerateFn = Callable[[list[list[int]], "int | None"], list[list[int]]]


class EvalError(ValueError):
    """Bad input to eval.py (a flag, a results directory); the message is one line naming it."""


# ---------------------------------------------------------------------------------------------------------------
# Metrics


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with `n` samples of which `c` are correct (Chen et al. 2021, eq. 1).

    >>> pass_at_k(4, 1, 2)    # 1 - C(3,2)/C(4,2) = 1 - 3/6
    0.5
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:  # every draw of k samples holds a correct one
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_vote(predictions: Sequence[str | None]) -> int | None:
    """Index of the first member of the largest group of equivalent predictions (ties: the group seen first).

    Equivalence is `reward.answers_match`, so "1,080" and "1080" vote together; None (no answer) never votes.
    """
    from reward import answers_match

    groups: list[list[int]] = []  # in order of first occurrence; max() keeps the first of equal sizes
    for i, pred in enumerate(predictions):
        if pred is None or not str(pred).strip():
            continue
        for group in groups:
            if answers_match(pred, predictions[group[0]]):
                group.append(i)
                break
        else:
            groups.append([i])
    return max(groups, key=len)[0] if groups else None


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def compute_metrics(records: list[dict], num_samples: int = 1) -> dict:
    """The quality metrics of finished records (any order); timing is added by `evaluate`."""
    by_index: dict[int, list[dict]] = {}
    for r in sorted(records, key=lambda r: (r["index"], r["sample"])):
        by_index.setdefault(r["index"], []).append(r)
    rewards = [r["reward"] for r in records if r.get("reward") is not None]
    metrics = {
        "n": len(by_index),
        "num_completions": len(records),
        "accuracy": _mean([float(r["correct"]) for r in records]),
        "accuracy_lenient": _mean([float(r["correct_lenient"]) for r in records]),
        "format_rate": _mean([float(r["format_ok"]) for r in records]),
        "mean_reward": _mean(rewards) if rewards else None,
        "mean_completion_tokens": _mean([r["num_tokens"] for r in records]),
        "truncation_rate": _mean([float(r["truncated"]) for r in records]),
    }
    if num_samples > 1:
        groups = list(by_index.values())
        for k in sorted({1, num_samples}):
            metrics[f"pass@{k}"] = _mean([pass_at_k(len(g), sum(r["correct"] for r in g), k) for g in groups])
        winners = [majority_vote([r["prediction"] for r in g]) for g in groups]
        metrics[f"maj@{num_samples}"] = _mean([float(w is not None and g[w]["correct"])
                                               for g, w in zip(groups, winners)])
    return metrics


# ---------------------------------------------------------------------------------------------------------------
# Tokens in, records out


def encode_prompts(tokenizer, prompts: Sequence) -> list[list[int]]:
    """Token ids of each prompt: chat messages through the chat template (with the generation prompt),
    plain strings as they are (no special tokens added), as TRL builds them for training."""
    out: list[list[int] | None] = [None] * len(prompts)
    chats = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    texts = [i for i, p in enumerate(prompts) if isinstance(p, str)]
    if chats:
        ids = tokenizer.apply_chat_template([prompts[i] for i in chats], add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"]
        for i, x in zip(chats, ids):
            out[i] = list(x)
    if texts:
        ids = tokenizer(text=[prompts[i] for i in texts], add_special_tokens=False)["input_ids"]
        for i, x in zip(texts, ids):
            out[i] = list(x)
    return out  # type: ignore[return-value]


def eos_token_ids(model, tokenizer) -> list[int]:
    """Every id that ends a completion: the model's generation config (Qwen lists two) and the tokenizer's."""
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    candidates = ([config_eos] if isinstance(config_eos, int) else list(config_eos or [])) + [tokenizer.eos_token_id]
    return list(dict.fromkeys(i for i in candidates if i is not None))


def decode(tokenizer, completion_ids: list[list[int]]) -> list[str]:
    """Completion text as TRL decodes it for the rewards (special tokens, such as the EOS, dropped)."""
    return tokenizer.batch_decode(completion_ids, skip_special_tokens=True)


def score_completions(rows: Sequence[dict], texts: Sequence[str], completion_ids: Sequence[list[int]],
                      reward_funcs: Sequence[Callable], reward_weights: Sequence[float] | None = None) -> list[dict]:
    """`grade` and the weighted training reward of each completion, given the dataset row it answers.

    Rewards are called as GRPOTrainer calls them: chat prompts get completions as assistant messages, every
    dataset column but `prompt` is passed by name, a None is skipped in the weighted sum (TRL's nansum) and
    a completion every reward returned None for gets None.
    """
    from reward import grade

    weights = list(reward_weights) if reward_weights is not None else [1.0] * len(reward_funcs)
    if len(weights) != len(reward_funcs):
        raise ValueError(f"{len(weights)} reward weights for {len(reward_funcs)} reward functions")
    prompts = [r["prompt"] for r in rows]
    completions = [t if isinstance(p, str) else [{"role": "assistant", "content": t}] for p, t in zip(prompts, texts)]
    columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"} if rows else {}
    per_func = {fn.__name__: list(fn(prompts=prompts, completions=completions, completion_ids=list(completion_ids),
                                     **columns)) for fn in reward_funcs}
    out = []
    for i, (row, text) in enumerate(zip(rows, texts)):
        g = grade(text, row["answer"], row["prompt"], lenient=True)
        parts = {name: values[i] for name, values in per_func.items()}
        terms = [w * v for w, v in zip(weights, parts.values()) if v is not None]
        out.append({**g, "reward": sum(terms) if terms else None, "rewards": parts})
    return out


def _read_records(path: Path) -> list[dict]:
    """Records of a partial file; a torn last line (killed mid-write) is cut off so appends stay line-aligned."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    good: list[str] = []
    records: list[dict] = []
    for n, line in enumerate(lines, 1):
        try:
            obj = json.loads(line)
            if not line.endswith("\n"):
                raise ValueError("no newline")
        except ValueError:
            logger.warning("%s: dropping unreadable line %d of %d (an interrupted write)", path, n, len(lines))
            continue
        good.append(line)
        if isinstance(obj, dict) and "index" in obj and "sample" in obj:
            records.append(obj)
    if len(good) != len(lines):
        _write_atomic(path, "".join(good))
    return records


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def evaluate(model, tokenizer, dataset, *, max_completion_length: int = 512, batch_size: int = 32,
             temperature: float = 0.0, top_p: float = 1.0, num_samples: int = 1, seed: int = 0,
             records_file: str | Path | None = None, progress: bool = False,
             reward_funcs: Sequence[str] | None = None, reward_weights: Sequence[float] | None = None,
             generate_fn: GenerateFn | None = None) -> tuple[dict, list[dict]]:
    """Generate `num_samples` completions per example of `dataset` (data_utils schema) and score them.

    Returns (metrics, records sorted by example then sample). Works on a PEFT model in training mode: it is
    put in eval mode under no_grad for the duration and its mode restored after.
    1. Records already in `records_file` (same example and sample index) are kept and not generated again.
    2. The remaining (example, sample) pairs are sorted by prompt length, longest first, and batched.
    3. Each batch is generated (`generate_fn`, default rollout.generate), decoded, graded, rewarded
       (`reward_funcs` names, default format + accuracy) and appended to `records_file`.
    """
    import torch

    from reward import load_reward_funcs
    from rollout import generate

    if min(num_samples, batch_size, max_completion_length) < 1:
        raise ValueError(f"num_samples ({num_samples}), batch_size ({batch_size}) and max_completion_length "
                         f"({max_completion_length}) must be at least 1")
    if len(dataset) == 0:
        raise ValueError("evaluate: the dataset is empty")
    if temperature == 0 and num_samples > 1:
        logger.warning("num_samples %d with greedy decoding: every sample is the same; set a temperature",
                       num_samples)
    funcs = load_reward_funcs(list(reward_funcs or DEFAULT_REWARDS), max_completion_length=max_completion_length)
    rows = dataset.to_list()
    eos = eos_token_ids(model, tokenizer)
    if generate_fn is None:
        def generate_fn(prompt_ids: list[list[int]], batch_seed: int | None) -> list[list[int]]:
            return generate(model, prompt_ids, max_new_tokens=max_completion_length, eos_token_ids=eos,
                            pad_token_id=tokenizer.pad_token_id, temperature=temperature, top_p=top_p,
                            seed=batch_seed)

    # 1. resume
    path = Path(records_file) if records_file is not None else None
    wanted = {(i, s) for i in range(len(rows)) for s in range(num_samples)}
    done = {(r["index"], r["sample"]): r for r in (_read_records(path) if path else [])}
    if set(done) - wanted:
        logger.warning("%s: ignoring %d records outside this dataset/num_samples", path, len(set(done) - wanted))
    done = {k: v for k, v in done.items() if k in wanted}
    # 2. work list
    prompt_ids = encode_prompts(tokenizer, [r["prompt"] for r in rows])
    order = sorted(wanted, key=lambda t: (-len(prompt_ids[t[0]]), t))
    # Finished records are a prefix of `order` (batches run in order), so the batches left, and the seed each
    # gets from its place in `order`, are those an uninterrupted run would have had: a resume changes nothing.
    todo = [(pos, t) for pos, t in enumerate(order) if t not in done]
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(todo), desc="eval", unit="completion", file=sys.stderr)
    # 3. generate and score
    new: list[dict] = []
    was_training = model.training
    model.eval()
    t0 = time.perf_counter()
    try:
        with torch.no_grad():
            for start in range(0, len(todo), batch_size):
                first_pos, batch = todo[start][0], [t for _, t in todo[start:start + batch_size]]
                ids = generate_fn([prompt_ids[i] for i, _ in batch], seed + first_pos if temperature > 0 else None)
                batch_rows, texts = [rows[i] for i, _ in batch], decode(tokenizer, ids)
                scored = score_completions(batch_rows, texts, ids, funcs, reward_weights)
                recs = [_record(i, s, row, text, c_ids, sc, max_completion_length, eos)
                        for (i, s), row, text, c_ids, sc in zip(batch, batch_rows, texts, ids, scored)]
                if path is not None:
                    with open(path, "a", encoding="utf-8") as f:
                        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recs))
                        f.flush()
                        os.fsync(f.fileno())
                new.extend(recs)
                if bar is not None:
                    bar.update(len(recs))
    finally:
        model.train(was_training)
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    records = sorted([*done.values(), *new], key=lambda r: (r["index"], r["sample"]))
    metrics = compute_metrics(records, num_samples)
    metrics.update(wall_time_s=round(wall, 3), completions_per_second=round(len(new) / wall, 3) if wall > 0 else None,
                   num_generated=len(new), num_resumed=len(done))
    return metrics, records


def _record(index: int, sample: int, row: dict, text: str, ids: list[int], scored: dict,
            max_completion_length: int, eos: list[int]) -> dict:
    return {
        "index": index, "sample": sample, "prompt": row["prompt"], "question": row.get("question"),
        "completion": text, "solution": row.get("solution"), "answer": row["answer"],
        "prediction": scored["prediction"], "prediction_lenient": scored["prediction_lenient"],
        "reward": scored["reward"], "rewards": scored["rewards"], "correct": scored["correct"],
        "correct_lenient": scored["correct_lenient"], "format_ok": scored["format_ok"],
        "format_score": scored["format_score"], "num_tokens": len(ids),
        # cut by the length limit: no EOS at the end of a full-length completion
        "truncated": len(ids) >= max_completion_length and not (ids and ids[-1] in eos),
    }


# ---------------------------------------------------------------------------------------------------------------
# Comparing a run's results (eval.sh)


def _order(name: str) -> tuple[int, int]:
    m = re.fullmatch(r"checkpoint-(\d+)", name)
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
    summary = {"results_dir": str(d), "base": base["name"] if base else None, "rows": rows}
    _write_atomic(d / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


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
            f"{r['name']:<16}{'-' if r['step'] is None else r['step']:>6}  "
            f"{pct(r['accuracy']) + ('' if base else delta(r['delta_accuracy'])):<18}"
            f"{pct(r['accuracy_lenient']) + ('' if base else delta(r['delta_accuracy_lenient'])):<18}"
            f"{pct(r['format_rate']) + ('' if base else delta(r['delta_format_rate'])):<18}"
            f"{'-' if r['mean_completion_tokens'] is None else format(r['mean_completion_tokens'], '.1f')}"
            f"{'' if base else delta(r['delta_mean_completion_tokens'], 1.0, '')}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# The command line


def build_parser() -> argparse.ArgumentParser:
    """eval.py's flags; unset ones marked "run's" come from the run's run_config.json when there is one."""
    from data_utils import LANGS, TEMPLATES
    from devices import HelpFormatter, OneLineParser, add_device_flags

    p = OneLineParser(prog="eval.py", description="Score a model or checkpoint on a math split (see the docstring).",
                      formatter_class=HelpFormatter)
    p.add_argument("--summarize", metavar="RESULTS_DIR", help="only write RESULTS_DIR/summary.json and print the "
                                                              "table of its base/checkpoint-N/final.json")
    g = p.add_argument_group("model")
    g.add_argument("--model_dir", help="final/ or checkpoint-N/ (LoRA adapter), a full model directory, or a hub id")
    g.add_argument("--base_model", help="base model of an adapter (default: the adapter's config, else the run's)")
    g.add_argument("--run_dir", help="take defaults from this run's run_config.json (default: the run "
                                     "--model_dir belongs to; eval.sh passes it for the base model)")
    add_device_flags(g, "generate")
    g.add_argument("--use_vllm", action="store_true", help="generate with vLLM (needs vllm; adapters are merged)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset_id", help=f"hub id, local file or directory, or arithmetic (default: run's, else "
                                        f"{DEFAULT_DATASET})")
    g.add_argument("--split", help="split, datasets slicing allowed: test[:5%%] (default: the dataset's test split)")
    g.add_argument("--limit", type=int, help="score only the first N examples of the split (default: all)")
    g.add_argument("--prompt_template", choices=list(TEMPLATES), help=f"default: run's, else {DEFAULT_TEMPLATE}")
    g.add_argument("--prompt_lang", choices=list(LANGS), help="language of the template (default: run's, else en)")
    g.add_argument("--system_prompt", help="replace the template's system prompt (default: run's)")
    g.add_argument("--max_prompt_length", type=int,
                   help="drop prompts longer than this many tokens, and count them (default: keep all)")
    g = p.add_argument_group("generation and scoring")
    g.add_argument("--max_completion_length", type=int,
                   help=f"tokens per completion (default: run's, else {DEFAULT_MAX_COMPLETION_LENGTH})")
    g.add_argument("--batch_size", type=int, default=32, help="completions generated together")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass, (0, 1]")
    g.add_argument("--num_samples", type=int, default=1, help="completions per problem, K: pass@K and maj@K")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (and the built-in arithmetic problems)")
    g.add_argument("--reward_funcs", nargs="+", help="rewards summed into each record's `reward` (default: run's, "
                                                     "else format accuracy)")
    g.add_argument("--reward_weights", nargs="+", type=float, help="one per reward (default: run's, else 1.0 each)")
    g = p.add_argument_group("output")
    g.add_argument("--output_file", help="results JSON (default: results/<run>/<checkpoint>.json)")
    g.add_argument("--skip_existing", action="store_true",
                   help="do nothing if --output_file already holds results with these settings (eval.sh uses it)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, help="progress bar (default: on a terminal)")
    return p


def _check_flags(a: argparse.Namespace) -> None:
    for name in ("limit", "max_prompt_length", "max_completion_length", "batch_size", "num_samples"):
        value = getattr(a, name)
        if value is not None and value < 1:
            raise EvalError(f"--{name} {value} must be a positive integer")
    if a.temperature < 0:
        raise EvalError(f"--temperature {a.temperature} must be >= 0 (0 = greedy)")
    if not 0 < a.top_p <= 1:
        raise EvalError(f"--top_p {a.top_p} must be in (0, 1]")
    if a.num_samples > 1 and a.temperature == 0:
        raise EvalError(f"--num_samples {a.num_samples} with greedy decoding gives {a.num_samples} identical "
                        "samples; add --temperature (e.g. 0.6)")
    if a.use_vllm:
        import importlib.util
        if importlib.util.find_spec("vllm") is None:
            raise EvalError("--use_vllm: vllm is not installed here; pip install vllm, or drop --use_vllm")


def _is_local(model_dir: str) -> bool:
    return Path(model_dir).expanduser().exists() or model_dir.startswith((".", "/", "~")) or model_dir.count("/") > 1


def _run_of(a: argparse.Namespace) -> tuple[Path | None, dict]:
    """The run directory and its run_config.json: --run_dir, else the run --model_dir sits in."""
    if a.run_dir:
        path = Path(a.run_dir) / "run_config.json"
        try:
            return Path(a.run_dir), json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise EvalError(f"--run_dir {a.run_dir}: no readable run_config.json ({type(e).__name__})") from None
    if _is_local(a.model_dir):
        from model_io import find_run_config

        d = Path(a.model_dir).expanduser().resolve()
        run_dir = next((c for c in (d, d.parent) if (c / "run_config.json").is_file()), None)
        if run_dir is not None:
            return run_dir, find_run_config(d) or {}
    return None, {}


def _step(model_dir: str, run_cfg: dict) -> int | None:
    """Training step of a checkpoint-N (N) or final/ (the last step: the run's max_steps or newest checkpoint)."""
    d = Path(model_dir)
    m = re.fullmatch(r"checkpoint-(\d+)", d.name)
    if m:
        return int(m.group(1))
    if d.name != "final" or not d.is_dir():
        return None
    steps = [int(c.name[11:]) for c in d.parent.glob("checkpoint-*") if c.name[11:].isdigit()]
    max_steps = run_cfg.get("args", {}).get("max_steps") or -1
    return max(steps + ([max_steps] if max_steps > 0 else [])) if steps or max_steps > 0 else None


def _fingerprint(model_dir: str) -> str | None:
    """Names, sizes and times of the weight files: a retrained checkpoint in the same place is not reused."""
    d = Path(model_dir).expanduser()
    if not d.is_dir():
        return None  # a hub id: the id names the weights
    files = sorted(f for f in d.iterdir() if f.suffix in (".safetensors", ".bin") and f.is_file())
    return ";".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files) or None


def _default_output(model_dir: str, run_dir: Path | None, run_args: dict) -> Path:
    name = Path(model_dir).expanduser().resolve().name if _is_local(model_dir) else model_dir.replace("/", "--")
    if run_dir is None:
        return Path("results") / f"{name}.json"
    if model_dir == run_args.get("model_id"):
        name = "base"
    return Path("results") / run_dir.name / f"{name}.json"


def resolve_config(a: argparse.Namespace) -> dict:
    """Every setting of this eval, flags first, then the run's, then the defaults; checked, nothing loaded."""
    if not a.model_dir:
        raise EvalError("--model_dir is required (a final/ or checkpoint-N/ directory, a model directory or a hub id)")
    _check_flags(a)
    local = _is_local(a.model_dir)
    if local and not Path(a.model_dir).expanduser().is_dir():
        raise EvalError(f"--model_dir {a.model_dir}: no such directory")
    run_dir, run_cfg = _run_of(a)
    run_args = run_cfg.get("args", {})

    from data_utils import default_eval_split
    from devices import dtype_name, resolve_placement
    from model_io import is_adapter_dir, resolve_base_model
    from reward import load_reward_funcs
    from provenance import git_commit, package_versions  # provenance as run_config.json records it

    dataset_id = a.dataset_id or run_args.get("dataset_id") or DEFAULT_DATASET
    rewards_from_run = a.reward_funcs is None and run_args.get("reward_funcs")
    reward_funcs = a.reward_funcs or run_args.get("reward_funcs") or list(DEFAULT_REWARDS)
    reward_weights = a.reward_weights if a.reward_weights is not None else (
        run_args.get("reward_weights") if rewards_from_run else None)
    if reward_weights is not None and len(reward_weights) != len(reward_funcs):
        raise EvalError(f"--reward_weights has {len(reward_weights)} value(s) for {len(reward_funcs)} reward(s) "
                        f"({' '.join(reward_funcs)})")
    max_completion_length = a.max_completion_length or run_args.get("max_completion_length") \
        or DEFAULT_MAX_COMPLETION_LENGTH
    load_reward_funcs(reward_funcs, max_completion_length=max_completion_length)  # unknown names fail now
    placement = resolve_placement(a.device, a.dtype)
    return {
        "model_dir": str(Path(a.model_dir).expanduser().resolve()) if local else a.model_dir,
        "model_fingerprint": _fingerprint(a.model_dir),
        "base_model": resolve_base_model(a.model_dir, a.base_model) if local and is_adapter_dir(a.model_dir) else None,
        "run_dir": str(run_dir) if run_dir else None,
        "step": _step(a.model_dir, run_cfg),
        "dataset_id": dataset_id,
        "split": a.split or default_eval_split(dataset_id),
        "limit": a.limit,
        "prompt_template": a.prompt_template or run_args.get("prompt_template") or DEFAULT_TEMPLATE,
        "prompt_lang": a.prompt_lang or run_args.get("prompt_lang") or "en",
        "system_prompt": a.system_prompt if a.system_prompt is not None else run_args.get("system_prompt"),
        "max_prompt_length": a.max_prompt_length,
        "max_completion_length": max_completion_length,
        "temperature": a.temperature,
        "top_p": a.top_p,
        "num_samples": a.num_samples,
        "seed": a.seed,
        "batch_size": a.batch_size,
        "reward_funcs": list(reward_funcs),
        "reward_weights": list(reward_weights) if reward_weights is not None else None,
        "device": placement.device,
        "dtype": dtype_name(placement.dtype),
        "use_vllm": a.use_vllm,
        "output_file": str(Path(a.output_file) if a.output_file else _default_output(a.model_dir, run_dir, run_args)),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def _same_settings(a: dict, b: dict) -> list[str]:
    """The RESUME_KEYS on which two configs differ."""
    return [k for k in RESUME_KEYS if a.get(k) != b.get(k)]


def _summary_line(config: dict, metrics: dict, path: Path) -> str:
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


def _open_partial(partial: Path, config: dict) -> None:
    """Keep a partial file written with the same settings; move any other aside; start one with a header."""
    if partial.is_file():
        try:
            with open(partial, encoding="utf-8") as f:
                header = json.loads(f.readline()).get("config") or {}
        except (ValueError, AttributeError):
            header = {}
        differ = _same_settings(header, config) if header else ["header"]
        if not differ:
            logger.info("resuming from %s", partial)
            return
        stale = partial.with_name(partial.name + ".stale")
        logger.warning("%s was written with other settings (%s); moved to %s, starting over", partial,
                       ", ".join(differ), stale)
        partial.replace(stale)
    _write_atomic(partial, json.dumps({"config": config}, ensure_ascii=False) + "\n")


def _cut(ids: list[int], eos: list[int]) -> list[int]:
    return ids[:next((i + 1 for i, t in enumerate(ids) if t in eos), len(ids))]


def _vllm_generate_fn(model, tokenizer, config: dict, eos: list[int]) -> GenerateFn:
    """Generation by vLLM: from the model directory itself, or for an adapter from a merged copy of `model`
    written to a temporary directory (removed at exit). Not exercised by the tests (no vLLM on CPU)."""
    import atexit
    import shutil
    import tempfile

    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    source = config["model_dir"]
    if config["base_model"] is not None:  # vLLM could serve the LoRA itself, but merged is what eval.py scores
        source = tempfile.mkdtemp(prefix="eval-vllm-")
        atexit.register(shutil.rmtree, source, ignore_errors=True)
        model.save_pretrained(source)
        tokenizer.save_pretrained(source)
    llm = LLM(model=source, dtype={"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[config["dtype"]],
              seed=config["seed"])

    def gen(prompt_ids: list[list[int]], seed: int | None) -> list[list[int]]:
        params = SamplingParams(temperature=config["temperature"], top_p=config["top_p"], seed=seed,
                                max_tokens=config["max_completion_length"], stop_token_ids=eos)
        outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompt_ids], params, use_tqdm=False)
        return [_cut(list(o.outputs[0].token_ids), eos) for o in outs]

    return gen


def load_model(model_dir: str, dtype, device: str, base_model: str | None = None) -> tuple:
    """(model, tokenizer) ready to generate; an adapter is merged into its base (model_io.load_for_inference)."""
    from model_io import load_for_inference

    model, tokenizer, _ = load_for_inference(model_dir, dtype, device, base_model)
    return model, tokenizer


def prepare(a: argparse.Namespace) -> tuple | None:
    """Resolve, check, load and open the partial file; None when --skip_existing finds the results up to date.
    Every bad input raises a ValueError (EvalError, DatasetError, ModelLoadError, DeviceError, RewardError)."""
    from data_utils import DatasetError, filter_long_prompts, load_math_dataset
    from devices import DTYPES

    config = resolve_config(a)
    out = Path(config["output_file"])
    if a.skip_existing and out.is_file():
        try:
            old = json.loads(out.read_text(encoding="utf-8"))
            reusable = not _same_settings(old["config"], config)
        except (ValueError, KeyError, TypeError):
            reusable = False
        if reusable:
            print(_summary_line(old["config"], old["metrics"], out) + " (up to date)")
            return None
    try:
        dataset = load_math_dataset(config["dataset_id"], config["split"], max_samples=config["limit"],
                                    prompt_template=config["prompt_template"], prompt_lang=config["prompt_lang"],
                                    system_prompt=config["system_prompt"], seed=config["seed"])
    except DatasetError as e:
        raise EvalError(str(e)) from None
    model, tokenizer = load_model(a.model_dir, DTYPES[config["dtype"]], "cpu" if a.use_vllm else config["device"],
                                  a.base_model)
    dataset, config["dropped_long_prompts"] = filter_long_prompts(dataset, tokenizer, config["max_prompt_length"])
    config["n_examples"] = len(dataset)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial.jsonl")
        _open_partial(partial, config)
    except OSError as e:
        raise EvalError(f"--output_file {out}: cannot write there ({e.strerror or e})") from None
    return model, tokenizer, dataset, config, partial


def run(model, tokenizer, dataset, config: dict, partial: Path, progress: bool | None = None) -> int:
    """Evaluate with `config` (see prepare), resuming from `partial`; write the results JSON atomically."""
    out = Path(config["output_file"])
    eos = eos_token_ids(model, tokenizer)
    generate_fn = _vllm_generate_fn(model, tokenizer, config, eos) if config["use_vllm"] else None
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        metrics, records = evaluate(
            model, tokenizer, dataset, max_completion_length=config["max_completion_length"],
            batch_size=config["batch_size"], temperature=config["temperature"], top_p=config["top_p"],
            num_samples=config["num_samples"], seed=config["seed"], records_file=partial,
            progress=sys.stderr.isatty() if progress is None else progress,
            reward_funcs=config["reward_funcs"], reward_weights=config["reward_weights"], generate_fn=generate_fn)
    except KeyboardInterrupt:
        print(f"eval.py: interrupted; finished records are in {partial}, rerun the same command to resume",
              file=sys.stderr)
        return 130
    config.update(started=started, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    _write_atomic(out, json.dumps({"config": config, "metrics": metrics, "records": records}, indent=1,
                                  ensure_ascii=False) + "\n")
    partial.unlink(missing_ok=True)
    print(_summary_line(config, metrics, out))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The CLI's output is its summary line: no weight-loading bars, no deprecation notes from library internals.
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        a = build_parser().parse_args(argv)
        if a.summarize:
            print(format_table(summarize(a.summarize)))
            return 0
        prepared = prepare(a)
    except ValueError as e:  # bad input only: errors during generation keep their traceback
        print(f"eval.py: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0 if prepared is None else run(*prepared, progress=a.progress)


if __name__ == "__main__":
    sys.exit(main())
