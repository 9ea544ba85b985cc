"""GGUF model files (the llama.cpp / Ollama format) as ordinary model directories, converted once and cached.

    python main.py --model_id ~/models/SmolLM2-135M-Instruct.Q4_1.gguf ...    # train from a GGUF file
    python eval.py --model_dir ~/models/SmolLM2-135M-Instruct.Q4_1.gguf        # or evaluate it

`model_io` calls `local_source(model_id)` before loading anything: a hub id or a directory comes back as it is;
a `.gguf` file is read once through transformers' GGUF support (the `gguf` package), dequantised to float32,
and written as a plain safetensors model directory with its tokenizer under the cache
(`$GRPO_MATH_CACHE/gguf/`, default `~/.cache/grpo_math/gguf/`), keyed by the file's path, size and
modification time; later loads read that directory (SmolLM2-135M: ~15 s to convert, ~1 s to load after). So
LoRA, the merged inference copy, eval, inference and `--merge` see a plain model of the file's architecture.
Conversions are written under a temporary name and renamed into place, so an interrupted conversion is never
used and two processes converting at once both end with the same directory.
Left out on purpose: training in the quantised format itself (weights are dequantised; the converted copy
is 4 bytes per parameter) and writing GGUF files.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from pathlib import Path

from grpo_math.runs.rundir import cache_dir, publish_dir

logger = logging.getLogger(__name__)

GGUF_SUFFIX = ".gguf"
_DONE = "converted_from.txt"  # written last: a directory without it is an interrupted conversion


class GGUFError(ValueError):
    """A GGUF file that cannot be used; the message names it and what would work."""


def is_gguf(model_id: str) -> bool:
    return str(model_id).lower().endswith(GGUF_SUFFIX)


def converted_dir(path: Path) -> Path:
    """Where the converted copy of the GGUF file `path` lives (it may not exist yet)."""
    st = path.stat()
    key = f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    return cache_dir("gguf") / f"{path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def local_source(model_id: str) -> str:
    """What transformers should load for `model_id`: itself, or for a .gguf file its converted directory."""
    if not is_gguf(model_id):
        return model_id
    path = Path(model_id).expanduser()
    if not path.is_file():
        raise GGUFError(f"{model_id}: no such GGUF file")
    out = converted_dir(path)
    if not (out / _DONE).is_file():
        convert(path, out)
    return str(out)


def convert(path: Path, out: Path) -> Path:
    """Dequantise the GGUF file `path` into a plain float32 safetensors model directory `out`, with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401 - transformers reads GGUF files through it
    except ImportError:
        raise GGUFError(f"{path}: reading GGUF files needs the gguf package; pip install -r requirements.txt") from None
    logger.info("converting %s to a safetensors copy in %s (once)", path, out)
    folder, name = str(path.resolve().parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except (ValueError, OSError, KeyError, RuntimeError, NotImplementedError) as e:
        raise GGUFError(f"{path}: cannot read this GGUF file ({str(e).splitlines()[0][:200]})") from None
    # transformers marks a GGUF-loaded model as quantised and refuses to save it, though its weights are already
    # dequantised: rebuild a plain model of the same configuration around the same tensors
    fields = {k: v for k, v in quantised.config.to_dict().items() if k != "quantization_config"}
    config = AutoConfig.for_model(**fields)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), assign=True)
    plain.tie_weights()
    plain.generation_config = quantised.generation_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _DONE).write_text(f"{path.resolve()}\n")
        return publish_dir(tmp, out, _DONE)  # another process's finished conversion wins; a torn one is replaced
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
