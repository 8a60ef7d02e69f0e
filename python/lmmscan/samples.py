"""The samples step: which individuals a phenotype analyses (GEMMA's rule),
its covariate matrix, and phenotypes grouped by their analysed individuals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import InputError, plural, real_array


class CovariateError(InputError):
    """Bad covariates (their file is at fault, on the analysed samples of a
    phenotype): :func:`analyse` names the covariate file when it is given."""


def as_sample_mask(selection: object, n: int, name: str) -> np.ndarray:
    """A boolean mask over n samples from a boolean mask or integer indices.

    Indices must lie in 0..n-1, each once: a 0/1 integer mask was taken as
    the indices {0, 1}, a negative index counted from the end, and a float
    was truncated, each without a word."""
    sel = np.asarray(selection)
    if sel.dtype == bool:
        if sel.shape != (n,):
            raise InputError(f"{name} as a mask must have {n} entries, got shape {sel.shape}")
        return sel
    if sel.dtype.kind not in "iu" or sel.ndim != 1:
        raise InputError(
            f"{name} must be a boolean mask or 1-D integer indices, got {sel.dtype} of shape "
            f"{sel.shape}"
        )
    if sel.size and (sel.min() < 0 or sel.max() >= n):
        raise InputError(f"{name} holds indices outside 0..{n - 1}")
    if np.unique(sel).size != sel.size:
        raise InputError(
            f"{name} names a sample twice (a 0/1 mask must be booleans: np.asarray(x, bool))"
        )
    mask = np.zeros(n, dtype=bool)
    mask[sel] = True
    return mask


def loaded_pandas() -> Any:
    """pandas if this process has imported it, else None (an object can be a
    pandas one only then, and lmmscan does not import it to find out).  A
    pandas another thread is still importing is None too: its half-made
    module has no Series yet (two scans started at once on two threads)."""
    import sys

    pd = sys.modules.get("pandas")
    if pd is None or getattr(getattr(pd, "__spec__", None), "_initializing", False):
        return None
    return pd


def check_same_rows(**objects: object) -> None:
    """Refuse pandas inputs (Series, DataFrames) whose rows are labelled in
    different orders.  lmmscan matches rows by position, so a phenotype
    Series sorted otherwise than the genotypes' DataFrame gave every sample
    another's value, silently.  A default index (0, 1, ...) says nothing and
    is not compared, unless another object is labelled by those integers in
    another order, as an array or a list is then refused beside it; a
    kinship DataFrame's columns must be its index."""
    pd = loaded_pandas()
    if pd is None:  # nothing here can be a pandas object
        return
    labelled, positions, arrays = [], [], []
    for name, obj in objects.items():
        if not isinstance(obj, pd.Series | pd.DataFrame):
            # an array or a list: rows by position (not a genotype file, whose
            # sample IDs may be those integers: check_labels_follow_samples)
            if isinstance(obj, np.ndarray | list | tuple):
                arrays.append(name)
            continue
        index = obj.index
        default = index.equals(pd.RangeIndex(len(index)))  # 0, 1, ...: positions
        if default:
            positions.append((name, index))
        if name == "kinship" and isinstance(obj, pd.DataFrame):
            # as text: a CSV read back gives numeric IDs an int index, text columns
            columns = obj.columns
            if (
                not columns.astype(str).equals(index.astype(str))
                if not default
                else _reorders_positions(columns) and not columns.equals(index)
            ):
                raise InputError(
                    "kinship is a DataFrame whose columns are not its index (rows and columns "
                    "in the same order): lmmscan matches them by position"
                )
        if not default:
            labelled.append((name, index))
    # ... but it is the labels 0, 1, ... to an object labelled by a reordering
    # of them (a DataFrame sorted by a column): helper 49's fits used such
    # covariates, groups or kinship beside a default-indexed y, silently
    reordered = [name for name, index in labelled if _reorders_positions(index)]
    if positions and reordered:
        name, index = positions[0]
        labelled.insert(0, (name, index))
    for (a, first), (b, second) in zip(labelled, labelled[1:], strict=False):
        if not first.equals(second):
            raise InputError(
                f"{a} and {b} are pandas objects whose rows are labelled in different "
                "orders: lmmscan matches rows by position, not by label; reindex them to "
                "one order (or pass arrays)"
            )
    if reordered and arrays:
        # ... and so is an input with no labels beside it (helper 70: a numpy
        # y beside groups from a sorted frame fitted vg 0.000 for 0.830)
        raise InputError(
            f"{reordered[0]} is a pandas object whose rows are labelled 0 .. n-1 in another "
            f"order, beside {arrays[0]}, an array: lmmscan matches rows by position, not by "
            f"label; put {reordered[0]} in {arrays[0]}'s order (sort_index() if its labels "
            "are the rows' positions there, reset_index(drop=True) if its rows are already "
            "in that order), or pass arrays"
        )


