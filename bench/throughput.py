"""GRPO step throughput: stock TRL `GRPOTrainer` against this project's `FastGRPOTrainer`, one process, same settings.

    python bench/throughput.py --device cuda      # issue 6's workload: Qwen2.5-0.5B shape, bf16, LoRA r16 all-linear,
                                                  # 128 completions x 256 tokens per step, GSM8K prompts
    python bench/throughput.py --device cpu       # tiny.py's Qwen2 model, ~1 minute on two cores

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

Random weights almost never emit EOS, so completions run to the full length: the worst case, and the same work
in both arms. Left out on purpose: peak memory on CPU (the process's high-water mark cannot be split between arms
in one process; reported as null), vLLM arms, multi-GPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from grpo_math.models import rollout

ROOT = Path(__file__).resolve().parents[1]

logger = logging.getLogger(__name__)

SHARED = ROOT.parent / "shared" / "data"
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
    p.add_argument("--max_completion_length", type=int, help="tokens per completion (default: cuda 256, cpu 64)")
    p.add_argument("--lora_r", type=int, default=16, help="LoRA rank, alpha = 2 x rank, all linear layers (default 16)")
    p.add_argument("--shape", choices=["full", "small", "tiny"],
                   help="full: Qwen2.5-0.5B from --config_dir; small: a 10M Qwen2 layout on the tiny tokenizer; "
                        "tiny: tiny.py (default: cuda full, cpu tiny)")
    p.add_argument("--eval_problems", type=int, help="GSM8K test problems for the eval timing (default: cuda 1319, cpu 0)")
    p.add_argument("--eval_tokens", type=int, default=512, help="max new tokens per eval problem (default 512)")
    p.add_argument("--eval_batch", type=int, default=128, help="eval batch size (default 128)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA GPU is visible to torch here; try --device cpu")
    args.warmup = args.warmup if args.warmup is not None else (2 if cuda else 1)
    args.completions = args.completions or (128 if cuda else 32)
    args.max_completion_length = args.max_completion_length or (256 if cuda else 64)
    args.shape = args.shape or ("full" if cuda else "tiny")
    args.eval_problems = args.eval_problems if args.eval_problems is not None else (1319 if cuda else 0)
    if args.warmup < 1 or args.steps < 1:
        p.error("--warmup and --steps must be at least 1 (the first step sets up the data loader and compiles)")
    if args.completions % args.num_generations:
        p.error(f"--num_generations {args.num_generations} must divide --completions {args.completions}")
    needed = [("--gsm8k", args.gsm8k / "train.jsonl")]
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
    out = []
    with path.open() as f:
        for line in f:
            q = json.loads(line)["question"]
            out.append([{"role": "user", "content": q + "\nPlease reason step by step, and put your final answer "
                                                         "within \\boxed{}."}])
            if len(out) == n:
                break
    return out


def load_tokenizer(args: argparse.Namespace):
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


def run_arm(name: str, args: argparse.Namespace, tokenizer, dataset, dtype: torch.dtype) -> dict:
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from grpo_math.training import trainer as project

    fast, extra, use_lora = ARMS[name]
    cls = project.timed_generation(project.FastGRPOTrainer if fast else GRPOTrainer, sync)
    cuda = args.device == "cuda"
    ends: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, *_a, **_k):
            sync()
            ends.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out, report_to="none", save_strategy="no", disable_tqdm=True, logging_steps=1, seed=0,
            max_steps=args.warmup + args.steps, per_device_train_batch_size=args.completions,
            num_generations=args.num_generations, max_completion_length=args.max_completion_length,
            learning_rate=1e-5 if use_lora else 1e-6, bf16=cuda, use_cpu=not cuda,
            # every completion runs to the full length in every arm, so the arms do the same work: sampling
            # in train mode (stock: LoRA dropout on) and eval mode (project) would otherwise end at other EOSs
            generation_kwargs={"min_new_tokens": args.max_completion_length}, **extra,
        )
        if cuda:
            project.use_one_gpu(config)  # one process, one GPU (no DataParallel), as train.py does
        peft_config = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules="all-linear",
                                 task_type="CAUSAL_LM") if use_lora else None
        model = build_model(args, tokenizer, dtype)
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
    gen_s = statistics.median(g for g, _ in gens)
    tokens = statistics.median(n for _, n in gens)
    del trainer, model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return {
        "arm": name, "trainer": cls.__name__, "lora": use_lora, **({"trl_args": extra} if extra else {}),
        "device": args.device, "shape": args.shape, "dtype": str(dtype).removeprefix("torch."),
        "completions_per_step": args.completions, "max_completion_length": args.max_completion_length,
        "measured_steps": len(steps), "step_s": round(step_s, 4), "generation_s": round(gen_s, 4),
        "generation_share": round(gen_s / step_s, 3), "samples_per_s": round(args.completions / step_s, 2),
        "completion_tokens_per_s": round(tokens / gen_s, 1),
        "decode_ms_per_step": round(1000 * gen_s / args.max_completion_length, 2),
        "peak_mem_gib": round(peak, 2) if peak is not None else None, "total_s": round(total, 1),
    }


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
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    from datasets import Dataset

    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    tokenizer = load_tokenizer(args)
    n_prompts = (args.warmup + args.steps) * args.completions // args.num_generations
    dataset = Dataset.from_list([{"prompt": m} for m in gsm8k_prompts(args.gsm8k / "train.jsonl", n_prompts)])
    results = {}
    for arm in args.arms:
        results[arm] = run_arm(arm, args, tokenizer, dataset, dtype)
        print(json.dumps(results[arm]), flush=True)
    if args.eval_problems:
        print(json.dumps(run_eval(args, tokenizer, dtype)), flush=True)
    if "stock" in results and "project" in results:
        print(f"speedup {results['stock']['step_s'] / results['project']['step_s']:.2f}x (project vs stock TRL)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
