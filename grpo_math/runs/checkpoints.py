"""Checkpoints a run can trust: what makes one complete, publishing one atomically, and which one to resume from.

    python -m grpo_math.runs.checkpoints RUN_DIR     # eval.sh: the steps whose weights can be scored, one per line,
                                                # and a "skipping checkpoint-N: why" line for each other one

A checkpoint becomes `RUN_DIR/checkpoint-N/` only when it is complete: the trainer writes it under
`RUN_DIR/.partial/checkpoint-N/`, `publish` fsyncs every file and then renames the directory into place. A
SIGKILL or a full disk during a save leaves `.partial/`, which no reader looks at and the next run removes.
A checkpoint is resumable when trainer_state.json parses, its weights are whole (safetensors header and size,
torch files' zip directory), and optimizer.pt, scheduler.pt and the RNG state are there and readable.
`find_resume` turns `--resume_from_checkpoint` (a path, or `latest`: the newest resumable one) into a
directory, logging each one it skips and why; a checkpoint without its optimizer or RNG state is an error
naming the file unless `--resume_weights_only` asks for exactly that.
`find_resume` also reads the weights' values (divergence.py, numpy): a checkpoint of inf/NaN is never resumed.
Left out on purpose: DeepSpeed/FSDP states beyond
the presence of their directory. Nothing here imports torch, so eval.sh can ask cheaply.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import sys
import zipfile
from pathlib import Path

from grpo_math.config import RunConfig
from grpo_math.runs.divergence import checkpoint_nonfinite
from grpo_math.runs.rundir import CHECKPOINT_RE, STAGING, checkpoint_dirs

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"
OPTIMIZER, SCHEDULER = "optimizer.pt", "scheduler.pt"
SAFETENSORS = ("adapter_model.safetensors", "model.safetensors")
TORCH_WEIGHTS = ("adapter_model.bin", "pytorch_model.bin")
INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_MAX_HEADER = 100 * 2**20  # a safetensors header past 100 MiB is a corrupt length field, not a real header


class CheckpointError(ValueError):
    """No checkpoint to resume from, or the one named cannot be resumed; the message is one line."""


# ---------------------------------------------------------------------------------------------------------------
# What is in a checkpoint


def _safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is not whole (header unreadable, or shorter than its header says), or None."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > min(size - 8, _MAX_HEADER):
                return f"{path.name} is truncated or corrupt ({size} bytes)"
            header = json.loads(f.read(n))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return f"{path.name} is truncated or corrupt ({size} bytes)"
    if size < 8 + n + end:
        return f"{path.name} is truncated ({size} of {8 + n + end} bytes)"
    return None


def _torch_file_problem(path: Path) -> str | None:
    """Why a torch.save file is unreadable, or None: its zip directory sits at the end, so a cut file fails."""
    try:
        with zipfile.ZipFile(path) as z:
            if not any(name.endswith("data.pkl") for name in z.namelist()):
                return f"{path.name} is not a torch file"
    except (zipfile.BadZipFile, OSError, ValueError):
        return f"{path.name} is truncated or corrupt ({path.stat().st_size} bytes)"
    return None


def weights_problem(ckpt: Path) -> str | None:
    """Why the weights of `ckpt` cannot be loaded (none, or a file cut short), or None: what eval needs."""
    files = [ckpt / n for n in (*SAFETENSORS, *TORCH_WEIGHTS) if (ckpt / n).is_file()]
    for index in (ckpt / n for n in INDEXES if (ckpt / n).is_file()):
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError):
            return f"{index.name} is truncated or corrupt"
        missing = [s for s in shards if not (ckpt / s).is_file()]
        if missing:
            return f"{missing[0]} (listed in {index.name}) is missing"
        files += [ckpt / s for s in shards]
    if not files:
        return "it holds no weights (adapter_model.safetensors or model.safetensors)"
    for f in files:
        problem = _safetensors_problem(f) if f.suffix == ".safetensors" else _torch_file_problem(f)
        if problem:
            return problem
    config = "adapter_config.json" if any(f.name.startswith("adapter_model") for f in files) else "config.json"
    try:
        json.loads((ckpt / config).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"{config} is missing or unreadable"
    return None


def _rng_files(world_size: int) -> list[str]:
    return ["rng_state.pth"] if world_size <= 1 else [f"rng_state_{i}.pth" for i in range(world_size)]


def _state_files(ckpt: Path, world_size: int) -> list[str]:
    """The optimizer, scheduler and RNG files a resumable checkpoint of this launch holds."""
    # DeepSpeed keeps the optimizer (and its scheduler) in global_stepN/ instead
    deepspeed = any(p.is_dir() and p.name.startswith("global_step") for p in ckpt.iterdir())
    return [*([] if deepspeed else [OPTIMIZER, SCHEDULER]), *_rng_files(world_size)]


def resume_problem(ckpt: Path, world_size: int = 1) -> tuple[str | None, list[str]]:
    """(why `ckpt` cannot be resumed at all, or None; the optimizer/scheduler/RNG files it lacks).

    An unreadable file is a problem; a missing state file is listed apart, since `--resume_weights_only`
    makes do without it. trainer_state.json is written last, so without it a save did not finish.
    """
    try:
        state = json.loads((ckpt / TRAINER_STATE).read_text(encoding="utf-8"))
        int(state["global_step"])
    except FileNotFoundError:
        return f"{TRAINER_STATE} is missing (the save did not finish)", []
    except (OSError, ValueError, KeyError, TypeError):
        return f"{TRAINER_STATE} is truncated or corrupt", []
    problem = weights_problem(ckpt)
    if problem:
        return problem, []
    missing = []
    for name in _state_files(ckpt, world_size):
        if not (ckpt / name).is_file():
            missing.append(name)
        elif problem := _torch_file_problem(ckpt / name):
            return problem, []
    return None, missing


# ---------------------------------------------------------------------------------------------------------------
# Which checkpoint to resume from


def find_resume(run_dir: str | Path, requested: str, *, weights_only: bool = False,
                world_size: int = 1) -> Path | None:
    """The checkpoint directory `--resume_from_checkpoint requested` means; raises CheckpointError (one line).

    `latest` with no complete checkpoint at all (a run killed before its first save, or none yet) is None: the
    run starts from step 0, with a warning, so that a job that always passes `latest` can simply be restarted.
    """
    if requested != "latest":
        ckpt = Path(requested)
        problem, missing = resume_problem(ckpt, world_size)
        problem = problem or checkpoint_nonfinite(ckpt)
        if problem:
            raise CheckpointError(f"--resume_from_checkpoint {requested}: {problem}")
        return _with_state(ckpt, missing, weights_only, flag=f"--resume_from_checkpoint {requested}")
    found = checkpoint_dirs(run_dir)
    skipped = []
    for step, ckpt in reversed(found):
        problem, missing = resume_problem(ckpt, world_size)
        problem = problem or checkpoint_nonfinite(ckpt)  # an older version published diverged weights
        if problem:
            logger.warning("--resume_from_checkpoint latest: skipping %s: %s", ckpt.name, problem)
            skipped.append(f"{ckpt.name}: {problem}")
            continue
        hint = ""
        if missing and not weights_only:
            older = next((c for s, c in reversed(found) if s < step and resume_problem(c, world_size) == (None, [])),
                         None)
            hint = f", or --resume_from_checkpoint {older} (the newest complete one)" if older else ""
        chosen = _with_state(ckpt, missing, weights_only, flag="--resume_from_checkpoint latest", hint=hint)
        logger.info("--resume_from_checkpoint latest: %s%s", chosen,
                    f" ({len(skipped)} newer incomplete one(s) skipped)" if skipped else "")
        return chosen
    logger.warning("--resume_from_checkpoint latest: no complete checkpoint in %s%s; starting from step 0", run_dir,
                   f" ({len(skipped)} incomplete one(s) skipped)" if skipped else "")
    return None


def _with_state(ckpt: Path, missing: list[str], weights_only: bool, *, flag: str, hint: str = "") -> Path:
    if missing and not weights_only:
        raise CheckpointError(
            f"{flag}: {ckpt / missing[0]} is missing, so resuming would not continue the same run (fresh "
            f"optimizer or random state); pass --resume_weights_only to resume from the weights alone{hint}")
    if weights_only:
        logger.warning("%s: resuming from the weights and step of %s only (--resume_weights_only): a fresh "
                       "optimizer, schedule and random state, so the run will not match an uninterrupted one",
                       flag, ckpt)
    return ckpt


def checkpoints_after(run_dir: str | Path, ckpt: Path) -> list[Path]:
    """Checkpoints of `run_dir` newer than `ckpt` (an earlier timeline, when resuming from an older one)."""
    m = CHECKPOINT_RE.fullmatch(ckpt.name)
    return [c for s, c in checkpoint_dirs(run_dir) if m and s > int(m.group(1))]


def lora_rank_problem(ckpt: Path, lora_r: int | None) -> str | None:
    """Why `ckpt` cannot resume a run of LoRA rank `lora_r` (None: --full_finetune), in one line naming both, or
    None. A different rank would load as dozens of `size mismatch` lines; the adapter_config.json says it."""
    try:
        trained = json.loads((ckpt / "adapter_config.json").read_text(encoding="utf-8")).get("r")
    except FileNotFoundError:
        trained = None  # a full fine-tuning checkpoint
    except (OSError, ValueError, AttributeError):
        return None  # unreadable: the weights' own checks and loading report it
    if lora_r is None or trained is None or trained == lora_r:
        return None
    return (f"--lora_r {lora_r}: {ckpt.name} was trained with LoRA rank {trained} (its adapter_config.json); "
            f"resume with --lora_r {trained}, or start a new run in another --output_dir")


# ---------------------------------------------------------------------------------------------------------------
# Writing: stage, fsync, rename; deleting: rename away, then remove


def staging_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / STAGING


def clear_staging(run_dir: str | Path) -> None:
    """Remove saves an earlier run left unfinished (a kill or a full disk mid-save), with a log line."""
    staging = staging_dir(run_dir)
    if staging.is_dir():
        left = sorted(p.name for p in staging.iterdir())
        if left:
            logger.warning("removing unfinished save(s) left in %s by an earlier run: %s", staging, ", ".join(left))
        shutil.rmtree(staging, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(staged: Path, target: Path) -> None:
    """Make the finished directory `staged` appear as `target` in one rename, after its files reach the disk.

    An existing `target` (a rerun of the same step) is moved aside first and removed after, so a crash at
    any point leaves the old directory or the new one under `target`'s name, or neither, never half of one.
    """
    for root, _, files in os.walk(staged):
        for name in files:
            _fsync(Path(root) / name)
        _fsync(Path(root))
    old = staged.parent / f"replaced-{target.name}"
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
    os.rename(staged, target)
    _fsync(target.parent)
    shutil.rmtree(old, ignore_errors=True)
    _tidy(staged.parent)


def discard(staged: Path) -> None:
    """Remove a save that failed (a full disk: this gives the space back), and .partial/ when it is then empty."""
    shutil.rmtree(staged, ignore_errors=True)
    _tidy(staged.parent)


def _tidy(staging: Path) -> None:
    try:
        staging.rmdir()  # only when empty: nothing is being written or deleted
    except OSError:
        pass


def remove(ckpt: Path) -> None:
    """Delete a checkpoint so that it vanishes at once: renamed into .partial/, then removed."""
    trash = staging_dir(ckpt.parent) / f"deleting-{ckpt.name}"
    trash.parent.mkdir(exist_ok=True)
    shutil.rmtree(trash, ignore_errors=True)
    os.rename(ckpt, trash)
    shutil.rmtree(trash, ignore_errors=True)
    _tidy(trash.parent)


def rotate(run_dir: str | Path, keep: int | None, newest: Path, best: Path | None = None) -> None:
    """--save_total_limit: remove the oldest checkpoints (by step) past `keep`, never `newest` nor `best` (the
    best in-run eval's, best_checkpoint.py): it is kept on top of the newest `keep`."""
    if not keep:
        return
    found = [c for _, c in checkpoint_dirs(run_dir) if c != best]
    for ckpt in [c for c in found if c != newest][:max(0, len(found) - keep)]:
        logger.info("removing %s (--save_total_limit %d)", ckpt.name, keep)
        remove(ckpt)


# ---------------------------------------------------------------------------------------------------------------
# eval.sh's question

def resolve_resume(config: RunConfig) -> str | None:
    """The checkpoint directory to resume from (find_resume logs the ones it skips), or None;
    CheckpointError when it cannot be resumed with these settings (another LoRA rank)."""
    if not config.resume_from_checkpoint:
        return None
    ckpt = find_resume(config.output_dir, config.resume_from_checkpoint, weights_only=config.resume_weights_only,
                       world_size=config.world_size)
    if ckpt is None:
        return None
    problem = lora_rank_problem(ckpt, None if config.full_finetune else config.lora_r)
    if problem:
        raise CheckpointError(problem)
    later = checkpoints_after(config.output_dir, ckpt) if config.resume_from_checkpoint != "latest" \
        else []  # latest has logged the newer ones it skipped
    if later:
        logger.warning("resuming from %s, older than %s: those are the earlier run's, replaced as this one reaches "
                       "their steps", ckpt.name, ", ".join(c.name for c in later))
    return str(ckpt)


def where_to_resume(config: RunConfig) -> str:
    """What a stopped run leaves to resume from, and the command, for its last message."""
    complete = [c for _, c in checkpoint_dirs(config.output_dir)
                if resume_problem(c, config.world_size) == (None, [])]
    if not complete:
        return "no checkpoint was saved: rerun the same command to start again"
    how = config.resume_command or "the same command with --resume_from_checkpoint latest"
    return f"the last checkpoint, {complete[-1].name}, is complete; resume with: {how}"



def main(argv: list[str] | None = None) -> int:
    """Print the steps of RUN_DIR's checkpoints whose weights load, and a line naming each other one and why."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m grpo_math.runs.checkpoints RUN_DIR", file=sys.stderr)
        return 2
    for step, ckpt in checkpoint_dirs(argv[0]):
        problem = weights_problem(ckpt)
        if problem:
            print(f"skipping {ckpt.name}: {problem}")
        else:
            print(step)
    return 0


if __name__ == "__main__":
    sys.exit(main())
