"""Where lmmscan's scan spends its time, and what the candidate speed-ups buy.

    python benchmarks/profile_scan.py --bfile P [--pheno F] [--covar C] --kinship K.txt
        [--snps 20000] [--repeats 3]

Measured in one process, each variant alternated with its baseline over
``--repeats`` rounds (medians printed, wall and CPU):

1. phases of the exact scan through lmmscan's own BlockScanner: read (the
   reader lmmscan uses), filter, rotate, tests; wall and process CPU each;
2. reading: bed-reader order F (+ the C copy lmmscan makes) against order C
   and against int8, bed-reader threads 1 / 2;
3. the rotation: block size sweep (GFLOP/s), X'U (lmmscan) against U'X;
4. the per-SNP tests: core threads 1 / 2, exact against fixed lambda;
5. eigendecomposition: scipy evr (lmmscan) against evd and numpy.linalg.eigh;
6. the two OpenBLAS copies (scipy's and numpy's): a numpy GEMM straight
   after a scipy eigh against the same GEMM after a pause;
7. overlap: reading block i+1 in a thread while block i is rotated and
   tested, against the sequential loop.

Internal lmmscan APIs (BlockScanner, Spectral) are used on purpose: this is a
profile of the implementation, not a test of the interface.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jobs import load_covar, load_pheno, read_kinship_text  # noqa: E402


def timed(fn, *a, **k):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*a, **k)
    return out, time.perf_counter() - w0, time.process_time() - c0


def med(xs):
    return statistics.median(xs)


def alternate(variants: dict, repeats: int) -> dict:
    """{name: fn()} run alternately; {name: (median wall, median cpu)}."""
    res: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in variants}
    names = list(variants)
    for r in range(repeats):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            _, w, c = timed(variants[k])
            res[k][0].append(w)
            res[k][1].append(c)
    return {k: (med(v[0]), med(v[1])) for k, v in res.items()}


def show(title: str, res: dict, base: str | None = None, extra=None) -> None:
    print(f"\n{title}")
    b = res[base][0] if base else None
    for k, (w, c) in res.items():
        rel = f"  ({w / b:.2f}× {base})" if b else ""
        ex = f"  {extra(k, w)}" if extra else ""
        print(f"  {k:44s} wall {w:8.3f} s  CPU {c:8.3f} s{rel}{ex}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bfile", required=True)
    ap.add_argument("--kinship", required=True, help="GEMMA .cXX.txt")
    ap.add_argument("--pheno", default=None)
    ap.add_argument("--covar", default=None)
    ap.add_argument("--snps", type=int, default=20_000, help="SNPs profiled (first ones)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-eigen", action="store_true")
    a = ap.parse_args()

    from bed_reader import open_bed
    from threadpoolctl import threadpool_info, threadpool_limits

    import lmmscan
    from lmmscan.engine import BlockScanner
    from lmmscan.genotypes import default_block_size
    from lmmscan.samples import analysed_samples
    from lmmscan.spectral import Spectral, double_centre

    geno = lmmscan.read_plink(a.bfile)
    y = load_pheno(a.pheno, geno.phenotype)
    cov = load_covar(a.covar)
    mask = analysed_samples(y, cov)[0]
    rows = np.flatnonzero(mask)
    n = len(rows)
    m = min(a.snps, geno.n_snps)
    K = read_kinship_text(a.kinship)
    Kc = double_centre(K[np.ix_(mask, mask)])
    del K
    print(f"n = {n}, SNPs profiled = {m}, default block = {default_block_size(n)}")
    for i in threadpool_info():
        print(
            f"  BLAS {i['filepath'].split('/')[-2]}: {i['internal_api']} {i['version']} "
            f"{i['num_threads']} threads"
        )

    # 5. eigendecomposition
    import scipy.linalg

    if not a.skip_eigen:
        res = alternate(
            {
                "scipy eigh evr (lmmscan)": lambda: scipy.linalg.eigh(
                    Kc, driver="evr", check_finite=False
                ),
                "scipy eigh evd": lambda: scipy.linalg.eigh(Kc, driver="evd", check_finite=False),
                "numpy.linalg.eigh (numpy's OpenBLAS)": lambda: np.linalg.eigh(Kc),
            },
            a.repeats,
        )
        show("5. eigendecomposition", res, "scipy eigh evr (lmmscan)")
    spectral = Spectral.from_kinship(Kc)
    null = lmmscan.fit_null(y, cov, spectral=spectral)
    U = spectral.U
    scanner = BlockScanner(null, "all")
    block = default_block_size(n)

    # 1. phases, lmmscan's loop, with CPU per phase
    def phases(threads=None, bs=block, mode="per-snp"):
        sc = BlockScanner(null, "all", threads=threads, lambda_mode=mode)
        t = dict.fromkeys(["read", "filter+impute", "rotate", "tests"], 0.0)
        c = dict.fromkeys(t, 0.0)
        for start in range(0, m, bs):
            stop = min(m, start + bs)
            X, w, cp = timed(geno.read, start, stop, rows)
            t["read"] += w
            c["read"] += cp
            (keep, nm, af, counts), w, cp = timed(lmmscan.filters.gemma_filter, X, W=null.W)
            idx = np.flatnonzero(keep)
            Xk, w2, cp2 = timed(lmmscan.filters.impute_mean, X[:, idx], af[idx])
            t["filter+impute"] += w + w2
            c["filter+impute"] += cp + cp2
            UtX, w, cp = timed(spectral.rotate_rows, Xk)
            t["rotate"] += w
            c["rotate"] += cp
            _, w, cp = timed(sc.test_rotated, UtX)
            t["tests"] += w
            c["tests"] += cp
        return t, c

    runs = [phases() for _ in range(a.repeats)]
    print(
        "\n1. phases of the exact scan (lmmscan's BlockScanner loop, block "
        f"{block}), median of {a.repeats}:"
    )
    tot = 0.0
    for k in runs[0][0]:
        w = med([r[0][k] for r in runs])
        c = med([r[1][k] for r in runs])
        tot += w
        print(f"  {k:16s} wall {w:8.3f} s  CPU {c:8.3f} s  ({1e6 * w / m:7.1f} µs/SNP)")
    print(f"  {'total':16s} wall {tot:8.3f} s")

    # 2. reading
    bed = open_bed(a.bfile + ".bed", count_A1=True)

    def read_all(order="F", dtype="float64", threads=None, copy_c=False):
        def f():
            with open_bed(a.bfile + ".bed", count_A1=True, num_threads=threads) as b:
                for s in range(0, m, block):
                    X = b.read(index=np.s_[rows, s : min(m, s + block)], dtype=dtype, order=order)
                    if copy_c:
                        X = np.ascontiguousarray(X)

        return f

    res = alternate(
        {
            "lmmscan read (bed-reader F f64 + C copy)": lambda: [
                geno.read(s, min(m, s + block), rows) for s in range(0, m, block)
            ],
            "bed-reader F float64, no copy": read_all("F"),
            "bed-reader C float64": read_all("C"),
            "bed-reader F int8": read_all("F", "int8"),
            "bed-reader F float64, 1 thread": read_all("F", threads=1),
            "bed-reader F float64, 2 threads": read_all("F", threads=2),
        },
        a.repeats,
    )
    show("2. reading the genotypes", res, "lmmscan read (bed-reader F f64 + C copy)")
    del bed

    # 3. rotation
    Xfull = geno.read(0, m, rows)
    Xfull = np.where(np.isnan(Xfull), 1.0, Xfull)
    flops = 2.0 * n * n * m

    def rot(bs, how="XtU"):
        def f():
            for s in range(0, m, bs):
                X = Xfull[:, s : s + bs]
                if how == "XtU":
                    np.ascontiguousarray(X.T @ U)
                else:
                    U.T @ np.asfortranarray(X)

        return f

    variants = {f"X'U block {bs}": rot(bs) for bs in (256, 1024, 4096, block)}
    variants["U'X (F order) block default"] = rot(block, "UtX")
    res = alternate(variants, a.repeats)
    show(
        "3. rotation",
        res,
        f"X'U block {block}",
        extra=lambda k, w: f"{flops / w / 1e9:6.1f} GFLOP/s",
    )
    with threadpool_limits(1, user_api="blas"):
        res1 = alternate({"X'U default block, BLAS 1 thread": rot(block)}, a.repeats)
    show(
        "3b. rotation with 1 BLAS thread",
        res1,
        extra=lambda k, w: f"{flops / w / 1e9:6.1f} GFLOP/s",
    )

    # 4. tests
    UtX = spectral.rotate_rows(Xfull)
    sc = {t: BlockScanner(null, "all", threads=t) for t in (1, 2)}
    scn = BlockScanner(null, "all", threads=2, lambda_mode="null")
    res = alternate(
        {
            "exact, 2 core threads": lambda: sc[2].test_rotated(UtX),
            "exact, 1 core thread": lambda: sc[1].test_rotated(UtX),
            "fixed λ, 2 core threads": lambda: scn.test_rotated(UtX),
        },
        a.repeats,
    )
    show(
        "4. per-SNP tests",
        res,
        "exact, 2 core threads",
        extra=lambda k, w: f"{1e6 * w / m:6.2f} µs/SNP",
    )

    # 6. the two OpenBLAS copies
    Xb = np.asfortranarray(Xfull[:, :block])
    small = Kc[: min(n, 1500), : min(n, 1500)].copy()

    def gemm_after_eigh(pause):
        def f():
            scipy.linalg.eigh(small, driver="evr", check_finite=False, eigvals_only=True)
            if pause:
                time.sleep(0.5)
            t0 = time.perf_counter()
            Xb.T @ U
            f.last = time.perf_counter() - t0

        return f

    g0, g1 = gemm_after_eigh(False), gemm_after_eigh(True)
    tt: dict[str, list[float]] = {
        "GEMM right after scipy eigh": [],
        "GEMM 0.5 s after scipy eigh": [],
    }
    for _ in range(max(3, a.repeats)):
        g0()
        tt["GEMM right after scipy eigh"].append(g0.last)
        g1()
        tt["GEMM 0.5 s after scipy eigh"].append(g1.last)
    print("\n6. two OpenBLAS copies (numpy GEMM of one block after a scipy eigh)")
    for k, v in tt.items():
        print(f"  {k:44s} wall {med(v):8.4f} s")

    # 7. overlap reading with compute
    def sequential():
        for s in range(0, m, block):
            X = geno.read(s, min(m, s + block), rows)
            scanner.scan(X)

    def overlapped():
        starts = list(range(0, m, block))
        nxt = {}

        def load(s):
            nxt[s] = geno.read(s, min(m, s + block), rows)

        th = threading.Thread(target=load, args=(starts[0],))
        th.start()
        for i, s in enumerate(starts):
            th.join()
            X = nxt.pop(s)
            if i + 1 < len(starts):
                th = threading.Thread(target=load, args=(starts[i + 1],))
                th.start()
            scanner.scan(X)

    res = alternate({"sequential (lmmscan)": sequential, "read overlapped": overlapped}, a.repeats)
    show("7. overlapping the read of the next block", res, "sequential (lmmscan)")


if __name__ == "__main__":
    main()
