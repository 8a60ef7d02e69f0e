"""Group random-intercept fits against lme4 and statsmodels MixedLM.

Fixtures: tests/data/mixed (made by make_lme4.R and make_statsmodels.py,
see the README there)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import lmmscan

from .conftest import DATA

MIXED = DATA / "mixed"
RESPONSE = {
    "dyestuff": "Yield",
    "dyestuff2": "Yield",
    "sleepstudy": "Reaction",
    "walkthrough": "y",
    "sim45": "y",
}
COVARIATES = {
    "dyestuff": [],
    "dyestuff2": [],
    "sleepstudy": ["Days"],
    "walkthrough": ["x"],
    "sim45": ["x1", "x2"],
}


def fit(data: str, method: str) -> lmmscan.NullModel:
    frame = pd.read_csv(MIXED / f"{data}.csv")
    cov = frame[COVARIATES[data]].to_numpy() if COVARIATES[data] else None
    return lmmscan.fit_null(
        frame[RESPONSE[data]].to_numpy(), cov, groups=frame["group"].to_numpy(), method=method
    )


def ours_in_reference_order(model: lmmscan.NullModel, values: np.ndarray, names: list[str]):
    """lmmscan puts the added intercept last; lme4 and statsmodels first."""
    assert names[0] in ("(Intercept)", "Intercept")
    return np.concatenate([[values[-1]], values[:-1]])


def close(ours: float, ref: float, rel: float = 1e-6, zero_abs: float = 1e-8) -> bool:
    if ref == 0:
        return abs(ours) <= zero_abs
    return abs(ours - ref) <= rel * abs(ref)


@pytest.mark.parametrize("data", ["dyestuff", "dyestuff2", "sleepstudy", "walkthrough", "sim45"])
@pytest.mark.parametrize("method", ["reml", "ml"])
def test_matches_lme4(data, method):
    ref = json.loads((MIXED / f"lme4_{data}_{method}.json").read_text())
    model = fit(data, method)
    names = list(ref["fixef"])
    beta = ours_in_reference_order(model, model.beta, names)
    se = ours_in_reference_order(model, model.beta_se, names)
    np.testing.assert_allclose(beta, [ref["fixef"][k] for k in names], rtol=1e-6)
    np.testing.assert_allclose(se, [ref["fixef_se"][k] for k in names], rtol=1e-6)
    assert close(model.vg, ref["sigma2_group"]), (model.vg, ref["sigma2_group"])
    assert close(model.ve, ref["sigma2_resid"])
    assert close(model.loglik, ref["loglik"])
    re = model.random_effects()
    labels = [str(k) for k in re.index]
    mean_ref = np.array([ref["ranef"][k] for k in labels])
    var_ref = np.array([ref["ranef_condvar"][k] for k in labels])
    if np.all(mean_ref == 0):
        np.testing.assert_allclose(re["mean"], 0, atol=1e-8)
    else:
        np.testing.assert_allclose(re["mean"], mean_ref, rtol=1e-5)
    np.testing.assert_allclose(re["var_given_beta"], var_ref, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("data", ["walkthrough", "sim45"])
@pytest.mark.parametrize("method", ["reml", "ml"])
def test_matches_statsmodels(data, method):
    ref = json.loads((MIXED / f"statsmodels_{data}_{method}.json").read_text())
    model = fit(data, method)
    names = list(ref["fe_params"])
    np.testing.assert_allclose(
        ours_in_reference_order(model, model.beta, names),
        [ref["fe_params"][k] for k in names],
        rtol=1e-6,
    )
    # statsmodels' own bse_fe comes from the joint Hessian (fixed effects and
    # cov_re); the fixed-effect block alone is the GLS covariance lme4 reports.
    np.testing.assert_allclose(
        ours_in_reference_order(model, model.beta_se, names),
        [ref["bse_fe_feblock"][k] for k in names],
        rtol=1e-6,
    )
    assert close(model.vg, ref["cov_re"])
    assert close(model.ve, ref["scale"])
    assert close(model.loglik, ref["llf"])
    re = model.random_effects()
    mean_ref = np.array([ref["random_effects"][str(k)] for k in re.index])
    np.testing.assert_allclose(re["mean"], mean_ref, rtol=1e-5)


def test_gemma_reml_convention_adds_half_logdet():
    """GEMMA's REML log-likelihood is lme4's plus 1/2 log|X'X| (documented in README)."""
    model = fit("sleepstudy", "reml")
    half = 0.5 * np.linalg.slogdet(model.W.T @ model.W)[1]
    assert model.loglik_reml == pytest.approx(model.loglik + half, rel=1e-12)
