#!/usr/bin/env python3
"""Simulated data sets and statsmodels MixedLM reference fits.

Random-intercept model  y = X a + D b + e,  b ~ N(0, s2 I),  e ~ N(0, t2 I).

Run from this directory (tests/data/mixed/):

    python3 make_statsmodels.py simulate   # writes walkthrough.csv, sim45.csv
    Rscript make_lme4.R                    # writes the lme4 CSVs + lme4_*.json
    python3 make_statsmodels.py fit        # writes statsmodels_*.json
    python3 compare.py                     # writes comparison.json

Simulation (the exact order of random draws is part of the definition):

walkthrough  rng = numpy.random.default_rng(2026); J = 4 groups, 30 rows each,
             group means mu = [2, 4, 8, 12]; rows ordered by group (labels 1..4).
             x = -mu[g] + rng.standard_normal(120)
             y = alpha * x + mu[g] + rng.standard_normal(120),  alpha = 1
             (x is drawn for all 120 rows first, then the y noise.)
sim45        rng = numpy.random.default_rng(7); 45 groups (labels 1..45)
             sizes  = rng.integers(3, 41, size=45)        # 3..40 inclusive
             x1     = rng.standard_normal(n)              # continuous
             x2     = rng.integers(0, 2, size=n)          # binary 0/1
             b      = 1.5 * rng.standard_normal(45)       # group sd 1.5
             e      = 1.0 * rng.standard_normal(n)        # residual sd 1.0
             y      = 1.0 + 0.5 * x1 - 0.8 * x2 + b[g] + e

Fits: statsmodels MixedLM.from_formula(formula, data, groups="group"),
reml=True / False.  Written to statsmodels_<data>_<reml|ml>.json.  The lme4
data sets (dyestuff, dyestuff2, sleepstudy) are fitted too when their CSVs
exist.  Three runs per fit (all kept under "runs"):
  lbfgs_default_start           fit(method=["lbfgs"], maxiter=10000).  MixedLM.fit
                                (0.15) drops factr/pgtol and L-BFGS-B uses none
                                of the kwargs it accepts, so this run keeps
                                L-BFGS-B's default tolerances: up to ~1e-3 off.
  bfgs_gtol1e-12_default_start  fit(method=["bfgs"], gtol=1e-12): optimizer-only
                                cross-check of the optimum.
  lbfgs_from_1d_optimum         fit(method=["lbfgs"], start_params=[sqrt(r*)]):
                                the REFERENCE run (top-level numbers), i.e.
                                statsmodels' own quantities at the optimum r*.
r* = s2/t2 comes from an independent 1-D maximisation of the profiled (RE)ML
log-likelihood (class Profile: bounded Brent on log r, then Newton on the
analytic derivative), stored under "profile_1d".  On the boundary (Dyestuff2,
r* = 0) statsmodels cannot start at r = 0, and the bfgs run is the reference.
"""

import json
import sys

import numpy as np
import pandas as pd
import scipy
import statsmodels
import statsmodels.formula.api as smf
from scipy import optimize

VERSIONS = {
    "python": sys.version.split()[0],
    "statsmodels": statsmodels.__version__,
    "numpy": np.__version__,
    "pandas": pd.__version__,
    "scipy": scipy.__version__,
}


# ----------------------------------------------------------------- simulate
def simulate_walkthrough():
    rng = np.random.default_rng(2026)
    means = np.array([2.0, 4.0, 8.0, 12.0])
    J, m, alpha = 4, 30, 1.0
    g = np.repeat(np.arange(J), m)
    mu = means[g]
    x = -mu + rng.standard_normal(J * m)
    y = alpha * x + mu + rng.standard_normal(J * m)
    return pd.DataFrame({"group": g + 1, "x": x, "y": y})


def simulate_sim45():
    rng = np.random.default_rng(7)
    J = 45
    sizes = rng.integers(3, 41, size=J)
    n = int(sizes.sum())
    g = np.repeat(np.arange(J), sizes)
    x1 = rng.standard_normal(n)
    x2 = rng.integers(0, 2, size=n)
    b = 1.5 * rng.standard_normal(J)
    e = 1.0 * rng.standard_normal(n)
    y = 1.0 + 0.5 * x1 - 0.8 * x2 + b[g] + e
    return pd.DataFrame({"group": g + 1, "x1": x1, "x2": x2, "y": y})


