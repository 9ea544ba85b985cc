"""The checks between flags, and against the machine, that run before any model or dataset loads.

`resolve` checks each value's type and range (`config.check_values`), then this module checks what depends on several flags (the generation batch and the group size, rewards and their weights) or
on the machine (a path that must exist, a local dataset's columns and split, the device and dtype, a logging
backend's package, an earlier or a live run in --output_dir) or on the launch (what `accelerate launch` shards,
processes per GPU), builds the frozen `RunConfig`, and then, from the resolved config, the reward functions
(once: a user's file.py:fn runs here).
Each failure raises a ValueError with one line naming the flag, the value and what would work.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from typing import Any

import torch

from grpo_math.config import DEFAULT_MODEL, DEFAULTS, RunConfig, UsageError, check_values, shown
from grpo_math.data import hub
from grpo_math.rewards import load_reward_funcs
from grpo_math.runs import rundir, runlock
from grpo_math.runtime.devices import is_main_process, local_world_size, resolve_placement, world_size
from grpo_math.runtime.launch import sharding


def _check_generation_batch(v: dict[str, Any], world: int) -> None:
    gen_batch = v["batch_size"] * v["gradient_accumulation_steps"] * world
    if gen_batch % v["num_generations"]:
        divisors = [d for d in range(2, gen_batch + 1) if gen_batch % d == 0]
        hint = min(divisors, key=lambda d: (abs(d - v["num_generations"]), -d)) if divisors else None
        raise UsageError(
            f"--num_generations {v['num_generations']} must divide the generation batch {gen_batch} "
            f"(--batch_size {v['batch_size']} x --gradient_accumulation_steps {v['gradient_accumulation_steps']}"
            + (f" x {world} processes" if world > 1 else "")
            + ")" + (f"; try --num_generations {hint}" if hint else "")
        )


def _check_launch(v: dict[str, Any], placement, sharded: str | None) -> None:
    """What cannot work under this launch (torchrun, accelerate launch), decided from the environment alone, so
    every rank stops with the same line before anything loads."""
    if sharded and v["fast_generation"] == "on":
        raise UsageError(f"--fast_generation on: this accelerate launch shards the weights ({sharded}), but the "
                         "inference copy needs them whole on every process; use --fast_generation auto (stock TRL "
                         "generation then), or DDP / ZeRO-2 (configs/accelerate/ddp.yaml, zero2.yaml)")
    if sharded and (v["merge"] or v.get("export_gguf")):
        raise UsageError(f"--{'merge' if v['merge'] else 'export_gguf'}: this accelerate launch shards the weights ({sharded}), so no process holds a "
                         "whole model to merge; drop --merge and merge final/ on one process afterwards")
    local = local_world_size()
    if placement.device == "cuda" and local > 1 and local > torch.cuda.device_count():
        raise UsageError(f"{local} processes on this machine but {torch.cuda.device_count()} GPU(s) visible: NCCL "
                         "needs a GPU of its own per process; launch --num_processes "
                         f"{torch.cuda.device_count()} (torchrun --nproc_per_node), or --device cpu")


def _reward_key(name: str) -> str:
    """One spelling per reward: a user's file.py:fn by its resolved path, so ./r.py:fn and r.py:fn are one."""
    where, _, fn = name.rpartition(":")
    if where and (where.endswith(".py") or "/" in where or "\\" in where):
        try:
            return f"{Path(where).expanduser().resolve()}:{fn}"
        except (OSError, RuntimeError, ValueError):
            return name
    return name


def _check_rewards_listed_once(names: list[str]) -> None:
    """A reward listed twice counts twice in every step's sum, and is called twice: a slip (or a generated
    list), never a way to weigh it (--reward_weights is)."""
    seen: set[str] = set()
    for name in names:
        if _reward_key(name) not in seen:
            seen.add(_reward_key(name))
        else:
            times = sum(_reward_key(n) == _reward_key(name) for n in names) if len(names) <= 1000 else "many"
            raise UsageError(f"--reward_funcs lists {shown(name, 120)} more than once ({times} times); list "
                             "each reward once, and use --reward_weights to give one more weight")


