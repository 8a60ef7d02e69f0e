#!/usr/bin/env python3
"""A biobank-size scan through a low-rank kinship: wall time and peak memory.

    python benchmarks/bench_biobank.py [--samples 100000] [--kinship-snps 10000]
        [--snps 20000] [--work DIR] [--keep] [--markdown FILE]

Simulates a PLINK fileset (``sim_plink.py``: related samples in 10
populations, 1% missing calls) of kinship SNPs followed by tested SNPs in a
work directory (a new one under /tmp by default, deleted at the end unless
``--keep``), then runs, as its own process, what a biobank user runs:

    geno = lmmscan.read_plink(prefix)
    lk = lmmscan.low_rank_kinship(geno, snps=range(k))           # n x k factor
    null = fit_null_lowrank(y, None, lk, consume=True)           # U in its memory
    lmmscan.scan(SubsetGenotypes(geno, range(k, k + m)), null_model=null, test="wald")

and prints each step's seconds with the process's peak RSS (VmHWM) after it.
The n x k factor is the one samples-sized matrix: it is centred, decomposed
(QR in place, the k x k SVD) and becomes the eigenvectors in its own memory.

``--dask`` then runs the same study on a Dask LocalCluster (2 worker
processes, one thread each; ``pip install 'lmmscan[dask]'``), where no
process holds the factor or U whole:

    client = Client(LocalCluster(n_workers=2, processes=True, threads_per_worker=1))
    lk = lmmscan.low_rank_kinship(geno, snps=range(k), client=client)   # stays there
    null = fit_null_lowrank(y, None, lk)                                # Dask's TSQR
    lmmscan.scan(SubsetGenotypes(geno, range(k, k + m)), null_model=null, client=client)

and prints its steps, the peak of the summed RSS of the client and the
workers (sampled every 0.2 s), and the largest relative difference of beta,
se and p_wald from the local run.  ``--no-local`` reuses a local result
already in ``--work``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

PROGRAM = r"""
import json, sys, time
import numpy as np
import lmmscan
from lmmscan.genotypes import SubsetGenotypes
from lmmscan.lowrank import fit_null_lowrank
from lmmscan.memory import peak_rss

def hwm():
    return peak_rss() / 2**30

prefix, k, m, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
steps = []
t = time.perf_counter()
geno = lmmscan.read_plink(prefix)
y = geno.fam_phenotypes([1])[:, 0]
lk = lmmscan.low_rank_kinship(geno, snps=np.arange(k), filter_samples=~np.isnan(y))
steps.append(("kinship factor (read, filter, standardise)", time.perf_counter() - t, hwm()))
t = time.perf_counter()
null = fit_null_lowrank(y, None, lk, consume=True)
del lk
steps.append(("decomposition and null fit", time.perf_counter() - t, hwm()))
t = time.perf_counter()
table = lmmscan.scan(SubsetGenotypes(geno, np.arange(k, k + m)), null_model=null, test="wald")
steps.append(("scan", time.perf_counter() - t, hwm()))
np.save(out, table[["beta", "se", "p_wald"]].to_numpy())
print(json.dumps({"steps": steps, "rank": int(null.spectral.U.shape[1]),
                  "n_analyzed": int(null.n_analyzed), "tested": int(len(table)),
                  "pve": float(null.pve)}))
"""


DASK_PROGRAM = r"""
import json, sys, time
import numpy as np
from distributed import Client, LocalCluster
import lmmscan
from lmmscan.genotypes import SubsetGenotypes
from lmmscan.lowrank import fit_null_lowrank

prefix, k, m, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                  dashboard_address=":0") as cluster, Client(cluster) as client:
    steps = []
    t = time.perf_counter()
    geno = lmmscan.read_plink(prefix)
    y = geno.fam_phenotypes([1])[:, 0]
    lk = lmmscan.low_rank_kinship(geno, snps=np.arange(k), filter_samples=~np.isnan(y),
                                  client=client)
    steps.append(("kinship SNPs filtered (on the workers)", time.perf_counter() - t))
    t = time.perf_counter()
    null = fit_null_lowrank(y, None, lk)
    steps.append(("TSQR decomposition (Dask) and null fit", time.perf_counter() - t))
    t = time.perf_counter()
    table = lmmscan.scan(SubsetGenotypes(geno, np.arange(k, k + m)), null_model=null,
                         test="wald", client=client)
    steps.append(("scan (U's chunks where they are)", time.perf_counter() - t))
    np.save(out, table[["beta", "se", "p_wald"]].to_numpy())
    print(json.dumps({"steps": steps, "rank": int(null.spectral.rank),
                      "chunks": list(null.spectral.row_chunks)}))
