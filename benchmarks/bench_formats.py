"""Genotype formats: read throughput per reader, and a scan from each format
against the .bed scan (issue 15).

    pip install '.[all]'        # the readers; Debian's plink2 and bcftools on PATH
    python benchmarks/bench_formats.py [--workdir DIR] [--n 5000] [--snps 100000]
        [--read-snps 20000] [--rounds 1] [--skip-scan] [--formats bed,bcf-ds]

1. Simulates the study of ``simulate_study.py`` (5,000 x 100,000, 4
   subpopulations, 3 covariates) as a .bed, unless DIR holds it already.
2. plink2 converts the .bed: ``--make-pgen``; BGEN v1.2, 8 and 16 bits, REF
   first (so the second allele, which lmmscan counts, is the .bed's counted
   one); bgzipped VCF with DS for every call (``vcf-dosage=DS-force``), and
   that VCF as BCF (bcftools view -Ob).
   Every file holds the same hard calls, so every scan gives the same table
   (checked).
3. Read throughput: each reader decodes the first ``--read-snps`` variants
   for the analysed individuals (phenotype and covariates present) as
   float64 blocks of the scan's size; variants/s.  Beside it, plink2's own
   import of the same file (``plink2 --FORMAT FILE --make-pgen``, single
   pass, written to a scratch fileset), as a reference.
4. Scans: ``lmmscan scan --kinship K.npy --test all`` from each format, in
   alternating order over ``--rounds`` rounds; the wall time of each against
   the .bed scan's and the read phase of null.json (the time the scan waited
   for a block).  The targets: .pgen within 1.1x, 16-bit BGEN and VCF with DS
   within 1.3x of the .bed scan.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from simulate_study import ensure_study  # noqa: E402

FORMATS = {  # name -> (lmmscan flags, plink2 import flags), {p} = the study prefix
    "bed": (["--bfile", "{p}"], ["--bfile", "{p}"]),
    "pgen": (["--pfile", "{p}"], ["--pfile", "{p}"]),
    "bgen16": (["--bgen", "{p}16.bgen", "--sample", "{p}16.sample"],
               ["--bgen", "{p}16.bgen", "ref-first"]),
    "bgen8": (["--bgen", "{p}8.bgen", "--sample", "{p}8.sample"],
              ["--bgen", "{p}8.bgen", "ref-first"]),
    "vcf-ds": (["--vcf", "{p}.vcf.gz"], ["--vcf", "{p}.vcf.gz", "dosage=DS"]),
    "bcf-ds": (["--vcf", "{p}.bcf"], ["--bcf", "{p}.bcf", "dosage=DS"]),
}  # fmt: skip


def sh(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def convert(prefix: Path) -> dict[str, float]:
    """plink2's exports of the .bed (skipped when present); seconds each."""
    p = str(prefix)
    bgen = ["--export", "bgen-1.2", "ref-first"]
    jobs = {
        "pgen": (p + ".pgen", ["--make-pgen", "--out", p]),
        "bgen16": (p + "16.bgen", [*bgen, "bits=16", "--out", p + "16"]),
        "bgen8": (p + "8.bgen", [*bgen, "bits=8", "--out", p + "8"]),
        "vcf-ds": (p + ".vcf.gz", ["--export", "vcf", "bgz", "vcf-dosage=DS-force", "--out", p]),
    }
    out = {}
    for name, (path, args) in jobs.items():
        if not Path(path).exists():
            out[name] = sh(["plink2", "--bfile", p, "--silent", *args])
    if not Path(p + ".bcf").exists():  # the same records as BCF (bcftools; plink2 writes none)
        out["bcf-ds"] = sh(["bcftools", "view", "--no-version", "-Ob", "--threads", "2",
                            "-o", p + ".bcf", p + ".vcf.gz"])  # fmt: skip
    return out


def open_source(name: str, prefix: Path):
    import lmmscan

    p = str(prefix)
    return {
        "bed": lambda: lmmscan.read_plink(p),
        "pgen": lambda: lmmscan.read_pgen(p),
        "bgen16": lambda: lmmscan.read_bgen(p + "16.bgen", p + "16.sample"),
        "bgen8": lambda: lmmscan.read_bgen(p + "8.bgen", p + "8.sample"),
        "vcf-ds": lambda: lmmscan.read_vcf(p + ".vcf.gz", "DS"),
        "bcf-ds": lambda: lmmscan.read_vcf(p + ".bcf", "DS"),
    }[name]()


def analysed_mask(prefix: Path) -> np.ndarray:
    pheno = np.genfromtxt(str(prefix) + ".pheno.txt", missing_values="NA")
    covar = np.genfromtxt(str(prefix) + ".covar.txt", missing_values="NA")
    return ~np.isnan(pheno) & ~np.isnan(covar).any(axis=1)


def read_throughput(prefix: Path, m: int, mask: np.ndarray) -> dict[str, dict]:
    from lmmscan.genotypes import default_block_size
    from lmmscan.pgen import PgenGenotypes

    block = default_block_size(int(mask.sum()))
    out: dict[str, dict] = {}
    readers: list[tuple[str, Callable[[], Any]]] = [
        (name, functools.partial(open_source, name, prefix)) for name in FORMATS
    ]
    # pgenlib reading the .bed itself (it reads PLINK 1 too), beside bed-reader
    readers.insert(1, ("bed (pgenlib)", lambda: _pgen_on_bed(prefix, PgenGenotypes)))
    ref = None
    for name, opener in readers:
        t0 = time.perf_counter()
        src = opener()
        t_open = time.perf_counter() - t0
        t0 = time.perf_counter()
        total = 0.0
        first = None
        for start in range(0, m, block):
            X = src.read(start, min(m, start + block), mask)
            total += float(np.nansum(X))
            if first is None:
                first = X
        dt = time.perf_counter() - t0
        if ref is None:
            ref = (total, first)
        if first is None or ref[1] is None:  # m = 0: no block read, by any reader
            same = first is None and ref[1] is None
        else:
            same = np.array_equal(first, ref[1], equal_nan=True)
        out[name] = {"open_s": t_open, "read_s": dt, "variants_per_s": m / dt, "same": same}
        print(
            f"  {name:14s} open {t_open:6.2f} s, read {m} variants in {dt:7.2f} s: "
            f"{m / dt:9.0f} variants/s (first block equal to .bed's: {same})",
            flush=True,
        )
    return out


