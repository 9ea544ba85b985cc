"""The demo's starting point: the tiny model after a short supervised warm start on the built-in task's train split.

    python -m grpo_math.models.warm_start                 # regenerate the shipped checkpoint (grpo_math/models/demo_model/)
    python -m grpo_math.models.warm_start OUT_DIR         # or write it elsewhere (~2 min on two CPU cores)

GRPO can only reinforce what a model already does now and then: a random model never writes a right answer,
so it never earns a reward to learn from. `python main.py --demo` therefore starts from the offline tiny model
(tiny.py) after two supervised stages on one-digit arithmetic (`arithmetic:1`), on its train split only:

1. worked solutions, `<think>7 + 5 = 12</think><answer>\\boxed{12}</answer>`, until it gets 90% of a validation
   slice right (problems held out of the train split, never the test split the demo evaluates on);
2. STAGE_B_STEPS steps on a mix in which most examples answer at once, with an empty thinking block
   (`<think></think><answer>\\boxed{12}</answer>`, like a chat model's non-thinking mode), and some work it out.

The result answers at once under greedy decoding and is right ~35-45% of the time that way, while a sampled
completion works the sum out now and then and is then right ~85% of the time. The demo's GRPO run (format
and accuracy rewards) has to find out that working it out pays: the in-run greedy accuracy on 64 held-out
problems typically goes from ~40% to 85-100% in 24 steps. That is GRPO's mechanism in miniature: it makes a
rewarded behaviour the model already has into a habit. The checkpoint (~2 MB) is shipped in the package, so
the demo does not pay for the warm start; this module regenerates it.
Left out on purpose: any use of the test split, and warm starts of models other than the tiny one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import shutil
import sys
import time
from pathlib import Path

import torch

from grpo_math.data.arithmetic import arithmetic_split
from grpo_math.data.prompts import build_prompt
from grpo_math.models.tiny import build_model, build_tokenizer

logger = logging.getLogger(__name__)

SHIPPED = Path(__file__).resolve().parent / "demo_model"
LEVEL = 1  # one-digit add and subtract: learnable by a 0.5M-parameter model in a few hundred steps
SEED = 0
BATCH = 64
VALIDATION = 256  # the last problems of the train split, held out of both stages to decide when stage 1 ends
STAGE_A_TARGET, STAGE_A_MAX_STEPS, STAGE_A_LR, CHECK_EVERY = 0.9, 1000, 3e-3, 50
STAGE_B_STEPS, STAGE_B_LR, STAGE_B_WORKED = 50, 1e-3, 0.3  # short: the worked habit must survive it
VERSION = 2  # recorded in warm_start.json; bump when the recipe changes


def _encode(tokenizer, rows: list[dict], worked: list[bool]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids + EOS) with the demo's own prompt template."""
    prompts = tokenizer.apply_chat_template([build_prompt(r["question"]) for r in rows], add_generation_prompt=True,
                                            tokenize=True, return_dict=True)["input_ids"]
    texts = [r["target"] if w else f"<think></think><answer>\\boxed{{{r['answer']}}}</answer>"
             for r, w in zip(rows, worked)]
    completions = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [(list(p), list(c) + [tokenizer.eos_token_id]) for p, c in zip(prompts, completions)]


def _step(model, optimizer, batch: list[tuple[list[int], list[int]]], pad: int) -> float:
    """One supervised step: next-token loss on the completions only."""
    width = max(len(p) + len(c) for p, c in batch)
    ids = torch.full((len(batch), width), pad)  # [B, L], right-padded
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    labels = torch.full((len(batch), width), -100)
    for i, (p, c) in enumerate(batch):
        ids[i, :len(p) + len(c)] = torch.tensor(p + c)
        mask[i, :len(p) + len(c)] = 1
        labels[i, len(p):len(p) + len(c)] = torch.tensor(c)
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def _validation_accuracy(model, tokenizer, rows: list[dict]) -> float:
    from grpo_math.grading.answers import extract_answer
    from grpo_math.models.rollout import generate

    model.eval()
    prompts = [p for p, _ in _encode(tokenizer, rows, [True] * len(rows))]
    out = generate(model, prompts, max_new_tokens=32, eos_token_ids=[tokenizer.eos_token_id],
                   pad_token_id=tokenizer.pad_token_id)
    model.train()
    texts = tokenizer.batch_decode(out, skip_special_tokens=True)
    return sum(extract_answer(t) == r["answer"] for t, r in zip(texts, rows)) / len(rows)


