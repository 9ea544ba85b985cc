"""Loading models and tokenizers, with errors a user can act on: shared by train.py, eval.py and inference.py.

A model reference is a hub id (`Qwen/Qwen2.5-0.5B-Instruct`), a full model directory, a `.gguf` file (read
through its converted copy, see gguf_files.py), or a LoRA adapter directory (`ckpts/run/final`,
`ckpts/run/checkpoint-100`). For an adapter the base model is, in order:
`--base_model`, the adapter's `base_model_name_or_path` if it still resolves, the run's `run_config.json`
`model_id`, or the run's own `base_model/` folder (the demo keeps its tiny base there).

`load_model(..., load_in_4bit=True)` loads the base as NF4 through bitsandbytes (quantize.py: QLoRA).
Left out on purpose: 8-bit loading, and remote code unless asked for.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from grpo_math.models.gguf_files import GGUFError, local_source
from grpo_math.data.hub import is_local_path
from grpo_math.runs.rundir import BASE_MODEL, find_run_config

logger = logging.getLogger(__name__)


class ModelLoadError(ValueError):
    """A model, adapter or tokenizer that cannot be loaded; the message names it and what would work."""


def _hub_hint(name: str) -> str:
    return (
        f"could not load {name!r}: not a local directory and not reachable on the Hugging Face Hub "
        "(no network, or a typo). Pass a local model directory, or try `python main.py --demo`"
    )


def _offline_kwargs(model_id: str) -> dict:
    """`local_files_only=True` when a hub id must come from the local cache because the Hub is unreachable.

    Without this, transformers retries an unreachable Hub for ~50 s before failing; with it, a cached model
    still loads and an uncached one fails at once with the message below.
    """
    from huggingface_hub import constants

    from grpo_math.data.hub import hub_reachable

    if Path(model_id).expanduser().exists() or constants.HF_HUB_OFFLINE or hub_reachable():
        return {}
    return {"local_files_only": True}


def _source(model_id: str) -> str:
    """What transformers loads for `model_id`: itself, or the converted copy of a .gguf file."""
    try:
        return local_source(model_id)
    except GGUFError as e:
        raise ModelLoadError(str(e)) from None


def load_tokenizer(model_id: str, trust_remote_code: bool = False):
    """The tokenizer, with a pad token and left padding (generation pads on the left)."""
    from transformers import AutoTokenizer

    model_id = _source(model_id)
    try:
        tok = AutoTokenizer.from_pretrained(model_id, trust_remote_code=trust_remote_code,
                                            **_offline_kwargs(model_id))
    except OSError as e:
        if Path(model_id).exists():
            raise ModelLoadError(f"{model_id}: no usable tokenizer files ({str(e).splitlines()[0]})") from None
        raise ModelLoadError(_hub_hint(model_id)) from None
    if tok.pad_token is None:
        # Qwen base models and Llama have no pad token; reusing EOS is safe because masks, not ids, mark padding.
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model(model_id: str, dtype: torch.dtype, trust_remote_code: bool = False, *, load_in_4bit: bool = False,
               device: str = "cpu"):
    """A causal LM in `dtype` on the CPU (the trainer or caller moves it); with `load_in_4bit`, its linear layers
    in NF4 (matmuls in `dtype`), placed on `device` at load, as bitsandbytes quantises while placing."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    from grpo_math.runs.divergence import nonfinite_parameter

    model_id = _source(model_id)
    quant: dict = {}
    if load_in_4bit:
        from grpo_math.models.quantize import quantization_config

        quant = {"quantization_config": quantization_config(dtype), "device_map": {"": device}}
    try:
        model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype, trust_remote_code=trust_remote_code,
                                                     **quant, **_offline_kwargs(model_id))
    except OSError as e:
        if Path(model_id).exists():
            raise ModelLoadError(f"{model_id}: missing or corrupted model files ({str(e).splitlines()[0]})") from None
        raise ModelLoadError(_hub_hint(model_id)) from None
    except SafetensorError as e:  # a truncated or overwritten model.safetensors
        raise ModelLoadError(f"{model_id}: corrupted weights file ({str(e).splitlines()[0]})") from None
    except (ValueError, RuntimeError) as e:  # unknown architecture, shape mismatch
        raise ModelLoadError(f"{model_id}: cannot load the model ({str(e).splitlines()[0]})") from None
    bad = nonfinite_parameter(model)  # it would give non-finite logits, and sampling would die in torch
    if bad:
        raise ModelLoadError(f"{model_id}: its weights are not finite ({bad} holds inf or NaN), so it gives non-finite "
                             "logits; the model files (or a .gguf file's cached copy) are damaged: replace them")
    return model


