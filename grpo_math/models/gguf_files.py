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
used and two processes converting at once both end with the same directory; the hidden directory a killed
conversion leaves (`.NAME.*`, up to the float32 size of the model) is removed by the next conversion of the
same file. A cached copy whose JSON files do not parse is converted again. A damaged file (cut, or bytes
flipped in its metadata) is the one-line "cannot read this GGUF file" error whatever the reader raises, and a
tensor of the file that the converted model does not use (a llama file with attention biases) is an error
naming it: the model trained must be the model in the file. An unwritable, full or misnamed cache
(`$GRPO_MATH_CACHE`) is one line naming the variable, the path and the fix.
Left out on purpose: training in the quantised format itself (weights are dequantised; the converted copy
is 4 bytes per parameter) and writing GGUF files.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from grpo_math.runs.diskfull import DiskFull, is_disk_full
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
    if (out / _DONE).is_file():
        problem = copy_problem(out)
        if problem is None:
            return str(out)
        logger.warning("%s: the cached copy of %s is damaged (%s); converting it again", out, path, problem)
        try:
            # moved aside as a hidden leftover, which the conversion below removes
            os.replace(out, out.with_name(f".{out.name}.damaged{os.getpid()}"))
        except OSError as e:
            raise GGUFError(f"{out}: this cached copy of {path} is damaged ({problem}) and cannot be moved aside "
                            f"({e.strerror or e}); delete it, and the next run converts the file again") from None
    convert(path, out)
    return str(out)


def copy_problem(out: Path) -> str | None:
    """Why the converted directory `out` cannot be loaded (a JSON file that does not parse), or None."""
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        f = out / name
        if name == "config.json" or f.exists():
            try:
                json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
                return f"{name}: {type(e).__name__}"
    if not (out / "model.safetensors").is_file() and not (out / "model.safetensors.index.json").is_file():
        return "no model.safetensors"
    return None


def _cache_name() -> str:
    """The cache as a user sets it, for error messages."""
    root = os.environ.get("GRPO_MATH_CACHE")
    return f"GRPO_MATH_CACHE={root}" if root else f"the cache {cache_dir('gguf').parent} (GRPO_MATH_CACHE unset)"


def _cache_error(e: Exception, path: Path, out: Path, nbytes: int) -> Exception | None:
    """The one-line error for a cache that cannot take the converted copy (full, read-only, a file), or None."""
    if is_disk_full(e, out.parent):
        return DiskFull(f"no space left on the device writing the converted copy of {path.name} into {out.parent} "
                        f"({_cache_name()}; the copy takes {nbytes / 2**20:.0f} MB): free some, or set "
                        "GRPO_MATH_CACHE to a directory on a disk with room")
    if isinstance(e, OSError):
        return GGUFError(f"{_cache_name()}: cannot write the converted copy of {path.name} into {out.parent} "
                         f"({e.strerror or e}); set GRPO_MATH_CACHE to a writable directory")
    return None


def remove_leftovers(out: Path) -> None:
    """Remove the hidden directories `.NAME.*` that killed conversions into `out` left, with a line. A live
    conversion holds a lock on its directory (see convert), so another process's work is never removed."""
    for left in sorted(out.parent.glob(f".{out.name}.*")):
        try:
            fd = os.open(left, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a conversion in progress in another process
            os.close(fd)
            continue
        size = sum(f.stat().st_size for f in left.rglob("*") if f.is_file())
        logger.warning("removing %s (%.0f MB), left by a conversion that did not finish", left, size / 2**20)
        shutil.rmtree(left, ignore_errors=True)
        os.close(fd)


def convert(path: Path, out: Path) -> Path:
    """Dequantise the GGUF file `path` into a plain float32 safetensors model directory `out`, with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        import gguf  # noqa: F401 - transformers reads GGUF files through it
    except ImportError:
        raise GGUFError(f"{path}: reading GGUF files needs the gguf package; pip install -r requirements.txt") from None
    logger.info("converting %s to a safetensors copy in %s (once)", path, out)
    tokenizer, quantised = read_gguf(path)
    # transformers marks a GGUF-loaded model as quantised and refuses to save it, though its weights are already
    # dequantised: rebuild a plain model of the same configuration around the same tensors
    fields = {k: v for k, v in quantised.config.to_dict().items() if k != "quantization_config"}
    config = AutoConfig.for_model(**fields)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantised.state_dict(), assign=True)
    plain.tie_weights()
    plain.generation_config = quantised.generation_config
    from grpo_math.models.gguf_tensors import unused_tensors

    unused = unused_tensors(path, plain)
    if unused:
        raise GGUFError(f"{path}: tensor {unused[0]} of this file has no place in the {type(plain).__name__} "
                        f"transformers builds from it{f' (and {len(unused) - 1} more)' if len(unused) > 1 else ''}, "
                        "so the model trained would not be the model in the file; use the original (Hugging "
                        "Face) model, or a GGUF file of an architecture that has this tensor")
    nbytes = sum(t.numel() * t.element_size() for t in plain.state_dict().values())
    tmp, fd = None, None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        fd = os.open(tmp, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)  # held until done: remove_leftovers in another process leaves it alone
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _DONE).write_text(f"{path.resolve()}\n")
        return publish_dir(tmp, out, _DONE)  # another process's finished conversion wins; a torn one is replaced
    except Exception as e:
        error = _cache_error(e, path, out, nbytes)
        if error is None:
            raise
        raise error from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if fd is not None:
            os.close(fd)


def read_gguf(path: Path):
    """(tokenizer, model) read from the GGUF file `path` by transformers; GGUFError for a file it cannot read."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(path.resolve().parent), path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantised = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - the reader parses untrusted bytes: struct.error, OverflowError,
        # IndexError, UnicodeDecodeError, MemoryError, the tokenizers library's bare Exception... all mean the same
        text = (str(e).splitlines() or [""])[0][:200] or type(e).__name__
        raise GGUFError(f"{path}: cannot read this GGUF file ({text})") from None
    return tokenizer, quantised
