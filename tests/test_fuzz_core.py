"""Fuzzing the C++ core through its bindings: random shapes and values, NaN
and inf included.  Every call must either raise a ValueError (bad input) or
return; never crash or hang.  CI runs a bounded number of examples; set
LMMSCAN_FUZZ_EXAMPLES to run more (the closing note of the robustness issue
records a long run)."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lmmscan import _core

EXAMPLES = int(os.environ.get("LMMSCAN_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

wild = st.floats(allow_nan=True, allow_infinity=True, width=64)
tame = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=64)
values = st.one_of(tame, wild, st.sampled_from([0.0, 1e-300, 1e300, -0.0]))


@st.composite
def problems(draw):
    n = draw(st.integers(0, 24))
    c = draw(st.integers(0, 4))
    elems = draw(st.sampled_from([tame, values]))
    d = draw(hnp.arrays(np.float64, n, elements=st.one_of(st.floats(0, 1e4), elems)))
    W = draw(hnp.arrays(np.float64, (n, c), elements=elems))
    y = draw(hnp.arrays(np.float64, n, elements=elems))
    b = draw(st.integers(0, 5))
    X = draw(hnp.arrays(np.float64, (b, n), elements=elems))
    lam = draw(st.sampled_from([(1e-5, 1e5, 10), (1e-8, 1e8, 3), (0.5, 2.0, 1)]))
    complement = draw(st.booleans())
    return d, np.asfortranarray(W), y, X, lam, complement


@FUZZ
@given(problems())
def test_core_never_crashes(problem):
    d, W, y, X, (l_min, l_max, n_region), with_complement = problem
    n, c = W.shape
    kwargs = {}
    if with_complement:
        kwargs = {"n_total": n + 3, "complement": np.eye(c + 1)}
    try:
        fit = _core.fit_null(d, W, y, l_min, l_max, n_region, **kwargs)
    except ValueError:
        return
    assert fit.n >= c + 2
    try:
        scanner = _core.Scanner(d, W, y, fit, l_min=l_min, l_max=l_max, n_region=n_region, **kwargs)
        comp = np.ones((X.shape[0], c + 2)) if with_complement else None
        out = scanner.scan(np.ascontiguousarray(X), comp, 2)
    except ValueError:
        return
    assert out.shape == (X.shape[0], len(_core.RESULT_COLUMNS))
    lam = out[:, _core.RESULT_COLUMNS.index("l_remle")]
    ok = np.isfinite(lam)
    assert ((lam[ok] >= l_min) & (lam[ok] <= l_max)).all()


@FUZZ
@given(
    n=st.integers(3, 40),
    c=st.integers(1, 3),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1e-150, 1e-8, 1.0, 1e8, 1e150]),
)
def test_finite_problems_give_finite_or_bounded_answers(n, c, seed, scale):
    """Well-posed random problems at extreme scales: results in range, never NaN p."""
    if n < c + 2:
        return
    rng = np.random.default_rng(seed)
    d = np.sort(rng.gamma(0.5, 2.0, n)) * rng.choice([0, 1], n, p=[0.2, 0.8])
    W = np.asfortranarray(np.column_stack([np.ones(n), rng.normal(size=(n, c - 1))]))
    y = rng.normal(size=n) * scale
    fit = _core.fit_null(d, W, y)
    if n < c + 3:
        return
    X = rng.normal(size=(4, n))
    out = _core.Scanner(d, W, y, fit).scan(X, None, 1)
    for name in ("l_remle", "l_mle"):
        lam = out[:, _core.RESULT_COLUMNS.index(name)]
        assert ((lam >= 1e-5) & (lam <= 1e5)).all(), name
    f = out[:, _core.RESULT_COLUMNS.index("f_wald")]
    assert (np.isnan(f) | (f >= -1e-6)).all()


def test_fuzz_example_count_is_reported():
    """Keeps the number of fuzzing examples visible in the test log."""
    assert EXAMPLES >= 1
    print(f"core fuzzing: {EXAMPLES} examples per property")
