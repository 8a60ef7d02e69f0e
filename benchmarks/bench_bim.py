"""Reading a .bim or .pvar of many variants: the one-pass readers against the general ones.

    python benchmarks/bench_bim.py [--variants 10000000] [--rounds 3] [--workdir DIR]

Writes a .bim of ``--variants`` lines (22 chromosomes, tab-separated, as
plink writes them; ~280 MB at 10,000,000) with a 4-sample .fam and a .bed of
the matching size, unless DIR holds them, and then, alternating in one
process (order swapped every round; medians):

- ``split``: ``lmmscan.plink._read_bim``, the reader ``read_plink`` uses:
  plain text split by the core into arrays (``lmmscan.variants``), no
  Python object per field;
- ``one pass``: ``_read_bim_fast``, read_csv with the positions parsed as
  integers (what ``_read_bim`` was; it still reads a .bim that is not plain);
- ``general``: ``_read_bim_general``, every field as text, then the
  positions converted and every line checked (how a .bim the one-pass
  reader refuses is read);
- ``read_plink``: the whole fileset opened (.fam, .bim, .bed checks);
- the .pvar the same way: ``.pvar split`` (``pgen._read_pvar_plain``, what
  ``read_pgen`` uses), ``.pvar one pass`` and ``.pvar text`` (``read_pvar``).

It checks that the readers of each format give the same chromosomes, IDs,
alleles and positions, and prints what each .bim reader's result holds in
memory and the peak RSS of a process that only reads the .bim that way.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def write_fileset(prefix: Path, m: int) -> None:
    chrom = np.repeat(np.arange(1, 23), m // 22 + 1)[:m]
    with open(f"{prefix}.bim", "w") as fh:
        for start in range(0, m, 1_000_000):
            stop = min(m, start + 1_000_000)
            fh.writelines(
                f"{chrom[i]}\trs{i + 1}\t0\t{(i + 1) * 100}\tA\tG\n" for i in range(start, stop)
            )
    with open(f"{prefix}.bim") as src, open(f"{prefix}.pvar", "w") as fh:
        fh.write("#CHROM\tPOS\tID\tREF\tALT\n")
        for line in src:
            c, rs, _, pos, a1, a2 = line.split()
            fh.write(f"{c}\t{pos}\t{rs}\t{a2}\t{a1}\n")
    with open(f"{prefix}.fam", "w") as fh:
        fh.writelines(f"f{i} i{i} 0 0 1 {i * 0.5}\n" for i in range(4))
    with open(f"{prefix}.bed", "wb") as fh:
        fh.write(bytes([0x6C, 0x1B, 0x01]))
        fh.truncate(3 + m)  # one byte per variant for 4 samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", type=int, default=10_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    from lmmscan import pgen, plink

    work = args.workdir or Path(tempfile.mkdtemp(prefix="lmmscan-bim-"))
    work.mkdir(parents=True, exist_ok=True)
    prefix = work / f"v{args.variants}"
    if not Path(f"{prefix}.pvar").exists():
        t0 = time.perf_counter()
        write_fileset(prefix, args.variants)
        print(f"wrote {prefix}.bim in {time.perf_counter() - t0:.1f} s", flush=True)
    name = f"{prefix}.bim"
    ways = {
        "split": lambda: plink._read_bim(name),
        "one pass": lambda: plink._read_bim_fast(Path(name)),
        "general": lambda: plink._read_bim_general(name),
        "read_plink": lambda: plink.read_plink(prefix),
        ".pvar split": lambda: pgen._read_pvar_plain(Path(f"{prefix}.pvar")),
        ".pvar one pass": lambda: pgen.read_pvar(Path(f"{prefix}.pvar")),
        ".pvar text": lambda: pgen.read_pvar(Path(f"{prefix}.pvar"), fast=False),
    }
    times: dict[str, list[float]] = {k: [] for k in ways}
    results: dict[str, Any] = {}  # (table, positions) pairs and tables
    held: dict[str, int] = {}
    for r in range(args.rounds):
        order = list(ways) if r % 2 == 0 else list(reversed(ways))
        for key in order:
            t0 = time.perf_counter()
            got = ways[key]()
            times[key].append(time.perf_counter() - t0)
            if key in ("one pass", "general"):
                table, ps = got
                results[key] = (table[[0, 1, 4, 5]].astype(str), ps)
                held[key] = int(table.memory_usage(deep=True).sum() + ps.nbytes)
            elif key == "split":
                frame = got.frame(["chr", "rs", "allele1", "allele0"])
                frame.columns = [0, 1, 4, 5]
                results[key] = (frame, got.ps)
                held[key] = got.nbytes
                del frame
            elif key == ".pvar split":
                frame = got.frame()
                results[key] = frame.rename(columns={"allele1": "alt", "allele0": "ref"})[
                    ["chr", "rs", "ps", "ref", "alt"]
                ]
                held[key] = got.nbytes
                del frame
            elif key != "read_plink":
                results[key] = got
            del got
    (a, pa), (b, pb), (c, pc) = results["split"], results["one pass"], results["general"]
    same = bool(a.equals(b) and b.equals(c) and np.array_equal(pa, pb) and np.array_equal(pb, pc))
    same = same and bool(results[".pvar one pass"].equals(results[".pvar text"]))
    split = results[".pvar split"]
    same = same and all(
        split[c].astype(str).tolist() == results[".pvar one pass"][c].astype(str).tolist()
        for c in split.columns
    )
    del results, a, b, c
    print(f"\n{args.variants:,} variants, {args.rounds} rounds alternated; same table: {same}\n")
    print("| reader | seconds (median) | µs per variant |")
    print("| --- | ---: | ---: |")
    for key, ts in times.items():
        med = statistics.median(ts)
        print(f"| {key} | {med:.2f} | {med / args.variants * 1e6:.2f} |")
    print("\n| .bim reader | result holds, MB | process peak RSS, MB (imports: base) |")
    print("| --- | ---: | ---: |")
    base = peak_rss("None")
    for key, call in PEAK_CALLS.items():
        print(f"| {key} | {held[key] / 1e6:,.0f} | {peak_rss(call.format(name=name)):,.0f} "
              f"({base:,.0f}) |")  # fmt: skip
    pvar = f"{prefix}.pvar"
    print(
        f"| .pvar split | {held['.pvar split'] / 1e6:,.0f} | "
        f"{peak_rss(PVAR_PEAK_CALLS['.pvar split'].format(name=pvar)):,.0f} ({base:,.0f}) |"
    )
    print(
        f"| .pvar one pass | | "
        f"{peak_rss(PVAR_PEAK_CALLS['.pvar one pass'].format(name=pvar)):,.0f} ({base:,.0f}) |"
    )


PEAK_CALLS = {
    "split": "plink._read_bim({name!r})",
    "one pass": "plink._read_bim_fast(Path({name!r}))",
    "general": "plink._read_bim_general({name!r})",
}
PVAR_PEAK_CALLS = {
    ".pvar split": "pgen._read_pvar_plain(Path({name!r}))",
    ".pvar one pass": "pgen.read_pvar(Path({name!r}))",
}


def peak_rss(call: str) -> float:
    """Peak RSS (MB) of a fresh process that imports lmmscan.plink and runs ``call`` (Linux)."""
    import subprocess
    import sys

    # VmHWM, not ru_maxrss: the latter keeps this (parent) process's peak across exec
    code = (
        "from pathlib import Path; import pandas; from lmmscan import pgen, plink; "
        f"x = {call}; "
        "print([int(l.split()[1]) / 1024 for l in open('/proc/self/status') "
        "if l.startswith('VmHWM')][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


if __name__ == "__main__":
    main()
