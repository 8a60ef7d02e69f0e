#!/usr/bin/env python3
"""Low-rank scans side by side: lmmscan and FaST-LMM's single_snp, one study.

    python benchmarks/bench_fastlmm_lowrank.py --fastlmm-python PY
        [--samples 50000] [--kinship-snps 2000] [--snps 5000] [--work DIR] [--keep]

Simulates a PLINK fileset (``sim_plink.py``) whose first --kinship-snps SNPs
make the kinship and the next --snps are tested, then runs, each as its own
process (wall and peak RSS from ``os.wait4``):

- lmmscan: ``low_rank_kinship`` (standardised, as FaST-LMM's K0), the null
  model decomposed in the factor's memory, the Wald test at the null lambda
  (FaST-LMM's model: one lambda for every SNP);
- FaST-LMM 0.6.13 (``--fastlmm-python``: a Python with fastlmm installed,
  e.g. ``python -m venv /tmp/venv-fastlmm && /tmp/venv-fastlmm/bin/pip
  install fastlmm==0.6.13``): ``single_snp(test_snps, pheno, K0=the kinship
  SNPs)``, which it decomposes as a low-rank kinship when there are fewer
  SNPs than samples.

Prints both and the largest difference of their -log10 p (the two differ in
GEMMA's double-centring of the kinship, which lmmscan keeps).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

LMMSCAN = r"""
import sys
import numpy as np
import lmmscan
from lmmscan.genotypes import SubsetGenotypes
from lmmscan.lowrank import fit_null_lowrank
prefix, k, m, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
geno = lmmscan.read_plink(prefix)
y = geno.fam_phenotypes([1])[:, 0]
lk = lmmscan.low_rank_kinship(geno, "standardized", snps=np.arange(k), filter_samples=~np.isnan(y))
null = fit_null_lowrank(y, None, lk, consume=True)
del lk
t = lmmscan.scan(SubsetGenotypes(geno, np.arange(k, k + m)), null_model=null, test="wald",
                 lambda_mode="null")
np.save(out, np.c_[t["ps"].to_numpy(float), t["p_wald"].to_numpy()])
"""

FASTLMM = r"""
import logging, sys
import numpy as np
from fastlmm.association import single_snp
from pysnptools.snpreader import Bed, SnpData
logging.disable(logging.WARNING)
prefix, k, m, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
bed = Bed(prefix + ".bed", count_A1=True)
fam = np.loadtxt(prefix + ".fam", dtype=str)
y = fam[:, 5].astype(float)
pheno = SnpData(iid=bed.iid, sid=["y"], val=y[:, None])
# no LOCO: single_snp's default leaves the test SNP's chromosome out of K0
frame = single_snp(bed[:, k:k + m], pheno, K0=bed[:, :k], count_A1=True,
                   leave_out_one_chrom=False)
np.save(out, np.c_[frame["ChrPos"].to_numpy(float), frame["PValue"].to_numpy()])
"""


def timed(cmd: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {cmd[0]} ... ({status})")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fastlmm-python", required=True)
    ap.add_argument("--samples", type=int, default=50_000)
    ap.add_argument("--kinship-snps", type=int, default=2_000)
    ap.add_argument("--snps", type=int, default=5_000)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lmmscan-fastlmm-"))
    work.mkdir(parents=True, exist_ok=True)
    k, m = args.kinship_snps, args.snps
    try:
        prefix = work / "sim"
        if not Path(f"{prefix}.bed").exists():
            subprocess.run(
                [sys.executable, str(HERE / "sim_plink.py"), str(work), "--samples",
                 str(args.samples), "--snps", str(k + m)],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        runs = {
            "lmmscan (low rank, Wald at the null lambda)": [sys.executable, "-c", LMMSCAN],
            "FaST-LMM single_snp (low rank)": [args.fastlmm_python, "-c", FASTLMM],
        }
        rows = [
            f"{args.samples:,} samples, {k:,} kinship SNPs, {m:,} tested",
            "",
            "| program | wall, s | peak RSS, MB |",
            "| --- | ---: | ---: |",
        ]
        p: dict[str, np.ndarray] = {}
        for name, cmd in runs.items():
            out = work / f"{len(p)}.npy"
            wall, rss = timed([*cmd, str(prefix), str(k), str(m), str(out)])
            rows.append(f"| {name} | {wall:.1f} | {rss:,.0f} |")
            print(rows[-1], flush=True)
            res = np.load(out)
            p[name] = res[np.argsort(res[:, 0], kind="stable"), 1]
        a, b = p.values()
        d = np.abs(np.log10(a) - np.log10(b))
        rows.append("")
        rank_a, rank_b = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
        spearman = np.corrcoef(rank_a, rank_b)[0, 1]
        rows.append(
            f"-log10 p: largest difference {d.max():.3g}, median {np.median(d):.2g} "
            f"(Spearman {spearman:.5f})"
        )
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