def write_csv(df, path):
    # float_format=None -> repr(): shortest string that round-trips the double
    df.to_csv(path, index=False)
    back = pd.read_csv(path)
    for c in df.columns:
        assert np.array_equal(back[c].to_numpy(), df[c].to_numpy()), c


# ----------------------------------------------------------------- data sets
DATASETS = [
    # name, csv, formula, response, fixed-effect columns (besides intercept)
    ("walkthrough", "walkthrough.csv", "y ~ x", "y", ["x"]),
    ("sim45", "sim45.csv", "y ~ x1 + x2", "y", ["x1", "x2"]),
    ("dyestuff", "dyestuff.csv", "Yield ~ 1", "Yield", []),
    ("dyestuff2", "dyestuff2.csv", "Yield ~ 1", "Yield", []),
    ("sleepstudy", "sleepstudy.csv", "Reaction ~ Days", "Reaction", ["Days"]),
]


def load(csv):
    df = pd.read_csv(csv, dtype={"group": str})
    return df


# ----------------------------------------------------------------- 1-D profile
class Profile:
    """Profiled (RE)ML log-likelihood of the random-intercept model in r = s2/t2.

    V_j = I + r 1 1'  (residual variance t2 profiled out)
    ML  : l(r) = -n/2 (1 + log(2 pi RSS/n))       - 1/2 sum log(1 + r n_j)
    REML: l(r) = -(n-p)/2 (1 + log(2 pi RSS/(n-p))) - 1/2 sum log(1 + r n_j)
                 - 1/2 log|X' V^-1 X|
    (lme4 / statsmodels convention: no +1/2 log|X'X| term.)
    """

    def __init__(self, X, y, g):
        self.X, self.y = X, y
        self.n, self.p = X.shape
        labels, gi = np.unique(g, return_inverse=True)
        self.nj = np.bincount(gi).astype(float)
        J = len(self.nj)
        self.XtX = X.T @ X
        self.Xty = X.T @ y
        self.yty = y @ y
        self.sX = np.zeros((J, self.p))
        np.add.at(self.sX, gi, X)
        self.sy = np.bincount(gi, weights=y)

    def parts(self, r):
        c = r / (1.0 + r * self.nj)
        A = self.XtX - (self.sX * c[:, None]).T @ self.sX
        bvec = self.Xty - (self.sX * c[:, None]).T @ self.sy
        beta = np.linalg.solve(A, bvec)
        rss = self.yty - np.sum(c * self.sy**2) - bvec @ beta
        return A, beta, rss

    def loglik(self, r, reml):
        A, beta, rss = self.parts(r)
        logdetV = np.sum(np.log1p(r * self.nj))
        if reml:
            m = self.n - self.p
            return (
                -0.5 * m * (1 + np.log(2 * np.pi * rss / m))
                - 0.5 * logdetV
                - 0.5 * np.linalg.slogdet(A)[1]
            )
        return -0.5 * self.n * (1 + np.log(2 * np.pi * rss / self.n)) - 0.5 * logdetV

    def dloglik(self, r, reml):
        """Analytic derivative dl/dr."""
        A, beta, rss = self.parts(r)
        d = 1.0 / (1.0 + r * self.nj)  # dc/dr = d^2
        d2 = d * d
        # residual group sums s_j = 1'(y_j - X_j beta); dRSS/dr = -sum d_j^2 s_j^2
        s = self.sy - self.sX @ beta
        drss = -np.sum(d2 * s**2)
        dlogdetV = np.sum(self.nj * d)
        m = self.n - self.p if reml else self.n
        out = -0.5 * m * drss / rss - 0.5 * dlogdetV
        if reml:
            dA = -(self.sX * d2[:, None]).T @ self.sX
            out -= 0.5 * np.trace(np.linalg.solve(A, dA))
        return out

    def optimum(self, reml):
        def f(lr):
            return -self.loglik(np.exp(lr), reml)

        res = optimize.minimize_scalar(
            f, bounds=(-30, 10), method="bounded", options={"xatol": 1e-12}
        )
        r = float(np.exp(res.x))
        if self.dloglik(1e-300, reml) <= 0 and r < 1e-8:
            return 0.0, True
        for _ in range(50):  # Newton on dl/dr with numeric second derivative
            g0 = self.dloglik(r, reml)
            h = 1e-4 * r
            H = (self.dloglik(r + h, reml) - self.dloglik(r - h, reml)) / (2 * h)
            step = -g0 / H
            r += step
            if abs(step) < 1e-14 * r:
                break
        return r, False

    def summary(self, r, reml):
        A, beta, rss = self.parts(r)
        m = self.n - self.p if reml else self.n
        t2 = rss / m
        return {
            "r": r,
            "fe": beta,
            "scale": t2,
            "cov_re": r * t2,
            "bse_fe": np.sqrt(np.diag(np.linalg.inv(A)) * t2),
            "llf": self.loglik(r, reml),
        }


