"""Peak memory of fit_null + scan at n = 10,000, with and without overwrite_kinship.

    python benchmarks/bench_memory.py [--n 10000] [--snps 3000] [--work DIR]
        [--modes copy,overwrite,fixed] [--rounds 1]

Makes (seeded, once per DIR): a random PSD kinship over n samples from
``--kinship-snps`` random standardised SNPs (K = ZZ'/p, saved as K.npy in C
order), a phenotype with ``--miss-pheno`` missing values (so that K is
restricted to the analysed samples) and two covariates, and a PLINK fileset
of ``--snps`` SNPs with 1% missing calls.  Each mode then runs in a fresh
subprocess:

    K = np.load("K.npy")                        # as lmmscan.read_kinship does
    null = fit_null(y, cov, kinship=K, overwrite_kinship=...)
    del K                                       # as the CLI does after the fit
    scan(read_plink(...), null_model=null)

(mode ``fixed``: overwrite, then ``scan(..., test="wald", lambda_mode="null")``,
which whitens: U and the Cholesky factor L of lambda K + I side by side)
and prints the high-water mark (VmHWM from /proc/self/status) after each
step, in MiB and in units of 8n^2 bytes for n = the analysed samples and
n = all samples.  The target of issue 5 is 2.5 x 8n^2 plus the block buffers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import numpy as np

if TYPE_CHECKING:
    from lmmscan.engine import Test

MiB = 1 << 20


class ScanOptions(TypedDict, total=False):
    """The options of mode ``fixed`` (the other modes: scan's defaults)."""

    test: Test
    lambda_mode: str


def vmhwm() -> int:
    """Peak resident set size of this process so far, in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def make_inputs(
    work: Path, n: int, kinship_snps: int, snps: int, miss_pheno: float, seed: int
) -> None:
    if (work / "done").exists():
        return
    from bed_reader import to_bed

    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    K = np.zeros((n, n))
    done = 0
    while done < kinship_snps:  # in slices, so the generator stays small
        k = min(500, kinship_snps - done)
        p = rng.uniform(0.05, 0.5, k)
        Z = (rng.binomial(2, p, size=(n, k)) - 2 * p) / np.sqrt(2 * p * (1 - p))
        K += Z @ Z.T
        done += k
    K /= kinship_snps
    K = (K + K.T) / 2
    np.save(work / "K.npy", K)
    del K
    y = rng.normal(size=n)
    y[rng.uniform(size=n) < miss_pheno] = np.nan
    cov = rng.normal(size=(n, 2))
    np.save(work / "y.npy", y)
    np.save(work / "cov.npy", cov)
    p = rng.uniform(0.02, 0.5, snps)
    G = rng.binomial(2, p, size=(n, snps)).astype(np.float32)
    G[rng.uniform(size=G.shape) < 0.01] = np.nan
    to_bed(
        work / "geno.bed",
        G,
        properties={
            "chromosome": np.repeat(["1"], snps),
            "sid": [f"s{i}" for i in range(snps)],
            "bp_position": np.arange(1, snps + 1),
        },
    )
    (work / "done").write_text("ok\n")


def child(work: Path, mode: str) -> None:
    """One measured run (in its own process)."""
    marks = {}
    t0 = time.perf_counter()
    import lmmscan

    marks["imports"] = vmhwm()
    y = np.load(work / "y.npy")
    cov = np.load(work / "cov.npy")
    K = np.load(work / "K.npy")
    marks["K loaded"] = vmhwm()
    t1 = time.perf_counter()
    null = lmmscan.fit_null(y, cov, kinship=K, overwrite_kinship=mode != "copy")
    t_fit = time.perf_counter() - t1
    marks["null fit"] = vmhwm()
    del K
    report = lmmscan.ScanReport()
    t1 = time.perf_counter()
    fixed: ScanOptions = {"test": "wald", "lambda_mode": "null"} if mode == "fixed" else {}
    table = lmmscan.scan(lmmscan.read_plink(work / "geno"), null_model=null, report=report, **fixed)
    t_scan = time.perf_counter() - t1
    marks["scan"] = vmhwm()
    import pandas as pd  # loaded by the scan

    assert isinstance(table, pd.DataFrame)  # one phenotype: one table
    print(
        json.dumps(
            {
                "marks": marks,
                "n_all": int(y.shape[0]),
                "n": null.n_analyzed,
                "tested": len(table),
                "lambda": null.lambda_,
                "loglik": null.loglik,
                "p_wald_sum": float(np.sum(np.log(table["p_wald"]))),
                "fit_s": t_fit,
                "scan_s": t_scan,
                "total_s": time.perf_counter() - t0,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--kinship-snps", type=int, default=2_000)
    ap.add_argument("--snps", type=int, default=3_000, help="SNPs scanned")
    ap.add_argument("--miss-pheno", type=float, default=0.03)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument(
        "--work",
        type=Path,
        default=None,
        help="where the inputs are made (kept; default: a temporary directory)",
    )
    ap.add_argument("--modes", default="copy,overwrite")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--child", choices=["copy", "overwrite", "fixed"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.work, a.child)
        return
    tmp = None
    if a.work is None:
        tmp = tempfile.TemporaryDirectory(prefix="lmmscan-mem-")
        a.work = Path(tmp.name)
    make_inputs(a.work, a.n, a.kinship_snps, a.snps, a.miss_pheno, a.seed)
    modes = a.modes.split(",")
    print(f"n = {a.n}, {a.snps} SNPs scanned, load average {os.getloadavg()[0]:.2f}")
    rows = []
    for r in range(a.rounds):
        for mode in modes[r % len(modes) :] + modes[: r % len(modes)]:
            out = subprocess.run(
                [sys.executable, __file__, "--work", str(a.work), "--child", mode],
                check=True,
                capture_output=True,
                text=True,
            )
            res = json.loads(out.stdout.strip().splitlines()[-1])
            res["mode"] = mode
            res["load"] = os.getloadavg()[0]
            rows.append(res)
            n, n_all = res["n"], res["n_all"]
            unit, unit_all = 8.0 * n * n, 8.0 * n_all * n_all
            print(
                f"\n{mode} (round {r + 1}; n analysed = {n}, all = {n_all}; "
                f"{res['tested']} SNPs tested; fit {res['fit_s']:.1f} s, "
                f"scan {res['scan_s']:.1f} s; load {res['load']:.2f})"
            )
            print(
                f"  {'VmHWM after':12s} {'MiB':>8s} {'x 8n^2':>8s} {'x 8N^2 (all)':>13s} "
                f"{'above imports x 8n^2':>21s}"
            )
            base = res["marks"]["imports"]
            for step, b in res["marks"].items():
                print(
                    f"  {step:12s} {b / MiB:8.0f} {b / unit:8.3f} {b / unit_all:13.3f} "
                    f"{(b - base) / unit:21.3f}"
                )
            target = 2.5 * unit
            print(
                f"  target 2.5 x 8n^2 = {target / MiB:.0f} MiB; "
                f"lambda {res['lambda']:.10g}, loglik {res['loglik']:.10g}"
            )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
