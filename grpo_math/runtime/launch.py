"""Several processes (`torchrun`, `accelerate launch`): what the launcher set up, and what the processes do together.

    sharding()          "DeepSpeed ZeRO-3" or "FSDP" when accelerate launch shards the weights, else None: read
                        from the environment accelerate sets (or its DeepSpeed JSON), so checks.py can refuse
                        what cannot work on every rank before anything loads
    run_on_main(fn)     fn() in rank 0 alone (the accuracy eval); every process gets its result, or its exception
    exit_together()     a process that exits with an error waits, for a bounded time, until every process of the
                        launch has reached its own exit

Nothing here is run directly: `torchrun --nproc_per_node 2 main.py --demo` and `accelerate launch --config_file
configs/accelerate/cpu-ddp.yaml main.py --demo` use it (tests/test_distributed.py runs both, and two "machines").
The process's rank and world size themselves are devices.py's (`world_size`, `is_main_process`).
Left out on purpose: MPI and Slurm launchers without torchrun's store (exit_together then gives up after its
timeout), and splitting the accuracy eval across ranks (its numbers would then depend on the process count).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
EXIT_WAIT_S = 15.0  # long enough for a rank that lags by a model load; a lone failure costs the user this much


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "y", "on", "t")


def sharding(env: Mapping[str, str] | None = None) -> str | None:
    """How `accelerate launch` shards the weights across processes: "DeepSpeed ZeRO-3", "FSDP", or None (DDP,
    ZeRO-1/2, one process). `env` defaults to this process's environment."""
    env = os.environ if env is None else env
    if _true(env.get("ACCELERATE_USE_FSDP")):
        return "FSDP"
    if not _true(env.get("ACCELERATE_USE_DEEPSPEED")):
        return None
    stage = env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    config_file = env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    if stage is None and config_file and config_file != "none":
        try:  # a DeepSpeed JSON named by the accelerate config: the stage is in it
            with open(config_file, encoding="utf-8") as f:
                stage = str(json.load(f).get("zero_optimization", {}).get("stage", ""))
        except (OSError, ValueError, AttributeError):
            stage = None  # accelerate itself reports a missing or broken file
    return "DeepSpeed ZeRO-3" if str(stage).strip() == "3" else None


def distributed() -> bool:
    """True once torch.distributed has a process group of more than one process (the trainer made it)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _portable(error: Exception) -> Exception:
    """`error` if it survives pickling (to be re-raised on the other ranks), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - whatever pickling raises, the other ranks still get the message
        return RuntimeError(f"{type(error).__name__}: {error}")


def run_on_main(compute: Callable[[], T], *, every_rank: bool = False) -> T:
    """`compute()`'s result on rank 0, handed to every process (a plain call in a single process).

    `compute` runs in rank 0 alone while the others wait, unless `every_rank` (it holds collectives, e.g. a
    forward pass through ZeRO-3-sharded weights): then every rank runs it and rank 0's result is the one kept.
    An exception in rank 0 is raised on every rank, so none of them waits for ever for a result.
    """
    if not distributed():
        return compute()
    import torch.distributed as dist

    box: list = [None]
    error: Exception | None = None
    if every_rank or dist.get_rank() == 0:
        try:
            box[0] = ("result", compute())
        except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
            error = e
            box[0] = ("error", _portable(e))
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if error is not None:
        raise error  # this rank's own, with its traceback
    if kind == "error":
        raise value
    return value


def exit_together(timeout_s: float = EXIT_WAIT_S) -> None:
    """Wait until every process of this launch has reached its exit, or `timeout_s` passed (a no-op in one process).

    torchrun (and so accelerate launch) stops the remaining processes as soon as one exits with an error, so a
    rank a little behind would be killed before it printed its own one-line error, or, after a SIGTERM, before
    rank 0 printed the resume command. The ranks meet on the launcher's own key-value store (MASTER_ADDR and
    MASTER_PORT), which needs no process group and so works before training started.
    """
    from grpo_math.runtime.devices import world_size

    world, addr, port = world_size(), os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if world <= 1 or not addr or not port:
        return
    import torch.distributed as dist

    # one namespace per launch and restart, so a restarted group never counts the exits of the one before
    prefix = f"grpo_math/exit/{os.environ.get('TORCHELASTIC_RUN_ID', '')}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    wait = timedelta(seconds=timeout_s)
    try:
        store = dist.TCPStore(addr, int(port), is_master=False, timeout=wait)
        store.set(f"{prefix}/{os.environ.get('RANK', '0')}", "1")
        store.wait([f"{prefix}/{rank}" for rank in range(world)], wait)
    except Exception as e:  # noqa: BLE001 - best effort: the process exits with its own code either way
        logger.debug("not every process reached its exit within %.0f s: %s", timeout_s, e)
    try:  # on its way out: the launcher's SIGTERM to the ranks still exiting would only make their code -15
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass
