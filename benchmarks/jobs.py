"""One benchmark job per process, so that run.py can measure each one's wall
time, CPU time and peak RSS from the outside (os.wait4).

    python benchmarks/jobs.py lmmscan  --bfile P --kinship K.txt [--pheno F] [--covar C]
                                       [--mode per-snp|null] [--out PREFIX]
    python benchmarks/jobs.py lmmscan  --bfile P --kinship compute ...   (end to end: -gk 1 too)
    python benchmarks/jobs.py fastlmm  --bfile P [--kinship K.txt] [--pheno F] [--covar C]
                                       [--loco] [--out PREFIX]
    python benchmarks/jobs.py limit    --bfile P [--pheno F] [--covar C] [--tested N]

Each job prints its own phase timings as one JSON line starting with
``RESULT `` (the last line of stdout).  Start-up (imports) is inside the
process, so the wall time run.py measures includes it, as a user's would.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

T_START = time.perf_counter()

import numpy as np  # noqa: E402


def load_pheno(path: str | None, fam_pheno: np.ndarray) -> np.ndarray:
    """GEMMA's phenotype: ``-p`` file (only ``NA`` missing) or .fam column 6."""
    if path is None:
        return fam_pheno
    import pandas as pd

    col = pd.read_csv(
        path, sep=r"\s+", header=None, usecols=[0], na_values=["NA"], keep_default_na=False
    )[0]
    return col.to_numpy(dtype=np.float64)


def fam_phenotype(bfile: str) -> np.ndarray:
    """.fam column 6 as GEMMA reads it: ``NA`` and -9 are missing."""
    col = np.loadtxt(bfile + ".fam", dtype=str, ndmin=2)[:, 5]
    y = np.array([np.nan if v == "NA" else float(v) for v in col])
    y[y == -9] = np.nan
    return y


def load_covar(path: str | None) -> np.ndarray | None:
    if path is None:
        return None
    import pandas as pd

    return pd.read_csv(
        path, sep=r"\s+", header=None, na_values=["NA"], keep_default_na=False
    ).to_numpy(dtype=np.float64)


def read_kinship_text(path: str) -> np.ndarray:
    """A GEMMA .cXX.txt (tab separated n x n) as float64."""
    import pandas as pd

    return pd.read_csv(path, sep="\t", header=None, dtype=np.float64, engine="c").to_numpy()


def emit(result: dict) -> None:
    result["in_process_s"] = round(time.perf_counter() - T_START, 4)
    print("RESULT " + json.dumps(result), flush=True)


# -- lmmscan ---------------------------------------------------------------


def job_lmmscan(a: argparse.Namespace) -> None:
    """The documented API, as a user calls it.  ``api`` is the work GEMMA's run
    does, timed in the running interpreter: reading the inputs (the kinship
    text with lmmscan.read_kinship) and lmmscan.scan given the kinship (the
    null fit, restriction and eigendecomposition included: ``scan.null_fit``).
    ``import`` (interpreter start-up and the modules the API imports on first
    use) and ``write`` (lmmscan.write_table of the returned table, GEMMA's
    bytes; pandas to_csv for a build before it) are timed apart."""
    t = {}
    import scipy.linalg  # noqa: F401  (the eigensolver's module)

    import lmmscan
    from lmmscan import model, plink, scan, textio  # noqa: F401

    t["import"] = time.perf_counter() - T_START
    t0 = time.perf_counter()
    geno = lmmscan.read_plink(a.bfile)
    n = geno.n_samples
    y = geno.phenotype if a.pheno is None else lmmscan.read_pheno(a.pheno, [1], n)[:, 0]
    cov = None if a.covar is None else lmmscan.read_covar(a.covar, n)
    if a.kinship == "compute":
        # GEMMA -gk 1: filters on the samples with a phenotype, K over all.
        t1 = time.perf_counter()
        K = lmmscan.kinship(geno, "centered", filter_samples=~np.isnan(y))
        t["kinship"] = time.perf_counter() - t1
    else:
        K = lmmscan.read_kinship(a.kinship, n)
    t["inputs"] = time.perf_counter() - t0
    rep = lmmscan.ScanReport()
    t1 = time.perf_counter()
    # the null fit (restriction, eigendecomposition) inside: rep.seconds["null_fit"]
    table = lmmscan.scan(
        geno,
        y,
        kinship=K,
        covariates=cov,
        test=a.test,
        lambda_mode=a.mode,
        threads=a.threads,
        block_size=a.block_size,
        report=rep,
    )
    t["scan"] = time.perf_counter() - t1
    t["api"] = time.perf_counter() - t0
    for k, v in rep.seconds.items():
        t["scan." + k] = v
    if a.out:
        import pandas as pd  # loaded by the scan

        assert isinstance(table, pd.DataFrame)  # one phenotype: one table
        t1 = time.perf_counter()
        if hasattr(lmmscan, "write_table"):
            lmmscan.write_table(table, a.out + ".assoc.txt")
        else:
            table.to_csv(a.out + ".assoc.txt", sep="\t", index=False, float_format="%.6e")
        t["write"] = time.perf_counter() - t1
    emit(
        {
            "seconds": {k: round(v, 4) for k, v in t.items()},
            "snps_tested": len(table),
            "filters": rep.filters.removed,
        }
    )


