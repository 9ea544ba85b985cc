"""Dataset loading: every source becomes one `datasets.Dataset` with the columns of the data contract.

Columns (the data contract of ../shared/DESIGN.md): `prompt` (chat messages, or a plain string for `r1_zero`), `answer` (short canonical gold,
e.g. "72"), `solution` (the full reference text), plus `question` (the raw problem text, for eval records and
logs). Rewards receive `answer` by keyword; nothing else is needed by TRL.

    ds = load_math_dataset("openai/gsm8k", "train[:10%]", prompt_template="think", max_samples=1000)
    ds = load_math_dataset("../shared/data/gsm8k", "test")          # same layout, offline
    ds = load_math_dataset("arithmetic:1", "train")                   # built-in offline task (--demo)
    ds, n_dropped = filter_long_prompts(ds, tokenizer, max_prompt_length=512)
    ids = encode_prompts(tokenizer, ds["prompt"])                     # token ids as TRL builds them

Sources: hub ids through `datasets.load_dataset` (gsm8k gets its `main` config), local `.jsonl/.json/.parquet/.csv`
files, local directories laid out like a hub dataset (`train.jsonl`, `data/test-00000-of-00001.parquet`), and
the seeded generator of `arithmetic.py`. Gold answers go through `answers.normalize_gold`, so training, eval and
rewards agree on what the gold is. Left out on purpose: shuffling (the trainer shuffles), streaming, hub configs
other than gsm8k's, and any answer parsing of our own.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets

from grpo_math.data import hub
from grpo_math.grading.answers import last_boxed, normalize_gold
from grpo_math.data.arithmetic import ARITHMETIC_SIZES, LEVELS, arithmetic_split, parse_level
from grpo_math.data.prompts import DatasetError, build_prompt, check_template

logger = logging.getLogger(__name__)


BUILTIN_ARITHMETIC = "arithmetic"
FILE_EXTENSIONS = (".jsonl", ".json", ".parquet", ".csv")

QUESTION_COLUMNS = ("question", "problem", "prompt", "query", "instruction", "input")
ANSWER_COLUMNS = ("answer", "final_answer", "gold", "target", "expected_answer")
SOLUTION_COLUMNS = ("solution", "rationale", "explanation", "output")

HUB_CONFIGS = {"openai/gsm8k": "main", "gsm8k": "main"}  # load_dataset needs a config name for these
HUB_EVAL_SPLITS = {"openai/gsm8k": "test", "gsm8k": "test", "AI-MO/NuminaMath-TIR": "test",
                   "HuggingFaceH4/MATH-500": "test"}

# ------------------------------------------------------------------------------------------------- local files

def _split_files(directory: Path) -> dict[str, list[Path]]:
    """Split name -> files: `train.jsonl`, or `data/train-00000-of-00001.parquet` (shards are concatenated)."""
    files = [f for f in sorted(directory.iterdir()) if f.suffix.lower() in FILE_EXTENSIONS]
    if not files and (directory / "data").is_dir():
        files = [f for f in sorted((directory / "data").iterdir()) if f.suffix.lower() in FILE_EXTENSIONS]
    splits: dict[str, list[Path]] = {}
    for f in files:
        splits.setdefault(f.stem.split("-")[0], []).append(f)
    return splits


@dataclass(frozen=True)
class DatasetId:
    """A `--dataset_id`, classified once: the built-in task at a level, a local file or directory, or a hub id.

    >>> DatasetId.of("arithmetic:1").kind, DatasetId.of("../shared/data/gsm8k").kind, DatasetId.of("openai/gsm8k").kind
    ('builtin', 'local', 'hub')

    Every function here takes the id as text or as this value, and classifies text once on entry; callers that
    check and then load (checks.py, eval.py) make it once and pass it along.
    """

    text: str
    kind: str  # "builtin", "local" or "hub"
    level: int | None = None  # the built-in task's level

    @classmethod
    def of(cls, dataset_id: str | DatasetId) -> DatasetId:
        if isinstance(dataset_id, DatasetId):
            return dataset_id
        level = parse_level(dataset_id)
        if level is not None:
            return cls(dataset_id, "builtin", level)
        return cls(dataset_id, "local" if hub.is_local_path(dataset_id) else "hub")

    @property
    def offline(self) -> bool:
        """Local files and directories and the built-in task: loading them needs no network."""
        return self.kind != "hub"

    def __str__(self) -> str:
        return self.text


def is_offline_source(dataset_id: str | DatasetId) -> bool:
    """True for local files and directories and the built-in task: loading them needs no network."""
    return DatasetId.of(dataset_id).offline


def is_builtin(dataset_id: str | DatasetId) -> bool:
    """True for the built-in task: `arithmetic` or `arithmetic:N` (see arithmetic.py)."""
    return DatasetId.of(dataset_id).kind == "builtin"


def check_dataset_id(dataset_id: str | DatasetId) -> None:
    """Cheap validation before anything heavy loads; hub-looking ids ("org/name") pass unchecked."""
    ds = DatasetId.of(dataset_id)
    dataset_id, level = ds.text, ds.level
    if level is not None:
        if level not in LEVELS:
            raise DatasetError(f"dataset {dataset_id!r}: no such level of the built-in task; use "
                               + ", ".join(f"arithmetic:{n}" for n in LEVELS))
        return
    if ds.kind == "hub":
        return
    p = Path(dataset_id).expanduser()
    if not p.exists():
        raise DatasetError(f"dataset path {dataset_id!r} does not exist; pass an existing file or directory "
                           f"(e.g. ../shared/data/gsm8k), a hub id like openai/gsm8k, or --demo")
    if p.is_file() and p.suffix.lower() not in FILE_EXTENSIONS:
        raise DatasetError(f"dataset file {dataset_id!r} has unsupported extension {p.suffix!r}; "
                           f"use one of {', '.join(FILE_EXTENSIONS)}")
    if p.is_dir() and not _split_files(p):
        raise DatasetError(f"dataset directory {dataset_id!r} holds no data files; expected train.jsonl/test.jsonl "
                           f"or data/train-00000-of-00001.parquet ({', '.join(FILE_EXTENSIONS)})")


def _read_file(path: Path) -> list[dict]:
    try:
        rows = _parse_file(path, path.suffix.lower())
    except (ValueError, OSError, UnicodeDecodeError) as e:
        # pyarrow errors subclass ValueError/OSError; json.JSONDecodeError is a ValueError.
        raise DatasetError(f"could not read {path}: {_one_line(e)}") from e
    if not rows:  # said here, or a later slice would blame its bounds
        raise DatasetError(f"could not read {path}: the file holds no rows")
    return rows


def _parse_file(path: Path, ext: str) -> list[dict]:
    if ext == ".parquet":
        import pyarrow.parquet as pq  # installed with datasets
        return pq.read_table(path).to_pylist()
    text = path.read_text(encoding="utf-8-sig")  # -sig: Excel and Notepad start UTF-8 files with a BOM
    if not text.strip():
        raise ValueError("the file is empty")
    if ext == ".csv":
        return _csv_rows(text)
    try:
        data = json.loads(text) if ext == ".json" else None
    except json.JSONDecodeError as e:
        if e.msg != "Extra data":
            raise
        data = None  # `Dataset.to_json` writes JSON lines even into a .json file
    if data is None:
        data = []
        for i, line in enumerate(text.splitlines(), 1):
            try:
                data += [json.loads(line)] if line.strip() else []
            except json.JSONDecodeError as e:
                raise ValueError(f"line {i}: {e}") from e  # the file's line, not json's "line 1"
    if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
        data = [dict(zip(data, vals)) for vals in zip(*data.values())]  # column-oriented, as Dataset.to_dict
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ValueError("expected JSON objects, one per row (a list, JSON lines, or a dict of columns)")
    return data


_EXTRA = "<cells past the header>"  # DictReader's key for them; its default, None, breaks the column lookup


def _csv_rows(text: str) -> list[dict]:
    """The rows of a CSV file with a header; a row with more cells than the header is an error, not a guess (it
    is nearly always an unquoted comma inside a question, which would cut the question short)."""
    reader = csv.DictReader(io.StringIO(text, newline=""), restkey=_EXTRA)  # newline="": newlines in quoted cells
    rows = []
    for row in reader:
        if _EXTRA in row:
            raise ValueError(f"line {reader.line_num} has {len(reader.fieldnames) + len(row[_EXTRA])} cells but the "
                             f"header has {len(reader.fieldnames)}; quote cells that contain commas")
        rows.append(row)
    if not rows:
        raise ValueError(f"the file has a header ({', '.join(reader.fieldnames or [])}) but no rows")
    return rows


def _one_line(e: BaseException, limit: int = 200) -> str:
    return " ".join(str(e).split())[:limit]


def _local_rows(dataset_id: str, split: str) -> list[dict]:
    p = Path(dataset_id).expanduser()
    # A single file is the whole "train" split, as datasets.load_dataset("json", data_files=...) would make it.
    splits = {"train": [p]} if p.is_file() else _split_files(p)
    wanted = _wanted_splits(split, splits, dataset_id)
    return _slice({name: [r for f in splits[name] for r in _read_file(f)] for name in wanted}, split)


def _wanted_splits(split: str, available: Iterable[str], name: str) -> set[str]:
    """The split names `split` reads ("train+test[:5%]" -> {"train", "test"}), checked before any file is read."""
    available = list(available)
    try:
        datasets.ReadInstruction.from_spec(split)
    except ValueError as e:
        raise DatasetError(f"{name}: bad split {split!r} ({_one_line(e)}); "
                           f"use datasets' syntax with one of: {', '.join(available)}") from e
    wanted = {part.split("[")[0].strip() for part in split.split("+")}
    if not wanted <= set(available):
        raise DatasetError(f"{name}: unknown split {split!r}; available splits: {', '.join(available)}")
    return wanted


def _slice(rows: dict[str, list[dict]], split: str) -> list[dict]:
    """datasets' split syntax (`test[:5%]`, `train[10:20]`, `train+test`) on in-memory rows."""
    spans = datasets.ReadInstruction.from_spec(split).to_absolute({k: len(v) for k, v in rows.items()})
    return [r for s in spans for r in rows[s.splitname][s.from_:s.to]]