"""


def tree_rss(pid: int) -> int:
    """The summed RSS of process ``pid`` and its descendants, in bytes."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_sampled(cmd: list[str]) -> tuple[str, float, float]:
    """Run ``cmd``; (stdout, wall seconds, peak summed RSS of its process tree in GB)."""
    import threading

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], tree_rss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    done.set()
    sampler.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"the scan process failed ({proc.returncode})")
    return out, wall, peak[0] / 2**30


def compare(local: Path, remote: Path) -> str:
    """The largest relative differences of beta, se and p_wald, and of -log10 p."""
    import numpy as np

    a, b = np.load(local), np.load(remote)
    if a.shape != b.shape:
        return f"different shapes: {a.shape} and {b.shape}"
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.nanmax(np.abs(a - b) / np.abs(a), axis=0)
        dlog = np.nanmax(np.abs(np.log10(a[:, 2]) - np.log10(b[:, 2])))
        # A beta near zero (|beta| << se) is a cancellation whose relative error means
        # nothing; its error on the scale of its standard error does.
        beta_se = np.nanmax(np.abs(a[:, 0] - b[:, 0]) / a[:, 1])
        over = int(np.sum(np.abs(a[:, 0] - b[:, 0]) > 1e-8 * np.abs(a[:, 0])))
    same_nan = bool((np.isnan(a) == np.isnan(b)).all())
    return (
        f"largest relative difference, Dask against local: beta {rel[0]:.1e}, se {rel[1]:.1e}, "
        f"p_wald {rel[2]:.1e} (|delta log10 p| {dlog:.1e}); |delta beta| / se at most "
        f"{beta_se:.1e}; betas beyond 1e-8 relative: {over}; the same NaNs: {same_nan}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--kinship-snps", type=int, default=10_000)
    ap.add_argument("--snps", type=int, default=20_000)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--dask", action="store_true", help="also run it on a LocalCluster")
    ap.add_argument("--no-local", action="store_true", help="reuse WORK/p.npy")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lmmscan-biobank-"))
    work.mkdir(parents=True, exist_ok=True)
    k, m = args.kinship_snps, args.snps
    try:
        prefix = work / "sim"
        t0 = time.perf_counter()
        if not Path(f"{prefix}.bed").exists():
            subprocess.run(
                [sys.executable, str(HERE / "sim_plink.py"), str(work), "--samples",
                 str(args.samples), "--snps", str(k + m)],
                check=True,
            )  # fmt: skip
        t_sim = time.perf_counter() - t0
        parts = []
        if not args.no_local:
            out, wall, _ = run_sampled(
                [sys.executable, "-c", PROGRAM, str(prefix), str(k), str(m), str(work / "p.npy")]
            )
            result = json.loads(out.strip().splitlines()[-1])
            rows = [
                "| step | seconds | peak RSS after it, GB |",
                "| --- | ---: | ---: |",
                *(f"| {name} | {sec:.1f} | {gb:.2f} |" for name, sec, gb in result["steps"]),
                f"| whole process | {wall:.1f} | {max(s[2] for s in result['steps']):.2f} |",
            ]
            parts.append(
                f"{args.samples:,} samples ({result['n_analyzed']:,} analysed) x {k:,} kinship "
                f"SNPs (rank {result['rank']:,}), {result['tested']:,} SNPs tested (Wald); "
                f"simulation {t_sim:.0f} s (not counted); pve {result['pve']:.3f}\n\n"
                + "\n".join(rows)
            )
            print(parts[-1], flush=True)
        if args.dask:
            out, wall, peak = run_sampled(
                [sys.executable, "-c", DASK_PROGRAM, str(prefix), str(k), str(m),
                 str(work / "p_dask.npy")]
            )  # fmt: skip
            result = json.loads(out.strip().splitlines()[-1])
            rows = [
                "| step (Dask LocalCluster, 2 workers x 1 thread) | seconds |",
                "| --- | ---: |",
                *(f"| {name} | {sec:.1f} |" for name, sec in result["steps"]),
                f"| whole process (cluster start included) | {wall:.1f} |",
            ]
            parts.append(
                f"On Dask: rank {result['rank']:,}, U in {len(result['chunks'])} chunks of "
                f"{max(result['chunks']):,} samples; peak summed RSS of the client and its "
                f"workers {peak:.2f} GB\n\n"
                + "\n".join(rows)
                + "\n\n"
                + compare(work / "p.npy", work / "p_dask.npy")
            )
            print(parts[-1], flush=True)
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    text = "\n\n".join(parts)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
