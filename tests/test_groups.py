"""Group random effects: the spectral group path against the dense kinship
path, the hierarchical view, group scans and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lmmscan


def simulate(seed: int, n_groups: int, per_group: tuple[int, int] = (1, 12), c: int = 2):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(per_group[0], per_group[1] + 1, n_groups)
    groups = np.repeat(np.arange(n_groups), sizes)
    rng.shuffle(groups)
    n = groups.size
    X = rng.normal(size=(n, c))
    b = rng.normal(scale=rng.uniform(0.0, 2.0), size=n_groups)
    y = X @ rng.normal(size=c) + 3.0 + b[groups] + rng.normal(size=n)
    return y, X, groups


def dense_kinship(groups: np.ndarray) -> np.ndarray:
    D = (groups[:, None] == np.unique(groups)[None, :]).astype(float)
    return D @ D.T


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n_groups=st.integers(2, 12),
    method=st.sampled_from(["reml", "ml"]),
)
def test_groups_equal_kinship_dd(seed, n_groups, method):
    y, X, groups = simulate(seed, n_groups)
    if len(y) < X.shape[1] + 4:
        return
    a = lmmscan.fit_null(y, X, groups=groups, method=method)
    b = lmmscan.fit_null(
        y,
        X,
        kinship=dense_kinship(groups),
        center=False,
        method=method,
        bounds=a.bounds,
    )
    lam_a, lam_b = a.lambda_, b.lambda_
    if lam_a == 0.0:  # the group path snaps the lower bound to exactly 0
        assert lam_b == a.bounds.l_min
        return
    assert lam_a == pytest.approx(lam_b, rel=1e-6, abs=1e-9)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(a.beta, b.beta, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(a.beta_se, b.beta_se, rtol=1e-6)
    assert a.vg == pytest.approx(b.vg, rel=1e-6, abs=1e-9)
    assert a.ve == pytest.approx(b.ve, rel=1e-6)


def test_random_effects_posterior_against_dense():
    """Posterior of the group effects with the fixed effects integrated out."""
    y, X, groups = simulate(11, 9, (2, 15))
    model = lmmscan.fit_null(y, X, groups=groups)
    W, vg, ve = model.W, model.vg, model.ve
    labels = np.unique(groups)
    D = (groups[:, None] == labels[None, :]).astype(float)
    V = vg * D @ D.T + ve * np.eye(len(y))
    Vi = np.linalg.inv(V)
    P = Vi - Vi @ W @ np.linalg.solve(W.T @ Vi @ W, W.T @ Vi)
    mean = vg * D.T @ P @ y
    var = np.diag(vg * np.eye(len(labels)) - vg**2 * D.T @ P @ D)
    var_given_beta = np.diag(vg * np.eye(len(labels)) - vg**2 * D.T @ Vi @ D)
    re = model.random_effects()
    assert list(re.index) == list(labels)
    np.testing.assert_allclose(re["mean"], mean, rtol=1e-8)
    np.testing.assert_allclose(re["var"], var, rtol=1e-8)
    np.testing.assert_allclose(re["var_given_beta"], var_given_beta, rtol=1e-8)
    np.testing.assert_allclose(model.fitted("marginal"), W @ model.beta)
    np.testing.assert_allclose(model.fitted("conditional"), W @ model.beta + D @ mean, rtol=1e-8)
    np.testing.assert_allclose(model.residuals("conditional"), y - model.fitted("conditional"))


def test_sample_random_effects_with_kinship():
    rng = np.random.default_rng(3)
    n = 80
    G = rng.binomial(2, 0.3, size=(n, 200)).astype(float)
    K = lmmscan.kinship(G)
    y = rng.normal(size=n) + G[:, :5].sum(axis=1) * 0.3
    model = lmmscan.fit_null(y, kinship=K)
    Kc = (model.spectral.U * model.spectral.d) @ model.spectral.U.T
    W, vg, ve = model.W, model.vg, model.ve
    Vi = np.linalg.inv(vg * Kc + ve * np.eye(n))
    P = Vi - Vi @ W @ np.linalg.solve(W.T @ Vi @ W, W.T @ Vi)
    re = model.random_effects()
    np.testing.assert_allclose(re["mean"], vg * Kc @ P @ y, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(
        re["var"], np.diag(vg * Kc - vg**2 * Kc @ P @ Kc), rtol=1e-7, atol=1e-10
    )


def test_prior_on_fixed_effects_tends_to_flat_prior():
    y, X, groups = simulate(5, 8, (3, 10))
    model = lmmscan.fit_null(y, X, groups=groups)
    gaps = []
    for sd in (0.1, 1.0, 10.0, 1e3, 1e6):
        mean, cov = model.fixed_effects_posterior(prior_mean=0.0, prior_sd=sd)
        gaps.append(np.abs(mean - model.beta).max())
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False))  # monotone approach
    mean, cov = model.fixed_effects_posterior(prior_sd=1e6)
    np.testing.assert_allclose(mean, model.beta, rtol=1e-8)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), model.beta_se, rtol=1e-8)
    flat_mean, flat_cov = model.fixed_effects_posterior()
    np.testing.assert_allclose(flat_mean, model.beta, rtol=1e-12)
    # a tight prior pulls the effects to its mean
    tight, _ = model.fixed_effects_posterior(prior_mean=7.0, prior_sd=1e-6)
    np.testing.assert_allclose(tight, 7.0, rtol=1e-6)


def test_group_scan_equals_dense_kinship_scan():
    y, X, groups = simulate(21, 15, (3, 12), c=1)
    rng = np.random.default_rng(0)
    G = rng.binomial(2, 0.35, size=(len(y), 30)).astype(float)
    G[rng.random(G.shape) < 0.01] = np.nan
    a = lmmscan.scan(G, y, covariates=X, groups=groups, threads=2)
    null_b = lmmscan.fit_null(
        y,
        X,
        kinship=dense_kinship(groups),
        center=False,
        bounds=lmmscan.LambdaBounds(1e-5, 1e5, 10),
    )
    null_a = lmmscan.fit_null(y, X, groups=groups, bounds=lmmscan.LambdaBounds(1e-5, 1e5, 10))
    a = lmmscan.scan(G, null_model=null_a)
    b = lmmscan.scan(G, null_model=null_b)
    assert len(a) == len(b) > 20
    for col in ("beta", "se", "logl_H1", "p_wald", "p_lrt", "p_score"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-6, err_msg=col)


def test_one_observation_groups_are_allowed():
    y, X, groups = simulate(8, 30, (1, 1))  # every group a singleton
    y2, X2, g2 = simulate(9, 5, (4, 8))
    y = np.concatenate([y, y2])
    X = np.concatenate([X, X2])
    groups = np.concatenate([groups, g2 + 100])
    model = lmmscan.fit_null(y, X, groups=groups)
    assert np.isfinite(model.loglik) and model.vg >= 0


@pytest.mark.parametrize(
    "groups, message",
    [
        (np.zeros(10), "single level"),
        (np.arange(9), "9 labels but there are 10 samples"),
        (np.array([1, 2, np.nan, 1, 2, 1, 2, 1, 2, 1], dtype=object), "missing label"),
        # K = I: the likelihood is flat in lambda, which ended anywhere (lme4 refuses)
        (np.arange(10), "10 levels for 10 analysed samples, one each"),
        (np.arange(10)[:, None] % 3, r"one label per sample .* got shape \(10, 1\)"),
    ],
)
def test_bad_groups(groups, message):
    y = np.random.default_rng(0).normal(size=10)
    with pytest.raises(lmmscan.InputError, match=message):
        lmmscan.fit_null(y, groups=groups)


def test_constant_phenotype_is_a_clear_error():
    with pytest.raises(lmmscan.InputError, match="constant"):
        lmmscan.fit_null(np.ones(10), groups=np.arange(10) % 3)


def test_a_range_the_caller_chose_is_the_range_searched():
    """Bounds from the caller (0.5, 100) whose lower end was the optimum gave
    lambda = 0 outside them (the group model's exact 0), with the LRT's null
    log-likelihood taken at 0 but the SNPs tested at 0.5: p_lrt 1 for SNPs
    whose p is 0.17 at one lambda.  A group model's spectral reused keeps the
    group model's range and its exact 0."""
    rng = np.random.default_rng(9)
    groups = np.repeat(np.arange(5), 4)
    x = rng.normal(size=20)
    y = x + rng.normal(size=20) + 0.35 * rng.normal(size=5)[groups]
    bounds = lmmscan.LambdaBounds(0.5, 100.0, 10)
    K = dense_kinship(groups)
    for method in ("reml", "ml"):
        free = lmmscan.fit_null(y, x, groups=groups, method=method)
        assert free.lambda_ < 0.5
        if method == "ml":  # the default range: an exact 0 (lme4's boundary fit)
            assert free.lambda_ == 0.0
            assert free.warnings == [
                "lambda (ML) = 0: the group variance is estimated at 0, a boundary (singular) "
                "fit, as lme4's; the model is then ordinary least squares"
            ]
        m = lmmscan.fit_null(y, x, groups=groups, bounds=bounds, method=method)
        dense = lmmscan.fit_null(y, x, kinship=K, center=False, bounds=bounds, method=method)
        assert m.lambda_ == 0.5 == dense.lambda_
        np.testing.assert_allclose(m.loglik, dense.loglik, rtol=1e-10)
        again = lmmscan.fit_null(y, x, spectral=free.spectral, method=method)
        assert again.lambda_ == free.lambda_ and again.bounds == free.bounds
    G = rng.binomial(2, 0.4, size=(20, 4)).astype(float)
    kw = {"covariates": x, "bounds": bounds, "test": "lrt", "maf": 0.0}
    ours = lmmscan.scan(G, y, groups=groups, **kw)
    null = lmmscan.fit_null(y, x, kinship=K, center=False, bounds=bounds)
    dense_scan = lmmscan.scan(G, null_model=null, test="lrt", maf=0.0)
    np.testing.assert_allclose(ours["p_lrt"], dense_scan["p_lrt"], rtol=1e-8)
    assert (ours["p_lrt"] < 0.9).all()


@pytest.mark.parametrize("l_min", [1e-300, 1e-305, 1e-320, 5e-324])
def test_a_search_range_whose_ratio_overflows_finds_the_optimum(l_min):
    """l_max / l_min = inf made every grid point but the first inf: the search
    returned l_max (1e10, log-likelihood 100 lower), saying the optimum may
    lie beyond it."""
    y, X, groups = simulate(4, 10, (6, 6))
    best = lmmscan.fit_null(y, X, groups=groups)
    wide = lmmscan.fit_null(y, X, groups=groups, bounds=(l_min, 1e10, 20))
    np.testing.assert_allclose(wide.lambda_, best.lambda_, rtol=1e-6)
    assert wide.warnings == []
    K = lmmscan.fit_null(y, X, kinship=dense_kinship(groups), bounds=(l_min, 1e4, 10))
    np.testing.assert_allclose(K.lambda_, best.lambda_, rtol=1e-6)


def test_fixed_effects_prior_is_checked_by_name():
    y, X, groups = simulate(5, 8)
    m = lmmscan.fit_null(y, X, groups=groups)  # three fixed effects: x1, x2, intercept
    for kwargs, message in (
        ({"prior_mean": [0.0, 1.0]}, "prior_mean must be a number or 3 numbers"),
        ({"prior_sd": np.ones((3, 3))}, r"prior_sd must be a number or 3 .* shape \(3, 3\)"),
        ({"prior_sd": "wide"}, "prior_sd must hold numbers"),
        ({"prior_mean": np.nan}, "prior_mean must be finite"),
        ({"prior_mean": None}, "prior_mean must be finite"),
        ({"prior_sd": np.nan}, "prior_sd must be positive"),
        ({"prior_sd": 1e-160}, "prior_sd 1e-160 is too small"),  # 1/sd^2 overflows: NaN means
        ({"prior_sd": 1e-200}, "prior_sd 1e-200 is too small"),  # sd^2 underflows to 0
    ):
        with pytest.raises(lmmscan.InputError, match=message):
            m.fixed_effects_posterior(**kwargs)
    mean, cov = m.fixed_effects_posterior(prior_mean=[0.5, -1.0, 2.0], prior_sd=1e-100)
    np.testing.assert_allclose(mean, [0.5, -1.0, 2.0], rtol=1e-12)


def test_api_inputs_of_other_kinds_are_named_or_used():
    """A low-rank kinship in fit_null (a TypeError from float()), a sparse
    kinship, text covariates, an empty y or one without columns (numpy's
    messages or an IndexError), and a DataFrame's SNP names (lost: rs became
    snp1, snp2, ...)."""
    import pandas as pd
    import scipy.sparse

    y, X, groups = simulate(6, 10, (5, 5))
    n = y.size
    G = np.random.default_rng(6).binomial(2, 0.3, size=(n, 30)).astype(float)
    LK = lmmscan.low_rank_kinship(G)
    low = lmmscan.fit_null(y, X, kinship=LK)
    same = lmmscan.lowrank.fit_null_lowrank(y, X, LK)
    assert low.lambda_ == same.lambda_ and low.loglik == same.loglik
    for call, message in (
        (lambda: lmmscan.fit_null(y, kinship=scipy.sparse.eye(n)), "kinship is a sparse matrix"),
        (lambda: lmmscan.fit_null(y, np.array(["a"] * n), groups=groups), "covariates must hold"),
        (lambda: lmmscan.fit_null(np.array([]), kinship=np.eye(0)), "y is empty"),
        (lambda: lmmscan.scan(G, np.empty((n, 0)), groups=groups), "no phenotype column"),
    ):
        with pytest.raises(lmmscan.InputError, match=message):
            call()
    named = pd.DataFrame(G[:, :3], columns=["rs1", "rs2", "rs3"])
    table = lmmscan.scan(named, y, groups=groups, maf=0.0)
    assert list(table["rs"]) == ["rs1", "rs2", "rs3"]
    assert list(lmmscan.scan(pd.DataFrame(G[:, :2]), y, groups=groups)["rs"]) == ["snp1", "snp2"]


def test_typed_labels_fit_as_the_same_labels_as_objects():
    """Numbers and text in a typed array are sorted natively (np.unique on a
    million Python objects took half of a 10^6-observation fit): the same
    groups, order and labels as through the object path (a -0.0 label may read
    0.0: one representative of the merged group)."""
    y, X, groups = simulate(11, 40, (1, 9))
    for labels in (groups, groups * 2.5, np.char.add("g", groups.astype(str))):
        typed = lmmscan.fit_null(y, X, groups=labels)
        objects = lmmscan.fit_null(y, X, groups=np.asarray(labels, dtype=object))
        assert typed.lambda_ == objects.lambda_ and typed.loglik == objects.loglik
        a, b = typed.random_effects(), objects.random_effects()
        assert list(a.index) == list(b.index)
        assert a.to_numpy().tobytes() == b.to_numpy().tobytes()
    with_nan = groups.astype(float)
    with_nan[7] = np.nan
    with pytest.raises(lmmscan.InputError, match=r"missing label \(sample 7\)"):
        lmmscan.fit_null(y, X, groups=with_nan)
    # a list stays Python objects (numpy would make NaN "nan", and 1 and "1" one label)
    names = [f"f{g}" for g in groups]
    names[7] = float("nan")
    with pytest.raises(lmmscan.InputError, match=r"missing label \(sample 7\)"):
        lmmscan.fit_null(y, X, groups=names)
    mixed = [int(g) if g % 2 else str(g) for g in groups]
    with pytest.raises(lmmscan.InputError, match="of one sortable type"):
        lmmscan.fit_null(y, X, groups=mixed)


def test_a_missing_label_on_a_sample_left_out_anyway_is_no_error():
    """A sample whose y is missing needs no group: lme4 drops the row (helper
    49); lmmscan refused its missing label.  The fit is that of the rows
    dropped."""
    y, X, groups = simulate(12, 40, (1, 9))
    labels = groups.astype(object)
    labels[7] = None
    y = y.astype(float).copy()
    y[7] = np.nan
    got = lmmscan.fit_null(y, X, groups=labels)
    keep = np.arange(len(y)) != 7
    want = lmmscan.fit_null(y[keep], X[keep], groups=groups[keep])
    assert got.lambda_ == pytest.approx(want.lambda_, rel=1e-12)
    assert got.loglik == pytest.approx(want.loglik, rel=1e-12)
    np.testing.assert_allclose(got.beta, want.beta, rtol=1e-12)


def test_a_basis_reused_for_other_analysed_samples_is_refused():
    """fit_null(y_b, spectral=model_a.spectral) checked only the number of
    analysed samples: a phenotype missing other samples (as many) was fitted
    on the wrong rows' decomposition (lambda 0.78 for 1.03, -log10 p off by
    0.9), silently."""
    y, X, groups = simulate(12, 12, (4, 8))
    K = dense_kinship(groups) + np.eye(groups.size)
    ya, yb = y.copy(), y.copy()
    ya[:5], yb[5:10] = np.nan, np.nan
    a = lmmscan.fit_null(ya, X, kinship=K)
    with pytest.raises(lmmscan.InputError, match="decomposed for other analysed samples"):
        lmmscan.fit_null(yb, X, spectral=a.spectral)
    same = lmmscan.fit_null(ya * 2 + 1, X, spectral=a.spectral)  # the same missing samples
    assert same.lambda_ == a.lambda_
    g = lmmscan.fit_null(ya, X, groups=groups)
    with pytest.raises(lmmscan.InputError, match="decomposed for other analysed samples"):
        lmmscan.fit_null(yb, X, spectral=g.spectral)
    # a basis the caller made is not claimed by the first fit that uses it
    ids = [str(i) for i in range(groups.size)]
    basis = lmmscan.eigendecompose(K, ids, samples=~np.isnan(yb)).spectral()
    with pytest.raises(lmmscan.InputError, match="constant"):
        lmmscan.fit_null(np.where(np.isnan(ya), np.nan, 1.0), X, spectral=basis)
    lmmscan.fit_null(ya, X, spectral=basis)  # the caller's choice: not checked, not claimed
    assert lmmscan.fit_null(yb, X, spectral=basis).lambda_ > 0


def test_a_reml_flat_in_lambda_is_warned_of():
    """Group dummies among the covariates span every group direction: REML
    is the same at every lambda, and vg came out 0.003 on one data set,
    48,441 on another, without a word (helper 70; lme4's is arbitrary too)."""
    rng = np.random.default_rng(21)
    lab = np.repeat(np.arange(10), 6)
    x = rng.normal(size=lab.size)
    y = x + rng.normal(size=10)[lab] + rng.normal(size=lab.size)
    dummies = (lab[:, None] == np.arange(1, 10)[None]).astype(float)
    flat = lmmscan.fit_null(y, np.c_[x, dummies], groups=lab)
    assert any("REML likelihood is flat in lambda" in w for w in flat.warnings)
    for model in (
        lmmscan.fit_null(y, x, groups=lab),
        lmmscan.fit_null(y, np.c_[x, dummies[:, :4]], groups=lab),
        lmmscan.fit_null(y, x, kinship=(lab[:, None] == lab[None]).astype(float)),
    ):
        assert not any("flat" in w for w in model.warnings), model.warnings
