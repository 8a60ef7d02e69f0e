"""--precision single against double: accuracy on every reference study and
the rotation's speed (issue 16).

    python benchmarks/bench_precision.py [--sim DIR/study] [--rounds 2]

Each study is scanned twice by the command line (``--test all``, its
kinship given), once per precision, in alternating order over ``--rounds``
rounds.  Printed per study: the largest |log10 p_single - log10 p_double|
of each test, the largest |beta_single - beta_double| / se, the largest
relative change of se, and the median ``rotate`` phase (null.json) and wall
time of each precision with their ratio.  Studies: mouse_hs1940 (PLINK,
GEMMA's -gk 1 kinship computed here), BXD (BIMBAM with covariates, GEMMA's
kinship), the dosage study of tests/data/dosage (BIMBAM dosages, GEMMA's
kinship), and with ``--sim`` a simulated study from ``simulate_study.py``
(its .bed, .pheno.txt, .covar.txt; the kinship computed here).
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def lmmscan(*args) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lmmscan", *map(str, args)], check=True)
    return time.perf_counter() - t0


def gunzip(src: Path, dst: Path) -> Path:
    with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dst


def studies(work: Path, sim: Path | None) -> dict[str, list]:
    out: dict[str, list] = {}
    m = work / "mouse"
    m.mkdir()
    for ext in ("bed", "bim", "fam"):
        gunzip(DATA / "mouse_hs1940" / f"mouse_hs1940.{ext}.gz", m / f"mouse.{ext}")
    lmmscan("kinship", "--bfile", m / "mouse", "--out", m / "K.npy", "--quiet")
    out["mouse_hs1940 (1,410 x 10,768)"] = ["--bfile", m / "mouse", "--kinship", m / "K.npy"]
    b = work / "bxd"
    b.mkdir()
    out["BXD (BIMBAM, covariates)"] = [
        "--bimbam-geno", DATA / "bxd" / "BXD_geno.txt.gz",
        "--pheno", DATA / "bxd" / "BXD_pheno.txt",
        "--covar", DATA / "bxd" / "BXD_covariates2.txt",
        "--kinship", gunzip(DATA / "gemma" / "bxd_gk1.cXX.txt.gz", b / "K.txt"),
    ]  # fmt: skip
    d = DATA / "dosage"
    out["dosage study (BIMBAM dosages, 391 x 3,000)"] = [
        "--bimbam-geno", d / "study.geno.txt.gz", "--bimbam-anno", d / "study.anno.txt",
        "--pheno", d / "study.pheno.txt", "--covar", d / "study.covar.txt",
        "--kinship", gunzip(d / "dos_gk1.cXX.txt.gz", work / "dos_K.txt"),
    ]  # fmt: skip
    if sim is not None:
        K = work / "sim_K.npy"
        lmmscan("kinship", "--bfile", sim, "--pheno", f"{sim}.pheno.txt", "--out", K, "--quiet")
        out[f"simulated {sim.name}"] = [
            "--bfile", sim, "--pheno", f"{sim}.pheno.txt", "--covar", f"{sim}.covar.txt",
            "--kinship", K,
        ]  # fmt: skip
    return out


def compare(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, float]:
    assert (a["rs"].to_numpy() == b["rs"].to_numpy()).all()
    out = {}
    for p in ("p_wald", "p_lrt", "p_score"):
        out[p] = float(np.max(np.abs(np.log10(a[p]) - np.log10(b[p]))))
    out["beta/se"] = float(np.max(np.abs(a["beta"] - b["beta"]) / a["se"]))
    out["se rel"] = float(np.max(np.abs(b["se"] / a["se"] - 1)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", type=Path, default=None, help="a simulate_study.py prefix")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, flags in studies(work, args.sim).items():
            runs: dict[str, list[tuple[float, float]]] = {"double": [], "single": []}
            for r in range(args.rounds):
                for prec in ("double", "single") if r % 2 == 0 else ("single", "double"):
                    out = work / f"out_{prec}"
                    wall = lmmscan("scan", *flags, "--test", "all", "--precision", prec,
                                   "--out", out, "--quiet")  # fmt: skip
                    rotate = json.loads(Path(f"{out}.null.json").read_text())["seconds"]["rotate"]
                    runs[prec].append((wall, rotate))
            a = pd.read_csv(work / "out_double.assoc.txt", sep="\t")
            b = pd.read_csv(work / "out_single.assoc.txt", sep="\t")
            acc = compare(a, b)
            med = {k: [statistics.median(x[i] for x in v) for i in (0, 1)] for k, v in runs.items()}
            rows.append((name, len(a), acc, med))
            print(f"{name}: {len(a)} SNPs; " + ", ".join(f"{k} {v:.2g}" for k, v in acc.items()))
            print(f"  rotate double {med['double'][1]:.2f} s, single {med['single'][1]:.2f} s "
                  f"({med['double'][1] / med['single'][1]:.2f}x); wall {med['double'][0]:.2f} "
                  f"against {med['single'][0]:.2f} s", flush=True)  # fmt: skip
    print("\n| study | SNPs | max Δlog10 p (wald, lrt, score) | max Δβ/se | max se rel | "
          "rotate double / single s | × | wall double / single s |")  # fmt: skip
    print("| --- | ---: | --- | ---: | ---: | --- | ---: | --- |")
    for name, n, acc, med in rows:
        print(f"| {name} | {n:,} | {acc['p_wald']:.1e}, {acc['p_lrt']:.1e}, {acc['p_score']:.1e} "
              f"| {acc['beta/se']:.1e} | {acc['se rel']:.1e} | {med['double'][1]:.2f} / "
              f"{med['single'][1]:.2f} | {med['double'][1] / med['single'][1]:.2f} | "
              f"{med['double'][0]:.1f} / {med['single'][0]:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
