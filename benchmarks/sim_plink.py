#!/usr/bin/env python3
"""Simulate a PLINK fileset to measure ``lmmscan scan``'s peak memory.

    python benchmarks/sim_plink.py DIR [--samples 500] [--snps 400000]
    /usr/bin/time -v lmmscan scan --bfile DIR/sim --out DIR/sim --quiet

Writes DIR/sim.bed/.bim/.fam (bed-reader's to_bed, written in slices of SNPs
so the simulator itself stays small) with a .fam phenotype that depends on a
few SNPs.  Genotypes: 10 populations with their own allele frequencies, 1%
missing.  Seeded.  The data are not meant to be committed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--snps", type=int, default=400_000)
    ap.add_argument("--seed", type=int, default=20261123)
    args = ap.parse_args()
    from bed_reader import create_bed

    rng = np.random.default_rng(args.seed)
    n, m = args.samples, args.snps
    args.out.mkdir(parents=True, exist_ok=True)
    pop = rng.integers(0, 10, n)
    causal = rng.choice(m, 5, replace=False)
    y = rng.normal(size=n) + 0.3 * pop
    chrom = (np.arange(m) * 22 // m + 1).astype(str)
    props = {
        "fid": [f"f{i}" for i in range(n)],
        "iid": [f"i{i}" for i in range(n)],
        "chromosome": chrom,
        "sid": [f"snp{j}" for j in range(m)],
        "bp_position": np.arange(m) * 100 + 1,
        "allele_1": np.full(m, "A"),
        "allele_2": np.full(m, "G"),
    }
    # 20,000 SNPs a slice, as always (the same data for the same seed), or
    # fewer when the samples are many: a slice's draws are 8 n bytes per SNP
    block = 20_000 if n <= 10_000 else max(100, 200_000_000 // (8 * n))
    genetic = np.zeros(n)
    with create_bed(
        args.out / "sim.bed", iid_count=n, sid_count=m, properties=props, major="SNP",
        count_A1=True,
    ) as writer:  # fmt: skip
        for start in range(0, m, block):
            k = min(block, m - start)
            base = rng.uniform(0.05, 0.5, k)
            freq = np.clip(base + rng.normal(0, 0.05, (10, k)), 0.01, 0.99)[pop]
            G = (rng.random((n, k)) < freq).astype(np.float32) + (rng.random((n, k)) < freq)
            for j in causal[(causal >= start) & (causal < start + k)]:
                genetic += 0.4 * G[:, j - start]
            G[rng.random((n, k)) < 0.01] = np.nan
            for col in range(k):
                writer.write(G[:, col])
    fam = args.out / "sim.fam"
    lines = fam.read_text().splitlines()
    pheno = y + genetic
    fam.write_text(
        "".join(
            " ".join([*ln.split()[:5], f"{v:.6g}"]) + "\n"
            for ln, v in zip(lines, pheno, strict=True)
        )
    )
    print(
        f"wrote {args.out}/sim.bed/.bim/.fam: {n} samples x {m} SNPs; "
        f"causal {sorted(causal.tolist())}"
    )


if __name__ == "__main__":
    main()
