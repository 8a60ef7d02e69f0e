"""The null model: samples as GEMMA aligns them, the spectral decomposition
of the kinship, and the REML / ML fit of y = W a + g + e, g ~ N(0, vg K)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import _core
from ._errors import InputError

EIGEN_ZERO = 1e-10  # GEMMA zeroes every eigenvalue below this
_MIN_GEMM_COLUMNS = 64


# Below this size the eigendecomposition runs on one BLAS thread, where a
# second thread buys nothing.  Above it, BLAS's own thread count applies
# (capped by --threads / threadpoolctl): on an idle 2-core machine two threads
# took dsyevr from 1.12-1.30 to 0.67-0.71 s at n = 1,940 and from 3.7-4.2 to
# 2.1 s at n = 3,000.  On a machine shared with other busy processes the same
# two threads spin while they wait for each other and were 4-10x slower than
# one (n = 1,410-3,000, load 2-4): there, pass --threads 1 (or set
# OPENBLAS_NUM_THREADS=1).
EIGH_SERIAL_BELOW = 1000

# The LAPACK eigensolver.  "evr" (dsyevr, MRRR) needs O(n) workspace: the
# decomposition holds K's buffer and U, 2 x 8n^2 bytes.  "evd" (dsyevd, divide
# and conquer) needs 2n^2 doubles more, and is never slower: the same on
# full-rank kinships (n = 7,000: 37.8 s against 39.5), and much faster when
# K has fewer SNPs than samples, where a large cluster of zero eigenvalues
# slows MRRR down (n = 7,000, 2,000 SNPs: 33.7 s against 233.4; at n = 9,709
# dsyevr took 11 minutes).  The default keeps the memory bound; the CLI's
# --eigh-driver and eigh_driver() change it.
EIGH_DRIVERS = ("evr", "evd")
_EIGH_DRIVER = ["evr"]


@contextlib.contextmanager
def eigh_driver(driver: str):
    """Use LAPACK driver ``driver`` ("evr" or "evd") for every kinship
    eigendecomposition inside the ``with`` block (see EIGH_DRIVERS)."""
    if driver not in EIGH_DRIVERS:
        raise InputError(f"eigh driver must be one of {EIGH_DRIVERS}, got {driver!r}")
    previous = _EIGH_DRIVER[0]
    _EIGH_DRIVER[0] = driver
    try:
        yield
    finally:
        _EIGH_DRIVER[0] = previous


def _eigh_threads(n: int):
    """BLAS thread limit for an n x n eigendecomposition (see EIGH_SERIAL_BELOW)."""
    if n >= EIGH_SERIAL_BELOW:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


@dataclass(frozen=True)
class LambdaBounds:
    """The range and grid of the lambda search (GEMMA's -lmin, -lmax, -region)."""

    l_min: float = 1e-5
    l_max: float = 1e5
    n_region: int = 10


def analysed_samples(
    y: np.ndarray, covariates: np.ndarray | None, n: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """GEMMA's sample handling (reference section 1.1).

    Returns (mask, y_analysed, W, W_full_rows, intercept_added): samples with
    a missing phenotype or any missing covariate are dropped; when no
    covariate column is constant on the analysed samples a column of ones is
    appended last; without covariates W is a column of ones.
    """
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 1:
        raise InputError(f"y must be 1-D (one value per sample), got shape {y.shape}")
    if n is not None and y.shape[0] != n:
        raise InputError(f"y has {y.shape[0]} values but there are {n} samples")
    if np.isinf(y).any():
        raise InputError("y contains infinite values (use NaN for missing)")
    mask = ~np.isnan(y)
    if covariates is not None:
        cov = np.asarray(covariates, dtype=np.float64)
        if cov.ndim == 1:
            cov = cov[:, None]
        if cov.ndim != 2 or cov.shape[0] != y.shape[0]:
            raise InputError(
                f"covariates must have shape ({y.shape[0]}, c), got {np.shape(covariates)}"
            )
        if np.isinf(cov).any():
            raise InputError("covariates contain infinite values (use NaN for missing)")
        mask &= ~np.isnan(cov).any(axis=1)
    else:
        cov = np.ones((y.shape[0], 0))
    if not mask.any():
        raise InputError("every sample has a missing phenotype or covariate: nothing to analyse")
    W = cov[mask]
    intercept_added = False
    if W.shape[1] == 0 or not (W.max(axis=0) == W.min(axis=0)).any():
        W = np.column_stack([W, np.ones(W.shape[0])])
        intercept_added = True
    n_an, c = W.shape
    _check_full_rank(W, intercept_added)
    if n_an < c + 2:
        raise InputError(
            f"{n_an} analysed samples but {c} covariate columns: need at least c + 2 = {c + 2}"
        )
    return mask, y[mask], W, cov, intercept_added


def _check_full_rank(W: np.ndarray, intercept_added: bool) -> None:
    """Refuse covariates that are linearly dependent (GEMMA would divide by ~0)."""
    scale = np.linalg.norm(W, axis=0)
    if np.any(scale == 0):
        j = int(np.flatnonzero(scale == 0)[0])
        raise InputError(f"covariate column {j + 1} is zero on every analysed sample")
    Wn = W / scale
    for j in range(1, W.shape[1] + 1):
        s = np.linalg.svd(Wn[:, :j], compute_uv=False)
        if s[-1] < 1e-10 * s[0]:
            what = "the added intercept" if intercept_added and j == W.shape[1] else f"column {j}"
            raise InputError(
                f"covariates are collinear: {what} is a linear combination of the columns "
                "before it (on the analysed samples)"
            )


def check_kinship(K: object, n: int, name: str = "kinship") -> np.ndarray:
    """A validated (n, n) float64 kinship: square, finite, symmetric."""
    K = np.asarray(K, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise InputError(f"{name} must be a square matrix, got shape {K.shape}")
    if K.shape[0] != n:
        raise InputError(f"{name} is {K.shape[0]} x {K.shape[1]} but there are {n} samples")
    # in row blocks, so checking a large K costs no n x n temporaries
    step = max(1, (1 << 22) // max(1, n))
    scale = 0.0
    for i in range(0, n, step):
        rows = K[i : i + step]
        if not np.isfinite(rows).all():
            raise InputError(f"{name} contains NaN or infinite values")
        scale = max(scale, float(np.abs(rows).max()))
    tol = 1e-8 * max(scale, 1e-300)
    for i in range(0, n, step):
        if np.abs(K[i : i + step] - K[:, i : i + step].T).max(initial=0.0) > tol:
            raise InputError(f"{name} is not symmetric")
    return K


def double_centre(K: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
    """(I - J/n) K (I - J/n), as GEMMA applies to every kinship it reads.

    With ``overwrite`` K itself is centred (no n x n temporary).
    """
    row = K.mean(axis=1)
    total = row.mean()
    out = K if overwrite else K.copy()
    out -= row[:, None]
    out -= row[None, :]
    out += total
    return out


@dataclass
class Spectral:
    """K = U diag(d) U' with eigenvalues below 1e-10 set to 0 (all n directions)."""

    d: np.ndarray
    U: np.ndarray

    @classmethod
    def from_kinship(cls, K: np.ndarray, *, overwrite: bool = False) -> Spectral:
        """Eigendecomposition (LAPACK dsyevr, or dsyevd inside
        :func:`eigh_driver`, lower triangle) of a symmetric K; ``overwrite``
        lets LAPACK work in K's memory instead of a copy."""
        # LAPACK works in Fortran order; K is symmetric, so a C-ordered K is
        # handed over as its (Fortran-ordered) transpose instead of copied
        import scipy.linalg  # here, not at import: ~0.2 s that only this step needs

        A = K.T if K.flags.c_contiguous and not K.flags.f_contiguous else K
        with _eigh_threads(A.shape[0]):
            d, U = scipy.linalg.eigh(
                A, driver=_EIGH_DRIVER[0], overwrite_a=overwrite, check_finite=False
            )
        d = np.where(d < EIGEN_ZERO, 0.0, d)
        # U stays in LAPACK's (Fortran) order: a C-order copy would cost 8n^2
        # bytes, and U.T @ X / X.T @ U run as fast either way
        return cls(d=np.ascontiguousarray(d), U=U)

    @property
    def n_total(self) -> int:
        return int(self.U.shape[0])

    def rotate(self, X: np.ndarray) -> np.ndarray:
        """U' X for X (n, k), returned (n, k) in Fortran order."""
        return np.asfortranarray(self.U.T @ X)

    def rotate_rows(self, X: np.ndarray) -> np.ndarray:
        """(U' X)' for X (n, b): one rotated column of X per row, C order.

        Narrow blocks are padded to 64 columns: BLAS takes other kernels (with
        another summation order) for very narrow products, and the results
        must not depend on how the SNPs were split into blocks.
        """
        b = X.shape[1]
        if b < _MIN_GEMM_COLUMNS:
            # the padded block keeps X's memory order (the same BLAS path as a full block)
            order = "C" if X.flags.c_contiguous and not X.flags.f_contiguous else "F"
            padded = np.zeros((X.shape[0], _MIN_GEMM_COLUMNS), order=order)
            padded[:, :b] = X
            X = padded
        return np.ascontiguousarray((X.T @ self.U)[:b])

    def complement_gram(self, V: np.ndarray) -> np.ndarray | None:
        """V'(I - UU')V: nothing here, every direction is rotated."""
        return None

    def complement_rows(self, X: np.ndarray, V: np.ndarray) -> np.ndarray | None:
        return None

    def smooth(self, r: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """U diag(weights) U' r."""
        return self.U @ (weights * (self.U.T @ r))

    def kernel_diag(self, weights: np.ndarray) -> np.ndarray:
        """diag(U diag(weights) U')."""
        return np.einsum("ik,k,ik->i", self.U, weights, self.U)


@dataclass
class Whitening:
    """The inverse of the lower Cholesky factor L of H = lambda K + I, for
    fixed-lambda scans.

    At one lambda the tests need x' H^-1 v only, and L^-1 x (a triangular
    product, n^2 flops per SNP) gives them at half the cost of U' x (2 n^2).
    L^-1 is formed once (dtrtri, n^3 / 3 flops) because OpenBLAS multiplies
    by a triangular matrix (dtrmm) ~12% faster than it solves with one
    (dtrsm); the two agree to ~1e-15.  H is built from the
    eigendecomposition, so it is the same model as the rotated scan's
    (eigenvalues below 1e-10 count as 0).
    """

    lambda_: float
    L_inv: np.ndarray  # (n, n) Fortran order, lower triangle

    @classmethod
    def from_spectral(cls, spectral: Spectral, lambda_: float, *, block: int = 256) -> Whitening:
        """L L' = U diag(lambda d + 1) U', accumulated by symmetric rank-k
        updates over blocks of eigenvectors (no second n x n temporary)."""
        from scipy.linalg import blas, lapack

        U, d = spectral.U, spectral.d
        n = U.shape[0]
        if U.shape[1] != n:
            raise InputError("whitening needs all n eigenvectors (a dense kinship)")
        scale = np.sqrt(lambda_ * d + 1.0)
        H = np.zeros((n, n), order="F")
        for start in range(0, n, block):
            cols = slice(start, min(n, start + block))
            B = np.asfortranarray(U[:, cols] * scale[cols])
            H = blas.dsyrk(1.0, B, beta=1.0, c=H, lower=1, overwrite_c=1)
        L, info = lapack.dpotrf(H, lower=1, clean=1, overwrite_a=1)
        if info != 0:  # pragma: no cover - lambda K + I is positive definite
            raise InputError(f"lambda K + I is not positive definite (dpotrf info {info})")
        L_inv, info = lapack.dtrtri(L, lower=1, overwrite_c=1)
        if info != 0:  # pragma: no cover - L has a positive diagonal
            raise InputError(f"the factor of lambda K + I is singular (dtrtri info {info})")
        return cls(lambda_=float(lambda_), L_inv=L_inv)

    def whiten(self, V: np.ndarray) -> np.ndarray:
        """L^-1 V for V (n,) or (n, k)."""
        from scipy.linalg import blas

        V = np.asarray(V, dtype=np.float64)
        out = blas.dtrmm(1.0, self.L_inv, V.reshape(V.shape[0], -1), lower=1)
        return out.reshape(V.shape)

    def rotate_rows(self, X: np.ndarray) -> np.ndarray:
        """(L^-1 X)' for X (n, b): one whitened column of X per row, C order.

        Narrow blocks are padded to 64 columns, as in
        :meth:`Spectral.rotate_rows`, so that no result depends on the block size.
        """
        from scipy.linalg import blas

        b = X.shape[1]
        if b >= _MIN_GEMM_COLUMNS:  # dtrmm works in place: on a copy, X stays as it is
            padded = np.array(X, order="F")
        else:
            padded = np.zeros((X.shape[0], _MIN_GEMM_COLUMNS), order="F")
            padded[:, :b] = X
        out = blas.dtrmm(1.0, self.L_inv, padded, lower=1, overwrite_b=1)
        return out.T[:b]


class GroupSpectral:
    """K = D D' for group labels, in closed form (no n x n matrix).

    Group j (sorted labels) has the eigenvector 1_j / sqrt(n_j) with
    eigenvalue n_j; the n - J within-group contrasts have eigenvalue 0 and
    enter the likelihood through the complement Gram matrix (within-group
    centred cross-products).  Costs O(n) per vector.
    """

    def __init__(self, codes: np.ndarray, labels: np.ndarray) -> None:
        self.codes = np.asarray(codes, dtype=np.int64)
        self.labels = labels
        self.sizes = np.bincount(self.codes, minlength=len(labels)).astype(np.float64)
        self.d = np.ascontiguousarray(self.sizes)
        n = self.codes.shape[0]
        import scipy.sparse

        self._Dt = scipy.sparse.csr_matrix(
            (np.ones(n), (self.codes, np.arange(n))), shape=(len(labels), n)
        )

    @property
    def n_total(self) -> int:
        return int(self.codes.shape[0])

    def _sums(self, X: np.ndarray) -> np.ndarray:
        X2 = X if X.ndim == 2 else X[:, None]
        out = np.asarray(self._Dt @ X2)
        return out if X.ndim == 2 else out[:, 0]

    def _centre(self, X: np.ndarray) -> np.ndarray:
        means = self._sums(X) / (self.sizes if X.ndim == 1 else self.sizes[:, None])
        return X - means[self.codes]

    def rotate(self, X: np.ndarray) -> np.ndarray:
        scale = np.sqrt(self.sizes)
        return np.asfortranarray(self._sums(X) / (scale if X.ndim == 1 else scale[:, None]))

    def rotate_rows(self, X: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((self._sums(X) / np.sqrt(self.sizes)[:, None]).T)

    def complement_gram(self, V: np.ndarray) -> np.ndarray:
        Vc = self._centre(V)
        return np.ascontiguousarray(Vc.T @ Vc)

    def complement_rows(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        """(b, m): for each column x of X, x_c' [V_c[:, :c], x_c, V_c[:, c]]."""
        Xc = self._centre(X)
        Vc = self._centre(V)
        c = V.shape[1] - 1
        out = np.empty((X.shape[1], c + 2))
        out[:, :c] = Xc.T @ Vc[:, :c]
        out[:, c] = np.einsum("ij,ij->j", Xc, Xc)
        out[:, c + 1] = Xc.T @ Vc[:, c]
        return out

    def smooth(self, r: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """U diag(weights) U' r (zero weight on the complement)."""
        return (weights * self._sums(r) / self.sizes)[self.codes]

    def kernel_diag(self, weights: np.ndarray) -> np.ndarray:
        return (weights / self.sizes)[self.codes]


SpectralLike = Spectral | GroupSpectral


@dataclass
class NullModel:
    """A fitted null model, reusable by :func:`lmmscan.scan`.

    The mixed-model view: fixed effects ``beta`` (covariate columns in order,
    an added intercept last) with ``beta_se``, the random-effect variance
    ``vg``, the residual variance ``ve`` and ``lambda_ = vg / ve``, all for
    ``method`` (``"reml"``: ve = y'Py / (n - c), as GEMMA's log, lme4 and
    statsmodels; ``"ml"``: ve = y'Py / n).  ``pve`` and ``pve_se`` are
    GEMMA's (REML).  Log-likelihoods: ``loglik_reml`` is GEMMA's REML value,
    which includes +1/2 log|W'W|; ``loglik_ml`` is the ML value at
    ``lambda_mle``; ``loglik`` is the value lme4 and statsmodels report for
    ``method`` (their REML omits the 1/2 log|W'W| term).

    The hierarchical view (y | b ~ N(W a + D b, ve I), b ~ N(0, vg Sigma),
    flat prior on a): :meth:`random_effects` gives the posterior mean (the
    BLUP) and variance of each group or sample effect, :meth:`fitted` and
    :meth:`residuals` both levels, :meth:`fixed_effects_posterior` the
    posterior of a under a Gaussian prior.
    """

    method: str
    lambda_: float
    vg: float
    ve: float
    beta: np.ndarray
    beta_se: np.ndarray
    loglik: float
    pve: float
    pve_se: float
    loglik_reml: float
    loglik_ml: float
    lambda_reml: float
    lambda_mle: float
    analyzed: np.ndarray  # boolean mask over the input samples
    y: np.ndarray  # analysed phenotype
    W: np.ndarray  # analysed covariates (intercept appended if added)
    intercept_added: bool
    spectral: SpectralLike
    UtW: np.ndarray
    Uty: np.ndarray
    bounds: LambdaBounds
    fit: _core.NullFit = field(repr=False)
    complement: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_analyzed(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_covariates(self) -> int:
        return int(self.W.shape[1])

    @property
    def eigenvalues(self) -> np.ndarray:
        return self.spectral.d

    @property
    def eigenvectors(self) -> np.ndarray:
        if not isinstance(self.spectral, Spectral):
            raise AttributeError("a group model has no dense eigenvector matrix")
        return self.spectral.U

    # -- the hierarchical view -------------------------------------------------

    def _gls(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(h, A = W'H^-1 W, A^-1) at lambda_, H = lambda K + I."""
        h = 1.0 / (self.lambda_ * self.spectral.d + 1.0)
        A = self.UtW.T @ (h[:, None] * self.UtW)
        if self.complement is not None:
            A = A + self.complement[:-1, :-1]
        return h, A, np.linalg.inv(A)

    def fitted(self, level: str = "conditional") -> np.ndarray:
        """Fitted values of the analysed samples: ``"marginal"`` (W beta) or
        ``"conditional"`` (W beta plus the posterior mean of the random effect)."""
        marginal = self.W @ self.beta
        if level == "marginal":
            return marginal
        if level != "conditional":
            raise InputError(f"level must be 'marginal' or 'conditional', got {level!r}")
        return marginal + self._effect_mean()

    def residuals(self, level: str = "conditional") -> np.ndarray:
        """y minus :meth:`fitted` at that level."""
        return self.y - self.fitted(level)

    def _effect_mean(self) -> np.ndarray:
        lam, d = self.lambda_, self.spectral.d
        r = self.y - self.W @ self.beta
        return self.spectral.smooth(r, lam * d / (lam * d + 1.0))

    def random_effects(self) -> pd.DataFrame:
        """Posterior mean and variance of the random effects given the variance components.

        For a group model: one row per group (index: the sorted labels),
        b_j | y.  With a kinship: one row per analysed sample (index: its
        position among the input samples), g_i | y.  Columns: ``mean`` (the
        BLUP), ``var`` (posterior variance with the fixed effects integrated
        out under their flat prior) and ``var_given_beta`` (conditional on
        the fixed effects at their estimate: lme4's ``condVar``).
        """
        lam, vg = self.lambda_, self.vg
        d = self.spectral.d
        h, _, Ainv = self._gls()
        r = self.y - self.W @ self.beta
        if isinstance(self.spectral, GroupSpectral):
            sizes = self.spectral.sizes
            Utr = self.spectral.rotate(r)
            mean = lam * np.sqrt(sizes) * Utr / (1.0 + lam * sizes)
            cond = vg / (1.0 + lam * sizes)
            Q = np.sqrt(sizes)[:, None] * self.UtW / (1.0 + lam * sizes)[:, None]
            extra = vg * lam * np.einsum("jc,cd,jd->j", Q, Ainv, Q)
            index = pd.Index(self.spectral.labels, name="group")
        else:
            U = self.spectral.U
            mean = self._effect_mean()
            cond = vg * self.spectral.kernel_diag(d * h)
            Q = U @ ((d * h)[:, None] * self.UtW)
            extra = vg * lam * np.einsum("ic,cd,id->i", Q, Ainv, Q)
            index = pd.Index(np.flatnonzero(self.analyzed), name="sample")
        return pd.DataFrame(
            {"mean": mean, "var": cond + extra, "var_given_beta": cond}, index=index
        )

    def fixed_effects_posterior(
        self, prior_mean: float | np.ndarray = 0.0, prior_sd: float | np.ndarray = np.inf
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior (mean, covariance) of the fixed effects a ~ N(prior_mean, prior_sd^2 I).

        The variance components are held at their estimates (empirical
        Bayes).  With ``prior_sd = inf`` (the flat prior of the mixed model)
        this is (beta, ve (W'H^-1 W)^-1), the GLS estimate and its covariance.
        """
        h, A, _ = self._gls()
        b = self.UtW.T @ (h * self.Uty)
        if self.complement is not None:
            b = b + self.complement[:-1, -1]
        c = A.shape[0]
        sd = np.broadcast_to(np.asarray(prior_sd, dtype=np.float64), (c,))
        mu0 = np.broadcast_to(np.asarray(prior_mean, dtype=np.float64), (c,))
        if np.any(~(sd > 0)):
            raise InputError("prior_sd must be positive")
        prior_prec = np.where(np.isinf(sd), 0.0, 1.0 / np.where(np.isinf(sd), 1.0, sd) ** 2)
        precision = A / self.ve + np.diag(prior_prec)
        cov = np.linalg.inv(precision)
        mean = cov @ (b / self.ve + prior_prec * mu0)
        return mean, cov


def decompose_kinship(
    K: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    center: bool = True,
    overwrite_kinship: bool = False,
) -> Spectral:
    """The spectral decomposition lmmscan fits with: K restricted to ``mask``,
    double-centred (GEMMA) unless ``center=False``, tiny eigenvalues zeroed.

    One private copy of the analysed block is centred and handed to LAPACK
    to work in (no other n x n temporary).  Every path (fit_null, saved
    eigendecompositions, LOCO) goes through here, so they agree bitwise.

    ``overwrite_kinship=True`` (as scipy's ``overwrite_a``) lets the
    restriction, the centring and LAPACK work in K's own buffer instead of
    that copy: **K's contents are destroyed** (it holds no kinship
    afterwards; drop it).  Then only K's buffer and the eigenvectors exist
    (about 2 x 8n^2 bytes instead of 3); with dsyevd (:func:`eigh_driver`)
    the eigenvectors are computed in K's buffer itself, so never write into K
    afterwards.  K must be a writeable float64 array in C or Fortran order
    for that; any other K is copied as without the option.  The result is
    the same as without it.
    """
    if overwrite_kinship and _can_overwrite(K):
        Ka = _restrict_in_place(K, mask)
    elif mask is None or mask.all():
        Ka = np.array(K, dtype=np.float64, order="C")
    else:
        Ka = np.ascontiguousarray(K[np.ix_(mask, mask)], dtype=np.float64)
    if center:
        double_centre(Ka, overwrite=True)
    return Spectral.from_kinship(Ka, overwrite=True)


def _can_overwrite(K: object) -> bool:
    return (
        isinstance(K, np.ndarray)
        and K.dtype == np.float64
        and K.ndim == 2
        and K.flags.writeable
        and (K.flags.c_contiguous or K.flags.f_contiguous)
    )


def _restrict_in_place(K: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """K[mask][:, mask] as a C-ordered view of the start of K's own buffer.

    Row i of the result is written over K's buffer at i * m, at or before
    where K's row rows[i] starts (rows[i] >= i, n >= m); rows are gathered a
    chunk at a time before they are written, so nothing is overwritten before
    it is read.  A Fortran-ordered K is compacted as its C-ordered transpose,
    then transposed in place.  The values are exactly those of
    ``np.ascontiguousarray(K[np.ix_(mask, mask)])``, so the rest of the
    decomposition runs bit for bit as on that copy.
    """
    fortran = not K.flags.c_contiguous
    src = K.T if fortran else K
    if mask is None or mask.all():
        out = src
    else:
        rows = np.flatnonzero(mask)
        m = rows.shape[0]
        flat = src.reshape(-1)  # a view: src is C-contiguous
        step = max(1, (1 << 19) // max(1, m))  # at most 4 MB gathered at a time
        for i in range(0, m, step):
            chunk = src[np.ix_(rows[i : i + step], rows)]
            flat[i * m : i * m + chunk.size] = chunk.reshape(-1)
        out = flat[: m * m].reshape(m, m)
    if fortran:
        _transpose_in_place(out)
    return out


def _transpose_in_place(A: np.ndarray) -> None:
    """A <- A' for a square A, a band of rows at a time (O(band x n) scratch)."""
    m = A.shape[0]
    step = max(1, (1 << 19) // max(1, m))
    for i in range(0, m, step):
        j = min(m, i + step)
        upper = A[i:j, i:].copy()
        A[i:j, i:] = A[i:, i:j].T
        A[i:, i:j] = upper.T


def _group_codes(groups: object, mask: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = pd.Series(
        np.asarray(groups, dtype=object)
        if not isinstance(groups, pd.Series)
        else groups.to_numpy(dtype=object)
    )
    if labels.shape[0] != n:
        raise InputError(f"groups has {labels.shape[0]} labels but there are {n} samples")
    if labels.isna().any():
        first = int(np.flatnonzero(labels.isna().to_numpy())[0])
        raise InputError(f"groups has a missing label (sample {first})")
    try:
        uniq, codes = np.unique(labels.to_numpy()[mask], return_inverse=True)
    except TypeError:
        raise InputError("groups labels must be of one sortable type") from None
    if len(uniq) < 2:
        raise InputError(
            "groups has a single level among the analysed samples: the group variance "
            "is not identifiable"
        )
    return codes, uniq


def fit_null(
    y: object,
    covariates: object | None = None,
    *,
    kinship: object = None,
    groups: object = None,
    spectral: SpectralLike | None = None,
    method: str = "reml",
    center: bool = True,
    bounds: LambdaBounds | None = None,
    overwrite_kinship: bool = False,
) -> NullModel:
    """Fit the null linear mixed model y = W a + g + e, g ~ N(0, vg K), e ~ N(0, ve I).

    Parameters
    ----------
    y
        Phenotype, one value per sample, NaN for missing.
    covariates
        (samples, c) array or None; rows with any NaN are dropped.  A column
        of ones is appended (last) unless a column is constant.
    kinship
        (samples, samples) relatedness matrix over the same samples, e.g.
        from :func:`lmmscan.kinship`.  It is restricted to the analysed
        samples and (with ``center=True``, as GEMMA) double-centred.
    groups
        Instead of ``kinship``: one group label per sample; K = D D' (the
        random-intercept model of lme4 ``(1|group)`` and statsmodels
        MixedLM), fitted in O(n J) without an n x n matrix.
    spectral
        Instead of either: the eigendecomposition of the (restricted,
        centred) kinship of exactly the analysed samples, e.g.
        ``other_model.spectral`` of a phenotype with the same missingness.
    method
        ``"reml"`` or ``"ml"``: which estimate ``lambda_``, ``vg``, ``ve``,
        ``beta``, ``beta_se`` and ``loglik`` report.  Both likelihoods are
        always fitted (GEMMA needs both).
    bounds
        The lambda search range and grid.  Default: GEMMA's 1e-5, 1e5, 10 for
        a kinship; 1e-10, 1e10, 20 for groups, where a variance at the lower
        bound is set to exactly 0 when that is at least as likely, as lme4
        does.
    overwrite_kinship
        Let the fit restrict, centre and eigendecompose ``kinship`` in its
        own memory (as scipy's ``overwrite_a``): **the caller's kinship is
        destroyed** and must not be used afterwards.  It saves one n x n
        copy (peak about 2 x 8n^2 bytes instead of 3 x) when ``kinship``
        is a writeable float64 array in C or Fortran order; otherwise it is
        copied as usual.  The fitted model is the same either way.

    Returns a :class:`NullModel`, reusable by :func:`lmmscan.scan`.
    """
    if method not in ("reml", "ml"):
        raise InputError(f"method must be 'reml' or 'ml', got {method!r}")
    y_arr = np.asarray(y, dtype=np.float64)
    mask, y_an, W, _, intercept_added = analysed_samples(y_arr, covariates)
    given = sum(x is not None for x in (kinship, groups, spectral))
    if given != 1:
        raise InputError("give exactly one of kinship, groups or spectral")
    allow_zero = False
    if groups is not None:
        codes, labels = _group_codes(groups, mask, y_arr.shape[0])
        spectral = GroupSpectral(codes, labels)
        bounds = bounds or LambdaBounds(1e-10, 1e10, 20)
        allow_zero = True
    elif spectral is None:
        K = check_kinship(kinship, y_arr.shape[0])
        spectral = decompose_kinship(K, mask, center=center, overwrite_kinship=overwrite_kinship)
    elif spectral.n_total != int(mask.sum()):
        raise InputError(
            f"spectral has {spectral.n_total} samples but {int(mask.sum())} are analysed"
        )
    bounds = bounds or LambdaBounds()
    if np.ptp(y_an) == 0:
        raise InputError("y is constant on the analysed samples: there is no variance to fit")
    UtW = spectral.rotate(W)
    Uty = np.ascontiguousarray(spectral.rotate(y_an))
    comp = spectral.complement_gram(np.column_stack([W, y_an]))
    n_total = spectral.n_total if comp is not None else 0
    fit = _core.fit_null(
        spectral.d, UtW, Uty, bounds.l_min, bounds.l_max, bounds.n_region, n_total, comp
    )
    model = NullModel(
        method=method,
        lambda_=fit.lambda_remle,
        vg=fit.vg,
        ve=fit.ve,
        beta=np.asarray(fit.beta),
        beta_se=np.asarray(fit.beta_se),
        loglik=np.nan,
        pve=fit.pve,
        pve_se=fit.pve_se,
        loglik_reml=fit.logl_remle,
        loglik_ml=fit.logl_mle,
        lambda_reml=fit.lambda_remle,
        lambda_mle=fit.lambda_mle,
        analyzed=mask,
        y=y_an,
        W=W,
        intercept_added=intercept_added,
        spectral=spectral,
        UtW=UtW,
        Uty=Uty,
        bounds=bounds,
        fit=fit,
        complement=comp,
    )
    half_logdet_WtW = 0.5 * np.linalg.slogdet(W.T @ W)[1]
    if allow_zero:
        for which in ("reml", "ml"):
            _snap_to_zero(model, which, n_total)
    if method == "ml":
        model.lambda_, model.vg, model.ve = model.lambda_mle, fit.vg_mle, fit.ve_mle
        model.beta, model.beta_se = np.asarray(fit.beta_mle), np.asarray(fit.beta_se_mle)
        if model.lambda_mle == 0.0:
            _set_components(model, 0.0, model.n_analyzed)
        model.loglik = model.loglik_ml
    else:
        if model.lambda_reml == 0.0:
            _set_components(model, 0.0, model.n_analyzed - model.n_covariates)
        model.loglik = model.loglik_reml - half_logdet_WtW
    return model


def _snap_to_zero(model: NullModel, which: str, n_total: int) -> None:
    """A variance ratio at the lower bound becomes exactly 0 if that is as likely."""
    lam = model.lambda_reml if which == "reml" else model.lambda_mle
    if lam != model.bounds.l_min:
        return
    at0 = _core.null_loglik(model.spectral.d, model.UtW, model.Uty, 0.0, n_total, model.complement)[
        which
    ]
    current = model.loglik_reml if which == "reml" else model.loglik_ml
    if at0 >= current:
        if which == "reml":
            model.lambda_reml, model.loglik_reml = 0.0, at0
        else:
            model.lambda_mle, model.loglik_ml = 0.0, at0


def _set_components(model: NullModel, lam: float, denom: int) -> None:
    """vg, ve, beta, beta_se at lambda (used for lambda = 0: ordinary least squares)."""
    model.lambda_ = lam
    h, A, Ainv = model._gls()
    b = model.UtW.T @ (h * model.Uty)
    yy = model.Uty @ (h * model.Uty)
    if model.complement is not None:
        b = b + model.complement[:-1, -1]
        yy = yy + model.complement[-1, -1]
    model.beta = Ainv @ b
    model.ve = float(yy - b @ model.beta) / denom
    model.vg = lam * model.ve
    model.beta_se = np.sqrt(model.ve * np.diag(Ainv))
