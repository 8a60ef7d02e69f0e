"""Low-rank kinships: K = Z Z' / p from k < n SNPs, without an n x n matrix.

FaST-LMM's formulation (Lippert et al. 2011): the economy SVD of the
kinship's genotype factor gives the k leading eigenvectors U (n, k); the
other n - k directions all have eigenvalue 0, so H = lambda K + I is the
identity there and they enter every likelihood only through Gram matrices
v'(I - UU')w.  The C++ core takes those as its "complement" (the same
machinery as :class:`lmmscan.model.GroupSpectral`), so memory is O(n k)
and a scan costs O(n k) per SNP instead of O(n^2).

How this relates to GEMMA (and to the full-rank path of lmmscan).  GEMMA
builds K over all N samples (each SNP centred, for ``"standardized"`` also
scaled, over all N), restricts it to the n analysed samples, double-centres
it and zeroes eigenvalues below 1e-10.  Double-centring C K C (C = I - J/n)
of K = Z Z'/p is (C Z)(C Z)'/p: the factor with its columns centred over the
analysed samples.  So the SVD C Z / sqrt(p) = U S V' gives exactly GEMMA's
non-zero eigenpairs (d = s^2), and the directions GEMMA zeroes (the constant
vector, and every eigenvalue below 1e-10) are the complement here: both
paths weight them by h = 1.  Results agree with ``fit_null(kinship=K)`` and
``scan(kinship=K)`` to rounding (checked to 1e-8 relative in
tests/test_lowrank.py).  ``rank=r`` keeps only the r largest eigenvalues:
that is an approximation of K (FaST-LMM's low-rank option), no longer
GEMMA's model.

Past one machine (``low_rank_kinship(..., client=client)``): the workers
filter the kinship SNPs and read the factor's rows in chunks of samples;
Dask's tall-and-skinny SVD (``dask.array.linalg.tsqr``: a QR per chunk,
then of the stacked R factors, then the SVD of the last R) gives U, which
stays on the cluster chunked by samples (:class:`DaskLowRankSpectral`).
The null fit's products with U and the scan's (each chunk of a block
multiplied where U's chunk is, see :func:`lmmscan.distributed.map_sharded_slices`)
are sums over those chunks.  The same quantities as the local path summed in
another order, so the same results to rounding (1e-8 relative checked in
tests/test_dask.py; ~1e-10 measured).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._errors import InputError, number
from .filters import FilterCounts, gemma_filter
from .genotypes import (
    GenotypeSource,
    SubsetGenotypes,
    as_source,
    default_block_size,
    snp_runs,
)
from .kinship import (
    KinshipMethod,
    check_method,
    sample_mask,
    standardize,
    standardize_params,
    standardize_rows,
)
from .samples import analysed_samples
from .spectral import EIGEN_ZERO, DaskLowRankSpectral, LowRankSpectral


class LowRankKinship:
    """A kinship K = Z Z' / p kept as its genotype factor Z (samples, p).

    Z holds the kinship SNPs centred (and for ``"standardized"`` scaled) over
    all samples, exactly as :func:`lmmscan.kinship` builds K; ``Z Z' / p``
    equals that matrix.  :meth:`spectral` decomposes it for a set of
    analysed samples without forming K.  Pass it as ``kinship=`` to
    :func:`lmmscan.scan`, or use :func:`fit_null_lowrank`.
    """

    def __init__(
        self,
        Z: np.ndarray,
        method: str,
        counts: FilterCounts | None = None,
        rank: int | None = None,
    ) -> None:
        self.Z: np.ndarray | None = Z
        self._shape = (int(Z.shape[0]), int(Z.shape[1]))
        self.method = method
        self.counts = counts or FilterCounts()
        self.rank = rank

    @property
    def n_samples(self) -> int:
        return self._shape[0]

    @property
    def n_snps(self) -> int:
        return self._shape[1]

    def dense(self) -> np.ndarray:
        """K as an (n, n) matrix (small problems and tests only)."""
        if self.Z is None:
            raise InputError("this low-rank kinship was consumed by spectral(consume=True)")
        return (self.Z @ self.Z.T) / self.n_snps

    def spectral(
        self,
        samples: np.ndarray | None = None,
        *,
        rank: int | None = None,
        consume: bool = False,
    ) -> LowRankSpectral:
        """The eigendecomposition of K restricted to ``samples`` (a boolean
        mask or indices; default all) and double-centred, as GEMMA uses it.

        The analysed rows are centred and decomposed in one samples x SNPs
        matrix (a copy, in Fortran order, which becomes the eigenvectors).
        ``consume=True`` uses this kinship's own factor instead (no copy:
        the one n x k matrix of a biobank-size study); the kinship cannot be
        used again."""
        if self.Z is None:
            raise InputError("this low-rank kinship was consumed by spectral(consume=True)")
        if consume:
            Zc = _compact_rows(self.Z, samples)
            self.Z = None
        else:
            # one copy of the analysed rows, centred and scaled in place; in
            # Fortran order, so that the decomposition works in its memory
            Zc = np.array(self.Z if samples is None else self.Z[np.asarray(samples)], order="F")
        if Zc.shape[0] < 2:
            raise InputError("need at least two samples for a kinship")
        Zc -= Zc.mean(axis=0)
        Zc *= 1.0 / np.sqrt(self.n_snps)
        return LowRankSpectral.from_factor(
            Zc, rank=rank if rank is not None else self.rank, overwrite=True
        )


def _compact_rows(Z: np.ndarray, samples: np.ndarray | None) -> np.ndarray:
    """Z's rows ``samples`` as a Fortran-ordered (m, p) array in Z's own
    memory (Z, Fortran order, is destroyed): column by column, each column's
    selected rows moved to the front of the buffer, through an m-long copy."""
    n, p = Z.shape
    if not Z.flags.f_contiguous:
        raise InputError("consume=True needs the factor in Fortran order")
    rows = np.arange(n) if samples is None else np.arange(n)[np.asarray(samples)]
    m = rows.size
    if m == n:
        return Z
    flat = Z.reshape(-1, order="F")
    for j in range(p):  # destination [jm, jm + m) never passes the columns not yet read
        flat[j * m : (j + 1) * m] = flat[j * n + rows]
    return flat[: m * p].reshape((m, p), order="F")


def low_rank_kinship(
    genotypes: object,
    method: KinshipMethod = "centered",
    *,
    snps: np.ndarray | None = None,
    maf: float | None = 0.01,
    miss: float = 0.05,
    filter_samples: np.ndarray | None = None,
    rank: int | None = None,
    block_size: int | None = None,
    client: Any = None,
    chunk_rows: int | None = None,
) -> LowRankKinship | DaskLowRankKinship:
    """GEMMA's kinship (as :func:`lmmscan.kinship`) kept as a genotype factor.

    ``snps`` selects the kinship SNPs (indices or a boolean mask over the
    source's SNPs; default all); GEMMA's maf/miss filters apply to them over
    ``filter_samples`` (default: the samples with a .fam phenotype for PLINK,
    else all).  Memory: samples x kinship SNPs doubles.  ``rank`` truncates
    the eigendecomposition (an approximation, see the module docstring).

    ``client`` (a ``dask.distributed.Client``): the factor is never formed
    on this machine; a :class:`DaskLowRankKinship` is returned, whose
    basis is computed on the cluster in chunks of ``chunk_rows`` samples.
    """
    check_method(method)
    if rank is not None and number(rank, whole=True) is None:
        raise InputError(f"rank must be a whole number of eigenvalues, got {rank!r}")
    source = as_source(genotypes)
    idx = _kinship_snps(source, snps)
    mask = _filter_mask(source, filter_samples)
    block_size = block_size or default_block_size(source.n_samples)
    if client is not None:
        return _dask_low_rank_kinship(
            client, source, idx, method, mask, maf, miss, rank, block_size, chunk_rows
        )
    counts = FilterCounts()
    n = source.n_samples
    Z = np.empty((n, idx.size), order="F")  # filled by columns
    flat = Z.reshape(-1, order="F")  # a view (Z is Fortran-ordered)
    used = 0
    for start, stop, wanted in snp_runs(idx, block_size):
        X = source.read(start, stop)[:, wanted - start]
        keep, _, _, c = gemma_filter(X[mask], maf=maf, miss=miss)
        counts.add(c)
        k = int(keep.sum())
        standardize(X, method, cols=keep, out=flat[n * used : n * (used + k)])  # Z's next columns
        used += k
    if used == 0:
        raise InputError("no kinship SNP passed the filters")
    if used < idx.size:
        Z = Z[:, :used]  # the first columns of a Fortran array: still contiguous
    return LowRankKinship(Z, method, counts, rank)


def _kinship_snps(source: GenotypeSource, snps: np.ndarray | None) -> np.ndarray:
    """The kinship SNPs' positions, sorted and unique, from a mask or indices."""
    if snps is None:
        idx = np.arange(source.n_snps)
    else:
        sel = np.asarray(snps)
        if sel.dtype == bool:
            if sel.shape != (source.n_snps,):
                raise InputError(f"snps mask must have length {source.n_snps}, got {sel.shape}")
            idx = np.flatnonzero(sel)
        else:
            idx = np.unique(sel.astype(np.int64))
            if idx.size and (idx[0] < 0 or idx[-1] >= source.n_snps):
                raise InputError(f"snps indices must lie in [0, {source.n_snps})")
    return idx


def _filter_mask(source: GenotypeSource, filter_samples: np.ndarray | None) -> np.ndarray:
    mask = sample_mask(source, filter_samples)
    if not mask.any():
        raise InputError("filter_samples is empty")
    return mask


def fit_null_lowrank(
    y: object,
    covariates: object | None,
    kinship: LowRankKinship | DaskLowRankKinship,
    *,
    consume: bool = False,
    **kwargs,
):
    """:func:`lmmscan.fit_null` with a :class:`LowRankKinship`: the analysed
    samples' factor is decomposed (no n x n matrix) and passed as ``spectral``.
    ``consume=True``: in the kinship's own memory (see
    :meth:`LowRankKinship.spectral`)."""
    from .model import fit_null

    if not (consume and isinstance(kinship, LowRankKinship)):  # nothing of a Dask one's is held
        return fit_null(y, covariates, kinship=kinship, **kwargs)
    mask = analysed_samples(np.asarray(y, dtype=np.float64), covariates)[0]
    if kinship.n_samples != mask.shape[0]:
        raise InputError(
            f"the low-rank kinship has {kinship.n_samples} samples but y has {mask.shape[0]}"
        )
    return fit_null(y, covariates, spectral=kinship.spectral(mask, consume=True), **kwargs)


class DaskLowRankKinship:
    """A low-rank kinship whose genotype factor is never held by one machine.

    What :func:`low_rank_kinship` computes with ``client=``: the kinship
    SNPs that pass GEMMA's filters (``index``, positions in ``source``) and
    the mean and scale of each, from which any sample rows of the factor
    are rebuilt (:func:`lmmscan.kinship.standardize_rows`, the same values
    as :class:`LowRankKinship`'s Z).  :meth:`spectral` decomposes it on the
    cluster.  Pass it as ``kinship=`` to :func:`lmmscan.scan` together with
    the same ``client``.
    """

    def __init__(
        self,
        client: Any,
        source: GenotypeSource,
        index: np.ndarray,
        mean: np.ndarray,
        factor: np.ndarray | None,
        method: str,
        counts: FilterCounts,
        rank: int | None = None,
        chunk_rows: int | None = None,
    ) -> None:
        self.client = client
        self.source = source
        self.index = index
        self.mean = mean
        self.factor = factor
        self.method = method
        self.counts = counts
        self.rank = rank
        self.chunk_rows = chunk_rows

    @property
    def n_samples(self) -> int:
        return int(self.source.n_samples)

    @property
    def n_snps(self) -> int:
        return int(self.index.size)

    def spectral(
        self, samples: np.ndarray | None = None, *, rank: int | None = None
    ) -> DaskLowRankSpectral:
        """The double-centred decomposition of K restricted to ``samples``
        (a boolean mask or indices; default all), as
        :meth:`LowRankKinship.spectral`, on the cluster: the analysed rows of
        the factor, in chunks of samples read by the workers, centred and
        decomposed by Dask's tall-and-skinny SVD (``dask.array.linalg.tsqr``);
        U stays there, chunked by samples."""
        import dask
        import dask.array as da

        rows = np.arange(self.n_samples)
        if samples is not None:
            rows = rows[np.asarray(samples)]
        m, p = rows.size, self.n_snps
        if m < 2:
            raise InputError("need at least two samples for a kinship")
        step = self.chunk_rows or tsqr_chunk_rows(m, p, _n_workers(self.client))
        client = self.client
        kin = client.scatter(SubsetGenotypes(self.source, self.index), broadcast=True, hash=False)
        scale = client.scatter((self.mean, self.factor), broadcast=True, hash=False)

        def factor(centre: np.ndarray | None) -> Any:
            """The factor's analysed rows as a dask array, one chunk per task."""
            parts = [
                da.from_delayed(
                    dask.delayed(_factor_rows, pure=True)(kin, rows[a : a + step], scale, centre),
                    shape=(min(step, m - a), p),
                    dtype=np.float64,
                )
                for a in range(0, m, step)
            ]
            return da.concatenate(parts, axis=0)

        mu = np.asarray(client.compute(factor(None).mean(axis=0)).result())
        if not np.isfinite(mu).all():  # a NaN or inf reaches its column's mean
            raise InputError("the kinship factor contains NaN or infinite values")
        # as LowRankKinship.spectral: centred over the analysed samples, / sqrt(p);
        # each chunk is built in place by its task (its only copy)
        Zc = factor(mu)
        U, s, _ = da.linalg.tsqr(Zc, compute_svd=True)
        U, s = client.persist([U, s])
        s = np.asarray(client.compute(s).result())
        d = s * s
        keep = d >= EIGEN_ZERO
        rank = rank if rank is not None else self.rank
        if rank is not None:
            if rank < 1:
                raise InputError(f"rank must be at least 1, got {rank}")
            keep &= np.arange(d.size) < rank
        r = int(np.count_nonzero(keep))  # s is sorted descending: a prefix
        if r < d.size:
            U = client.persist(U[:, :r])
        return DaskLowRankSpectral(d[:r], U, client)


def tsqr_chunk_rows(m: int, p: int, workers: int) -> int:
    """Samples per chunk of the factor for Dask's TSQR: at least 2p, so
    that each level of its tree of R factors halves (a shorter chunk stacks
    all the R factors into one QR as large as the factor); otherwise as
    short as keeps two chunks a worker and chunks of at most 256 MiB, since
    each QR needs about three times its chunk on its worker."""
    most = m // (2 * p)  # chunks of at least 2p samples
    wanted = max(2 * max(1, workers), -(-8 * m * p // (256 << 20)))
    chunks = max(1, min(most, wanted))
    return -(-m // chunks)


def _n_workers(client: Any) -> int:
    info = client.scheduler_info()
    return max(1, len(info.get("workers", {})))


def _kinship_columns(shared: tuple, source: GenotypeSource, start: int, stop: int) -> tuple:
    """A Dask task: GEMMA's filters for kinship SNPs start..stop-1 over the
    filter samples, and the mean and scale of those kept (all samples)."""
    mask, maf, miss, method = shared
    X = source.read(start, stop)
    keep, _, _, counts = gemma_filter(X[mask], maf=maf, miss=miss)
    # one thread, as the other Dask tasks: a worker runs several at once
    _, mean, factor = standardize_params(X, method, cols=keep, threads=1)
    return keep, mean, factor, counts


def _factor_rows(
    source: GenotypeSource, rows: np.ndarray, scale: tuple, centre: np.ndarray | None
) -> np.ndarray:
    """A Dask task: the kinship factor's rows ``rows`` (samples x SNPs);
    with ``centre`` (the analysed samples' column means), centred and
    divided by sqrt(p), in place, as :meth:`LowRankKinship.spectral` does."""
    mean, factor = scale
    Z = standardize_rows(source.read(0, source.n_snps, rows), mean, factor)
    if centre is not None:
        Z -= centre
        Z *= 1.0 / np.sqrt(Z.shape[1])
    return Z


def _dask_low_rank_kinship(
    client: Any,
    source: GenotypeSource,
    idx: np.ndarray,
    method: str,
    mask: np.ndarray,
    maf: float | None,
    miss: float,
    rank: int | None,
    block_size: int,
    chunk_rows: int | None,
) -> DaskLowRankKinship:
    from .distributed import map_slices

    counts = FilterCounts()
    kept, means, factors = [], [], []
    columns = SubsetGenotypes(source, idx)
    shared = (mask, maf, miss, method)
    for start, (keep, mean, factor, c) in map_slices(
        client, _kinship_columns, shared, columns, block_size
    ):
        counts.add(c)
        kept.append(idx[start + np.flatnonzero(keep)])
        means.append(mean)
        factors.append(factor)
    index = np.concatenate(kept)
    if index.size == 0:
        raise InputError("no kinship SNP passed the filters")
    factor = None if method == "centered" else np.concatenate(factors)
    return DaskLowRankKinship(
        client, source, index, np.concatenate(means), factor, method, counts, rank, chunk_rows
    )
