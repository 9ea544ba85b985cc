"""eval.py and eval.sh: pass@k/maj@k by hand, eval and training scoring a completion identically, resume after an
interrupted eval, bad input (exit 2, one line, earlier results intact), the full JSON on real GSM8K, the
comparison table, and eval.sh on a tiny run (base, a checkpoint, final)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import eval as ev
from grpo_math.evaluation import results as eval_results
from grpo_math.evaluation import scoring
from data_utils import build_prompt, load_math_dataset
from reward import load_reward_funcs

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model gains nothing from threads, and on a shared 2-core box OpenMP's spinning threads make a
    decode step ~50x slower; one thread keeps this file fast wherever it runs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
RECORD_KEYS = {"prompt", "completion", "solution", "answer", "prediction", "reward", "correct", "format_ok",
               "num_tokens", "index", "sample", "truncated", "correct_lenient"}
METRIC_KEYS = {"accuracy", "accuracy_lenient", "format_rate", "mean_completion_tokens", "truncation_rate", "n",
               "wall_time_s", "completions_per_second"}


# ---------------------------------------------------------------------------------------------------------------
# Metrics, by hand


@pytest.mark.parametrize("n, c, k, expected", [
    (1, 1, 1, 1.0),            # one sample, right
    (1, 0, 1, 0.0),            # one sample, wrong
    (4, 1, 1, 0.25),           # pass@1 is the share correct
    (4, 1, 2, 0.5),            # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (4, 2, 2, 5 / 6),          # 1 - C(2,2)/C(4,2) = 1 - 1/6
    (5, 2, 3, 0.9),            # 1 - C(3,3)/C(5,3) = 1 - 1/10
    (10, 3, 5, 1 - 21 / 252),  # 1 - C(7,5)/C(10,5)
    (4, 0, 4, 0.0),            # none right: never passes
    (4, 1, 4, 1.0),            # k = n with one right: always passes (n - c < k)
])
def test_pass_at_k_is_the_unbiased_estimator(n, c, k, expected):
    assert math.isclose(scoring.pass_at_k(n, c, k), expected)


@pytest.mark.parametrize("n, c, k", [(4, 5, 1), (4, 1, 5), (4, 1, 0)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        scoring.pass_at_k(n, c, k)


@pytest.mark.parametrize("predictions, winner", [
    (["72", "72", "5"], 0),             # plain majority
    (["5", "72", "72"], 1),             # the largest group wins, not the first answer
    (["5", "72"], 0),                   # a tie goes to the answer seen first
    (["1,080", "7", "1080"], 0),        # equivalent spellings vote together (reward.answers_match)
    (["0.5", "2", "\\frac{1}{2}"], 0),  # ... also across forms
    ([None, None, "3"], 2),             # no answer never votes, however common
    ([None, ""], None),                 # nothing to vote for
])
def test_majority_vote_groups_equivalent_answers(predictions, winner):
    assert scoring.majority_vote(predictions) == winner


def _rec(index, sample, correct, prediction, tokens=10, truncated=False):
    return {"index": index, "sample": sample, "correct": correct, "correct_lenient": correct,
            "format_ok": correct, "prediction": prediction, "reward": float(correct), "num_tokens": tokens,
            "truncated": truncated}


def test_metrics_with_four_samples_by_hand():
    records = [
        # problem 0: one right of four, the majority ("5") wrong
        _rec(0, 0, True, "72"), _rec(0, 1, False, "5"), _rec(0, 2, False, "5"), _rec(0, 3, False, "9"),
        # problem 1: two right, the majority ("3") right; one gave no answer
        _rec(1, 0, True, "3"), _rec(1, 1, True, "3.0"), _rec(1, 2, False, "4"), _rec(1, 3, False, None),
        # problem 2: nothing right, no answers at all
        *[_rec(2, s, False, None, tokens=30, truncated=True) for s in range(4)],
    ]
    m = scoring.compute_metrics(list(reversed(records)), num_samples=4)  # order must not matter
    assert m["n"] == 3 and m["num_completions"] == 12
    assert math.isclose(m["accuracy"], 3 / 12)
    assert math.isclose(m["pass@1"], (1 / 4 + 2 / 4 + 0) / 3)  # = accuracy when every problem has K samples
    assert math.isclose(m["pass@4"], (1 + 1 + 0) / 3)
    assert math.isclose(m["maj@4"], (0 + 1 + 0) / 3)
    assert math.isclose(m["mean_completion_tokens"], (8 * 10 + 4 * 30) / 12)
    assert math.isclose(m["truncation_rate"], 4 / 12)
    assert "pass@2" not in m


def test_single_sample_metrics_have_no_pass_or_maj():
    m = scoring.compute_metrics([_rec(0, 0, True, "1"), _rec(1, 0, False, "2")], num_samples=1)
    assert m["accuracy"] == 0.5 and m["format_rate"] == 0.5 and not any("@" in k for k in m)


# ---------------------------------------------------------------------------------------------------------------
# Eval and training score a completion the same way


CHAT = build_prompt("Ana has 3 apples and gets 4 more. How many apples does Ana have?", "think")
R1 = build_prompt("Ana has 3 apples and gets 4 more. How many apples does Ana have?", "r1_zero")
AGREEMENT_CASES = [
    (CHAT, "<think>3 + 4 = 7</think><answer>\\boxed{7}</answer>", "7"),       # right, well formed
    (CHAT, "<think>3 + 4 = 8</think><answer>\\boxed{8}</answer>", "7"),       # wrong, well formed
    (CHAT, "<think>3 + 4</think><answer>7</answer>", "7"),                    # right, no box: half format
    (CHAT, "The answer is 7.", "7"),                                          # right by an anchor, no tags
    (CHAT, "<think>maybe \\boxed{7}", "7"),                                   # unclosed think: no answer
    (R1, " 3 + 4 = 7 </think> <answer> \\boxed{7} </answer>", "7"),          # r1_zero: the prompt opened <think>
    (R1, " 7 </think>", "7"),                                                 # r1_zero, no answer block
    (CHAT, "<think>x</think><answer>\\boxed{7}</answer>", ""),                # unusable gold: accuracy None
]


def _trl_rewards(funcs, weights, rows, texts, ids):
    """Rewards exactly as GRPOTrainer computes them: its own _calculate_rewards, then the weighted nansum."""
    import torch
    from trl import GRPOTrainer

    trainer = SimpleNamespace(
        accelerator=SimpleNamespace(device="cpu", is_main_process=True), reward_funcs=funcs,
        reward_processing_classes=[None] * len(funcs), reward_func_names=[f.__name__ for f in funcs],
        state=SimpleNamespace(global_step=0), args=SimpleNamespace(report_to=[]), environments=None,
        _log_completion_extra=lambda *a, **k: None, _log_metric=lambda *a, **k: None)
    prompts = [r["prompt"] for r in rows]
    # as GRPOTrainer._generate_and_score_completions shapes them: chat prompts get assistant messages
    completions = [t if isinstance(p, str) else [{"role": "assistant", "content": t}] for p, t in zip(prompts, texts)]
    per_func = GRPOTrainer._calculate_rewards(trainer, rows, prompts, completions, ids)
    total = (per_func * torch.tensor(weights).unsqueeze(0)).nansum(dim=1)
    total[torch.isnan(per_func).all(dim=1)] = torch.nan
    return per_func, total


@pytest.mark.parametrize("names, weights", [(["format", "accuracy"], [1.0, 1.0]),
                                            (["format", "accuracy", "r1_zero", "overlong"], [0.5, 2.0, 1.0, 1.0]),
                                            (["accuracy"], [1.0])])
def test_eval_and_training_score_the_same_completion_identically(names, weights):
    funcs = load_reward_funcs(names, max_completion_length=32)
    rows = [{"prompt": p, "answer": g, "solution": f"#### {g}", "question": "q"} for p, _, g in AGREEMENT_CASES]
    texts = [t for _, t, _ in AGREEMENT_CASES]
    ids = [[1] * (5 + 4 * i) for i in range(len(texts))]  # lengths the overlong reward reads
    scored = scoring.score_completions(rows, texts, ids, funcs, weights)
    per_func, total = _trl_rewards(funcs, weights, rows, texts, ids)
    for i, (s, row) in enumerate(zip(scored, rows)):
        for j, f in enumerate(funcs):
            got = s["rewards"][f.__name__]
            assert (got is None) == math.isnan(per_func[i, j]), (i, f.__name__)
            assert got is None or math.isclose(got, per_func[i, j].item()), (i, f.__name__)
        assert (s["reward"] is None) == math.isnan(total[i])
        assert s["reward"] is None or math.isclose(s["reward"], total[i].item(), abs_tol=1e-6)
        if "accuracy" in names and row["answer"]:  # `correct` is what the accuracy reward pays for
            assert s["correct"] == (s["rewards"]["accuracy"] == 1.0)
        if "format" in names:
            assert s["format_score"] == s["rewards"]["format"]
    # a sanity anchor, so that agreement cannot come from both sides scoring nothing
    assert scored[0]["correct"] and not scored[1]["correct"] and scored[5]["correct"]


def test_prompts_are_tokenized_as_for_training(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    chat_ids, r1_ids = scoring.encode_prompts(tok, [CHAT, R1])
    assert tok.decode(chat_ids).endswith("<|im_start|>assistant\n")  # the generation prompt is there
    assert r1_ids == tok(R1, add_special_tokens=False)["input_ids"]   # plain text: as is


def test_plain_prompts_keep_the_bos_a_tokenizer_adds_as_in_training(tiny_model_dir):
    """r1_zero prompts are plain text: TRL tokenizes them with the tokenizer's special tokens, so a Llama-style
    BOS is in training's prompts, and must be in eval's, inference's and the length filter's too."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    import datasets

    from grpo_math.data.sources import DatasetError, filter_long_prompts

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    bos = tok.eos_token  # any special token will do as a BOS
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tok.convert_tokens_to_ids(bos))])
    (r1_ids,) = scoring.encode_prompts(tok, [R1])
    assert r1_ids == tok(text=[R1])["input_ids"][0]  # what TRL 1.16's _tokenize_prompts builds
    assert r1_ids[0] == tok.convert_tokens_to_ids(bos) and r1_ids[1:] == tok(R1, add_special_tokens=False)["input_ids"]
    ds = datasets.Dataset.from_dict({"prompt": [R1], "answer": ["1"]})
    assert filter_long_prompts(ds, tok, len(r1_ids))[1] == 0
    with pytest.raises(DatasetError, match=f"shortest: {len(r1_ids)}"):  # the BOS counts
        filter_long_prompts(ds, tok, len(r1_ids) - 1)


