#!/usr/bin/env bash
# The issue-6 GPU measurement in one command, for an offline GPU machine that has torch, transformers and
# pyarrow but not trl, peft or datasets.
#
# Prepare here (with PyPI access), from the project root:
#   ../shared/tools/device-wheels.sh                       # the pinned wheels -> .whl/ (git-ignored)
#   mkdir -p .devdata && cp -r ../shared/data/tokenizers/qwen2.5-instruct ../shared/data/gsm8k .devdata/
# Then run there, carrying .whl and .devdata:   bash bench/gpu.sh [extra bench/throughput.py flags]
# It prints one JSON line per arm, the eval timing, and `speedup N.NNx (project vs stock TRL)`; with $OUT set,
# the output is also saved to $OUT/throughput.log.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false  # $PWD: the grpo_math package
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python3 bench/throughput.py --device cuda --config_dir .devdata/qwen2.5-instruct --gsm8k .devdata/gsm8k \
    --arms stock project "$@" 2>&1 | tee "${OUT:-/tmp}/throughput.log"
