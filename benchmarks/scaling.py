"""How lmmscan's scan cost grows with the number of samples n and of SNPs m.

    python benchmarks/scaling.py                       # n 1,000..10,000; m 5,000..40,000
    python benchmarks/scaling.py --ns 1000,2000 --snp-counts 5000,10000   (quick)
    python benchmarks/scaling.py --commit HEAD         # time a clean git-archive build

For every point a study is simulated (simulate_study.py, cached in the
work directory), its kinship computed once by lmmscan (GEMMA -gk 1, cached as
.npy), and then one process per point loads the kinship and runs
eigendecomposition, null fit and the exact scan (per-SNP lambda, all tests).
Printed per point: the phases (ScanReport: read, filter, rotate, tests; plus
eigen), per-SNP costs, and the peak RSS of the process (wait4) with the
high-water mark after each phase (VmHWM).

``--kernels`` adds a load-robust measurement of the two per-SNP kernels
alone, in CPU time on one thread (no eigendecomposition needed): the core's
tests on random rotated data (lmmscan._core.Scanner, exact and fixed-lambda)
and numpy's X'U for one block with one BLAS thread, against n.  On a shared
machine wall times swing with other users' load; single-thread CPU time of
a kernel does not (much).

Fitted exponents: least squares of log time on log n (resp. log m).  The
per-SNP lambda search and tests should grow as n^1 (O(n) per SNP), the
rotation as n^2 per SNP, the eigendecomposition as n^3; against m every
scan phase should be ~m^1.  The memory check at the largest n compares the
peak RSS with 2.5 x 8 n^2 bytes (+ the block buffers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def vm_hwm_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def point(a: argparse.Namespace) -> None:
    """One measurement (run in its own process)."""
    t_start = time.perf_counter()
    from jobs import load_covar, load_pheno

    import lmmscan
    from lmmscan.samples import analysed_samples
    from lmmscan.spectral import Spectral, double_centre

    hwm = {"start": vm_hwm_mb()}
    geno = lmmscan.read_plink(a.bfile)
    y = load_pheno(a.bfile + ".pheno.txt", geno.phenotype)
    cov = load_covar(a.bfile + ".covar.txt")
    t = {}
    t0 = time.perf_counter()
    K = np.load(a.kinship)
    t["load_kinship"] = time.perf_counter() - t0
    hwm["kinship loaded"] = vm_hwm_mb()
    t0 = time.perf_counter()
    mask = analysed_samples(y, cov)[0]
    if mask.all():
        Kc = double_centre(K)
    else:
        Kc = double_centre(K[np.ix_(mask, mask)])
    del K
    spectral = Spectral.from_kinship(Kc)
    del Kc
    t["eigen"] = time.perf_counter() - t0
    hwm["eigen"] = vm_hwm_mb()
    t0 = time.perf_counter()
    null = lmmscan.fit_null(y, cov, spectral=spectral)
    t["null_fit"] = time.perf_counter() - t0
    rep = lmmscan.ScanReport()
    t0 = time.perf_counter()
    table = lmmscan.scan(
        geno,
        null_model=null,
        test="all",
        lambda_mode=a.mode,
        threads=a.threads,
        block_size=a.block_size,
        report=rep,
    )
    t["scan"] = time.perf_counter() - t0
    hwm["scan"] = vm_hwm_mb()
    for k, v in rep.seconds.items():
        t[k] = v
    from lmmscan.genotypes import default_block_size

    n = null.n_analyzed
    print(
        "RESULT "
        + json.dumps(
            {
                "n": n,
                "snps_tested": len(table),
                "seconds": t,
                "hwm_mb": hwm,
                "block_size": a.block_size or default_block_size(n),
                "total_s": time.perf_counter() - t_start,
            }
        ),
        flush=True,
    )


def prepare(work: Path, n: int, m: int, env: dict) -> tuple[str, str]:
    from simulate_study import ensure_study

    d = work / f"scale_{n}x{m}"
    d.mkdir(parents=True, exist_ok=True)
    prefix = d / "study"
    ensure_study(prefix, n=n, snps=m, quiet=True)
    K = d / "kinship.npy"
    if not K.exists() or K.stat().st_mtime < (d / "study.bed").stat().st_mtime:
        code = (
            "import numpy as np, lmmscan, sys; sys.path.insert(0, sys.argv[3]);"
            "from jobs import load_pheno;"
            "g = lmmscan.read_plink(sys.argv[1]);"
            "y = load_pheno(sys.argv[1] + '.pheno.txt', g.phenotype);"
            "np.save(sys.argv[2], lmmscan.kinship(g, 'centered', filter_samples=~np.isnan(y)))"
        )
        subprocess.run(
            [sys.executable, "-c", code, str(prefix), str(K), str(HERE)], check=True, env=env
        )
    return str(prefix), str(K)


def run_point(prefix: str, K: str, args: argparse.Namespace, env: dict) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "_point",
        "--bfile",
        prefix,
        "--kinship",
        K,
        "--mode",
        args.mode,
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.block_size:
        cmd += ["--block-size", str(args.block_size)]
    out = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=out, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"point {prefix} failed")
    out.seek(0)
    res = next(
        json.loads(line[7:])
        for line in out.read().decode().splitlines()
        if line.startswith("RESULT ")
    )
    res.update(
        wall=wall,
        cpu=ru.ru_utime + ru.ru_stime,
        rss_mb=ru.ru_maxrss / 1024.0,
        load=os.getloadavg()[0],
    )
    return res


def fit_exponent(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(x, y, 1)[0])


def kernels(ns: list[int], snps: int = 2000, c: int = 4) -> str:
    """Per-SNP CPU µs of the core's tests (1 thread) and of X'U (1 BLAS thread) against n."""
    from threadpoolctl import threadpool_limits

    from lmmscan import _core

    rng = np.random.default_rng(1)
    rows = []
    for n in ns:
        d = np.sort(rng.chisquare(1, n) * 5.0)
        d[:c] = 0.0
        UtW = np.asfortranarray(rng.standard_normal((n, c)))
        Uty = rng.standard_normal(n) * np.sqrt(2.0 * d + 1.0)
        UtX = np.ascontiguousarray(rng.standard_normal((snps, n)) * np.sqrt(0.1 * d + 1.0))
        fit = _core.fit_null(d, UtW, Uty, 1e-5, 1e5, 10, 0, None)
        res = {}
        for mode in ("exact", "fixed"):
            sc = _core.Scanner(
                d,
                UtW,
                Uty,
                fit,
                wald=True,
                lrt=True,
                score=True,
                l_min=1e-5,
                l_max=1e5,
                n_region=10,
                n_total=0,
                complement=None,
                fixed_lambda=mode == "fixed",
            )
            best = []
            for _ in range(3):
                c0 = time.process_time()
                sc.scan(UtX, None, 1)
                best.append(time.process_time() - c0)
            res[mode] = 1e6 * min(best) / snps
        U = rng.standard_normal((n, n))
        X = rng.standard_normal((n, 256))
        with threadpool_limits(1, user_api="blas"):
            best = []
            for _ in range(3):
                c0 = time.process_time()
                _ = X.T @ U
                best.append(time.process_time() - c0)
        res["rotate"] = 1e6 * min(best) / 256
        rows.append((n, res))
        print(
            f"  kernels n = {n:6,}: tests exact {res['exact']:7.1f} µs/SNP, fixed "
            f"{res['fixed']:6.1f}, X'U {res['rotate']:8.1f} µs/SNP (CPU, 1 thread)",
            flush=True,
        )
        del U
    lines = [
        "| n | tests exact µs/SNP | tests fixed-λ µs/SNP | X'U µs/SNP | X'U GFLOP/s |",
        "|" + " ---: |" * 5,
    ]
    for n, r in rows:
        lines.append(
            f"| {n:,} | {r['exact']:.1f} | {r['fixed']:.1f} | {r['rotate']:.1f} | "
            f"{2.0 * n * n / r['rotate'] / 1e3:.1f} |"
        )
    xs = [n for n, _ in rows]
    lines.append(
        "\nFitted exponents (CPU, one thread): "
        + ", ".join(
            f"{k} {fit_exponent(xs, [r[k] for _, r in rows]):.2f}"
            for k in ("exact", "fixed", "rotate")
        )
    )
    return "\n".join(lines)


def table(points: list[dict]) -> str:
    lines = [
        "| n | SNPs tested | eigen s | read s | rotate s | tests s | scan s | "
        "tests µs/SNP | rotate µs/SNP | peak RSS MB | load |",
        "|" + " ---: |" * 11,
    ]
    for p in points:
        s, m = p["seconds"], p["snps_tested"]
        lines.append(
            f"| {p['n']:,} | {m:,} | "
            f"{s['eigen']:.2f} | {s['read']:.2f} | {s['rotate']:.2f} | {s['tests']:.2f} | "
            f"{s['scan']:.2f} | {1e6 * s['tests'] / m:.1f} | {1e6 * s['rotate'] / m:.1f} | "
            f"{p['rss_mb']:.0f} | {p['load']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ns", default="1000,2000,4000,7000,10000")
    ap.add_argument("--snps-for-n", type=int, default=10_000, help="SNPs in the n series")
    ap.add_argument("--n-for-snps", type=int, default=2000, help="n in the SNP series")
    ap.add_argument("--snp-counts", default="5000,10000,20000,40000")
    ap.add_argument("--mode", default="per-snp", choices=["per-snp", "null"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--block-size", type=int, default=None)
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "lmmscan-bench"))
    ap.add_argument("--commit", default=None, help="time a clean build of this git revision")
    ap.add_argument("--json", default=None, help="write the points to this file")
    ap.add_argument(
        "--kernels",
        action="store_true",
        help="also time the per-SNP kernels alone (CPU, one thread)",
    )
    ap.add_argument("--kernel-ns", default="1000,2000,4000,7000,10000")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.commit:
        from run import build_commit

        site, sha = build_commit(args.commit, work)
        env["PYTHONPATH"] = os.pathsep.join([str(site), str(HERE)])
        print(f"lmmscan: clean build of {sha}")
    else:
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    print(f"load average at start: {os.getloadavg()}", flush=True)

    kern = None
    if args.kernels:
        code = (
            "import sys, json; sys.path.insert(0, sys.argv[1]); import scaling; "
            "print('KERNELS ' + json.dumps(scaling.kernels("
            "[int(v) for v in sys.argv[2].split(',')])))"
        )
        stdout = subprocess.run(
            [sys.executable, "-c", code, str(HERE), args.kernel_ns],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        kern = next(
            json.loads(line[8:]) for line in stdout.splitlines() if line.startswith("KERNELS ")
        )
        print(kern, flush=True)
    n_points = []
    for n in [int(v) for v in args.ns.split(",") if v]:
        prefix, K = prepare(work, n, args.snps_for_n, env)
        p = run_point(prefix, K, args, env)
        n_points.append(p)
        print(
            f"  n = {n:6,}: eigen {p['seconds']['eigen']:7.2f} s, rotate "
            f"{p['seconds']['rotate']:7.2f} s, tests {p['seconds']['tests']:7.2f} s, "
            f"peak RSS {p['rss_mb']:7.0f} MB (load {p['load']:.1f})",
            flush=True,
        )
    m_points = []
    for m in [int(v) for v in args.snp_counts.split(",") if v]:
        prefix, K = prepare(work, args.n_for_snps, m, env)
        p = run_point(prefix, K, args, env)
        m_points.append(p)
        print(
            f"  m = {m:6,}: read {p['seconds']['read']:6.2f} s, rotate "
            f"{p['seconds']['rotate']:6.2f} s, tests {p['seconds']['tests']:6.2f} s "
            f"(load {p['load']:.1f})",
            flush=True,
        )

    out = []
    if n_points:
        out.append(f"### Against n ({args.snps_for_n:,} SNPs simulated, mode {args.mode})\n")
        out.append(table(n_points))
        ns = [p["n"] for p in n_points]
        if len(ns) >= 2:
            ex = {
                ph: fit_exponent(ns, [p["seconds"][ph] / p["snps_tested"] for p in n_points])
                for ph in ("tests", "rotate", "read", "scan")
            }
            ex["eigen"] = fit_exponent(ns, [p["seconds"]["eigen"] for p in n_points])
            out.append(
                "\nFitted exponents b in time ∝ n^b (per tested SNP for the scan "
                "phases; eigen total): " + ", ".join(f"{k} {v:.2f}" for k, v in ex.items())
            )
            if len(ns) >= 3:
                top = n_points[-3:]
                ex3 = {
                    ph: fit_exponent(
                        [p["n"] for p in top], [p["seconds"][ph] / p["snps_tested"] for p in top]
                    )
                    for ph in ("tests", "rotate")
                }
                out.append(
                    "Largest three n only: " + ", ".join(f"{k} {v:.2f}" for k, v in ex3.items())
                )
        big = n_points[-1]
        n = big["n"]
        bound = 2.5 * 8 * n * n / 2**20
        blocks = 8 * n * big["block_size"] / 2**20
        out.append(
            f"\nPeak memory at n = {n:,}: {big['rss_mb']:.0f} MB; 2.5 × 8n² = {bound:.0f} MB, "
            f"one block {blocks:.0f} MB (block_size {big['block_size']}) → "
            f"{big['rss_mb'] / (8 * n * n / 2**20):.2f} × 8n². High-water mark after each "
            "phase (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in big["hwm_mb"].items())
        )
    if m_points:
        out.append(f"\n### Against the number of SNPs (n = {args.n_for_snps:,})\n")
        out.append(table(m_points))
        ms = [p["snps_tested"] for p in m_points]
        if len(ms) >= 2:
            out.append(
                "\nFitted exponents b in time ∝ m^b: "
                + ", ".join(
                    f"{ph} {fit_exponent(ms, [p['seconds'][ph] for p in m_points]):.2f}"
                    for ph in ("read", "rotate", "tests", "scan")
                )
            )
    if kern:
        out.append("\n### Per-SNP kernels alone against n (CPU time, one thread)\n")
        out.append(kern)
    text = "\n".join(out)
    print("\n" + text)
    print(f"\nload average at end: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"n": n_points, "m": m_points}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_point":
        ap = argparse.ArgumentParser()
        ap.add_argument("_point")
        ap.add_argument("--bfile", required=True)
        ap.add_argument("--kinship", required=True)
        ap.add_argument("--mode", default="per-snp")
        ap.add_argument("--threads", type=int, default=None)
        ap.add_argument("--block-size", type=int, default=None)
        point(ap.parse_args())
    else:
        main()
