"""A 50,000-sample study with a 2,000-SNP kinship: low-rank fit and scan of
10,000 SNPs, never forming an n x n matrix (which alone would be 20 GB).

    python benchmarks/bench_lowrank.py [--n 50000] [--k 2000] [--m 10000]
                                       [--test all] [--dir DIR]

Simulates PLINK filesets (kinship.bed: k SNPs; test.bed: m SNPs; the same
.fam with the phenotype) in DIR (default: a temp dir), then runs the
analysis in a fresh process and reports its wall time per phase and its
peak resident memory (ru_maxrss), so the simulation does not count.
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
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lmmscan.engine import Test

# .bed 2-bit codes for the count of the .bim column-5 allele (PLINK's A1):
# 2 -> 00, 1 -> 10 (het), 0 -> 11
_CODE = np.array([0b11, 0b10, 0b00], dtype=np.uint8)


def pack_bed(G: np.ndarray) -> bytes:
    """SNP-major .bed bytes of G (samples x SNPs, values 0/1/2)."""
    n, m = G.shape
    pad = (-n) % 4
    codes = _CODE[G.T]  # (m, n)
    if pad:
        codes = np.hstack([codes, np.zeros((m, pad), dtype=np.uint8)])
    c = codes.reshape(m, -1, 4)
    packed = c[:, :, 0] | (c[:, :, 1] << 2) | (c[:, :, 2] << 4) | (c[:, :, 3] << 6)
    return packed.astype(np.uint8).tobytes()


def simulate(out: Path, n: int, k: int, m: int, seed: int = 2026, chunk: int = 500) -> None:
    rng = np.random.default_rng(seed)
    g = np.zeros(n)
    for name, count, causal in (("kinship", k, True), ("test", m, False)):
        with open(out / f"{name}.bed", "wb") as bed, open(out / f"{name}.bim", "w") as bim:
            bed.write(b"\x6c\x1b\x01")
            for start in range(0, count, chunk):
                b = min(chunk, count - start)
                af = rng.uniform(0.05, 0.5, b)
                G = rng.binomial(2, af, size=(n, b)).astype(np.uint8)
                if causal:  # a polygenic signal on the kinship SNPs (h2 ~ 0.5)
                    Z = (G - 2 * af) / np.sqrt(2 * af * (1 - af))
                    g += Z @ rng.normal(scale=1 / np.sqrt(count), size=b)
                bed.write(pack_bed(G))
                for j in range(start, start + b):
                    bim.write(f"{1 + j % 22}\t{name}{j}\t0\t{j * 1000 + 1}\tA\tG\n")
    y = g + rng.normal(size=n)
    with open(out / "kinship.fam", "w") as fam:
        for i in range(n):
            fam.write(f"f{i}\ti{i}\t0\t0\t0\t{y[i]:.10g}\n")
    (out / "test.fam").write_bytes((out / "kinship.fam").read_bytes())


def analyse(directory: str, test: Test) -> dict:
    """Runs in a fresh process: the low-rank fit and scan, timed."""
    import resource

    import lmmscan

    d = Path(directory)
    t = {}
    t0 = time.perf_counter()
    kin_src = lmmscan.read_plink(d / "kinship")
    lr = lmmscan.low_rank_kinship(kin_src, "standardized")
    t["kinship factor (read + standardise)"] = time.perf_counter() - t0
    y = kin_src.phenotype
    t0 = time.perf_counter()
    spectral = lr.spectral(~np.isnan(y))
    t["economy SVD"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    null = lmmscan.fit_null(y, spectral=spectral)
    t["null fit"] = time.perf_counter() - t0
    del lr
    t0 = time.perf_counter()
    report = lmmscan.ScanReport()
    table = lmmscan.scan(lmmscan.read_plink(d / "test"), null_model=null, test=test, report=report)
    t["scan"] = time.perf_counter() - t0
    import pandas as pd  # loaded by the scan

    assert isinstance(table, pd.DataFrame)  # one phenotype: one table
    return {
        "seconds": t,
        "scan_phases": report.seconds,
        "rank": spectral.rank,
        "snps": len(table),
        "pve": null.pve,
        "min_p": float(table[[c for c in table.columns if c.startswith("p_")][0]].min()),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--k", type=int, default=2_000)
    ap.add_argument("--m", type=int, default=10_000)
    ap.add_argument("--test", default="all")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(analyse(args.child, args.test)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.dir or tmp)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        simulate(out, args.n, args.k, args.m)
        print(
            f"simulated n = {args.n:,}, kinship SNPs k = {args.k:,}, tested SNPs "
            f"m = {args.m:,} in {time.perf_counter() - t0:.1f} s"
        )
        t0 = time.perf_counter()
        res = subprocess.run(
            [sys.executable, __file__, "--child", str(out), "--test", args.test],
            check=True,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        r = json.loads(res.stdout.strip().splitlines()[-1])
        for phase, sec in r["seconds"].items():
            print(f"  {phase:38s} {sec:7.1f} s")
        print("  scan phases: " + ", ".join(f"{k} {v:.1f}" for k, v in r["scan_phases"].items()))
        print(
            f"analysis process: {wall:.1f} s wall (with start-up), peak RSS "
            f"{r['peak_rss_gb']:.2f} GB (an n x n float64 matrix: "
            f"{args.n**2 * 8 / 2**30:.1f} GB)"
        )
        print(f"load average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print(
            f"rank {r['rank']}, {r['snps']:,} SNPs tested (test={args.test}), "
            f"pve {r['pve']:.3f}, min p {r['min_p']:.2e}"
        )


if __name__ == "__main__":
    main()
