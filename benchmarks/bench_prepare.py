"""A block's preparation before and after the one-pass filter + imputation.

    python benchmarks/bench_prepare.py --bfile P [--pheno F] [--covar C]
        [--snps 8000] [--repeats 3] [--old-rev 51cb56e] [--repo /work/main]

Times, per block of lmmscan's default size, alternating the two in one
process (order swapped every round; medians of ``--repeats``):

- old (``--old-rev``): PlinkGenotypes.read as it was (bed-reader order F,
  then a C-order copy), ``gemma_filter`` + ``X[:, keep]`` + ``impute_mean``
  (the filters.py of that revision, loaded from git), then X'U of the
  C-ordered imputed block (the rotation as it was: narrow blocks padded with
  ``np.hstack``);
- new (this tree): ``PlinkGenotypes.read`` (bed-reader's Fortran-ordered
  block as it comes) and ``BlockScanner._prepare`` (filter_impute into the
  thread's scratch buffers, X'U of the Fortran-ordered imputed block);
- the tests (the same core for both) for scale.

and prints wall and CPU µs per SNP read for read, filter + impute, rotate
and tests.  It also checks that the two give the same SNP set exactly and the
same rotated genotypes and test columns (largest relative difference), and
times the rotation X'U of the same imputed block in C against Fortran order.
The null model comes from lmmscan's own -gk 1 kinship of the file.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jobs import load_covar, load_pheno  # noqa: E402


def load_old_filters(repo: str, rev: str):
    src = subprocess.run(
        ["git", "-C", repo, "show", f"{rev}:python/lmmscan/filters.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    tmp = Path(tempfile.mkdtemp(prefix="lmmscan-old-")) / "old_filters.py"
    tmp.write_text(src)
    spec = importlib.util.spec_from_file_location("old_filters", tmp)
    assert spec is not None and spec.loader is not None  # a .py file: the source loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["old_filters"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == 0:
        return 0.0
    scale = np.maximum(np.abs(a), np.abs(b))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(scale > 0, np.abs(a - b) / scale, 0.0)
    return float(np.nanmax(r))


class Clock:
    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def __call__(self, name: str, fn, *a, **k):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn(*a, **k)
        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - w0
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c0
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bfile", required=True)
    ap.add_argument("--pheno", default=None)
    ap.add_argument("--covar", default=None)
    ap.add_argument("--snps", type=int, default=8_000, help="SNPs profiled (the first ones)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--old-rev", default="51cb56e")
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    a = ap.parse_args()

    import lmmscan
    from lmmscan.engine import BlockScanner, ScanReport
    from lmmscan.genotypes import default_block_size
    from lmmscan.spectral import _MIN_GEMM_COLUMNS

    old = load_old_filters(a.repo, a.old_rev)
    geno = lmmscan.read_plink(a.bfile)
    y = load_pheno(a.pheno, geno.phenotype)
    cov = load_covar(a.covar)
    t0 = time.perf_counter()
    K = lmmscan.kinship(geno)
    null = lmmscan.fit_null(y, cov, kinship=K, overwrite_kinship=True)
    del K
    print(f"kinship + null fit {time.perf_counter() - t0:.1f} s")
    rows = np.flatnonzero(null.analyzed)
    n, m = len(rows), min(a.snps, geno.n_snps)
    block = default_block_size(n)
    U = null.eigenvectors  # null.spectral.U (a kinship's Spectral)
    scanner = BlockScanner(null, "all")
    W = null.W
    starts = list(range(0, m, block))
    print(
        f"{a.bfile}: n = {n} analysed, {m} SNPs, block {block}, c = {W.shape[1]}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )

    def old_read(s):
        X = geno._open().read(index=np.s_[rows, s : min(m, s + block)], dtype="float64", order="F")
        return np.ascontiguousarray(X)

    def old_rotate(X):
        b = X.shape[1]
        if b < _MIN_GEMM_COLUMNS:
            X = np.hstack([X, np.zeros((X.shape[0], _MIN_GEMM_COLUMNS - b))])
        return np.ascontiguousarray((X.T @ U)[:b])

    def run_old(clock, keep_out=None):
        for s in starts:
            X = clock("read", old_read, s)

            def filt(X=X):
                keep, nm, af, _ = old.gemma_filter(X, W=W)
                idx = np.flatnonzero(keep)
                return keep, nm[idx], af[idx], old.impute_mean(X[:, idx], af[idx])

            keep, nm, af, Xk = clock("filter+impute", filt)
            UtX = clock("rotate", old_rotate, Xk)
            cols = clock("tests", scanner.test_rotated, UtX)
            if keep_out is not None:
                keep_out.append((keep, nm, af, UtX, cols))

    def run_new(clock, keep_out=None):
        for s in starts:
            X = clock("read", geno.read, s, min(m, s + block), rows)
            report = ScanReport()
            w0, c0 = time.perf_counter(), time.process_time()
            p = scanner._prepare(X, report, distinct=False)
            keep, nm, af, UtX = p.keep, p.n_miss, p.af, p.UtX
            w, c = time.perf_counter() - w0, time.process_time() - c0
            # split the CPU time of _prepare as its own wall-time split
            f = report.seconds["filter"] / max(w, 1e-12)
            for name, share in (("filter+impute", f), ("rotate", 1.0 - f)):
                clock.wall[name] = clock.wall.get(name, 0.0) + w * share
                clock.cpu[name] = clock.cpu.get(name, 0.0) + c * share
            cols = clock("tests", scanner.test_rotated, UtX)
            if keep_out is not None:
                keep_out.append((keep, nm, af, UtX, cols))

    # identical results?
    # (keep, n_miss, af, U'X, test columns) of each block
    ro: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]] = []
    rn: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]] = []
    run_old(Clock(), ro)
    run_new(Clock(), rn)
    same_keep = all(np.array_equal(o[0], w[0]) for o, w in zip(ro, rn, strict=True))
    same_nm = all(np.array_equal(o[1], w[1]) for o, w in zip(ro, rn, strict=True))
    d_af = max(rel_diff(o[2], w[2]) for o, w in zip(ro, rn, strict=True))
    d_utx = max(rel_diff(o[3], w[3]) for o, w in zip(ro, rn, strict=True))
    d_cols = max(rel_diff(o[4][k], w[4][k]) for o, w in zip(ro, rn, strict=True) for k in o[4])
    tested = sum(int(o[0].sum()) for o in ro)
    print(
        f"same SNP set: {same_keep}, same n_miss: {same_nm}, {tested} tested; largest "
        f"relative difference af {d_af:.1e}, U'X {d_utx:.1e}, test columns {d_cols:.1e}"
    )
    del ro, rn

    runs: dict[str, list[Clock]] = {"old": [], "new": []}
    for r in range(a.repeats):
        order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
        for name in order:
            clock = Clock()
            (run_old if name == "old" else run_new)(clock)
            runs[name].append(clock)
    print(
        f"\nper SNP read (µs), median of {a.repeats} alternated rounds, "
        f"load average {os.getloadavg()[0]:.2f}:"
    )
    print(f"  {'phase':14s} {'old wall':>9s} {'new wall':>9s} {'old CPU':>9s} {'new CPU':>9s}")
    tot = {"old": [0.0, 0.0], "new": [0.0, 0.0]}
    for phase in ["read", "filter+impute", "rotate", "tests"]:
        vals = []
        for name in ("old", "new"):
            w = statistics.median(c.wall[phase] for c in runs[name]) * 1e6 / m
            c = statistics.median(c.cpu[phase] for c in runs[name]) * 1e6 / m
            tot[name][0] += w
            tot[name][1] += c
            vals.append((w, c))
        (ow, oc), (nw, nc) = vals
        print(f"  {phase:14s} {ow:9.1f} {nw:9.1f} {oc:9.1f} {nc:9.1f}")
    print(
        f"  {'sum':14s} {tot['old'][0]:9.1f} {tot['new'][0]:9.1f} "
        f"{tot['old'][1]:9.1f} {tot['new'][1]:9.1f}"
    )

    # the rotation alone, same imputed block in both memory orders
    X = geno.read(0, min(m, block), rows)
    Xk = np.array(scanner._prepare(X, None, distinct=False).Xk)
    XkF, XkC = np.asfortranarray(Xk), np.ascontiguousarray(Xk)
    t: dict[str, list[float]] = {
        "X'U, X Fortran order (new)": [],
        "X'U, X C order (old)": [],
        "U'X, X Fortran order": [],
    }
    for r in range(max(3, a.repeats)):
        for name, fn in [
            ("X'U, X Fortran order (new)", lambda: XkF.T @ U),
            ("X'U, X C order (old)", lambda: XkC.T @ U),
            ("U'X, X Fortran order", lambda: U.T @ XkF),
        ][:: 1 if r % 2 else -1]:
            w0 = time.perf_counter()
            fn()
            t[name].append(time.perf_counter() - w0)
    flops = 2.0 * n * n * Xk.shape[1]
    print(f"\nrotation of one block ({Xk.shape[1]} SNPs), median of {max(3, a.repeats)}:")
    for name, v in t.items():
        w = statistics.median(v)
        print(f"  {name:28s} {w * 1e3:8.1f} ms  {flops / w / 1e9:6.1f} GFLOP/s")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
