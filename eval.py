"""Score a model or checkpoint on a math split, and compare the checkpoints of a run.

    python eval.py --model_dir ckpts/demo/final --dataset_id ../shared/data/gsm8k --split "test[:16]"
    python eval.py --model_dir Qwen/Qwen2.5-0.5B-Instruct --num_samples 8 --temperature 0.7   # pass@8, maj@8
    python eval.py --summarize results/demo        # summary.json + table of a run's results (eval.sh calls it)

This file is the command line: flags, the run's settings, loading, and the results file. The work is
`grpo_math.evaluation.scoring.evaluate` (generation, grading with the training rewards' own rules, pass@k, maj@k), the
same code the in-run accuracy eval runs, and the files are `grpo_math.evaluation.results`'s.
Settings the run fixed (dataset, prompt template and language, completion length, rewards) default to the
run's, read from its run_config.json as a `RunConfig`; a flag overrides; without a run, RunConfig's defaults.
The run's reward functions are loaded once, and each record's `reward` is their weighted sum.

The output JSON (`--output_file`, default results/<run>/<checkpoint>.json) holds `config` (all that is needed
to reproduce the numbers), `metrics` and `records` (one per example and sample). Records are appended to
`<output_file>.partial.jsonl` as each batch finishes; a rerun with the same output file and the same settings
resumes from it (a different --batch_size on resume is allowed, for an out-of-memory error, and then only the
statistics are the same), a rerun with different settings moves it aside to `.stale` and starts over. The
final JSON is written atomically, so a failed run never truncates an earlier results file.
`--run_dir` takes the run's defaults for a model that is not inside the run (eval.sh passes it for the base
model); `--skip_existing` leaves a results file alone when its settings and weights match (eval.sh uses it).
Left out on purpose: beam search, a judge model, several processes or GPUs in one eval.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path

from grpo_math.config import DEFAULT_DATASET, RunConfig, TemplateKwargs, UsageError, check_values
from grpo_math.data.hub import is_local_path
from grpo_math.evaluation.results import EvalError, EvalSettings, differing_settings, open_partial, summary_line
from grpo_math.evaluation.results import format_table, summarize  # the --summarize path and its API
from grpo_math.runs.rundir import CHECKPOINT_RE, checkpoint_dirs, find_run, read_run_config, write_atomic
from grpo_math.evaluation.scoring import GenerateFn, eos_token_ids, evaluate  # evaluate: eval.py's API
from grpo_math.runs.diskfull import DiskFull, writing


# ---------------------------------------------------------------------------------------------------------------
# The command line


def build_parser() -> argparse.ArgumentParser:
    """eval.py's flags; unset ones marked "run's" come from the run's run_config.json when there is one."""
    from grpo_math.cli import HelpFormatter, OneLineParser, add_device_flags
    from grpo_math.data.prompts import LANGS, TEMPLATES

    p = OneLineParser(prog="eval.py", description="Score a model or checkpoint on a math split (see the docstring).",
                      formatter_class=HelpFormatter)
    p.add_argument("--summarize", metavar="RESULTS_DIR", help="only write RESULTS_DIR/summary.json and print the "
                                                              "table of its base/checkpoint-N/final.json")
    g = p.add_argument_group("model")
    g.add_argument("--model_dir", help="final/ or checkpoint-N/ (LoRA adapter), a full model directory, a .gguf "
                                       "file, or a hub id")
    g.add_argument("--base_model", help="base model of an adapter (default: the adapter's config, else the run's)")
    g.add_argument("--run_dir", help="take defaults from this run's run_config.json (default: the run "
                                     "--model_dir belongs to; eval.sh passes it for the base model)")
    add_device_flags(g, "generate")
    g.add_argument("--use_vllm", action="store_true", help="generate with vLLM (needs vllm; adapters are merged)")
    g = p.add_argument_group("data")
    g.add_argument("--dataset_id", help=f"hub id, local file or directory, or arithmetic (default: run's, else "
                                        f"{DEFAULT_DATASET})")
    g.add_argument("--split", help="split, datasets slicing allowed: test[:5%%] (default: the dataset's test split)")
    g.add_argument("--limit", type=int, help="score only the first N examples of the split (default: all)")
    g.add_argument("--prompt_template", choices=list(TEMPLATES),
                   help=f"default: run's, else {RunConfig.prompt_template}")
    g.add_argument("--prompt_lang", choices=list(LANGS), help="language of the template (default: run's, else en)")
    g.add_argument("--system_prompt", help="replace the template's system prompt (default: run's)")
    g.add_argument("--chat_template_kwargs", nargs="+", action=TemplateKwargs, metavar="KEY=VALUE",
                   help="chat-template variables, e.g. enable_thinking=false (default: the run's)")
    g.add_argument("--max_prompt_length", type=int,
                   help="drop prompts longer than this many tokens, and count them (default: keep all)")
    g = p.add_argument_group("generation and scoring")
    g.add_argument("--max_completion_length", type=int,
                   help=f"tokens per completion (default: run's, else {RunConfig.max_completion_length})")
    g.add_argument("--batch_size", type=int, default=32, help="completions generated together")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    g.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass, (0, 1]")
    g.add_argument("--num_samples", type=int, default=1, help="completions per problem, K: pass@K and maj@K")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (and the built-in arithmetic problems)")
    g.add_argument("--reward_funcs", nargs="+", help="rewards summed into each record's `reward` (default: run's, "
                                                     f"else {' '.join(RunConfig().reward_funcs)})")
    g.add_argument("--reward_weights", nargs="+", type=float, help="one per reward (default: run's, else 1.0 each)")
    g = p.add_argument_group("output")
    g.add_argument("--output_file", help="results JSON (default: results/<run>/<checkpoint>.json)")
    g.add_argument("--skip_existing", action="store_true",
                   help="do nothing if --output_file already holds results with these settings (eval.sh uses it)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, help="progress bar (default: on a terminal)")
    return p


def _check_flags(a: argparse.Namespace) -> None:
    shared = ("max_prompt_length", "max_completion_length", "batch_size", "top_p", "seed", "reward_weights",
              "chat_template_kwargs")
    try:  # the flags training also has: the same rules (ranges, finite numbers) as main.py's
        check_values({name: getattr(a, name) for name in shared if getattr(a, name) is not None})
    except UsageError as e:
        raise EvalError(str(e)) from None
    for name in ("limit", "num_samples"):
        value = getattr(a, name)
        if value is not None and value < 1:
            raise EvalError(f"--{name} {value} must be a positive integer")
    if not (a.temperature >= 0 and math.isfinite(a.temperature)):
        raise EvalError(f"--temperature {a.temperature} must be >= 0 (0 = greedy)")
    if a.num_samples > 1 and a.temperature == 0:
        raise EvalError(f"--num_samples {a.num_samples} with greedy decoding gives {a.num_samples} identical "
                        "samples; add --temperature (e.g. 0.6)")
    if a.use_vllm:
        import importlib.util
        if importlib.util.find_spec("vllm") is None:
            raise EvalError("--use_vllm: vllm is not installed here; pip install vllm, or drop --use_vllm")


def _run_of(a: argparse.Namespace, local: bool) -> tuple[Path | None, dict]:
    """The run directory and its run_config.json: --run_dir, else the run --model_dir sits in."""
    if a.run_dir:
        run_cfg = read_run_config(a.run_dir)
        if run_cfg is None:
            raise EvalError(f"--run_dir {a.run_dir}: no readable run_config.json")
        return Path(a.run_dir), run_cfg
    found = find_run(a.model_dir) if local else None
    return found if found else (None, {})


def _step(model_dir: str, run_cfg: dict) -> int | None:
    """Training step of a checkpoint-N (N) or final/ (the last step: the run's max_steps or newest checkpoint)."""
    d = Path(model_dir)
    m = CHECKPOINT_RE.fullmatch(d.name)
    if m:
        return int(m.group(1))
    if d.name != "final" or not d.is_dir():
        return None
    steps = [step for step, _ in checkpoint_dirs(d.parent)]
    max_steps = run_cfg.get("args", {}).get("max_steps") or -1
    return max(steps + ([max_steps] if max_steps > 0 else [])) if steps or max_steps > 0 else None


def _fingerprint(model_dir: str) -> str | None:
    """Names, sizes and times of the weight files: a retrained checkpoint in the same place is not reused."""
    d = Path(model_dir).expanduser()
    if d.is_file():  # a .gguf file
        files = [d]
    elif not d.is_dir():
        return None  # a hub id: the id names the weights
    else:
        files = sorted(f for f in d.iterdir() if f.suffix in (".safetensors", ".bin") and f.is_file())
    return ";".join(f"{f.name}:{f.stat().st_size}:{int(f.stat().st_mtime)}" for f in files) or None


def _default_output(model_dir: str, local: bool, run_dir: Path | None, run_args: dict) -> Path:
    name = Path(model_dir).expanduser().resolve().name if local else model_dir.replace("/", "--")
    if run_dir is None:
        return Path("results") / f"{name}.json"
    if model_dir == run_args.get("model_id"):
        name = "base"
    return Path("results") / run_dir.name / f"{name}.json"


def resolve_config(a: argparse.Namespace) -> tuple[EvalSettings, list]:
    """Every setting of this eval (flags first, then the run's RunConfig, then RunConfig's defaults), checked,
    and the reward functions, loaded once. Nothing heavy is loaded. Returns (config, reward functions)."""
    if not a.model_dir:
        raise EvalError("--model_dir is required (a final/ or checkpoint-N/ directory, a model directory or a hub id)")
    _check_flags(a)
    local = is_local_path(a.model_dir)  # asked once; passed along
    if local and not Path(a.model_dir).expanduser().exists():
        raise EvalError(f"--model_dir {a.model_dir}: no such directory")
    run_dir, run_cfg = _run_of(a, local)
    run_args = run_cfg.get("args", {}) if isinstance(run_cfg.get("args"), dict) else {}
    run = RunConfig.from_record(run_args)  # the run's settings; today's defaults where it has none

    from grpo_math.data.sources import DatasetId, default_eval_split
    from grpo_math.runtime.devices import dtype_name, resolve_placement
    from grpo_math.models.loading import is_adapter_dir, resolve_base_model
    from grpo_math.runs.provenance import git_commit, package_versions  # provenance as run_config.json records it
    from grpo_math.rewards import load_reward_funcs

    dataset = DatasetId.of(a.dataset_id or run.dataset_id)  # classified once: built-in, local or hub
    dataset_id = dataset.text
    reward_funcs = a.reward_funcs or run.reward_funcs
    # the run's weights belong to the run's rewards: other rewards on the command line start from 1.0 each
    reward_weights = a.reward_weights if a.reward_weights is not None else (
        run.reward_weights if a.reward_funcs is None else None)
    if reward_weights is not None and len(reward_weights) != len(reward_funcs):
        raise EvalError(f"--reward_weights has {len(reward_weights)} value(s) for {len(reward_funcs)} reward(s) "
                        f"({' '.join(reward_funcs)})")
    max_completion_length = a.max_completion_length or run.max_completion_length
    rewards = load_reward_funcs(reward_funcs, max_completion_length=max_completion_length)  # once, for the eval
    placement = resolve_placement(a.device, a.dtype)
    config = EvalSettings(**{
        "model_dir": str(Path(a.model_dir).expanduser().resolve()) if local else a.model_dir,
        "model_fingerprint": _fingerprint(a.model_dir),
        "base_model": resolve_base_model(a.model_dir, a.base_model) if local and is_adapter_dir(a.model_dir) else None,
        "run_dir": str(run_dir) if run_dir else None,
        "step": _step(a.model_dir, run_cfg),
        "dataset_id": dataset_id,
        "split": a.split or default_eval_split(dataset),
        "limit": a.limit,
        "prompt_template": a.prompt_template or run.prompt_template,
        "prompt_lang": a.prompt_lang or run.prompt_lang,
        "system_prompt": a.system_prompt if a.system_prompt is not None else run.system_prompt,
        "chat_template_kwargs": (a.chat_template_kwargs if a.chat_template_kwargs is not None
                                 else run.chat_template_kwargs),
        "max_prompt_length": a.max_prompt_length,
        "max_completion_length": max_completion_length,
        "temperature": a.temperature,
        "top_p": a.top_p,
        "num_samples": a.num_samples,
        "seed": a.seed,
        "batch_size": a.batch_size,
        "reward_funcs": list(reward_funcs),
        "reward_weights": list(reward_weights) if reward_weights is not None else None,
        "device": placement.device,
        "dtype": dtype_name(placement.dtype),
        "use_vllm": a.use_vllm,
        "output_file": str(Path(a.output_file) if a.output_file else _default_output(a.model_dir, local, run_dir, run_args)),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    })
    return config, rewards


def _vllm_generate_fn(model, tokenizer, config: EvalSettings, eos: list[int]) -> GenerateFn:
    """Generation by vLLM: from the model directory itself (a .gguf file: its converted copy, which eval.py
    loaded), or for an adapter from a merged copy of `model` written to a temporary directory (removed at exit).
    Not exercised by the tests (no vLLM on CPU)."""
    import atexit
    import shutil
    import tempfile

    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    from grpo_math.models.gguf_files import local_source
    from grpo_math.models.rollout import cut_after_eos

    source = local_source(config.model_dir)
    if config.base_model is not None:  # vLLM scores what eval.py loaded: the adapter merged into its base
        source = tempfile.mkdtemp(prefix="eval-vllm-")
        atexit.register(shutil.rmtree, source, ignore_errors=True)
        model.save_pretrained(source)
        tokenizer.save_pretrained(source)
    llm = LLM(model=source, dtype={"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[config.dtype],
              seed=config.seed)

    def gen(prompt_ids: list[list[int]], seed: int | None) -> list[list[int]]:
        params = SamplingParams(temperature=config.temperature, top_p=config.top_p, seed=seed,
                                max_tokens=config.max_completion_length, stop_token_ids=eos)
        outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompt_ids], params, use_tqdm=False)
        return cut_after_eos([list(o.outputs[0].token_ids) for o in outs], eos)

    return gen


