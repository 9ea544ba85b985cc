"""Scoring: generate completions for a dataset, grade them, and compute the metrics. eval.py and the in-run eval.

    metrics, records = evaluate(model, tokenizer, dataset, max_completion_length=256)            # greedy
    metrics, records = evaluate(model, tokenizer, dataset, temperature=0.7, num_samples=8)      # pass@8, maj@8

"Correct" is `answers.grade`, the extraction and equivalence the training rewards use, and each record's
`reward` is the run's own reward sum (its reward callables x weights, given completions in the shape TRL gives
them), so an eval number and a training curve mean the same thing. Generation goes through `rollout.generate`
(or a `generate_fn`, e.g. vLLM), batched with prompts sorted by length (longest first, so an out-of-memory
shows in the first batch).

Metrics: `accuracy` is the mean of `correct` over every completion (with K samples that is the pass@1
estimate); `pass@K` is the unbiased estimator of Chen et al. 2021, 1 - C(n-c, K)/C(n, K) per problem, averaged;
`maj@K` scores the most common prediction of each problem (equivalent answers grouped by
`answers.answers_match`, ties to the first seen, no answer never votes).
Records are appended to a `records_file` as each batch finishes; a resumed eval writes the records an
uninterrupted one would have, sampled ones included, as long as the batch size is the same (each batch's
seed is fixed by its place in the length order). Left out on purpose: beam search, a judge model, several
processes or GPUs in one eval.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from grpo_math.models import rollout
from grpo_math.grading.answers import answers_match, grade, normalize_gold
from grpo_math.config import DEFAULT_MAX_COMPLETION_LENGTH, DEFAULT_REWARDS
from grpo_math.data.sources import encode_prompts  # also scoring's API (inference.py, tests)
from grpo_math.rewards import REWARD_FUNCS, weighted_sum
from grpo_math.runs.rundir import write_atomic

logger = logging.getLogger(__name__)

# (prompt ids of a batch, seed or None) -> completion ids cut after the first EOS: rollout.generate or vLLM
GenerateFn = Callable[[list[list[int]], "int | None"], list[list[int]]]


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

    Equivalence is `answers.answers_match`, so "1,080" and "1080" vote together; None (no answer) never votes.
    """
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
    weights = list(reward_weights) if reward_weights is not None else [1.0] * len(reward_funcs)
    if len(weights) != len(reward_funcs):
        raise ValueError(f"{len(weights)} reward weights for {len(reward_funcs)} reward functions")
    prompts = [r["prompt"] for r in rows]
    completions = [t if isinstance(p, str) else [{"role": "assistant", "content": t}] for p, t in zip(prompts, texts)]
    columns = {k: [r[k] for r in rows] for k in rows[0] if k != "prompt"} if rows else {}
    grades = [grade(text, row["answer"], row["prompt"], lenient=True) for row, text in zip(rows, texts)]
    # each completion is graded once: the accuracy and format rewards are read off its grade (the same rules;
    # `__wrapped__`: the in-run eval's guarded copies), every other reward is called as TRL calls it
    from_grade = {REWARD_FUNCS["accuracy"]: lambda: [None if normalize_gold(r["answer"]) is None else
                                                     float(g["correct"]) for r, g in zip(rows, grades)],
                  REWARD_FUNCS["format"]: lambda: [g["format_score"] for g in grades]}
    per_func = {fn.__name__: from_grade[getattr(fn, "__wrapped__", fn)]() if getattr(fn, "__wrapped__", fn) in from_grade
                else list(fn(prompts=prompts, completions=completions, completion_ids=list(completion_ids), **columns))
                for fn in reward_funcs}
    out = []
    for i, g in enumerate(grades):
        parts = {name: values[i] for name, values in per_func.items()}
        out.append({**g, "reward": weighted_sum(list(parts.values()), weights), "rewards": parts})
    return out


# What each field of a record must hold for the metrics and the results file (None: may be null).
_RECORD_FIELDS = {"index": (int,), "sample": (int,), "completion": (str,), "prediction": (str, type(None)),
                  "correct": (bool,), "correct_lenient": (bool,), "format_ok": (bool,), "num_tokens": (int,),
                  "truncated": (bool,), "reward": (int, float, type(None))}


