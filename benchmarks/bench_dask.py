"""Dask-distributed scan throughput: 1 vs 2 worker processes (one thread each).

    pip install 'lmmscan[dask]'
    python benchmarks/bench_dask.py [--n 2000] [--m 40000] [--test all] [--repeat 2]

Simulates a PLINK fileset (n samples, m SNPs; the kinship from its first
2,000 SNPs), fits the null model once, then scans every SNP: locally on one
thread, locally on all cores, and through LocalCluster(n_workers=1 and 2,
processes=True, threads_per_worker=1), each task reading its own slice of
the .bed.  Prints SNPs per second (the median of --repeat runs; cluster
start-up not counted, the broadcast of the null model is) and checks that
the distributed rows equal the local ones.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import lmmscan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lowrank import pack_bed  # noqa: E402


def simulate(out: Path, n: int, m: int, seed: int = 7) -> Path:
    rng = np.random.default_rng(seed)
    prefix = out / "study"
    g = np.zeros(n)
    with open(f"{prefix}.bed", "wb") as bed, open(f"{prefix}.bim", "w") as bim:
        bed.write(b"\x6c\x1b\x01")
        for start in range(0, m, 1000):
            b = min(1000, m - start)
            af = rng.uniform(0.05, 0.5, b)
            G = rng.binomial(2, af, size=(n, b)).astype(np.uint8)
            g += (G - 2 * af) @ rng.normal(scale=0.3 / np.sqrt(m), size=b)
            bed.write(pack_bed(G))
            for j in range(start, start + b):
                bim.write(f"{1 + j % 19}\trs{j}\t0\t{j * 100 + 1}\tA\tG\n")
    y = g + rng.normal(size=n)
    with open(f"{prefix}.fam", "w") as fam:
        for i in range(n):
            fam.write(f"f{i}\ti{i}\t0\t0\t0\t{y[i]:.10g}\n")
    return prefix


def rate(fn, m: int, repeat: int) -> tuple[float, pd.DataFrame]:
    times, table = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        table = fn()
        times.append(time.perf_counter() - t)
    return m / statistics.median(times), table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--m", type=int, default=40000)
    ap.add_argument("--test", default="all")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--block", type=int, default=1000, help="SNPs per block and per task")
    args = ap.parse_args()
    from distributed import Client, LocalCluster
    from threadpoolctl import threadpool_limits

    with tempfile.TemporaryDirectory() as tmp:
        prefix = simulate(Path(tmp), args.n, args.m)
        source = lmmscan.read_plink(prefix)
        K = lmmscan.kinship(lmmscan.ArrayGenotypes(source.read(0, 2000)))
        null = lmmscan.fit_null(source.phenotype, kinship=K)
        print(
            f"n = {args.n:,}, m = {args.m:,} SNPs, test = {args.test}, "
            f"{args.block} SNPs per block/task; load average before: "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )

        def local(threads):
            return lmmscan.scan(
                source, null_model=null, test=args.test, threads=threads, block_size=args.block
            )

        with threadpool_limits(limits=1, user_api="blas"):
            one, reference = rate(lambda: local(1), args.m, args.repeat)
        print(f"local, 1 thread:            {one:9,.0f} SNPs/s")
        many, _ = rate(lambda: local(None), args.m, args.repeat)
        print(f"local, all cores:           {many:9,.0f} SNPs/s")
        rates = {}
        for workers in (1, 2):
            with (
                LocalCluster(
                    n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None
                ) as cluster,
                Client(cluster) as client,
            ):
                client.run(lambda: None)  # workers up
                rates[workers], table = rate(
                    lambda c=client: lmmscan.scan(
                        source, null_model=null, test=args.test, client=c, block_size=args.block
                    ),
                    args.m,
                    args.repeat,
                )
            same = table.equals(reference)
            print(
                f"dask, {workers} worker(s) x 1 thread: {rates[workers]:9,.0f} SNPs/s  "
                f"(rows identical to the 1-thread local scan: {same})"
            )
        print(
            f"speed-up 2 vs 1 workers: {rates[2] / rates[1]:.2f}x; load average after: "
            f"{os.getloadavg()[0]:.1f}"
        )


if __name__ == "__main__":
    main()
