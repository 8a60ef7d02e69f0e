"""GEMMA's relatedness matrices (-gk 1 centred, -gk 2 standardised), block by block."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np

from ._errors import InputError
from .filters import FilterCounts, Scratch, gemma_filter, no_snp_left
from .genotypes import GenotypeSource, ReadAhead, as_source, default_block_size
from .samples import Analysed, as_sample_mask, r2_basis

KinshipMethod = Literal["centered", "standardized"]
KINSHIP_METHODS: tuple[KinshipMethod, ...] = ("centered", "standardized")  # GEMMA -gk 1, -gk 2


def check_method(method: object) -> KinshipMethod:
    """``method`` if it names a kinship (:data:`KINSHIP_METHODS`), else InputError."""
    if method not in KINSHIP_METHODS:
        raise InputError(f"method must be 'centered' or 'standardized', got {method!r}")
    return method  # type: ignore[return-value]


def standardize(
    X: np.ndarray,
    method: str,
    *,
    cols: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """GEMMA's kinship columns: missing set to the mean, centred over all
    samples; for ``"standardized"`` divided by the population s.d. (if non-zero).
    ``cols``, ``rows``, ``out``: see :func:`standardize_params`."""
    return standardize_params(X, method, cols=cols, rows=rows, out=out)[0]


def standardize_params(
    X: np.ndarray,
    method: str,
    *,
    cols: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    out: np.ndarray | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`standardize`'s columns with the means and (``"standardized"``)
    scale factors it used: :func:`standardize_rows` gives any rows of X the
    same values, bit for bit, from those two alone.

    ``cols`` (indices or a boolean mask): the columns of X to standardise
    (default all), as ``X[:, cols]`` would give them; ``rows``: only those
    rows of the result, the means and s.d. still over every row of X.
    ``out``: a flat float64 buffer the columns (Fortran order) are written to
    when it holds them (else a new array); standardised columns are centred
    on every row there first, and ``rows`` of them are then a copy.

    The centring is one pass in C++ (``_core.kinship_columns``, on
    ``threads`` threads, default the usable cores) that sums each column as
    numpy's ``X[:, cols].sum(axis=0)`` does, so the columns are the numpy
    expressions' (mean of the observed values, ``np.where(missing, mean, X) -
    mean``) bit for bit, on any thread count.
    """
    from . import _core
    from ._threads import usable_cores

    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be samples x SNPs, got shape {X.shape}")
    n, b = X.shape
    idx = _indices(cols, b)
    if not X.flags.f_contiguous:
        # numpy's X[:, idx] is Fortran-ordered: the columns the kernel reads
        X = np.asfortranarray(X if idx is None else X[:, idx])
        idx = None
    if idx is None:
        idx = np.arange(X.shape[1], dtype=np.int64)
    picked = _indices(rows, n)
    scaled = method == "standardized"
    kernel_rows = None if scaled else picked  # the s.d. is over every row
    m = n if kernel_rows is None else kernel_rows.size
    k = idx.size
    buf = out if out is not None and out.size >= m * k else np.empty(max(1, m * k))
    mean, _ = _core.kinship_columns(X, idx, kernel_rows, buf, threads or usable_cores())
    Z = buf[: m * k].reshape((m, k), order="F")
    factor = None
    if scaled:
        var = np.einsum("ij,ij->j", Z, Z) / n
        factor = np.where(var != 0.0, 1.0 / np.sqrt(np.where(var != 0, var, 1.0)), 1.0)
        Z *= factor
        if picked is not None:
            Z = Z[picked]
    return Z, mean, factor


def _indices(sel: np.ndarray | None, size: int) -> np.ndarray | None:
    """``sel`` (a boolean mask of ``size`` or indices) as int64 indices."""
    if sel is None:
        return None
    sel = np.asarray(sel)
    if sel.dtype == bool:
        if sel.shape != (size,):
            raise ValueError(f"a boolean selection must have length {size}, got {sel.shape}")
        return np.flatnonzero(sel)
    return np.ascontiguousarray(sel, dtype=np.int64)


