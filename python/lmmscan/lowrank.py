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
"""

from __future__ import annotations

import numpy as np

from ._errors import InputError
from .filters import FilterCounts, gemma_filter
from .genotypes import GenotypeSource, as_source, default_block_size, snp_runs
from .kinship import KinshipMethod, check_method, sample_mask, standardize
from .samples import analysed_samples
from .spectral import LowRankSpectral


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
) -> LowRankKinship:
    """GEMMA's kinship (as :func:`lmmscan.kinship`) kept as a genotype factor.

    ``snps`` selects the kinship SNPs (indices or a boolean mask over the
    source's SNPs; default all); GEMMA's maf/miss filters apply to them over
    ``filter_samples`` (default: the samples with a .fam phenotype for PLINK,
    else all).  Memory: samples x kinship SNPs doubles.  ``rank`` truncates
    the eigendecomposition (an approximation, see the module docstring).
    """
    check_method(method)
    source = as_source(genotypes)
    n = source.n_samples
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
    mask = _filter_mask(source, filter_samples)
    block_size = block_size or default_block_size(n)
    counts = FilterCounts()
    Z = np.empty((n, idx.size), order="F")  # filled by columns
    used = 0
    for start, stop, wanted in snp_runs(idx, block_size):
        X = source.read(start, stop)[:, wanted - start]
        keep, _, _, c = gemma_filter(X[mask], maf=maf, miss=miss)
        counts.add(c)
        k = int(keep.sum())
        Z[:, used : used + k] = standardize(X[:, keep], method)
        used += k
    if used == 0:
        raise InputError("no kinship SNP passed the filters")
    if used < idx.size:
        Z = Z[:, :used]  # the first columns of a Fortran array: still contiguous
    return LowRankKinship(Z, method, counts, rank)


def _filter_mask(source: GenotypeSource, filter_samples: np.ndarray | None) -> np.ndarray:
    mask = sample_mask(source, filter_samples)
    if not mask.any():
        raise InputError("filter_samples is empty")
    return mask


def fit_null_lowrank(
    y: object,
    covariates: object | None,
    kinship: LowRankKinship,
    *,
    consume: bool = False,
    **kwargs,
):
    """:func:`lmmscan.fit_null` with a :class:`LowRankKinship`: the analysed
    samples' factor is decomposed (no n x n matrix) and passed as ``spectral``.
    ``consume=True``: in the kinship's own memory (see
    :meth:`LowRankKinship.spectral`)."""
    from .model import fit_null

    mask = analysed_samples(np.asarray(y, dtype=np.float64), covariates)[0]
    if kinship.n_samples != mask.shape[0]:
        raise InputError(
            f"the low-rank kinship has {kinship.n_samples} samples but y has {mask.shape[0]}"
        )
    return fit_null(y, covariates, spectral=kinship.spectral(mask, consume=consume), **kwargs)
