"""The null model: samples as GEMMA aligns them, the spectral decomposition
of the kinship, and the REML / ML fit of y = W a + g + e, g ~ N(0, vg K)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from . import _core
from ._errors import InputError

EIGEN_ZERO = 1e-10  # GEMMA zeroes every eigenvalue below this


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
    if n_an < c + 2:
        raise InputError(
            f"{n_an} analysed samples but {c} covariate columns: need at least c + 2 = {c + 2}"
        )
    return mask, y[mask], W, cov, intercept_added


def check_kinship(K: object, n: int, name: str = "kinship") -> np.ndarray:
    """A validated (n, n) float64 kinship: square, finite, symmetric."""
    K = np.asarray(K, dtype=np.float64)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise InputError(f"{name} must be a square matrix, got shape {K.shape}")
    if K.shape[0] != n:
        raise InputError(f"{name} is {K.shape[0]} x {K.shape[1]} but there are {n} samples")
    if not np.isfinite(K).all():
        raise InputError(f"{name} contains NaN or infinite values")
    scale = float(np.abs(K).max()) if K.size else 0.0
    if not np.allclose(K, K.T, rtol=0.0, atol=1e-8 * max(scale, 1e-300)):
        raise InputError(f"{name} is not symmetric")
    return K


def double_centre(K: np.ndarray) -> np.ndarray:
    """(I - J/n) K (I - J/n), as GEMMA applies to every kinship it reads."""
    row = K.mean(axis=1)
    total = row.mean()
    Kc = K - row[:, None] - row[None, :] + total
    return 0.5 * (Kc + Kc.T)


@dataclass
class Spectral:
    """K = U diag(d) U' with eigenvalues below 1e-10 set to 0."""

    d: np.ndarray
    U: np.ndarray

    @classmethod
    def from_kinship(cls, K: np.ndarray) -> Spectral:
        d, U = scipy.linalg.eigh(K, driver="evr", overwrite_a=False, check_finite=False)
        d = np.where(d < EIGEN_ZERO, 0.0, d)
        return cls(d=np.ascontiguousarray(d), U=np.ascontiguousarray(U))

    def rotate(self, X: np.ndarray) -> np.ndarray:
        """U' X for X (n, k), returned (n, k) in Fortran order."""
        return np.asfortranarray(self.U.T @ X)

    def rotate_rows(self, X: np.ndarray) -> np.ndarray:
        """(U' X)' for X (n, b): one rotated column of X per row, C order."""
        return np.ascontiguousarray(X.T @ self.U)


@dataclass
class NullModel:
    """A fitted null model, reusable by :func:`lmmscan.scan`.

    Attributes follow GEMMA's log: ``lambda_`` (REML vg/ve), ``vg``, ``ve``
    (= yPy/(n - c) at the REML lambda), ``pve`` and ``pve_se``, the covariate
    effects ``beta`` and ``beta_se`` (covariate columns in order, an added
    intercept last), ``loglik_reml`` (including +1/2 log|W'W|, as GEMMA) and
    ``loglik_ml`` at the ML ``lambda_mle``.
    """

    lambda_: float
    vg: float
    ve: float
    pve: float
    pve_se: float
    beta: np.ndarray
    beta_se: np.ndarray
    loglik_reml: float
    loglik_ml: float
    lambda_mle: float
    analyzed: np.ndarray  # boolean mask over the input samples
    y: np.ndarray  # analysed phenotype
    W: np.ndarray  # analysed covariates (intercept appended if added)
    intercept_added: bool
    spectral: Spectral
    UtW: np.ndarray
    Uty: np.ndarray
    bounds: LambdaBounds
    fit: _core.NullFit = field(repr=False)

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
        return self.spectral.U


def _fit_spectral(
    y: np.ndarray,
    W: np.ndarray,
    spectral: Spectral,
    bounds: LambdaBounds,
) -> tuple[_core.NullFit, np.ndarray, np.ndarray]:
    UtW = spectral.rotate(W)
    Uty = np.ascontiguousarray(spectral.U.T @ y)
    fit = _core.fit_null(spectral.d, UtW, Uty, bounds.l_min, bounds.l_max, bounds.n_region)
    return fit, UtW, Uty


def fit_null(
    y: object,
    covariates: object | None = None,
    *,
    kinship: object = None,
    spectral: Spectral | None = None,
    bounds: LambdaBounds | None = None,
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
        samples and double-centred, as GEMMA does.
    spectral
        Instead of ``kinship``: the eigendecomposition of the (restricted,
        double-centred) kinship of exactly the analysed samples, e.g.
        ``other_model.spectral`` of a phenotype with the same missingness.
    bounds
        The lambda search range and grid (GEMMA's defaults 1e-5, 1e5, 10).

    Returns a :class:`NullModel` with GEMMA's REML and ML estimates and the
    eigendecomposition, so that :func:`lmmscan.scan` can reuse it.
    """
    bounds = bounds or LambdaBounds()
    y_arr = np.asarray(y, dtype=np.float64)
    mask, y_an, W, _, intercept_added = analysed_samples(y_arr, covariates)
    if spectral is None:
        if kinship is None:
            raise InputError("fit_null needs a kinship (or a spectral decomposition)")
        K = check_kinship(kinship, y_arr.shape[0])
        Kc = double_centre(K[np.ix_(mask, mask)])
        spectral = Spectral.from_kinship(Kc)
    elif spectral.d.shape[0] != int(mask.sum()):
        raise InputError(
            f"spectral has {spectral.d.shape[0]} samples but {int(mask.sum())} are analysed"
        )
    fit, UtW, Uty = _fit_spectral(y_an, W, spectral, bounds)
    return NullModel(
        lambda_=fit.lambda_remle,
        vg=fit.vg,
        ve=fit.ve,
        pve=fit.pve,
        pve_se=fit.pve_se,
        beta=np.asarray(fit.beta),
        beta_se=np.asarray(fit.beta_se),
        loglik_reml=fit.logl_remle,
        loglik_ml=fit.logl_mle,
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
    )
