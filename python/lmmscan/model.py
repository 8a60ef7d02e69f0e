"""The null-fit step: the REML / ML fit of y = W a + g + e, g ~ N(0, vg K),
on a spectral basis, and the fitted model in its two views (mixed-model
estimates; the hierarchical posterior of the random effects)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core
from ._errors import InputError, number, real_array
from .samples import (
    CONDITION_LIMIT,
    analysed_samples,
    check_same_rows,
    ill_conditioned,
    orthogonal_basis,
)
from .spectral import (
    GroupSpectral,
    LowRankSpectral,
    ReleasedSpectral,
    Spectral,
    SpectralBasis,
    check_kinship,
    decompose_kinship,
)

if TYPE_CHECKING:
    import pandas as pd


# the largest l_max taken: beyond it the likelihood's sums, where the weights
# 1 / (lambda d + 1) span more than a double's digits and the covariates'
# projection cancels the large ones, are rounding (on the demo study an l_max
# of 1e15 moved per-SNP p-values by 10^3.7, and 1e20 gave a false null
# optimum); lambda = 1e10 is a heritability of 1 - 1e-10
MAX_L_MAX = 1e10


@dataclass(frozen=True)
class LambdaBounds:
    """The range and grid of the lambda search (GEMMA's -lmin, -lmax, -region)."""

    l_min: float = 1e-5
    l_max: float = 1e5
    n_region: int = 10

    def __post_init__(self) -> None:
        # an infinite l_max gave lambda = inf, every SNP tested at the bound
        numbers = number(self.l_min) is not None and number(self.l_max) is not None
        if not numbers or not 0.0 < self.l_min < self.l_max < math.inf:
            raise InputError(
                f"LambdaBounds needs 0 < l_min < l_max < inf, got l_min={self.l_min!r}, "
                f"l_max={self.l_max!r}"
            )
        if self.l_max > MAX_L_MAX:
            raise InputError(too_large_l_max(self.l_max, "l_max"))
        if number(self.n_region, whole=True) is None:
            raise InputError(f"LambdaBounds' n_region must be an integer, got {self.n_region!r}")


def too_large_l_max(value: float, name: str) -> str:
    """The message for an upper lambda bound beyond MAX_L_MAX."""
    return (
        f"{name} {value:.12g} is beyond {MAX_L_MAX:g}: past it the likelihood is lost to "
        "rounding in double precision (false optima, p-values off by orders of magnitude); "
        f"lambda = {MAX_L_MAX:g} is already a heritability of 1 - 1e-10"
    )


def check_varies(y_analysed: np.ndarray, name: str = "", W: np.ndarray | None = None) -> None:
    """Refuse a phenotype constant on its analysed samples, or one their
    covariates ``W`` (if given) explain exactly (``name``: how a message
    names it, or "")."""
    where = f"{name}: " if name else ""
    if y_analysed.size and np.ptp(y_analysed) == 0:
        raise InputError(
            f"{where}y is constant on the analysed samples: there is no variance to fit"
        )
    if W is not None:
        s = _y_scale(y_analysed)  # as fit_null: the norms neither overflow nor underflow
        y = y_analysed if s == 1.0 else y_analysed * s
        _refuse_exact_fit(y, _off_span(W, y)[3], where)


def _off_span(W: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """(Q, R, Q'y, y - QQ'y) for W = QR."""
    Q, R = np.linalg.qr(W)
    coef = Q.T @ y
    return Q, R, coef, y - Q @ coef


def _refuse_exact_fit(y: np.ndarray, resid: np.ndarray, where: str) -> None:
    y_norm, r_norm = float(np.linalg.norm(y)), float(np.linalg.norm(resid))
    if r_norm <= EXACT_FIT * math.sqrt(y.shape[0]) * y_norm:
        raise InputError(
            f"{where}the covariates explain y exactly on the analysed samples (what is "
            f"left, {r_norm / y_norm:.1e} of y, is rounding): there is no variance to fit"
        )


def as_bounds(bounds: object) -> LambdaBounds | None:
    """``bounds`` as a LambdaBounds (a (l_min, l_max, n_region) tuple too), or
    None; anything else refused by name."""
    if bounds is None or isinstance(bounds, LambdaBounds):
        return bounds
    if isinstance(bounds, tuple | list) and len(bounds) == 3:
        return LambdaBounds(*bounds)
    raise InputError(f"bounds must be a LambdaBounds (or (l_min, l_max, n_region)), got {bounds!r}")


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
    spectral: SpectralBasis
    UtW: np.ndarray
    Uty: np.ndarray
    bounds: LambdaBounds
    fit: _core.NullFit = field(repr=False)
    complement: np.ndarray | None = field(default=None, repr=False)
    # y enters the core multiplied by this power of two (1.0 for ordinary y:
    # see _y_scale); Uty, complement and fit are in those units, every other
    # field in y's own
    y_scale: float = 1.0
    # the core's inputs when W or y is ill-conditioned (see _condition);
    # None: W, y, UtW, Uty and complement themselves
    conditioned: Conditioned | None = field(default=None, repr=False)

    @property
    def fit_W(self) -> np.ndarray:
        """The covariates the core fits and scans with (W, or a better
        conditioned basis of its span)."""
        return self.W if self.conditioned is None else self.conditioned.W

    @property
    def fit_y(self) -> np.ndarray:
        """The phenotype the core fits and scans, in its units (y, or its part
        off the covariates' span, times y_scale)."""
        if self.conditioned is not None:
            return self.conditioned.y
        return self.y if self.y_scale == 1.0 else self.y * self.y_scale

    @property
    def fit_rotated(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(UtW, Uty, complement) of :attr:`fit_W` and :attr:`fit_y`."""
        c = self.conditioned
        if c is None:
            return self.UtW, self.Uty, self.complement
        return c.UtW, c.Uty, c.complement

    @property
    def warnings(self) -> list[str]:
        """What makes this fit's numbers doubtful though they are GEMMA's: a
        lambda that ended on its search bound, a kinship zeroed away."""
        out = []
        b = self.bounds
        d = np.asarray(self.spectral.d)
        positive = d[d > 0]
        # an identity kinship (centred: its nonzero eigenvalues all 1, in every
        # direction but the covariates'): lambda only rescales y'Py, so the
        # likelihood hardly depends on it (helper 56: "explains almost all").
        # A household or rank-1 kinship has equal nonzero eigenvalues too, in
        # fewer directions, and a lambda its data determine.
        flat = (
            positive.size > 0
            and positive.size >= self.n_analyzed - self.n_covariates
            and positive.max() - positive.min() <= 1e-8 * positive.max()
        )
        for name, lam in (("REML", self.lambda_reml), ("ML", self.lambda_mle)):
            if lam == 0.0:  # a group model's exact 0, not a bound
                out.append(
                    f"lambda ({name}) = 0: the group variance is estimated at 0, a boundary "
                    "(singular) fit, as lme4's; the model is then ordinary least squares"
                )
                continue
            side = "lower" if lam <= b.l_min else "upper" if lam >= b.l_max else None
            if side is not None:
                # GEMMA's range, or the group model's (1e-10, 1e10): not the user's
                chosen = (b.l_min, b.l_max) not in ((1e-5, 1e5), (1e-10, 1e10))
                why = (
                    "a bound of the range chosen"
                    if chosen
                    else "the kinship's nonzero eigenvalues are all equal (an identity "
                    "kinship?): the likelihood hardly depends on lambda, which the data "
                    "do not determine"
                    if flat
                    else "the kinship explains "
                    + ("almost none" if side == "lower" else "almost all")
                    + " of the variance, or its scale is far from GEMMA's"
                )
                out.append(
                    f"lambda ({name}) = {lam:.6g} is on the {side} bound of its search "
                    f"[{b.l_min:g}, {b.l_max:g}]: the optimum may lie beyond it ({why}); "
                    "the tests use the bound, as GEMMA's do"
                )
        if self._reml_flat():
            out.append(
                "the REML likelihood is flat in lambda: the covariates span every direction "
                "of the kinship or the groups (a fixed effect for each group?), so the data "
                f"do not determine the variance components; vg = {self.vg:.6g} is arbitrary "
                "(lme4's is too), the fixed effects are not"
            )
        if d.size and not np.any(d > 0):
            out.append(
                "every eigenvalue of the kinship (after GEMMA's double-centring) is below "
                "1e-10 and set to 0: the model is ordinary least squares (a kinship whose "
                "entries are all equal centres to zero; one scaled far down loses its "
                "information)"
            )
        return out

    def _reml_flat(self) -> bool:
        """Whether tr(P K), with P the projection off the covariates, is
        rounding: the covariates span K's directions, and REML is the same at
        every lambda (helper 70: group dummies as covariates gave vg 0.003 on
        one data set, 48,441 on another, without a word).  Its terms are of
        the order of sum(d); 1e-9 of that is far above rounding and far
        below any real kinship's part outside the covariates."""
        d = np.asarray(self.spectral.d, dtype=np.float64)
        UtW, _, comp = self.fit_rotated
        if not d.size or not (d.sum() > 0) or UtW is None or UtW.shape[0] != d.size:
            return False
        c = UtW.shape[1]
        WtW = UtW.T @ UtW + (comp[:c, :c] if comp is not None else 0.0)
        try:
            inside = np.trace(np.linalg.solve(WtW, UtW.T @ (d[:, None] * UtW)))
        except np.linalg.LinAlgError:
            return False
        return bool(abs(d.sum() - inside) <= 1e-9 * d.sum())

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
        if not isinstance(self.spectral, Spectral | ReleasedSpectral):
            raise AttributeError("a group model has no dense eigenvector matrix")
        return self.spectral.U  # a ReleasedSpectral raises, saying why

    # -- the hierarchical view -------------------------------------------------

    def _gls(
        self, lam: float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        """(h, U'W, A = W'H^-1 W, A^-1, b = W'H^-1 y, y'H^-1 y) at ``lam``
        (default lambda_), H = lambda K + I, for the covariates and phenotype
        the core fits (:attr:`fit_W`, :attr:`fit_y`: map coefficients back
        with :meth:`_in_W`)."""
        UtW, Uty, complement = self.fit_rotated
        lam = self.lambda_ if lam is None else lam
        h = 1.0 / (lam * self.spectral.d + 1.0)
        A = UtW.T @ (h[:, None] * UtW)
        b = UtW.T @ (h * Uty)
        yy = Uty @ (h * Uty)
        if complement is not None:
            A = A + complement[:-1, :-1]
            b = b + complement[:-1, -1]
            yy = yy + complement[-1, -1]
        return h, UtW, A, np.linalg.inv(A), b, float(yy)

    def _in_W(self, beta: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients of :attr:`fit_W` for :attr:`fit_y` and their covariance
        (in the fit's units) as those of W for y, and their standard errors
        (y's units; divided after the square root, as the core's are: a
        variance of y * 1e160 overflows)."""
        s = self.y_scale
        c = self.conditioned
        if c is None:
            return beta / s, np.sqrt(np.diag(cov)) / s
        return c.to_W @ (beta + c.y_coef) / s, np.sqrt(np.diag(c.to_W @ cov @ c.to_W.T)) / s

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

    def _needs_eigenvectors(self) -> None:
        if isinstance(self.spectral, ReleasedSpectral):
            raise InputError(ReleasedSpectral.WHY)

    def without_eigenvectors(self) -> NullModel:
        """This model with its spectral basis reduced to the eigenvalues
        (:class:`lmmscan.spectral.ReleasedSpectral`): the fit's numbers, not
        the n x n eigenvectors behind its random effects."""
        if isinstance(self.spectral, ReleasedSpectral):
            return self
        released = ReleasedSpectral(np.asarray(self.spectral.d), int(self.spectral.n_total))
        return replace(self, spectral=released)

    def _check_variances(self, what: str) -> None:
        """Refuse ``what`` where vg or ve overflowed: y's scale is handled in
        the fit (its λ, pve and tests do not depend on it), but y near 1e200
        has variances near 1e400 (a singular matrix from numpy, helper 70)."""
        if not (np.isfinite(self.vg) and np.isfinite(self.ve)):
            raise InputError(
                f"{what} needs the variance components, which overflow a double at y's scale "
                f"(vg = {self.vg:.3g}, ve = {self.ve:.3g}): rescale y (the fit's λ, pve and "
                "the scan's tests do not depend on it)"
            )

    def _effect_mean(self) -> np.ndarray:
        self._needs_eigenvectors()
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
        self._needs_eigenvectors()
        self._check_variances("random_effects")
        lam, vg = self.lambda_, self.vg
        d = self.spectral.d
        import pandas as pd  # here, not at import: the command line never needs it

        h, UtW, _, Ainv, _, _ = self._gls()  # Q Ainv Q' is the same in any basis
        r = self.y - self.W @ self.beta
        if isinstance(self.spectral, GroupSpectral):
            sizes = self.spectral.sizes
            Utr = self.spectral.rotate(r)
            mean = lam * np.sqrt(sizes) * Utr / (1.0 + lam * sizes)
            cond = vg / (1.0 + lam * sizes)
            Q = np.sqrt(sizes)[:, None] * UtW / (1.0 + lam * sizes)[:, None]
            extra = vg * lam * np.einsum("jc,cd,jd->j", Q, Ainv, Q)
            index = pd.Index(self.spectral.labels, name="group")
        else:
            if not isinstance(self.spectral, Spectral | LowRankSpectral):
                raise InputError("random_effects needs a kinship, group or low-rank model")
            U = self.spectral.U
            mean = self._effect_mean()
            cond = vg * self.spectral.kernel_diag(d * h)
            Q = U @ ((d * h)[:, None] * UtW)
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
        self._check_variances("fixed_effects_posterior")
        _, _, A, _, b, _ = self._gls()
        c = A.shape[0]
        sd, mu0 = _prior(prior_sd, "prior_sd", c), _prior(prior_mean, "prior_mean", c)
        if np.any(~(sd > 0)):
            raise InputError(f"prior_sd must be positive (inf: a flat prior), got {prior_sd!r:.60}")
        if not np.isfinite(mu0).all():
            raise InputError(f"prior_mean must be finite, got {prior_mean!r:.60}")
        with np.errstate(over="ignore", divide="ignore"):  # refused below
            prior_prec = np.where(np.isinf(sd), 0.0, 1.0 / np.where(np.isinf(sd), 1.0, sd) ** 2)
        s = self.y_scale
        if self.conditioned is None:
            if s != 1.0:
                b = b / s
            precision = A / self.ve + np.diag(prior_prec)
            _check_prior_precision(precision, prior_sd)
            cov = np.linalg.inv(precision)
            mean = cov @ (b / self.ve + prior_prec * mu0)
            return mean, cov
        # in the fit's basis and units (a = to_W a_fit / s), then mapped back:
        # the prior on a_fit has precision to_W' P0 to_W / s^2, mean s to_W^-1 mu0
        T, y_coef = self.conditioned.to_W, self.conditioned.y_coef
        ve_fit = self.ve * s * s
        b = b + A @ y_coef  # fit_y's part on fit_W, taken out before the fit
        prior = T.T @ (prior_prec[:, None] * T) / s / s
        precision = A / ve_fit + prior
        _check_prior_precision(precision, prior_sd)
        cov_fit = np.linalg.inv(precision)
        mean_fit = cov_fit @ (b / ve_fit + T.T @ (prior_prec * mu0) / s)
        return T @ mean_fit / s, T @ cov_fit @ T.T / s / s


def _prior(value: object, name: str, c: int) -> np.ndarray:
    """A prior's mean or sd: one number, or one per fixed effect (``c``)."""
    arr = real_array(value, name)
    if arr.ndim > 1 or (arr.ndim == 1 and arr.size != c):
        raise InputError(
            f"{name} must be a number or {c} numbers (one per fixed effect: the covariates, "
            f"then the intercept if one was appended), got shape {arr.shape}"
        )
    return np.broadcast_to(arr, (c,))


def _check_prior_precision(precision: np.ndarray, prior_sd: object) -> None:
    """Refuse a prior so tight that 1 / prior_sd^2 overflows (NaN means)."""
    if not np.isfinite(precision).all():
        raise InputError(
            f"prior_sd {prior_sd!r:.60} is too small: 1 / prior_sd^2 overflows; a fixed "
            "effect known that well is an offset (subtract prior_mean times its column from y)"
        )


# The fit's weighted Gram products square a condition number: beyond
# samples.CONDITION_LIMIT (W, or y against its residual on W's span: y + 1e7
# put p off by 10^0.5, where GEMMA prints NaN) the core is given an orthogonal
# basis of W's span and y's least-squares residual on it (every test,
# likelihood and lambda depends on W only through its span and on y only
# through that residual).  Below it W and y go in as given, so tables stay
# GEMMA's bit for bit.
# y's residual on the covariates at or below this part of y (times sqrt(n))
# is rounding, not variance: refused (an exact fit gave negative variances,
# exit 0).  64 eps: a thousand times an exact fit's residual (~eps), while
# y + 1e11 with a spread of 1 (five digits left) is fitted.
EXACT_FIT = 64 * float(np.finfo(np.float64).eps)


@dataclass
class Conditioned:
    """The core's inputs for an ill-conditioned W or y (see CONDITION_LIMIT):
    ``W`` (n, c) spans W's columns, beta_W = ``to_W`` @ beta; ``y`` is y
    minus ``W @ y_coef``, both in the fit's units (times y_scale)."""

    W: np.ndarray
    to_W: np.ndarray
    y: np.ndarray
    y_coef: np.ndarray
    UtW: np.ndarray
    Uty: np.ndarray
    complement: np.ndarray | None


def _condition(W: np.ndarray, y: np.ndarray) -> tuple | None:
    """(W_fit, to_W, y_fit, y_coef) when W or y is past CONDITION_LIMIT, else
    None; an exact fit of y by W refused."""
    resid = _off_span(W, y)[3]
    _refuse_exact_fit(y, resid, "")
    if not ill_conditioned(W) and np.linalg.norm(y) <= CONDITION_LIMIT * np.linalg.norm(resid):
        return None
    W_fit, to_W, k = orthogonal_basis(W)
    # y's median taken off along the intercept first (exact near it, as W's
    # columns in orthogonal_basis), then its residual on W_fit
    y0 = float(np.median(y)) if k is not None else 0.0
    yc = y - y0
    coef = W_fit.T @ yc / W.shape[0]
    y_fit = yc - W_fit @ coef
    if k is not None:  # y0 times the intercept, in W_fit's coordinates
        coef = coef + np.linalg.solve(to_W, np.eye(W.shape[1])[k]) * (y0 / W[0, k])
    return W_fit, to_W, y_fit, coef


def _group_codes(groups: object, mask: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    # a typed array the caller made stays typed; anything else (a list, which
    # numpy would make one type: NaN into "nan", 1 and "1" into one label)
    # becomes Python objects
    if isinstance(groups, pd.Series):
        labels = groups.to_numpy()
    elif isinstance(groups, np.ndarray):
        labels = groups
    else:
        try:
            labels = np.asarray(groups, dtype=object)
        except ValueError as exc:  # ragged sequences
            raise InputError(f"groups must be one label per sample: {exc}") from None
    if labels.ndim != 1:
        raise InputError(
            f"groups must be one label per sample (a 1-D array, list or Series), got shape "
            f"{labels.shape}"
        )
    if labels.shape[0] != n:
        raise InputError(f"groups has {labels.shape[0]} labels but there are {n} samples")
    typed = labels.dtype.kind in "biufUS"
    missing = np.isnan(labels) if labels.dtype.kind == "f" else None
    if not typed:
        labels = labels.astype(object, copy=False)
        missing = pd.isna(labels)
    # (a sample left out by a missing y or covariate needs no group: lme4
    # drops it, and so does this fit)
    if missing is not None and (missing & mask).any():
        first = int(np.flatnonzero(missing & mask)[0])
        raise InputError(f"groups has a missing label (sample {first})")
    try:
        # numbers or text in a typed array are sorted as such, not as a
        # million Python objects (np.unique's argsort: 0.83 of a 1.6 s fit at
        # n = 10^6): the same groups, order and (as Python objects) labels
        uniq, codes = np.unique(labels[mask], return_inverse=True)
    except TypeError:
        raise InputError("groups labels must be of one sortable type") from None
    if typed:
        uniq = uniq.astype(object)
    if len(uniq) < 2:
        raise InputError(
            "groups has a single level among the analysed samples: the group variance "
            "is not identifiable"
        )
    if len(uniq) == codes.size:  # K = I: the likelihood is flat in lambda
        raise InputError(
            f"groups has {len(uniq)} levels for {codes.size} analysed samples, one each: "
            "the group variance cannot be told from the residual variance (lme4 also "
            "refuses as many levels as observations)"
        )
    return codes, uniq


def fit_null(
    y: object,
    covariates: object | None = None,
    *,
    kinship: object = None,
    groups: object = None,
    spectral: SpectralBasis | None = None,
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
        samples and (with ``center=True``, as GEMMA) double-centred.  A
        :func:`lmmscan.low_rank_kinship` is decomposed from its factor, as
        :func:`lmmscan.fit_null_lowrank` does.
    groups
        Instead of ``kinship``: one group label per sample; K = D D' (the
        random-intercept model of lme4 ``(1|group)`` and statsmodels
        MixedLM), fitted in O(n J) without an n x n matrix.
    spectral
        Instead of either: the eigendecomposition of the (restricted,
        centred) kinship of exactly the analysed samples, e.g.
        ``other_model.spectral`` of a phenotype with the same missingness
        (a group model's is searched as ``groups`` is).
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
    check_center(center)
    bounds = as_bounds(bounds)
    check_basis_arguments(kinship, spectral)
    low_rank = callable(getattr(kinship, "spectral", None))  # low_rank_kinship()'s
    check_same_rows(y=y, covariates=covariates, kinship=kinship, groups=groups)
    y_arr = real_array(y, "y")
    if covariates is not None:  # before the rank check, which would overflow
        _check_covariate_scale(real_array(covariates, "covariates"))
    mask, y_an, W, _, intercept_added = analysed_samples(y_arr, covariates)
    given = sum(x is not None for x in (kinship, groups, spectral))
    if given != 1:
        raise InputError("give exactly one of kinship, groups or spectral")
    allow_zero = False
    built = spectral is None  # made here (it records its samples once fitted)
    if groups is not None:
        codes, labels = _group_codes(groups, mask, y_arr.shape[0])
        spectral = GroupSpectral(codes, labels)
        # 0 is a group variance's estimate where it beats the default range's
        # lower end; a range the caller chose is the range searched
        allow_zero = bounds is None
        bounds = bounds or LambdaBounds(1e-10, 1e10, 20)
    elif low_rank:  # its analysed rows decomposed, no n x n matrix (fit_null_lowrank)
        low: Any = kinship
        if low.n_samples != mask.shape[0]:
            raise InputError(
                f"the low-rank kinship has {low.n_samples} samples but y has {mask.shape[0]}"
            )
        spectral = low.spectral(mask)
    elif spectral is None:
        K = check_kinship(kinship, y_arr.shape[0])
        spectral = decompose_kinship(K, mask, center=center, overwrite_kinship=overwrite_kinship)
    elif spectral.n_total != int(mask.sum()):
        raise InputError(
            f"spectral has {spectral.n_total} samples but {int(mask.sum())} are analysed"
        )
    else:
        made_for = getattr(spectral, "analysed_mask", None)
        if made_for is not None and made_for.shape == mask.shape and (made_for != mask).any():
            first = int(np.flatnonzero(made_for != mask)[0])
            raise InputError(
                "spectral was decomposed for other analysed samples than this y's (sample "
                f"{first} is {'not ' if made_for[first] else ''}analysed here), though as many: "
                "a phenotype with other missing values needs its own kinship= fit"
            )
        if isinstance(spectral, GroupSpectral):  # another group model's: the same search
            allow_zero = bounds is None
            bounds = bounds or LambdaBounds(1e-10, 1e10, 20)
    bounds = bounds or LambdaBounds()
    check_varies(y_an)
    s = _y_scale(y_an)
    ys = y_an if s == 1.0 else y_an * s
    ill = _condition(W, ys)  # on ys: its norms neither overflow nor underflow
    UtW = spectral.rotate(W)
    Uty = np.ascontiguousarray(spectral.rotate(ys))
    comp = spectral.complement_gram(np.column_stack([W, ys]))
    conditioned = None
    if ill is not None:
        W_fit, to_W, y_fit, y_coef = ill
        conditioned = Conditioned(
            W_fit, to_W, y_fit, y_coef, spectral.rotate(W_fit),
            np.ascontiguousarray(spectral.rotate(y_fit)),
            spectral.complement_gram(np.column_stack([W_fit, y_fit])),
        )  # fmt: skip
        fit_UtW, fit_Uty, fit_comp = conditioned.UtW, conditioned.Uty, conditioned.complement
    else:
        fit_UtW, fit_Uty, fit_comp = UtW, Uty, comp
    n_total = spectral.n_total if comp is not None else 0
    fit = _core.fit_null(
        spectral.d, fit_UtW, fit_Uty, bounds.l_min, bounds.l_max, bounds.n_region, n_total,
        fit_comp,
    )  # fmt: skip
    n, c = int(y_an.shape[0]), int(W.shape[1])
    model = NullModel(
        method=method,
        lambda_=fit.lambda_remle,
        vg=fit.vg / s / s,
        ve=fit.ve / s / s,
        beta=np.asarray(fit.beta) / s,
        beta_se=np.asarray(fit.beta_se) / s,
        loglik=np.nan,
        pve=fit.pve,
        pve_se=fit.pve_se,
        loglik_reml=fit.logl_remle + log_scale_shift(s, n - c),
        loglik_ml=fit.logl_mle + log_scale_shift(s, n),
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
        y_scale=s,
        conditioned=conditioned,
    )
    if conditioned is None:
        half_logdet_WtW = 0.5 * np.linalg.slogdet(W.T @ W)[1]
    else:  # from R of W = QR: W'W would square W's condition number
        _coefficients_in_W(model, fit)
        R = np.linalg.qr(W, mode="r")
        half_logdet_WtW = float(np.sum(np.log(np.abs(np.diag(R)))))
    if allow_zero:
        for which in ("reml", "ml"):
            _snap_to_zero(model, which, n_total)
        if model.lambda_reml == 0.0:  # pve is REML's: vg = 0, none explained
            model.pve = 0.0
    if method == "ml":
        model.lambda_, model.vg, model.ve = model.lambda_mle, fit.vg_mle / s / s, fit.ve_mle / s / s
        if conditioned is None:
            model.beta = np.asarray(fit.beta_mle) / s
            model.beta_se = np.asarray(fit.beta_se_mle) / s
        else:
            _coefficients_in_W(model, fit, ml=True)
        if model.lambda_mle == 0.0:
            _set_components(model, 0.0, model.n_analyzed)
        model.loglik = model.loglik_ml
    else:
        if model.lambda_reml == 0.0:
            _set_components(model, 0.0, model.n_analyzed - model.n_covariates)
        model.loglik = model.loglik_reml - half_logdet_WtW
    if built:  # which samples it was made for, refused to a fit of others
        with contextlib.suppress(AttributeError):
            setattr(spectral, "analysed_mask", mask)  # noqa: B010 (not every basis has it)
    return model


def check_center(center: object) -> None:
    """``center`` is True or False (or 1 or 0): "no" was true, and centred."""
    if isinstance(center, bool | np.bool_) or (
        isinstance(center, int | np.integer) and center in (0, 1)
    ):
        return
    raise InputError(f"center must be True or False, got {center!r}")


def check_basis_arguments(kinship: object, spectral: object) -> None:
    """An eigendecomposition, a model or a low-rank kinship where fit_null
    takes a kinship or a basis: one line, not an AttributeError.  (An
    :class:`lmmscan.Eigendecomposition` is known by its ``spectral_for``:
    lmmscan.eigen imports this module.)"""
    for name, value in (("kinship", kinship), ("spectral", spectral)):
        if callable(getattr(value, "spectral_for", None)):
            raise InputError(
                f"{name} is an Eigendecomposition: lmmscan.scan takes it as eigen=, and "
                "fit_null as spectral=eig.spectral_for(sample_ids) (its basis for exactly "
                "the analysed samples)"
            )
    if spectral is None:
        return
    if isinstance(spectral, ReleasedSpectral):
        raise InputError(
            "spectral is a model's released basis (without_eigenvectors()): it has no "
            "eigenvectors to fit with"
        )
    if not all(hasattr(spectral, name) for name in ("d", "n_total", "rotate")):
        raise InputError(
            f"spectral must be a fitted model's .spectral or an Eigendecomposition's "
            f"spectral_for(); got {type(spectral).__name__}"
        )


def _coefficients_in_W(model: NullModel, fit: _core.NullFit, ml: bool = False) -> None:
    """beta and beta_se of W's columns from a conditioned fit's (its basis's,
    for y's residual): beta_W = to_W (beta + y_coef), cov_W = to_W cov to_W'."""
    Ainv = model._gls(fit.lambda_mle if ml else fit.lambda_remle)[3]
    ve_fit = fit.ve_mle if ml else fit.ve  # in the fit's units
    model.beta, model.beta_se = model._in_W(
        np.asarray(fit.beta_mle if ml else fit.beta), ve_fit * Ainv
    )


# y is rescaled (by a power of two, exact in binary floating point) only
# outside [2^-256, 2^256] (about 1e-77 .. 1e77): there its squares, summed
# over the samples and weighted, would overflow or underflow.  Inside, y goes
# in as given, so tables stay GEMMA's bit for bit.
_Y_SAFE_EXPONENT = 256


def _y_scale(y: np.ndarray) -> float:
    """The power of two that brings max |y| into [0.5, 1), or 1.0 when y is
    safely inside double range already."""
    top = float(np.max(np.abs(y)))
    if 0.0 < top < np.finfo(np.float64).tiny:  # its scale, 2^-exponent, would overflow
        raise InputError(
            f"y's largest magnitude is {top:.3g}, below the smallest normal double "
            "(2.2e-308), where digits are lost: rescale it"
        )
    exponent = math.frexp(top)[1]
    if -_Y_SAFE_EXPONENT <= exponent <= _Y_SAFE_EXPONENT:
        return 1.0
    return math.ldexp(1.0, -exponent)


def log_scale_shift(s: float, df: int) -> float:
    """What a log-likelihood of y scaled by s lacks from y's own: y'Py scales
    by s^2, and df/2 log(y'Py) enters with a minus sign."""
    return 0.0 if s == 1.0 else df * math.log(s)


def _check_covariate_scale(W: np.ndarray) -> None:
    """Refuse covariates whose squares, summed over the samples, overflow, or
    whose coefficients' variances do."""
    W = W.reshape(W.shape[0], -1)
    n = max(1, W.shape[0])
    limit = math.sqrt(np.finfo(np.float64).max / n)
    big = np.nanmax(np.abs(np.where(np.isfinite(W), W, 0.0)), axis=0, initial=0.0)
    if np.any(big > limit):
        k = int(np.argmax(big > limit))
        raise InputError(
            f"covariates column {k + 1} has a value of magnitude {float(big[k]):.3g}: beyond "
            f"{limit:.3g} (sqrt(max double / n)) its squares overflow; rescale it"
        )
    # a column this small has a coefficient's variance beyond double range
    # (beta_se was inf, with a RuntimeWarning), or squares that underflow to 0
    # (it was called zero on every sample)
    small = 1.0 / math.sqrt(np.finfo(np.float64).max)
    tiny = (big > 0.0) & (big < small)
    if np.any(tiny):
        k = int(np.argmax(tiny))
        raise InputError(
            f"covariates column {k + 1} has values of magnitude at most {float(big[k]):.3g}: "
            f"below {small:.3g} (1 / sqrt(max double)) its coefficient's variance overflows; "
            "rescale it"
        )


def _snap_to_zero(model: NullModel, which: str, n_total: int) -> None:
    """A variance ratio at the lower bound becomes exactly 0 if that is as likely."""
    lam = model.lambda_reml if which == "reml" else model.lambda_mle
    if lam != model.bounds.l_min:
        return
    UtW, Uty, complement = model.fit_rotated
    at0 = _core.null_loglik(model.spectral.d, UtW, Uty, 0.0, n_total, complement)[which]
    n, c = model.n_analyzed, model.n_covariates
    at0 += log_scale_shift(model.y_scale, n - c if which == "reml" else n)
    current = model.loglik_reml if which == "reml" else model.loglik_ml
    if at0 >= current:
        if which == "reml":
            model.lambda_reml, model.loglik_reml = 0.0, at0
        else:
            model.lambda_mle, model.loglik_ml = 0.0, at0


def _set_components(model: NullModel, lam: float, denom: int) -> None:
    """vg, ve, beta, beta_se at lambda (used for lambda = 0: ordinary least squares)."""
    model.lambda_ = lam
    _, _, _, Ainv, b, yy = model._gls()
    s = model.y_scale
    model.ve = float(yy - b @ (Ainv @ b)) / denom / s / s
    model.vg = lam * model.ve
    model.beta, model.beta_se = model._in_W(Ainv @ b, model.ve * s * s * Ainv)
