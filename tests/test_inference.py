"""inference.py: answers the built-in questions (one in Chinese) and given ones, streams the same text it would
print whole, and stops bad input with one line and exit code 2."""

from __future__ import annotations

import json
import re

import pytest

import inference


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """See test_eval.py: one thread keeps the tiny model fast on a shared 2-core box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_answers_the_built_in_questions(tiny_model_dir, capsys):
    assert inference.main(["--model_dir", str(tiny_model_dir), "--max_new_tokens", "8"]) == 0
    out = capsys.readouterr().out
    questions = [line for line in out.splitlines() if line.startswith("### ")]
    assert len(questions) == len(inference.BUILTIN_QUESTIONS) == 3
    assert any("苹果" in q for q in questions)  # the Chinese one
    answers = [line for line in out.splitlines() if line.startswith("-> answer: ")]
    assert len(answers) == 3 and "(expected 72)" in answers[0] and "(expected 17)" in answers[2]
    assert all(re.search(r"\[[1-8] tokens, ", a) for a in answers)  # at most --max_new_tokens


@pytest.mark.slow
def test_answers_a_question_with_an_adapter_and_the_runs_template(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = tmp_path / "run"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
                           LoraConfig(r=4, target_modules="all-linear"))
    model.save_pretrained(run / "final")
    (run / "run_config.json").write_text(json.dumps({"args": {"model_id": str(tiny_model_dir),
                                                              "prompt_template": "r1_zero"}}))
    prompts, real = [], inference.answer
    monkeypatch.setattr(inference, "answer",
                        lambda m, t, prompt, **k: prompts.append(prompt) or real(m, t, prompt, **k))
    question = "Ana has 3 apples and gets 4 more. How many apples does Ana have?"
    assert inference.main(["--model_dir", str(run / "final"), "--max_new_tokens", "6", question]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"### 1. {question}\n") and "-> answer: " in out
    assert isinstance(prompts[0], str) and prompts[0].endswith("Assistant: <think>")  # the run's r1_zero template


@pytest.mark.slow
def test_streaming_prints_what_the_whole_answer_would_be(tiny_model_dir, capsys):
    from data_utils import build_prompt
    from grpo_math.models.loading import load_for_inference

    model, tok, _ = load_for_inference(str(tiny_model_dir), __import__("torch").float32, "cpu")
    prompt = build_prompt("A pen costs 3 yuan. How much do 4 pens cost?", "think")
    whole, n_whole = inference.answer(model, tok, prompt, max_new_tokens=12)
    capsys.readouterr()
    streamed, n_streamed = inference.answer(model, tok, prompt, max_new_tokens=12, stream=True)
    printed = capsys.readouterr().out
    assert (streamed, n_streamed) == (whole, n_whole)  # greedy: the same completion either way
    assert printed.rstrip("\n") == whole.rstrip("\n")  # and it is what was streamed to the terminal
    sampled = [inference.answer(model, tok, prompt, max_new_tokens=12, temperature=1.0, seed=5, stream=stream)
               for stream in (False, True)]
    assert sampled[0] == sampled[1]  # sampling too: the same seeded generator either way


@pytest.mark.parametrize("argv, message", [
    (["--model_dir", "./no/such/model", "q"], "no such directory"),
    (["q"], "--model_dir"),                                   # required
    (["--model_dir", ".", "--max_new_tokens", "0", "q"], "--max_new_tokens 0"),
    (["--model_dir", ".", "--top_p", "2", "q"], "--top_p 2"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    assert inference.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("inference.py: error: ") and message in err, err


@pytest.mark.parametrize("questions, which", [([""], "question 1 of 1 is empty"),
                                              (["What is 2 + 2?", " \n\t"], "question 2 of 2 is blank")])
def test_an_empty_or_blank_question_is_one_line_naming_it(tiny_model_dir, capsys, questions, which):
    assert inference.main(["--model_dir", str(tiny_model_dir), *questions]) == 2
    err = capsys.readouterr().err
    assert which in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