# ---------------------------------------------------------------------------------------------------------------
# evaluate(): resume, training mode


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from grpo_math.models.loading import load_for_inference

    model, tok, _ = load_for_inference(str(tiny_model_dir), __import__("torch").float32, "cpu")
    return model, tok


@pytest.fixture(scope="module")
def six_problems():
    return load_math_dataset("arithmetic", "test", max_samples=6)


@pytest.mark.slow
def test_an_interrupted_eval_resumes_where_it_stopped(tiny, six_problems, tmp_path, monkeypatch):
    from grpo_math.models import rollout

    model, tok = tiny
    # sampled, so that the test also shows a resume draws the samples an uninterrupted run draws
    kwargs = dict(max_completion_length=6, batch_size=4, temperature=1.0, num_samples=2, seed=7)
    _, reference = scoring.evaluate(model, tok, six_problems, **kwargs)  # uninterrupted, no file

    real, calls = rollout.generate, []

    def failing_third_batch(*a, **k):
        calls.append(len(a[1]))
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        return real(*a, **k)

    monkeypatch.setattr(rollout, "generate", failing_third_batch)
    partial = tmp_path / "out.json.partial.jsonl"
    with pytest.raises(RuntimeError, match="simulated crash"):
        scoring.evaluate(model, tok, six_problems, records_file=partial, **kwargs)
    saved = [json.loads(line) for line in partial.read_text().splitlines()]
    assert len(saved) == 8 and all({"index", "sample"} <= set(r) for r in saved)
    with open(partial, "a") as f:
        f.write('{"index": 5, "sam')  # killed in the middle of a write

    calls.clear()
    metrics, records = scoring.evaluate(model, tok, six_problems, records_file=partial, **kwargs)
    assert calls == [4]  # only the last batch was generated again
    assert metrics["num_resumed"] == 8 and metrics["num_generated"] == 4 and metrics["n"] == 6
    strip = [{k: r[k] for k in ("index", "sample", "completion", "reward", "correct")} for r in records]
    assert strip == [{k: r[k] for k in ("index", "sample", "completion", "reward", "correct")} for r in reference]
    assert all(json.loads(line) for line in partial.read_text().splitlines())  # the torn line is gone


