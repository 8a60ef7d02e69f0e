"""Fixed-lambda scans by Cholesky whitening (L^-1 X with L L' = lambda K + I)
against dense formulas and against the eigenvector rotation they replace."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import lmmscan
from lmmscan import _core
from lmmscan.engine import BlockScanner, whitening_lambda

from . import dense
from .test_dense import random_problem


@pytest.fixture(scope="module")
def problem():
    K, W, y, X = random_problem(21, n=150, p=80)
    rng = np.random.default_rng(5)
    X = np.column_stack([X, rng.binomial(2, 0.2, size=(150, 40)).astype(float)])
    X[rng.random(X.shape) < 0.02] = np.nan  # imputed entries are not integers
    model = lmmscan.fit_null(y, W[:, :-1], kinship=K)
    return model, X


@pytest.mark.parametrize("test", ["wald", "lrt", "score"])
def test_whitened_scan_matches_dense(problem, test):
    model, X = problem
    Kc = (model.spectral.U * model.spectral.d) @ model.spectral.U.T
    scanner = BlockScanner(model, test, lambda_mode="null", whiten=True)
    assert scanner.whitening is not None
    keep, cols = scanner.scan(X[np.flatnonzero(model.analyzed)])
    lam = model.lambda_ if test == "wald" else model.lambda_mle
    assert scanner.whitening.lambda_ == lam
    W, y = model.W, model.y
    df = len(y) - W.shape[1] - 1
    Xk = X[:, keep]
    assert Xk.shape[1] > 40
    for j in range(Xk.shape[1]):
        x = Xk[:, j].copy()
        x[np.isnan(x)] = cols["af"][j] * 2
        V1 = np.column_stack([W, x])
        if test == "wald":
            beta, se, F = dense.wald(Kc, lam, W, x, y)
            assert cols["beta"][j] == pytest.approx(beta, rel=1e-8, abs=1e-10 * se)
            assert cols["se"][j] == pytest.approx(se, rel=1e-8)
            assert cols["p_wald"][j] == pytest.approx(scipy.special.fdtrc(1, df, F), rel=1e-8)
            assert cols["logl_H1"][j] == pytest.approx(dense.reml_loglik(Kc, lam, V1, y), rel=1e-10)
            assert cols["l_remle"][j] == lam
        elif test == "lrt":
            l1 = dense.ml_loglik(Kc, lam, V1, y)
            assert cols["logl_H1"][j] == pytest.approx(l1, rel=1e-10)
            stat = max(2 * (l1 - model.loglik_ml), 0.0)
            assert cols["p_lrt"][j] == pytest.approx(scipy.special.chdtrc(1, stat), rel=1e-7)
        else:
            F = dense.score(Kc, lam, W, x, y)
            assert cols["p_score"][j] == pytest.approx(scipy.special.fdtrc(1, df, F), rel=1e-8)


@pytest.mark.parametrize("test", ["wald", "lrt", "score"])
def test_whitened_equals_rotated(problem, test):
    """The two bases give the same table to rounding; scan() picks whitening
    by itself for one fixed-lambda test."""
    model, X = problem
    rotated = lmmscan.scan(X, null_model=model, test=test, lambda_mode="null", block_size=1000)
    scanner = BlockScanner(model, test, lambda_mode="null")
    assert scanner.whitening is None
    keep, cols = scanner.scan(X[np.flatnonzero(model.analyzed)])
    for name in cols:
        scale = np.abs(cols["se"]) if name == "beta" else np.abs(cols[name])
        np.testing.assert_array_less(
            np.abs(rotated[name].to_numpy() - cols[name]), 1e-9 * scale + 1e-12, err_msg=name
        )


@pytest.mark.parametrize("test", ["wald", "lrt"])
def test_whitened_scan_does_not_depend_on_blocks_or_threads(problem, test):
    model, X = problem
    ref = lmmscan.scan(
        X, null_model=model, test=test, lambda_mode="null", threads=1, block_size=1000
    )
    for threads, block in ((2, 7), (2, 64), (1, 1), (2, 65)):
        other = lmmscan.scan(
            X, null_model=model, test=test, lambda_mode="null", threads=threads, block_size=block
        )
        for col in ref.columns[7:]:
            np.testing.assert_allclose(other[col], ref[col], rtol=1e-12, err_msg=col)


def test_whitening_applies_only_to_one_fixed_lambda(problem):
    model, _ = problem
    assert whitening_lambda(model, "wald", "null") == model.lambda_
    assert whitening_lambda(model, "score", "null") == model.lambda_mle
    assert whitening_lambda(model, "all", "null") is None  # REML and ML lambdas differ
    assert whitening_lambda(model, "wald", "per-snp") is None
    for test, mode in (("all", "null"), ("wald", "per-snp")):
        with pytest.raises(lmmscan.InputError, match="whiten=True needs"):
            BlockScanner(model, test, lambda_mode=mode, whiten=True)
    groups = np.repeat(np.arange(30), 5)
    grouped = lmmscan.fit_null(model.y, groups=groups)
    assert whitening_lambda(grouped, "wald", "null") is None


def test_whitened_scanner_needs_the_raw_block(problem):
    model, X = problem
    scanner = BlockScanner(model, "wald", lambda_mode="null", whiten=True)
    keep, n_miss, af, LX = scanner.prepare(X[np.flatnonzero(model.analyzed)])
    with pytest.raises(lmmscan.InputError, match="unrotated SNPs"):
        scanner.test_rotated(LX)


def test_core_refuses_mismatched_whitening(problem):
    model, _ = problem
    n, c = model.W.shape
    d, W, y = model.spectral.d, np.asfortranarray(model.W), model.y
    with pytest.raises(ValueError, match="fixed_lambda"):
        _core.Scanner(d, W, y, model.fit, raw_W=W, raw_y=y, whitened_lambda=model.lambda_)
    with pytest.raises(ValueError, match="lambda they were whitened at"):
        _core.Scanner(
            d,
            W,
            y,
            model.fit,
            fixed_lambda=True,
            raw_W=W,
            raw_y=y,
            whitened_lambda=model.lambda_ * 2,
        )
    with pytest.raises(ValueError, match="both raw_W and raw_y"):
        _core.Scanner(d, W, y, model.fit, fixed_lambda=True, raw_W=W)
    plain = _core.Scanner(d, W, y, model.fit, fixed_lambda=True)
    rows = np.zeros((3, n))
    with pytest.raises(ValueError, match="only with whitened data"):
        plain.scan(rows, None, 1, rows)
    white = _core.Scanner(
        d,
        W,
        y,
        model.fit,
        wald=True,
        lrt=False,
        score=False,
        fixed_lambda=True,
        raw_W=W,
        raw_y=y,
        whitened_lambda=model.lambda_,
    )
    with pytest.raises(ValueError, match="needs X"):
        white.scan(rows)
    bad = rows.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        white.scan(rows, None, 1, bad)


def test_cli_fixed_lambda_wald_whitens_and_matches_the_rotation(tmp_path, monkeypatch):
    """`lmmscan scan --lambda null --test wald` whitens (one phenotype); its table
    equals the same command's with the eigenvector rotation, to the printed digits."""
    import importlib

    import pandas as pd

    from lmmscan import cli
    from lmmscan.demo import copy_study

    prefix = copy_study(tmp_path / "in")
    made = []
    real = lmmscan.spectral.Whitening.from_spectral.__func__

    def spy(cls, spectral, lam, **kwargs):
        made.append(lam)
        return real(cls, spectral, lam, **kwargs)

    def run(out):
        argv = [
            "scan",
            "--bfile",
            prefix,
            "--pheno",
            f"{prefix}.pheno.txt",
            "--covar",
            f"{prefix}.covar.txt",
            "--lambda",
            "null",
            "--test",
            "wald",
            "--out",
            out,
            "--quiet",
        ]
        assert cli.main([str(a) for a in argv]) == 0
        return pd.read_csv(f"{out}.assoc.txt", sep="\t")

    monkeypatch.setattr(lmmscan.spectral.Whitening, "from_spectral", classmethod(spy))
    whitened = run(tmp_path / "w")
    assert len(made) == 1
    engine = importlib.import_module("lmmscan.engine")
    monkeypatch.setattr(engine, "whitening_lambda", lambda *args: None)
    rotated = run(tmp_path / "r")
    assert len(made) == 1
    assert len(whitened) == len(rotated) > 2000
    assert (whitened["l_remle"] == rotated["l_remle"]).all()
    for name in ("beta", "se", "logl_H1", "p_wald"):  # printed as %.6e
        np.testing.assert_allclose(whitened[name], rotated[name], rtol=1.5e-6, err_msg=name)
