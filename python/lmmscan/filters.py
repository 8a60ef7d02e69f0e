"""GEMMA's per-SNP filters and mean imputation (reference section 1.2-1.3).

All statistics are over the samples given (GEMMA: the analysed ones).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._errors import InputError

FILTER_NAMES = ("miss", "maf", "monomorphic", "r2")
# every filter in GEMMA's order; "hwe" is counted only when the filter is on
# (GEMMA's -hwe is off by default), so that its key appears only then
FILTER_ORDER = ("miss", "maf", "monomorphic", "hwe", "r2")
# LOCO's SNPs on no chromosome (a BIMBAM SNP the annotation does not list),
# counted with the filters when there are some, before them
UNPLACED = "unplaced"


@dataclass
class FilterCounts:
    """How many SNPs each filter removed (a SNP counts for the first it fails)."""

    total: int = 0
    kept: int = 0
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILTER_NAMES, 0))

    def add(self, other: FilterCounts) -> None:
        self.total += other.total
        self.kept += other.kept
        merged = dict(self.removed)
        for k, v in other.removed.items():
            merged[k] = merged.get(k, 0) + v
        self.removed = {k: merged[k] for k in (UNPLACED, *FILTER_ORDER) if k in merged}

    def removed_text(self) -> str:
        """ "miss 0, maf 60, ...": what each filter removed, for messages."""
        return ", ".join(f"{k} {v}" for k, v in self.removed.items())


def gemma_filter(
    X: np.ndarray,
    *,
    maf: float | None = 0.01,
    miss: float = 0.05,
    W: np.ndarray | None = None,
    r2: float = 0.9999,
    hwe: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, FilterCounts]:
    """Which SNPs (columns of X) GEMMA analyses.

    maf: exclude af < maf or af > 1 - maf (strict); None or a negative
    value disables it (GEMMA's -notsnp).  miss: exclude n_miss / n > miss.
    Monomorphic SNPs (all non-missing values equal) are always excluded.
    r2: with more than one covariate column W, exclude SNPs whose uncentred
    R^2 on W (missing set to the mean) exceeds r2 (an ill-conditioned W comes
    as :func:`lmmscan.samples.r2_basis` gives it, made once by the caller).  hwe: exclude SNPs
    whose exact Hardy-Weinberg p-value is below hwe (0: off; also off
    without the maf filter, as GEMMA's -hwe; see :func:`hwe_pvalues`).
    Returns (keep, n_miss, af, counts).
    """
    keep, n_miss, af, counts, _ = filter_impute(
        X, maf=maf, miss=miss, W=W, r2=r2, hwe=hwe, impute=False
    )
    return keep, n_miss, af, counts


class Scratch:
    """Reusable buffers for :func:`filter_impute` (one block's worth, grown on demand).

    Blocks are tens of MB: a fresh array of that size is new memory from the
    kernel each time (page faults on every first touch), so the per-block
    buffers are kept.  Not thread-safe: one per thread.
    """

    def __init__(self) -> None:
        self._bufs: dict[str, np.ndarray] = {}

    def get(self, name: str, size: int, dtype: type) -> np.ndarray:
        buf = self._bufs.get(name)
        if buf is None or buf.size < size:
            self._bufs.pop(name, None)
            buf = np.empty(max(size, 1), dtype=dtype)
            self._bufs[name] = buf
        return buf[:size]


def _shaped(flat: np.ndarray, n: int, b: int, fortran: bool) -> np.ndarray:
    """A flat buffer as (n, b) in C or Fortran order."""
    return flat.reshape(b, n).T if fortran else flat.reshape(n, b)


_VERDICTS = ("miss", "maf", "monomorphic")  # the C++ kernel's verdicts 1, 2, 3


def filter_impute(
    X: np.ndarray,
    *,
    maf: float | None = 0.01,
    miss: float = 0.05,
    W: np.ndarray | None = None,
    r2: float = 0.9999,
    hwe: float = 0.0,
    impute: bool = True,
    scratch: Scratch | None = None,
    threads: int = 1,
    dtype: type = np.float64,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, FilterCounts, np.ndarray | None]:
    """:func:`gemma_filter` and the mean imputation of the kept SNPs together.

    Returns (keep, n_miss, af, counts, Xk): Xk (n, kept) is the kept
    columns of X with missing values set to 2 af, in X's memory order (C
    unless X is Fortran-ordered; None without ``impute``).  The miss, maf
    and monomorphic filters and the imputation are two passes over X in
    C++ (``_core.filter_impute``, on ``threads`` threads; the results do not
    depend on them); the r2 check uses each kept SNP's x'x and W'x, which
    the imputation pass sums while the SNP is in the cache.
    With ``scratch``, Xk is a view of a buffer that the next call with the
    same scratch overwrites.  X is not modified.  With ``impute``, a value
    whose square would overflow raises InputError (:func:`check_genotype_scale`).
    ``dtype=np.float32``: Xk in float32, each value rounded from the double
    one as ``astype`` would (the filters and the r2 check see the double
    values), written by the imputation pass itself (a Fortran-ordered X
    then has no float64 copy).
    """
    from . import _core

    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be samples x SNPs, got shape {X.shape}")
    if not (X.flags.c_contiguous or X.flags.f_contiguous):
        X = np.ascontiguousarray(X)
    n, b = X.shape
    fortran = X.flags.f_contiguous and not X.flags.c_contiguous
    scratch = scratch or Scratch()
    check_r2 = W is not None and W.shape[1] > 1
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype!r}")
    single = dtype == np.float32 and impute
    out = work = None
    if single:
        out = scratch.get("imputed float32", n * b, np.float32)
        if not fortran:  # a row-major block is imputed in double, then rounded
            work = scratch.get("imputed", n * b, np.float64)
    elif impute or check_r2:
        out = scratch.get("imputed", n * b, np.float64)
    # with the r2 filter, the kept SNPs' x'x, W'x and max |x| come from the
    # imputation pass (no more passes over the block)
    found = _core.filter_impute(
        X,
        -1.0 if maf is None or maf < 0 else float(maf),
        float(miss),
        out,
        threads,
        np.asfortranarray(W, dtype=np.float64) if check_r2 and W is not None else None,
        work,
    )
    n_miss, af, verdict = found[:3]
    # (x'x, W'x, max |x|) of each kept SNP, with W
    products: tuple[np.ndarray, np.ndarray, np.ndarray] | None = (
        found[3] if len(found) > 3 else None
    )
    counts = FilterCounts(total=b)
    for code, name in enumerate(_VERDICTS, start=1):
        counts.removed[name] = int(np.count_nonzero(verdict == code))
    keep = verdict == 0
    k = int(np.count_nonzero(keep))
    Xk = _shaped(out[: n * k], n, k, fortran) if out is not None else None
    if hwe_on(hwe, maf):
        counts.removed = {name: counts.removed.get(name, 0) for name in FILTER_ORDER}
        if k:
            kept = np.flatnonzero(keep)
            bad_k = hwe_pvalues(X)[kept] < hwe
            if bad_k.any():
                counts.removed["hwe"] = int(bad_k.sum())
                keep[kept[bad_k]] = False
                if Xk is not None:
                    Xk = np.array(Xk[:, ~bad_k], order="F" if fortran else "C")
                if products is not None:
                    products = (products[0][~bad_k], products[1][:, ~bad_k], products[2][~bad_k])
                k = int(np.count_nonzero(keep))
    largest = None
    if k and products is not None and W is not None:  # products: only with the r2 filter
        v_x, WtX, amax = products
        v_w = np.einsum("ij,ij->j", WtX, np.linalg.solve(W.T @ W, WtX))
        with np.errstate(invalid="ignore", divide="ignore"):
            bad_k = v_w / v_x > r2
        if bad_k.any():
            counts.removed["r2"] = int(bad_k.sum())
            keep[np.flatnonzero(keep)[bad_k]] = False
            amax = amax[~bad_k]
            if impute and Xk is not None:
                Xk = np.array(Xk[:, ~bad_k], order="F" if fortran else "C")
        largest = float(amax.max(initial=0.0))
    counts.kept = int(keep.sum())
    if impute and Xk is not None:
        check_genotype_scale(Xk, largest)
    return keep, n_miss, af, counts, Xk if impute else None


def check_genotype_scale(Xk: np.ndarray, largest: float | None = None) -> None:
    """Refuse genotype values whose squares, summed over the samples, overflow
    (x'x, x'H^-1x: every test of the SNP would be NaN).  ``largest``: the
    block's max |x| when known (:func:`filter_impute` has it with the r2
    filter); else max and min, not abs: no temporary of the block's size.
    A float32 block (single precision) must also hold its values: one
    beyond float32's range became inf."""
    if Xk.size == 0:
        return
    limit = math.sqrt(np.finfo(np.float64).max / max(1, Xk.shape[0]))
    big = largest if largest is not None else max(float(Xk.max()), -float(Xk.min()))
    single = float(np.finfo(np.float32).max)
    if Xk.dtype == np.float32 and big > single:  # inf: rounded to float32 from beyond it
        raise InputError(
            f"genotypes have a value of magnitude {big:.3g}: beyond single precision's "
            f"range ({single:.3g}; dosages are 0 to 2); scan them in double precision"
        )
    if big > limit:
        raise InputError(
            f"genotypes have a value of magnitude {big:.3g}: beyond {limit:.3g} "
            "(sqrt(max double / n)) its square overflows (dosages are 0 to 2)"
        )


def hwe_on(hwe: float | None, maf: float | None) -> bool:
    """GEMMA applies -hwe only when it is not 0 and the maf filter is on."""
    return bool(hwe) and not (maf is None or maf < 0)


def hwe_pvalues(X: np.ndarray) -> np.ndarray:
    """The exact Hardy-Weinberg p-value of each column of X (samples x SNPs,
    NaN missing; Wigginton, Cutler and Abecasis 2005), over the non-missing
    values binned as GEMMA bins BIMBAM dosages: 0 <= x <= 0.5, 0.5 < x < 1.5
    and 1.5 <= x <= 2 (hard calls 0, 1, 2 fall in their own class)."""
    from . import _core

    hom1 = np.count_nonzero((X >= 0.0) & (X <= 0.5), axis=0).astype(np.int64)
    het = np.count_nonzero((X > 0.5) & (X < 1.5), axis=0).astype(np.int64)
    hom2 = np.count_nonzero((X >= 1.5) & (X <= 2.0), axis=0).astype(np.int64)
    return np.asarray(_core.hwe_exact(hom1, het, hom2))


def impute_mean(X: np.ndarray, af: np.ndarray) -> np.ndarray:
    """X with missing entries replaced by the column mean 2*af (a copy if needed)."""
    missing = np.isnan(X)
    if not missing.any():
        return X
    X = np.array(X, dtype=np.float64, order="C")
    cols = np.nonzero(missing)[1]
    X[missing] = 2.0 * af[cols]
    return X


def filters_to_relax(removed: dict[str, int]) -> str:
    """The flags of the filters that removed SNPs ("--r2", "--maf and --miss"),
    for a "no SNP left" message; monomorphic SNPs no flag brings back."""
    flags = [
        f"--{name}" for name, k in removed.items() if k and name not in ("monomorphic", UNPLACED)
    ]
    if not flags:
        return "no filter flag brings them back (every SNP is monomorphic)"
    listed = flags[0] if len(flags) == 1 else f"{', '.join(flags[:-1])} and {flags[-1]}"
    return f"relax {listed}"


def no_snp_left(counts: FilterCounts, what: str) -> str:
    """The message for filters that left no SNP: the counts and what to relax."""
    return (
        f"no SNP passed the filters ({counts.removed_text()} of {counts.total}): {what}; "
        f"{filters_to_relax(counts.removed)}"
    )
