"""LOCO on mouse_hs1940 (PLINK, 1,940 mice, 1,410 phenotyped, 12,226 SNPs on 19
chromosomes): lmmscan against FaST-LMM's LOCO ``single_snp``.

    pip install fastlmm six          # the comparison (optional)
    python benchmarks/bench_loco.py [--repeat 1] [--skip-fastlmm]

lmmscan runs twice: GEMMA-exact (``test="all"``: REML and ML lambda per SNP,
Wald, LRT and score, as gemma -lmm 4 -loco c for every c), and FaST-LMM's
own model (``lambda_mode="null"``: one lambda per chromosome, Wald test).
FaST-LMM's ``single_snp(test_snps, pheno, K0=None, leave_out_one_chrom=True)``
builds one kinship per chromosome from the other chromosomes' SNPs, as
lmmscan does.  Both read the same .bed and use the same cores.  Prints wall
times and the ratio.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar, cast

import numpy as np

import lmmscan

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "mouse_hs1940"


def unpack(out: Path) -> Path:
    for ext in ("bed", "bim", "fam"):
        with (
            gzip.open(DATA / f"mouse_hs1940.{ext}.gz", "rb") as fin,
            open(out / f"mouse_hs1940.{ext}", "wb") as fout,
        ):
            shutil.copyfileobj(fin, fout)
    return out / "mouse_hs1940"


CPU: dict[str, float] = {}
T = TypeVar("T")


def timed(fn: Callable[[], T], repeat: int, name: str = "") -> tuple[float, T]:
    """Median wall seconds; the median CPU seconds of the process (all its
    threads) go to CPU[name]: on a shared machine that is the fairer figure."""
    times: list[float] = []
    cpu: list[float] = []
    result: T | None = None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    CPU[name] = statistics.median(cpu)  # StatisticsError if repeat < 1: result is fn()'s
    return statistics.median(times), cast(T, result)


def run_fastlmm(prefix: Path, repeat: int) -> float:
    from fastlmm.association import single_snp
    from pysnptools.snpreader import Bed, Pheno

    source = lmmscan.read_plink(prefix)
    y = source.phenotype
    ok = ~np.isnan(y)
    pheno = prefix.parent / "pheno.txt"
    fam = source.samples
    with open(pheno, "w") as fh:
        for fid, iid, v in zip(fam["fid"][ok], fam["iid"][ok], y[ok], strict=True):
            fh.write(f"{fid} {iid} {float(v):.17g}\n")

    def go():
        return single_snp(
            Bed(str(prefix), count_A1=True),
            Pheno(str(pheno)),
            K0=None,
            leave_out_one_chrom=True,
            count_A1=True,
        )

    seconds, table = timed(go, repeat, "fastlmm")
    print(
        f"FaST-LMM single_snp LOCO:             {seconds:7.2f} s  (CPU {CPU['fastlmm']:.1f} s; "
        f"{len(table)} SNPs)"
    )
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--skip-fastlmm", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        prefix = unpack(Path(tmp))
        source = lmmscan.read_plink(prefix)
        y = source.phenotype
        report = lmmscan.ScanReport()
        exact, table = timed(
            lambda: lmmscan.scan(source, y, loco=True, test="all", report=report),
            args.repeat,
            "exact",
        )
        print(
            f"lmmscan LOCO, GEMMA-exact (-lmm 4):   {exact:7.2f} s  (CPU {CPU['exact']:.1f} s; "
            f"{len(table)} SNPs, {len(report.null_models)} chromosomes)"
        )
        print(
            "   phases (s): "
            + ", ".join(f"{k} {v / args.repeat:.2f}" for k, v in report.seconds.items())
        )
        fixed, _ = timed(
            lambda: lmmscan.scan(source, y, loco=True, test="wald", lambda_mode="null"),
            args.repeat,
            "fixed",
        )
        print(f"lmmscan LOCO, null lambda (FaST-LMM): {fixed:7.2f} s  (CPU {CPU['fixed']:.1f} s)")
        print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        if not args.skip_fastlmm:
            fast = run_fastlmm(prefix, args.repeat)
            print(
                f"ratio FaST-LMM / lmmscan, wall: {fast / exact:.1f}x (GEMMA-exact), "
                f"{fast / fixed:.1f}x (null lambda); CPU: "
                f"{CPU['fastlmm'] / CPU['exact']:.1f}x, {CPU['fastlmm'] / CPU['fixed']:.1f}x"
            )


if __name__ == "__main__":
    main()
