"""FaST-LMM reference p-values for lmmscan's fixed-lambda mode.

    pip install fastlmm six
    python tests/data/fastlmm/make_reference.py [OUT_DIR]   (default: this directory)

Inputs: mouse_hs1940 from ../mouse_hs1940 (GEMMA's example, PLINK),
count_A1 = True (GEMMA's coding), two cases (``CASES``):

- ``pheno1``: the first phenotype (.fam column 6; NA and -9 missing), no
  covariates (FaST-LMM adds the intercept: c = 1);
- ``sim3_covar``: column 3 of ../gemma/mouse_pheno_sim.txt (0.5 x rs3707673
  + noise, 5% NA) with the 2 covariates of ../gemma/mouse_covar.txt (3% NA;
  FaST-LMM does not drop NaN covariates, so the samples with any NA are
  dropped here first; FaST-LMM adds the intercept: c = 3).

Kinship: FaST-LMM's default, written out explicitly (``fastlmm_kinship``),
on every KIN_STEP-th SNP of the .bed: each SNP standardised over the analysed samples (pysnptools
``Unit``: nanmean, nanstd with ddof 0, missing set to 0, a constant SNP set
to 0), K = Z Z', then ``DiagKtoN`` (K scaled so that trace K = n).  This
script checks that the matrix equals what pysnptools builds
(``SnpKernel(bed, Unit()).read().standardize(DiagKtoN())``) and gives it to
``single_snp`` as K0, so the test can rebuild the exact kinship FaST-LMM
used without FaST-LMM installed.

Test SNPs: the first ``N_TEST`` SNPs of the .bed, no filter (FaST-LMM
filters nothing), ``leave_out_one_chrom=False``.

Output (OUT_DIR), for each CASE:
- ``mouse_CASE.tsv.gz``: sid, PValue, SnpWeight, SnpWeightSE (the effect of
  the standardised SNP) in .bed order, %.17g;
- ``mouse_CASE.json``: Nullh2, n, versions, the kinship check.

What FaST-LMM computes (fastlmm/association/single_snp.py and
fastlmm/inference/lmm_cov.py, read for 0.6.13):
- lmm_cov regresses the covariates out of y, the SNPs and the kernel
  (K + I projected on both sides, the c zero eigenvalues dropped): the
  likelihood of the n - c error contrasts with sigma^2 = r2 / (n - c), i.e.
  the REML likelihood.  ``findH2`` maximises it over h2 in [0, 0.99999]
  (10-point grid + Brent); V = sigma^2 (h2 K + (1 - h2) I), so
  lambda = h2 / (1 - h2) for the same K.
- Each SNP at that fixed h2: beta = x'P y / x'P x, r2 = y'P y - beta x'P y,
  variance_beta = r2 / (n - c - 1) / x'P x; p = F.sf(beta^2 / variance_beta,
  1, n - (c + 1)).  That is GEMMA's Wald F test (CalcRLWald) with the REML
  lambda held at the null: lmmscan's ``lambda_mode="null"``, ``p_wald``.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MOUSE = HERE.parent / "mouse_hs1940"
GEMMA = HERE.parent / "gemma"
N_TEST = 2000  # test SNPs: the first N_TEST of the .bed
KIN_STEP = 4  # kinship SNPs: every KIN_STEP-th SNP of the .bed (keeps the test fast)
CASES = ("pheno1", "sim3_covar")


def read_na_table(path: Path) -> np.ndarray:
    """A whitespace-separated numeric table with NA missing."""
    with open(path) as fh:
        rows = [[np.nan if t == "NA" else float(t) for t in line.split()] for line in fh]
    return np.array(rows)


def case_inputs(case: str, fam_path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(y, covariates or None) over all .fam samples, NaN missing."""
    if case == "pheno1":
        return fam_phenotype(fam_path), None
    if case == "sim3_covar":
        return read_na_table(GEMMA / "mouse_pheno_sim.txt")[:, 2], read_na_table(
            GEMMA / "mouse_covar.txt"
        )
    raise ValueError(case)


def fam_phenotype(fam_path: Path) -> np.ndarray:
    """.fam column 6 with NA and -9 missing (as GEMMA and pysnptools read it here)."""
    vals = []
    with open(fam_path) as fh:
        for line in fh:
            tok = line.split()[5]
            v = np.nan if tok == "NA" else float(tok)
            vals.append(np.nan if v == -9 else v)
    return np.array(vals)


