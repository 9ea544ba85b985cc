"""The symbolic half of answer checking: math-verify in a child process that can be killed.

reward.py decides numbers, fractions, tuples and identical LaTeX itself, in pure Python that never builds a
sympy object. What is left (`\\frac{\\sqrt3}{2}` against `\\frac{1}{2}\\sqrt{3}`, `(x+1)^2` against
`x^2+2x+1`) comes here. sympy can run for ever on a hostile expression, including inside `str()` of a parsed
object (Math-Verify issue 65), and `signal.alarm` timeouts work only on the main thread, while TRL may call
rewards from a worker thread. So the work runs in a separate interpreter, and the parent enforces the bound
with its own clock: a request that is not answered in time is taken as "not equal", the child is killed
(SIGKILL) and a fresh one is started in the background.

The child is a plain `python grader_worker.py` speaking JSON lines on stdin/stdout, started with
`subprocess`, not `multiprocessing`: spawn-mode multiprocessing would re-import the caller's `__main__`
(main.py, hence torch) in the child. Measured on the 2-core dev box: a cold start (interpreter +
math_verify + sympy imports) takes about 0.45 s; a round trip on a warm child 1-5 ms.

Run `python grader_worker.py` only as the child (it reads requests from stdin). Left out on purpose: a pool
of several children (symbolic cases are rare; one child serialised by a lock is enough) and Windows-specific
process handling beyond what `subprocess` does portably.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

_READY = "ready"
_CACHE_SIZE = 100_000  # entries of (pred, gold) -> bool; cleared when full (strings are short, <300 chars each)


class SymbolicWorker:
    """A lazily started math-verify child with a hard per-request deadline and a result cache.

    >>> w = SymbolicWorker()
    >>> w.equivalent(r"\\frac{\\sqrt{3}}{2}", r"\\frac{1}{2}\\sqrt{3}", deadline=time.monotonic() + 30)
    True
    """

    def __init__(self, command: list[str] | None = None) -> None:
        # the child's command line; tests pass a stand-in child that never answers or answers at once
        self._command = command or [sys.executable, "-u", str(Path(__file__).resolve())]
        self._lock = threading.Lock()  # one request in flight at a time
        self._proc: subprocess.Popen | None = None
        self._replies: queue.Queue | None = None  # lines from the current child, fed by a reader thread
        self._ready = False
        self._next_id = 0
        self._cache: dict[tuple[str, str], bool] = {}
        self._failed_starts = 0
        self.kills = 0  # how many children were killed for running past their deadline (tests read it)

    # -- process management (call with self._lock held) --
    def _start(self) -> None:
        if self._failed_starts >= 3:
            return  # math-verify cannot start here; the symbolic path stays off (logged once below)
        self._proc = subprocess.Popen(
            # PYTHONSAFEPATH (3.11+): the child's path does not start with this package's folder, whose module
            # names (config, data, ...) could otherwise shadow a library's
            self._command, env={**os.environ, "PYTHONSAFEPATH": "1"}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, encoding="utf-8", bufsize=1)
        self._replies = queue.Queue()
        self._ready = False
        threading.Thread(target=_pump, args=(self._proc.stdout, self._replies), daemon=True,
                         name="grader-worker-reader").start()

    def _kill(self) -> None:
        proc, self._proc, self._ready = self._proc, None, False
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                logger.warning("symbolic grader child %d did not exit after SIGKILL", proc.pid)

    def _await_ready(self, deadline: float) -> bool:
        if self._proc is None:
            self._start()
            if self._proc is None:
                return False
        while not self._ready:
            try:
                line = self._replies.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return False  # still starting; it stays alive for the next caller
            if line == _READY:
                self._ready = True
            elif line is None:  # the child died before it could serve: math_verify missing or broken
                self._failed_starts += 1
                self._kill()
                if self._failed_starts == 3:
                    logger.warning("math-verify child failed to start 3 times; symbolic answers now count "
                                   "as not equal (install math-verify, check `python grader_worker.py`)")
                return False
        return True

    def clear_cache(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        with self._lock:
            self._kill()

    # -- public --
    def warm_up(self, timeout_s: float = 60.0) -> bool:
        """Start the child and wait until it has imported math_verify; True when it is ready."""
        with self._lock:
            return self._await_ready(time.monotonic() + timeout_s)

    def equivalent(self, pred: str, gold: str, *, deadline: float) -> bool | None:
        """math-verify's verdict on two short LaTeX answers, or None when it was not ready before `deadline`.

        A request that runs past `deadline` kills the child and returns False (and caches it: the same
        input would time out again). Waiting for the lock and for a cold start both count against `deadline`.
        """
        key = (pred, gold)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            return None
        try:
            if not self._await_ready(deadline):
                return None
            self._next_id += 1
            rid = self._next_id
            try:
                self._proc.stdin.write(json.dumps([rid, pred, gold]) + "\n")
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._kill()  # died between requests; the next call starts a new one
                return None
            while True:
                try:
                    line = self._replies.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    line = None
                if line is None:  # past the deadline, or the child died mid-request
                    self.kills += 1
                    self._kill()
                    self._start()  # in the background: ready again in ~0.5 s
                    result = False
                    break
                got_id, result = json.loads(line)
                if got_id == rid:
                    result = bool(result)
                    break
        finally:
            self._lock.release()
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[key] = result
        return result


def _pump(stream, replies: queue.Queue) -> None:
    """Reader thread: forward the child's stdout lines; None marks end of stream (child gone)."""
    try:
        for line in stream:
            replies.put(line.rstrip("\n"))
    except (OSError, ValueError):
        pass  # the pipe was closed under us by _kill
    replies.put(None)


_WORKER: SymbolicWorker | None = None
_WORKER_LOCK = threading.Lock()


def shared_worker() -> SymbolicWorker:
    """The process-wide worker (created on first use, killed at interpreter exit)."""
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            _WORKER = SymbolicWorker()
            atexit.register(_WORKER.close)
        return _WORKER


def _serve() -> None:
    """Child main loop: `[id, pred, gold]` in, `[id, bool]` out, one JSON line each."""
    # Ctrl-C reaches the whole process group; the parent finishes its step on it, so the child must outlive it.
    # It still ends with its parent, however that dies: stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    from sympy import Expr

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    # sympy imports much of itself lazily on first use (0.2-0.3 s); pay that before saying "ready"
    verify(parse("$(x+1)^2$", extraction_config=configs), parse("$x^2+2x+1$", extraction_config=configs))
    print(_READY, flush=True)
    for line in sys.stdin:
        rid, pred, gold = json.loads(line)
        try:
            g = parse("$" + gold + "$", extraction_config=configs)
            p = parse("$" + pred + "$", extraction_config=configs)
            ok = bool(g) and bool(p) and bool(verify(g, p, numeric_precision=50))
            # math-verify's numeric step rounds (`(a - b).evalf(chop=True)`), so `\sqrt2 + 10^{-99}` passes
            # for `\sqrt2`; a difference sympy can prove nonzero overrules it
            if ok and isinstance(g[0], Expr) and isinstance(p[0], Expr) and (g[0] - p[0]).is_zero is False:
                ok = False
        except Exception:  # noqa: BLE001 - any failure inside sympy means "not shown equal"
            ok = False
        print(json.dumps([rid, ok]), flush=True)


if __name__ == "__main__":
    _serve()
