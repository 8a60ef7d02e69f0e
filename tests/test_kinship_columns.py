"""The kinship columns (``_core.kinship_columns`` behind
:func:`lmmscan.kinship.standardize`) against the numpy expressions lmmscan
computed them with before: the same bits, in both memory orders, with column
and row selections, at sizes around numpy's pairwise-summation blocks
(8 running sums, runs of up to 128 values halved at multiples of 8)."""

from __future__ import annotations

import numpy as np
import pytest

from lmmscan import _core
from lmmscan.kinship import standardize, standardize_params


def numpy_columns(X, method):
    """The numpy code of lmmscan's standardize before the kernel."""
    missing = np.isnan(X)
    n_obs = X.shape[0] - missing.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(missing, 0.0, X).sum(axis=0) / n_obs
    Z = np.where(missing, mean, X)
    Z -= mean
    factor = None
    if method == "standardized":
        var = np.einsum("ij,ij->j", Z, Z) / X.shape[0]
        factor = np.where(var != 0.0, 1.0 / np.sqrt(np.where(var != 0, var, 1.0)), 1.0)
        Z *= factor
    return Z, mean, factor


def block(rng, n, b, order):
    """Genotype-like columns, some with dosage noise of mixed magnitudes (the
    sum's order then shows in the last bits), about 10% missing."""
    X = rng.choice([0.0, 1.0, 2.0], size=(n, b))
    noisy = rng.random(b) < 0.5
    X[:, noisy] += rng.standard_normal((n, int(noisy.sum()))) * 10.0 ** rng.integers(-3, 4, (n, 1))
    X[rng.random((n, b)) < 0.1] = np.nan
    return np.array(X, order=order)


SIZES = [1, 5, 7, 8, 9, 16, 127, 128, 129, 136, 255, 256, 257, 1000, 1410, 4852]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("method", ["centered", "standardized"])
def test_columns_are_the_numpy_expressions_bit_for_bit(n, order, method):
    rng = np.random.default_rng(n)
    X = block(rng, n, 37, order)
    cols = rng.random(37) < 0.7
    rows = np.flatnonzero(rng.random(n) < 0.8)
    with np.errstate(invalid="ignore", divide="ignore"):
        Z_ref, mean_ref, factor_ref = numpy_columns(X[:, cols], method)
    Z, mean, factor = standardize_params(X, method, cols=cols, rows=rows)
    np.testing.assert_array_equal(mean, mean_ref)
    np.testing.assert_array_equal(Z, Z_ref[rows])
    if method == "standardized":
        np.testing.assert_array_equal(factor, factor_ref)
    # every row, indices for the columns, and into a caller's buffer
    out = np.full(n * int(cols.sum()) + 3, 7.0)
    Z_all = standardize(X, method, cols=np.flatnonzero(cols), out=out)
    np.testing.assert_array_equal(Z_all, Z_ref)
    assert np.shares_memory(Z_all, out)


def test_the_sum_order_matters_for_these_columns():
    """The comparison above can fail: on these columns a plain running sum
    (row after row) gives other last bits than numpy's pairwise sum."""
    rng = np.random.default_rng(1410)
    X = block(rng, 1410, 37, "F")
    observed = np.where(np.isnan(X), 0.0, X)
    running = np.zeros(X.shape[1])
    for row in observed:
        running += row
    _, mean, _ = standardize_params(X, "centered")
    n_obs = X.shape[0] - np.isnan(X).sum(axis=0)
    assert not np.array_equal(running / n_obs, mean)


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_threads_do_not_change_the_columns(threads):
    rng = np.random.default_rng(5)
    X = block(rng, 300, 500, "F")
    cols = np.arange(0, 500, 2, dtype=np.int64)
    rows = np.arange(0, 300, 3, dtype=np.int64)
    one = _core.kinship_columns(X, cols, rows, np.empty(rows.size * cols.size), 1)
    many = _core.kinship_columns(X, cols, rows, np.empty(rows.size * cols.size), threads)
    np.testing.assert_array_equal(one[0], many[0])
    np.testing.assert_array_equal(one[1], many[1])


def test_missing_columns_and_no_columns():
    X = np.asfortranarray([[np.nan, 1.0], [np.nan, np.nan], [np.nan, 3.0]])
    with np.errstate(invalid="ignore", divide="ignore"):
        Z_ref, mean_ref, _ = numpy_columns(X, "centered")
    Z, mean, _ = standardize_params(X, "centered")
    np.testing.assert_array_equal(mean, mean_ref)  # NaN for the column with no value
    np.testing.assert_array_equal(Z, Z_ref)
    assert standardize(X, "centered", cols=np.zeros(2, dtype=bool)).shape == (3, 0)


def test_bad_selections_are_refused():
    X = np.zeros((4, 3), order="F")
    with pytest.raises(ValueError, match="cols out of range"):
        _core.kinship_columns(X, np.array([3]), None, np.empty(12))
    with pytest.raises(ValueError, match="rows out of range"):
        _core.kinship_columns(X, np.array([0]), np.array([-1]), np.empty(12))
    with pytest.raises(ValueError, match="out must be"):
        _core.kinship_columns(X, np.array([0, 1]), None, np.empty(7))
    with pytest.raises(ValueError, match="length 3"):
        standardize(X, "centered", cols=np.ones(2, dtype=bool))
