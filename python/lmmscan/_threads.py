"""Thread counts: the cores this process may use, and BLAS's thread limit.

One owner for both, so that every step (the eigensolver, the rotation, the
per-SNP tests, Dask tasks, text formatting) counts cores and caps BLAS the
same way.  BLAS threads x other busy threads should not exceed the cores:
an oversubscribed OpenBLAS was measured 15x slower.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where known)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


_pool: Any = None
_pool_size = 0
_pool_lock = threading.Lock()


def helpers(n: int) -> Any:
    """A thread pool of at least n workers, kept for the process: a fresh
    pool per call cost more than the work some callers split (the p-value
    tails of a block of ~7,000 SNPs)."""
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < n:
            from concurrent.futures import ThreadPoolExecutor

            _pool, _pool_size = ThreadPoolExecutor(n, thread_name_prefix="lmmscan-helper"), n
        return _pool


def run_parts(parts: list[Callable[[], object]]) -> None:
    """Run ``parts`` at once: the first on this thread, the others on the
    helper threads (:func:`helpers`); return when all are done."""
    rest = [helpers(len(parts) - 1).submit(part) for part in parts[1:]]
    parts[0]()
    for future in rest:
        future.result()


# Set by the command line while it runs (detached_long_calls): a long call
# into LAPACK then runs on a worker thread while the main thread waits for
# it, where a signal's Python handler can run.  On the main thread itself it
# ran only when the call returned: SIGTERM or Ctrl-C waited out a 38 s
# decomposition at n = 6,000 (hours at n = 50,000).
_detach_long_calls = False


@contextlib.contextmanager
def detached_long_calls() -> Iterator[None]:
    """Inside the block, :func:`call_interruptibly` runs its call on a worker
    thread, and :func:`helper_pool` leaves its running calls when the block
    ends in an exception.  For a command that exits once interrupted (the
    calls, which cannot be stopped inside LAPACK, end with the process): a Python caller
    interrupted would otherwise get control back beside a decomposition still
    running and changing BLAS's thread count when it ends."""
    global _detach_long_calls
    before, _detach_long_calls = _detach_long_calls, True
    try:
        yield
    finally:
        _detach_long_calls = before