def _pgen_on_bed(prefix: Path, cls):
    """pgenlib decoding the .bed, with the .bim/.fam as .pvar/.psam (headerless)."""
    d = prefix.parent / "bed_as_pgen"
    d.mkdir(exist_ok=True)
    q = d / prefix.name
    for ext, src in (("pgen", "bed"), ("pvar", "bim"), ("psam", "fam")):
        dst = Path(f"{q}.{ext}")
        if not dst.exists():
            os.symlink(f"{prefix}.{src}", dst)
    return cls(q)


def plink2_import(prefix: Path, m: int) -> dict[str, dict[str, float]]:
    """plink2 reading each file into a scratch .pgen: one pass (import + write)."""
    out = {}
    scratch = prefix.parent / "plink2_scratch"
    for name, (_, flags) in FORMATS.items():
        args = [f.format(p=prefix) for f in flags]
        dt = sh(["plink2", *args, "--silent", "--make-pgen", "--out", str(scratch)])
        out[name] = {"seconds": dt, "variants_per_s": m / dt}
        print(f"  plink2 import {name:8s} {dt:7.2f} s ({m / dt:9.0f} variants/s, all "
              "samples, every variant)", flush=True)  # fmt: skip
    for f in prefix.parent.glob("plink2_scratch.*"):
        f.unlink()
    return out


def scans(
    prefix: Path, rounds: int, threads: int | None, names: list[str]
) -> dict[str, list[dict]]:
    p = str(prefix)
    K = Path(p + ".K.npy")
    if not K.exists():
        sh([sys.executable, "-m", "lmmscan", "kinship", "--bfile", p, "--pheno",
            p + ".pheno.txt", "--covar", p + ".covar.txt", "--out", str(K), "--quiet"])  # fmt: skip
    common = ["--pheno", p + ".pheno.txt", "--covar", p + ".covar.txt", "--kinship", str(K),
              "--test", "all", "--quiet"]  # fmt: skip
    if threads:
        common += ["--threads", str(threads)]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            flags = [f.format(p=prefix) for f in FORMATS[name][0]]
            out = prefix.parent / f"scan_{name}"
            dt = sh([sys.executable, "-m", "lmmscan", "scan", *flags, *common, "--out", str(out)])
            null = json.loads(Path(str(out) + ".null.json").read_text())
            runs[name].append({"wall_s": dt, "phases": null["seconds"]})
            ph = null["seconds"]
            print(f"  round {r + 1} {name:8s} wall {dt:7.1f} s (read wait {ph['read']:.1f}, "
                  f"rotate {ph['rotate']:.1f}, tests {ph['tests']:.1f})", flush=True)  # fmt: skip
    ref = Path(str(prefix.parent / "scan_bed") + ".assoc.txt").read_bytes()
    for name in names[1:]:
        table = Path(str(prefix.parent / f"scan_{name}") + ".assoc.txt").read_bytes()
        print(f"  table of {name} byte-identical to .bed's: {table == ref}")
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/lmmscan-bench-formats"))
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--snps", type=int, default=100_000)
    ap.add_argument("--read-snps", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--skip-scan", action="store_true")
    ap.add_argument("--skip-read", action="store_true", help="only the scans")
    ap.add_argument("--formats", default=",".join(FORMATS), help="the scans' formats (bed first)")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = ap.parse_args()
    if shutil.which("plink2") is None:
        sys.exit("bench_formats: needs plink2 on PATH (Debian: apt install plink2)")
    prefix = args.workdir / "study"
    ensure_study(prefix, n=args.n, snps=args.snps)
    print(f"study {prefix}: {args.n} x {args.snps}")
    exported = convert(prefix)
    for name, dt in exported.items():
        print(f"  plink2 export {name}: {dt:.1f} s")
    mask = analysed_mask(prefix)
    m = min(args.read_snps, args.snps)
    print(f"read throughput, {int(mask.sum())} analysed of {args.n} samples, float64:")
    results: dict = {"n": args.n, "snps": args.snps, "analysed": int(mask.sum())}
    names = args.formats.split(",")
    if names[0] != "bed" or not set(names) <= set(FORMATS):
        sys.exit(f"bench_formats: --formats is bed then any of {', '.join(FORMATS)}")
    if not args.skip_read:
        results["read"] = read_throughput(prefix, m, mask)
        results["plink2_import"] = plink2_import(prefix, args.snps)
    if not args.skip_scan:
        print("scans (kinship given, --test all):")
        runs = scans(prefix, args.rounds, args.threads, names)
        results["scans"] = runs
        bed = statistics.median(r["wall_s"] for r in runs["bed"])
        for name, rs in runs.items():
            wall = statistics.median(r["wall_s"] for r in rs)
            print(f"  {name:8s} median wall {wall:7.1f} s = {wall / bed:.2f}x the .bed scan")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