def _reorders_positions(index: object) -> bool:
    """Whether a pandas index holds exactly the integers 0 .. n-1, in some order."""
    values = np.asarray(index)
    if values.ndim != 1 or values.dtype.kind not in "iu" or values.size == 0:
        return False
    return bool(np.array_equal(np.sort(values), np.arange(values.size)))


def check_labels_follow_samples(source: object, **objects: object) -> None:
    """Refuse a pandas ``y``, ``covariates`` or ``kinship`` whose rows are
    labelled by the genotype file's sample IDs (IID, or FID:IID) in another
    order than the file's: rows are matched by position, so a phenotype
    Series sorted otherwise gave every sample another's value, silently.
    Labels that are not the file's IDs say nothing and are not compared."""
    pd = loaded_pandas()
    if pd is None:
        return
    labelled = [
        (name, obj.index)
        for name, obj in objects.items()
        if isinstance(obj, pd.Series | pd.DataFrame)
        and not obj.index.equals(pd.RangeIndex(len(obj.index)))
    ]
    samples = getattr(source, "samples", None) if labelled else None
    if samples is None or not hasattr(samples, "columns") or "iid" not in samples.columns:
        return
    iid = samples["iid"].astype(str).to_numpy()
    orders = [iid]
    if "fid" in samples.columns:
        orders.append((samples["fid"].astype(str) + ":" + samples["iid"].astype(str)).to_numpy())
    for name, index in labelled:
        if index.nlevels == 2:  # (FID, IID)
            labels = np.array([f"{a}:{b}" for a, b in index], dtype=object).astype(str)
        else:
            labels = index.astype(str).to_numpy()
        for ids in orders:
            if labels.size == ids.size and not np.array_equal(labels, ids):
                if set(labels.tolist()) == set(ids.tolist()):
                    raise InputError(
                        f"{name} is labelled by the genotypes' sample IDs in another order: "
                        "lmmscan matches rows by position, not by label; reindex it to the "
                        "genotypes' order (their .samples) or pass arrays"
                    )


