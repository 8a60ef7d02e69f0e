"""fit_null(..., overwrite_kinship=True): the kinship is restricted, centred and
eigendecomposed in its own buffer, with the same null model and scan as the
copying path."""

from __future__ import annotations

import numpy as np
import pytest

import lmmscan
from lmmscan.spectral import decompose_kinship, eigh_driver

FIELDS = [
    "lambda_",
    "vg",
    "ve",
    "loglik",
    "pve",
    "pve_se",
    "loglik_reml",
    "loglik_ml",
    "lambda_reml",
    "lambda_mle",
]


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(7)
    n, p = 90, 400
    G = rng.binomial(2, rng.uniform(0.05, 0.5, p), size=(n, p)).astype(float)
    K = lmmscan.kinship(G)
    y = G[:, :4].sum(axis=1) * 0.5 + rng.normal(size=n)
    y[rng.choice(n, 7, replace=False)] = np.nan  # the restriction path
    cov = rng.normal(size=(n, 2))
    cov[3, 1] = np.nan
    return G, K, y, cov


def assert_close(a, b, rtol=1e-12):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.maximum(np.abs(a), np.abs(b))
    assert np.all(np.abs(a - b) <= rtol * np.maximum(scale, 1e-300)), np.max(np.abs(a - b))


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("missing", [True, False])
def test_same_null_model_and_scan(problem, order, missing):
    G, K, y, cov = problem
    if not missing:
        y = np.where(np.isnan(y), 0.0, y)
        cov = np.where(np.isnan(cov), 0.0, cov)
    ref = lmmscan.fit_null(y, cov, kinship=K)
    K_own = np.array(K, order=order)
    got = lmmscan.fit_null(y, cov, kinship=K_own, overwrite_kinship=True)
    assert not np.array_equal(K_own, K)  # the caller's kinship was used as scratch space
    for name in FIELDS:
        assert_close(getattr(got, name), getattr(ref, name))
    assert_close(got.beta, ref.beta)
    assert_close(got.beta_se, ref.beta_se)
    assert_close(got.eigenvalues, ref.eigenvalues)
    a = lmmscan.scan(G, null_model=ref)
    b = lmmscan.scan(G, null_model=got)
    assert list(a.columns) == list(b.columns)
    assert a["rs"].tolist() == b["rs"].tolist()
    for col in ["af", "beta", "se", "logl_H1", "l_remle", "l_mle", "p_wald", "p_lrt", "p_score"]:
        assert_close(a[col], b[col])


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("missing", [True, False])
def test_bitwise_the_copying_path(problem, order, missing):
    _, K, y, _ = problem
    K = K + np.triu(np.full(K.shape, 1e-12), 1)  # symmetric only to the check's tolerance
    mask = ~np.isnan(y) if missing else None
    for driver in ("evr", "evd"):
        with eigh_driver(driver):
            ref = decompose_kinship(K, mask)
            K_own = np.array(K, order=order)
            got = decompose_kinship(K_own, mask, overwrite_kinship=True)
        assert np.array_equal(got.d, ref.d)
        assert np.array_equal(got.U, ref.U)
        if driver == "evr":  # the eigenvectors are not a view of the kinship's buffer
            assert not np.shares_memory(got.U, K_own)
            assert K_own.flags.writeable
        else:  # dsyevd's are, and the buffer is read-only: writing into it raises
            assert np.shares_memory(got.U, K_own)
            with pytest.raises(ValueError, match="read-only"):
                K_own[0, 0] = 0.0


def test_restriction_in_place_keeps_values(problem):
    from lmmscan.spectral import _restrict_in_place

    _, K, y, _ = problem
    rng = np.random.default_rng(1)
    for order in "CF":
        for keep in (0.97, 0.5, 0.05):
            mask = rng.uniform(size=K.shape[0]) < keep
            mask[[0, -1]] = [rng.uniform() < 0.5, True]
            K_own = np.array(K + rng.normal(size=K.shape) * 1e-3, order=order)  # not symmetric
            expect = K_own[np.ix_(mask, mask)].copy()
            out = _restrict_in_place(K_own, mask)
            assert np.shares_memory(out, K_own)
            assert out.flags.c_contiguous
            assert np.array_equal(out, expect)


def test_other_kinships_are_copied_not_overwritten(problem):
    _, K, y, cov = problem
    ref = lmmscan.fit_null(y, cov, kinship=K)
    K32 = K.astype(np.float32)
    K32_before = K32.copy()
    lmmscan.fit_null(y, cov, kinship=K32, overwrite_kinship=True)
    assert np.array_equal(K32, K32_before)  # converted to float64: a copy was overwritten
    K_ro = K.copy()
    K_ro.flags.writeable = False
    got = lmmscan.fit_null(y, cov, kinship=K_ro, overwrite_kinship=True)
    assert np.array_equal(K_ro, K)
    assert_close(got.lambda_, ref.lambda_)
    K_strided = np.zeros((K.shape[0], 2 * K.shape[1]))
    K_strided[:, ::2] = K
    got = lmmscan.fit_null(y, cov, kinship=K_strided[:, ::2], overwrite_kinship=True)
    assert np.array_equal(K_strided[:, ::2], K)
    assert_close(got.lambda_, ref.lambda_)


def test_bad_kinship_is_refused_before_it_is_overwritten(problem):
    _, K, y, cov = problem
    bad = K.copy()
    bad[5, 9] += 1.0  # not symmetric
    before = bad.copy()
    with pytest.raises(lmmscan.InputError, match="not symmetric"):
        lmmscan.fit_null(y, cov, kinship=bad, overwrite_kinship=True)
    assert np.array_equal(bad, before)


def test_docstring_says_the_kinship_is_destroyed():
    assert "destroyed" in lmmscan.fit_null.__doc__
    assert "destroyed" in decompose_kinship.__doc__
