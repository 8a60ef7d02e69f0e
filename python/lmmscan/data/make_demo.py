#!/usr/bin/env python3
"""Write the small simulated study that ``lmmscan demo`` runs on (files beside this script).

    python python/lmmscan/data/make_demo.py

Seeded (numpy default_rng(20261123)), so the files are reproducible:

demo.bed/.bim/.fam  400 individuals x 3,000 SNPs on chromosomes 1-3, PLINK 1.
                    Individuals come from 40 families of 10 (two parents'
                    haplotypes shuffled), so they are related; 1% of genotype
                    calls are missing; 60 SNPs are monomorphic or rare and are
                    removed by GEMMA's filters.
demo.pheno.txt      two phenotypes, one row per individual, NA missing:
                    column 1 = 0.6 g(snp 0500) - 0.4 g(snp 1700) + 0.3 g(snp 2600)
                    + polygenic + noise, 4% NA; column 2 = polygenic + noise, 8% NA.
demo.covar.txt      sex (0/1) and age (years, 2% NA); no constant column, so an
                    intercept is appended (GEMMA's rule).
The .fam phenotype column is -9 (missing): the demo uses demo.pheno.txt.

    python python/lmmscan/data/make_demo.py --gemma [GEMMA_BINARY]

instead runs GEMMA 0.98.5 (default: gemma on PATH) on the files above, in a
temporary directory, and keeps what it printed for phenotype 1:
demo.gemma.assoc.txt.gz (gzip -9 -n) and demo.gemma.log.txt, from
    gemma -bfile demo -p demo.pheno.txt -n 1 -c demo.covar.txt -gk 1 -o demo_gk1
    gemma -bfile demo -p demo.pheno.txt -n 1 -c demo.covar.txt \\
          -k output/demo_gk1.cXX.txt -lmm 4 -o demo_lmm4
(missing genotypes, missing phenotypes and covariates, an appended intercept).
"""

from pathlib import Path

import numpy as np

SEED = 20261123
N_FAMILIES, FAMILY_SIZE = 40, 10
N_SNPS = 3000
CHROMOSOMES = (1, 2, 3)
CAUSAL = {500: 0.6, 1700: -0.4, 2600: 0.3}


def simulate(rng):
    n = N_FAMILIES * FAMILY_SIZE
    freq = rng.uniform(0.05, 0.5, N_SNPS)
    freq[rng.choice(N_SNPS, 60, replace=False)] = rng.choice([0.0, 0.002], 60)
    G = np.empty((n, N_SNPS))
    for f in range(N_FAMILIES):
        parents = rng.random((4, N_SNPS)) < freq  # four parental haplotypes
        for k in range(FAMILY_SIZE):
            pick = rng.integers(0, 2, size=(2, N_SNPS))
            G[f * FAMILY_SIZE + k] = (
                parents[pick[0], np.arange(N_SNPS)].astype(float)
                + parents[2 + pick[1], np.arange(N_SNPS)]
            )
    G[rng.random(G.shape) < 0.01] = np.nan
    return G


def main(out: Path) -> None:
    from bed_reader import to_bed

    rng = np.random.default_rng(SEED)
    G = simulate(rng)
    n = G.shape[0]
    Gi = np.where(np.isnan(G), np.nanmean(G, axis=0), G)
    Z = (Gi - Gi.mean(0)) / np.maximum(Gi.std(0), 1e-12)
    poly = Z @ rng.normal(0, np.sqrt(0.4 / N_SNPS), N_SNPS)
    sex = rng.integers(0, 2, n).astype(float)
    age = np.round(rng.normal(45, 12, n), 1)
    y1 = sum(b * Gi[:, j] for j, b in CAUSAL.items()) + poly + 0.3 * sex + 0.01 * age
    y1 = y1 + rng.normal(0, 0.8, n)
    y2 = poly + rng.normal(0, 0.9, n)
    y1[rng.choice(n, int(0.04 * n), replace=False)] = np.nan
    y2[rng.choice(n, int(0.08 * n), replace=False)] = np.nan
    age_out = age.copy()
    age_out[rng.choice(n, int(0.02 * n), replace=False)] = np.nan

    per_chr = N_SNPS // len(CHROMOSOMES)
    chrom = np.repeat(np.array(CHROMOSOMES, dtype=str), per_chr)
    pos = np.concatenate(
        [
            np.sort(rng.choice(np.arange(10_000, 50_000_000), per_chr, replace=False))
            for _ in CHROMOSOMES
        ]
    )
    alleles = np.array(list("ACGT"))
    a1 = alleles[rng.integers(0, 4, N_SNPS)]
    a2 = alleles[(np.searchsorted(alleles, a1) + rng.integers(1, 4, N_SNPS)) % 4]
    fam = [f"fam{i // FAMILY_SIZE + 1:02d}" for i in range(n)]
    iid = [f"ind{i + 1:03d}" for i in range(n)]
    to_bed(
        out / "demo.bed",
        G.astype(np.float32),
        properties={
            "fid": fam,
            "iid": iid,
            "sex": (sex + 1).astype(int),
            "pheno": ["-9"] * n,
            "chromosome": chrom,
            "sid": [f"snp{j:04d}" for j in range(N_SNPS)],
            "bp_position": pos,
            "allele_1": a1,
            "allele_2": a2,
        },
        count_A1=True,
    )

    def fmt(v):
        return "NA" if np.isnan(v) else f"{v:.6g}"

    (out / "demo.pheno.txt").write_text(
        "".join(f"{fmt(a)}\t{fmt(b)}\n" for a, b in zip(y1, y2, strict=True))
    )
    (out / "demo.covar.txt").write_text(
        "".join(f"{int(s)}\t{fmt(a)}\n" for s, a in zip(sex, age_out, strict=True))
    )


def run_gemma(here: Path, gemma: str) -> None:
    import gzip
    import shutil
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("demo.bed", "demo.bim", "demo.fam", "demo.pheno.txt", "demo.covar.txt"):
            shutil.copy(here / name, tmp)
        common = ["-bfile", "demo", "-p", "demo.pheno.txt", "-n", "1", "-c", "demo.covar.txt"]
        for extra in (
            ["-gk", "1", "-o", "demo_gk1"],
            ["-k", "output/demo_gk1.cXX.txt", "-lmm", "4", "-o", "demo_lmm4"],
        ):
            subprocess.run([gemma, *common, *extra], cwd=tmp, check=True, capture_output=True)
        out = Path(tmp) / "output"
        data = (out / "demo_lmm4.assoc.txt").read_bytes()
        with gzip.GzipFile(here / "demo.gemma.assoc.txt.gz", "wb", compresslevel=9, mtime=0) as f:
            f.write(data)
        shutil.copy(out / "demo_lmm4.log.txt", here / "demo.gemma.log.txt")


if __name__ == "__main__":
    import sys

    here = Path(__file__).resolve().parent
    if len(sys.argv) > 1 and sys.argv[1] == "--gemma":
        run_gemma(here, sys.argv[2] if len(sys.argv) > 2 else "gemma")
    else:
        main(here)
