"""Scans spread over a Dask cluster (``lmmscan.scan(..., client=...)``).

The expensive shared state (the eigendecomposition inside the null model,
n x n doubles) is computed once on the client and sent to every worker once
(``client.scatter(..., broadcast=True)``).  Each task then reads its own
slice of SNPs from the genotype source on the worker (a PLINK source pickles
as its file names, not its data: no genotypes pass through the scheduler),
filters, rotates and tests it with the C++ core, and returns its rows; the
client puts them back in file order.  Any Dask cluster works unchanged
(LocalCluster, dask-jobqueue, Kubernetes): the workers need lmmscan
installed and the genotype files at the same path.

Usage (the same call on any cluster)::

    from dask.distributed import Client, LocalCluster
    client = Client(LocalCluster(n_workers=2, processes=True, threads_per_worker=1))
    # SLURM:      from dask_jobqueue import SLURMCluster
    #             cluster = SLURMCluster(cores=1, processes=1, memory="8GB"); cluster.scale(50)
    # Kubernetes: from dask_kubernetes.operator import KubeCluster
    #             cluster = KubeCluster(name="lmmscan", image="<image with lmmscan>", n_workers=50)
    # then:       client = Client(cluster)
    null = lmmscan.fit_null(y, kinship=K)
    table = lmmscan.scan(lmmscan.read_plink("study"), null_model=null, client=client)

This module is the cluster side of the scan engine
(:meth:`lmmscan.engine.Engine.scan` with ``client``): it sends a task
function and its shared state, and gathers the results; the task itself
(:func:`lmmscan.engine._scan_slice`, the engine's block function) reads,
filters, rotates and tests a slice for every phenotype of a group.

Threads.  A task runs the C++ tests on one thread and limits BLAS to one
thread (threadpoolctl), so that workers x threads per worker, the user's
cluster setting, is the number of busy cores.  (Dask's nanny also starts
worker processes with OPENBLAS_NUM_THREADS=1 by default.)
"""

from __future__ import annotations

import contextlib
import math
import os
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

from ._errors import InputError, LmmscanError, one_line


def _client_class() -> Any:
    try:
        from distributed import Client
    except ImportError:
        raise InputError(
            "a Dask scan needs dask.distributed: pip install 'lmmscan[dask]'"
        ) from None
    return Client


def connect(address: str, timeout: float = 10) -> Any:
    """A client of the Dask scheduler at ``address``; InputError when it cannot be reached."""
    Client = _client_class()
    try:
        return Client(address, timeout=timeout)
    except MemoryError:  # a reply read as a message of exabytes: no Dask there
        raise InputError(
            f"cannot reach the Dask scheduler {address}: what answers there does not speak "
            "Dask's protocol (is a Dask scheduler listening at that address and port?)"
        ) from None
    except Exception as exc:  # OSError, TimeoutError, ValueError and Dask's own
        text = one_line(exc)
        raise InputError(f"cannot reach the Dask scheduler {address}: {text}") from None


def task_size(n_snps: int, block_size: int, n_workers: int) -> int:
    """SNPs per task: at most a block, and at least ~4 tasks per worker so
    that the workers stay busy to the end."""
    return int(max(1, min(block_size, math.ceil(n_snps / max(1, 4 * n_workers)))))


def _check_client(client: Any) -> int:
    """The number of workers of ``client``; InputError when it is not a Client."""
    if not isinstance(client, _client_class()):
        raise InputError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    return max(1, len(client.scheduler_info().get("workers", {})))


def _genotype_file(source: Any) -> str | None:
    """The file a source reads its genotypes from, as the source names it
    (relative or absolute), or None (an in-memory source)."""
    from .genotypes import root_source

    root = root_source(source)
    path = getattr(root, "bed_path", None) or getattr(root, "path", None)
    return None if path is None else os.fsdecode(path)


def _stat(path: str) -> tuple[int, str] | None:
    """(size, a hash of the first and last 64 KiB) of ``path`` as this
    process resolves it, or None: the same file on every node, whatever its
    modification time (copies made by cp or scp keep the bytes, not the
    time), and another file of the same name caught where it differs from its
    start or end (a .bed's magic and first SNPs, a BGEN's header)."""
    import hashlib

    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            digest = hashlib.sha256(fh.read(1 << 16))
            fh.seek(max(0, size - (1 << 16)))
            digest.update(fh.read(1 << 16))
    except OSError:
        return None
    return size, digest.hexdigest()


def check_workers_see(client: Any, source: Any) -> None:
    """Refuse a scan whose workers would read another genotype file than this
    process: a relative path resolves in each worker's working directory (a
    file of the same name there was read, without a word), or a worker sees
    another disk.  Each worker reads the path as it will open it: its size
    and a hash of its first and last 64 KiB must be this process's."""
    path = _genotype_file(source)
    here = None if path is None else _stat(path)
    if path is None or here is None:  # no local file to compare with (a custom source)
        return
    seen = client.run(_stat, path)
    for worker, stat in seen.items():
        if stat is None or tuple(stat) != here:  # msgpack may give a list
            what = "does not see it" if stat is None else "sees another file there"
            raise InputError(
                f"Dask worker {worker} {what} (a relative path resolves in each worker's "
                "working directory): give the genotype files by absolute path, on a file "
                "system every worker shares",
                path=path,
            )