def record_problem(obj: dict) -> str | None:
    """Why `obj` is not a usable record of a partial file (a missing or mistyped field), or None."""
    for name, types in _RECORD_FIELDS.items():
        if name not in obj:
            return f"no {name!r}"
        value = obj[name]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            return f"{name!r} is {value!r:.40}"
    if obj["index"] < 0 or obj["sample"] < 0 or obj["num_tokens"] < 0:
        return "a negative index, sample or num_tokens"
    return None


def read_records(path: Path) -> list[dict]:
    """Records of a partial file; a torn last line (killed mid-write) is cut off so appends stay line-aligned,
    and a record without its fields (written by hand or by another tool) is dropped with a warning: its
    example is scored again."""
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
        if isinstance(obj, dict) and ("index" in obj or "sample" in obj):
            problem = record_problem(obj)
            if problem:
                logger.warning("%s: dropping line %d of %d, not a record eval.py wrote (%s); it is scored again",
                               path, n, len(lines), problem)
                continue
            records.append(obj)
        good.append(line)
    if len(good) != len(lines):
        write_atomic(path, "".join(good))
    return records


def evaluate(model, tokenizer, dataset, *, max_completion_length: int = DEFAULT_MAX_COMPLETION_LENGTH,
             batch_size: int = 32, temperature: float = 0.0, top_p: float = 1.0, num_samples: int = 1, seed: int = 0,
             records_file: str | Path | None = None, progress: bool = False,
             reward_funcs: Sequence[Callable] | None = None, reward_weights: Sequence[float] | None = None,
             generate_fn: GenerateFn | None = None, chat_template_kwargs: dict | None = None
             ) -> tuple[dict, list[dict]]:
    """Generate `num_samples` completions per example of `dataset` (data_utils schema) and score them.

    Returns (metrics, records sorted by example then sample). Works on a PEFT model in training mode: it is
    put in eval mode under no_grad for the duration and its mode restored after.
    1. Records already in `records_file` (same example and sample index) are kept and not generated again.
    2. The remaining (example, sample) pairs are sorted by prompt length, longest first, and batched.
    3. Each batch is generated (`generate_fn`, default rollout.generate), decoded, graded, rewarded
       (`reward_funcs`, the run's reward callables; default format + accuracy) and appended to `records_file`.
    `chat_template_kwargs` (the run's) reach the chat template as in training.
    """
    import torch

    if min(num_samples, batch_size, max_completion_length) < 1:
        raise ValueError(f"num_samples ({num_samples}), batch_size ({batch_size}) and max_completion_length "
                         f"({max_completion_length}) must be at least 1")
    if len(dataset) == 0:
        raise ValueError("evaluate: the dataset is empty")
    if temperature == 0 and num_samples > 1:
        logger.warning("num_samples %d with greedy decoding: every sample is the same; set a temperature",
                       num_samples)
    funcs = list(reward_funcs) if reward_funcs else [REWARD_FUNCS[name] for name in DEFAULT_REWARDS]
    rows = dataset.to_list()
    eos = eos_token_ids(model, tokenizer)
    if generate_fn is None:
        def generate_fn(prompt_ids: list[list[int]], batch_seed: int | None) -> list[list[int]]:
            return rollout.generate(model, prompt_ids, max_new_tokens=max_completion_length, eos_token_ids=eos,
                            pad_token_id=tokenizer.pad_token_id, temperature=temperature, top_p=top_p,
                            seed=batch_seed)

    # 1. resume
    path = Path(records_file) if records_file is not None else None
    wanted = {(i, s) for i in range(len(rows)) for s in range(num_samples)}
    done = {(r["index"], r["sample"]): r for r in (read_records(path) if path else [])}
    if set(done) - wanted:
        logger.warning("%s: ignoring %d records outside this dataset/num_samples", path, len(set(done) - wanted))
    done = {k: v for k, v in done.items() if k in wanted}
    # 2. work list
    prompt_ids = encode_prompts(tokenizer, [r["prompt"] for r in rows], chat_template_kwargs)
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