# ----------------------------------------------------------------- fit
def rel(a, b):
    """max |a - b| / |b| (absolute difference where b == 0)."""
    a, b = np.atleast_1d(np.asarray(a, float)), np.atleast_1d(np.asarray(b, float))
    den = np.where(b == 0, 1.0, np.abs(b))
    return float(np.max(np.abs(a - b) / den))


def summarize(model, res, names):
    """The reported quantities of one statsmodels MixedLMResults."""
    hess, _ = model.hessian(res.params_object)
    k = model.k_fe
    return {
        "fe_params": dict(zip(names, map(float, res.fe_params.to_numpy()), strict=True)),
        "bse_fe": dict(zip(names, map(float, res.bse_fe.to_numpy()), strict=True)),
        # fixed-effect block of the Hessian only = scale * (X' V^-1 X)^-1,
        # the same as lme4's vcov(); statsmodels' bse_fe above instead comes
        # from the inverse of the JOINT observed Hessian (fixed effects and
        # cov_re), which includes the fe/cov_re cross term.
        "bse_fe_feblock": dict(
            zip(names, map(float, np.sqrt(np.diag(np.linalg.inv(-hess[:k, :k])))), strict=True)
        ),
        "cov_re": float(np.asarray(res.cov_re)[0, 0]),
        "scale": float(res.scale),
        "ratio": float(np.asarray(res.cov_re_unscaled)[0, 0]),
        "llf": float(res.llf),
        "random_effects": {str(g): float(np.asarray(v)[0]) for g, v in res.random_effects.items()},
        "random_effects_cov": {
            str(g): float(np.asarray(v)[0, 0]) for g, v in res.random_effects_cov.items()
        },
        "converged": bool(res.converged),
    }


def try_fit(model, **kw):
    import warnings

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            res = model.fit(**kw)
        except Exception as e:  # statsmodels fails e.g. at the boundary
            return None, f"{type(e).__name__}: {e}", [str(x.message) for x in w]
    return res, None, [f"{x.category.__name__}: {x.message}" for x in w]