@pytest.mark.slow
def test_evaluate_on_a_peft_model_in_training_mode_restores_it(tiny_model_dir, six_problems):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir, padding_side="left")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                           LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.5))
    model.train()
    metrics, records = scoring.evaluate(model, tok, six_problems.select(range(2)), max_completion_length=4,
                                   temperature=1.0, num_samples=2, seed=3)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert METRIC_KEYS | {"pass@1", "pass@2", "maj@2"} <= set(metrics)
    assert [(r["index"], r["sample"]) for r in records] == [(0, 0), (0, 1), (1, 0), (1, 1)]


# ---------------------------------------------------------------------------------------------------------------
# The command line


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = ev.main([*map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.slow
def test_cli_on_real_gsm8k_writes_the_full_json(tiny_model_dir, shared_data, tmp_path, capsys):
    out_file = tmp_path / "res" / "tiny.json"
    rc, out, _ = _cli(capsys, "--model_dir", tiny_model_dir, "--dataset_id", shared_data / "gsm8k",
                      "--split", "test[:16]", "--max_completion_length", 16, "--output_file", out_file)
    assert rc == 0 and out.count("\n") == 1 and "accuracy" in out and str(out_file) in out
    data = json.loads(out_file.read_text())
    config, metrics, records = data["config"], data["metrics"], data["records"]
    assert config["split"] == "test[:16]" and config["prompt_template"] == "think" and config["num_samples"] == 1
    assert config["versions"]["transformers"] and config["versions"]["trl"] and config["max_completion_length"] == 16
    assert METRIC_KEYS <= set(metrics) and metrics["n"] == 16
    assert len(records) == 16 and all(RECORD_KEYS <= set(r) for r in records)
    assert records[0]["answer"] == "18" and "#### 18" in records[0]["solution"]  # GSM8K test row 0
    assert all(0 < r["num_tokens"] <= 16 for r in records)
    assert not out_file.with_name("tiny.json.partial.jsonl").exists()

    # --skip_existing: same settings and weights, nothing is redone
    before = out_file.stat().st_mtime_ns
    rc, out, _ = _cli(capsys, "--model_dir", tiny_model_dir, "--dataset_id", shared_data / "gsm8k", "--split",
                      "test[:16]", "--max_completion_length", 16, "--output_file", out_file, "--skip_existing")
    assert rc == 0 and "up to date" in out and out_file.stat().st_mtime_ns == before


def _orphan_adapter(tmp_path: Path) -> Path:
    d = tmp_path / "orphan"
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/no/such/base",
                                                       "peft_type": "LORA"}))
    return d


