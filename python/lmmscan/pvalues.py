"""p-values and their logarithms: one owner for the arithmetic that turns
the core's test statistics into GEMMA's columns, the tables' -log10 p, the
genomic inflation factor and the significance threshold.

p_wald and p_score come from F(1, n - c - 1) statistics and p_lrt from the
chi-square(1) statistic 2 (logl_H1 - logl_H0), with scipy.special's tails.
Below 1e-300 a p-value is no longer a normal double, so its logarithm is
computed from the statistic (:func:`log_f1_sf`, :func:`log_chi2_1_sf`): the
tables print such p from -log10 p, never as 0.

scipy.special is imported where it is used: the command line loads this
module to write tables and should not pay scipy's ~0.2 s import before it
needs it.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np

from . import _core
from ._threads import run_parts

TEST_COLUMNS: dict[str, list[str]] = {
    "wald": ["beta", "se", "logl_H1", "l_remle", "p_wald"],
    "lrt": ["logl_H1", "l_mle", "p_lrt"],
    "score": ["beta", "se", "p_score"],
    "all": ["beta", "se", "logl_H1", "l_remle", "l_mle", "p_wald", "p_lrt", "p_score"],
}
TINY_P = 1e-300  # below this, p is printed from log10 p
GENOME_WIDE = 5e-8
_RES = {name: i for i, name in enumerate(_core.RESULT_COLUMNS)}


def statistics(raw: np.ndarray, test: str, logl_mle_null: float) -> dict[str, np.ndarray]:
    """The test statistics behind the p-values, keyed by p-value column.

    p_wald and p_score: F(1, n - c - 1) statistics; p_lrt: the chi-square(1)
    statistic 2 (logl_H1 - logl_H0).  Output code uses them to print
    -log10 p in log space where p itself underflows.
    """
    col = {name: raw[:, i] for name, i in _RES.items()}
    out: dict[str, np.ndarray] = {}
    if test in ("wald", "all"):
        out["p_wald"] = col["f_wald"]
    if test in ("lrt", "all"):
        out["p_lrt"] = 2.0 * (col["logl_mle"] - logl_mle_null)
    if test in ("score", "all"):
        out["p_score"] = col["f_score"]
    return out


# values per part below which a tail is not split over threads: a part of
# 1,024 takes 0.2 ms (fdtrc) to 1 ms (chdtrc), a hand-off ~0.05 ms
_SPLIT_VALUES = 1024


def _elementwise(f, x: np.ndarray, threads: int, *lead: float) -> np.ndarray:
    """The ufunc ``f(*lead, x)`` on ``threads`` threads, each on a slice of x
    (scipy.special's ufuncs release the GIL): the same values as one call.
    The calling thread takes the first slice."""
    x = np.asarray(x, dtype=np.float64)
    parts = min(threads, x.size // _SPLIT_VALUES)
    if parts < 2:
        return f(*lead, x)
    out = np.empty_like(x)
    cuts = np.linspace(0, x.size, parts + 1).astype(int)
    slices = [slice(cuts[k], cuts[k + 1]) for k in range(parts)]
    run_parts([partial(f, *lead, x[s], out=out[s]) for s in slices])
    return out


def p_values(
    raw: np.ndarray,
    test: str,
    df: int,
    logl_mle_null: float,
    stats: dict[str, np.ndarray] | None = None,
    threads: int = 1,
) -> dict[str, np.ndarray]:
    """GEMMA's columns from the core's raw results (b, RESULT_COLUMNS); ``stats``:
    :func:`statistics` of the same results, when the caller has them.  The
    tails are computed on ``threads`` threads (the same values)."""
    import scipy.special

    col = {name: raw[:, i] for name, i in _RES.items()}
    if stats is None:
        stats = statistics(raw, test, logl_mle_null)
    out: dict[str, np.ndarray] = {}
    if test in ("wald", "all"):
        out["beta"], out["se"] = col["beta"], col["se"]
    elif test == "score":
        out["beta"], out["se"] = col["beta_score"], col["se_score"]
    if test == "wald":
        out["logl_H1"] = col["logl_reml"]
    elif test in ("lrt", "all"):
        out["logl_H1"] = col["logl_mle"]
    if test in ("wald", "all"):
        out["l_remle"] = col["l_remle"]
    if test in ("lrt", "all"):
        out["l_mle"] = col["l_mle"]
    for name in ("p_wald", "p_score"):
        if name in stats:
            out[name] = _elementwise(scipy.special.fdtrc, stats[name], threads, 1.0, float(df))
    if "p_lrt" in stats:
        stat = stats["p_lrt"]
        tail = _elementwise(scipy.special.chdtrc, np.maximum(stat, 0.0), threads, 1.0)
        out["p_lrt"] = np.where(stat < 0, 1.0, tail)
    return {name: out[name] for name in TEST_COLUMNS[test]}


def log_f1_sf(F: np.ndarray, df: float) -> np.ndarray:
    """Natural log of the upper tail of F(1, df) at F, accurate far below 1e-300.

    p = I_x(df/2, 1/2) with x = df / (df + F), written as
    x^a (1-x)^b / (a B(a, b)) 2F1(a + b, 1; a + 1; x), whose series converges
    fast for the small x where p underflows.
    """
    import scipy.special

    F = np.asarray(F, dtype=np.float64)
    a, b = 0.5 * df, 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        x = df / (df + F)
        direct = np.log(scipy.special.fdtrc(1.0, df, F))
        xs = np.where(x < 0.5, x, 0.25)  # the series is for the far tail only
        series = (
            a * np.log(xs)
            + b * np.log1p(-xs)
            - np.log(a)
            - scipy.special.betaln(a, b)
            + np.log(scipy.special.hyp2f1(a + b, 1.0, a + 1.0, xs))
        )
    return np.where(x < 0.5, series, direct)


def log_chi2_1_sf(stat: np.ndarray) -> np.ndarray:
    """Natural log of the upper tail of chi-square(1) at stat."""
    import scipy.special

    stat = np.asarray(stat, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.log(2.0) + scipy.special.log_ndtr(-np.sqrt(np.maximum(stat, 0.0)))


def neg_log10_p(p: np.ndarray, log_p_tail: np.ndarray | None) -> np.ndarray:
    """-log10 p: from p where it is a normal number, from ln p (the tail) below 1e-300."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = -np.log10(p) + 0.0  # + 0.0: p = 1 gives 0, never -0
    if log_p_tail is not None:
        tiny = (p < TINY_P) & np.isfinite(log_p_tail)
        out[tiny] = -log_p_tail[tiny] / math.log(10.0)
    return out


def test_statistics(
    cols: dict, test: str, df: int, n: int, loglik_mle_null: float | np.ndarray
) -> dict[str, np.ndarray]:
    """The statistic behind each p column, recovered from the printed columns
    (``loglik_mle_null``: one value, or each row's, as LOCO's chromosomes have).

    Wald: F = (beta / se)^2; LRT: 2 (logl_H1 - logl_null); score (``test ==
    "score"`` only: with "all" beta/se are the Wald ones): with W = (beta/se)^2
    at the null lambda, F_score = n W / (df + W).
    """
    out: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        if "p_wald" in cols:
            out["p_wald"] = (cols["beta"] / cols["se"]) ** 2
        if "p_lrt" in cols:
            out["p_lrt"] = 2.0 * (cols["logl_H1"] - loglik_mle_null)
        if test == "score":
            w = (cols["beta"] / cols["se"]) ** 2
            out["p_score"] = n * w / (df + w)
    return out


def log_tails(stats: dict[str, np.ndarray], df: int) -> dict[str, np.ndarray]:
    out = {}
    for name, stat in stats.items():
        out[name] = log_chi2_1_sf(stat) if name == "p_lrt" else log_f1_sf(stat, df)
    return out


def neg_log10_ps(
    cols: dict, stats: dict[str, np.ndarray], df: int, names: list[str]
) -> dict[str, np.ndarray]:
    """:func:`neg_log10_p` of each p column ``names`` of ``cols``, the tail of
    its statistic in ``stats`` (if any) computed only where p is below
    TINY_P, the only place it is used: the same values as
    ``neg_log10_p(cols[name], log_tails(stats, df)[name])``."""
    out = {}
    for name in names:
        p = np.asarray(cols[name], dtype=np.float64)
        stat = stats.get(name)
        tiny = np.flatnonzero(p < TINY_P) if stat is not None else np.zeros(0, dtype=np.intp)
        tail = None
        if tiny.size:
            tail = np.full(p.shape, np.nan)
            tail[tiny] = log_tails({name: np.asarray(stat)[tiny]}, df)[name]
        out[name] = neg_log10_p(p, tail)
    return out


def lambda_gc(pvalues: np.ndarray) -> float:
    """Genomic inflation factor: median chi-square(1) statistic / 0.4549."""
    import scipy.special

    p = np.asarray(pvalues, dtype=np.float64)
    p = p[np.isfinite(p) & (p >= 0) & (p <= 1)]
    if p.size == 0:
        return float("nan")
    # the statistic falls as p rises, so the median statistic is that of the
    # median p (an O(n) selection instead of n inverse-chi-square calls)
    lo, hi = np.partition(p, [(p.size - 1) // 2, p.size // 2])[[(p.size - 1) // 2, p.size // 2]]
    stat = 0.5 * (scipy.special.chdtri(1, lo) + scipy.special.chdtri(1, hi))
    return float(stat / scipy.special.chdtri(1, 0.5))


# Why a SNP's test has no p-value (its columns are NaN), as untestable_reasons
# counts them.
UNTESTABLE = {
    "collinear": "the SNP lies in the span of the covariates (1 - R^2 below 1e-11: "
    "fewer than ~5 of its digits survive removing them); every test is NaN",
    "exact_fit": "with the SNP the covariates fit the phenotype exactly to rounding (the "
    "residual variance is 0 or negative): se and p_wald are NaN; the LRT still ranks it",
    "no_statistic": "the test statistic is not finite (NaN or infinite): that p is NaN",
    "reml_flat": "the kinship lies in the span of the covariates and the SNP (a rank-1 "
    "kinship v v' and a SNP affine in v; clones and a family SNP): REML is flat in lambda, "
    "so the Wald test is not determined: beta, se, l_remle and p_wald are NaN, as GEMMA "
    "prints them; the LRT and the score test still rank it",
}
# 1 - R^2 of a SNP on the covariates below which its residual is rounding:
# the relative error of x'Px is ~ eps / (1 - R^2), here ~2e-5
COLLINEAR_1_MINUS_R2 = 1e-11


def untestable(
    cols: dict, stats: dict[str, np.ndarray], test: str, collinear: np.ndarray | None = None
) -> dict:
    """GEMMA's columns with every test that cannot be computed set to NaN, so
    that no p-value of 0 (or of a statistic that is NaN or infinite) is
    reported: the rows of ``collinear`` SNPs entirely, the Wald test where se
    is not a positive number, any p whose statistic is not finite.  Ordinary
    rows are untouched.  :func:`untestable_reasons` counts them."""
    out = dict(cols)
    bad_any = np.zeros(next(iter(stats.values())).shape if stats else 0, dtype=bool)
    if collinear is not None and collinear.any():
        for name in TEST_COLUMNS[test]:
            if not name.startswith("l_"):  # GEMMA prints the lambdas of such a SNP
                out[name] = np.where(collinear, np.nan, out[name])
        bad_any = collinear
    if "p_wald" in out:
        se = out["se"]
        with np.errstate(invalid="ignore"):
            bad = ~(se > 0) | ~np.isfinite(se) | ~np.isfinite(stats["p_wald"]) | bad_any
        if bad.any():
            out["se"] = np.where(bad, np.nan, se)
            out["p_wald"] = np.where(bad, np.nan, out["p_wald"])
    for name in ("p_lrt", "p_score"):
        if name in out:
            bad = ~np.isfinite(stats[name]) | bad_any
            if bad.any():
                out[name] = np.where(bad, np.nan, out[name])
    return out


def untestable_reasons(cols, statistics: dict[str, np.ndarray] | None = None) -> dict[str, int]:
    """How many rows of a scan's columns (a dict of arrays or a table) have a
    NaN p-value, by reason (the keys of UNTESTABLE); reasons with no row are
    left out.  ``statistics`` (the scan's, row for row): a table without beta
    (the LRT's) tells a collinear SNP, whose statistic is a number, from one
    whose statistic is not; without them its NaN logl_H1 is taken as
    collinear."""
    p_names = [name for name in ("p_wald", "p_lrt", "p_score") if name in cols]
    if not p_names:
        return {}
    nan = {name: np.isnan(np.asarray(cols[name], dtype=np.float64)) for name in p_names}
    every = np.logical_and.reduce([nan[name] for name in p_names])
    if "beta" in cols:
        collinear = every & np.isnan(np.asarray(cols["beta"], dtype=np.float64))
    elif statistics is not None and "p_lrt" in statistics:
        collinear = every & np.isfinite(np.asarray(statistics["p_lrt"], dtype=np.float64))
    else:
        collinear = every & np.isnan(np.asarray(cols["logl_H1"], dtype=np.float64))
    # (a collinear SNP keeps its l_remle, as GEMMA prints it; only a flat
    # REML leaves it NaN)
    flat = np.zeros_like(collinear)
    if "p_wald" in nan and "l_remle" in cols:
        flat = nan["p_wald"] & np.isnan(np.asarray(cols["l_remle"], dtype=np.float64))
        collinear &= ~flat
    counts = {"collinear": int(collinear.sum()), "reml_flat": int(flat.sum())}
    if "p_wald" in nan:
        counts["exact_fit"] = int((nan["p_wald"] & ~collinear & ~flat).sum())
    other = np.zeros_like(collinear)
    for name in p_names:
        if name != "p_wald":
            other |= nan[name] & ~collinear
    counts["no_statistic"] = int(other.sum())
    return {k: v for k, v in counts.items() if v}
