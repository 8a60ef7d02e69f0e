"""``lmmscan demo``: the whole job on the small simulated study shipped in lmmscan/data.

The study (made by data/make_demo.py, seeded): 400 related individuals,
3,000 SNPs on three chromosomes with 1% missing calls, two phenotypes with
missing values, and covariates (sex, age with missing values).  Phenotype 1
was simulated with three causal SNPs: snp0500, snp1700 and snp2600 (the last
is monomorphic in the simulated sample, so GEMMA's filters remove it).
"""

from __future__ import annotations

import importlib.util
import shlex
import shutil
from collections.abc import Callable
from importlib import resources
from pathlib import Path

FILES = ("demo.bed", "demo.bim", "demo.fam", "demo.pheno.txt", "demo.covar.txt")
CAUSAL = ("snp0500", "snp1700", "snp2600")


def copy_study(out: Path) -> Path:
    """Copy the demo study into ``out``; returns the PLINK prefix there."""
    out.mkdir(parents=True, exist_ok=True)
    data = resources.files("lmmscan") / "data"
    for name in FILES:
        with resources.as_file(data / name) as src:
            shutil.copyfile(src, out / name)
    return out / "demo"


def run(out: Path, *, quiet: bool = False, main: Callable[[list[str]], int]) -> int:
    prefix = copy_study(out)
    pheno, covar = f"{prefix}.pheno.txt", f"{prefix}.covar.txt"
    kin = f"{prefix}.cXX.txt"
    steps = [
        ["kinship", "--bfile", str(prefix), "--pheno", pheno, "--covar", covar, "--out", kin],
        [
            "scan",
            "--bfile",
            str(prefix),
            "--pheno",
            pheno,
            "--pheno-col",
            "1,2",
            "--covar",
            covar,
            "--kinship",
            kin,
            "--test",
            "all",
            "--out",
            str(prefix),
        ],
    ]
    if importlib.util.find_spec("matplotlib") is not None:  # the plot extra
        steps[1].append("--plot")
    print(
        f"lmmscan demo: a simulated study of 400 related individuals x 3,000 SNPs, copied to "
        f"{out}/\n"
    )
    for argv in steps:
        if quiet:
            argv = [*argv, "--quiet"]
        print("$ lmmscan " + " ".join(shlex.quote(a) for a in argv))
        status = main(argv)
        if status != 0:
            return status
        print()
    table = Path(f"{prefix}.1.assoc.txt")
    print(f"$ head -n 4 {table}")
    with open(table) as fh:
        tested = set()
        for i, line in enumerate(fh):
            if i < 4:
                print(line.rstrip("\n"))
            tested.add(line.split("\t", 2)[1])
    gone = [rs for rs in CAUSAL if rs not in tested]
    print(
        f"\nPhenotype 1 was simulated with causal SNPs {', '.join(CAUSAL)}; phenotype 2 "
        "with none (only a polygenic effect)."
        + (
            f" Not tested: {', '.join(gone)}, removed by the SNP filters (see the summary)."
            if gone
            else ""
        )
    )
    plots = sorted(p.name for p in out.glob("demo*.png"))
    if plots:
        print(f"Plots: {', '.join(plots)} in {out}/")
    dev = compare_with_gemma(table)
    print(
        "GEMMA 0.98.5 on the same files (gemma -bfile demo -p demo.pheno.txt -n 1 -c "
        "demo.covar.txt -gk 1, then -k ... -lmm 4) agrees with phenotype 1's table: "
        + ", ".join(f"{k} {v:.1e}" for k, v in dev.items())
    )
    return 0


def compare_with_gemma(table: Path) -> dict[str, float]:
    """Largest differences between a demo.1.assoc.txt and GEMMA's (shipped) output."""
    import numpy as np
    import pandas as pd

    with resources.as_file(resources.files("lmmscan") / "data" / "demo.gemma.assoc.txt.gz") as f:
        ref = pd.read_csv(f, sep="\t")
    ours = pd.read_csv(table, sep="\t")
    if list(ours["rs"]) != list(ref["rs"]):
        raise ValueError("the demo table and GEMMA's list different SNPs")
    dev = {}
    for p in ("p_wald", "p_lrt", "p_score"):
        dev[f"max |d log10 {p}|"] = float(np.max(np.abs(np.log10(ours[p] / ref[p]))))
    dev["max |d beta|/se"] = float(np.max(np.abs(ours["beta"] - ref["beta"]) / ref["se"]))
    return dev
