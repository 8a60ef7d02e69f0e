#!/usr/bin/env python3
"""Cross-check the lme4 and statsmodels reference fits; write comparison.json.

Run from this directory after make_statsmodels.py and make_lme4.R:

    python3 compare.py

For every data set and method it reports the largest relative disagreement
|statsmodels - lme4| / |lme4| per quantity (absolute difference where the lme4
value is exactly 0, i.e. on the Dyestuff2 boundary), for
  * "reference": statsmodels' reference run (the numbers at the top level of
    statsmodels_*.json: lbfgs started at the verified 1-D optimum), and
  * "lbfgs_default": statsmodels' plain fit(method=["lbfgs"]) from its default
    start with default tolerances (to show why that is not precise enough),
and the disagreement of lme4 with the independent 1-D profile optimum.

It also checks the REML log-likelihood convention on sleepstudy:
  GEMMA's REML log-likelihood = lme4's (-REMLcrit/2) + 1/2 log|X'X|.
"""

import json

import numpy as np
import pandas as pd

DATA = ["dyestuff", "dyestuff2", "sleepstudy", "walkthrough", "sim45"]
QUANT = [  # (name, lme4 key, statsmodels key, kind)
    ("fixef", "fixef", "fe_params", "vec"),
    ("fixef_se (sm bse_fe_feblock)", "fixef_se", "bse_fe_feblock", "vec"),
    ("fixef_se (sm bse_fe)", "fixef_se", "bse_fe", "vec"),
    ("sigma2_group", "sigma2_group", "cov_re", "num"),
    ("sigma2_resid", "sigma2_resid", "scale", "num"),
    ("loglik", "loglik", "llf", "num"),
    ("ranef", "ranef", "random_effects", "lab"),
    ("ranef_condvar", "ranef_condvar", "random_effects_cov", "lab"),
]


