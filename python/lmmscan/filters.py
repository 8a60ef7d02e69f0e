"""GEMMA's per-SNP filters and mean imputation (reference section 1.2-1.3).

All statistics are over the samples given (GEMMA: the analysed ones).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FILTER_NAMES = ("miss", "maf", "monomorphic", "r2")


@dataclass
class FilterCounts:
    """How many SNPs each filter removed (a SNP counts for the first it fails)."""

    total: int = 0
    kept: int = 0
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILTER_NAMES, 0))

    def add(self, other: FilterCounts) -> None:
        self.total += other.total
        self.kept += other.kept
        for k, v in other.removed.items():
            self.removed[k] += v


def allele_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n_miss, af) per column of X (samples x SNPs, NaN missing).

    af = sum / (2 (n - n_miss)): the frequency of the counted allele,
    unfolded, as GEMMA prints it (NaN when every call is missing).
    """
    missing = np.isnan(X)
    n_miss = missing.sum(axis=0)
    n_obs = X.shape[0] - n_miss
    with np.errstate(invalid="ignore", divide="ignore"):
        af = np.where(missing, 0.0, X).sum(axis=0) / (2.0 * n_obs)
    return n_miss, af


def gemma_filter(
    X: np.ndarray,
    *,
    maf: float | None = 0.01,
    miss: float = 0.05,
    W: np.ndarray | None = None,
    r2: float = 0.9999,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, FilterCounts]:
    """Which SNPs (columns of X) GEMMA analyses.

    maf: exclude af < maf or af > 1 - maf (strict); None or a negative
    value disables it (GEMMA's -notsnp).  miss: exclude n_miss / n > miss.
    Monomorphic SNPs (all non-missing values equal) are always excluded.
    r2: with more than one covariate column W, exclude SNPs whose uncentred
    R^2 on W (missing set to the mean) exceeds r2.
    Returns (keep, n_miss, af, counts).
    """
    n, b = X.shape
    n_miss, af = allele_stats(X)
    counts = FilterCounts(total=b)
    keep = np.ones(b, dtype=bool)

    def drop(mask: np.ndarray, name: str) -> None:
        newly = mask & keep
        counts.removed[name] += int(newly.sum())
        keep[newly] = False

    drop(n_miss / n > miss, "miss")
    if maf is not None and maf >= 0:
        with np.errstate(invalid="ignore"):
            drop(~((af >= maf) & (af <= 1.0 - maf)), "maf")
    with np.errstate(invalid="ignore"), _quiet_nan():
        lo = np.nanmin(X, axis=0)
        hi = np.nanmax(X, axis=0)
    drop(~(hi > lo), "monomorphic")
    if W is not None and W.shape[1] > 1 and keep.any():
        idx = np.flatnonzero(keep)
        Xk = impute_mean(X[:, idx], af[idx])
        v_x = np.einsum("ij,ij->j", Xk, Xk)
        WtX = W.T @ Xk
        v_w = np.einsum("ij,ij->j", WtX, np.linalg.solve(W.T @ W, WtX))
        bad = np.zeros(b, dtype=bool)
        bad[idx] = v_w / v_x > r2
        drop(bad, "r2")
    counts.kept = int(keep.sum())
    return keep, n_miss, af, counts


def impute_mean(X: np.ndarray, af: np.ndarray) -> np.ndarray:
    """X with missing entries replaced by the column mean 2*af (a copy if needed)."""
    missing = np.isnan(X)
    if not missing.any():
        return X
    X = np.array(X, dtype=np.float64, order="C")
    cols = np.nonzero(missing)[1]
    X[missing] = 2.0 * af[cols]
    return X


class _quiet_nan:
    """Silence numpy's 'All-NaN slice' RuntimeWarning (strict test runs)."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)
