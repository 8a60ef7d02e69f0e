#!/usr/bin/env python3
"""Write the synthetic covariate and phenotype files used by the mouse_sim_n{1,2,3}
GEMMA reference runs (see make_reference.sh, case e).

Usage:  make_covariates.py BFILE_PREFIX OUTDIR
  BFILE_PREFIX  decompressed PLINK prefix of mouse_hs1940 (.bed/.bim/.fam)
  OUTDIR        where mouse_covar.txt and mouse_pheno_sim.txt are written

Outputs (one row per .fam individual, in .fam order, tab separated, no header,
missing values written as the string NA, numbers as %.10g):

mouse_covar.txt  (2 columns, given to GEMMA with -c)
  col 1: .fam column 5 (sex, coded 1/2) recoded to 0/1 as sex - 1.
         It is not constant, so GEMMA appends an intercept column (c = 3).
  col 2: a standard-normal random covariate; exactly round(0.03*N) = 58 rows
         are NA, so those individuals are dropped by GEMMA in every run.

mouse_pheno_sim.txt  (3 columns, given to GEMMA with -p, used with -n 1/2/3)
  col 1: pure noise N(0,1), no NA -> the null REML/MLE lambda is expected
         to sit at the lower bound 1e-5 (no genetic signal).
  col 2: .fam column 6 (the -bfile default phenotype), token copied verbatim;
         NA kept as NA (.fam -9 would be written NA, but column 6 has none).
  col 3: 0.5 * x + N(0,1), x = count of .bim A1 allele of SNP rs3707673
         (GEMMA's PLINK coding), missing genotypes mean-imputed over all N
         individuals; exactly round(0.05*N) = 97 rows set to NA.

Random numbers: numpy.random.default_rng(SEED), drawn in this fixed order:
  covar col 2 normals (N), covar NA rows (choice 58 of N),
  pheno col 1 normals (N), pheno col 3 noise normals (N),
  pheno col 3 NA rows (choice 97 of N).
"""

import sys
from pathlib import Path

import numpy as np
from bed_reader import open_bed

SEED = 20261124
SIM_SNP = "rs3707673"


def fmt(v):
    return "NA" if not np.isfinite(v) else f"{v:.10g}"


def main():
    prefix, outdir = sys.argv[1], Path(sys.argv[2])
    fam = [line.split() for line in open(prefix + ".fam")]
    n = len(fam)
    sex = np.array([float(r[4]) for r in fam])
    assert set(np.unique(sex)) <= {1.0, 2.0}
    pheno_tok = ["NA" if r[5] == "NA" or float(r[5]) == -9 else r[5] for r in fam]
    pheno_fam = np.array([np.nan if t == "NA" else float(t) for t in pheno_tok])

    bim = [line.split() for line in open(prefix + ".bim")]
    sidx = [k for k, r in enumerate(bim) if r[1] == SIM_SNP]
    assert len(sidx) == 1
    with open_bed(prefix + ".bed", count_A1=True, num_threads=1) as bed:
        x = bed.read(index=np.s_[:, sidx[0]], dtype="float64")[:, 0]
    x = np.where(np.isnan(x), np.nanmean(x), x)

    rng = np.random.default_rng(SEED)
    cov2 = rng.standard_normal(n)
    cov2[rng.choice(n, size=round(0.03 * n), replace=False)] = np.nan
    p1 = rng.standard_normal(n)
    p3 = 0.5 * x + rng.standard_normal(n)
    p3[rng.choice(n, size=round(0.05 * n), replace=False)] = np.nan

    with open(outdir / "mouse_covar.txt", "w") as f:
        for a, b in zip(sex - 1.0, cov2, strict=True):
            f.write(f"{fmt(a)}\t{fmt(b)}\n")
    with open(outdir / "mouse_pheno_sim.txt", "w") as f:
        for a, b, c in zip(p1, pheno_tok, p3, strict=True):
            f.write(f"{fmt(a)}\t{b}\t{fmt(c)}\n")
    print(
        f"make_covariates: N={n}, covar NA={int(np.isnan(cov2).sum())}, "
        f"pheno NA per column={[int(np.isnan(v).sum()) for v in (p1, pheno_fam, p3)]}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