def _corrupt_weights(tmp_path: Path, tiny_model_dir: Path) -> Path:
    d = tmp_path / "corrupt"
    d.mkdir()
    for f in tiny_model_dir.iterdir():
        (d / f.name).write_bytes(f.read_bytes()[:200] if f.suffix == ".safetensors" else f.read_bytes())
    return d


@pytest.mark.parametrize("case, argv, message", [
    ("missing model", ["--model_dir", "{tmp}/nowhere"], "no such directory"),
    ("corrupted config", ["--model_dir", "{tmp}/badconfig"], "missing or corrupted model files"),
    ("corrupted weights", ["--model_dir", "{corrupt}"], "corrupted weights file"),
    ("adapter without base", ["--model_dir", "{orphan}"], "cannot find the adapter's base model"),
    ("unknown split", ["--split", "validation"], "unknown split 'validation'"),
    ("empty slice", ["--split", "test[600:]"], "split 'test[600:]' selects no rows"),
    ("bad flag", ["--num_samples", "0"], "--num_samples 0"),
    ("greedy samples", ["--num_samples", "4"], "identical"),
    ("unknown flag", ["--no_such_flag"], "--no_such_flag"),
    ("unknown reward", ["--reward_funcs", "acc"], "unknown reward 'acc'"),
    # the flags training also has go through main.py's rules: ranges and finite numbers
    ("nan weight", ["--reward_funcs", "accuracy", "--reward_weights", "nan"], "nan is not a finite number"),
    ("seed range", ["--seed", "-1"], "--seed -1 must be in 0..4294967295"),
    ("nan temperature", ["--temperature", "nan"], "--temperature nan"),
])
def test_bad_input_is_one_line_exit_2_and_keeps_earlier_results(case, argv, message, tiny_model_dir, tmp_path,
                                                                  capsys):
    (tmp_path / "badconfig").mkdir()
    (tmp_path / "badconfig" / "config.json").write_text("{not json")
    subs = {"tmp": str(tmp_path), "corrupt": str(_corrupt_weights(tmp_path, tiny_model_dir)),
            "orphan": str(_orphan_adapter(tmp_path))}
    results = tmp_path / "results.json"
    results.write_text("earlier results\n")
    base = ["--model_dir", str(tiny_model_dir), "--dataset_id", "arithmetic", "--output_file", str(results)]
    rc, out, err = _cli(capsys, *base, *[a.format(**subs) for a in argv])
    assert rc == 2, case
    assert err.count("\n") == 1 and err.startswith("eval.py: error: ") and message in err, err
    assert out == "" and results.read_text() == "earlier results\n"
    assert not (tmp_path / "results.json.partial.jsonl").exists()


