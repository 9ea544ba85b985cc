"""data_utils: every loader on small temporary files, the arithmetic task, templates, prompt-length filter.

Offline and fast; the real /work/shared/data copies and the Qwen tokenizer are used when present, skipped if not.
"""
from __future__ import annotations

import csv
import json
import re
import time
from pathlib import Path

import datasets
import pytest

import data_utils as du
from grpo_math.data import hub
from data_utils import DatasetError, load_math_dataset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
QWEN_TOKENIZER = SHARED_DATA / "tokenizers" / "qwen2.5-instruct"

ROWS = [  # GSM8K-shaped: the gold sits after "####" in `answer`, with a thousands separator in one row
    {"question": "Q one?", "answer": "Because 2 + 3 = 5.\n#### 5"},
    {"question": "Q two?", "answer": "Big sums.\n#### 1,080"},
    {"question": "Q three?", "answer": "Seven.\n#### 7"},
]


def write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".csv":
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path


# ------------------------------------------------------------------------------------------------- local files

@pytest.mark.parametrize("ext", ["jsonl", "json", "parquet", "csv"])
def test_each_file_format_gives_the_contract(tmp_path, ext):
    ds = load_math_dataset(str(write(tmp_path / f"d.{ext}", ROWS)))
    assert {"prompt", "answer", "solution"} <= set(ds.column_names)
    assert ds["answer"] == ["5", "1080", "7"]  # commas stripped, text after ####
    assert ds["solution"][0] == ROWS[0]["answer"]  # GSM8K's rationale is kept as the solution
    assert ds[0]["prompt"][-1] == {"role": "user", "content": "Q one?"}


def test_json_lines_in_a_json_file_and_column_oriented_json(tmp_path):
    # Dataset.to_json writes JSON lines even into ".json"; Dataset.to_dict gives a dict of columns.
    (tmp_path / "lines.json").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    cols = {"question": [r["question"] for r in ROWS], "answer": [r["answer"] for r in ROWS]}
    (tmp_path / "cols.json").write_text(json.dumps(cols))
    for name in ("lines.json", "cols.json"):
        assert load_math_dataset(str(tmp_path / name))["answer"] == ["5", "1080", "7"]


def test_hub_like_directory_and_data_parquet_directory(tmp_path):
    write(tmp_path / "flat" / "train.jsonl", ROWS)
    write(tmp_path / "flat" / "test.csv", ROWS[:1])
    assert len(load_math_dataset(str(tmp_path / "flat"), "train")) == 3
    assert load_math_dataset(str(tmp_path / "flat"), "test")["answer"] == ["5"]
    # Sharded parquet under data/, as the hub stores it: shards of one split are concatenated in order.
    write(tmp_path / "hub" / "data" / "train-00000-of-00002.parquet", ROWS[:2])
    write(tmp_path / "hub" / "data" / "train-00001-of-00002.parquet", ROWS[2:])
    write(tmp_path / "hub" / "data" / "test-00000-of-00001.parquet", ROWS[:1])
    assert load_math_dataset(str(tmp_path / "hub"), "train")["answer"] == ["5", "1080", "7"]
    assert du.default_eval_split(str(tmp_path / "hub")) == "test"
    assert du.default_eval_split(str(tmp_path / "flat" / "train.jsonl")) == "train"  # a lone file is "train"
    write(tmp_path / "val" / "validation.jsonl", ROWS)
    assert du.default_eval_split(str(tmp_path / "val")) == "validation"  # neither test nor train: the one there is


