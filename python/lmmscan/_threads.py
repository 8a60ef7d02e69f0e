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
    with _BLAS_LOCK:
        if not _BLAS_ACTIVE:
            _BLAS_ORIGINAL.clear()
            _BLAS_ORIGINAL.update(blas_counts())
        _BLAS_ACTIVE.append(int(n))
        _set_blas(dict.fromkeys(blas_counts(), min(_BLAS_ACTIVE)))
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_ACTIVE.remove(int(n))
            if _BLAS_ACTIVE:
                _set_blas(dict.fromkeys(blas_counts(), min(_BLAS_ACTIVE)))
            else:
                _set_blas(_BLAS_ORIGINAL)


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
_BLAS_ACTIVE: list[int] = []  # the limits of the blocks inside, over all threads
_BLAS_ORIGINAL: dict[str, int] = {}  # each library's threads when the first entered
_SERIAL: dict[str, int] = {}  # libraries library_threads blocks hold (path: blocks)


@contextlib.contextmanager
def library_threads(path: str | None, n: int) -> Iterator[None]:
    """The BLAS library loaded from ``path`` (and only it) limited to ``n``
    threads inside the block; nothing when ``path`` is None."""
    if path is None:
        yield
        return
    from threadpoolctl import ThreadpoolController

    with _BLAS_LOCK:  # blas_threads leaves it alone meanwhile
        _SERIAL[path] = _SERIAL.get(path, 0) + 1
    try:
        selected = ThreadpoolController().select(filepath=path)
        with selected.limit(limits=n):
            yield
    finally:
        with _BLAS_LOCK:
            _SERIAL[path] -= 1
            if not _SERIAL[path]:
                del _SERIAL[path]


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