def prepare(a: argparse.Namespace) -> tuple | None:
    """Resolve, check, load and open the partial file: (model, tokenizer, dataset, config, partial, rewards), or
    None when --skip_existing finds the results up to date. Every bad input raises a one-line ValueError
    (EvalError, DatasetError, ModelLoadError, DeviceError, RewardError)."""
    from grpo_math.data.sources import DatasetError, filter_long_prompts, load_math_dataset
    from grpo_math.runtime.devices import DTYPES
    from grpo_math.models.loading import load_for_inference

    config, rewards = resolve_config(a)
    out = Path(config.output_file)
    _check_output_file(out)  # before the dataset and the model load: a bad path costs nothing
    if a.skip_existing and out.is_file():
        try:
            old = json.loads(out.read_text(encoding="utf-8"))
            reusable = not differing_settings(old["config"], config)
        except (ValueError, KeyError, TypeError):
            reusable = False
        if reusable:
            print(summary_line(old["config"], old["metrics"], out) + " (up to date)")
            return None
    unusable: dict[str, int] = {}
    try:
        dataset = load_math_dataset(config.dataset_id, config.split, max_samples=config.limit,
                                    prompt_template=config.prompt_template, prompt_lang=config.prompt_lang,
                                    system_prompt=config.system_prompt, seed=config.seed, dropped=unusable)
    except DatasetError as e:
        raise EvalError(str(e)) from None
    if sum(unusable.values()):  # said, not only logged: "4/6" for an 8-row file needs its reason
        print(f"eval.py: dropped {unusable['no_usable_gold']} row(s) with no usable gold answer and "
              f"{unusable['empty_question']} with an empty question", file=sys.stderr, flush=True)
    # an adapter is merged into its base for speed
    model, tokenizer, _ = load_for_inference(a.model_dir, DTYPES[config.dtype],
                                             "cpu" if a.use_vllm else config.device, a.base_model)
    dataset, dropped = filter_long_prompts(dataset, tokenizer, config.max_prompt_length,
                                           config.chat_template_kwargs)
    config = dataclasses.replace(config, dropped_no_usable_gold=unusable.get("no_usable_gold", 0),
                                 dropped_empty_question=unusable.get("empty_question", 0),
                                 dropped_long_prompts=dropped, n_examples=len(dataset))
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial.jsonl")
        open_partial(partial, config)
    except OSError as e:
        raise EvalError(f"--output_file {out}: cannot write there ({e.strerror or e})") from None
    return model, tokenizer, dataset, config, partial, rewards