def analysed_samples(
    y: object, covariates: object | None, n: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """GEMMA's sample handling (reference section 1.1).

    Returns (mask, y_analysed, W, W_full_rows, intercept_added): samples with
    a missing phenotype or any missing covariate are dropped; when no
    covariate column is constant on the analysed samples a column of ones is
    appended last; without covariates W is a column of ones.
    """
    y = real_array(y, "y")
    if y.ndim != 1:
        raise InputError(f"y must be 1-D (one value per sample), got shape {y.shape}")
    if n is not None and y.shape[0] != n:
        raise InputError(f"y has {y.shape[0]} values but there are {n} samples")
    if y.shape[0] == 0:
        raise InputError("y is empty: give one value per sample")
    if np.isinf(y).any():
        raise InputError("y contains infinite values (use NaN for missing)")
    mask = ~np.isnan(y)
    if covariates is not None:
        cov = real_array(covariates, "covariates")
        if cov.ndim == 1:
            cov = cov[:, None]
        if cov.ndim != 2 or cov.shape[0] != y.shape[0]:
            raise CovariateError(f"covariates must have shape ({y.shape[0]}, c), got {cov.shape}")
        if np.isinf(cov).any():
            raise CovariateError("covariates contain infinite values (use NaN for missing)")
        _check_squares(cov, "covariate column")
        mask &= ~np.isnan(cov).any(axis=1)
    else:
        cov = np.ones((y.shape[0], 0))
    if not mask.any():
        if covariates is not None and (~np.isnan(y)).any():  # the covariates' file is at fault
            raise CovariateError(
                "every sample with a phenotype has a missing covariate: nothing to analyse"
            )
        raise InputError("every sample has a missing phenotype or covariate: nothing to analyse")
    W = cov[mask]
    intercept_added = False
    if W.shape[1] == 0 or not (W.max(axis=0) == W.min(axis=0)).any():
        W = np.column_stack([W, np.ones(W.shape[0])])
        intercept_added = True
    n_an, c = W.shape
    # before the rank check: its decomposition of n x c would be for nothing
    if n_an < c + 2:
        few = CovariateError if covariates is not None and c > 1 else InputError
        raise few(
            f"{plural(n_an, 'analysed sample')} but {plural(c, 'covariate column')}: need at "
            f"least c + 2 = {c + 2}"
        )
    _check_full_rank(W, intercept_added)
    return mask, y[mask], W, cov, intercept_added


# beyond this a value's square, summed over up to 1e7 samples, overflows
HUGE = 1e150


def _check_squares(values: np.ndarray, what: str) -> None:
    """Refuse a value whose square overflows in the sums of squares (numpy
    would warn, then give nan or a wrong reason); ``values`` (samples, k).
    Covariates only: y is rescaled by the fit instead (its units change no
    test, see :func:`lmmscan.model.fit_null`)."""
    with np.errstate(invalid="ignore"):
        huge = np.abs(values) > HUGE
    if huge.any():
        i, j = np.argwhere(huge)[0]
        raise CovariateError(
            f"{what} {j + 1} has a value of {values[i, j]:.6g} (sample {i + 1}): beyond "
            f"±{HUGE:.0e} its square overflows; rescale it"
        )


def _check_full_rank(W: np.ndarray, intercept_added: bool) -> None:
    """Refuse covariates that are linearly dependent (GEMMA would divide by ~0).

    Column j is named when it is the first whose prefix W[:, :j] (columns
    scaled to unit norm) has a smallest singular value below 1e-10 of its
    largest.  One QR of W gives every prefix's singular values (those of
    R[:j, :j]); the prefix test is monotone in j, so a rank-deficient W is
    bisected on small j x j matrices.
    """
    scale = np.linalg.norm(W, axis=0)
    if np.any(scale == 0):
        j = int(np.flatnonzero(scale == 0)[0])
        raise CovariateError(f"covariate column {j + 1} is zero on every analysed sample")
    R: np.ndarray = np.linalg.qr(W / scale, mode="r")  # type: ignore[assignment]

    def deficient(j: int) -> bool:
        s = np.linalg.svd(R[:j, :j], compute_uv=False)
        return bool(s[-1] < 1e-10 * s[0])

    c = W.shape[1]
    if not deficient(c):
        return
    lo, hi = 1, c  # the first deficient prefix is in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if deficient(mid):
            hi = mid
        else:
            lo = mid + 1
    j = hi
    what = "the added intercept" if intercept_added and j == c else f"column {j}"
    raise CovariateError(
        f"covariates are collinear: {what} is a linear combination of the columns "
        "before it (on the analysed samples)"
    )


def groups_by_samples(masks: list[np.ndarray]) -> list[list[int]]:
    """Indices of ``masks`` grouped by equal analysed individuals, in order of
    first appearance: the phenotypes of a group share one kinship
    restriction, one eigendecomposition and one rotation of every block."""
    groups: dict[bytes, list[int]] = {}
    for i, mask in enumerate(masks):
        groups.setdefault(np.packbits(mask).tobytes(), []).append(i)
    return list(groups.values())


@dataclass
class Analysed:
    """One phenotype with GEMMA's analysed individuals (see :func:`analysed_samples`)."""

    name: str  # how messages name it
    y: np.ndarray  # every sample's value, NaN missing
    covariates: object | None  # every sample's rows, as given
    mask: np.ndarray  # the analysed samples
    W: np.ndarray  # their covariate matrix, intercept appended if added


def analyse(
    Y: object,
    covariates: object | None,
    names: list[str] | None = None,
    covariate_name: str | None = None,
) -> list[Analysed]:
    """Each column of Y (samples, p) with its analysed samples.  An error
    names the phenotype (``names``; for several unnamed ones "phenotype 1",
    "phenotype 2", ...), or, for one in the covariates, ``covariate_name``
    (their file) when given."""
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2:
        raise InputError(f"y must be 1-D or 2-D (samples x phenotypes), got shape {Y.shape}")
    if Y.shape[1] == 0:
        raise InputError(f"y has shape {Y.shape}: no phenotype column")
    prefix = names is not None or Y.shape[1] > 1
    names = names or ([f"phenotype {k + 1}" for k in range(Y.shape[1])] if prefix else [""])
    out = []
    for k, name in enumerate(names):
        y = Y[:, k]
        try:
            mask, _, W, _, _ = analysed_samples(y, covariates)
        except CovariateError as exc:
            if covariate_name is None:
                if not prefix:
                    raise
                raise InputError(f"{name}: {exc}") from None
            on = f" (on the samples analysed for {name})" if prefix else ""
            raise InputError(f"{exc}{on}", path=covariate_name) from None
        except InputError as exc:
            if not prefix:
                raise
            raise InputError(f"{name}: {exc}") from None
        out.append(Analysed(name, y, covariates, mask, W))
    return out


# Gram products (W'H^-1 W, the r2 filter's W'W) square a condition number:
# a covariate far from its part off the others' span (x + 1e7 beside the
# intercept, a date in YYYYMMDD beside x) lost the tests' digits, and one
# whose root mean square is beyond 1e+-30 mixed scales past double's range
# in them (x * 1e100: lambda on its bound, p off by 10^1.2).  Such a W is
# replaced where it enters the numbers by an orthogonal basis of its span
# (lmmscan.model's fit, the r2 filter): every test and R^2 depends on W only
# through its span.  Within these limits W goes in as given, so tables stay
# GEMMA's bit for bit.
CONDITION_LIMIT = 1e3
COLUMN_SCALE = 1e30


def ill_conditioned(W: np.ndarray) -> bool:
    """Whether W (n, c) is past CONDITION_LIMIT (its columns scaled to unit
    norm) or has a column whose root mean square is beyond COLUMN_SCALE."""
    norms = np.linalg.norm(W, axis=0)
    rms = norms / np.sqrt(max(1, W.shape[0]))
    if np.any(rms > COLUMN_SCALE) or np.any(rms < 1.0 / COLUMN_SCALE):
        return True
    R = np.linalg.qr(W / norms, mode="r")
    sv = np.linalg.svd(R, compute_uv=False)
    return bool(sv[0] > CONDITION_LIMIT * sv[-1])


def r2_basis(W: np.ndarray | None) -> np.ndarray | None:
    """W as the r2 filter takes it: W, or the orthogonal basis of its span
    when W is ill-conditioned (W'W squares its condition: x + 1e7 beside the
    intercept moved R^2 by 2e-4 and changed the SNP set, x + 3e9 made W'W
    singular).  Computed once where the covariates are set, not per block."""
    if W is None or W.shape[1] < 2 or not ill_conditioned(W):
        return W
    return orthogonal_basis(W)[0]


def orthogonal_basis(W: np.ndarray) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(W_fit, to_W, k): W_fit (n, c) an orthogonal basis of W's span whose
    columns have norm sqrt(n) (the intercept's), W @ to_W = W_fit, and k the
    constant column of W (the intercept; None without one).  Each other
    column's median is first taken off along the intercept, exactly for the
    entries within a factor 2 of it (Sterbenz): an offset of 1e10 then costs
    none of the digits left."""
    n, c = W.shape
    M = np.eye(c)
    Wc = W
    const = np.flatnonzero(np.ptp(W, axis=0) == 0) if n else np.zeros(0, dtype=int)
    k = int(const[0]) if const.size else None
    if k is not None:
        m = np.median(W, axis=0) / W[0, k]
        m[k] = 0.0
        Wc = W - np.outer(W[:, k], m)
        M[k, :] -= m  # W M = Wc
    Q, R = np.linalg.qr(Wc)
    root_n = np.sqrt(n)
    return Q * root_n, M @ np.linalg.solve(R, np.eye(c)) * root_n, k
