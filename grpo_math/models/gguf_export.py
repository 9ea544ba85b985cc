"""A merged model as a GGUF file (llama.cpp, Ollama): f16 or q8_0 weights, the tokenizer and the chat template.

    python export_gguf.py ckpts/demo                 # final/ of a run -> ckpts/demo/final.f16.gguf, final.q8_0.gguf
    python main.py --demo --export_gguf              # the same at the end of training

`export(model, tokenizer, path, qtype)` writes one file the way llama.cpp's convert_hf_to_gguf.py lays it out,
through the pinned `gguf` package's writer and its tensor-name map (gguf.get_tensor_name_map), so llama.cpp and
this tool's own GGUF input (gguf_models.py, through transformers) read it back:
  1. metadata: architecture hyper-parameters (context, widths, heads, rope base, norm epsilon, file type);
  2. tokenizer: a gpt2-style BPE vocabulary (tokens, token types, merges), bos/eos/pad ids, the chat template;
  3. tensors: Llama's q/k projections permuted from Hugging Face's rotate-half rotary layout to llama.cpp's
     interleaved one (transformers' GGUF loader undoes it on read); 2-D weights as f16 or q8_0 (blocks of 32;
     a row not a multiple of 32 stays f16), norms and biases f32 as llama.cpp keeps them; a tied lm_head is
     not written (llama.cpp reuses token_embd).
Supported: Llama (SmolLM2) and Qwen2, the architectures the tool's GGUF input reads; others are a one-line error.
Left out on purpose: k-quants and 4-bit types (llama.cpp's llama-quantize makes them from the f16 file), and
sentencepiece vocabularies (the supported models use byte-level BPE).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

QTYPES = ("f16", "q8_0")
_PRE = {"qwen2": "qwen2", "llama": "smollm"}  # llama.cpp's pre-tokenizer names for these vocabularies


class GGUFExportError(ValueError):
    """A model that cannot be written as GGUF; the message is one line naming it and what would work."""


def check_architecture(model_type: str) -> None:
    """A one-line GGUFExportError unless this exporter writes `model_type` (before a run trains)."""
    _arch(model_type)


def _arch(model_type: str):
    import gguf

    archs = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}
    if model_type not in archs:
        raise GGUFExportError(f"GGUF export supports {', '.join(sorted(archs))} models, not {model_type!r}; "
                              "llama.cpp's convert_hf_to_gguf.py covers more architectures")
    return archs[model_type]


def permute_rotary(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """Hugging Face's q/k rows (each head's first half, then second half) to llama.cpp's interleaved pairs:
    convert_hf_to_gguf.py's LlamaModel.permute. [n_head*head_dim, hidden] -> same shape."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _add_tokenizer(w, tokenizer, model_type: str) -> None:
    import gguf

    vocab = tokenizer.get_vocab()
    size = max(vocab.values()) + 1
    tokens = [f"[PAD{i}]" for i in range(size)]
    for tok, i in vocab.items():
        tokens[i] = tok
    special, added = set(tokenizer.all_special_tokens), set(tokenizer.get_added_vocab())
    types = [gguf.TokenType.CONTROL if t in special else gguf.TokenType.USER_DEFINED if t in added
             else gguf.TokenType.UNUSED if t.startswith("[PAD") and t not in vocab else gguf.TokenType.NORMAL
             for t in tokens]
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    if model.get("type") != "BPE":
        raise GGUFExportError(f"GGUF export writes byte-level BPE vocabularies; this tokenizer is {model.get('type')}")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(_PRE[model_type])
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in model["merges"]])
    for add, tid in ((w.add_bos_token_id, tokenizer.bos_token_id), (w.add_eos_token_id, tokenizer.eos_token_id),
                     (w.add_pad_token_id, tokenizer.pad_token_id)):
        if tid is not None:
            add(int(tid))
    w.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))
    if tokenizer.chat_template:
        w.add_chat_template(tokenizer.chat_template)


def _tensor_data(name: str, t: torch.Tensor, qtype: str):
    """(numpy data, raw ggml type or None) for one tensor: 2-D weights in `qtype`, the rest f32."""
    import gguf

    data = t.detach().to(torch.float32).cpu().numpy()
    if data.ndim != 2:
        return data, None  # norms and biases: f32, as llama.cpp keeps them
    if qtype == "q8_0" and data.shape[-1] % 32 == 0:
        kind = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(data, kind), kind
    return data.astype(np.float16), None


def export(model, tokenizer, path: str | Path, qtype: str = "f16") -> Path:
    """Write the plain (merged) causal LM `model` with `tokenizer` as the GGUF file `path` in `qtype`."""
    import gguf

    if qtype not in QTYPES:
        raise GGUFExportError(f"GGUF type {qtype!r}: choose one of {', '.join(QTYPES)}")
    cfg = model.config
    arch = _arch(cfg.model_type)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")  # renamed into place when whole: a reader never sees half a file
    w = gguf.GGUFWriter(str(tmp), arch=gguf.MODEL_ARCH_NAMES[arch])
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w.add_name(Path(str(getattr(cfg, "_name_or_path", "")) or "model").name or "model")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    rope = (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta") or getattr(cfg, "rope_theta", 10000.0)
    w.add_rope_freq_base(float(rope))
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if qtype == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
    _add_tokenizer(w, tokenizer, cfg.model_type)
    names = gguf.get_tensor_name_map(arch, cfg.num_hidden_layers)
    tied = bool(getattr(cfg, "tie_word_embeddings", False))
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and tied:
            continue  # llama.cpp reads the tied output from token_embd
        if "rotary_emb" in name:
            continue
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise GGUFExportError(f"GGUF export: no GGUF name for tensor {name!r} of this {cfg.model_type} model")
        if cfg.model_type == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
            tensor = permute_rotary(tensor, cfg.num_attention_heads if "q_proj" in name else cfg.num_key_value_heads)
        data, raw = _tensor_data(name, tensor, qtype)
        w.add_tensor(new, data, raw_dtype=raw)
    try:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
    finally:
        w.close()
    tmp.replace(path)
    logger.info("wrote %s (%s, %.1f MB)", path, qtype, path.stat().st_size / 1e6)
    return path


def export_model_dir(model_dir: str | Path, out_dir: str | Path | None = None, qtypes: tuple[str, ...] = QTYPES,
                     stem: str | None = None) -> list[Path]:
    """A model or adapter directory (an adapter is merged into its base) as `<stem>.<qtype>.gguf` files in
    `out_dir` (default: next to it, named after it). Returns the paths written."""
    from grpo_math.models.loading import load_for_inference

    model_dir = Path(model_dir).expanduser()
    model, tokenizer, _ = load_for_inference(str(model_dir), torch.float32, "cpu")
    out_dir = Path(out_dir) if out_dir else model_dir.parent
    stem = stem or model_dir.name
    return [export(model, tokenizer, out_dir / f"{stem}.{q}.gguf", q) for q in qtypes]