def _check_output_file(out: Path) -> None:
    """--output_file must name a file, in a directory or where one can be made."""
    for path in (out, out.with_name(out.name + ".partial.jsonl")):
        if path.is_dir():
            raise EvalError(f"--output_file {out}: {path} is a directory; name a file, e.g. {out / 'results.json'}")
    blocking = next((d for d in out.parents if d.exists() and not d.is_dir()), None)
    if blocking is not None:
        raise EvalError(f"--output_file {out}: {blocking} is a file, not a directory; pick another path")


def run(model, tokenizer, dataset, config: EvalSettings, partial: Path, rewards: list, progress: bool | None = None) -> int:
    """Evaluate with `config` (see prepare), resuming from `partial`; write the results JSON atomically."""
    eos = eos_token_ids(model, tokenizer)
    generate_fn = _vllm_generate_fn(model, tokenizer, config, eos) if config.use_vllm else None
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        return _run(model, tokenizer, dataset, config, partial, rewards, progress, generate_fn, started)
    except DiskFull as e:  # finished records stay in the partial file (a torn last line is cut on resume)
        print(f"eval.py: error: {e}; the finished records are kept in {partial}: free some space, then rerun the "
              "same command to resume", file=sys.stderr)
        return 2


def _run(model, tokenizer, dataset, config: EvalSettings, partial: Path, rewards: list, progress: bool | None,
         generate_fn: GenerateFn | None, started: str) -> int:
    out = Path(config.output_file)
    try:
        with writing("the partial results", partial):
            metrics, records = evaluate(
                model, tokenizer, dataset, max_completion_length=config.max_completion_length,
                batch_size=config.batch_size, temperature=config.temperature, top_p=config.top_p,
                num_samples=config.num_samples, seed=config.seed, records_file=partial,
                progress=sys.stderr.isatty() if progress is None else progress,
                reward_funcs=rewards, reward_weights=config.reward_weights, generate_fn=generate_fn,
                chat_template_kwargs=config.chat_template_kwargs)
    except KeyboardInterrupt:
        print(f"eval.py: interrupted; finished records are in {partial}, rerun the same command to resume",
              file=sys.stderr)
        return 130
    config = dataclasses.replace(config, started=started, finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
    with writing("the results", out):  # write_atomic: the earlier results file stays whole
        write_atomic(out, json.dumps({"config": config.to_record(), "metrics": metrics, "records": records},
                                     indent=1, ensure_ascii=False) + "\n")
    partial.unlink(missing_ok=True)
    print(summary_line(config, metrics, out))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The CLI's output is its summary line: no weight-loading bars, no deprecation notes from library internals.
    warnings.filterwarnings("ignore", category=FutureWarning)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        a = build_parser().parse_args(argv)
        if a.summarize:
            print(format_table(summarize(a.summarize)))
            return 0
        prepared = prepare(a)
    except ValueError as e:  # bad input only: errors during generation keep their traceback
        print(f"eval.py: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    return 0 if prepared is None else run(*prepared, progress=a.progress)


if __name__ == "__main__":
    sys.exit(main())