# ------------------------------------------------------------------------------------------------------ the hub

def _hub_dataset(dataset_id: str, split: str) -> datasets.Dataset:
    hint = "pass a local copy (e.g. --dataset_id ../shared/data/gsm8k) or use --demo"
    # In offline mode datasets answers from its cache at once; otherwise check the Hub is there before it retries.
    if not datasets.config.HF_HUB_OFFLINE and not hub.hub_reachable():
        raise DatasetError(f"cannot reach the Hugging Face Hub to load {dataset_id!r}; {hint} "
                           f"(or set HF_HUB_OFFLINE=1 to use a cached copy)")
    try:
        return datasets.load_dataset(dataset_id, HUB_CONFIGS.get(dataset_id), split=split)
    except Exception as e:  # network, auth, not-found and builder errors all end the same way for the user
        if isinstance(e, ValueError) and "split" in str(e).lower():  # 'Unknown split "dev". Should be one of [...]'
            raise DatasetError(f"{dataset_id}: {_one_line(e)}") from e
        raise DatasetError(f"could not load {dataset_id!r} from the Hub "
                           f"({type(e).__name__}: {_one_line(e)}); {hint}") from e


# ------------------------------------------------------------------------------------------------- the contract

def _text(value) -> str:
    if isinstance(value, float):
        if value != value:  # NaN: pandas' empty cell
            return ""
        if value.is_integer():  # csv/parquet writers turn integer answers into 18.0
            return str(int(value))
    return "" if value is None else str(value)


