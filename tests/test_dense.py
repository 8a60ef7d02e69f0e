"""The spectral core against direct n x n formulas on small random problems."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.special

import lmmscan
from lmmscan import _core

from . import dense


def random_problem(seed: int, n: int = 120, c: int = 3, p: int = 60):
    rng = np.random.default_rng(seed)
    G = rng.binomial(2, rng.uniform(0.1, 0.5, p), size=(n, p)).astype(float)
    Z = G - G.mean(axis=0)
    K = Z @ Z.T / p
    W = np.column_stack([rng.normal(size=(n, c - 1)), np.ones(n)])
    g = rng.multivariate_normal(np.zeros(n), K + 1e-9 * np.eye(n))
    y = W @ rng.normal(size=c) + g + rng.normal(size=n)
    X = rng.binomial(2, 0.3, size=(n, 8)).astype(float)
    return K, W, y, X


def spectral(K):
    sp = lmmscan.spectral.Spectral.from_kinship(K)
    Kr = (sp.U * sp.d) @ sp.U.T  # the kinship the core sees (tiny eigenvalues zeroed)
    return sp, Kr


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("lam", [1e-3, 0.3, 2.0, 250.0])
def test_null_loglik_matches_dense(seed, lam):
    K, W, y, _ = random_problem(seed)
    sp, Kr = spectral(K)
    out = _core.null_loglik(sp.d, sp.rotate(W), np.ascontiguousarray(sp.U.T @ y), lam)
    assert out["ml"] == pytest.approx(dense.ml_loglik(Kr, lam, W, y), rel=1e-10)
    assert out["reml"] == pytest.approx(dense.reml_loglik(Kr, lam, W, y), rel=1e-10)
    # derivatives against central differences of the dense log-likelihoods
    h = lam * 1e-5
    for name, f in (("ml", dense.ml_loglik), ("reml", dense.reml_loglik)):
        d1 = (f(Kr, lam + h, W, y) - f(Kr, lam - h, W, y)) / (2 * h)
        assert out[f"{name}_dev1"] == pytest.approx(d1, rel=1e-5, abs=1e-7 / lam)


@pytest.mark.parametrize("seed", [4, 5])
def test_null_fit_is_the_dense_optimum(seed):
    K, W, y, _ = random_problem(seed)
    sp, Kr = spectral(K)
    model = lmmscan.fit_null(y, W[:, :-1], kinship=K)
    # Our K is double-centred before the decomposition; rebuild what was used.
    Kc = (model.spectral.U * model.spectral.d) @ model.spectral.U.T
    for lam, f, value in (
        (model.lambda_, dense.reml_loglik, model.loglik_reml),
        (model.lambda_mle, dense.ml_loglik, model.loglik_ml),
    ):
        assert value == pytest.approx(f(Kc, lam, model.W, y), rel=1e-10)
        best = scipy.optimize.minimize_scalar(
            lambda t, f=f: -f(Kc, np.exp(t), model.W, y),
            bounds=(np.log(1e-5), np.log(1e5)),
            method="bounded",
            options={"xatol": 1e-10},
        )
        assert value >= -best.fun - 1e-9
    # covariate effects: GLS at the REML lambda
    H = model.lambda_ * Kc + np.eye(len(y))
    A = model.W.T @ np.linalg.solve(H, model.W)
    beta = np.linalg.solve(A, model.W.T @ np.linalg.solve(H, y))
    np.testing.assert_allclose(model.beta, beta, rtol=1e-8)
    np.testing.assert_allclose(
        model.beta_se, np.sqrt(model.ve * np.diag(np.linalg.inv(A))), rtol=1e-8
    )


@pytest.mark.parametrize("seed", [6, 7])
def test_snp_tests_match_dense(seed):
    K, W, y, X = random_problem(seed)
    model = lmmscan.fit_null(y, W[:, :-1], kinship=K)
    Kc = (model.spectral.U * model.spectral.d) @ model.spectral.U.T
    table = lmmscan.scan(X, null_model=model, test="all", threads=1)
    Xk = X[:, table.index.to_numpy()] if len(table) == X.shape[1] else None
    assert Xk is not None
    V0 = model.W
    for j in range(X.shape[1]):
        row = table.iloc[j]
        x = X[:, j]
        beta, se, F = dense.wald(Kc, row.l_remle, V0, x, y)
        assert row.beta == pytest.approx(beta, rel=1e-8)
        assert row.se == pytest.approx(se, rel=1e-8)
        V1 = np.column_stack([V0, x])
        assert row.logl_H1 == pytest.approx(dense.ml_loglik(Kc, row.l_mle, V1, y), rel=1e-10)
        # the reported lambdas are the maxima
        for lam, f in ((row.l_remle, dense.reml_loglik), (row.l_mle, dense.ml_loglik)):
            best = scipy.optimize.minimize_scalar(
                lambda t, f=f, V1=V1: -f(Kc, np.exp(t), V1, y),
                bounds=(np.log(1e-5), np.log(1e5)),
                method="bounded",
                options={"xatol": 1e-9},
            )
            assert f(Kc, lam, V1, y) >= -best.fun - 1e-8
        F_s = dense.score(Kc, model.lambda_mle, V0, x, y)
        p_s = scipy.special.fdtrc(1, len(y) - V0.shape[1] - 1, F_s)
        assert row.p_score == pytest.approx(p_s, rel=1e-8)


def test_null_lambda_mode_matches_dense():
    K, W, y, X = random_problem(9)
    model = lmmscan.fit_null(y, W[:, :-1], kinship=K)
    Kc = (model.spectral.U * model.spectral.d) @ model.spectral.U.T
    table = lmmscan.scan(X, null_model=model, lambda_mode="null")
    assert (table["l_remle"] == model.lambda_).all() and (table["l_mle"] == model.lambda_mle).all()
    df = len(y) - model.W.shape[1] - 1
    for j in range(X.shape[1]):
        x = X[:, j]
        beta, se, F = dense.wald(Kc, model.lambda_, model.W, x, y)
        row = table.iloc[j]
        assert row.beta == pytest.approx(beta, rel=1e-8)
        assert row.se == pytest.approx(se, rel=1e-8)
        assert row.p_wald == pytest.approx(scipy.special.fdtrc(1, df, F), rel=1e-8)
        V1 = np.column_stack([model.W, x])
        l1 = dense.ml_loglik(Kc, model.lambda_mle, V1, y)
        assert row.logl_H1 == pytest.approx(l1, rel=1e-10)
        stat = 2 * (l1 - model.loglik_ml)
        assert row.p_lrt == pytest.approx(scipy.special.chdtrc(1, max(stat, 0)), rel=1e-7)