def reldiff(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    den = np.where(b == 0, 1.0, np.abs(b))
    return float(np.max(np.abs(a - b) / den))


def values(d, key, kind, labels=None):
    v = d[key]
    if kind == "num":
        return [v]
    if kind == "vec":
        return list(v.values())  # same order: intercept first
    return [v[str(g)] for g in labels]


def compare(lm, sm):
    labels = list(lm["ranef"].keys())
    out = {}
    for name, lk, sk, kind in QUANT:
        if sk not in sm:
            continue
        out[name] = reldiff(values(sm, sk, kind, labels), values(lm, lk, kind, labels))
    return out


def gemma_reml_loglik(X, y, g, r):
    """GEMMA's REML log-likelihood (Zhou & Stephens 2012), profiled over tau,
    at ratio r = s2/t2, dense: H = r Z Z' + I.
      l_R = (n-c)/2 (log((n-c)/(2 pi)) - 1) - 1/2 log|H|
            - 1/2 (log|W'H^-1 W| - log|W'W|) - (n-c)/2 log(y'P y)"""
    n, c = X.shape
    Z = (g[:, None] == np.unique(g)[None, :]).astype(float)
    H = r * Z @ Z.T + np.eye(n)
    Hi = np.linalg.inv(H)
    WHW = X.T @ Hi @ X
    P = Hi - Hi @ X @ np.linalg.solve(WHW, X.T @ Hi)
    df = n - c
    return (
        0.5 * df * (np.log(df / (2 * np.pi)) - 1)
        - 0.5 * np.linalg.slogdet(H)[1]
        - 0.5 * (np.linalg.slogdet(WHW)[1] - np.linalg.slogdet(X.T @ X)[1])
        - 0.5 * df * np.log(y @ P @ y)
    )


def main():
    res = {"note": __doc__.strip(), "fits": {}}
    maxrel = {}
    lines = []
    for data in DATA:
        for m in ("reml", "ml"):
            lm = json.load(open(f"lme4_{data}_{m}.json"))
            sm = json.load(open(f"statsmodels_{data}_{m}.json"))
            ent = {"statsmodels_reference_run": sm["reference_run"], "reference": compare(lm, sm)}
            raw = sm["runs"]["lbfgs_default_start"]
            ent["lbfgs_default"] = compare(lm, raw) if "error" not in raw else raw["error"]
            p1 = sm["profile_1d"]
            ent["lme4_vs_1d_optimum"] = {
                "ratio=theta^2": reldiff(lm["theta"] ** 2, p1["ratio"]),
                "fixef": reldiff(list(lm["fixef"].values()), list(p1["fe_params"].values())),
                "fixef_se": reldiff(
                    list(lm["fixef_se"].values()), list(p1["bse_fe_conditional"].values())
                ),
                "sigma2_group": reldiff(lm["sigma2_group"], p1["cov_re"]),
                "sigma2_resid": reldiff(lm["sigma2_resid"], p1["scale"]),
                "loglik": reldiff(lm["loglik"], p1["llf"]),
            }
            res["fits"][f"{data}_{m}"] = ent
            if data == "dyestuff2":
                # boundary: lme4 has exactly 0; statsmodels cannot reach 0
                # (cov_re must stay invertible) and stops at a small ratio
                ent["statsmodels_ratio"] = sm["ratio"]
                ent["statsmodels_cov_re"] = sm["cov_re"]
            else:
                for q, v in ent["reference"].items():
                    maxrel[q] = max(maxrel.get(q, 0.0), v)
            lines.append(
                f"{data:12s} {m:4s} "
                + " ".join(
                    f"{q.split()[0] if 'bse_fe)' not in q else 'se(sm)'}={v:.1e}"
                    for q, v in ent["reference"].items()
                )
            )
    res["max_rel_disagreement_statsmodels_vs_lme4"] = maxrel
    res["max_rel_note"] = (
        "over all interior fits (all data sets and methods but Dyestuff2), "
        "statsmodels reference run vs lme4.  Dyestuff2 (lme4: group "
        "variance exactly 0) is under fits.dyestuff2_*: statsmodels cannot "
        "reach the boundary and stops at a small positive ratio, so there "
        "the differences for quantities that are 0 in lme4 are absolute"
    )
    # the same maximum restricted to the data sets the brief asks for
    res["max_rel_disagreement_walkthrough_sim45"] = {
        q: max(
            res["fits"][f"{d}_{m}"]["reference"][q]
            for d in ("walkthrough", "sim45")
            for m in ("reml", "ml")
        )
        for q in maxrel
    }

    # ---- REML log-likelihood convention (sleepstudy)
    df = pd.read_csv("sleepstudy.csv", dtype={"group": str})
    X = np.column_stack([np.ones(len(df)), df["Days"].to_numpy(float)])
    y = df["Reaction"].to_numpy(float)
    lm = json.load(open("lme4_sleepstudy_reml.json"))
    sm = json.load(open("statsmodels_sleepstudy_reml.json"))
    half_logdet = 0.5 * np.linalg.slogdet(X.T @ X)[1]
    gem = gemma_reml_loglik(X, y, df["group"].to_numpy(), lm["theta"] ** 2)
    conv = {
        "half_logdet_XtX": half_logdet,
        "XtX": (X.T @ X).tolist(),
        "lme4_loglik_reml": lm["loglik"],
        "lme4_minus_REMLcrit_over_2": -lm["REMLcrit"] / 2,
        "statsmodels_llf_reml": sm["llf"],
        "statsmodels_minus_lme4": sm["llf"] - lm["loglik"],
        "gemma_formula_reml_loglik": gem,
        "gemma_minus_lme4": gem - lm["loglik"],
        "gemma_minus_lme4_minus_half_logdet_XtX": gem - lm["loglik"] - half_logdet,
        "conclusion": (
            "lme4's REML logLik (= -REMLcrit/2) and statsmodels' REML llf are the "
            "same function and omit the +1/2 log|X'X| term; GEMMA's REML "
            "log-likelihood = lme4's + 1/2 log|X'X| (a constant for fixed X, so "
            "the optimum is the same; GEMMA's value does not change when X is "
            "reparametrised, lme4's does)"
        ),
    }
    res["reml_convention_sleepstudy"] = conv
    # statsmodels REML llf vs lme4 -REMLcrit/2 on every data set
    res["statsmodels_reml_llf_vs_lme4_minus_REMLcrit_half"] = {
        d: json.load(open(f"statsmodels_{d}_reml.json"))["llf"]
        - (-json.load(open(f"lme4_{d}_reml.json"))["REMLcrit"] / 2)
        for d in DATA
    }

    with open("comparison.json", "w") as fh:
        json.dump(res, fh, indent=2)
        fh.write("\n")
    print("statsmodels (reference run) vs lme4, max relative difference per quantity:")
    print("\n".join(lines))
    print("max over interior fits:", {k: f"{v:.1e}" for k, v in maxrel.items()})
    print("lbfgs default start vs lme4:")
    for k, e in res["fits"].items():
        v = e["lbfgs_default"]
        print(
            f"  {k:18s}",
            v
            if isinstance(v, str)
            else " ".join(f"{q.split()[0]}={x:.1e}" for q, x in v.items() if "bse_fe)" not in q),
        )
    print("lme4 vs 1-D optimum:")
    for k, e in res["fits"].items():
        print(f"  {k:18s}", " ".join(f"{q}={x:.1e}" for q, x in e["lme4_vs_1d_optimum"].items()))
    print("REML convention:", json.dumps(conv, indent=1))
    print(
        "sm REML llf - lme4 -REMLcrit/2:", res["statsmodels_reml_llf_vs_lme4_minus_REMLcrit_half"]
    )


if __name__ == "__main__":
    main()