def _pick(columns: Sequence[str], names: Sequence[str]) -> str | None:
    lower = {c.lower(): c for c in columns}  # "Question" in a spreadsheet export is still a question
    return next((lower[n] for n in names if n in lower), None)


def _to_contract(rows: Iterable[dict], columns: Sequence[str], name: str, max_samples: int | None,
                 template: str, lang: str, system_prompt: str | None, dropped: dict | None = None) -> datasets.Dataset:
    q_col, a_col, s_col = (_pick(columns, n) for n in (QUESTION_COLUMNS, ANSWER_COLUMNS, SOLUTION_COLUMNS))
    if q_col is None or (a_col is None and s_col is None):
        missing = "question" if q_col is None else "answer"
        names = QUESTION_COLUMNS if q_col is None else ANSWER_COLUMNS + SOLUTION_COLUMNS
        raise DatasetError(f"{name}: no {missing} column (found: {', '.join(columns) or 'none'}); "
                           f"name one of: {', '.join(names)}")
    out: dict[str, list] = {"prompt": [], "answer": [], "solution": [], "question": []}
    n_empty = n_no_gold = 0
    for row in rows:
        if max_samples is not None and len(out["answer"]) >= max_samples:
            break
        raw_q = row.get(q_col)
        question = raw_q.strip() if isinstance(raw_q, str) else ""  # a messages list is not a question
        solution = _text(row.get(s_col)) if s_col else ""
        gold_text = _text(row.get(a_col)) if a_col else ""
        if not gold_text and ("####" in solution or last_boxed(solution) is not None):
            # No answer: the solution's gold must be marked, or we would take the whole text as the answer.
            gold_text = solution
        gold = normalize_gold(gold_text)
        if not question:
            n_empty += 1
        elif gold is None:
            n_no_gold += 1
        else:
            out["prompt"].append(build_prompt(question, template, lang, system_prompt))
            out["answer"].append(gold)
            out["solution"].append(solution or gold_text)  # GSM8K keeps its rationale in `answer`
            out["question"].append(question)
    if dropped is not None:
        dropped.update(empty_question=n_empty, no_usable_gold=n_no_gold)
    if n_empty or n_no_gold:
        logger.info("%s: dropped %d rows with an empty question and %d with no parseable gold answer",
                    name, n_empty, n_no_gold)
    if not out["answer"]:
        raise DatasetError(f"{name}: no usable rows ({n_empty} with an empty question, {n_no_gold} without a "
                           f"parseable gold answer in column {a_col or s_col!r})")
    return datasets.Dataset.from_dict(out)