@contextlib.contextmanager
def helper_pool(workers: int) -> Iterator[Any]:
    """A ThreadPoolExecutor of ``workers`` threads for long calls, shut down
    on leaving; when the block ends in an exception (a signal's), its queued
    calls are cancelled, and inside :func:`detached_long_calls` the running
    ones are not waited for: LOCO's decompositions kept a stopped command 16-20
    s at n = 6,000 (helper 69), hours at n = 50,000."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=not _detach_long_calls, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def call_interruptibly(call: Callable[[], Any]) -> Any:
    """``call()``; inside :func:`detached_long_calls` and on the main thread,
    on a worker thread, waited for where SIGINT and SIGTERM interrupt the
    wait (a lock's wait is interrupted by a signal, whose handler then runs
    and raises here)."""
    if not _detach_long_calls or threading.current_thread() is not threading.main_thread():
        return call()
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the waiting thread
            outcome.append((False, exc))

    worker = threading.Thread(target=work, name="lmmscan-long-call", daemon=True)
    worker.start()
    worker.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """BLAS limited to ``n`` threads inside the block (None: BLAS's own count).

    BLAS's thread count is the process's, so the blocks inside, over all
    threads, share one: the smallest they ask for, set when one enters or
    leaves, and the count the first found put back when the last leaves.
    Each block restoring the count it found let one thread's leaving undo
    another's limit while that one was still inside (a Dask task's product
    then ran on two threads, other last bits), or leave the process on one
    thread for good."""
    if n is None:
        yield
        return
    block = object()  # this block's entry: left once, however it is interrupted

    def enter() -> None:
        with _BLAS_LOCK:
            counts = blas_counts()
            if not _BLAS_ACTIVE:
                _BLAS_ORIGINAL.clear()
            for path, k in counts.items():  # (a library loaded since the first entered)
                _BLAS_ORIGINAL.setdefault(path, k)
            _BLAS_ACTIVE[block] = int(n)
            _set_blas(dict.fromkeys(counts, min(_BLAS_ACTIVE.values())))

    def leave() -> None:
        with _BLAS_LOCK:
            if _BLAS_ACTIVE.pop(block, None) is None:
                return
            for path, k in blas_counts().items():  # loaded inside: its count when it came
                _BLAS_ORIGINAL.setdefault(path, k)
            if _BLAS_ACTIVE:
                _set_blas(dict.fromkeys(blas_counts(), min(_BLAS_ACTIVE.values())))
            else:
                _set_blas(_BLAS_ORIGINAL)

    try:
        _uninterrupted(enter)
        yield
    finally:
        _uninterrupted(leave)


def _uninterrupted(step: Callable[[], None]) -> None:
    """Run ``step`` (a count set or restored under _BLAS_LOCK) with SIGINT and
    SIGTERM held, then deliver them; a Ctrl-C that lands before they are
    held runs ``step`` again (a step does its work once).  A Ctrl-C inside
    threadpoolctl's library walk, a restore half done, left numpy's BLAS on
    one thread for the rest of the process (helper 53)."""
    done = False
    try:
        with deferred_interrupts():
            step()
            done = True  # (a held interrupt is raised after this, on the way out)
    except BaseException:  # (a SIGTERM handler's SystemExit too: review, helper 58)
        if not done:
            step()
        raise


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """SIGINT and SIGTERM held while the block runs, then delivered if it
    completed (an error of the block's stands, not replaced by the signal:
    helper 65); only on the main thread, where Python runs signal handlers (a
    signal the kernel hands to another thread still runs the held handler),
    and only for handlers that are Python functions (a host program's own, or
    SIG_DFL, left as they are: review, helper 57).  Through _signal, not
    signal: the latter's wrapper runs Python code (enum conversions) where a
    Ctrl-C could land."""
    import _signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous: dict[int, Any] = {}
    completed = False

    def hold(signum: int, frame: object) -> None:  # pragma: no cover - signal timing
        held.append(signum)

    try:
        for sig in (_signal.SIGINT, _signal.SIGTERM):
            try:
                current = _signal.getsignal(sig)  # no side effect, no handler run
                if callable(current):
                    previous[sig] = _signal.signal(sig, hold)
            except (ValueError, TypeError, OSError):  # a subinterpreter, an embedding
                pass
        yield
        completed = True
    finally:
        # every handler put back, even when a signal lands during one of the
        # restores (signal.signal runs pending handlers first): the first
        # error is raised once all are back
        error: BaseException | None = None
        for sig, handler in previous.items():
            while True:  # each failed attempt used up a pending signal
                try:
                    _signal.signal(sig, handler)
                    break
                except BaseException as exc:  # pragma: no cover - signal timing
                    error = error or exc
        try:
            for signum in dict.fromkeys(held if completed else ()):  # pragma: no cover
                if signum in previous:
                    try:
                        previous[signum](signum, None)
                    except BaseException as exc:
                        error = error or exc
        except BaseException as exc:  # pragma: no cover - signal timing
            error = error or exc
        if error is not None:  # pragma: no cover - signal timing
            raise error


def blas_counts() -> dict[str, int]:
    """Each BLAS library loaded (its path) and its threads now."""
    from threadpoolctl import threadpool_info

    infos = threadpool_info()
    return {i["filepath"]: int(i["num_threads"]) for i in infos if i["user_api"] == "blas"}


def _set_blas(counts: dict[str, int]) -> None:
    """The BLAS libraries (by path) on these threads, process-wide, but for
    those a library_threads block holds (scipy's, serial while LOCO's
    decompositions run beside the scan): under _BLAS_LOCK."""
    from threadpoolctl import threadpool_limits

    limits = {path: k for path, k in counts.items() if path not in _SERIAL}
    if not limits:
        return
    _release_blas_control()
    threadpool_limits(limits=limits)  # applied now; blas_threads sets the next
    _release_blas_control()


def _release_blas_control() -> None:
    """Let any thread set OpenBLAS's threads.  threadpoolctl 3.6+ lets one
    thread at a time set a process-wide OpenBLAS pool (the others' limits
    silently do nothing), and the thread that sets it keeps that role: a
    thread that restored the count did so for good, and every later limit
    on another thread (a caller's worker, a Dask task) was ignored, its
    eigendecompositions on two threads with other last bits.  blas_threads
    sets the process's count under its own lock, so it takes the role for
    each setting and gives it back."""
    import threadpoolctl

    controller = getattr(threadpoolctl, "OpenBLASController", None)
    clear = getattr(controller, "clear_controlling_thread", None)
    if clear is not None:
        try:
            clear(force=True)
        except TypeError:  # pragma: no cover - a threadpoolctl without force=
            clear()


_BLAS_LOCK = threading.Lock()
_BLAS_ACTIVE: dict[object, int] = {}  # the limits of the blocks inside, over all threads
_BLAS_ORIGINAL: dict[str, int] = {}  # each library's threads when the first entered
_SERIAL: dict[str, set[object]] = {}  # libraries library_threads blocks hold (path: blocks)
_SERIAL_ORIGINAL: dict[str, int] = {}  # their threads when the first block entered


def _after_fork_in_child() -> None:
    """A forked child inherits the helper pool and the locks, not their
    threads: a scan there waited for ever on parts no thread would run (a
    multiprocessing pool after a scan in the parent)."""
    global _pool, _pool_size, _pool_lock, _BLAS_LOCK
    _pool, _pool_size = None, 0
    _pool_lock = threading.Lock()
    _BLAS_LOCK = threading.Lock()
    _BLAS_ACTIVE.clear()
    _SERIAL.clear()
    _SERIAL_ORIGINAL.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@contextlib.contextmanager
def library_threads(path: str | None, n: int) -> Iterator[None]:
    """The BLAS library loaded from ``path`` (and only it) limited to ``n``
    threads inside the block; nothing when ``path`` is None.  The first
    block in saves the library's count and the last one out puts it back:
    each restoring what it found (threadpoolctl's limit) let two LOCO scans
    on two threads leave scipy's BLAS serial for good (helper 53)."""
    if path is None:
        yield
        return
    from threadpoolctl import ThreadpoolController

    block = object()

    def set_to(k: int) -> None:
        _release_blas_control()  # (threadpoolctl lets one thread set OpenBLAS)
        ThreadpoolController().select(filepath=path).limit(limits=k)
        _release_blas_control()

    def enter() -> None:
        with _BLAS_LOCK:  # blas_threads leaves the library alone meanwhile
            if not _SERIAL.get(path):  # (inside a blas_threads block: what that found)
                found = _BLAS_ORIGINAL.get(path) if _BLAS_ACTIVE else None
                _SERIAL_ORIGINAL[path] = found or blas_counts().get(path, n)
            _SERIAL.setdefault(path, set()).add(block)
            set_to(n)

    def leave() -> None:
        with _BLAS_LOCK:
            holders = _SERIAL.get(path)
            if holders is None or block not in holders:
                return
            holders.discard(block)
            if holders:
                return
            del _SERIAL[path]
            original = _SERIAL_ORIGINAL.pop(path)
            if _BLAS_ACTIVE:  # its limit now; its last block puts this back
                _BLAS_ORIGINAL[path] = original
                set_to(min(_BLAS_ACTIVE.values()))
            else:
                set_to(original)

    try:
        _uninterrupted(enter)
        yield
    finally:
        _uninterrupted(leave)


@contextlib.contextmanager
def importing_beside(name: str) -> Iterator[None]:
    """Import module ``name`` on another thread while the block runs, and wait
    for it at the block's end.

    For a block that releases the GIL (LAPACK through ctypes): the import,
    which holds the GIL, then runs beside it instead of after it.  The block
    should not import ``name``'s package itself: Python detects two threads
    importing modules that wait for each other and fails one of the imports
    (a read-ahead thread importing its reader's modules meanwhile is fine:
    they share no module with scipy's).  An import error is left for the
    module's next import to raise.
    """
    if name in sys.modules:
        yield
        return

    def load() -> None:
        with contextlib.suppress(Exception):
            importlib.import_module(name)

    thread = threading.Thread(target=load, name=f"lmmscan-import-{name}")
    thread.start()
    try:
        yield
    finally:
        thread.join()
