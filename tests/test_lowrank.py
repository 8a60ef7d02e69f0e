"""Low-rank kinship (k SNPs < n samples): equal to the full-rank path."""

from __future__ import annotations

import numpy as np
import pytest

import lmmscan
from lmmscan.lowrank import fit_null_lowrank
from lmmscan.spectral import LowRankSpectral

NULL_FIELDS = (
    "lambda_reml",
    "lambda_mle",
    "vg",
    "ve",
    "pve",
    "pve_se",
    "loglik_reml",
    "loglik_ml",
    "loglik",
)
SCAN_COLUMNS = ("beta", "se", "logl_H1", "l_remle", "l_mle", "p_wald", "p_lrt", "p_score")


def simulate(seed: int, n: int, k: int, m: int, c: int = 2):
    rng = np.random.default_rng(seed)
    G = rng.binomial(2, rng.uniform(0.05, 0.5, k + m), size=(n, k + m)).astype(np.float64)
    G[rng.random(G.shape) < 0.005] = np.nan
    Gk = np.nan_to_num(G[:, :k] - np.nanmean(G[:, :k], axis=0))
    y = Gk @ rng.normal(scale=1.0 / np.sqrt(k), size=k) + rng.normal(size=n)
    y[rng.random(n) < 0.02] = np.nan
    cov = rng.normal(size=(n, c))
    if c:
        cov[rng.random(n) < 0.01, 0] = np.nan
    return G[:, :k], G[:, k:], y, cov if c else None


def assert_same(a, b, rtol: float) -> None:
    for name in NULL_FIELDS:
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=rtol), name
    np.testing.assert_allclose(a.beta_se, b.beta_se, rtol=rtol)


def assert_same_scan(a, b, rtol: float) -> None:
    assert (a["rs"].to_numpy() == b["rs"].to_numpy()).all()
    for col in SCAN_COLUMNS:
        if col == "beta":  # relative to its standard error: beta may be ~0
            d = np.abs(a[col] - b[col]) / b["se"]
            assert d.max() <= rtol, (col, d.max())
        else:
            np.testing.assert_allclose(a[col], b[col], rtol=rtol, atol=0, err_msg=col)


@pytest.mark.parametrize("method", ["centered", "standardized"])
def test_small_low_rank_equals_full_rank(method):
    Gk, Gt, y, cov = simulate(1, n=300, k=60, m=80)
    lr = lmmscan.low_rank_kinship(Gk, method)
    low = fit_null_lowrank(y, cov, lr)
    full = lmmscan.fit_null(y, cov, kinship=lmmscan.kinship(Gk, method))
    assert isinstance(low.spectral, LowRankSpectral)
    assert low.spectral.rank == 60  # k SNPs, all kept, centred over 290-odd samples
    assert_same(low, full, 1e-9)
    assert_same_scan(lmmscan.scan(Gt, null_model=low), lmmscan.scan(Gt, null_model=full), 1e-8)
    # the same through scan(kinship=LowRankKinship)
    assert_same_scan(
        lmmscan.scan(Gt, y, kinship=lr, covariates=cov), lmmscan.scan(Gt, null_model=full), 1e-8
    )


def test_more_snps_than_samples_is_full_rank_minus_centring():
    """k >= n: the centred factor has rank n - 1; the complement is the
    constant vector only, as in GEMMA's double-centred K."""
    Gk, Gt, y, _ = simulate(2, n=80, k=200, m=30, c=0)
    low = fit_null_lowrank(y, None, lmmscan.low_rank_kinship(Gk))
    full = lmmscan.fit_null(y, kinship=lmmscan.kinship(Gk))
    assert low.spectral.rank == low.n_analyzed - 1
    assert_same(low, full, 1e-9)
    assert_same_scan(lmmscan.scan(Gt, null_model=low), lmmscan.scan(Gt, null_model=full), 1e-8)


def test_random_effects_match_full_rank():
    Gk, _, y, cov = simulate(3, n=200, k=40, m=0)
    low = fit_null_lowrank(y, cov, lmmscan.low_rank_kinship(Gk))
    full = lmmscan.fit_null(y, cov, kinship=lmmscan.kinship(Gk))
    a, b = low.random_effects(), full.random_effects()
    for col in ("mean", "var", "var_given_beta"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-8, atol=1e-12, err_msg=col)


def test_rank_truncation_keeps_the_largest_eigenvalues():
    Gk, _, y, _ = simulate(4, n=150, k=50, m=0, c=0)
    lr = lmmscan.low_rank_kinship(Gk)
    mask = ~np.isnan(y)
    full, cut = lr.spectral(mask), lr.spectral(mask, rank=10)
    assert cut.rank == 10
    np.testing.assert_allclose(cut.d, full.d[:10], rtol=1e-12)
    with pytest.raises(lmmscan.InputError, match="rank"):
        lr.spectral(mask, rank=0)