def load_math_dataset(dataset_id: str | DatasetId, split: str = "train", *, max_samples: int | None = None,
                      prompt_template: str = "think", prompt_lang: str = "en",
                      system_prompt: str | None = None, seed: int = 0, dropped: dict | None = None
                      ) -> datasets.Dataset:
    """Load `split` of a hub id, local file/directory or "arithmetic" as prompt/answer/solution/question rows.

    `max_samples` keeps the first N usable rows after slicing; `seed` only drives the arithmetic generator.
    `dropped`, when given, gets the counts of rows left out: `empty_question`, `no_usable_gold`.
    """
    check_template(prompt_template, prompt_lang)
    if max_samples is not None and max_samples < 1:
        raise DatasetError(f"max_samples must be at least 1, got {max_samples}")
    ds = DatasetId.of(dataset_id)
    dataset_id = ds.text
    check_dataset_id(ds)
    if ds.kind == "builtin":
        wanted = _wanted_splits(split, ARITHMETIC_SIZES, dataset_id)
        rows = _slice({s: arithmetic_split(s, seed, ds.level) for s in wanted}, split)
        columns: Sequence[str] = ("question", "answer", "solution")
    elif ds.kind == "local":
        rows = _local_rows(dataset_id, split)
        columns = list(dict.fromkeys(k for r in rows for k in r))  # union: JSON lines need not agree on keys
    else:
        hub_ds = _hub_dataset(dataset_id, split)
        columns = hub_ds.column_names
        keep = [c for c in (_pick(columns, n) for n in (QUESTION_COLUMNS, ANSWER_COLUMNS, SOLUTION_COLUMNS)) if c]
        rows = hub_ds.select_columns(keep) if keep else hub_ds  # skip e.g. NuminaMath's `messages` when iterating
    if len(rows) == 0:  # an empty slice (test[2000:]) is not a file without columns
        raise DatasetError(f"{dataset_id}: split {split!r} selects no rows; check the slice bounds")
    ds = _to_contract(rows, columns, f"{dataset_id} [{split}]", max_samples, prompt_template, prompt_lang,
                      system_prompt, dropped)
    logger.info("loaded %d rows from %s [%s] with the %s/%s template", len(ds), dataset_id, split,
                prompt_template, prompt_lang)
    return ds


