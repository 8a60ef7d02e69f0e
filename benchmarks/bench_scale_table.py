#!/usr/bin/env python3
"""How far each path goes: the largest n that fits in 24 GB, 256 GB and 1 TB by
the memory plan, and the eigendecomposition's time measured at moderate n and
extrapolated with a fitted exponent.

    python benchmarks/bench_scale_table.py [--ns 2000,4000,8000,12000]
        [--drivers evr,evd] [--markdown FILE]

The memory figures come from :mod:`lmmscan.memory` (the same plan the command
line checks before a run; benchmarks/bench_memory_plan.py checks it against
measured peaks): a scan of 1,000,000 variants with the kinship given.  The
times are scipy's ``eigh`` (through lmmscan.spectral, 2 BLAS threads) of a
full-rank kinship (K = Z Z'/p from p = n + 500 standardised random SNPs), one
run per n; the exponent b of t = a n^b is a least-squares fit in log-log.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from lmmscan import memory
from lmmscan.genotypes import default_block_size

SIZES = {"24 GB": 24e9, "256 GB": 256e9, "1 TB": 1e12}


def largest_n(peak_of_n, budget: float) -> int:
    """The largest n (to 100) whose peak fits in ``budget``; 0 when none does."""
    if peak_of_n(1000) > budget:
        return 0
    lo, hi = 1000, 100_000_000
    while hi - lo > 100:
        mid = (lo + hi) // 2
        if peak_of_n(mid) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


def dense(driver: str, whitened: int = 0):
    def peak(n: int) -> int:
        return memory.scan_plan(
            n_file=n, analysed=[n], n_variants=1_000_000, block=default_block_size(n),
            kinship="given", driver=driver, whitened=whitened,
        ).peak  # fmt: skip

    return peak


def low_rank(k: int):
    """The biobank path: the n x k factor decomposed in place, then the scan."""

    def peak(n: int) -> int:
        block = default_block_size(n)
        factor = 8 * n * k
        svd_of_r = 5 * 8 * k * k  # R, U_R, V_R' and gesdd's 3k^2 workspace
        scan = factor + memory.block_bytes(n, block) + memory.block_bytes(k, block, 1)
        return memory.BASE + memory.PER_VARIANT * 1_000_000 + max(factor + svd_of_r, scan)

    return peak


def time_eigh(n: int, driver: str) -> float:
    from lmmscan.spectral import Spectral, eigh_driver

    rng = np.random.default_rng(n)
    p = n + 500
    K = np.zeros((n, n))
    for start in range(0, p, 1000):
        Z = rng.standard_normal((n, min(1000, p - start)))
        K += Z @ Z.T
    K /= p
    with eigh_driver(driver):
        t0 = time.perf_counter()
        Spectral.from_kinship(K, overwrite=True)
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ns", default="2000,4000,8000,12000")
    ap.add_argument("--drivers", default="evr,evd")
    ap.add_argument("--markdown", default=None)
    args = ap.parse_args()
    lines = ["| path | " + " | ".join(SIZES) + " |", "| --- |" + " ---: |" * len(SIZES)]
    paths = {
        "exact, dsyevr (default)": dense("evr"),
        "exact, dsyevd (`--eigh-driver evd`)": dense("evd"),
        "fixed-λ whitened": dense("evr", whitened=1),
        "low rank, k = 10,000 kinship SNPs": low_rank(10_000),
        "low rank, k = 50,000 kinship SNPs": low_rank(50_000),
    }
    for name, peak in paths.items():
        ns = [largest_n(peak, budget) for budget in SIZES.values()]
        lines.append(f"| {name} | " + " | ".join(f"{n:,}" if n else "–" for n in ns) + " |")
    print("\n".join(lines), flush=True)
    ns = [int(x) for x in args.ns.split(",")]
    timing = ["", "| driver | " + " | ".join(f"n = {n:,}" for n in ns) + " | exponent | "
              "n = 50,000 | n = 100,000 |", "| --- |" + " ---: |" * (len(ns) + 3)]  # fmt: skip
    for driver in args.drivers.split(","):
        t = [time_eigh(n, driver) for n in ns]
        b, log_a = np.polyfit(np.log(ns), np.log(t), 1)

        def at(n: int, b: float = b, log_a: float = log_a) -> float:
            return math.exp(log_a) * n**b

        timing.append(
            f"| {driver} | " + " | ".join(f"{x:.1f} s" for x in t)
            + f" | {b:.2f} | {at(50_000) / 3600:.1f} h | {at(100_000) / 3600:.1f} h |"
        )  # fmt: skip
        print(timing[-1], flush=True)
    text = "\n".join(lines + timing)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
