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
import scipy.linalg

from ._errors import InputError
from .filters import FilterCounts, gemma_filter
from .genotypes import as_source, default_block_size
from .kinship import KinshipMethod
from .model import EIGEN_ZERO


class LowRankSpectral:
    """K = U diag(d) U' with U (n, k) orthonormal, k <= n; eigenvalue 0 elsewhere.

    The spectral interface of :func:`lmmscan.fit_null` (``spectral=``) and of
    the scan: ``rotate``/``rotate_rows`` project on the k directions,
    ``complement_gram``/``complement_rows`` give the Gram matrices on the
    n - k others.  Nothing of size n x n is ever formed.
    """

    def __init__(self, d: np.ndarray, U: np.ndarray) -> None:
        d = np.ascontiguousarray(d, dtype=np.float64)
        U = np.ascontiguousarray(U, dtype=np.float64)
        if d.ndim != 1 or U.ndim != 2 or U.shape[1] != d.shape[0]:
            raise InputError(f"need d (k,) and U (n, k), got {d.shape} and {U.shape}")
        if U.shape[1] > U.shape[0]:
            raise InputError(f"U has more columns ({U.shape[1]}) than samples ({U.shape[0]})")
        if np.any(d < 0) or not np.isfinite(d).all():
            raise InputError("eigenvalues must be finite and non-negative")
        self.d = d
        self.U = U
        self._memo: tuple[object, np.ndarray] | None = None
        self._UtV: tuple[object, np.ndarray] | None = None

    @classmethod
    def from_factor(
        cls,
        Z: np.ndarray,
        *,
        rank: int | None = None,
        zero: float = EIGEN_ZERO,
        overwrite: bool = False,
    ) -> LowRankSpectral:
        """The spectral decomposition of K = Z Z' for a factor Z (n, p), any p.

        Eigenvalues below ``zero`` (GEMMA's 1e-10) are left to the complement;
        ``rank`` keeps at most that many of the largest.  Z is not centred here;
        ``overwrite`` lets LAPACK destroy it (saves a copy of n x p).
        """
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim != 2:
            raise InputError(f"the kinship factor must be 2-D (samples x SNPs), got {Z.shape}")
        if not np.isfinite(Z).all():
            raise InputError("the kinship factor contains NaN or infinite values")
        U, s, _ = scipy.linalg.svd(
            Z, full_matrices=False, overwrite_a=overwrite, check_finite=False, lapack_driver="gesdd"
        )
        d = s * s
        keep = d >= zero
        if rank is not None:
            if rank < 1:
                raise InputError(f"rank must be at least 1, got {rank}")
            keep &= np.arange(d.size) < rank  # s is sorted descending
        return cls(d[keep], U[:, keep])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_memo"] = None
        state["_UtV"] = None
        return state

    @property
    def n_total(self) -> int:
        return int(self.U.shape[0])

    @property
    def rank(self) -> int:
        return int(self.U.shape[1])

    def rotate(self, X: np.ndarray) -> np.ndarray:
        """U' X for X (n,) or (n, m): (k,) or (k, m) in Fortran order."""
        return np.asfortranarray(self.U.T @ X)

    def rotate_rows(self, X: np.ndarray) -> np.ndarray:
        """(U' X)' for X (n, b), C order.  Remembered for the complement_rows
        call on the same block that follows in a scan (it needs U'X too, and
        this product is the scan's largest cost)."""
        out = np.ascontiguousarray(X.T @ self.U)
        self._memo = (X, out)
        return out

    def complement_gram(self, V: np.ndarray) -> np.ndarray:
        """V'(I - UU')V for V (n, m), from the projected residual (accurate
        even where V lies mostly in the span of U)."""
        R = V - self.U @ (self.U.T @ V)
        return np.ascontiguousarray(R.T @ R)

    def _rotated_rows(self, X: np.ndarray) -> np.ndarray:
        memo = self._memo
        if memo is not None and memo[0] is X:
            return memo[1]
        return np.ascontiguousarray(X.T @ self.U)

    def _rotated_V(self, V: np.ndarray) -> np.ndarray:
        memo = self._UtV
        if memo is not None and memo[0] is V:
            return memo[1]
        UtV = self.U.T @ V
        self._UtV = (V, UtV)
        return UtV

    def complement_rows(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        """(b, c + 2): for each column x of X, x'(I - UU')[V[:, :c], x, V[:, c]]."""
        c = V.shape[1] - 1
        UtX = self._rotated_rows(X)  # (b, k)
        UtV = self._rotated_V(V)  # (k, c + 1)
        XtV = X.T @ V
        proj = UtX @ UtV
        out = np.empty((X.shape[1], c + 2))
        out[:, :c] = XtV[:, :c] - proj[:, :c]
        out[:, c] = np.einsum("ij,ij->j", X, X) - np.einsum("ij,ij->i", UtX, UtX)
        out[:, c + 1] = XtV[:, c] - proj[:, c]
        return out

    def smooth(self, r: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """U diag(weights) U' r (weight 0 on the complement, where d = 0)."""
        return self.U @ (weights * (self.U.T @ r))

    def kernel_diag(self, weights: np.ndarray) -> np.ndarray:
        """diag(U diag(weights) U')."""
        return np.einsum("ik,k,ik->i", self.U, weights, self.U)


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
        self.Z = Z
        self.method = method
        self.counts = counts or FilterCounts()
        self.rank = rank

    @property
    def n_samples(self) -> int:
        return int(self.Z.shape[0])

    @property
    def n_snps(self) -> int:
        return int(self.Z.shape[1])

    def dense(self) -> np.ndarray:
        """K as an (n, n) matrix (small problems and tests only)."""
        return (self.Z @ self.Z.T) / self.n_snps

    def spectral(
        self, samples: np.ndarray | None = None, *, rank: int | None = None
    ) -> LowRankSpectral:
        """The eigendecomposition of K restricted to ``samples`` (a boolean
        mask or indices; default all) and double-centred, as GEMMA uses it."""
        # one copy of the analysed rows, centred and scaled in place
        Zc = np.array(self.Z if samples is None else self.Z[np.asarray(samples)], order="C")
        if Zc.shape[0] < 2:
            raise InputError("need at least two samples for a kinship")
        Zc -= Zc.mean(axis=0)
        Zc *= 1.0 / np.sqrt(self.n_snps)
        return LowRankSpectral.from_factor(
            Zc, rank=rank if rank is not None else self.rank, overwrite=True
        )


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
    if method not in ("centered", "standardized"):
        raise InputError(f"method must be 'centered' or 'standardized', got {method!r}")
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
    Z = np.empty((n, idx.size))
    used = 0
    for start, stop, wanted in _runs(idx, block_size):
        X = source.read(start, stop)[:, wanted - start]
        keep, _, _, c = gemma_filter(X[mask], maf=maf, miss=miss)
        counts.add(c)
        k = int(keep.sum())
        Z[:, used : used + k] = standardize(X[:, keep], method)
        used += k
    if used == 0:
        raise InputError("no kinship SNP passed the filters")
    if used < idx.size:
        Z = np.ascontiguousarray(Z[:, :used])
    return LowRankKinship(Z, method, counts, rank)


def standardize(X: np.ndarray, method: str) -> np.ndarray:
    """GEMMA's kinship columns: missing set to the mean, centred over all
    samples; for ``"standardized"`` divided by the population s.d. (if non-zero)."""
    missing = np.isnan(X)
    n_obs = X.shape[0] - missing.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(missing, 0.0, X).sum(axis=0) / n_obs
    Z = np.where(missing, mean, X) - mean
    if method == "standardized":
        var = np.einsum("ij,ij->j", Z, Z) / X.shape[0]
        Z *= np.where(var != 0.0, 1.0 / np.sqrt(np.where(var != 0, var, 1.0)), 1.0)
    return Z


def _filter_mask(source: object, filter_samples: np.ndarray | None) -> np.ndarray:
    from .kinship import sample_mask

    mask = sample_mask(source, filter_samples)
    if not mask.any():
        raise InputError("filter_samples is empty")
    return mask


def _runs(idx: np.ndarray, block_size: int):
    """(start, stop, wanted) blocks of at most block_size consecutive SNP
    positions that cover the sorted indices idx; wanted are those inside."""
    i = 0
    while i < idx.size:
        start = int(idx[i])
        stop = min(start + block_size, int(idx[-1]) + 1)
        j = int(np.searchsorted(idx, stop, side="left"))
        yield start, stop, idx[i:j]
        i = j


def fit_null_lowrank(y: object, covariates: object | None, kinship: LowRankKinship, **kwargs):
    """:func:`lmmscan.fit_null` with a :class:`LowRankKinship`: the analysed
    samples' factor is decomposed (no n x n matrix) and passed as ``spectral``."""
    from .model import analysed_samples, fit_null

    mask = analysed_samples(np.asarray(y, dtype=np.float64), covariates)[0]
    if kinship.n_samples != mask.shape[0]:
        raise InputError(
            f"the low-rank kinship has {kinship.n_samples} samples but y has {mask.shape[0]}"
        )
    return fit_null(y, covariates, spectral=kinship.spectral(mask), **kwargs)