def fit_one(name, csv, formula, resp, cols, reml):
    df = load(csv)
    model = smf.mixedlm(formula, df, groups="group")
    names = list(model.exog_names)
    tag = "reml" if reml else "ml"

    # --- independent 1-D optimum over r = s2/t2 (the verification)
    prof = Profile(model.exog, model.endog, df["group"].to_numpy())
    r_opt, boundary = prof.optimum(reml)
    ref = prof.summary(r_opt, reml)
    ref_block = {
        "how": (
            "1-D maximisation of the profiled (RE)ML log-likelihood over "
            "r = s2/t2: scipy bounded Brent on log r, then Newton on the "
            "analytic derivative dl/dr (class Profile in this script)"
        ),
        "ratio": r_opt,
        "boundary": boundary,
        "dloglik_dratio_at_optimum": float(prof.dloglik(max(r_opt, 1e-300), reml)),
        "fe_params": dict(zip(names, map(float, ref["fe"]), strict=True)),
        "bse_fe_conditional": dict(zip(names, map(float, ref["bse_fe"]), strict=True)),
        "cov_re": float(ref["cov_re"]),
        "scale": float(ref["scale"]),
        "llf": float(ref["llf"]),
    }

    def deviation(sm):
        return {
            "ratio": rel(sm["ratio"], r_opt),
            "fe_params": rel(list(sm["fe_params"].values()), ref["fe"]),
            "bse_fe_feblock": rel(list(sm["bse_fe_feblock"].values()), ref["bse_fe"]),
            "cov_re": rel(sm["cov_re"], ref["cov_re"]),
            "scale": rel(sm["scale"], ref["scale"]),
            "llf": rel(sm["llf"], ref["llf"]),
        }

    # --- (1) statsmodels as asked: method=["lbfgs"] from its default start.
    # MixedLM.fit (0.15) accepts only gtol/maxiter/eps/maxcor/ftol/tol/disp/maxls
    # and scipy's L-BFGS-B takes none of its tolerances from those, so the
    # lbfgs run keeps L-BFGS-B's defaults (factr=1e7, pgtol=1e-5).
    blocks = {}
    runs = [
        ("lbfgs_default_start", dict(reml=reml, method=["lbfgs"], maxiter=10000)),
        (
            "bfgs_gtol1e-12_default_start",
            dict(reml=reml, method=["bfgs"], gtol=1e-12, maxiter=10000),
        ),
    ]
    if r_opt > 0:
        # --- (2) the reference: lbfgs started at the verified optimum
        runs.append(
            (
                "lbfgs_from_1d_optimum",
                dict(
                    reml=reml,
                    method=["lbfgs"],
                    maxiter=10000,
                    start_params=np.array([np.sqrt(r_opt)]),
                ),
            )
        )
    results = {}
    for key, kw in runs:
        res, err, warns = try_fit(model, **kw)
        call = ", ".join(
            f"{k}={v!r}" if k != "start_params" else "start_params=[sqrt(ratio)]"
            for k, v in kw.items()
        )
        blk = {
            "call": f"smf.mixedlm({formula!r}, data, groups='group').fit({call})",
            "warnings": warns,
        }
        if res is None:
            blk["error"] = err
        else:
            sm = summarize(model, res, names)
            results[key] = sm
            blk.update(sm)
            blk["rel_diff_vs_1d_optimum"] = deviation(sm)
        blocks[key] = blk

    # reference numbers: statsmodels at the verified optimum; on the boundary
    # (r = 0, Dyestuff2) statsmodels cannot start at r = 0 (cov_re must be
    # invertible) and lbfgs fails, so the tight bfgs run is reported there.
    primary_key = "lbfgs_from_1d_optimum" if r_opt > 0 else "bfgs_gtol1e-12_default_start"
    out = {
        "data": name,
        "csv": csv,
        "formula": formula,
        "groups": "group",
        "method": "REML" if reml else "ML",
        "n": int(model.nobs),
        "n_groups": int(model.n_groups),
        "p": len(names),
        "reference_run": primary_key,
    }
    if primary_key in results:
        out.update({k: v for k, v in results[primary_key].items()})
    else:
        out["error"] = blocks[primary_key].get("error")
    out.update(
        {
            "llf_note": (
                "statsmodels REML llf; same convention as lme4's -REMLcrit/2 "
                "(no +1/2 log|X'X| term)"
            )
            if reml
            else "ML log-likelihood",
            "bse_fe_note": (
                "bse_fe: statsmodels' own, from the inverse of the joint observed "
                "Hessian over (fixed effects, cov_re); bse_fe_feblock: from the "
                "fixed-effect block alone = sqrt(diag(scale (X'V^-1X)^-1)), the "
                "quantity lme4's vcov() reports"
            ),
            "random_effects_note": "conditional modes (BLUPs) given the estimated fixed effects; "
            "random_effects_cov = conditional variances, same as lme4 postVar",
            "profile_1d": ref_block,
            "runs": blocks,
            "versions": VERSIONS,
            "generated_by": "python3 make_statsmodels.py fit",
        }
    )
    path = f"statsmodels_{name}_{tag}.json"
    with open(path, "w") as fh:
        json.dump(out, fh, indent=2)
        fh.write("\n")
    msg = []
    for key, blk in blocks.items():
        if "error" in blk:
            msg.append(f"{key}: {blk['error']}")
        else:
            d = blk["rel_diff_vs_1d_optimum"]
            msg.append(
                f"{key}: conv={blk['converged']} ratio {d['ratio']:.1e} "
                f"fe {d['fe_params']:.1e} llf {d['llf']:.1e}"
            )
    print(f"{path}  r_opt={r_opt:.15g}\n    " + "\n    ".join(msg))


def main(argv):
    cmd = argv[1] if len(argv) > 1 else "all"
    if cmd in ("simulate", "all"):
        write_csv(simulate_walkthrough(), "walkthrough.csv")
        write_csv(simulate_sim45(), "sim45.csv")
        print("wrote walkthrough.csv, sim45.csv")
    if cmd in ("fit", "all"):
        import os

        for name, csv, formula, resp, cols in DATASETS:
            if not os.path.exists(csv):
                print(f"skip {name}: {csv} missing")
                continue
            for reml in (True, False):
                fit_one(name, csv, formula, resp, cols, reml)


if __name__ == "__main__":
    main(sys.argv)