def standardize_rows(X: np.ndarray, mean: np.ndarray, factor: np.ndarray | None) -> np.ndarray:
    """Rows of X as :func:`standardize_params` standardised all of them."""
    Z = np.where(np.isnan(X), mean, X)
    Z -= mean
    if factor is not None:
        Z *= factor
    return Z


class KinshipAccumulator:
    """Sums Z Z' block by block for one kinship (GEMMA's -gk): used by
    :func:`kinship`, and by the command line to build the kinships of several
    sets of analysed samples in one pass over the genotypes.

    ``mask`` selects the samples the SNP filters are computed on (GEMMA: the
    analysed ones); K spans every sample.  ``W`` (mask rows x c) switches on
    GEMMA's r2 filter against the covariates, as ``gemma -gk -c`` applies it.
    """

    def __init__(
        self,
        n: int,
        method: KinshipMethod = "centered",
        *,
        mask: np.ndarray | None = None,
        W: np.ndarray | None = None,
        maf: float | None = 0.01,
        miss: float = 0.05,
        r2: float = 0.9999,
        hwe: float = 0.0,
    ) -> None:
        self.n = n
        self.method = check_method(method)
        self.mask = np.ones(n, dtype=bool) if mask is None else mask
        if not self.mask.any():
            raise InputError("no sample to compute the SNP filters on (filter_samples is empty)")
        if W is not None and W.shape[0] != int(self.mask.sum()):
            raise InputError(
                f"covariates have {W.shape[0]} rows but {int(self.mask.sum())} samples are "
                "filtered on"
            )
        self.W = r2_basis(W)
        self.maf, self.miss, self.r2, self.hwe = maf, miss, r2, hwe
        self.K = np.zeros((n, n), order="F")  # dsyrk's order: updated in place
        self.counts = FilterCounts()
        self._scratch = Scratch()  # the block's kinship columns, reused
        self.used = 0
        self._result: np.ndarray | None = None

    def add(self, X: np.ndarray) -> None:
        """Add a block X (all n samples x SNPs, NaN missing)."""
        # (every sample filtered and no r2 filter: no copy of the block; the
        # miss/maf filters give the same bits in either memory order, the r2
        # filter's products do not: helper 62)
        rows = X if self.W is None and self.mask.all() else X[self.mask]
        keep, _, _, c = gemma_filter(
            rows, maf=self.maf, miss=self.miss, W=self.W, r2=self.r2, hwe=self.hwe
        )
        del rows
        self.counts.add(c)
        if not keep.any():
            return
        buf = self._scratch.get("Z", X.shape[0] * int(np.count_nonzero(keep)), np.float64)
        Z = standardize(X, self.method, cols=keep, out=buf)
        # dsyrk fills one triangle: half the flops of Z @ Z.T
        self.K = _syrk_update(self.K, Z)
        self.used += Z.shape[1]

    def result(self) -> np.ndarray:
        if self.used == 0:
            raise InputError(no_snp_left(self.counts, "the kinship cannot be computed"))
        if self._result is None:
            # the sum becomes the result in its own memory (no n x n temporary)
            K, self.K = self.K, np.zeros((0, 0))
            symmetrize_upper(K)
            K /= self.used
            self._result = K.T  # symmetric: the C-ordered view, as callers had it
        return self._result


def symmetrize_upper(K: np.ndarray, block: int = 512) -> None:
    """Copy the upper triangle of the square K onto its lower one, in place,
    a block of columns at a time (no n x n temporary)."""
    n = K.shape[0]
    for start in range(0, n, block):
        stop = min(n, start + block)
        D = K[start:stop, start:stop]
        D[...] = np.triu(D) + np.triu(D, 1).T
        K[stop:, start:stop] = K[start:stop, stop:].T