@pytest.mark.parametrize("row, gold, solution", [
    ({"problem": "P?", "solution": "so \\boxed{\\frac{1}{2}}."}, "\\frac{1}{2}", "so \\boxed{\\frac{1}{2}}."),  # MATH
    ({"Question": "P?", "Final_Answer": 12}, "12", "12"),  # case-insensitive names; int answer
    ({"query": "P?", "gold": 3.0}, "3", "3"),  # float written for an integer answer
    ({"instruction": "P?", "output": "work\n#### 9"}, "9", "work\n#### 9"),  # alpaca-style, gold after ####
    ({"input": "P?", "target": "x+1", "rationale": "because"}, "x+1", "because"),
    ({"problem": "P?", "answer": "", "solution": "thus \\boxed{4}"}, "4", "thus \\boxed{4}"),  # empty answer cell
])
def test_column_recognition(tmp_path, row, gold, solution):
    ds = load_math_dataset(str(write(tmp_path / "d.jsonl", [row])))
    assert (ds[0]["answer"], ds[0]["solution"], ds[0]["question"]) == (gold, solution, "P?")


def test_a_csv_with_an_excel_bom_reads_its_first_column(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffquestion,answer\nWhat is 2 + 2?,4\n".encode("utf-8"))  # Excel's "CSV UTF-8"
    ds = load_math_dataset(str(path))
    assert (ds[0]["question"], ds[0]["answer"]) == ("What is 2 + 2?", "4")


@pytest.mark.parametrize("name, content, message", [
    # an unquoted comma splits a question: an error naming the line, never a guess about which cell is which
    ("extra.csv", "question,answer\nWhat is 1,000 + 1?,1001\n", r"extra\.csv: line 2 has 3 cells but the header has 2"),
    ("empty.csv", "", r"empty\.csv: the file is empty"),
    ("blank.jsonl", "\n\n", r"blank\.jsonl: the file is empty"),
    ("header.csv", "question,answer\n", r"header\.csv: the file has a header \(question, answer\) but no rows"),
    ("none.json", "[]", r"none\.json: the file holds no rows"),
])
def test_malformed_and_empty_files_are_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatasetError, match=message) as e:
        load_math_dataset(str(path))
    assert "\n" not in str(e.value)


def test_unrecognised_columns_name_file_found_columns_and_valid_names(tmp_path):
    path = write(tmp_path / "bad.csv", [{"text": "x", "label": "1"}])
    with pytest.raises(DatasetError, match=r"bad\.csv.*found: text, label.*question, problem"):
        load_math_dataset(str(path))
    path = write(tmp_path / "noans.jsonl", [{"question": "x", "label": "1"}])
    with pytest.raises(DatasetError, match=r"no answer column.*found: question, label.*final_answer"):
        load_math_dataset(str(path))


def test_split_slicing_and_unknown_split(tmp_path):
    rows = [{"question": f"q{i}", "answer": str(i)} for i in range(20)]
    write(tmp_path / "train.jsonl", rows)
    write(tmp_path / "test.jsonl", rows[:10])
    d = str(tmp_path)
    assert load_math_dataset(d, "train[10:13]")["answer"] == ["10", "11", "12"]
    assert load_math_dataset(d, "test[:20%]")["answer"] == ["0", "1"]
    assert len(load_math_dataset(d, "train+test")) == 30
    with pytest.raises(DatasetError, match=r"unknown split 'validation'.*test, train"):
        load_math_dataset(d, "validation")
    with pytest.raises(DatasetError, match=r"bad split 'train\[:x\]'"):
        load_math_dataset(d, "train[:x]")


def test_max_samples_takes_first_usable_rows(tmp_path):
    rows = [{"question": "", "answer": "1"}] + [{"question": f"q{i}", "answer": str(i)} for i in range(5)]
    assert load_math_dataset(str(write(tmp_path / "d.jsonl", rows)), max_samples=2)["answer"] == ["0", "1"]
    with pytest.raises(DatasetError, match="max_samples"):
        load_math_dataset(str(tmp_path / "d.jsonl"), max_samples=0)


