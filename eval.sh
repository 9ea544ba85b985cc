#!/usr/bin/env bash
# Score the base model and every checkpoint of a training run, then print how each compares with the base.
#
#   bash eval.sh RUN_DIR [DATASET] [SPLIT] [extra eval.py flags]
#   bash eval.sh ckpts/qwen05-gsm8k                                   # the run's dataset, its test split
#   bash eval.sh ckpts/demo ../shared/data/gsm8k "test[:16]" --batch_size 8
#
# Writes results/<run>/base.json, checkpoint-N.json (in step order) and final.json with eval.py, then
# results/<run>/summary.json and the table (eval.py --summarize), where `*` marks the run's best checkpoint (best/). The base model is run_config.json's model_id.
# A result already there with the same settings and weights is kept (eval.py --skip_existing), and an
# interrupted eval resumes from its partial file, so rerunning after a failure redoes only what is missing.
# A checkpoint whose weights are missing or cut short (a save killed by an older version) is skipped with a line.
# Environment: PYTHON (default python3), RESULTS_DIR (default results). Left out on purpose: running several
# evals in parallel (each one fills the accelerator on its own).
set -euo pipefail

usage() { echo "usage: bash eval.sh RUN_DIR [DATASET] [SPLIT] [extra eval.py flags]" >&2; exit 2; }
[[ $# -ge 1 && $1 != -* ]] || usage
run_dir=${1%/}
shift
if [[ ! -f $run_dir/run_config.json ]]; then
    echo "eval.sh: error: $run_dir/run_config.json not found; pass a run directory written by main.py" >&2
    exit 2
fi
data_flags=()
if [[ $# -gt 0 && $1 != -* ]]; then data_flags+=(--dataset_id "$1"); shift; fi
if [[ $# -gt 0 && $1 != -* ]]; then data_flags+=(--split "$1"); shift; fi

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py=${PYTHON:-python3}
out=${RESULTS_DIR:-results}/$(basename "$run_dir")
base_model=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["args"]["model_id"])' \
    "$run_dir/run_config.json")

score() {  # NAME MODEL_DIR [flags...]
    local name=$1 model=$2
    shift 2
    echo "== $name ($model)" >&2
    "$py" "$here/eval.py" --model_dir "$model" --run_dir "$run_dir" --output_file "$out/$name.json" \
        --skip_existing ${data_flags[@]+"${data_flags[@]}"} "$@"
}

score base "$base_model" "$@"
# the checkpoints whose weights load, in step order; each incomplete one (a save cut short) is skipped, with a
# line saying why. PYTHONPATH: this checkout's grpo_math, the one eval.py imports.
listing=$(PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$py" -m grpo_math.runs.checkpoints "$run_dir")
steps=()
while IFS= read -r line; do
    if [[ $line =~ ^[0-9]+$ ]]; then steps+=("$line"); elif [[ -n $line ]]; then echo "eval.sh: $line" >&2; fi
done <<< "$listing"
for n in ${steps[@]+"${steps[@]}"}; do
    score "checkpoint-$n" "$run_dir/checkpoint-$n" "$@"
done
if [[ -d $run_dir/final ]]; then
    score final "$run_dir/final" "$@"
fi
"$py" "$here/eval.py" --summarize "$out"