def _check_flag_combinations(v: dict[str, Any]) -> None:
    _check_rewards_listed_once(v["reward_funcs"])
    if v["reward_weights"] is not None and len(v["reward_weights"]) != len(v["reward_funcs"]):
        raise UsageError(
            f"--reward_weights has {len(v['reward_weights'])} value(s) but --reward_funcs has "
            f"{len(v['reward_funcs'])} ({' '.join(v['reward_funcs'])}); give one weight per reward"
        )
    if v["reward_weights"] is not None and not any(w != 0 for w in v["reward_weights"]):
        raise UsageError(f"--reward_weights {' '.join(map(str, v['reward_weights']))}: every weight is 0, so "
                         "every advantage is 0 and nothing is learned; give at least one reward a weight")
    if v["merge"] and v["full_finetune"]:
        raise UsageError("--merge applies to LoRA runs; a --full_finetune run's final/ is already a full model")
    if v["use_vllm"] and importlib.util.find_spec("vllm") is None:
        raise UsageError("--use_vllm: vllm is not installed here; pip install vllm, or drop --use_vllm")
    if v["use_vllm"] and v["fast_generation"] == "on":
        raise UsageError("--fast_generation on and --use_vllm both choose the generator; pick one")
    if v["load_in_4bit"]:
        for flag, why in (("full_finetune", "4-bit weights take no gradient; QLoRA trains a LoRA adapter on them"),
                          ("use_vllm", "vLLM loads its own copy of the weights, not bitsandbytes' 4-bit ones"),
                          ("fast_generation", ("the inference copy is a full-precision copy of the weights, "
                                               "the memory 4-bit saves (auto steps aside with a log line)"))):
            if v[flag] is True or (flag == "fast_generation" and v[flag] == "on"):
                shown = "on" if flag == "fast_generation" else ""
                raise UsageError(f"--load_in_4bit with --{flag} {shown}".rstrip() + f": {why}; drop one of them")
    if v["delta"] is not None and v["delta"] <= 1 + (v["epsilon_high"] or v["epsilon"]):
        raise UsageError(f"--delta {v['delta']:g} must exceed 1 + the upper clip range "
                         f"({1 + (v['epsilon_high'] or v['epsilon']):g}), or it clips tighter than the PPO clip; "
                         "INTELLECT-2 uses 4")
    if v["chat_template_kwargs"] and v["prompt_template"] == "r1_zero":
        raise UsageError("--chat_template_kwargs: --prompt_template r1_zero prompts are plain text, no chat template "
                         "reads them; drop it or use a chat template (think, qwen_math)")
    if v["vllm_gpu_memory_utilization"] != DEFAULTS["vllm_gpu_memory_utilization"] and not (
            v["use_vllm"] and v["vllm_mode"] == "colocate"):
        raise UsageError(f"--vllm_gpu_memory_utilization {v['vllm_gpu_memory_utilization']:g} applies with "
                         "--use_vllm --vllm_mode colocate; a vLLM server takes it on its own command line")
    if v["resume_weights_only"] and not v["resume_from_checkpoint"]:
        raise UsageError("--resume_weights_only says how to resume; give --resume_from_checkpoint too")
    targets = v["lora_target_modules"]
    if "all-linear" in targets and len(targets) > 1:
        raise UsageError(f"--lora_target_modules {' '.join(targets)}: all-linear already names every linear layer; "
                         "give it alone, or list module names without it")
    _check_report_to(v["report_to"])


# transformers' reporting integrations, and the module each one needs (find_spec: found without importing it)
REPORTERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",),
             "comet_ml": ("comet_ml",), "neptune": ("neptune",), "clearml": ("clearml",), "trackio": ("trackio",),
             "swanlab": ("swanlab",), "dvclive": ("dvclive",), "codecarbon": ("codecarbon",),
             "dagshub": ("dagshub",), "flyte": ("flytekit",), "azure_ml": ("azureml",), "kubeflow": ("kubeflow",)}


def _check_report_to(report_to: list[str]) -> None:
    for name in report_to:
        if name in ("none", "all"):
            continue
        if name not in REPORTERS:
            raise UsageError(f"--report_to {name}: not a logging backend; use none, all, or any of "
                             f"{', '.join(REPORTERS)}")
        if not any(importlib.util.find_spec(m) is not None for m in REPORTERS[name]):
            raise UsageError(f"--report_to {name}: {REPORTERS[name][0]} is not installed here; pip install "
                             f"{REPORTERS[name][0]}, or choose another backend (--report_to tensorboard, or none)")


def _check_paths(v: dict[str, Any]) -> None:
    from grpo_math.data.sources import DatasetId, check_dataset_id, load_math_dataset

    model_id = v["model_id"]
    if model_id and hub.is_local_path(model_id) and not Path(model_id).expanduser().exists():
        raise UsageError(f"--model_id {model_id}: no such directory or file (a hub id looks like Org/Name)")
    dataset = DatasetId.of(v["dataset_id"])  # classified once: built-in, local or hub
    check_dataset_id(dataset)
    if dataset.offline:  # columns and split of a local file are cheap to check now
        load_math_dataset(dataset, v["split"], max_samples=1, prompt_template=v["prompt_template"],
                          prompt_lang=v["prompt_lang"], system_prompt=v["system_prompt"], seed=v["seed"])
    resume = v["resume_from_checkpoint"]
    if resume and resume != "latest" and not Path(resume).is_dir():
        raise UsageError(f"--resume_from_checkpoint {resume}: no such checkpoint directory (or use 'latest')")
    out = Path(v["output_dir"])
    blocking = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise UsageError(f"--output_dir {out}: {blocking} is a file, not a directory; name a directory")