def test_factor_equals_kinship_matrix():
    Gk, _, _, _ = simulate(5, n=90, k=30, m=0)
    for method in ("centered", "standardized"):
        lr = lmmscan.low_rank_kinship(Gk, method, snps=np.arange(5, 30))
        np.testing.assert_allclose(
            lr.dense(), lmmscan.kinship(Gk[:, 5:], method), rtol=1e-12, atol=1e-14
        )


@pytest.mark.slow
def test_n4000_k1000_agrees_to_1e8():
    """The issue's check: n = 4,000 samples, a 1,000-SNP kinship."""
    Gk, Gt, y, cov = simulate(6, n=4000, k=1000, m=200)
    low = fit_null_lowrank(y, cov, lmmscan.low_rank_kinship(Gk, "standardized"))
    full = lmmscan.fit_null(y, cov, kinship=lmmscan.kinship(Gk, "standardized"))
    assert low.spectral.rank == 1000
    assert_same(low, full, 1e-8)
    assert_same_scan(lmmscan.scan(Gt, null_model=low), lmmscan.scan(Gt, null_model=full), 1e-8)


def test_bad_input():
    with pytest.raises(lmmscan.InputError, match="more columns"):
        LowRankSpectral(np.ones(5), np.ones((3, 5)))
    with pytest.raises(lmmscan.InputError, match="snps mask"):
        lmmscan.low_rank_kinship(np.ones((4, 3)), snps=np.array([True, False]))
    with pytest.raises(lmmscan.InputError, match="no kinship SNP"):
        lmmscan.low_rank_kinship(np.ones((4, 3)))  # monomorphic
    Gk, Gt, y, _ = simulate(7, n=50, k=10, m=5, c=0)
    lr = lmmscan.low_rank_kinship(Gk)
    with pytest.raises(lmmscan.InputError, match="low-rank kinship has"):
        lmmscan.scan(Gt[:40], y[:40], kinship=lr)


@pytest.mark.parametrize("method", ["centered", "standardized"])
def test_in_place_decomposition_equals_gesdd(method, monkeypatch):
    """LowRankKinship.spectral decomposes its centred copy in place (QR, then
    the k x k SVD: one samples x SNPs matrix); the same fit and scan as
    gesdd's SVD of a separate copy, to 1e-10."""
    Gk, Gt, y, cov = simulate(7, n=400, k=90, m=60)
    lr = lmmscan.low_rank_kinship(Gk, method)
    lean = fit_null_lowrank(y, cov, lr)
    mask = ~np.isnan(y) & ~np.isnan(cov).any(axis=1)
    Zc = lr.Z[mask] - lr.Z[mask].mean(axis=0)
    Zc /= np.sqrt(lr.n_snps)
    reference = LowRankSpectral.from_factor(np.ascontiguousarray(Zc))  # gesdd on a copy
    np.testing.assert_allclose(lean.spectral.d, reference.d, rtol=1e-12)
    np.testing.assert_allclose(
        np.abs(np.sum(lean.spectral.U * reference.U, axis=0)), 1.0, rtol=0, atol=1e-10
    )
    full = lmmscan.fit_null(y, cov, spectral=reference)
    assert_same(lean, full, 1e-10)
    assert_same_scan(lmmscan.scan(Gt, null_model=lean), lmmscan.scan(Gt, null_model=full), 1e-10)


def test_in_place_svd_keeps_one_factor():
    """U lives in the factor's own memory."""
    from lmmscan.spectral import _thin_svd_in_place

    rng = np.random.default_rng(2)
    Z = np.asfortranarray(rng.normal(size=(500, 40)))
    U0, s0, _ = np.linalg.svd(Z, full_matrices=False)
    U, s = _thin_svd_in_place(Z)
    assert np.shares_memory(U, Z)
    np.testing.assert_allclose(s, s0, rtol=1e-12)
    np.testing.assert_allclose(np.abs(np.sum(U * U0, axis=0)), 1.0, atol=1e-12)


def test_consumed_factor_gives_the_same_model():
    """consume=True: the analysed rows compacted and decomposed in the
    kinship's own memory; the same null model as with a copy."""
    Gk, Gt, y, cov = simulate(8, n=300, k=70, m=20)
    copy = fit_null_lowrank(y, cov, lmmscan.low_rank_kinship(Gk, "centered"))
    lr = lmmscan.low_rank_kinship(Gk, "centered")
    Z = lr.Z
    eaten = fit_null_lowrank(y, cov, lr, consume=True)
    assert np.shares_memory(eaten.spectral.U, Z) and lr.Z is None
    assert_same(eaten, copy, 1e-12)
    with pytest.raises(lmmscan.InputError, match="consumed"):
        lr.spectral()
