"""A full disk, however the writer reports it, as one line that names what was being written.

    with writing("final/", staged):
        model.save_pretrained(staged)     # a full disk: DiskFull("no space left on the device writing final/ (PATH)")

Plain writes and shutil raise an OSError with errno ENOSPC (or EDQUOT, a quota), shutil.copytree collects the
files it could not copy into one `shutil.Error` whose text carries each one's "[Errno 28]", safetensors raises
`SafetensorError("... No space left on device (os error 28)")`, and torch.save's zip writer a RuntimeError that
does not say why ("unexpected pos 576 vs 534"): that one counts as a full disk when the disk it wrote to has
almost no space left. Callers add what comes next (train.py: the last complete checkpoint and the resume
command; eval.py: where its finished records are). Left out on purpose: freeing space or retrying.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NO_SPACE_TEXT = ("No space left on device", "Disk quota exceeded", "os error 28", "os error 122", "[Errno 28]",
                  "[Errno 122]")
_TORCH_WRITER_TEXT = ("PytorchStreamWriter", "inline_container", "file write failed", "iostream error")
LOW_SPACE_BYTES = 16 * 2**20  # a torch write that failed with less than this left ran out of space


class DiskFull(ValueError):
    """A write that failed for lack of space; the message names what was being written."""


def free_bytes(path: str | Path) -> int | None:
    """Free space on the disk that holds `path` (or its nearest existing parent), None when unknown."""
    p = Path(path).expanduser().absolute()
    for cand in (p, *p.parents):
        if cand.exists():
            try:
                return shutil.disk_usage(cand).free
            except OSError:
                return None
    return None


def is_disk_full(exc: BaseException, where: str | Path | None = None) -> bool:
    """Whether `exc` is a write that failed for lack of space on the disk holding `where`."""
    if isinstance(exc, DiskFull):
        return True
    if isinstance(exc, OSError) and exc.errno in NO_SPACE:
        return True
    text = str(exc)
    if (isinstance(exc, OSError) or type(exc).__name__ == "SafetensorError") and any(t in text for t in _NO_SPACE_TEXT):
        return True
    if isinstance(exc, RuntimeError) and any(t in text for t in _TORCH_WRITER_TEXT) and where is not None:
        free = free_bytes(where)
        return free is not None and free < LOW_SPACE_BYTES
    return False


@contextmanager
def writing(what: str, where: str | Path) -> Iterator[None]:
    """Turn a full disk while writing `what` at `where` into DiskFull naming both (the file that failed, when
    the error names it); other errors pass."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as e:
        if not is_disk_full(e, where):
            raise
        at = getattr(e, "filename", None) or where  # an OSError names the very file
        raise DiskFull(f"no space left on the device writing {what} ({at})") from e