def test_bad_rows_dropped_and_all_bad_is_an_error(tmp_path, caplog):
    rows = [{"question": "ok", "answer": "1"}, {"question": " ", "answer": "2"}, {"question": "q", "answer": ""},
            {"question": "q", "solution": "no marked answer"}]  # no answer and an unmarked solution: no gold
    with caplog.at_level("INFO", logger="grpo_math.data.sources"):
        assert load_math_dataset(str(write(tmp_path / "d.jsonl", rows)))["answer"] == ["1"]
    assert "dropped 1 rows with an empty question and 2 with no parseable gold" in caplog.text
    with pytest.raises(DatasetError, match=r"empty\.jsonl.*no usable rows"):
        load_math_dataset(str(write(tmp_path / "empty.jsonl", rows[1:])))


@pytest.mark.parametrize("dataset_id, match", [
    ("./no/such/dir", "does not exist"),
    ("missing.jsonl", "does not exist"),  # looks like a file, so it is not taken for a hub id
])
def test_check_dataset_id_missing_paths(dataset_id, match):
    with pytest.raises(DatasetError, match=match):
        du.check_dataset_id(dataset_id)


def test_check_dataset_id_extensions_and_hub_names(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match=r"unsupported extension '\.txt'.*\.jsonl"):
        du.check_dataset_id(str(tmp_path / "notes.txt"))
    with pytest.raises(DatasetError, match="no data files"):
        du.check_dataset_id(str(tmp_path))
    for ok in ("openai/gsm8k", "gsm8k", "arithmetic"):
        du.check_dataset_id(ok)  # hub-looking ids and the built-in task pass without any network


# ------------------------------------------------------------------------------------------------------ the hub

def test_made_up_hub_id_fails_fast_with_one_line():
    start = time.monotonic()
    with pytest.raises(DatasetError) as err:
        load_math_dataset("no-such-org-xyz/no-such-dataset-xyz")
    assert time.monotonic() - start < 10  # datasets alone retries for ~25 s offline
    msg = str(err.value)
    assert "\n" not in msg and "no-such-org-xyz/no-such-dataset-xyz" in msg
    assert "--demo" in msg or "HF_HUB_OFFLINE" in msg or "local" in msg


