"""One run at a time in a run directory: a lock file that names the process holding it.

    lock = RunLock("ckpts/demo"); lock.acquire()   # RunDirBusy (one line, with the other run's PID) if held
    ...; lock.release()
    holder("ckpts/demo")                           # {"pid": ..., "started": ...} of a live holder, or None

The lock is `fcntl.flock` on `RUN_DIR/.lock`, so the kernel lets go of it when its process dies, however it
dies (SIGKILL included): a lock file left by a dead process is free, and the next run takes it over with a log
line naming the old PID. The file holds the holder's PID, host and start time for the message a second run
gets. train.py takes it in the main process only (rank 0 of a distributed launch).
Left out on purpose: Windows (no fcntl), and network filesystems whose flock is not shared between hosts.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class RunDirBusy(ValueError):
    """Another live run holds the run directory; the message is one line naming its PID."""


def _read(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        info = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def busy_message(run_dir: Path, info: dict) -> str:
    who = f"PID {info.get('pid', '?')}" + (f" on {info['host']}" if info.get("host") not in (None, socket.gethostname())
                                           else "")
    since = f", started {info['started']}" if info.get("started") else ""
    return (f"--output_dir {run_dir} is in use by another run ({who}{since}); wait for it to finish, stop it, or "
            "choose another --output_dir")


def holder(run_dir: str | Path) -> dict | None:
    """What the live process holding `run_dir`'s lock wrote about itself, or None when no live process holds it."""
    path = Path(run_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd) or {"pid": "?"}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _lock_exclusive(fd: int, tries: int = 5, wait_s: float = 0.02) -> bool:
    """flock(LOCK_EX) without blocking on a holder; a few short retries, because `holder()` elsewhere probes
    with a shared lock for a moment and a start that lands in that moment is not a busy directory."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < tries:
                time.sleep(wait_s)
    return False


class RunLock:
    """The lock of one run directory, held from `acquire` to `release` (or to the process's death)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir)
        self.path = self.dir / LOCK_NAME
        self._fd: int | None = None
        self._made_dir = False

    def acquire(self) -> None:
        """Take the lock (creating the run directory if needed); RunDirBusy if a live process holds it."""
        if not self.dir.exists():
            self.dir.mkdir(parents=True)
            self._made_dir = True
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _lock_exclusive(fd):
                info = _read(fd)
                os.close(fd)
                raise RunDirBusy(busy_message(self.dir, info)) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed the file as we opened it: lock the new one instead
        old = _read(fd)
        if old.get("pid"):
            logger.warning("taking over the lock of %s from PID %s, which is no longer running", self.dir, old["pid"])
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode("utf-8"))
        self._fd = fd

    def release(self) -> None:
        """Give the lock up and remove its file; also the run directory, when `acquire` made it and it is empty."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # before unlocking, so no one locks a file that is going away
        finally:
            os.close(self._fd)
            self._fd = None
        if self._made_dir:
            try:
                self.dir.rmdir()  # only when empty: a run that failed before writing anything leaves nothing
            except OSError:
                pass