def map_slices(
    client: Any, task: Callable[..., Any], shared: Any, source: Any, block_size: int
) -> Iterator[tuple[int, Any]]:
    """``task(shared, source, start, stop)`` over slices of ``source``'s SNPs
    on the cluster; yields (start, result) in file order.

    ``shared`` and ``source`` are sent to every worker once (a PLINK source
    pickles as its file names, not its data); ``task`` must be importable on
    the workers (a module-level function of lmmscan)."""
    n_workers = _check_client(client)
    check_workers_see(client, source)
    step = task_size(source.n_snps, block_size, n_workers)
    starts = list(range(0, source.n_snps, step))
    with cluster_failures():
        shared_f = client.scatter(shared, broadcast=True, hash=False)
        source_f = client.scatter(source, broadcast=True, hash=False)
        futures = [
            client.submit(
                task, shared_f, source_f, start, min(source.n_snps, start + step), pure=False
            )
            for start in starts
        ]
        try:
            results = client.gather(futures)
        finally:
            client.cancel([*futures, shared_f, source_f])
    yield from zip(starts, results, strict=True)


@contextlib.contextmanager
def cluster_failures() -> Iterator[None]:
    """The cluster's own failures (the scheduler lost, a connection pool
    closed, futures cancelled with it) as one line, an OSError: they came
    out as 50 lines of Dask's traceback, exit 1.  The tasks' errors (bad
    input a worker met, a file it cannot open) pass as they are."""
    try:
        yield
    except (LmmscanError, OSError, MemoryError, KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # Dask's cancellations are BaseExceptions
        text = " ".join(str(exc).split())
        raise OSError(
            f"the Dask cluster failed during the scan ({type(exc).__name__}"
            f"{': ' + text if text else ''}); rerun it when the cluster is back"
        ) from None


class ShardedTasks(NamedTuple):
    """The three task functions of a scan whose basis U is on the cluster
    (module-level functions of lmmscan, see :func:`map_sharded_slices`)."""

    filter: Callable[..., Any]  # (shared, source, start, stop) -> filtered
    products: Callable[..., Any]  # (source, start, stop, rows, filtered, U_c, V_c) -> part
    test: Callable[..., Any]  # (shared, filtered, *parts) -> result


def map_sharded_slices(
    client: Any,
    tasks: ShardedTasks,
    shared: Any,
    source: Any,
    U: Any,
    rows: np.ndarray,
    V: np.ndarray,
    step: int,
) -> Iterator[tuple[int, Any]]:
    """Slices of ``step`` SNPs of ``source`` tested against a basis U (a
    persisted dask array over the samples ``rows``, chunked by samples)
    that no worker holds whole; yields (start, result) in file order.

    Per slice: one ``filter`` task reads the slice's analysed samples;
    then, for each chunk of U, a ``products`` task on the worker that holds
    that chunk reads the same SNPs of the chunk's samples and multiplies
    them by U's and V's rows there; then one ``test`` task sums the chunks'
    products and tests.  Only the k-wide products cross the network, never
    U.  At most 4 slices per worker are in flight, so that the products
    waiting to be tested stay bounded."""
    from distributed import futures_of

    n_workers = _check_client(client)
    check_workers_see(client, source)
    chunks = U.chunks[0]
    bounds = np.concatenate([[0], np.cumsum(chunks)]).astype(np.int64)
    if bounds[-1] != rows.size or V.shape[0] != rows.size:
        raise InputError(f"the basis has {bounds[-1]} samples but the scan has {rows.size}")
    by_key = {f.key: f for f in futures_of(U)}
    U_parts = [by_key[(U.name, i, 0)] for i in range(len(chunks))]
    with cluster_failures():
        yield from _sharded(
            client, tasks, shared, source, (U_parts, V, rows, bounds), step, n_workers
        )


def _sharded(
    client: Any,
    tasks: ShardedTasks,
    shared: Any,
    source: Any,
    basis: tuple[list[Any], np.ndarray, np.ndarray, np.ndarray],
    step: int,
    n_workers: int,
) -> Iterator[tuple[int, Any]]:
    """map_sharded_slices's tasks, a few per worker ahead: ``basis`` is U's
    chunks (futures), V, the scan's rows and the chunks' row bounds."""
    U_parts, V, rows, bounds = basis
    shared_f = client.scatter(shared, broadcast=True, hash=False)
    source_f = client.scatter(source, broadcast=True, hash=False)
    # each chunk's rows of V go where that chunk of U is
    V_parts = [
        client.scatter(
            np.ascontiguousarray(V[a:b]), workers=list(client.who_has(u)[u.key]), hash=False
        )
        for u, a, b in zip(U_parts, bounds[:-1], bounds[1:], strict=True)
    ]
    pending: deque[tuple[int, list[Any]]] = deque()
    starts = iter(range(0, source.n_snps, step))
    try:
        while True:
            while len(pending) < 4 * n_workers:
                start = next(starts, None)
                if start is None:
                    break
                stop = min(source.n_snps, start + step)
                filtered = client.submit(tasks.filter, shared_f, source_f, start, stop, pure=False)
                parts = [
                    client.submit(
                        tasks.products,
                        source_f,
                        start,
                        stop,
                        rows[a:b],
                        filtered,
                        u,
                        v,
                        pure=False,
                    )
                    for u, v, a, b in zip(U_parts, V_parts, bounds[:-1], bounds[1:], strict=True)
                ]
                result = client.submit(tasks.test, shared_f, filtered, *parts, pure=False)
                pending.append((start, [result, filtered, *parts]))
            if not pending:
                break
            start, futures = pending.popleft()
            value = futures[0].result()
            client.cancel(futures)
            yield start, value
    finally:
        client.cancel([f for _, futures in pending for f in futures] + [shared_f, source_f])
        client.cancel(V_parts)
