"""Simulate a structured GWAS study as a PLINK fileset plus phenotype and covariates.

    python benchmarks/simulate_study.py OUT_PREFIX [--n 5000] [--snps 100000]
        [--chromosomes 19] [--populations 4] [--fst 0.05] [--seed 20261123]

Writes, for OUT_PREFIX = dir/study:

- dir/study.bed/.bim/.fam: SNP-major PLINK (bed-reader's ``to_bed``); .fam
  column 6 holds the phenotype (-9 where missing), .bim allele 1 is the
  counted allele.
- dir/study.pheno.txt: the phenotype, one line per .fam row, ``NA`` where
  missing (GEMMA ``-p``).
- dir/study.covar.txt: 3 covariates, tab separated, no intercept column and
  no header (GEMMA ``-c``: it appends the intercept).
- dir/study.json: the parameters, the seed and the true effects summary.

The model (every draw from one ``numpy.random.default_rng(seed)`` stream,
so a (seed, n, snps, ...) tuple always gives the same bytes):

- Population structure: ``populations`` subpopulations of equal expected
  size; ancestral allele frequencies p ~ U(0.05, 0.95); each subpopulation's
  frequency drawn from the Balding-Nichols model Beta(p (1-F)/F, (1-p)(1-F)/F)
  with F = ``fst``.  Genotypes are Binomial(2, p_pop) (Hardy-Weinberg within
  a subpopulation), drawn in SNP chunks from uniforms so memory stays at one
  int8 matrix.
- ``--rare F``: a fraction F of the SNPs get an ancestral frequency
  U(0.002, 0.03) instead, so that GEMMA's MAF filter has work to do, as in
  a real array or sequencing study (default 0).
- ``--sib-pairs F``: a fraction F of the samples come as full-sib pairs
  (both children of two parents of their subpopulation, drawn per SNP with
  free recombination, kinship 0.25), so the kinship holds close relatives
  as well as structure (default 0).
- 1% of genotype calls missing completely at random (``--miss-geno``).
- SNPs spread evenly over ``chromosomes`` chromosomes, positions 1 kb apart.
- Covariates: sex (0/1), age (normal), and a covariate that differs by
  subpopulation (e.g. a recruitment site).
- Phenotype: covariate effects + a subpopulation mean shift + ``causal``
  additive SNP effects with SNP heritability ``h2`` + Gaussian noise;
  3% missing completely at random (``--miss-pheno``).

This module imports only numpy and bed-reader.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from bed_reader import to_bed

CHUNK = 4096  # SNPs drawn at once


def simulate(
    out_prefix: str | Path,
    *,
    n: int = 5000,
    snps: int = 100_000,
    chromosomes: int = 19,
    populations: int = 4,
    fst: float = 0.05,
    miss_geno: float = 0.01,
    miss_pheno: float = 0.03,
    causal: int = 200,
    h2: float = 0.4,
    seed: int = 20261123,
    rare: float = 0.0,
    sib_pairs: float = 0.0,
    quiet: bool = False,
) -> dict:
    """Write ``out_prefix``.{bed,bim,fam,pheno.txt,covar.txt,json}; return a summary."""
    t0 = time.perf_counter()
    out = Path(out_prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    pop = rng.integers(0, populations, n)
    p_anc = rng.uniform(0.05, 0.95, snps)
    if rare > 0:  # only then: the default study keeps its draws
        is_rare = rng.random(snps) < rare
        p_anc[is_rare] = rng.uniform(0.002, 0.03, int(is_rare.sum()))
    # samples 0, 1 / 2, 3 / ... of the first 2 * pairs are siblings
    pairs = int(n * sib_pairs) // 2
    if pairs:
        pop[1 : 2 * pairs : 2] = pop[0 : 2 * pairs : 2]
    a = p_anc * (1 - fst) / fst
    b = (1 - p_anc) * (1 - fst) / fst
    p_pop = rng.beta(a[None, :], b[None, :], size=(populations, snps))  # (P, m)

    G = np.empty((n, snps), dtype=np.int8)
    for start in range(0, snps, CHUNK):
        stop = min(snps, start + CHUNK)
        p = p_pop[:, start:stop][pop]  # (n, chunk) frequency of the counted allele
        u = rng.random((n, stop - start))
        # Binomial(2, p) by inversion: P(0) = (1-p)^2, P(<=1) = 1 - p^2.
        g = (u > (1 - p) ** 2).astype(np.int8) + (u > 1 - p * p).astype(np.int8)
        if pairs:
            g[: 2 * pairs] = _siblings(rng, p[: 2 * pairs : 2])
        miss = rng.random((n, stop - start)) < miss_geno
        g[miss] = -127
        G[:, start:stop] = g

    # Causal SNPs: standardized effects scaled to SNP heritability h2.
    causal_idx = np.sort(rng.choice(snps, size=min(causal, snps), replace=False))
    Gc = G[:, causal_idx].astype(np.float64)
    Gc[Gc < 0] = np.nan
    mean = np.nanmean(Gc, axis=0)
    Gc = np.where(np.isnan(Gc), mean, Gc)
    Gc = (Gc - Gc.mean(axis=0)) / np.maximum(Gc.std(axis=0), 1e-12)
    beta = rng.normal(size=len(causal_idx))
    genetic = Gc @ beta
    genetic *= np.sqrt(h2) / genetic.std()

    sex = rng.integers(0, 2, n).astype(np.float64)
    age = rng.normal(50.0, 10.0, n)
    site = rng.normal(size=populations)[pop] + rng.normal(scale=0.5, size=n)
    covar = np.column_stack([sex, age, site])
    pop_shift = rng.normal(scale=0.3, size=populations)[pop]
    noise = rng.normal(scale=np.sqrt(1 - h2), size=n)
    y = 1.0 + 0.3 * sex + 0.01 * (age - 50.0) + 0.2 * site + pop_shift + genetic + noise
    y[rng.random(n) < miss_pheno] = np.nan

    per_chr = -(-snps // chromosomes)
    chrom = np.arange(snps) // per_chr + 1
    pos = (np.arange(snps) % per_chr + 1) * 1000
    alleles = np.array(["A", "C", "G", "T"])
    a1 = rng.integers(0, 4, snps)
    a2 = (a1 + rng.integers(1, 4, snps)) % 4
    iid = [f"ind{i + 1}" for i in range(n)]
    props = {
        "fid": [f"pop{k + 1}" for k in pop],
        "iid": iid,
        "sex": (sex + 1).astype(int).tolist(),
        "pheno": np.where(np.isnan(y), -9.0, y).tolist(),
        "chromosome": chrom.astype(str).tolist(),
        "sid": [f"rs{j + 1}" for j in range(snps)],
        "bp_position": pos.tolist(),
        "allele_1": alleles[a1].tolist(),
        "allele_2": alleles[a2].tolist(),
    }
    bed = out.with_name(out.name + ".bed")
    to_bed(bed, G, properties=props)
    del G
    with open(out.with_name(out.name + ".pheno.txt"), "w") as fh:
        fh.writelines("NA\n" if np.isnan(v) else f"{v:.10g}\n" for v in y)
    np.savetxt(out.with_name(out.name + ".covar.txt"), covar, fmt="%.10g", delimiter="\t")
    summary = {
        "n": n,
        "snps": snps,
        "chromosomes": chromosomes,
        "populations": populations,
        "fst": fst,
        "miss_geno": miss_geno,
        "miss_pheno": miss_pheno,
        "causal": int(len(causal_idx)),
        "h2": h2,
        "seed": seed,
        **({"rare": rare} if rare else {}),
        **({"sib_pairs": sib_pairs} if sib_pairs else {}),
        "n_pheno_missing": int(np.isnan(y).sum()),
        "causal_rs": [f"rs{j + 1}" for j in causal_idx[:20]],
        "seconds": round(time.perf_counter() - t0, 2),
    }
    out.with_name(out.name + ".json").write_text(json.dumps(summary, indent=1) + "\n")
    if not quiet:
        print(f"wrote {bed} ({n} x {snps}) in {summary['seconds']} s")
    return summary


def _siblings(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
    """Genotypes (2 * pairs, snps) of full-sib pairs: each pair's two parents
    drawn with frequencies ``p`` (pairs, snps), each child given one random
    allele of each parent."""
    parents = (rng.random((4,) + p.shape) < p).astype(np.int8)  # 4 haplotypes a pair
    parents = parents[0:2] + parents[2:4]  # (mother, father) genotypes
    kids = np.empty((2 * p.shape[0], p.shape[1]), dtype=np.int8)
    for child in range(2):
        # a heterozygous parent passes either allele; homozygous ones theirs
        got = (rng.random((2,) + p.shape) < parents / 2).astype(np.int8)
        kids[child::2] = got[0] + got[1]
    return kids


def study_files(prefix: str | Path) -> dict[str, Path]:
    p = Path(prefix)
    return {
        ext: p.with_name(p.name + "." + ext)
        for ext in ("bed", "bim", "fam", "pheno.txt", "covar.txt", "json")
    }


def ensure_study(prefix: str | Path, **params) -> Path:
    """Simulate into ``prefix`` unless a study with the same parameters is already there."""
    files = study_files(prefix)
    if all(f.exists() for f in files.values()):
        meta = json.loads(files["json"].read_text())
        optional = {"rare": 0.0, "sib_pairs": 0.0}  # not written when 0
        if all(meta.get(k, optional.get(k)) == v for k, v in params.items()):
            return Path(prefix)
    simulate(prefix, **params)
    return Path(prefix)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_prefix")
    ap.add_argument("--n", type=int, default=5000, help="samples")
    ap.add_argument("--snps", type=int, default=100_000)
    ap.add_argument("--chromosomes", type=int, default=19)
    ap.add_argument("--populations", type=int, default=4)
    ap.add_argument("--fst", type=float, default=0.05)
    ap.add_argument("--miss-geno", type=float, default=0.01)
    ap.add_argument("--miss-pheno", type=float, default=0.03)
    ap.add_argument("--causal", type=int, default=200)
    ap.add_argument("--h2", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=20261123)
    ap.add_argument("--rare", type=float, default=0.0, help="fraction of rare SNPs")
    ap.add_argument("--sib-pairs", type=float, default=0.0, help="fraction of samples in sib pairs")
    args = ap.parse_args()
    simulate(
        args.out_prefix,
        n=args.n,
        snps=args.snps,
        chromosomes=args.chromosomes,
        populations=args.populations,
        fst=args.fst,
        miss_geno=args.miss_geno,
        miss_pheno=args.miss_pheno,
        causal=args.causal,
        h2=args.h2,
        seed=args.seed,
        rare=args.rare,
        sib_pairs=args.sib_pairs,
    )


if __name__ == "__main__":
    main()
