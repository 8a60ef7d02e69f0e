"""The kernels' instruction-set levels give the same bits where they should.

The weighted sums have an x86-64-v4 (AVX-512) version beside the x86-64-v3
(AVX2 + FMA) one: a sum's 8 partial sums sit in one 512-bit register instead
of two 256-bit ones and take the same fused multiply-adds in the same order,
so every result must be bit for bit the v3 one.  The baseline (no FMA) rounds
differently and is not compared.  On a CPU without AVX-512 the comparison
cannot be made and the test says so.
"""

from __future__ import annotations

import numpy as np
import pytest

from lmmscan import InputError, _core

LEVELS = ("x86-64", "x86-64-v3", "x86-64-v4")


@pytest.fixture
def restore_isa():
    yield
    _core._limit_isa("x86-64-v4")  # the default: no ceiling


def detected() -> str:
    _core._limit_isa("x86-64-v4")
    return _core._isa()


def test_the_level_in_use_is_named_and_can_be_lowered(restore_isa):
    top = detected()
    assert top in LEVELS
    _core._limit_isa("x86-64")
    assert _core._isa() == "x86-64"
    _core._limit_isa("x86-64-v3")
    assert _core._isa() == ("x86-64-v3" if top != "x86-64" else "x86-64")
    with pytest.raises(InputError, match="unknown instruction-set level 'avx512'"):
        _core._limit_isa("avx512")


def problem(rng: np.random.Generator, n: int, c: int, b: int):
    """A rotated problem: eigenvalues, covariates, phenotype and b SNPs."""
    d = rng.gamma(0.7, 1.5, n)
    d[rng.random(n) < 0.1] = 0.0
    W = np.column_stack([np.ones(n), rng.normal(size=(n, c - 1))])
    y = rng.normal(size=n) + W.sum(axis=1)
    X = rng.binomial(2, rng.uniform(0.05, 0.5, b)[:, None], (b, n)).astype(np.float64)
    X += rng.normal(scale=1e-3, size=X.shape)  # every SNP its own values
    return d, np.asfortranarray(W), y, X


def run_all(d, W, y, X, fixed: bool) -> list[np.ndarray]:
    null = _core.fit_null(d, W, y)
    values = [
        np.array([null.lambda_remle, null.logl_remle, null.lambda_mle, null.logl_mle]),
        np.asarray(null.beta),
    ]
    scanner = _core.Scanner(d, W, y, null, fixed_lambda=fixed)
    values.append(scanner.scan(X, threads=1))
    return values


@pytest.mark.parametrize("fixed", [False, True])
def test_avx512_sums_are_the_avx2_ones_bit_for_bit(restore_isa, fixed):
    if detected() != "x86-64-v4":
        pytest.skip("this CPU has no AVX-512 (x86-64-v4): only one level to compare")
    rng = np.random.default_rng(20261206)
    # n: below one vector, several remainders mod 8, and mouse-sized; c: 1-8
    # covariates, so the SNP's m = c + 2 sums and the (c + 1)(c + 2) / 2
    # covariate pairs meet every group width and remainder of both levels
    shapes = [(n, c) for n in (5, 8, 13, 66, 481, 1410) for c in range(1, 9) if n >= c + 3]
    for n, c in shapes:
        d, W, y, X = problem(rng, n, c, b=12)
        _core._limit_isa("x86-64-v3")
        v3 = run_all(d, W, y, X, fixed)
        _core._limit_isa("x86-64-v4")
        v4 = run_all(d, W, y, X, fixed)
        for a, b in zip(v3, v4, strict=True):
            # the same bits: NaN where NaN, -0.0 apart from 0.0
            assert a.tobytes() == b.tobytes(), (n, c)


@pytest.mark.parametrize("n", [1, 15, 16, 17, 33, 481, 1000])
def test_block_filter_is_the_same_at_every_level(n, restore_isa):
    """The block filter's counts, sums, extremes and imputed values take the
    same additions in the same lanes at every level (no multiply), so the
    baseline and AVX2 agree bit for bit, in both memory orders.  The r2
    filter's products (x'x, W'x) are fused multiply-adds from AVX2 on and
    differ from the baseline's in the last bits; they only decide R2 >
    0.9999, and are compared between the FMA levels."""
    top = detected()
    levels = LEVELS[: LEVELS.index(top) + 1]
    if len(levels) == 1:
        pytest.skip("this CPU has only the baseline level: nothing to compare")
    rng = np.random.default_rng(n)
    values = [0.0, 1.0, 2.0, np.nan, 0.37, 1.9]
    X = rng.choice(values, size=(n, 40), p=[0.3, 0.3, 0.25, 0.05, 0.05, 0.05])
    W = np.asfortranarray(np.column_stack([np.ones(n), rng.normal(size=n)]))
    for order in ("F", "C"):
        Xo = np.asarray(X, order=order)
        filtered, products = {}, {}
        for level in levels:
            _core._limit_isa(level)
            out = np.zeros(n * 40)
            found = _core.filter_impute(Xo, 0.01, 0.5, out, 1, W)
            # and in float32 (--precision single): the same values, rounded
            out32 = np.zeros(n * 40, dtype=np.float32)
            _core.filter_impute(Xo, 0.01, 0.5, out32, 1, W)
            assert out32.tobytes() == out.astype(np.float32).tobytes(), (level, order)
            filtered[level] = [a.tobytes() for a in (*found[:3], out, out32)]
            products[level] = [a.tobytes() for a in found[3]]
        assert all(filtered[level] == filtered["x86-64"] for level in levels), order
        fma = [level for level in levels if level != "x86-64"]
        assert all(products[level] == products[fma[0]] for level in fma), order