def default_eval_split(dataset_id: str | DatasetId) -> str:
    """"test" where the source has one, else "train" (or a directory's only split); unknown hub ids get "test"."""
    ds = DatasetId.of(dataset_id)
    dataset_id = ds.text
    if ds.kind == "builtin":
        return "test"
    if ds.kind == "local":
        p = Path(dataset_id).expanduser()
        splits = list(_split_files(p)) if p.is_dir() else ["train"]
        return next((s for s in ("test", "train") if s in splits), splits[0] if splits else "train")
    return HUB_EVAL_SPLITS.get(dataset_id, "test")


def encode_prompts(tokenizer, prompts: Sequence, chat_template_kwargs: dict | None = None) -> list[list[int]]:
    """Token ids of each prompt as TRL 1.16 builds them for training (`_tokenize_prompts`): chat messages through
    the chat template with the generation prompt, plain strings (r1_zero) through the tokenizer with its special
    tokens (a BOS, for tokenizers that add one). Eval, inference and the prompt-length filter all use this, with
    the run's `chat_template_kwargs` (Qwen3's enable_thinking), which TRL passes to the template as well."""
    out: list[list[int] | None] = [None] * len(prompts)
    chats = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    texts = [i for i, p in enumerate(prompts) if isinstance(p, str)]
    if chats:
        ids = tokenizer.apply_chat_template([prompts[i] for i in chats], add_generation_prompt=True, tokenize=True,
                                            return_dict=True, **(chat_template_kwargs or {}))["input_ids"]
        for i, x in zip(chats, ids):
            out[i] = list(x)
    if texts:
        ids = tokenizer(text=[prompts[i] for i in texts])["input_ids"]
        for i, x in zip(texts, ids):
            out[i] = list(x)
    return out  # type: ignore[return-value]


def filter_long_prompts(dataset: datasets.Dataset, tokenizer, max_prompt_length: int | None,
                        chat_template_kwargs: dict | None = None) -> tuple[datasets.Dataset, int]:
    """Drop rows whose prompt is over `max_prompt_length` tokens, counted the way TRL tokenizes it.

    TRL 1.16 has no max_prompt_length, and a truncated prompt loses the question, so long ones are dropped.
    """
    if max_prompt_length is None or len(dataset) == 0:
        return dataset, 0
    lengths: list[int] = []
    for start in range(0, len(dataset), 256):  # batches keep memory flat on large datasets
        lengths.extend(len(x) for x in encode_prompts(tokenizer, dataset[start:start + 256]["prompt"],
                                                              chat_template_kwargs))
    keep = [i for i, n in enumerate(lengths) if n <= max_prompt_length]
    n_dropped = len(dataset) - len(keep)
    if not keep:
        raise DatasetError(f"every prompt is longer than --max_prompt_length {max_prompt_length} tokens "
                           f"(shortest: {min(lengths)}); raise it to at least {min(lengths)}")
    logger.info("dropped %d of %d prompts longer than %d tokens", n_dropped, len(dataset), max_prompt_length)
    return (dataset.select(keep) if n_dropped else dataset), n_dropped


def check_system_prompt(system_prompt: str | None, tokenizer, max_prompt_length: int | None) -> None:
    """Raise DatasetError when `--system_prompt` alone is over `max_prompt_length` tokens: every prompt holds it,
    so every row would be built (a 50 MB text times a thousand rows) and then dropped. Only a prefix is tokenized:
    no token is longer than the longest vocabulary entry, so (max_prompt_length + 1) of those in characters
    always hold more than max_prompt_length tokens."""
    if not system_prompt or max_prompt_length is None:
        return
    longest = max((len(t) for t in tokenizer.get_vocab()), default=1)
    prefix = system_prompt[:(max_prompt_length + 1) * max(longest, 1)]
    n = len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    if n > max_prompt_length:
        more = "" if len(prefix) == len(system_prompt) else " or more"
        raise DatasetError(f"--system_prompt ({len(system_prompt):,} characters) is {n}{more} tokens on its own, over "
                           f"--max_prompt_length {max_prompt_length}: every prompt would be dropped; shorten it or "
                           "raise --max_prompt_length")
