#!/usr/bin/env python3
"""A scan of ten million variants, end to end, against the machine's limit for it.

    python benchmarks/bench_10m.py [--samples 1000] [--snps 10000000] [--work DIR]
        [--test wald] [--keep] [--markdown FILE]

1. Simulates a PLINK fileset of related samples (``sim_plink.py``: 10
   populations, 1% missing calls; 1,000 x 10,000,000 is a 2.5 GB .bed) in a
   work directory (default: a new one under /tmp), deleted at the end unless
   ``--keep``.
2. Builds the kinship once from every 100th variant (``lmmscan kinship
   --snps``, .npy); it is given to the timed scan, as in the other benchmarks.
3. Times ``lmmscan scan --bfile sim --kinship K.npy --test TEST`` as its own
   process: wall, CPU and peak RSS from ``os.wait4``, seconds per phase from
   its ``null.json``, and the cost per tested variant.
4. Times the machine's limit for the same work, the two costs every exact
   scan pays: reading every variant for the analysed samples (bed-reader, in
   the scan's block size) and the rotation U'G (one DGEMM per block, U n x n).
   limit = read + rotation, measured one after the other in one process.

Prints one table (and writes it to ``--markdown``).  Nothing is committed but
this script; the figures go to benchmarks/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

LIMIT_PROGRAM = r"""
import sys, time, json
import numpy as np
import lmmscan
from lmmscan.genotypes import default_block_size

prefix, kpath = sys.argv[1], sys.argv[2]
src = lmmscan.read_plink(prefix)
y = src.fam_phenotypes([1])[:, 0]
samples = np.flatnonzero(~np.isnan(y))
n = samples.size
block = default_block_size(n)
K = np.load(kpath)[np.ix_(samples, samples)]
U = np.ascontiguousarray(np.linalg.eigh(K)[1])
t0 = time.perf_counter()
last = None
for start in range(0, src.n_snps, block):
    last = src.read(start, min(src.n_snps, start + block), samples)
t_read = time.perf_counter() - t0
X = np.nan_to_num(last) if last.shape[1] == block else np.zeros((n, block))
out = np.empty((n, block))
t0 = time.perf_counter()
for start in range(0, src.n_snps, block):
    k = min(block, src.n_snps - start)
    np.matmul(U.T, X[:, :k], out=out[:, :k])
t_rot = time.perf_counter() - t0
print(json.dumps({"read": t_read, "rotate": t_rot, "n": int(n), "block": int(block)}))
"""


def timed(cmd: list[str], env: dict | None = None) -> dict:
    """Wall, CPU (user + sys) and peak RSS of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--snps", type=int, default=10_000_000)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--test", default="wald", choices=["wald", "lrt", "score", "all"])
    ap.add_argument("--keep", action="store_true", help="keep the simulated files")
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lmmscan-10m-"))
    work.mkdir(parents=True, exist_ok=True)
    # the lmmscan of the Python running this script
    lmmscan_cmd = [sys.executable, "-m", "lmmscan"]
    try:
        prefix = work / "sim"
        t0 = time.perf_counter()
        if not Path(f"{prefix}.bed").exists():
            subprocess.run(
                [sys.executable, str(HERE / "sim_plink.py"), str(work), "--samples",
                 str(args.samples), "--snps", str(args.snps)],
                check=True,
            )  # fmt: skip
        t_sim = time.perf_counter() - t0
        bed_gb = Path(f"{prefix}.bed").stat().st_size / 1e9

        every = work / "kinship_snps.txt"
        with open(f"{prefix}.bim") as fh, open(every, "w") as ids:
            for i, line in enumerate(fh):
                if i % 100 == 0:
                    ids.write(line.split()[1] + "\n")
        K = work / "K.npy"
        t0 = time.perf_counter()
        subprocess.run(
            [*lmmscan_cmd, "kinship", "--bfile", str(prefix), "--snps", str(every),
             "--out", str(K), "--quiet"],
            check=True,
        )  # fmt: skip
        t_kin = time.perf_counter() - t0

        out = work / "scan"
        scan = timed(
            [*lmmscan_cmd, "scan", "--bfile", str(prefix), "--kinship", str(K), "--test",
             args.test, "--out", str(out), "--quiet"]
        )  # fmt: skip
        null = json.loads(Path(f"{out}.null.json").read_text())
        tested = int(null["n_snps_analyzed"])
        limit_run = subprocess.run(
            [sys.executable, "-c", LIMIT_PROGRAM, str(prefix), str(K)],
            check=True,
            capture_output=True,
            text=True,
        )
        limit = json.loads(limit_run.stdout.strip().splitlines()[-1])
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    machine = limit["read"] + limit["rotate"]
    phases = ", ".join(f"{k} {v:.1f}" for k, v in null["seconds"].items())
    rows = [
        "| what | value |",
        "| --- | ---: |",
        f"| study | {args.samples:,} samples x {args.snps:,} variants (.bed {bed_gb:.2f} GB) |",
        f"| analysed samples, block size | {limit['n']:,}, {limit['block']:,} variants |",
        f"| simulation (not timed in the scan) | {t_sim:.0f} s |",
        f"| kinship from every 100th variant (given to the scan) | {t_kin:.1f} s |",
        f"| `lmmscan scan --test {args.test}`: wall | **{scan['wall']:.1f} s** |",
        f"| CPU (user + sys) | {scan['cpu']:.1f} s |",
        f"| peak RSS | {scan['rss_mb']:.0f} MB |",
        f"| variants tested | {tested:,} |",
        f"| per tested variant | {scan['wall'] / tested * 1e6:.1f} us |",
        f"| machine limit: read every variant | {limit['read']:.1f} s |",
        f"| machine limit: rotation U'G (DGEMM) | {limit['rotate']:.1f} s |",
        f"| machine limit, read + rotation | **{machine:.1f} s** |",
        f"| scan / machine limit | **{scan['wall'] / machine:.2f}** |",
        f"| scan phases (null.json seconds) | {phases} |",
    ]
    text = "\n".join(rows)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