def _check_output_dir(v: dict[str, Any]) -> bool:
    """Whether the run may replace what is in --output_dir (the demo replaces only an earlier demo run).

    A live run there is refused with its PID (the lock is taken for real in train.py). A directory holds a run
    when an earlier one got somewhere: a checkpoint, final/, or a logged step. One that stopped before its
    first step left nothing worth keeping, so the same command can simply run again.
    """
    out, resume = Path(v["output_dir"]), v["resume_from_checkpoint"]
    busy = runlock.holder(out) if is_main_process() else None  # other ranks: rank 0 of this launch may hold it
    if busy is not None:
        raise UsageError(runlock.busy_message(out, busy))
    overwrite = v["overwrite_output_dir"] or bool(v["demo"] and not resume and rundir.is_demo_run(out))
    if rundir.holds_a_run(out) and not (resume or overwrite):
        raise UsageError(
            f"--output_dir {out} already holds a run; pass --resume_from_checkpoint latest to continue it, "
            "--overwrite_output_dir to replace it, or another --output_dir"
        )
    return overwrite


def _same_model(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        pa, pb = Path(a).expanduser(), Path(b).expanduser()
        return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()
    except (OSError, RuntimeError, ValueError):
        return False


def _check_same_base_model(v: dict[str, Any], model_id: str) -> None:
    """A resumed run continues from the base it was trained from: the adapter applied to another model of the
    same shapes trains on without a word, and run_config.json would lose the record of the true base."""
    resume = v["resume_from_checkpoint"]
    if not resume:
        return
    run_dir = Path(v["output_dir"]) if resume == "latest" else Path(resume).parent
    args = (rundir.read_run_config(run_dir) or {}).get("args")
    earlier = args.get("model_id") if isinstance(args, dict) else None
    if not isinstance(earlier, str) or _same_model(earlier, model_id):
        return
    if v["demo"] and not v["model_id"] and Path(earlier).name == rundir.BASE_MODEL:
        return  # the demo's own tiny base, rebuilt identically in each run directory (a moved or copied run)
    if v["resume_other_base_model"]:
        import logging

        logging.getLogger(__name__).warning("resuming a run trained from %s onto %s (--resume_other_base_model)",
                                            earlier, model_id)
        return
    raise UsageError(f"--resume_from_checkpoint {resume}: the run was trained from {earlier[:300]}, but --model_id "
                     f"is {model_id[:300]}; resume with --model_id {earlier[:300]}, or pass --resume_other_base_model "
                     "to apply the adapter to "
                     "the other model anyway")


def resolve(values: dict[str, Any], origin: dict[str, str] | None = None) -> RunConfig:
    """Check every value and every combination, then build the frozen RunConfig and, from it, the rewards.

    `values` maps flag names to values (missing ones take the defaults); `origin` maps a name to where its
    value came from (e.g. "--config c.yaml"), for the error message. Raises UsageError (or another ValueError
    with a one-line message: DatasetError, RewardError, DeviceError).
    """
    config = resolve_checked({**DEFAULTS, **check_values(values, origin)})
    # the rewards are built from the resolved settings (overlong needs the run's max_completion_length); unknown
    # names fail here, and a user's file.py:fn runs here, once for the whole run
    rewards = tuple(load_reward_funcs(config.reward_funcs, max_completion_length=config.max_completion_length))
    return dataclasses.replace(config, rewards=rewards)


def resolve_checked(v: dict[str, Any]) -> RunConfig:
    """Every check of this module, then the frozen RunConfig with its resolved fields, rewards not yet built."""
    world = world_size()
    _check_generation_batch(v, world)
    _check_flag_combinations(v)
    _check_paths(v)
    overwrite = _check_output_dir(v)
    placement = resolve_placement(v["device"], v["dtype"])
    if v["load_in_4bit"]:
        from grpo_math.models.quantize import check_device

        check_device(placement.device)
    _check_launch(v, placement, sharding())
    resolved: dict[str, Any] = {"overwrite_output_dir": overwrite}
    build_tiny = bool(v["demo"] and not v["model_id"])
    if not v["model_id"]:
        resolved["model_id"] = (str((Path(v["output_dir"]) / rundir.BASE_MODEL).resolve()) if build_tiny
                                else DEFAULT_MODEL)
    _check_same_base_model(v, resolved.get("model_id", v["model_id"]))
    if v["learning_rate"] is None:
        # LoRA's low-rank update moves the function less per unit step than full fine-tuning: ~10x the rate
        resolved["learning_rate"] = 1e-6 if v["full_finetune"] else 1e-5
    return RunConfig(**{**v, **resolved}, placement=placement, world_size=world, build_tiny_model=build_tiny)
