"""filter_impute (GEMMA's filters and the mean imputation in one set of passes)
against a plain reference of the same rules, in both memory orders and with
reused scratch buffers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from lmmscan.filters import Scratch, filter_impute, gemma_filter


def reference(X, maf, miss, W, r2):
    """GEMMA's rules written out column by column."""
    n, b = X.shape
    keep = np.zeros(b, dtype=bool)
    removed = dict.fromkeys(["miss", "maf", "monomorphic", "r2"], 0)
    n_miss = np.isnan(X).sum(axis=0)
    af = np.full(b, np.nan)
    cols = []
    for j in range(b):
        x = X[:, j]
        obs = x[~np.isnan(x)]
        if obs.size:
            af[j] = obs.sum() / (2.0 * obs.size)
        if n_miss[j] / n > miss:
            removed["miss"] += 1
            continue
        if maf is not None and maf >= 0 and not (af[j] >= maf and af[j] <= 1 - maf):
            removed["maf"] += 1
            continue
        if obs.size == 0 or obs.max() == obs.min():
            removed["monomorphic"] += 1
            continue
        xi = np.where(np.isnan(x), 2 * af[j], x)
        if W is not None and W.shape[1] > 1:
            beta = np.linalg.lstsq(W, xi, rcond=None)[0]
            fit = W @ beta
            if fit @ fit / (xi @ xi) > r2:
                removed["r2"] += 1
                continue
        keep[j] = True
        cols.append(xi)
    Xk = np.column_stack(cols) if cols else np.zeros((n, 0))
    return keep, n_miss, af, removed, Xk


