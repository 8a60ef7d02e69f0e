#!/usr/bin/env python3
"""The memory plan's estimate against the measured peak, at several sizes.

    python benchmarks/bench_memory_plan.py [--ns 2000,5000,10000] [--snps 10000]
        [--paths exact,whitened,lowrank,loco] [--work DIR] [--markdown FILE]

For each n: simulates a PLINK fileset (``sim_plink.py``, n samples x --snps
SNPs, its .fam phenotype), computes its kinship (``lmmscan kinship``, .npy)
and a low-rank eigendecomposition from its first 500 SNPs (the API,
``low_rank_kinship`` then ``save_eigen``), then runs ``lmmscan scan`` as its
own process for three paths:

- exact: ``--kinship K.npy --test all`` (dense eigendecomposition, rotation);
- whitened: ``--kinship K.npy --test wald --lambda null`` (Cholesky factor);
- low rank: ``--eigen lowrank.npz --test all``;
- LOCO (``--paths ...,loco``; 22 chromosomes): ``--loco --test wald``.

Each run's estimate comes from its ``null.json`` (``memory.estimate_bytes``),
its peak RSS from ``os.wait4`` (ru_maxrss).  Prints estimate / measured.
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

HERE = Path(__file__).resolve().parent

LOWRANK = r"""
import sys
import numpy as np
import lmmscan
from lmmscan.eigen import Eigendecomposition, sample_ids_of, save_eigen
prefix, out = sys.argv[1], sys.argv[2]
geno = lmmscan.read_plink(prefix)
y = geno.fam_phenotypes([1])[:, 0]
mask = ~np.isnan(y)
lk = lmmscan.low_rank_kinship(geno, snps=np.arange(500), filter_samples=mask)
eig = Eigendecomposition.from_spectral(lk.spectral(mask), sample_ids_of(geno)[mask])
save_eigen(out, eig)
"""


def run(cmd: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return time.perf_counter() - t0, usage.ru_maxrss * 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ns", default="2000,5000,10000")
    ap.add_argument("--snps", type=int, default=10_000)
    ap.add_argument(
        "--paths", default="exact,whitened,lowrank", help="of exact,whitened,lowrank,loco"
    )
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lmmscan-memplan-"))
    lmm = [sys.executable, "-m", "lmmscan"]
    rows = [
        "| n | path | estimate, MB | measured peak RSS, MB | estimate / measured | wall, s |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for n in (int(x) for x in args.ns.split(",")):
        d = work / f"n{n}"
        prefix = d / "sim"
        if not Path(f"{prefix}.bed").exists():
            subprocess.run(
                [sys.executable, str(HERE / "sim_plink.py"), str(d), "--samples", str(n),
                 "--snps", str(args.snps)],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        wanted = {p.strip() for p in args.paths.split(",")}
        K = d / "K.npy"
        if not K.exists() and wanted & {"exact", "whitened"}:
            subprocess.run([*lmm, "kinship", "--bfile", str(prefix), "--out", str(K), "--quiet"],
                           check=True)  # fmt: skip
        low = d / "lowrank.npz"
        if not low.exists() and "lowrank" in wanted:
            subprocess.run([sys.executable, "-c", LOWRANK, str(prefix), str(low)], check=True)
        paths = {
            "exact": ("exact", ["--kinship", str(K), "--test", "all"]),
            "whitened": ("whitened", ["--kinship", str(K), "--test", "wald", "--lambda", "null"]),
            "lowrank": ("low rank (k = 500)", ["--eigen", str(low), "--test", "all"]),
            "loco": ("LOCO (22 chromosomes)", ["--loco", "--test", "wald"]),
        }
        for key, (name, extra) in paths.items():
            if key not in wanted:
                continue
            out = d / name.split()[0]
            wall, peak = run([*lmm, "scan", "--bfile", str(prefix), *extra, "--out", str(out),
                              "--quiet"])  # fmt: skip
            est = json.loads(Path(f"{out}.null.json").read_text())["memory"]["estimate_bytes"]
            rows.append(
                f"| {n:,} | {name} | {est / 2**20:,.0f} | {peak / 2**20:,.0f} | "
                f"{est / peak:.3f} | {wall:.1f} |"
            )
            print(rows[-1], flush=True)
    text = "\n".join(rows)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