def test_the_real_cli_exits_2_with_one_line(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "eval.py"), "--model_dir", str(tmp_path / "nowhere")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.splitlines() == [f"eval.py: error: --model_dir {tmp_path}/nowhere: "
                                                               "no such directory"]


def test_a_partial_file_from_other_settings_is_moved_aside(tmp_path):
    partial = tmp_path / "r.json.partial.jsonl"
    old = {"model_dir": "m", "temperature": 0.0}
    partial.write_text(json.dumps({"config": old}) + "\n" + json.dumps({"index": 0, "sample": 0}) + "\n")
    eval_results.open_partial(partial, dict(old))  # same settings: kept as it is
    assert partial.read_text().count("\n") == 2
    eval_results.open_partial(partial, {**old, "temperature": 0.7, "batch_size": 4})
    assert json.loads(partial.read_text())["config"]["temperature"] == 0.7  # a fresh header, no records
    assert (tmp_path / "r.json.partial.jsonl.stale").read_text().count("\n") == 2


# ---------------------------------------------------------------------------------------------------------------
# Comparing a run's checkpoints


def _result(d: Path, name: str, step, acc: float, tokens: float) -> None:
    metrics = {"accuracy": acc, "accuracy_lenient": acc + 0.125, "format_rate": acc / 2,
               "mean_completion_tokens": tokens, "n": 8}
    config = {"dataset_id": "arithmetic", "split": "test[:8]", "step": step}
    (d / f"{name}.json").write_text(json.dumps({"config": config, "metrics": metrics, "records": []}))


def test_summary_orders_by_step_and_measures_from_base(tmp_path, capsys):
    for name, step, acc, tok in [("final", 10, 0.75, 40.0), ("checkpoint-10", 10, 0.75, 40.0),
                                 ("checkpoint-2", 2, 0.5, 50.0), ("base", None, 0.25, 60.0)]:
        _result(tmp_path, name, step, acc, tok)
    (tmp_path / "notes.json").write_text("{}")  # not a result: ignored
    rc, out, _ = _cli(capsys, "--summarize", tmp_path)
    assert rc == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [r["name"] for r in summary["rows"]] == ["base", "checkpoint-2", "checkpoint-10", "final"]
    assert [r["step"] for r in summary["rows"]] == [0, 2, 10, 10]
    assert summary["rows"][1]["delta_accuracy"] == 0.25 and summary["rows"][3]["delta_mean_completion_tokens"] == -20
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["checkpoint", "step", "accuracy"]
    assert lines[4].split()[:4] == ["checkpoint-10", "10", "75.0%", "(+50.0pp)"]
    assert "-20.0" in lines[5]


