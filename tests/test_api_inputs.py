"""Bad input to the Python API: a clear InputError (a ValueError) naming the
argument, never a crash; and results that do not depend on how the work is
split (threads, block size, sample order, memory layout)."""

from __future__ import annotations

import numpy as np
import pytest

import lmmscan


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(42)
    n, p = 60, 120
    G = rng.binomial(2, rng.uniform(0.1, 0.5, p), size=(n, p)).astype(float)
    K = lmmscan.kinship(G)
    y = G[:, :3].sum(axis=1) * 0.4 + rng.normal(size=n)
    return G, K, y


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda G, K, y: (G, K, y[:-1]), "kinship is 60 x 60 but there are 59 samples"),
        (lambda G, K, y: (G, K[:-1], y), "kinship must be a square matrix"),
        (lambda G, K, y: (G, np.where(np.eye(60) > 0, np.nan, K), y), "NaN"),
        (lambda G, K, y: (G, K + np.triu(np.ones_like(K), 1), y), "not symmetric"),
        (lambda G, K, y: (G, K, np.full(60, np.nan)), "every sample has a missing phenotype"),
        (lambda G, K, y: (G, K, y[:, None]), "y must be 1-D"),
        (lambda G, K, y: (G, K, np.where(np.arange(60) < 58, np.nan, y)), r"need at least c \+ 2"),
    ],
)
def test_fit_null_bad_input(problem, mutate, message):
    G, K, y = mutate(*problem)
    with pytest.raises(lmmscan.InputError, match=message):
        lmmscan.fit_null(y, kinship=K)


def test_covariates_wrong_shape(problem):
    G, K, y = problem
    with pytest.raises(ValueError, match="covariates must have shape"):
        lmmscan.fit_null(y, np.ones((59, 2)), kinship=K)


def test_scan_bad_input(problem):
    G, K, y = problem
    with pytest.raises(lmmscan.InputError, match="y has 59 values but genotypes have 60"):
        lmmscan.scan(G, y[:-1], kinship=K[:-1, :-1])
    with pytest.raises(lmmscan.InputError, match="2-D"):
        lmmscan.scan(G[:, 0], y, kinship=K)
    with pytest.raises(lmmscan.InputError, match="test must be one of"):
        lmmscan.scan(G, y, kinship=K, test="t")
    with pytest.raises(lmmscan.InputError, match="needs y and a kinship"):
        lmmscan.scan(G, y)
    model = lmmscan.fit_null(y, kinship=K)
    with pytest.raises(lmmscan.InputError, match="fitted on 60 samples"):
        lmmscan.scan(G[:-1], null_model=model)
    with pytest.raises(lmmscan.InputError, match="infinite"):
        lmmscan.scan(np.where(G == 2, np.inf, G), null_model=model)


def test_kinship_bad_input(problem):
    G, K, y = problem
    with pytest.raises(lmmscan.InputError, match="method must be"):
        lmmscan.kinship(G, "ibs")
    with pytest.raises(lmmscan.InputError, match="no SNP passed"):
        lmmscan.kinship(np.ones((10, 5)))


def test_core_rejects_bad_arrays():
    from lmmscan import _core

    d = np.ones(5)
    with pytest.raises(ValueError, match="same number of rows"):
        _core.fit_null(d, np.asfortranarray(np.ones((4, 1))), np.ones(5))
    with pytest.raises(ValueError, match="finite"):
        _core.fit_null(d, np.asfortranarray(np.ones((5, 1))), np.array([1, 2, np.nan, 4, 5.0]))
    with pytest.raises(ValueError, match="l_min"):
        _core.fit_null(d, np.asfortranarray(np.ones((5, 1))), np.arange(5.0), -1.0)
    with pytest.raises(TypeError):  # C-ordered (n, c) would be copied: refused instead
        _core.fit_null(d, np.ones((5, 2)), np.arange(5.0))


def test_threads_and_block_size_do_not_change_results(problem):
    G, K, y = problem
    model = lmmscan.fit_null(y, kinship=K)
    ref = lmmscan.scan(G, null_model=model, threads=1, block_size=1000)
    for threads, block in ((2, 7), (3, 64), (2, 1)):
        other = lmmscan.scan(G, null_model=model, threads=threads, block_size=block)
        for col in ref.columns[7:]:
            np.testing.assert_allclose(other[col], ref[col], rtol=1e-12, err_msg=col)


def test_sample_order_does_not_change_results(problem):
    G, K, y = problem
    perm = np.random.default_rng(1).permutation(len(y))
    a = lmmscan.scan(G, y, kinship=K)
    b = lmmscan.scan(G[perm], y[perm], kinship=K[np.ix_(perm, perm)])
    # Permuted samples are another summation order everywhere (LAPACK's
    # eigenvectors, every sum over samples): the inputs of each lambda search
    # differ in their last bits, and Newton stops within 1e-8 (relative) of the
    # root, so lambda, beta and se may move by ~1e-8 and p with them; the
    # log-likelihoods sit at a maximum and move by much less.  1e-10 held on one
    # CPU and failed on an AMD EPYC (p_lrt 2.6e-10 apart).
    for col in a.columns[7:]:
        np.testing.assert_allclose(b[col], a[col], rtol=1e-7, atol=1e-13, err_msg=col)


def test_memory_layout_does_not_change_results(problem):
    G, K, y = problem
    a = lmmscan.scan(np.ascontiguousarray(G), y, kinship=K)
    b = lmmscan.scan(np.asfortranarray(G), y, kinship=np.asfortranarray(K))
    for col in a.columns[7:]:
        np.testing.assert_allclose(b[col], a[col], rtol=1e-12, err_msg=col)


def test_p_values_in_range(problem):
    G, K, y = problem
    table = lmmscan.scan(G, y, kinship=K)
    for col in ("p_wald", "p_lrt", "p_score"):
        assert ((table[col] >= 0) & (table[col] <= 1)).all()
    assert ((table["l_remle"] >= 1e-5) & (table["l_remle"] <= 1e5)).all()


def test_null_model_pickles():
    """NullFit (the C++ fit) pickles by its fields, so a whole NullModel can
    be saved or sent to a worker and scan the same."""
    import pickle

    rng = np.random.default_rng(11)
    n, m = 60, 30
    G = rng.binomial(2, 0.3, size=(n, m)).astype(float)
    K = lmmscan.kinship(G)
    y = G[:, 3] * 0.5 + rng.standard_normal(n)
    cov = np.column_stack([np.ones(n), rng.standard_normal(n)])
    null = lmmscan.fit_null(y, cov, kinship=K)
    back = pickle.loads(pickle.dumps(null))
    for field in (
        "n",
        "c",
        "trace_G",
        "lambda_remle",
        "logl_remle",
        "vg",
        "ve",
        "pve",
        "pve_se",
        "lambda_mle",
        "logl_mle",
        "vg_mle",
        "ve_mle",
        "yPy_remle",
        "yPy_mle",
        "evaluations",
    ):
        assert getattr(back.fit, field) == getattr(null.fit, field), field
    for field in ("beta", "beta_se", "beta_mle", "beta_se_mle"):
        np.testing.assert_array_equal(getattr(back.fit, field), getattr(null.fit, field))
    a = lmmscan.scan(G, null_model=null)
    b = lmmscan.scan(G, null_model=back)
    import pandas as pd

    pd.testing.assert_frame_equal(a, b)
