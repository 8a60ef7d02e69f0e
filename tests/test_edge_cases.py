"""Numerical edge cases: each gives a defined result or a clear error (never a
crash or a hang).  docs/edge-cases.md lists them; one test per row."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import lmmscan


@pytest.fixture(scope="module")
def study():
    rng = np.random.default_rng(7)
    n, p = 80, 150
    G = rng.binomial(2, rng.uniform(0.1, 0.5, p), size=(n, p)).astype(float)
    K = lmmscan.kinship(G)
    y = G[:, :4].sum(axis=1) * 0.3 + rng.normal(size=n)
    return G, K, y


def ols_wald_p(G, y, W):
    """The Wald p-values of ordinary least squares (V proportional to I)."""
    out = []
    for j in range(G.shape[1]):
        X = np.column_stack([W, G[:, j]])
        beta, rss, *_ = np.linalg.lstsq(X, y, rcond=None)
        r = y - X @ beta
        df = len(y) - X.shape[1]
        s2 = r @ r / df
        se = np.sqrt(s2 * np.linalg.inv(X.T @ X)[-1, -1])
        out.append(scipy.special.fdtrc(1, df, (beta[-1] / se) ** 2))
    return np.array(out)


def test_constant_phenotype(study):
    G, K, _ = study
    with pytest.raises(lmmscan.InputError, match="constant"):
        lmmscan.scan(G, np.full(G.shape[0], 3.0), kinship=K)


def test_covariate_collinear_with_intercept(study):
    G, K, y = study
    cov = np.column_stack([np.arange(len(y)) % 2, 1 - np.arange(len(y)) % 2])  # sums to 1
    with pytest.raises(lmmscan.InputError, match="collinear: the added intercept"):
        lmmscan.fit_null(y, cov, kinship=K)
    cov = np.column_stack([np.ones(len(y)), 2 * np.ones(len(y))])
    with pytest.raises(lmmscan.InputError, match="collinear: column 2"):
        lmmscan.fit_null(y, cov, kinship=K)


def test_snp_identical_to_a_covariate_is_filtered(study):
    G, K, y = study
    cov = G[:, [10]].copy()
    report = lmmscan.ScanReport()
    table = lmmscan.scan(G, y, kinship=K, covariates=cov, report=report)
    assert "snp11" not in set(table.rs)
    assert report.filters.removed["r2"] >= 1


@pytest.mark.parametrize("kind", ["identity", "zero"])
def test_kinship_without_information_gives_least_squares(study, kind):
    """K = I (or 0) makes V proportional to I whatever lambda: every test is OLS."""
    G, _, y = study
    n = len(y)
    K = np.eye(n) if kind == "identity" else np.zeros((n, n))
    table = lmmscan.scan(G, y, kinship=K)
    keep = [int(r[3:]) - 1 for r in table.rs]
    np.testing.assert_allclose(table.p_wald, ols_wald_p(G[:, keep], y, np.ones((n, 1))), rtol=1e-6)
    assert np.isfinite(table[["beta", "se", "logl_H1", "p_lrt", "p_score"]]).all().all()


def test_rank_one_kinship(study):
    """The SNP that spans the kinship (K = vv', the SNP v) leaves REML flat in
    lambda under H1: its Wald test is not determined, and its p_wald varied
    across recodings of the SNP (helper 56; GEMMA prints NaN).  Its beta, se,
    l_remle and p_wald are NaN with the reason reml_flat, in every coding; its
    LRT and score tests are determined (the same in every coding), and every
    other SNP is tested as with any kinship."""
    from lmmscan.pvalues import untestable_reasons

    G, _, y = study
    v = G[:, 0] - G[:, 0].mean()
    K = np.outer(v, v)
    table = lmmscan.scan(G, y, kinship=K)
    wald = ["beta", "se", "l_remle", "p_wald"]
    assert np.isfinite(table[[*wald, "p_lrt", "p_score"]].iloc[1:]).all().all()
    for x in (G[:, 0], 2.0 - G[:, 0], G[:, 0] / 2 + 0.25):
        coded = lmmscan.scan(np.column_stack([x, G[:, 1]]), y, kinship=K)
        assert coded[wald].iloc[0].isna().all()
        assert untestable_reasons(coded) == {"reml_flat": 1}
        for name in ("p_lrt", "p_score"):
            assert coded[name].iloc[0] == pytest.approx(table[name].iloc[0], rel=1e-6)
        # a SNP off v's span is tested as with any kinship: its REML has a maximum
        assert coded["p_wald"].iloc[1] == pytest.approx(table["p_wald"].iloc[1], rel=1e-6)
    wald_only = lmmscan.scan(G[:, :2], y, kinship=K, test="wald")
    assert untestable_reasons(wald_only) == {"reml_flat": 1}


def test_clones_and_a_family_snp_leave_the_wald_test_undetermined():
    """Families of identical individuals (K block-diagonal of ones) and a SNP
    that is the family's indicator: REML is flat in lambda under H1."""
    rng = np.random.default_rng(11)
    family = np.repeat([0, 1, 2], 40)
    Z = np.eye(3)[family]
    K = Z @ Z.T
    family_snp = np.where(family == 1, 2.0, np.where(family == 2, 1.0, 0.0))
    other = rng.binomial(2, 0.4, 120).astype(float)
    y = rng.normal(size=120) + family
    table = lmmscan.scan(np.column_stack([family_snp, other]), y, kinship=K,
                         covariates=(family == 2).astype(float))  # fmt: skip
    assert table[["beta", "se", "l_remle", "p_wald"]].iloc[0].isna().all()
    assert np.isfinite(table[["p_lrt", "p_score"]].iloc[0]).all()
    assert np.isfinite(table[["beta", "se", "l_remle", "p_wald"]].iloc[1]).all()


def test_a_kinship_inside_the_covariates_span_is_flat_for_the_null_too():
    """K = Z Z' with the group indicators Z as covariates: REML is flat under
    H0 and H1 alike, and the Wald F is the same at every lambda (ordinary
    least squares): tested, not called undetermined."""
    rng = np.random.default_rng(12)
    group = np.repeat([0, 1, 2], 30)
    Z = np.eye(3)[group]
    G = rng.binomial(2, 0.3, (90, 5)).astype(float)
    y = rng.normal(size=90) + group
    table = lmmscan.scan(G, y, kinship=Z @ Z.T, covariates=Z[:, 1:])
    assert np.isfinite(table[["beta", "se", "p_wald"]]).all().all()
    X = np.column_stack([Z, G[:, 0]])
    beta = np.linalg.lstsq(X, y, rcond=None)[0][-1]
    assert table["beta"].iloc[0] == pytest.approx(beta, rel=1e-6)


def test_lambda_at_both_bounds(study):
    G, K, y = study
    rng = np.random.default_rng(0)
    noise = rng.normal(size=len(y))  # no genetic signal: lambda -> 1e-5
    t = lmmscan.scan(G, noise, kinship=K)
    assert (t.l_remle == 1e-5).mean() > 0.5
    # phenotype that is almost all kinship: lambda at the upper bound
    U = np.linalg.eigh(K)[1]
    g = U[:, -1] * 10 + U[:, -2] * 8
    t = lmmscan.scan(G, g + 1e-7 * noise, kinship=K)
    assert (t.l_mle == 1e5).any() or (t.l_remle == 1e5).any()
    assert np.isfinite(t[["p_wald", "p_lrt", "p_score"]]).all().all()


def test_n_equals_c_plus_2(study):
    G, K, y = study
    keep = np.zeros(len(y), dtype=bool)
    keep[:4] = True
    G4 = G[:4]
    poly = np.flatnonzero(G4.max(axis=0) > G4.min(axis=0))[:5]
    cov = np.column_stack([np.arange(4.0) ** 2])  # c = 2 with the intercept; n = 4
    table = lmmscan.scan(G4[:, poly], y[:4], kinship=K[:4, :4], covariates=cov, maf=0.0)
    assert len(table) == len(poly)
    for col in ("p_wald", "p_lrt", "p_score"):
        assert ((table[col] >= 0) & (table[col] <= 1)).all()


@pytest.mark.parametrize("scale", [1e12, 1e-12])
def test_phenotype_scale_does_not_matter(study, scale):
    G, K, y = study
    a = lmmscan.scan(G, y, kinship=K)
    b = lmmscan.scan(G, y * scale, kinship=K)
    for col in ("p_wald", "p_lrt", "p_score", "l_remle", "l_mle"):
        np.testing.assert_allclose(b[col], a[col], rtol=1e-7, err_msg=col)
    np.testing.assert_allclose(b.beta, a.beta * scale, rtol=1e-7)
    np.testing.assert_allclose(b.se, a.se * scale, rtol=1e-7)


def test_snp_with_one_observed_value(study):
    G, K, y = study
    G = G.copy()
    G[1:, 3] = np.nan
    t = lmmscan.scan(G, y, kinship=K, miss=1.0)
    assert "snp4" not in set(t.rs)  # monomorphic among the observed: filtered


def test_all_snps_filtered_gives_an_empty_table(study):
    G, K, y = study
    t = lmmscan.scan(np.ones_like(G), y, kinship=K)
    assert len(t) == 0 and list(t.columns)[:3] == ["chr", "rs", "ps"]


def test_nan_and_inf_in_the_core_are_refused():
    from lmmscan import _core

    rng = np.random.default_rng(0)
    d = rng.uniform(0, 2, 10)
    W = np.asfortranarray(np.ones((10, 1)))
    y = rng.normal(size=10)
    fit = _core.fit_null(d, W, y)
    sc = _core.Scanner(d, W, y, fit)
    bad = np.ones((2, 10))
    bad[1, 3] = np.inf
    with pytest.raises(ValueError, match="finite"):
        sc.scan(bad)
    with pytest.raises(ValueError, match="one column per"):
        sc.scan(np.ones((2, 9)))