def test_summary_of_an_empty_directory_is_an_error(tmp_path, capsys):
    rc, _, err = _cli(capsys, "--summarize", tmp_path)
    assert rc == 2 and "no base.json" in err


# ---------------------------------------------------------------------------------------------------------------
# eval.sh on a tiny run


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory) -> Path:
    """A run directory as main.py leaves it: run_config.json, checkpoint-1/ and final/ LoRA adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = tmp_path_factory.mktemp("runs") / "tinyrun"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for i, name in enumerate(("checkpoint-1", "final")):
        torch.manual_seed(i)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                               LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
        model.save_pretrained(run / name)
        tok.save_pretrained(run / name)
    args = {"model_id": str(tiny_model_dir), "dataset_id": "arithmetic", "prompt_template": "think",
            "prompt_lang": "en", "max_completion_length": 6, "reward_funcs": ["format", "accuracy"],
            "reward_weights": None, "max_steps": 2}
    (run / "run_config.json").write_text(json.dumps({"args": args}))
    return run


@pytest.mark.slow
def test_eval_sh_scores_base_each_checkpoint_and_final(tiny_run, tiny_model_dir, tmp_path):
    # checkpoints a killed save of an older version left: empty, and with its adapter cut in half; eval.sh says
    # so and scores the complete ones after them
    (tiny_run / "checkpoint-0").mkdir(exist_ok=True)
    torn = tiny_run / "checkpoint-2"
    shutil.copytree(tiny_run / "checkpoint-1", torn, dirs_exist_ok=True)
    weights = torn / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    env = {**os.environ, "PYTHON": sys.executable, "RESULTS_DIR": str(tmp_path / "results"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run(["bash", str(ROOT / "eval.sh"), str(tiny_run), "arithmetic", "test[:4]", "--batch_size", "4"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "eval.sh: skipping checkpoint-0: it holds no weights" in res.stderr
    assert "eval.sh: skipping checkpoint-2: adapter_model.safetensors is truncated" in res.stderr
    out = tmp_path / "results" / "tinyrun"
    assert sorted(p.name for p in out.iterdir()) == ["base.json", "checkpoint-1.json", "final.json", "summary.json"]
    table = [line.split() for line in res.stdout.splitlines() if line.split()[:1] in (["base"], ["checkpoint-1"],
                                                                                      ["final"])]
    assert [row[:2] for row in table] == [["base", "0"], ["checkpoint-1", "1"], ["final", "2"]]
    assert all("pp)" in " ".join(row) for row in table[1:])  # the change from base
    final = json.loads((out / "final.json").read_text())
    assert final["config"]["base_model"] == str(tiny_model_dir) and final["metrics"]["n"] == 4
    assert final["config"]["max_completion_length"] == 6  # the run's, from run_config.json


@pytest.mark.slow
def test_rows_without_a_usable_gold_are_counted_said_and_stored(tiny_model_dir, tmp_path, capsys):
    rows = [{"question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(4)]
    rows += [{"question": "What is 7 + 1?", "answer": ""},  # no gold at all
             {"question": "What is 8 + 1?", "answer": "\x00\x01\x02\ufffd"},  # binary bytes
             {"question": "What is 9 + 1?", "answer": "#### " + "9" * 1_000_000},  # a million digits
             {"question": "  ", "answer": "3"}]  # an empty question
    data = tmp_path / "eight.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out_file = tmp_path / "res.json"
    rc, out, err = _cli(capsys, "--model_dir", tiny_model_dir, "--dataset_id", data, "--split", "train",
                        "--max_completion_length", 4, "--output_file", out_file)
    assert rc == 0
    assert "dropped 3 row(s) with no usable gold answer and 1 with an empty question" in err
    config = json.loads(out_file.read_text())["config"]
    assert (config["dropped_no_usable_gold"], config["dropped_empty_question"], config["n_examples"]) == (3, 1, 4)