def _syrk_update(K: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """K (upper triangle) += Z Z' via BLAS dsyrk."""
    from .spectral import syrk_update

    return syrk_update(np.asfortranarray(K), Z, lower=False)


def accumulators(
    n: int,
    method: str,
    phenotypes: list[Analysed],
    *,
    maf: float | None = 0.01,
    miss: float = 0.05,
    r2: float = 0.9999,
    hwe: float = 0.0,
) -> list[KinshipAccumulator]:
    """One accumulator per phenotype: its analysed samples filter the SNPs and,
    with covariates beyond the intercept, GEMMA's r2 filter uses them (as
    ``gemma -gk -c``)."""
    return [
        KinshipAccumulator(
            n,
            check_method(method),
            mask=ph.mask,
            W=ph.W if ph.W.shape[1] > 1 else None,
            maf=maf,
            miss=miss,
            r2=r2,
            hwe=hwe,
        )
        for ph in phenotypes
    ]


def accumulate(
    source: GenotypeSource,
    accumulators: list[KinshipAccumulator],
    *,
    block_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Add every SNP of ``source`` to each accumulator, in one pass over the
    genotypes (the next block read on a thread meanwhile); ``progress(n)``
    after each block of n SNPs."""
    reader = ReadAhead(source, block_size or default_block_size(source.n_samples), None)
    for start, stop, X in reader.blocks({"read": 0.0}):
        for acc in accumulators:
            acc.add(X)
        if progress is not None:
            progress(stop - start)


def kinship(
    genotypes: object,
    method: KinshipMethod = "centered",
    *,
    maf: float | None = 0.01,
    miss: float = 0.05,
    filter_samples: np.ndarray | None = None,
    covariates: np.ndarray | None = None,
    r2: float = 0.9999,
    hwe: float = 0.0,
    block_size: int | None = None,
    return_counts: bool = False,
) -> np.ndarray | tuple[np.ndarray, FilterCounts]:
    """GEMMA's kinship over all samples of ``genotypes``.

    Parameters
    ----------
    genotypes
        A (samples x SNPs) array with NaN for missing, or a source such as
        :func:`lmmscan.read_plink`.
    method
        ``"centered"`` (GEMMA ``-gk 1``: K = Z Z' / p with Z the SNPs centred
        by their mean) or ``"standardized"`` (``-gk 2``: each SNP also divided
        by its standard deviation).
    maf, miss
        GEMMA's SNP filters (see :func:`lmmscan.filters.gemma_filter`),
        computed over ``filter_samples`` only.
    filter_samples
        Boolean mask (or indices) of the samples GEMMA would analyse; the
        filters use only these, while K spans every sample.  Default: for a
        PLINK source the samples with a non-missing .fam phenotype (as
        ``gemma -bfile ... -gk``), otherwise all samples.
    covariates, r2
        The covariate matrix W of the ``filter_samples`` rows (intercept
        included, as :func:`lmmscan.model.analysed_samples` returns it): with
        more than one column GEMMA's r2 filter also applies, as ``gemma -gk
        -c`` does.
    hwe
        GEMMA's ``-hwe``: drop SNPs whose exact Hardy-Weinberg p-value is
        below it (0: off; see :func:`lmmscan.filters.gemma_filter`).
    return_counts
        Also return the :class:`~lmmscan.filters.FilterCounts`.

    Each SNP's mean and (population) variance are taken over all samples with
    missing calls set to the mean; p is the number of SNPs used.
    """
    check_method(method)
    source = as_source(genotypes)
    n = source.n_samples
    mask = sample_mask(source, filter_samples)
    W = None if covariates is None else np.asarray(covariates, dtype=np.float64)
    if W is not None and W.ndim == 1:
        W = W[:, None]
    acc = KinshipAccumulator(n, method, mask=mask, W=W, maf=maf, miss=miss, r2=r2, hwe=hwe)
    accumulate(source, [acc], block_size=block_size)
    K = acc.result()
    if return_counts:
        return K, acc.counts
    return K


def sample_mask(source: GenotypeSource, filter_samples: np.ndarray | None) -> np.ndarray:
    """A boolean mask over the samples of ``source`` from a mask, indices or None."""
    n = source.n_samples
    if filter_samples is None:
        pheno = getattr(source, "phenotype", None)
        if pheno is None:
            return np.ones(n, dtype=bool)
        mask = ~np.isnan(pheno)
        if not mask.any():
            raise InputError(
                "the .fam carries no phenotype (every value is missing), and the SNP filters "
                "are computed on the individuals with one: give filter_samples= (the command "
                "line: --pheno)"
            )
        return mask
    return as_sample_mask(filter_samples, n, "filter_samples")
