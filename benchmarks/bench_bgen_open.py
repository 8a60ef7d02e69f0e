"""Opening a BGEN of many variants: time and peak memory of ``lmmscan.read_bgen``.

    python benchmarks/bench_bgen_open.py [--variants 1000000] [--rounds 3] \
        [--workdir DIR] [--site DIR ...]

Writes a BGEN 1.2 of ``--variants`` biallelic variants (20 samples, zstd,
22 chromosomes; the ``bgen`` package's writer, which also writes its .bgi
index) unless DIR holds it, then opens it in a fresh process per round:
wall seconds of ``read_bgen`` and of the variant table a scan prints its
rows from, and the process's peak RSS (``os.wait4``),
beside a process that only imports what ``read_bgen`` imports.  Each
``--site`` is a build's install directory (``pip install --target DIR``),
put first on PYTHONPATH; without one, the installed lmmscan.  Builds
alternate within each round, the order swapped every round; medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

OPEN = """
import time, lmmscan
from lmmscan.variants import variant_table
t = time.perf_counter()
src = lmmscan.read_bgen({path!r})
table = variant_table(src)  # what a scan prints its rows from
print(time.perf_counter() - t, len(table))
"""

IMPORTS = "import numpy, pandas, bgen, lmmscan.bgenfile, lmmscan.variants; print(0, 0)"


def write_bgen(path: Path, m: int) -> None:
    import numpy as np
    from bgen import BgenWriter

    n = 20
    geno = np.zeros((n, 3))
    geno[:, 0] = 1.0
    with BgenWriter(str(path), n_samples=n, samples=[f"s{i}" for i in range(n)],
                    compression="zstd", layout=2) as out:  # fmt: skip
        for j in range(m):
            out.add_variant(varid=f"v{j}", rsid=f"rs{j}", chrom=str(j * 22 // m + 1),
                            pos=j + 1, alleles=["A", "G"], genotypes=geno)  # fmt: skip


def run(code: str, site: str | None) -> tuple[float, float]:
    """(seconds printed by ``code``, peak RSS MB) of a fresh process."""
    env = dict(os.environ)
    if site:
        env["PYTHONPATH"] = site + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if status:
        raise SystemExit(f"the process failed (status {status})")
    return float(out.split()[0]), usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--site", action="append", default=None)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bgen-open-"))
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"v{args.variants}.bgen"
    if not path.exists():
        print(f"writing {path} ({args.variants:,} variants)", flush=True)
        write_bgen(path, args.variants)
    sites = args.site or [None]
    times: dict[str, list[float]] = {str(s): [] for s in sites}
    peaks: dict[str, list[float]] = {str(s): [] for s in sites}
    for r in range(args.rounds):
        for site in sites if r % 2 == 0 else sites[::-1]:
            seconds, rss = run(OPEN.format(path=str(path)), site)
            times[str(site)].append(seconds)
            peaks[str(site)].append(rss)
            print(f"  round {r + 1}: {site or 'installed'}: {seconds:.2f} s, {rss:.0f} MB",
                  flush=True)  # fmt: skip
    _, base = run(IMPORTS, sites[0])
    print(f"\n{args.variants:,} variants; a process that only imports: {base:.0f} MB\n")
    print("| build | read_bgen + variant table s (median) | peak RSS MB (median) |")
    print("| --- | ---: | ---: |")
    for site in sites:
        key = str(site)
        print(f"| {site or 'installed'} | {statistics.median(times[key]):.2f} | "
              f"{statistics.median(peaks[key]):.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
