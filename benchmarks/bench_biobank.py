#!/usr/bin/env python3
"""A biobank-size scan through a low-rank kinship: wall time and peak memory.

    python benchmarks/bench_biobank.py [--samples 100000] [--kinship-snps 10000]
        [--snps 20000] [--work DIR] [--keep] [--markdown FILE]

Simulates a PLINK fileset (``sim_plink.py``: related samples in 10
populations, 1% missing calls) of kinship SNPs followed by tested SNPs in a
work directory (a new one under /tmp by default, deleted at the end unless
``--keep``), then runs, as its own process, what a biobank user runs:

    geno = lmmscan.read_plink(prefix)
    lk = lmmscan.low_rank_kinship(geno, snps=range(k))           # n x k factor
    null = fit_null_lowrank(y, None, lk, consume=True)           # U in its memory
    lmmscan.scan(SubsetGenotypes(geno, range(k, k + m)), null_model=null, test="wald")

and prints each step's seconds with the process's peak RSS (VmHWM) after it.
The n x k factor is the one samples-sized matrix: it is centred, decomposed
(QR in place, the k x k SVD) and becomes the eigenvectors in its own memory.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

PROGRAM = r"""
import json, sys, time
import numpy as np
import lmmscan
from lmmscan.genotypes import SubsetGenotypes
from lmmscan.lowrank import fit_null_lowrank
from lmmscan.memory import peak_rss

def hwm():
    return peak_rss() / 2**30

prefix, k, m, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
steps = []
t = time.perf_counter()
geno = lmmscan.read_plink(prefix)
y = geno.fam_phenotypes([1])[:, 0]
lk = lmmscan.low_rank_kinship(geno, snps=np.arange(k), filter_samples=~np.isnan(y))
steps.append(("kinship factor (read, filter, standardise)", time.perf_counter() - t, hwm()))
t = time.perf_counter()
null = fit_null_lowrank(y, None, lk, consume=True)
del lk
steps.append(("decomposition and null fit", time.perf_counter() - t, hwm()))
t = time.perf_counter()
table = lmmscan.scan(SubsetGenotypes(geno, np.arange(k, k + m)), null_model=null, test="wald")
steps.append(("scan", time.perf_counter() - t, hwm()))
np.save(out, table[["beta", "se", "p_wald"]].to_numpy())
print(json.dumps({"steps": steps, "rank": int(null.spectral.U.shape[1]),
                  "n_analyzed": int(null.n_analyzed), "tested": int(len(table)),
                  "pve": float(null.pve)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--kinship-snps", type=int, default=10_000)
    ap.add_argument("--snps", type=int, default=20_000)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lmmscan-biobank-"))
    work.mkdir(parents=True, exist_ok=True)
    k, m = args.kinship_snps, args.snps
    try:
        prefix = work / "sim"
        t0 = time.perf_counter()
        if not Path(f"{prefix}.bed").exists():
            subprocess.run(
                [sys.executable, str(HERE / "sim_plink.py"), str(work), "--samples",
                 str(args.samples), "--snps", str(k + m)],
                check=True,
            )  # fmt: skip
        t_sim = time.perf_counter() - t0
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", PROGRAM, str(prefix), str(k), str(m), str(work / "p.npy")],
            stdout=subprocess.PIPE,
            text=True,
        )
        out, _ = proc.communicate()
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"the scan process failed ({proc.returncode})")
        result = json.loads(out.strip().splitlines()[-1])
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    rows = [
        "| step | seconds | peak RSS after it, GB |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {sec:.1f} | {gb:.2f} |" for name, sec, gb in result["steps"]),
        f"| whole process | {wall:.1f} | {max(s[2] for s in result['steps']):.2f} |",
    ]
    text = (
        f"{args.samples:,} samples ({result['n_analyzed']:,} analysed) x {k:,} kinship SNPs "
        f"(rank {result['rank']:,}), {result['tested']:,} SNPs tested (Wald); simulation "
        f"{t_sim:.0f} s (not counted); pve {result['pve']:.3f}\n\n" + "\n".join(rows)
    )
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
