"""SIGTERM and SIGINT (Ctrl-C) during a run: finish the optimizer step, save a checkpoint, stop, say how to resume.

train.py installs a `GracefulStop` for the whole run and adds it to the trainer's callbacks:

    first signal, during training   the step in progress finishes, a checkpoint of it is saved, training stops;
                                    train.py then raises `Stopped`, and main.py prints the resume command and
                                    exits 128 + the signal (143 for SIGTERM, 130 for SIGINT)
    first signal, outside training  `Stopped` at once (no step to finish: loading, or writing final/)
    a second signal                 exit at once, without Python's clean-up; the checkpoints already published
                                    stay valid (checkpoints.py writes each one before it gets its name)

Under several processes the ranks agree on stopping at the same step through an all-reduce, or their
collective save would wait for ever: torchrun forwards a signal it gets to every rank, and a signal to one rank
alone stops them all (tests/test_distributed.py sends SIGTERM to rank 1 of 2 and resumes bit-identically).
Left out on purpose: SIGHUP and SIGQUIT (their default behaviour stays), and Windows' console events.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from transformers import TrainerCallback

from grpo_math.runtime.launch import distributed

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(BaseException):
    """The run stopped on a signal. A BaseException, like KeyboardInterrupt, so no `except Exception` eats it."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class GracefulStop(TrainerCallback):
    """The signal handlers and the callback that turns the first signal into "save and stop after this step"."""

    def __init__(self, before_exit: Callable[[], None] | None = None) -> None:
        self.signum: int | None = None
        self.training = False  # train.py sets it just before trainer.train(); on_train_end clears it
        self.stage = "before training started"  # where the run is, outside training, for the message
        self.finished = False  # final/ is written: a signal now loses nothing
        self.before_exit = before_exit  # run before a second signal ends the process (the run-dir lock)
        self._previous: dict[int, object] = {}

    # -- handlers

    def install(self) -> None:
        """Handle SIGTERM and SIGINT from now on (main thread only; elsewhere signals keep their behaviour)."""
        try:
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: signal.signal refuses
            self._previous.clear()

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is not None:
            print(f"\n{name} again: exiting now; the checkpoints already saved stay valid", file=sys.stderr,
                  flush=True)
            if self.before_exit is not None:
                self.before_exit()
            os._exit(128 + signum)
        self.signum = signum
        if not self.training:
            raise Stopped(signum, f"stopped by {name} {self.stage}")  # train.py adds what to do next
        print(f"\n{name}: stopping after the current step and saving a checkpoint (send it again to exit at once)",
              file=sys.stderr, flush=True)

    # -- callback

    def on_train_end(self, args, state, control, **kwargs):
        self.training = False
        self.stage = "after the last step"

    def on_step_end(self, args, state, control, **kwargs):
        if self._agreed():
            control.should_save = True
            control.should_training_stop = True
        return control

    def on_save(self, args, state, control, **kwargs):
        # the signal came during this step's save: that checkpoint is the one to stop at (one process only: with
        # several, the ranks must agree, which on_step_end does)
        if self.signum is not None and not distributed():
            control.should_training_stop = True
        return control

    def _agreed(self) -> bool:
        """Whether any process got a signal: one all-reduce per step under several processes."""
        if not distributed():
            return self.signum is not None
        import torch
        import torch.distributed as dist

        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        flag = torch.tensor([0 if self.signum is None else self.signum], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and self.signum is None:
            self.signum = int(flag.item())
        return bool(flag.item())
