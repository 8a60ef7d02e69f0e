"""lmmscan scan --loco: the API's LOCO table, written by the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import lmmscan
from lmmscan.cli import main

DEMO = Path(__file__).resolve().parents[1] / "python" / "lmmscan" / "data" / "demo"


def test_loco_flag_writes_the_loco_scan(tmp_path):
    """The shipped demo study: 400 individuals, three chromosomes."""
    out = tmp_path / "demo"
    pheno = f"{DEMO}.pheno.txt"
    assert (
        main(
            [
                "scan",
                "--bfile",
                str(DEMO),
                "--pheno",
                pheno,
                "--loco",
                "--test",
                "all",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    table = pd.read_csv(f"{out}.assoc.txt", sep="\t", dtype={"chr": str})
    source = lmmscan.read_plink(DEMO)
    y = pd.read_csv(pheno, sep="\t", header=None)[0].to_numpy(dtype=float)
    ref = lmmscan.scan(source, y, loco=True, test="all")
    assert (table["rs"].to_numpy() == ref["rs"].to_numpy()).all()
    for col in ("beta", "se", "logl_H1", "l_remle", "l_mle", "p_wald", "p_lrt", "p_score"):
        np.testing.assert_allclose(table[col], ref[col], rtol=1e-6, err_msg=col)
    # not the single-kinship scan
    K = lmmscan.kinship(source, filter_samples=~np.isnan(y))
    plain = lmmscan.scan(source, y, kinship=K, test="all")
    assert not np.allclose(plain["p_wald"], ref["p_wald"])


def test_loco_flag_refusals(tmp_path, capsys):
    pheno = f"{DEMO}.pheno.txt"
    assert (
        main(
            [
                "scan",
                "--bfile",
                str(DEMO),
                "--pheno",
                pheno,
                "--loco",
                "--kinship",
                "K.txt",
                "--out",
                str(tmp_path / "x"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "at most one of" in capsys.readouterr().err


def test_memory_plan_counts_the_factors_of_chromosomes_with_few_snps(tmp_path):
    """The demo's chromosomes (1,000 SNPs each at n = 400) keep dsyevd; with
    --snps listing 150 of each, they are rotated through its factors, and the
    plan in null.json counts their V beside the reflectors."""
    import json

    bim = pd.read_csv(f"{DEMO}.bim", sep="\t", header=None)
    listed = tmp_path / "snps.txt"
    listed.write_text("\n".join(bim.groupby(0)[1].head(150)) + "\n")
    items = {}
    for name, extra in (("all", []), ("few", ["--snps", str(listed)])):
        out = tmp_path / name
        argv = ["scan", "--bfile", str(DEMO), "--pheno", f"{DEMO}.pheno.txt", "--loco",
                "--test", "wald", "--out", str(out), "--quiet", *extra]  # fmt: skip
        assert main(argv) == 0
        plan = json.loads(Path(f"{out}.null.json").read_text())["memory"]
        items[name] = plan["phases"]["decomposition"]
    factors = "tridiagonal eigenvectors beside the reflectors"
    assert factors not in items["all"]
    assert factors in items["few"]


def test_a_constant_phenotype_is_named_before_the_kinship_pass(tmp_path, capsys):
    """LOCO fits its null models inside the scan: a constant phenotype was
    refused there without its name."""
    from lmmscan.cli import main
    from lmmscan.demo import copy_study

    study = copy_study(tmp_path / "in")
    rows = Path(f"{study}.pheno.txt").read_text().splitlines()
    const = tmp_path / "const.txt"
    const.write_text("".join("NA\n" if i == 3 else "3.0\n" for i in range(len(rows))))
    status = main(["scan", "--bfile", str(study), "--pheno", str(const), "--loco", "--out",
                   str(tmp_path / "r"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2
    assert f"{const} column 1: y is constant on the analysed samples" in err
