"""Answer math questions with a base model or a checkpoint, and show the answer the grader would read.

    python inference.py --model_dir ckpts/qwen05-gsm8k/final "A pen costs 3 yuan. How much do 4 pens cost?"
    python inference.py --model_dir Qwen/Qwen2.5-0.5B-Instruct           # built-in questions, one in Chinese
    python inference.py --model_dir ckpts/demo/final --stream "Ana has 3 apples and gets 4 more. How many?"

Prompts are built as in training (the run's template, language and system prompt, from run_config.json, unless
flags say otherwise; a question in Chinese gets the Chinese template) and tokenized as eval.py tokenizes them.
The extracted answer is `answers.extract_answer`, the training rewards' own. `--model_dir` is required: a
default that depends on the current directory would answer with whatever happens to be there.
Left out on purpose: a chat loop with history, and batching (eval.py is the batched path).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import re
import sys
import time
import warnings

from grpo_math.config import RunConfig, TemplateKwargs
from grpo_math.runs.rundir import find_run_config


# (question, language, expected answer): two GSM8K-style problems and one in Chinese
BUILTIN_QUESTIONS = (
    ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
     "How many clips did Natalia sell altogether in April and May?", "en", "72"),
    ("A pen costs 3 yuan and a notebook costs 5 yuan. How much do 4 pens and 2 notebooks cost in yuan?", "en", "22"),
    ("小明有 15 个苹果，他给了小红 6 个，又买了 8 个。小明现在有多少个苹果？", "zh", "17"),
)
_CJK_RE = re.compile(r"[\u4e00-\u9fff]")


def build_parser() -> argparse.ArgumentParser:
    from grpo_math.cli import HelpFormatter, OneLineParser, add_device_flags
    from grpo_math.data.prompts import LANGS, TEMPLATES

    p = OneLineParser(prog="inference.py", description="Answer math questions with a model or checkpoint.",
                      formatter_class=HelpFormatter)
    p.add_argument("questions", nargs="*", help="questions to answer (default: a built-in set, one in Chinese)")
    p.add_argument("--model_dir", required=True,
                   help="final/ or checkpoint-N/ (LoRA adapter), a full model directory, a .gguf file, or a hub id")
    p.add_argument("--base_model", help="base model of an adapter (default: the adapter's config, else the run's)")
    p.add_argument("--max_new_tokens", type=int,
                   help=f"tokens per answer at most (default: the run's --max_completion_length, else "
                        f"{RunConfig.max_completion_length})")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass, (0, 1]")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--prompt_template", choices=list(TEMPLATES), help="default: the run's, else think")
    p.add_argument("--prompt_lang", choices=list(LANGS), help="default: zh for a Chinese question, else the run's")
    p.add_argument("--chat_template_kwargs", nargs="+", action=TemplateKwargs, metavar="KEY=VALUE",
                   help="chat-template variables, e.g. enable_thinking=false (default: the run's)")
    p.add_argument("--system_prompt", help="replace the template's system prompt (default: the run's)")
    add_device_flags(p, "generate")
    p.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    return p


def answer(model, tokenizer, prompt, *, max_new_tokens: int, temperature: float = 0.0, top_p: float = 1.0,
           seed: int = 0, stream: bool = False, chat_template_kwargs: dict | None = None) -> tuple[str, int]:
    """(completion text, completion tokens) for one prompt; `stream` prints the text as it comes."""
    from grpo_math.models.rollout import generate
    from grpo_math.evaluation.scoring import decode, encode_prompts, eos_token_ids

    streamer = None
    if stream:
        from transformers import TextStreamer

        streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    out = generate(model, encode_prompts(tokenizer, [prompt], chat_template_kwargs), max_new_tokens=max_new_tokens,
                   eos_token_ids=eos_token_ids(model, tokenizer), pad_token_id=tokenizer.pad_token_id,
                   temperature=temperature, top_p=top_p, seed=seed, streamer=streamer,
                   compact=False)[0]  # one answer: nothing to share or drop, and --stream's random draws
    return decode(tokenizer, [out])[0], len(out)


def prepare(a: argparse.Namespace) -> tuple:
    """Check the flags, resolve the run's prompt settings and load the model; bad input raises ValueError."""
    from grpo_math.runtime.devices import resolve_placement
    from grpo_math.models.loading import load_for_inference

    for n, question in enumerate(a.questions, 1):  # before the model loads: a blank one is a slip, not a question
        if not question.strip():
            raise ValueError(f"question {n} of {len(a.questions)} is {'empty' if not question else 'blank'}; "
                             "give the text of each question, or none for the built-in ones")
    if a.max_new_tokens is not None and a.max_new_tokens < 1:
        raise ValueError(f"--max_new_tokens {a.max_new_tokens} must be a positive integer")
    if not (a.temperature >= 0 and math.isfinite(a.temperature)) or not 0 < a.top_p <= 1:
        raise ValueError(f"--temperature {a.temperature} must be >= 0 and --top_p {a.top_p} in (0, 1]")
    found = (find_run_config(a.model_dir) or {}).get("args") if os.path.isdir(a.model_dir) else None
    run = RunConfig.from_record(found if isinstance(found, dict) else {})  # the run's settings, else defaults
    placement = resolve_placement(a.device, a.dtype)
    model, tokenizer, _ = load_for_inference(a.model_dir, placement.dtype, placement.device, a.base_model)
    return model, tokenizer, run


def run(a: argparse.Namespace, model, tokenizer, run: RunConfig) -> int:
    """Answer each question (or the built-in ones) and print the completion and the extracted answer."""
    from grpo_math.grading.answers import extract_answer
    from grpo_math.data.prompts import build_prompt

    template = a.prompt_template or run.prompt_template
    system = a.system_prompt if a.system_prompt is not None else run.system_prompt
    max_new_tokens = a.max_new_tokens or run.max_completion_length
    questions = [(q, None, None) for q in a.questions] or list(BUILTIN_QUESTIONS)
    for n, (question, lang, expected) in enumerate(questions, 1):
        lang = a.prompt_lang or lang or ("zh" if _CJK_RE.search(question) else run.prompt_lang)
        prompt = build_prompt(question, template, lang, system)
        print(f"### {n}. {question}", flush=True)
        t0 = time.perf_counter()
        text, n_tokens = answer(model, tokenizer, prompt, max_new_tokens=max_new_tokens,
                                temperature=a.temperature, top_p=a.top_p, seed=a.seed, stream=a.stream,
                                chat_template_kwargs=(a.chat_template_kwargs if a.chat_template_kwargs is not None
                                                      else run.chat_template_kwargs))
        if not a.stream:
            print(text.strip() or "(empty completion)")
        pred = extract_answer(text, prompt=prompt)
        note = f" (expected {expected})" if expected else ""
        print(f"-> answer: {pred if pred is not None else '(none)'}{note}   [{n_tokens} tokens, "
              f"{time.perf_counter() - t0:.1f} s]\n", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation notes are not our output
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        a = build_parser().parse_args(argv)
        loaded = prepare(a)
    except ValueError as e:  # bad flags, ModelLoadError, DeviceError: one line each; generation errors keep theirs
        print(f"inference.py: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return run(a, *loaded)


if __name__ == "__main__":
    sys.exit(main())