def test_hub_path_uses_gsm8k_config_and_translates_errors(monkeypatch):
    calls = []

    def fake_load(name, config=None, split=None):
        calls.append((name, config, split))
        if split == "dev":
            raise ValueError('Unknown split "dev". Should be one of [\'train\', \'test\'].')
        if name == "typo/name":
            raise FileNotFoundError("Dataset 'typo/name' doesn't exist on the Hub")
        return datasets.Dataset.from_list([dict(r, messages="x") for r in ROWS])

    monkeypatch.setattr(hub, "hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    ds = load_math_dataset("openai/gsm8k", "test")
    assert calls[-1] == ("openai/gsm8k", "main", "test") and ds["answer"] == ["5", "1080", "7"]
    assert "messages" not in ds.column_names  # only recognised columns are carried through
    with pytest.raises(DatasetError, match=r"openai/gsm8k.*Unknown split \"dev\""):
        load_math_dataset("openai/gsm8k", "dev")
    with pytest.raises(DatasetError, match=r"could not load 'typo/name'.*FileNotFoundError.*--demo"):
        load_math_dataset("typo/name")
    assert du.default_eval_split("HuggingFaceH4/MATH-500") == "test"


def test_hub_probe_goes_through_a_proxy_and_unreachable_hub_is_one_clear_line(monkeypatch):
    import socket
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    with socket.socket() as server:  # a live local "proxy": the probe must connect to it, not to the Hub
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{port}")
        hub.hub_reachable.cache_clear()  # one probe per process in real use; each case here probes anew
        assert hub.hub_reachable()
    monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{port}")  # now closed; a scheme-less proxy is still parsed
    hub.hub_reachable.cache_clear()
    assert not hub.hub_reachable()
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    with pytest.raises(DatasetError, match=r"cannot reach the Hugging Face Hub to load 'openai/gsm8k'.*--demo"):
        load_math_dataset("openai/gsm8k")
    hub.hub_reachable.cache_clear()  # leave no probe result from a fake proxy behind


# ------------------------------------------------------------------------------------------ arithmetic generator

def test_arithmetic_is_deterministic_short_and_correct():
    rows = du.arithmetic_problems(300, seed=7)
    assert rows == du.arithmetic_problems(300, seed=7) and rows != du.arithmetic_problems(300, seed=8)
    kinds = set()
    for r in rows:
        assert len(r["question"]) < 100 and r["question"].count("?") == 1
        steps = re.findall(r"^(\d+) ([-+*]) (\d+) = (\d+)$", r["solution"], re.M)
        for a, op, b, value in steps:  # recompute every step rather than trust the generator
            assert {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op] == int(value)
        assert steps and steps[-1][3] == r["answer"] and r["solution"].endswith(f"#### {r['answer']}")
        assert 0 < int(r["answer"]) <= 150
        # every operand the solution starts from appears in the question
        nums = re.findall(r"\d+", r["question"])
        assert steps[0][0] in nums and steps[0][2] in nums and (len(steps) == 1 or steps[1][2] in nums)
        kinds.add(tuple(op for _, op, _, _ in steps))
    assert kinds == {("+",), ("-",), ("*",), ("+", "-")}  # all four problem kinds occur


def test_arithmetic_splits_disjoint_and_loadable():
    train = load_math_dataset(du.BUILTIN_ARITHMETIC, "train")
    test = load_math_dataset(du.BUILTIN_ARITHMETIC, "test", seed=1)  # disjoint whatever the seeds
    assert (len(train), len(test)) == (du.ARITHMETIC_SIZES["train"], du.ARITHMETIC_SIZES["test"])
    assert not set(train["question"]) & set(test["question"])
    assert len(set(test["question"])) == len(test)
    assert load_math_dataset("arithmetic", "test[:3]", seed=1)["answer"] == test["answer"][:3]
    assert du.default_eval_split("arithmetic") == "test"
    with pytest.raises(DatasetError, match="available splits: train, test"):
        load_math_dataset("arithmetic", "validation")


# ----------------------------------------------------------------------------------------------------- templates

@pytest.mark.parametrize("lang", du.LANGS)
def test_templates_in_both_languages(lang):
    think = du.build_prompt("Q?", "think", lang)
    assert [m["role"] for m in think] == ["system", "user"] and think[1]["content"] == "Q?"
    assert all(tag in think[0]["content"] for tag in ("<think>", "</think>", "<answer>", "\\boxed{"))
    r1 = du.build_prompt("Q?", "r1_zero", lang)
    assert isinstance(r1, str) and r1.endswith("<think>") and "Q?" in r1 and "<answer>" in r1
    qwen = du.build_prompt("Q?", "qwen_math", lang)
    assert "\\boxed{}" in qwen[0]["content"] and qwen[1] == {"role": "user", "content": "Q?"}
    if lang == "zh":  # really Chinese, not the English text
        assert all(re.search(r"[\u4e00-\u9fff]", text) for text in (think[0]["content"], r1, qwen[0]["content"]))


def test_r1_zero_english_is_the_deepseek_prompt_and_system_prompt_overrides():
    r1 = du.build_prompt("What is 2+2?", "r1_zero")
    assert r1.startswith("A conversation between User and Assistant. The User asks a question")
    assert r1.endswith("</answer>.\nUser: What is 2+2?\nAssistant: <think>")
    assert du.build_prompt("Q", "think", system_prompt="Be brief.")[0] == {"role": "system", "content": "Be brief."}
    assert du.build_prompt("Q", "qwen_math")[0]["content"] == \
        "Please reason step by step, and put your final answer within \\boxed{}."


@pytest.mark.parametrize("kwargs, match", [
    ({"template": "chatml"}, r"unknown prompt template 'chatml'.*think, r1_zero, qwen_math"),
    ({"lang": "fr"}, r"unknown prompt language 'fr'.*en, zh"),
])
def test_unknown_template_or_lang(kwargs, match):
    with pytest.raises(DatasetError, match=match):
        du.build_prompt("Q", **kwargs)
    with pytest.raises(DatasetError, match=match):  # checked before any data is read
        load_math_dataset("./does/not/exist", prompt_template=kwargs.get("template", "think"),
                          prompt_lang=kwargs.get("lang", "en"))


# ------------------------------------------------------------------------------------------- prompt-length filter

@pytest.fixture(scope="module")
def qwen_tokenizer():
    if not QWEN_TOKENIZER.is_dir():
        pytest.skip(f"no Qwen tokenizer at {QWEN_TOKENIZER}")
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(QWEN_TOKENIZER))