def train_warm_start(out_dir: str | Path, *, stage_a_max_steps: int = STAGE_A_MAX_STEPS,
                     stage_b_steps: int = STAGE_B_STEPS) -> dict:
    """Run both stages and write model, tokenizer and warm_start.json (the recipe and what it reached)."""
    torch.manual_seed(SEED)
    rng = random.Random(SEED)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed=SEED).train()
    rows = arithmetic_split("train", seed=SEED, level=LEVEL)
    train_rows, validation = rows[:-VALIDATION], rows[-VALIDATION:]
    started = time.perf_counter()

    # 1. worked solutions, until the validation slice is mostly right
    worked = _encode(tokenizer, train_rows, [True] * len(train_rows))
    optimizer = torch.optim.AdamW(model.parameters(), lr=STAGE_A_LR, weight_decay=0.0)
    steps_a, accuracy_a = 0, 0.0
    while steps_a < stage_a_max_steps and accuracy_a < STAGE_A_TARGET:
        _step(model, optimizer, rng.sample(worked, BATCH), tokenizer.pad_token_id)
        steps_a += 1
        if steps_a % CHECK_EVERY == 0 or steps_a == stage_a_max_steps:
            accuracy_a = _validation_accuracy(model, tokenizer, validation)
            logger.info("warm start stage 1: step %d, validation accuracy %.1f%%", steps_a, 100 * accuracy_a)

    # 2. mostly answering at once, now and then working it out
    mixed = _encode(tokenizer, train_rows, [rng.random() < STAGE_B_WORKED for _ in train_rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=STAGE_B_LR, weight_decay=0.0)
    for _ in range(stage_b_steps):
        loss = _step(model, optimizer, rng.sample(mixed, BATCH), tokenizer.pad_token_id)
    record = {"version": VERSION, "level": LEVEL, "seed": SEED, "batch": BATCH, "validation_problems": VALIDATION,
              "stage_1": {"steps": steps_a, "lr": STAGE_A_LR, "validation_accuracy": round(accuracy_a, 4)},
              "stage_2": {"steps": stage_b_steps, "lr": STAGE_B_LR, "worked_share": STAGE_B_WORKED,
                          "validation_accuracy": round(_validation_accuracy(model, tokenizer, validation), 4)},
              "seconds": round(time.perf_counter() - started, 1), "torch": torch.__version__}
    out = Path(out_dir)
    model.eval().save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "warm_start.json").write_text(json.dumps(record, indent=1) + "\n")
    logger.info("warm start written to %s in %.0f s (final loss %.3f)", out, record["seconds"], loss)
    return record


def _same_files(a: Path, b: Path) -> bool:
    """Whether directory `b` holds exactly the files of `a`, byte for byte (the shipped copy is ~2 MB)."""
    if not b.is_dir() or sorted(p.name for p in a.iterdir()) != sorted(p.name for p in b.iterdir()):
        return False
    return all(f.read_bytes() == (b / f.name).read_bytes() for f in a.iterdir() if f.is_file())


def warm_start_model(out_dir: str | Path) -> Path:
    """Put the shipped warm-started tiny model into `out_dir` (the demo's OUTPUT_DIR/base_model).

    Every process of a multi-process launch calls this (each machine needs the model), at the same moment: the
    check and the copy happen under a lock on the parent directory, and a copy already identical to the
    shipped one is never touched, so no process replaces it while another loads it.
    """
    out = Path(out_dir)
    if not (SHIPPED / "warm_start.json").is_file():
        raise FileNotFoundError(f"{SHIPPED}: the demo's checkpoint is missing; run python -m grpo_math.models.warm_start")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a lock on the directory itself: no lock file is left in the run dir
        if not _same_files(SHIPPED, out):
            if out.exists():
                shutil.rmtree(out)
            shutil.copytree(SHIPPED, out)
    finally:
        os.close(fd)  # releases the lock
    return out


if __name__ == "__main__":
    if len(sys.argv) > 2:
        sys.exit("usage: python -m grpo_math.models.warm_start [OUT_DIR]   (default: the shipped grpo_math/models/demo_model)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    target = Path(sys.argv[1]) if len(sys.argv) == 2 else SHIPPED
    print(json.dumps(train_warm_start(target), indent=1))
