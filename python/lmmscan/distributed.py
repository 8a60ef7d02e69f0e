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

import math
from collections.abc import Callable, Iterator
from typing import Any

from ._errors import InputError


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
    except (OSError, TimeoutError, ValueError) as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"cannot reach the Dask scheduler {address}: {text}") from None


def task_size(n_snps: int, block_size: int, n_workers: int) -> int:
    """SNPs per task: at most a block, and at least ~4 tasks per worker so
    that the workers stay busy to the end."""
    return int(max(1, min(block_size, math.ceil(n_snps / max(1, 4 * n_workers)))))


def map_slices(
    client: Any, task: Callable[..., Any], shared: Any, source: Any, block_size: int
) -> Iterator[tuple[int, Any]]:
    """``task(shared, source, start, stop)`` over slices of ``source``'s SNPs
    on the cluster; yields (start, result) in file order.

    ``shared`` and ``source`` are sent to every worker once (a PLINK source
    pickles as its file names, not its data); ``task`` must be importable on
    the workers (a module-level function of lmmscan)."""
    if not isinstance(client, _client_class()):
        raise InputError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    step = task_size(source.n_snps, block_size, n_workers)
    starts = list(range(0, source.n_snps, step))
    shared_f = client.scatter(shared, broadcast=True, hash=False)
    source_f = client.scatter(source, broadcast=True, hash=False)
    futures = [
        client.submit(task, shared_f, source_f, start, min(source.n_snps, start + step), pure=False)
        for start in starts
    ]
    try:
        results = client.gather(futures)
    finally:
        client.cancel([*futures, shared_f, source_f])
    yield from zip(starts, results, strict=True)