@pytest.mark.parametrize("template", ["think", "r1_zero"])
def test_filter_long_prompts_counts_templated_tokens(tmp_path, qwen_tokenizer, template):
    rows = [{"question": "word " * n + "?", "answer": str(n)} for n in (1, 40, 5, 80)]
    ds = load_math_dataset(str(write(tmp_path / "d.jsonl", rows)), prompt_template=template)

    def n_tokens(prompt) -> int:  # independently: render the text, then count its tokens
        text = prompt if isinstance(prompt, str) else qwen_tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, tokenize=False)
        return len(qwen_tokenizer(text, add_special_tokens=False)["input_ids"])

    lengths = [n_tokens(p) for p in ds["prompt"]]
    limit = sorted(lengths)[1]  # exactly the second shortest: a prompt at the limit is kept
    kept, n_dropped = du.filter_long_prompts(ds, qwen_tokenizer, limit)
    assert n_dropped == 2 and kept["answer"] == ["1", "5"]
    assert du.filter_long_prompts(ds, qwen_tokenizer, None) == (ds, 0)
    with pytest.raises(DatasetError, match=rf"--max_prompt_length 3 .*shortest: {min(lengths)}"):
        du.filter_long_prompts(ds, qwen_tokenizer, 3)


# ------------------------------------------------------------------------------------------------ the real data

def test_real_gsm8k():
    if not (SHARED_DATA / "gsm8k").is_dir():
        pytest.skip(f"no GSM8K copy at {SHARED_DATA / 'gsm8k'}")
    d = str(SHARED_DATA / "gsm8k")
    train, test = load_math_dataset(d, "train"), load_math_dataset(d, "test")
    assert (len(train), len(test)) == (7473, 1319)
    assert test[0]["answer"] == "18" and test[0]["solution"].endswith("#### 18")
    assert all(re.fullmatch(r"-?\d+", a) for a in train["answer"])  # integers, commas gone
    assert du.default_eval_split(d) == "test"


def test_real_math500():
    if not (SHARED_DATA / "math500").is_dir():
        pytest.skip(f"no MATH-500 copy at {SHARED_DATA / 'math500'}")
    d = str(SHARED_DATA / "math500")
    ds = load_math_dataset(d, "test", prompt_template="qwen_math")
    assert len(ds) == 500 and ds[0]["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert "\\boxed" in ds[0]["solution"]
    assert du.default_eval_split(d) == "test"
    with pytest.raises(DatasetError, match="available splits: test"):
        load_math_dataset(d, "train")


@pytest.mark.parametrize("name, text, match", [
    ("d.jsonl", '{"question": "q", "answer": "1"}\n{"question": oops}\n', r"d\.jsonl: line 2"),  # names the row
    ("d.json", '{"question": "q", ', r"d\.json"),  # truncated JSON
    ("d.json", '"just a string"', r"expected JSON objects"),
    ("d.jsonl", '[1, 2]\n', r"expected JSON objects"),  # rows must be objects
])
def test_unreadable_files_name_file_and_row(tmp_path, name, text, match):
    (tmp_path / name).write_text(text)
    with pytest.raises(DatasetError, match=match):
        load_math_dataset(str(tmp_path / name))
