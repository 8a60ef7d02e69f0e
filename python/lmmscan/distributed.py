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

Threads.  A task runs the C++ tests on one thread and limits BLAS to one
thread (threadpoolctl), so that workers x threads per worker, the user's
cluster setting, is the number of busy cores.  (Dask's nanny also starts
worker processes with OPENBLAS_NUM_THREADS=1 by default.)
"""

from __future__ import annotations

import dataclasses
import math
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core
from ._errors import InputError
from .model import NullModel

_CACHE_SIZE = 2
_cache: dict[str, Any] = {}
_cache_lock = threading.Lock()


@dataclass
class _Shared:
    """What every task needs: the null model without its C++ fit object
    (pybind11 objects do not pickle), rebuilt on the worker from the same
    rotated data, which gives the same lambdas bit for bit (checked)."""

    token: str
    null: NullModel  # with fit=None
    lambdas: tuple[float, float]  # the core fit's (lambda_remle, lambda_mle)
    options: dict


def _blas_one_thread():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _rebuild(shared: _Shared):
    from .scan import BlockScanner

    with _cache_lock:
        hit = _cache.get(shared.token)
    if hit is not None:
        return hit
    null = shared.null
    b = null.bounds
    n_total = null.spectral.n_total if null.complement is not None else 0
    fit = _core.fit_null(
        null.spectral.d, null.UtW, null.Uty, b.l_min, b.l_max, b.n_region, n_total, null.complement
    )
    if not np.array_equal((fit.lambda_remle, fit.lambda_mle), shared.lambdas, equal_nan=True):
        raise RuntimeError(
            "the null model rebuilt on a worker differs from the client's: lambdas "
            f"{(fit.lambda_remle, fit.lambda_mle)} vs {shared.lambdas}"
        )
    scanner = BlockScanner(dataclasses.replace(null, fit=fit), threads=1, **shared.options)
    with _cache_lock:
        while len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[shared.token] = scanner
    return scanner


def _scan_slice(shared: _Shared, source: Any, start: int, stop: int) -> tuple:
    """One task: read SNPs start..stop-1 of the analysed samples and test them."""
    from .scan import ScanReport

    report = ScanReport()
    with _blas_one_thread():
        scanner = _rebuild(shared)
        samples = np.flatnonzero(shared.null.analyzed)
        X = source.read(start, stop, samples)
        keep, cols, stats = scanner.scan_with_statistics(X, report)
    return keep, cols, stats, report


def task_size(n_snps: int, block_size: int, n_workers: int) -> int:
    """SNPs per task: at most a block, and at least ~4 tasks per worker so
    that the workers stay busy to the end."""
    return int(max(1, min(block_size, math.ceil(n_snps / max(1, 4 * n_workers)))))


def scan_blocks(
    client: Any,
    source: Any,
    null_model: NullModel,
    *,
    block_size: int,
    options: dict,
    report: Any = None,
) -> list[tuple[np.ndarray, dict, dict]]:
    """Test every SNP of ``source`` on the cluster of ``client``; (keep,
    columns, statistics) per slice, in file order (see
    :meth:`lmmscan.scan.BlockScanner.scan_with_statistics`).  ``options``:
    BlockScanner's keyword arguments other than threads."""
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover
        raise InputError("client= needs dask.distributed: pip install 'lmmscan[dask]'") from None
    if not isinstance(client, Client):
        raise InputError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
    fit = null_model.fit
    shared = _Shared(
        token=uuid.uuid4().hex,
        null=dataclasses.replace(null_model, fit=None),
        lambdas=(fit.lambda_remle, fit.lambda_mle),
        options=dict(options),
    )
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    step = task_size(source.n_snps, block_size, n_workers)
    shared_f = client.scatter(shared, broadcast=True, hash=False)
    source_f = client.scatter(source, broadcast=True, hash=False)
    futures = [
        client.submit(
            _scan_slice, shared_f, source_f, start, min(source.n_snps, start + step), pure=False
        )
        for start in range(0, source.n_snps, step)
    ]
    try:
        results = client.gather(futures)
    finally:
        client.cancel([*futures, shared_f, source_f])
    out = []
    for keep, cols, stats, part in results:
        if report is not None:
            report.filters.add(part.filters)
            for key, value in part.seconds.items():
                report.seconds[key] = report.seconds.get(key, 0.0) + value
        out.append((keep, cols, stats))
    return out