_LORA_LAYERS = ("Linear", "Embedding", "Conv1d", "Conv2d", "Conv3d", "Conv1D", "MultiheadAttention")


def check_lora_targets(model: torch.nn.Module, targets: list[str], model_id: str) -> None:
    """Raise ModelLoadError naming --lora_target_modules when a name matches no module of `model`, or only a
    kind of layer LoRA cannot adapt. Names match as PEFT matches them: the whole module name or its last
    dotted parts (`q_proj` matches `model.layers.0.self_attn.q_proj`)."""
    if targets == ["all-linear"]:
        return
    modules = dict(model.named_modules())
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in modules.items() if isinstance(m, torch.nn.Linear)})
    for target in targets:
        hits = [m for n, m in modules.items() if n == target or n.endswith("." + target)]
        if not hits:
            raise ModelLoadError(f"--lora_target_modules {target}: {model_id} has no module of that name; its "
                                 f"linear layers are {', '.join(linear)} (or pass all-linear)")
        if not any(type(m).__name__ in _LORA_LAYERS for m in hits):
            raise ModelLoadError(f"--lora_target_modules {target}: in {model_id} it is a {type(hits[0]).__name__}, "
                                 f"which LoRA cannot adapt; its linear layers are {', '.join(linear)}")


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def resolve_base_model(adapter_dir: str | Path, base_model: str | None = None) -> str:
    """The base model of a LoRA adapter directory (see the module docstring for the order)."""
    if base_model:
        return base_model
    adapter_dir = Path(adapter_dir)
    try:
        cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"{adapter_dir}/adapter_config.json is unreadable ({e})") from None
    candidates = [cfg.get("base_model_name_or_path")]
    run_cfg = find_run_config(adapter_dir)
    if run_cfg:
        candidates.append(run_cfg.get("args", {}).get("model_id"))
    for run_dir in (adapter_dir, adapter_dir.parent):
        candidates.append(str(run_dir / BASE_MODEL) if (run_dir / BASE_MODEL / "config.json").is_file() else None)
    for cand in candidates:
        if not cand:
            continue
        if not is_local_path(cand) or Path(cand).expanduser().exists():
            return cand
    raise ModelLoadError(
        f"{adapter_dir}: cannot find the adapter's base model (tried {', '.join(c for c in candidates if c)}); "
        "pass --base_model"
    )


def load_for_inference(model_dir: str, dtype: torch.dtype, device: str, base_model: str | None = None,
                       trust_remote_code: bool = False):
    """(model, tokenizer, base_id) ready to generate: an adapter is merged into its base for speed."""
    if is_local_path(model_dir):
        model_dir = str(Path(model_dir).expanduser())  # a quoted `~/runs/x/final`, as eval.py's own check reads it
    path = Path(model_dir)
    if is_local_path(model_dir) and not path.exists():
        raise ModelLoadError(f"--model_dir {model_dir}: no such directory")
    if path.is_dir() and not (is_adapter_dir(path) or (path / "config.json").is_file()):
        raise ModelLoadError(f"--model_dir {model_dir}: neither a model (config.json) nor an adapter "
                             "(adapter_config.json) directory")
    if is_adapter_dir(path):
        from peft import PeftModel

        base_id = resolve_base_model(path, base_model)
        model = load_model(base_id, dtype, trust_remote_code)
        from safetensors import SafetensorError

        try:
            model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
        except (OSError, ValueError, RuntimeError, KeyError, SafetensorError) as e:
            raise ModelLoadError(f"{model_dir}: corrupted or mismatched LoRA adapter ({str(e).splitlines()[0]})") from None
        from grpo_math.runs.divergence import nonfinite_parameter

        if bad := nonfinite_parameter(model):  # an adapter saved from a run that had diverged
            raise ModelLoadError(f"{model_dir}: the adapter's weights are not finite (merged into {bad}: inf or "
                                 "NaN), so the model gives non-finite logits; the run had diverged: use an earlier "
                                 "checkpoint")
        tok_src = str(path) if (path / "tokenizer_config.json").is_file() else base_id
    else:
        base_id = model_dir
        model = load_model(model_dir, dtype, trust_remote_code)
        tok_src = model_dir
    tokenizer = load_tokenizer(tok_src, trust_remote_code)
    model.to(device).eval()
    return model, tokenizer, base_id


def merged_model(config, model: torch.nn.Module, adapter_dir):
    """The merged full model of a LoRA run (`--merge`); a 4-bit run's adapter, saved in `adapter_dir`, goes onto
    the base reloaded unquantised in the training dtype, so the merge does not round the base through 4 bits."""
    if not config.load_in_4bit:
        return model.merge_and_unload()
    from peft import PeftModel

    base = load_model(config.model_id, config.placement.load_dtype(False), config.trust_remote_code)
    return PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
