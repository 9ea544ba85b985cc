"""Write a run's final model, or any model or adapter directory, as GGUF files for llama.cpp and Ollama.

    python export_gguf.py ckpts/demo                  # final/ -> ckpts/demo/final.f16.gguf, final.q8_0.gguf
    python export_gguf.py ckpts/demo/best --types q8_0   # the best checkpoint -> ckpts/demo/best.q8_0.gguf
    python export_gguf.py ~/models/my-model --out_dir gguf/

An adapter (a LoRA run's final/, best/ or checkpoint-N/) is merged into its base model in float32 first; the
writing is grpo_math/models/gguf_export.py (f16 and q8_0, the tokenizer and chat template; Llama and Qwen2 models).
`python inference.py --model_dir FILE.gguf` answers with the result. Left out on purpose: other quantisation
types (llama.cpp's llama-quantize makes them from the f16 file).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from grpo_math.models.gguf_export import QTYPES, GGUFExportError, export_model_dir
from grpo_math.models.loading import ModelLoadError
from grpo_math.runs.rundir import FINAL, read_run_config


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("path", metavar="RUN_DIR|MODEL_DIR",
                   help="a run directory (its final/ is written) or a model, adapter or checkpoint directory")
    p.add_argument("--out_dir", help="where the .gguf files go (default: the run directory, or next to MODEL_DIR)")
    p.add_argument("--types", nargs="+", choices=QTYPES, default=list(QTYPES),
                   help="GGUF weight types to write, one file each (default: f16 q8_0)")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    path = Path(a.path).expanduser()
    run = path.is_dir() and read_run_config(path) is not None and (path / FINAL).is_dir()
    model_dir, out_dir = (path / FINAL, a.out_dir or path) if run else (path, a.out_dir)
    if not model_dir.is_dir():
        print(f"export_gguf.py: error: {a.path}: no such run or model directory", file=sys.stderr)
        return 2
    try:
        written = export_model_dir(model_dir, out_dir, tuple(dict.fromkeys(a.types)))
    except (GGUFExportError, ModelLoadError) as e:
        print(f"export_gguf.py: error: {a.path}: {e}", file=sys.stderr)
        return 2
    for f in written:
        print(f"{f}  ({f.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
