"""Dataset loaders and prompt templates: every source becomes one `datasets.Dataset` schema.

    python data_utils.py openai/gsm8k --split "test[:3]"            # show rows as the model and the rewards see them
    python data_utils.py arithmetic --prompt_template r1_zero --n 2
    python data_utils.py ../shared/data/gsm8k --split test --n 1 --prompt_lang zh

    from data_utils import load_math_dataset, filter_long_prompts
    ds = load_math_dataset("openai/gsm8k", "train[:10%]", prompt_template="think", max_samples=1000)
    ds, n_dropped = filter_long_prompts(ds, tokenizer, max_prompt_length=512)

Columns (the data contract): `prompt` (chat messages, or a plain string for `r1_zero`), `answer` (the short
canonical gold, e.g. "72"), `solution` (the full reference text), plus `question` (the raw problem). Sources:
`openai/gsm8k`, `AI-MO/NuminaMath-TIR`, `HuggingFaceH4/MATH-500` and other hub ids, local `.jsonl`, `.json`,
`.parquet` and `.csv` files with recognised column names, local directories laid out like a hub dataset, and
`arithmetic`, the built-in offline generator. Templates: `think` (chat, `<think>`/`<answer>\\boxed{}`),
`r1_zero` (plain text for base models), `qwen_math` (`\\boxed{}`), in English or Chinese.
The loaders live in `grpo_math/data/sources.py`, the templates in `grpo_math/data/prompts.py`, the generator in
`grpo_math/data/arithmetic.py`; this file is their public face and a way to look at a dataset before training.
"""

from __future__ import annotations

import json
import sys

from grpo_math.data.arithmetic import ARITHMETIC_SIZES, arithmetic_problems  # noqa: F401 - the public API
from grpo_math.data.sources import (BUILTIN_ARITHMETIC, DatasetError, check_dataset_id,  # noqa: F401
                            default_eval_split, filter_long_prompts, is_offline_source, load_math_dataset)
from grpo_math.data.prompts import LANGS, TEMPLATES, build_prompt  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    from grpo_math.cli import OneLineParser

    p = OneLineParser(prog="data_utils.py", description="Show the first rows of a dataset as training sees them.")
    p.add_argument("dataset_id", help="hub id, local file or directory, or arithmetic")
    p.add_argument("--split", help="split, datasets slicing allowed (default: the dataset's test split)")
    p.add_argument("--n", type=int, default=3, help="rows to show")
    p.add_argument("--prompt_template", choices=list(TEMPLATES), default="think", help="prompt template")
    p.add_argument("--prompt_lang", choices=list(LANGS), default="en", help="language of the template")
    try:
        a = p.parse_args(argv)
        if a.n < 1:
            raise ValueError(f"--n {a.n} must be a positive integer")
        ds = load_math_dataset(a.dataset_id, a.split or default_eval_split(a.dataset_id), max_samples=a.n,
                               prompt_template=a.prompt_template, prompt_lang=a.prompt_lang)
    except ValueError as e:
        print(f"data_utils.py: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    for row in ds:
        print(json.dumps({k: row[k] for k in ("prompt", "answer")}, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
