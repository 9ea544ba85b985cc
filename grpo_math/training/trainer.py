"""TRL's `GRPOTrainer`, subclassed, and every use of TRL's and transformers' private API in this project, behind a
version check.

Private names of TRL 1.16 that the project relies on, all here (tests aside) so that a TRL upgrade touches
one file: `GRPOTrainer._generate_single_turn` (replaced by `FastGRPOTrainer`, wrapped by `timed_generation`),
`_calculate_rewards` (checked after it runs), `_dist` (is the model sharded? `weights_sharded`), `_metrics` (this tool's
per-step metrics go through TRL's own buffer, so its `log()` reports them at the right step to every
reporter), `_logs` (the last generation batch, for completions.jsonl) and `TrainingArguments._n_gpu` (one
process, one GPU); of transformers' `Trainer`: `_save_checkpoint` and `_get_output_dir` (checkpoints are
written aside and published whole), `_load_optimizer_and_scheduler` and `_load_rng_state` (skipped for a
weights-only resume). Importing this module checks that the installed TRL is a version these were tested
with and stops with one line naming the pinned one otherwise.

`GuardedGRPOTrainer` is stock TRL with three guarantees added, and train.py uses it (or `FastGRPOTrainer`,
built on it) for every run: a checkpoint is written under `.partial/` and renamed to `checkpoint-N` only
once whole (checkpoints.py), so a kill or a full disk never leaves half of one under that name; every reward
value is checked as it is computed (finite, float32-sized, one per completion, and the weighted sum finite),
and a reward that raises or returns a bad value stops the run with `RewardFailure` naming the reward, the
step and the value, instead of a traceback or a run that learns from garbage; and `resume_weights_only`
loads a checkpoint's weights and step without its optimizer and RNG state.
`FastGRPOTrainer` also replaces `_generate_single_turn`: it syncs `rollout.InferenceCopy` when
`state.global_step` moved since the last sync (as TRL does for vLLM) and generates from the copy with TRL's
own `generation_config` (same temperature, top_p, top_k, min_p, repetition penalty). Loss, advantages,
reference model and optimizer are stock TRL. Left out on purpose: vLLM, continuous batching, DeepSpeed
ZeRO-3 / FSDP (stock generation for the whole run, with a log line) and multimodal prompts (stock
generation for those batches).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from grpo_math.runs import checkpoints
from grpo_math.runs.divergence import (Diverged, is_nonfinite_sampling, nonfinite_gradient, nonfinite_parameter,
                                  what_to_lower)
from grpo_math.runtime.interrupts import Stopped
from grpo_math.rewards import RewardFailure, describe_failure, fresh_copy, values_problem
from grpo_math.models.rollout import InferenceCopy, UnsupportedModelError
from grpo_math.runs.rundir import as_number
from grpo_math.runs.diskfull import writing
from grpo_math.models.quantize import is_4bit
from grpo_math.runs import best_checkpoint
from grpo_math.training.lora_inputs import uncast_lora_inputs

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

from transformers import TrainerCallback  # noqa: E402
from trl import GRPOConfig, GRPOTrainer  # noqa: E402 - after the version check, so a mismatch fails in one line
from trl.extras.profiling import profiling_context  # noqa: E402
from trl.trainer import utils as trl_utils  # noqa: E402


# ---------------------------------------------------------------------------------------------------------------
# Small accessors for the private state callbacks and train.py need


def queue_metrics(trainer: Any, metrics: dict[str, Any]) -> None:
    """Hand metrics to TRL's per-step buffer, so its next `log()` averages and reports them at this step, to
    every reporter. A second `trainer.log()` call instead would flush TRL's half-collected metrics into the
    wrong record. TRL 1.16's `log()` averages a name's values over the logging window within one process and
    reduces nothing across processes (its own metrics are gathered when computed), and rank 0's record is the
    one reported: a metric queued here must be the same on every rank, or mean what rank 0 measured."""
    for name, value in metrics.items():
        value = as_number(value)
        if value is not None:
            trainer._metrics["train"][name].append(float(value))


def generation_logs(trainer: Any) -> dict | None:
    """TRL's record of the last generation batch (`prompt`, `completion`, `rewards` by name, `advantages`),
    or None when the trainer keeps none."""
    logs = getattr(trainer, "_logs", None)
    return logs if logs and logs.get("prompt") else None


def weights_sharded(trainer: Any) -> bool:
    """Whether each process holds only a shard of the weights (DeepSpeed ZeRO-3, FSDP), so that every forward
    pass is a collective all of them take part in."""
    dist = getattr(trainer, "_dist", None)
    return bool(dist is not None and (dist.is_zero3 or dist.is_fsdp))


def use_one_gpu(config: GRPOConfig) -> None:
    """One process uses one GPU: without this, Trainer wraps the model in DataParallel over all visible GPUs."""
    config._n_gpu = 1


# ---------------------------------------------------------------------------------------------------------------
# The trainers


def guard_reward(fn: Callable, when: str | None = None) -> Callable:
    """`fn` with its failures made `RewardFailure`s naming it and the step (or `when`, e.g. "the accuracy eval"):
    an exception, or a return value that `rewards.values_problem` rejects (inf, nan, 1e308, a string, the wrong
    count)."""
    name = getattr(fn, "__name__", repr(fn))

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> list:
        state = kwargs.get("trainer_state")
        # the step being computed (TRL passes its state to rewards)
        step = when or (f"step {state.global_step + 1}" if state is not None else "a step")
        try:  # each reward gets its own copies of the columns: one that edits them cannot mislead the next
            values = fn(*fresh_copy(args), **fresh_copy(kwargs))
        except (KeyboardInterrupt, Stopped):  # the user's own Ctrl-C, and a signal's graceful stop
            raise
        except BaseException as e:  # a user's code, sys.exit() included: named, cause kept for --debug
            raise RewardFailure(f"reward {name!r} {describe_failure(e)} at {step}") from e
        completions = kwargs["completions"] if "completions" in kwargs else args[0] if args else ()
        problem = values_problem(values, len(completions), f" at {step}")
        if problem:
            raise RewardFailure(f"reward {name!r} {problem}")
        return values

    return guarded


class AlreadyTrained(Exception):
    """Resumed from a checkpoint at the end of the schedule: nothing is left to train (the weights are loaded)."""


class _StopIfScheduleDone(TrainerCallback):
    # transformers runs one step before it checks max_steps, so a run resumed from its last checkpoint would
    # train a step past the schedule and end unlike the uninterrupted run; stop it before that step instead
    def on_train_begin(self, args, state, control, **kwargs):
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            raise AlreadyTrained(f"step {state.global_step} of {state.max_steps}")


class _StopOnDivergence(TrainerCallback):
    # after clipping, before the optimizer step: a NaN gradient norm never reaches the weights
    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if model is not None and nonfinite_gradient(model):
            raise Diverged(f"training diverged at step {state.global_step + 1}: the gradient norm is not finite "
                           f"(inf or NaN); {what_to_lower(args.learning_rate)}")


def check_finite_weights(trainer: Any, what: str) -> None:
    """Refuse to write `what` (a checkpoint, final/) from weights holding inf or NaN; Diverged names one."""
    name = nonfinite_parameter(trainer.accelerator.unwrap_model(trainer.model), trainable_only=True)
    if name:
        raise Diverged(f"training diverged by step {trainer.state.global_step}: {name} holds inf or NaN, so "
                       f"{what} was not written; {what_to_lower(trainer.args.learning_rate)}")


class GuardedGRPOTrainer(GRPOTrainer):
    """`GRPOTrainer` with whole checkpoints, checked rewards and weights-only resume (see the module docstring)."""

    resume_weights_only = False  # train.py sets it from --resume_weights_only
    best_eval: dict | None = None  # {"step", "eval_accuracy"}: callbacks.AccuracyEval keeps it (best_checkpoint.py)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.add_callback(_StopIfScheduleDone())
        self.add_callback(_StopOnDivergence())
        # reward models (nn.Module) and async rewards keep TRL's own handling
        self.reward_funcs = [f if isinstance(f, torch.nn.Module) or inspect.iscoroutinefunction(f)
                             else guard_reward(f) for f in self.reward_funcs]
        self._saving_aside = False

    # -- checkpoints: written under RUN_DIR/.partial/checkpoint-N, published whole

    def _get_output_dir(self, trial):
        run_dir = super()._get_output_dir(trial)
        return str(checkpoints.staging_dir(run_dir)) if self._saving_aside else run_dir

    def _save_checkpoint(self, model, trial):
        run_dir = Path(self._get_output_dir(trial))
        name = f"checkpoint-{self.state.global_step}"
        check_finite_weights(self, name)  # on every rank: each holds the same weights, so all stop together
        staged = checkpoints.staging_dir(run_dir) / name
        self._saving_aside = True
        try:
            with writing(name, staged):  # safetensors and torch report a full disk their own ways
                super()._save_checkpoint(model, trial)  # TRL's and transformers' own save, into `staged`
        except BaseException:
            if self.args.should_save:
                checkpoints.discard(staged)  # gives back the space a full disk needs
            raise
        finally:
            self._saving_aside = False
        self.accelerator.wait_for_everyone()  # every rank's RNG state is in before the rename
        if self.args.should_save:
            checkpoints.publish(staged, run_dir / name)
            best = self.best_eval  # the in-run eval's best step (best_checkpoint.py): never rotated away
            if best and best["step"] == self.state.global_step:
                best_checkpoint.publish_best(run_dir, run_dir / name, best)
            checkpoints.rotate(run_dir, self.args.save_total_limit, run_dir / name,
                               best=run_dir / f"checkpoint-{best['step']}" if best else None)
        # no rank returns before the checkpoint has its name: after a stop the ranks exit next, and a launcher
        # stops the rest as soon as one exits, which could catch rank 0 mid-rename
        self.accelerator.wait_for_everyone()

    def training_step(self, *args: Any, **kwargs: Any):
        step = self.state.global_step + 1
        try:  # generation (TRL generates inside training_step) and the loss
            loss = super().training_step(*args, **kwargs)
        except RuntimeError as e:
            if not is_nonfinite_sampling(e):
                raise
            raise Diverged(f"the model gives non-finite logits (inf or NaN) at step {step}, so no completion can be "
                           f"sampled: training has diverged; {what_to_lower(self.args.learning_rate)}") from e
        if not bool(torch.isfinite(loss).all()):
            raise Diverged(f"training diverged at step {step}: the loss is {loss.float().mean().item():g}; "
                           f"{what_to_lower(self.args.learning_rate)}")
        return loss

    def _load_optimizer_and_scheduler(self, checkpoint):
        if not self.resume_weights_only:
            super()._load_optimizer_and_scheduler(checkpoint)

    def _load_rng_state(self, checkpoint):
        if not self.resume_weights_only:
            super()._load_rng_state(checkpoint)

    # -- rewards: each value checked by guard_reward, the weighted sum here

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)  # [B*G, F]
        weights = self.reward_weights.to(rewards_per_func.device)
        terms = rewards_per_func * weights  # NaN where a reward returned None; TRL sums with nansum
        bad = (~torch.isfinite(terms.nansum(dim=1))).nonzero()
        if len(bad):
            i = int(bad[0])
            k = int(terms[i].nan_to_num(0.0).abs().argmax())
            raise RewardFailure(
                f"reward {self.reward_func_names[k]!r} returned {rewards_per_func[i, k].item():g} (completion {i}) "
                f"at step {self.state.global_step + 1}, and the weighted sum of the rewards "
                f"({', '.join(f'{w:g}' for w in weights.tolist())}) overflows float32 to inf; keep rewards small")
        return rewards_per_func


class FastGRPOTrainer(GuardedGRPOTrainer):
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

    @property
    def fast_path(self) -> bool:
        """Whether rollouts come from the inference copy (a model it cannot copy still turns it off at the
        first generation, with a warning)."""
        return self._fast_path

    def _fast_path_blocker(self) -> str | None:
        if self.use_vllm:
            return "vLLM generates"
        if self.use_transformers_continuous_batching:
            return "transformers continuous batching was asked for"
        if weights_sharded(self):
            return "DeepSpeed ZeRO-3 / FSDP shard the weights"
        if is_4bit(self.model):
            return ("the base is 4-bit (--load_in_4bit): a full-precision inference copy would take back the "
                    "memory 4-bit saves")
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

    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any):
        with eager_lm_head(self.accelerator.device), uncast_lora_inputs(self.model, self.accelerator.mixed_precision):
            return super()._get_per_token_logps_and_entropies(*args, **kwargs)  # the loss pass's and reference's


# TRL's tiles for its chunked LM head (tokens x vocabulary entries), and the ones eager_lm_head uses on CPU and MPS
TRL_TILE = (4096, 32768)
EAGER_TILE = (512, 4096)


@contextlib.contextmanager
def eager_lm_head(device: torch.device) -> Iterator[None]:
    """TRL's fused LM head (the loss pass's log-probabilities, `trl.kernels.chunked_logprob`) as it suits a device
    that runs eagerly (CPU, MPS); a no-op elsewhere. Two of TRL 1.16's module-level settings, swapped for the call:

    - only the positions with a label (the completions' real tokens) are scored. TRL does that only where Triton
      runs, and elsewhere scores every position, prompt and padding included, so that compiled back ends (Neuron)
      keep one tile shape; in a SmolLM2 batch of 32 completions behind 60-token prompts, about half the positions
      have a label. Each position is scored on its own and unlabelled ones are 0 either way;
    - tiles of 512 tokens x 4,096 vocabulary entries instead of 4,096 x 32,768: TRL's tile is a 512 MB fp32 block
      per elementwise pass on CPU, out of every cache; at 512 x 4,096 (8 MB) the same math runs about 3.5x faster
      (forward 1.16 -> 0.32 s, backward 4.22 -> 1.29 s for 2,773 tokens x 49,152 entries on two cores).

    Same function, same formulas: the log-probabilities and the loss match TRL's within float rounding
    (tests/test_fast_loss.py).
    """
    if device.type not in ("cpu", "mps"):
        yield
        return
    from trl.kernels import chunked_logprob

    saved = trl_utils._use_triton, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE, chunked_logprob.TOKEN_CHUNK_SIZE
    original = saved[0]
    trl_utils._use_triton = lambda d: True if d.type in ("cpu", "mps") else original(d)  # `compact` only
    chunked_logprob.TOKEN_CHUNK_SIZE, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE = EAGER_TILE
    try:
        yield
    finally:
        trl_utils._use_triton, trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE, chunked_logprob.TOKEN_CHUNK_SIZE = saved


def timed_generation(cls: type, sync: Callable[[], None]) -> type:
    """`cls` with each generation call timed (the whole `_generate_single_turn`, weight sync included) into
    `trainer.generation_times`, as (seconds, completion tokens, prompt tokens); `sync` waits for the device
    (benchmarks)."""

    class Timed(cls):
        generation_times: list[tuple[float, int, int]]

        def _generate_single_turn(self, prompt_ids, *args: Any, **kwargs: Any):
            sync()
            t0 = time.perf_counter()
            completion_ids, logprobs = super()._generate_single_turn(prompt_ids, *args, **kwargs)
            sync()
            self.__dict__.setdefault("generation_times", []).append(
                (time.perf_counter() - t0, sum(len(c) for c in completion_ids), sum(len(p) for p in prompt_ids)))
            return completion_ids, logprobs

    Timed.__name__ = Timed.__qualname__ = cls.__name__
    return Timed