def block(rng, n, b, dosage=False):
    p = rng.uniform(0.0, 0.5, b)
    X = rng.binomial(2, p, size=(n, b)).astype(float)
    if dosage:
        X = np.clip(X + rng.normal(scale=0.1, size=X.shape), 0, 2)
    X[rng.uniform(size=X.shape) < 0.02] = np.nan
    X[:, 0] = np.nan  # all missing
    X[:, 1] = 1.0  # monomorphic heterozygous (af 0.5)
    X[:3, 1] = np.nan  # ... with missing calls
    X[:, 2] = 0.0
    X[5, 2] = 1.0  # af just above 1/(2n)
    X[:, 3] = np.where(np.arange(n) < n // 2, 0.0, 2.0)  # collinear with W's first column
    X[: int(0.06 * n), 4] = np.nan  # too many missing
    X[:, 5] = 2.0  # monomorphic, no missing
    return X


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dosage", [False, True])
@pytest.mark.parametrize("with_w", [False, True])
def test_same_as_reference(order, dosage, with_w):
    rng = np.random.default_rng(3)
    n, b = 200, 150
    X = np.array(block(rng, n, b, dosage), order=order)
    X_before = X.copy()
    W = None
    if with_w:
        W = np.column_stack(
            [(np.arange(n) >= n // 2).astype(float), rng.normal(size=n), np.ones(n)]
        )
    scratch = Scratch()
    for maf in (0.01, None, 0.2):
        exp = reference(X, maf, 0.05, W, 0.9999)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            keep, n_miss, af, counts, Xk = filter_impute(X, maf=maf, W=W, scratch=scratch)
        assert np.array_equal(keep, exp[0])
        assert np.array_equal(n_miss, exp[1])
        np.testing.assert_allclose(af, exp[2], rtol=1e-14, equal_nan=True)
        assert counts.removed == exp[3]
        assert counts.kept == int(exp[0].sum()) and counts.total == b
        np.testing.assert_allclose(Xk, exp[4], rtol=1e-14)
        assert Xk.flags.f_contiguous == (order == "F")
        if with_w:
            assert not keep[3] and counts.removed["r2"] >= 1
        assert np.array_equal(gemma_filter(X, maf=maf, W=W)[0], keep)
    assert np.array_equal(X, X_before, equal_nan=True)  # the input is not touched


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("threads", [1, 2])
def test_af_is_gemmas_sum_in_sample_order(order, threads):
    """GEMMA adds a SNP's values in sample order (maf += geno).  A Fortran
    block's dosage SNPs were summed in 16 partial sums: af differed from
    GEMMA's in its last bits, and at a tie in the printed digit (0.161 for
    0.160; a C-ordered block, as two phenotypes or Dask read it, gave
    GEMMA's).  Whole-number calls keep the partial sums, which are exact."""
    rng = np.random.default_rng(11)
    n, b = 333, 260
    X = np.round(rng.uniform(0, 2, (n, b)), 3)
    X[:, 200:] = rng.integers(0, 3, (n, 60))  # hard calls
    X[3, 240:] = 0.5  # one dosage among hard calls
    X[rng.random((n, b)) < 0.02] = np.nan
    X = np.array(X, order=order)
    _, _, af, _, _ = filter_impute(X, maf=None, threads=threads)
    gemma = np.empty(b)
    for j in range(b):
        total = 0.0
        for v in X[:, j]:
            if v == v:
                total += v
        gemma[j] = total / (2.0 * np.count_nonzero(~np.isnan(X[:, j])))
    assert np.array_equal(af, gemma)


def test_scratch_is_reused_across_block_sizes():
    rng = np.random.default_rng(4)
    scratch = Scratch()
    seen = []
    for b in (120, 40, 200, 7, 1):
        X = np.asfortranarray(block(rng, 90, max(b, 6))[:, :b])
        exp = reference(X, 0.01, 0.05, None, 0.9999)
        keep, _, _, _, Xk = filter_impute(X, scratch=scratch)
        assert np.array_equal(keep, exp[0])
        np.testing.assert_allclose(Xk, exp[4], rtol=1e-14)
        seen.append(Xk)
    # a smaller block writes into the buffer of the larger one before it
    assert np.shares_memory(seen[1], seen[0])
    assert np.shares_memory(seen[3], seen[2])
    assert not np.shares_memory(seen[2], seen[0])  # grown


def test_no_missing_calls():
    rng = np.random.default_rng(5)
    X = rng.binomial(2, 0.3, size=(50, 30)).astype(float)
    exp = reference(X, 0.01, 0.05, None, 0.9999)
    keep, n_miss, af, _, Xk = filter_impute(X)
    assert np.array_equal(keep, exp[0]) and not n_miss.any()
    assert np.array_equal(Xk, exp[4])


@pytest.mark.parametrize("order", ["C", "F"])
def test_threads_and_strides_change_nothing(order):
    """The C++ passes split SNPs (F order) or rows (C order) over threads:
    every result is bit-identical to one thread's; a strided view is read
    like its contiguous copy."""
    rng = np.random.default_rng(6)
    X = np.array(block(rng, 300, 700, dosage=True), order=order)
    one = filter_impute(X, threads=1)
    for threads in (2, 3):
        other = filter_impute(X, threads=threads)
        for a, b in zip(one[:3] + one[4:], other[:3] + other[4:], strict=True):
            assert np.array_equal(a, b, equal_nan=True)
        assert other[3].removed == one[3].removed
    view = X[:, ::2]
    exp = reference(np.ascontiguousarray(view), 0.01, 0.05, None, 0.9999)
    keep, n_miss, af, _, Xk = filter_impute(view, threads=2)
    assert np.array_equal(keep, exp[0]) and np.array_equal(n_miss, exp[1])
    np.testing.assert_allclose(Xk, exp[4], rtol=1e-14)


def test_no_samples_and_no_snps():
    keep, n_miss, af, counts, Xk = filter_impute(np.zeros((0, 4)))
    assert not keep.any() and Xk.shape == (0, 0)
    assert sum(counts.removed.values()) == 4
    keep, _, _, counts, Xk = filter_impute(np.zeros((5, 0)))
    assert keep.shape == (0,) and Xk.shape == (5, 0) and counts.total == 0


@pytest.mark.parametrize("order", ["C", "F"])
def test_kept_products_for_the_r2_filter(order):
    """With W, the imputation pass also gives each kept SNP's x'x, W'x and
    max |x| (what the r2 filter and the scale check need): numpy's values to
    rounding, and the same bits on any number of threads."""
    from lmmscan import _core

    rng = np.random.default_rng(7)
    n, b = 301, 517
    X = np.array(block(rng, n, b, dosage=True), order=order)
    X[:, 9] *= -3.0  # a negative value: max |x| is not max x
    W = np.asfortranarray(np.column_stack([np.ones(n), rng.normal(size=(n, 2))]))
    one = None
    for threads in (1, 2, 3):
        out = np.empty(n * b)
        n_miss, af, verdict, (xx, WtX, amax) = _core.filter_impute(X, 0.01, 0.05, out, threads, W)
        keep = verdict == 0
        k = int(keep.sum())
        Xk = out[: n * k].reshape(k, n).T if order == "F" else out[: n * k].reshape(n, k)
        assert xx.shape == (k,) and WtX.shape == (3, k) and amax.shape == (k,)
        np.testing.assert_allclose(xx, np.einsum("ij,ij->j", Xk, Xk), rtol=1e-13)
        np.testing.assert_allclose(WtX, W.T @ Xk, rtol=1e-12, atol=1e-12 * np.abs(Xk).sum())
        assert np.array_equal(amax, np.abs(Xk).max(axis=0))
        if one is None:
            one = (xx, WtX, amax)
        for a, c in zip(one, (xx, WtX, amax), strict=True):
            assert a.tobytes() == c.tobytes()
    with pytest.raises(ValueError, match="W needs out"):
        _core.filter_impute(X, 0.01, 0.05, None, 1, W)
    with pytest.raises(ValueError, match="W must be"):
        _core.filter_impute(X, 0.01, 0.05, np.empty(n * b), 1, W[:-1])


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("with_w", [False, True])
def test_float32_output_is_the_float64_block_rounded(order, threads, with_w):
    """dtype=float32 (--precision single): the imputation pass writes each kept
    value rounded to float32, as astype would, and every verdict (the r2 and
    HWE filters' included) is the float64 run's: they see the double values."""
    rng = np.random.default_rng(11)
    n, b = 301, 260  # odd n: the float32 columns do not end on 8 bytes
    X = np.array(block(rng, n, b, dosage=True), order=order)
    X[:, 6] = X[:, 7] = np.where(np.arange(n) % 3 == 0, 2.0, 0.0) + 1e-3  # r2: see W
    W = None
    if with_w:
        W = np.column_stack([np.ones(n), (np.arange(n) % 3 == 0).astype(float)])
    for hwe in (0.0, 1e-3):
        wide = filter_impute(X, W=W, hwe=hwe, threads=threads, scratch=Scratch())
        narrow = filter_impute(
            X, W=W, hwe=hwe, threads=threads, scratch=Scratch(), dtype=np.float32
        )
        for a, c in zip(wide[:3], narrow[:3], strict=True):
            assert np.array_equal(a, c, equal_nan=True)
        assert narrow[3].removed == wide[3].removed
        if with_w:
            assert wide[3].removed["r2"] >= 2
        Xk = narrow[4]
        assert Xk.dtype == np.float32 and Xk.shape == wide[4].shape
        assert Xk.flags.f_contiguous == (order == "F")
        assert Xk.tobytes(order="A") == wide[4].astype(np.float32).tobytes(order="A")
    with pytest.raises(ValueError, match="float64 or float32"):
        filter_impute(X, dtype=np.float16)


def test_a_float32_block_refuses_values_beyond_single_precision():
    from lmmscan import InputError

    X = np.asfortranarray(np.tile([0.0, 1.0, 2.0, 1.0], (8, 3)).T.astype(float))
    X[1, 2] = 1e39  # finite in double, inf in float32
    for W in (None, np.column_stack([np.ones(12), np.arange(12.0)])):
        filter_impute(X, W=W, maf=None)  # double holds it
        with pytest.raises(InputError, match="beyond single precision's range"):
            filter_impute(X, W=W, maf=None, dtype=np.float32)


def test_the_binding_takes_a_work_block_only_for_a_c_ordered_float32_output():
    from lmmscan import _core

    X = np.ones((4, 3)) + np.eye(4, 3)
    out32, work = np.zeros(12, dtype=np.float32), np.zeros(12)
    _core.filter_impute(X, 0.0, 1.0, out32, 1, None, work)  # C order: rounded from work
    assert out32.tobytes() == work.astype(np.float32).tobytes()
    with pytest.raises(ValueError, match="C-ordered X only"):
        _core.filter_impute(np.asfortranarray(X), 0.0, 1.0, out32, 1, None, work)
    with pytest.raises(ValueError, match="C-ordered X only"):
        _core.filter_impute(X, 0.0, 1.0, np.zeros(12), 1, None, work)
