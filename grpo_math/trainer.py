"""TRL's `GRPOTrainer`, subclassed, and every use of TRL's private API in this project, behind a version check.

Private names of TRL 1.16 that the project relies on, all here (tests aside) so that a TRL upgrade touches
one file: `GRPOTrainer._generate_single_turn` (replaced by `FastGRPOTrainer`, wrapped by `timed_generation`),
`_dist` (is the model sharded?), `_metrics` (this tool's per-step metrics go through TRL's own buffer, so its
`log()` reports them at the right step to every reporter), `_logs` (the last generation batch, for
completions.jsonl) and `TrainingArguments._n_gpu` (one process, one GPU). Importing this module checks that
the installed TRL is a version these were tested with and stops with one line naming the pinned one otherwise.

`FastGRPOTrainer` is stock TRL with only `_generate_single_turn` replaced: it syncs `rollout.InferenceCopy`
when `state.global_step` moved since the last sync (as TRL does for vLLM) and generates from the copy with
TRL's own `generation_config` (same temperature, top_p, top_k, min_p, repetition penalty). Loss, advantages,
reference model, optimizer and checkpoints are stock TRL. Left out on purpose: vLLM, continuous batching,
DeepSpeed ZeRO-3 / FSDP and multimodal prompts, which fall back to stock generation with a log line.
"""

from __future__ import annotations

import logging
import time
from importlib.metadata import version
from typing import Any, Callable

import torch

from grpo_math.rundir import as_number
from grpo_math.rollout import InferenceCopy, UnsupportedModelError

logger = logging.getLogger(__name__)

TESTED_TRL = ("1.16.",)  # version prefixes whose private API matches what this file uses
PINNED_TRL = "1.16.0"  # requirements.txt


class TRLVersionError(ImportError):
    """The installed TRL is not one this file was tested with; the message is one line."""


def check_trl_version(installed: str | None = None) -> str:
    """The installed TRL version; raises TRLVersionError when it is not one of TESTED_TRL."""
    installed = installed or version("trl")
    if not installed.startswith(TESTED_TRL):
        raise TRLVersionError(f"trl {installed} is installed, but this tool uses TRL internals tested with "
                              f"{', '.join(v + 'x' for v in TESTED_TRL)}; pip install trl=={PINNED_TRL} "
                              "(pip install -r requirements.txt)")
    return installed


check_trl_version()

from trl import GRPOConfig, GRPOTrainer  # noqa: E402 - after the version check, so a mismatch fails in one line
from trl.extras.profiling import profiling_context  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------
# Small accessors for the private state callbacks and train.py need


def queue_metrics(trainer: Any, metrics: dict[str, Any]) -> None:
    """Hand metrics to TRL's per-step buffer, so its next `log()` averages and reports them at this step, to
    every reporter. A second `trainer.log()` call instead would flush TRL's half-collected metrics into the
    wrong record."""
    for name, value in metrics.items():
        value = as_number(value)
        if value is not None:
            trainer._metrics["train"][name].append(float(value))


def generation_logs(trainer: Any) -> dict | None:
    """TRL's record of the last generation batch (`prompt`, `completion`, `rewards` by name, `advantages`),
    or None when the trainer keeps none."""
    logs = getattr(trainer, "_logs", None)
    return logs if logs and logs.get("prompt") else None


def use_one_gpu(config: GRPOConfig) -> None:
    """One process uses one GPU: without this, Trainer wraps the model in DataParallel over all visible GPUs."""
    config._n_gpu = 1


# ---------------------------------------------------------------------------------------------------------------
# The trainer


class FastGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` whose regular (non-vLLM) generation runs on an `InferenceCopy` of the policy.

    The copy is built at the first generation (after the accelerator has placed the model), in the training
    dtype (bf16/fp16 when mixed precision is on). Extra keyword: `use_static_cache` (None: on CUDA).
    """

    def __init__(self, *args: Any, use_static_cache: bool | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.use_static_cache = use_static_cache
        self.inference_copy: InferenceCopy | None = None
        self._copy_synced_step = -1
        reason = self._fast_path_blocker()
        self._fast_path = reason is None
        if reason:
            logger.warning("fast generation is off for this run: %s; generating with stock TRL", reason)

    def _fast_path_blocker(self) -> str | None:
        if self.use_vllm:
            return "vLLM generates"
        if self.use_transformers_continuous_batching:
            return "transformers continuous batching was asked for"
        if self._dist.is_zero3 or self._dist.is_fsdp:
            return "DeepSpeed ZeRO-3 / FSDP shard the weights"
        return None

    def _training_dtype(self) -> torch.dtype | None:
        if self.args.bf16:
            return torch.bfloat16
        if self.args.fp16:
            return torch.float16
        return None  # the weights' own dtype

    def synced_copy(self) -> InferenceCopy | None:
        """The inference copy, built on first use and holding the current policy's weights; None when the
        fast path is off. Also what the accuracy eval during training generates with."""
        if not self._fast_path:
            return None
        if self.inference_copy is None:
            source = self.accelerator.unwrap_model(self.model_wrapped)
            try:
                self.inference_copy = InferenceCopy(source, dtype=self._training_dtype(),
                                                    device=self.accelerator.device)
            except UnsupportedModelError as e:
                logger.warning("fast generation is off for this run: %s", e)
                self._fast_path = False
                return None
            self._copy_synced_step = self.state.global_step
            logger.info("fast generation: inference copy built (%s, %s)", self.inference_copy.dtype,
                        self.inference_copy.device)
        elif self.state.global_step != self._copy_synced_step:
            with profiling_context(self, "sync_weights"):
                self.inference_copy.sync()
            self._copy_synced_step = self.state.global_step
        return self.inference_copy

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        multimodal = bool(images is not None and any(images)) or bool(multimodal_fields) or has_tool_images
        copy = None if multimodal else self.synced_copy()
        if copy is None:  # fast path off, multimodal, or a model that cannot be copied (DoRA, quantised)
            return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                 has_tool_images)
        with profiling_context(self, "rollout.generate"):
            completion_ids = copy.generate(prompt_ids, self.generation_config,
                                           use_static_cache=self.use_static_cache)
        return completion_ids, None  # no sampling logprobs, as in TRL's own transformers path


def timed_generation(cls: type, sync: Callable[[], None]) -> type:
    """`cls` with each generation call timed (the whole `_generate_single_turn`, weight sync included) into
    `trainer.generation_times`, as (seconds, completion tokens); `sync` waits for the device (benchmarks)."""

    class Timed(cls):
        generation_times: list[tuple[float, int]]

        def _generate_single_turn(self, prompt_ids, *args: Any, **kwargs: Any):
            sync()
            t0 = time.perf_counter()
            completion_ids, logprobs = super()._generate_single_turn(prompt_ids, *args, **kwargs)
            sync()
            self.__dict__.setdefault("generation_times", []).append(
                (time.perf_counter() - t0, sum(len(c) for c in completion_ids)))
            return completion_ids, logprobs

    Timed.__name__ = Timed.__qualname__ = cls.__name__
    return Timed
