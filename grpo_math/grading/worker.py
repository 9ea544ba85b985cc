"""The symbolic half of answer checking: math-verify in a child process that counts its own work.

equivalence.py and _algebra.py decide numbers, fractions, lists, polynomials, radicals and relations
themselves, in pure Python that never builds a sympy object. What is left (`\\tan^2 y + 1` against `\\sec^2 y`)
comes here. sympy can run for ever on a hostile expression, including inside `str()` of a parsed object
(Math-Verify issue 65), and `signal.alarm` timeouts work only on the main thread, while TRL may call rewards
from a worker thread. So the work runs in a separate interpreter that bounds it:
1. a work budget the child counts: at most CALL_BUDGET Python function calls per request (`sys.settrace`,
   call events only), with the hash seed fixed and every code path imported at start-up, so a request gets
   the same count, hence the same verdict, under any load; over budget is "not shown equal";
2. a CPU-time guard in the child (CPU_GUARD_S of its own CPU time, SIGPROF), for work done inside C;
3. the parent's clock: a request not answered by its deadline is "not equal", the child is killed (SIGKILL)
   and a warm spare child takes its place at once while a new spare starts in the background.
Only 3 depends on load, and only for work the budget allows but a very busy machine cannot finish in time.

The child is a plain `python worker.py` speaking JSON lines on stdin/stdout, started with
`subprocess`, not `multiprocessing`: spawn-mode multiprocessing would re-import the caller's `__main__`
(main.py, hence torch) in the child. Measured on the shared 2-core dev box at load ~4: a cold start
(interpreter + math_verify + sympy imports + the warm-up comparisons) takes 1.2-1.7 s; a round trip on a warm
child 30-200 ms (counting calls roughly doubles sympy's time; only what _algebra.py leaves undecided comes here).

Run `python worker.py` only as the child (it reads requests from stdin). Left out on purpose: a pool
of several busy children (symbolic cases are rare; one child serialised by a lock, plus one idle spare, is
enough) and Windows-specific process handling beyond what `subprocess` does portably (no SIGPROF there: the
call budget and the parent's clock remain).
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
CALL_BUDGET = 150_000  # Python calls per request, ~0.15 s on a warm idle child; what reaches the child uses 20k-100k
CPU_GUARD_S = 0.3  # child CPU seconds per request, for work inside C that the call count cannot see


class _Child:
    """One child process and the queue its stdout lines arrive on (None marks its end)."""

    def __init__(self, command: list[str]) -> None:
        # PYTHONSAFEPATH (3.11+): the child's path does not start with this package's folder, whose module
        # names (config, data, ...) could otherwise shadow a library's; PYTHONHASHSEED: the same set orders,
        # hence the same work count, in every child
        env = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONHASHSEED": "0"}
        self.proc = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, encoding="utf-8", bufsize=1)
        self.replies: queue.Queue = queue.Queue()
        self.ready = False
        threading.Thread(target=_pump, args=(self.proc.stdout, self.replies), daemon=True,
                         name="grader-worker-reader").start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, deadline: float) -> bool | None:
        """True once the child said "ready", False if not by `deadline`, None if it died first."""
        while not self.ready:
            try:
                line = self.replies.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return False
            if line is None:
                return None
            self.ready = line == _READY
        return True

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                logger.warning("symbolic grader child %d did not exit after SIGKILL", self.proc.pid)


class SymbolicWorker:
    """A lazily started math-verify child with a hard per-request deadline, a warm spare and a result cache.

    >>> w = SymbolicWorker()
    >>> w.equivalent(r"\\tan^2 y + 1", r"\\sec^2 y", deadline=time.monotonic() + 30)
    True
    """

    def __init__(self, command: list[str] | None = None) -> None:
        # the child's command line; tests pass a stand-in child that never answers or answers at once
        self._command = command or [sys.executable, "-u", str(Path(__file__).resolve())]
        self._lock = threading.Lock()  # one request in flight at a time
        self._child: _Child | None = None
        self._spare: _Child | None = None  # started once the first child is ready; takes over after a kill
        self._next_id = 0
        self._cache: dict[tuple[str, str], bool] = {}
        self._failed_starts = 0
        self.kills = 0  # how many children were killed for running past their deadline (tests read it)

    @property
    def _proc(self) -> subprocess.Popen | None:
        return self._child.proc if self._child else None

    # -- process management (call with self._lock held) --
    def _start(self) -> None:
        if self._failed_starts >= 3:
            return  # math-verify cannot start here; the symbolic path stays off (logged once below)
        spare, self._spare = self._spare, None
        self._child = spare if spare is not None and spare.alive() else _Child(self._command)

    def _kill(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.kill()

    def _await_ready(self, deadline: float) -> bool:
        if self._child is None:
            self._start()
            if self._child is None:
                return False
        ready = self._child.wait_ready(deadline)
        if ready is None:  # the child died before it could serve: math_verify missing or broken
            self._failed_starts += 1
            self._kill()
            if self._failed_starts == 3:
                logger.warning("math-verify child failed to start 3 times; symbolic answers now count "
                               "as not equal (install math-verify, check `python worker.py`)")
            return False
        if ready and self._spare is None:
            self._spare = _Child(self._command)  # warms up in the background, idle until needed
        return ready  # False: still starting; it stays alive for the next caller

    def clear_cache(self) -> None:
        self._cache.clear()

    def close(self) -> None:
        with self._lock:
            self._kill()
            spare, self._spare = self._spare, None
            if spare is not None:
                spare.kill()

    # -- public --
    def warm_up(self, timeout_s: float = 60.0) -> bool:
        """Start the child (and its spare) and wait until both have imported math_verify; True when ready.

        Waiting for the spare too keeps its start-up off the clock of whatever runs next (training's first
        steps, a benchmark's first timing).
        """
        deadline = time.monotonic() + timeout_s
        with self._lock:
            ready = self._await_ready(deadline)
            if ready and self._spare is not None:
                self._spare.wait_ready(deadline)
            return ready

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
                self._child.proc.stdin.write(json.dumps([rid, pred, gold]) + "\n")
                self._child.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                self._kill()  # died between requests; the next call starts a new one
                return None
            while True:
                try:
                    line = self._child.replies.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    line = None
                if line is None:  # past the deadline, or the child died mid-request
                    self.kills += 1
                    self._kill()
                    self._start()  # the warm spare, if any, takes over; else a cold start in the background
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


# ----------------------------------------------------------------------------------------------------------
# The child
# ----------------------------------------------------------------------------------------------------------
class _OverBudget(BaseException):
    """A request used up its work budget (BaseException: sympy's `except Exception` must not swallow it)."""


def _over_budget(*_) -> None:
    raise _OverBudget


def _budgeted(fn) -> bool:
    """fn() under the call budget and the CPU guard; False when either runs out."""
    calls = 0

    def count(frame, event, arg):  # a global trace function sees one "call" event per Python call
        nonlocal calls
        calls += 1
        if calls > CALL_BUDGET:
            raise _OverBudget  # raising also unsets the tracer; the CPU guard still stands behind it
        return None  # no per-line tracing inside the frame

    guard = hasattr(signal, "setitimer") and hasattr(signal, "SIGPROF")
    if guard:
        signal.setitimer(signal.ITIMER_PROF, CPU_GUARD_S)
    sys.settrace(count)
    try:
        return bool(fn())
    except _OverBudget:
        return False
    finally:
        sys.settrace(None)
        if guard:
            signal.setitimer(signal.ITIMER_PROF, 0)


# one comparison of each kind, run before "ready": sympy imports much of itself lazily on first use, and an
# import inside a request would count against that request's budget (and differ between first and later use)
_WARM_UP = [("(x+1)^2", "x^2+2x+1"), ("\\tan^2 y + 1", "\\sec^2 y"), ("2\\sin x\\cos x", "\\sin 2x"),
            ("\\ln 8", "3\\ln 2"), ("e^{i\\pi}", "-1"), ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"),
            ("\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}"),
            ("x \\ge 3", "3 \\le x"), ("(1, 2]", "(1, 2]"), ("\\{1, 2\\}", "\\{2, 1\\}"), ("\\arctan 1", "\\pi/4")]


def _serve() -> None:
    """Child main loop: `[id, pred, gold]` in, `[id, bool]` out, one JSON line each."""
    # Ctrl-C reaches the whole process group; the parent finishes its step on it, so the child must outlive it.
    # It still ends with its parent, however that dies: stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
    from sympy import Expr

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # "timeout disabled": the budget bounds it here

    def judge(pred: str, gold: str) -> bool:
        # no signal.alarm timeouts (parsing_timeout/timeout_seconds None): a wall clock must not decide
        g = parse("$" + gold + "$", extraction_config=configs, parsing_timeout=None)
        p = parse("$" + pred + "$", extraction_config=configs, parsing_timeout=None)
        ok = bool(g) and bool(p) and bool(verify(g, p, numeric_precision=50, timeout_seconds=None))
        # math-verify's numeric step rounds (`(a - b).evalf(chop=True)`), so `\sqrt2 + 10^{-99}` passes
        # for `\sqrt2`; a difference sympy can prove nonzero overrules it
        if ok and isinstance(g[0], Expr) and isinstance(p[0], Expr) and (g[0] - p[0]).is_zero is False:
            ok = False
        return ok

    if hasattr(signal, "SIGPROF"):
        signal.signal(signal.SIGPROF, _over_budget)
    for pred, gold in _WARM_UP:
        try:
            judge(pred, gold)  # unbudgeted: these are known, tame inputs
        except Exception:  # noqa: BLE001 - a warm-up failure only means that path stays cold
            pass
    print(_READY, flush=True)
    for line in sys.stdin:
        rid, pred, gold = json.loads(line)
        try:
            ok = _budgeted(lambda: judge(pred, gold))
        except Exception:  # noqa: BLE001 - any failure inside sympy means "not shown equal"
            ok = False
        print(json.dumps([rid, ok]), flush=True)


if __name__ == "__main__":
    _serve()