def fastlmm_kinship(G: np.ndarray) -> np.ndarray:
    """FaST-LMM's default K0 from genotypes G (analysed samples x SNPs, NaN missing):
    pysnptools Unit standardisation, Z Z', then DiagKtoN (trace K = n)."""
    Z = np.array(G, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(Z, axis=0)
        std = np.nanstd(Z, axis=0)
    std[std == 0.0] = np.inf
    Z -= mean
    Z /= std
    Z[np.isnan(Z)] = 0.0
    K = Z @ Z.T
    K *= K.shape[0] / np.trace(K)
    return K


def decompress_mouse(out: Path) -> Path:
    for ext in ("bed", "bim", "fam"):
        with (
            gzip.open(MOUSE / f"mouse_hs1940.{ext}.gz", "rb") as fi,
            open(out / f"mouse_hs1940.{ext}", "wb") as fo,
        ):
            shutil.copyfileobj(fi, fo)
    return out / "mouse_hs1940"


def main(out_dir: Path) -> None:
    import importlib.metadata as md

    from bed_reader import open_bed
    from fastlmm.association import single_snp
    from pysnptools.kernelreader import KernelData
    from pysnptools.kernelstandardizer import DiagKtoN
    from pysnptools.snpreader import Bed, SnpData
    from pysnptools.standardizer import Unit

    with tempfile.TemporaryDirectory() as tmp:
        prefix = decompress_mouse(Path(tmp))
        for case in CASES:
            y, cov = case_inputs(case, Path(str(prefix) + ".fam"))
            keep = ~np.isnan(y)
            if cov is not None:
                keep &= ~np.isnan(cov).any(axis=1)
            with open_bed(str(prefix) + ".bed", count_A1=True) as bed:
                G = bed.read(index=np.s_[np.flatnonzero(keep), ::KIN_STEP], dtype="float64")
            K = fastlmm_kinship(G)

            bed = Bed(str(prefix) + ".bed", count_A1=True)
            ref = SnpKernel_reference(bed[keep, ::KIN_STEP], Unit(), DiagKtoN())
            kin_diff = float(np.abs(ref - K).max())
            assert kin_diff < 1e-10, kin_diff

            iid = bed.iid[keep]
            pheno = SnpData(iid=iid, sid=["y"], val=y[keep][:, None])
            covar = None
            if cov is not None:
                covar = SnpData(iid=iid, sid=[f"c{i}" for i in range(cov.shape[1])], val=cov[keep])
            K0 = KernelData(iid=iid, val=K)
            test = bed[keep, :N_TEST]
            frame = single_snp(
                test, pheno, K0=K0, covar=covar, leave_out_one_chrom=False, count_A1=True
            )
            frame = frame.sort_values("sid_index")
            rows = ["sid\tPValue\tSnpWeight\tSnpWeightSE"]
            for r in frame.itertuples():
                rows.append(f"{r.SNP}\t{r.PValue:.17g}\t{r.SnpWeight:.17g}\t{r.SnpWeightSE:.17g}")
            out_dir.mkdir(parents=True, exist_ok=True)
            with gzip.GzipFile(out_dir / f"mouse_{case}.tsv.gz", "wb", mtime=0) as fh:
                fh.write(("\n".join(rows) + "\n").encode())
            meta = {
                "case": case,
                "fastlmm": md.version("fastlmm"),
                "pysnptools": md.version("pysnptools"),
                "numpy": md.version("numpy"),
                "n_analysed": int(keep.sum()),
                "n_covariates_with_intercept": 1 + (0 if cov is None else cov.shape[1]),
                "n_kinship_snps": int(G.shape[1]),
                "kinship_snps": f"every {KIN_STEP}th SNP of the .bed, from the first",
                "n_test_snps": N_TEST,
                "Nullh2": float(frame["Nullh2"].iloc[0]),
                "kinship_max_abs_diff_vs_pysnptools": kin_diff,
                "call": f"single_snp(bed[keep, :{N_TEST}], pheno, K0=KernelData(K), covar=covar, "
                "leave_out_one_chrom=False, count_A1=True)",
            }
            (out_dir / f"mouse_{case}.json").write_text(json.dumps(meta, indent=1) + "\n")
            print(json.dumps(meta, indent=1))


def SnpKernel_reference(snps, standardizer, kernel_standardizer) -> np.ndarray:
    """pysnptools' own kernel for the check."""
    from pysnptools.kernelreader import SnpKernel

    return SnpKernel(snps, standardizer).read().standardize(kernel_standardizer).val


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
