"""lmmscan.write_table: an API scan's table written as the command line
writes it (the core's formatting, not pandas'), byte for byte."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmscan
from lmmscan import InputError
from lmmscan.cli import main
from lmmscan.demo import copy_study
from lmmscan.output import EXTENSIONS, FORMATS


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("write_table")
    prefix = copy_study(root / "in")
    source = lmmscan.read_plink(str(prefix))
    y = lmmscan.read_pheno(f"{prefix}.pheno.txt", [1])[:, 0]
    cov = lmmscan.read_covar(f"{prefix}.covar.txt")
    K = lmmscan.kinship(source, filter_samples=np.isfinite(y))
    np.save(root / "K.npy", K)
    return root, prefix, source, y, cov, K


def cli(study, out, *extra) -> None:
    root, prefix = study[:2]
    kinship = [] if "--loco" in extra else ["--kinship", root / "K.npy"]
    argv = ["scan", "--bfile", prefix, "--pheno", f"{prefix}.pheno.txt", "--covar",
            f"{prefix}.covar.txt", *kinship, "--out", out, "--quiet", *extra]  # fmt: skip
    assert main([str(a) for a in argv]) == 0


@pytest.mark.parametrize("test", ["all", "wald", "lrt", "score"])
def test_every_format_is_the_command_lines_bytes(study, tmp_path, test):
    _, _, source, y, cov, K = study
    stats: dict = {}
    table = lmmscan.scan(source, y, kinship=K, covariates=cov, test=test, statistics=stats)
    for fmt in FORMATS:
        if fmt == "gwas-ssf" and test == "lrt":  # no beta, which GWAS-SSF makes mandatory
            with pytest.raises(InputError, match="needs beta and standard_error"):
                lmmscan.write_table(table, tmp_path / "api_ssf", fmt)
            assert not (tmp_path / "api_ssf").exists()
            continue
        cli(study, tmp_path / f"cli_{fmt}", "--test", test, "--format", fmt)
        expected = (tmp_path / f"cli_{fmt}{EXTENSIONS[fmt]}").read_bytes()
        exact = lmmscan.write_table(table, tmp_path / f"api_{fmt}", fmt, statistics=stats)
        assert exact.read_bytes() == expected, fmt
        if fmt != "regenie":  # (its CHISQ column prints the statistic itself)
            recovered = lmmscan.write_table(table, tmp_path / f"rec_{fmt}", fmt)
            assert recovered.read_bytes() == expected, fmt


def test_loco_tables_recover_each_chromosomes_lrt(study, tmp_path):
    _, _, source, y, cov, _ = study
    stats: dict = {}
    table = lmmscan.loco_scan(source, y, cov, test="all", statistics=stats)
    assert set(table.attrs["lmmscan"]["loglik_mle_null"]) == set(table["chr"].astype(str))
    cli(study, tmp_path / "cli", "--loco", "--test", "all")
    expected = (tmp_path / "cli.assoc.txt").read_bytes()
    assert lmmscan.write_table(table, tmp_path / "a.txt").read_bytes() == expected
    exact = lmmscan.write_table(table, tmp_path / "b.txt", statistics=stats)
    assert exact.read_bytes() == expected


def test_a_row_subset_and_lost_attributes(study, tmp_path):
    _, _, source, y, cov, K = study
    table = lmmscan.scan(source, y, kinship=K, covariates=cov, test="wald")
    full = lmmscan.write_table(table, tmp_path / "full.txt").read_text().splitlines()
    subset = table[table["p_wald"] < 0.5]
    assert 0 < len(subset) < len(table)
    lines = lmmscan.write_table(subset, tmp_path / "sub.txt").read_text().splitlines()
    keep = np.flatnonzero(table["p_wald"].to_numpy() < 0.5)
    assert lines == [full[0]] + [full[1 + i] for i in keep]
    bare = pd.DataFrame({c: table[c] for c in table.columns})  # attrs gone
    with pytest.raises(InputError, match="needs n_analyzed, df:"):
        lmmscan.write_table(bare, tmp_path / "bare.txt")
    assert not (tmp_path / "bare.txt").exists()
    meta = table.attrs["lmmscan"]
    again = lmmscan.write_table(
        bare, tmp_path / "bare.txt", n_analyzed=meta["n_analyzed"], df=meta["df"]
    )  # fmt: skip (Wald: no LRT to recover)
    assert again.read_bytes() == (tmp_path / "full.txt").read_bytes()


def test_bad_arguments_are_refused(study, tmp_path):
    _, _, source, y, _, K = study
    table = lmmscan.scan(source, y, kinship=K, test="wald")
    with pytest.raises(InputError, match="format must be one of"):
        lmmscan.write_table(table, tmp_path / "t.txt", "csv")
    with pytest.raises(InputError, match="not a table of lmmscan.scan"):
        lmmscan.write_table(table.drop(columns="logl_H1"), tmp_path / "t.txt")
    with pytest.raises(InputError, match="index does not number the scan's rows"):
        lmmscan.write_table(table, tmp_path / "t.txt", statistics={"p_wald": np.zeros(3)})
    with pytest.raises(InputError, match="keys among p_wald"):
        lmmscan.write_table(table, tmp_path / "t.txt", statistics={"wald": np.zeros(len(table))})
    with pytest.raises(InputError, match="directory does not exist"):
        lmmscan.write_table(table, tmp_path / "gone" / "t.txt")
    merged = table.astype({"n_miss": float})
    merged.loc[3, "n_miss"] = np.nan  # as a left merge leaves it
    with pytest.raises(InputError, match="n_miss column must hold whole numbers"):
        lmmscan.write_table(merged, tmp_path / "t.txt")
    assert not (tmp_path / "t.txt").exists()
    whole = table.astype({"n_miss": float, "ps": float})  # whole numbers in floats: written
    assert lmmscan.write_table(whole, tmp_path / "w.txt").read_bytes() == (
        lmmscan.write_table(table, tmp_path / "t.txt").read_bytes()
    )


def test_p_values_below_1e300_are_printed_from_the_statistic(tmp_path):
    """A SNP far beyond double's range of p: the table holds p = 0, the file
    its value from the recovered Wald statistic, as the command line prints it."""
    rng = np.random.default_rng(5)
    n = 400
    G = rng.binomial(2, 0.4, size=(n, 30)).astype(float)
    y = 40.0 * G[:, 0] + rng.normal(size=n)
    Z = G - G.mean(axis=0)
    source = lmmscan.ArrayGenotypes(G)
    table = lmmscan.scan(source, y, kinship=Z @ Z.T / 30, test="wald")
    assert table["p_wald"].iloc[0] == 0.0
    row = lmmscan.write_table(table, tmp_path / "t.txt").read_text().splitlines()[1]
    p = row.split("\t")[-1]
    assert p != "0.000000e+00" and int(p.split("e-")[1]) > 300


def test_several_phenotypes_give_one_statistics_dict_each(study):
    _, prefix, source, _, _, K = study
    Y = lmmscan.read_pheno(f"{prefix}.pheno.txt", [1, 1])
    Y[:, 1] = Y[:, 0] * 2.0 + 1.0
    found: list = []
    tables = lmmscan.scan(source, Y, kinship=K, test="wald", statistics=found)
    assert len(found) == len(tables) == 2
    for table, stats in zip(tables, found, strict=True):
        assert len(stats["p_wald"]) == len(table)


def test_sorted_rows_take_their_own_statistics(study, tmp_path):
    """statistics (the scan's rows) follow the table's index through a sort
    or a subset: regenie's CHISQ column prints them."""
    _, _, source, y, cov, K = study
    stats: dict = {}
    table = lmmscan.scan(source, y, kinship=K, covariates=cov, test="wald", statistics=stats)
    lines = lmmscan.write_table(table, tmp_path / "a", "regenie", statistics=stats)
    by_id = {line.split(" ")[2]: line for line in lines.read_text().splitlines()[1:]}
    ranked = table.sort_values("p_wald")[::3]
    out = lmmscan.write_table(ranked, tmp_path / "b", "regenie", statistics=stats)
    rows = out.read_text().splitlines()[1:]
    assert len(rows) == len(ranked) and rows == [by_id[rs] for rs in ranked["rs"]]
    with pytest.raises(InputError, match="not that of its statistic"):
        shuffled = {"p_wald": stats["p_wald"][::-1].copy()}
        lmmscan.write_table(table, tmp_path / "c", "regenie", statistics=shuffled)


def test_attributes_of_another_scan_are_refused(study, tmp_path):
    """A table carrying another phenotype's attrs (pandas keeps attrs on
    copies and assignments) would print another N: its p-values do not
    match its statistics at those degrees of freedom."""
    _, _, source, y, _, K = study
    Y = np.column_stack([y, y])
    rng = np.random.default_rng(0)
    Y[rng.random(len(y)) < 0.3, 1] = np.nan  # fewer analysed samples
    a, b = lmmscan.scan(source, Y, kinship=K, test="wald")
    assert a.attrs["lmmscan"]["n_analyzed"] > b.attrs["lmmscan"]["n_analyzed"]
    mixed = a[a["rs"].isin(b["rs"]).to_numpy()].copy()
    for c in ["n_miss", "af", "beta", "se", "logl_H1", "l_remle", "p_wald"]:
        mixed[c] = b.set_index("rs").loc[mixed["rs"], c].to_numpy()
    with pytest.raises(InputError, match="not that of its statistic with df"):
        lmmscan.write_table(mixed, tmp_path / "m", "plink2")
