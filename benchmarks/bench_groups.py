"""Random-intercept fit on a large study: 1,000,000 observations in 10,000 groups.

    python benchmarks/bench_groups.py [--n 1000000] [--groups 10000] [--repeat 3]

Prints the median wall time of lmmscan.fit_null(groups=...) (REML and ML are
both fitted in one call) and the fit.  No n x n matrix is formed: the group
structure K = D D' is used in closed form (O(n J)).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import lmmscan


def simulate(n: int, J: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, J, n)
    X = rng.normal(size=(n, 3))
    b = rng.normal(scale=1.5, size=J)
    y = X @ np.array([0.5, -0.2, 0.1]) + 2.0 + b[groups] + rng.normal(size=n)
    return y, X, groups


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    y, X, groups = simulate(args.n, args.groups)
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        model = lmmscan.fit_null(y, X, groups=groups)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    re = model.random_effects()
    t_re = time.perf_counter() - t
    print(f"n = {args.n:,}, groups = {args.groups:,}, covariates = 3 + intercept")
    print(f"fit_null(groups=...): median {statistics.median(times):.2f} s over {args.repeat} runs")
    print(f"random_effects(): {t_re:.2f} s")
    print(f"vg = {model.vg:.4f} (true 2.25), ve = {model.ve:.4f} (true 1), beta = {model.beta}")
    print(f"posterior means: {len(re)} groups, mean sd {np.sqrt(re['var']).mean():.4f}")


if __name__ == "__main__":
    main()