# -- FaST-LMM --------------------------------------------------------------


def job_fastlmm(a: argparse.Namespace) -> None:
    t = {}
    import logging

    from fastlmm.association import single_snp
    from pysnptools.kernelreader import KernelData
    from pysnptools.snpreader import Bed, SnpData

    logging.disable(logging.WARNING)
    t["import"] = time.perf_counter() - T_START
    bed = Bed(a.bfile + ".bed", count_A1=True)
    y = load_pheno(a.pheno, fam_phenotype(a.bfile))
    pheno = SnpData(iid=bed.iid, sid=["y"], val=y[:, None])
    cov = load_covar(a.covar)
    covar = None
    if cov is not None:
        covar = SnpData(iid=bed.iid, sid=[f"c{i}" for i in range(cov.shape[1])], val=cov)
    K0 = None
    if a.kinship:
        t0 = time.perf_counter()
        K0 = KernelData(iid=bed.iid, val=read_kinship_text(a.kinship))
        t["read_kinship"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frame = single_snp(
        bed,
        pheno,
        K0=K0,
        covar=covar,
        leave_out_one_chrom=a.loco,
        output_file_name=(a.out + ".tsv") if a.out else None,
        count_A1=True,
    )
    t["single_snp"] = time.perf_counter() - t0
    emit(
        {
            "seconds": {k: round(v, 4) for k, v in t.items()},
            "snps_tested": len(frame),
            "h2": float(frame["Nullh2"].iloc[0]),
        }
    )


# -- the machine's limit ---------------------------------------------------


def job_limit(a: argparse.Namespace) -> None:
    """Read every SNP block (float64, analysed samples, as lmmscan reads) and
    rotate the tested share of it by a dense n x n matrix with numpy's BLAS."""
    from bed_reader import open_bed

    y = load_pheno(a.pheno, fam_phenotype(a.bfile))
    mask = ~np.isnan(y)
    cov = load_covar(a.covar)
    if cov is not None:
        mask &= ~np.isnan(cov).any(axis=1)
    rows = np.flatnonzero(mask)
    n = len(rows)
    bed = open_bed(a.bfile + ".bed", count_A1=True)
    m = bed.sid_count
    tested = a.tested or m
    U = np.random.default_rng(0).standard_normal((n, n))
    block = a.block_size or int(max(64, min(8192, (32 << 20) // (8 * n))))
    t_read = t_rot = 0.0
    done = 0
    for start in range(0, m, block):
        stop = min(m, start + block)
        t0 = time.perf_counter()
        X = bed.read(index=np.s_[rows, start:stop], dtype="float64", order="F")
        t1 = time.perf_counter()
        k = round(stop * tested / m) - done  # this block's share of the tested SNPs
        done += k
        _ = U.T @ X[:, :k]
        t_rot += time.perf_counter() - t1
        t_read += t1 - t0
    flops = 2.0 * n * n * tested
    emit(
        {
            "seconds": {
                "read": round(t_read, 4),
                "rotate": round(t_rot, 4),
                "limit": round(t_read + t_rot, 4),
            },
            "n": n,
            "snps_tested": tested,
            "gflops_rotate": round(flops / t_rot / 1e9, 1),
        }
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("job", choices=["lmmscan", "fastlmm", "limit"])
    ap.add_argument("--bfile", required=True)
    ap.add_argument("--kinship", default=None, help="GEMMA .cXX.txt, or 'compute' (lmmscan)")
    ap.add_argument("--pheno", default=None)
    ap.add_argument("--covar", default=None)
    ap.add_argument("--mode", default="per-snp", choices=["per-snp", "null"])
    ap.add_argument("--test", default="all")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--block-size", type=int, default=None)
    ap.add_argument("--loco", action="store_true")
    ap.add_argument("--tested", type=int, default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    {"lmmscan": job_lmmscan, "fastlmm": job_fastlmm, "limit": job_limit}[a.job](a)


if __name__ == "__main__":
    main(sys.argv[1:])
