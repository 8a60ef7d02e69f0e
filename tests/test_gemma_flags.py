"""GEMMA's variant lists and the filters lmmscan took from it: --snps, --ksnps,
--hwe, --lmin/--lmax/--region, against GEMMA 0.98.5 (fixtures:
tests/data/gemma_flags/, made by its make_reference.sh with Debian's gemma)."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lmmscan
from lmmscan import _core
from lmmscan.cli import main
from lmmscan.filters import gemma_filter, hwe_pvalues
from lmmscan.genotypes import SubsetGenotypes, select_snps

from .conftest import DATA
from .gemma_files import read_log
from .test_cli_gemma import compare_assoc, compare_null_json

REF = DATA / "gemma_flags"
DEMO = Path(__file__).resolve().parents[1] / "python" / "lmmscan" / "data" / "demo"


def run(argv, capsys=None):
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's refusals
        status = exc.code
    if capsys is None:
        return status, "", ""
    out, err = capsys.readouterr()
    return status, out, err


def compare_kin(K_path: Path, name: str) -> None:
    """Diagonal and row sums of a kinship against GEMMA's (10-digit text)."""
    K = np.load(K_path) if K_path.suffix == ".npy" else np.loadtxt(K_path)
    ref = pd.read_csv(REF / f"{name}.kin.tsv.gz", sep="\t", dtype={"diag": str})
    np.testing.assert_allclose(np.diag(K), ref["diag"].astype(float), rtol=0, atol=1e-8)
    np.testing.assert_allclose(K.sum(axis=1), ref["rowsum"], rtol=0, atol=K.shape[0] * 1e-9)


def used_snps(out: str) -> int:
    """The SNP count of `lmmscan kinship`'s summary ("... from N of M SNPs")."""
    line = next(x for x in out.splitlines() if x.startswith("kinship ("))
    return int(line.split(" from ")[1].split()[0])


@pytest.fixture(scope="module")
def bed(mouse_dir) -> Path:
    return mouse_dir / "mouse_hs1940"


@pytest.fixture(scope="module")
def hwe_k(tmp_path_factory, bed) -> Path:
    """lmmscan's kinship with --hwe 0.001 (GEMMA: -hwe 0.001 -gk 1)."""
    out = tmp_path_factory.mktemp("flags") / "hwe.cXX.npy"
    assert run(["kinship", "--bfile", bed, "--hwe", "0.001", "--out", out, "--quiet"])[0] == 0
    return out


# ------------------------------------------------------------------ kinship


def test_kinship_hwe_equals_gemma(hwe_k, bed, capsys, tmp_path):
    compare_kin(hwe_k, "hwe_gk1")
    status, out, _ = run(
        ["kinship", "--bfile", bed, "--hwe", "0.001", "--out", tmp_path / "k.npy"], capsys
    )
    assert status == 0
    assert used_snps(out) == read_log(REF / "hwe_gk1.log.txt")["n_snps_analyzed"] == 9064
    assert "hwe 1704" in out


def test_kinship_snps_equals_gemma(bed, tmp_path, capsys):
    out = tmp_path / "snps.cXX.txt"
    status, text, _ = run(
        ["kinship", "--bfile", bed, "--snps", REF / "mouse_snps.txt", "--out", out], capsys
    )
    assert status == 0
    compare_kin(out, "snps_gk1")
    assert used_snps(text) == read_log(REF / "snps_gk1.log.txt")["n_snps_analyzed"]
    assert "--snps" in text and "1359 variants of 12226" in text


def test_kinship_bimbam_ksnps_and_hwe_equal_gemma(mouse_dir, tmp_path, capsys):
    bimbam = [
        "--bimbam-geno",
        mouse_dir / "mouse_hs1940.geno.txt.gz",
        "--bimbam-anno",
        mouse_dir / "mouse_hs1940.anno.txt",
        "--pheno",
        mouse_dir / "mouse_hs1940.pheno.txt",
    ]
    out = tmp_path / "ksnps.npy"
    status, text, _ = run(
        ["kinship", *bimbam, "--ksnps", REF / "mouse_snps.txt", "--out", out], capsys
    )
    assert status == 0
    compare_kin(out, "bimbam_snps_gk1")
    assert used_snps(text) == 1198
    out = tmp_path / "hwe.npy"
    status, text, _ = run(["kinship", *bimbam, "--hwe", "0.001", "--out", out], capsys)
    assert status == 0
    compare_kin(out, "bimbam_hwe_gk1")  # dosages binned as GEMMA bins them
    assert used_snps(text) == read_log(REF / "bimbam_hwe_gk1.log.txt")["n_snps_analyzed"]


# ------------------------------------------------------------------ scan


def test_scan_hwe_snps_equals_gemma(hwe_k, bed, tmp_path):
    out = tmp_path / "hwe"
    args = ["scan", "--bfile", bed, "--kinship", hwe_k, "--snps", REF / "mouse_snps.txt"]
    args += ["--hwe", "0.001", "--test", "all", "--out", out, "--quiet"]
    assert run(args)[0] == 0
    compare_assoc(Path(f"{out}.assoc.txt"), REF / "hwe_snps_lmm4.assoc.txt.gz")
    log = read_log(REF / "hwe_snps_lmm4.log.txt")
    got = json.loads(Path(f"{out}.null.json").read_text())
    assert got["n_snps_analyzed"] == log["n_snps_analyzed"] == 1002
    assert list(got["filters"]) == ["miss", "maf", "monomorphic", "hwe", "r2"]
    assert got["n_snps_total"] == got["variant_lists"]["snps"]["variants"] == 1359
    got["filters"].pop("hwe")  # compare_null_json knows GEMMA's default filters
    Path(f"{out}.null.json").write_text(json.dumps(got))
    compare_null_json(Path(f"{out}.null.json"), log)


def test_scan_lambda_range_equals_gemma(hwe_k, bed, tmp_path):
    out = tmp_path / "lrange"
    args = ["scan", "--bfile", bed, "--kinship", hwe_k, "--snps", REF / "mouse_snps.txt"]
    args += ["--lmin", "0.5", "--lmax", "3", "--region", "6", "--test", "all"]
    assert run([*args, "--out", out, "--quiet"])[0] == 0
    compare_assoc(Path(f"{out}.assoc.txt"), REF / "lrange_lmm4.assoc.txt.gz")
    compare_null_json(Path(f"{out}.null.json"), read_log(REF / "lrange_lmm4.log.txt"))
    table = pd.read_csv(f"{out}.assoc.txt", sep="\t")
    assert table["l_remle"].between(0.5, 3).all() and (table["l_mle"] == 3).any()


def test_scan_ksnps_is_the_listed_kinship(tmp_path):
    """A kinship computed in the scan from --ksnps is `kinship --ksnps`'s, bit for bit."""
    listed = tmp_path / "list.txt"
    bim = pd.read_csv(f"{DEMO}.bim", sep="\t", header=None)
    listed.write_text("\n".join(bim[1].iloc[::3]) + "\n")
    common = ["--bfile", DEMO, "--pheno", f"{DEMO}.pheno.txt", "--quiet"]
    K = tmp_path / "K.npy"
    assert run(["kinship", *common, "--ksnps", listed, "--out", K])[0] == 0
    assert run(["scan", *common, "--ksnps", listed, "--out", tmp_path / "a"])[0] == 0
    assert run(["scan", *common, "--kinship", K, "--out", tmp_path / "b"])[0] == 0
    a = (tmp_path / "a.assoc.txt").read_bytes()
    assert a == (tmp_path / "b.assoc.txt").read_bytes()
    assert run(["scan", *common, "--out", tmp_path / "c"])[0] == 0
    assert a != (tmp_path / "c.assoc.txt").read_bytes()


def test_loco_with_lists(tmp_path):
    common = ["--bfile", DEMO, "--pheno", f"{DEMO}.pheno.txt", "--loco", "--quiet"]
    assert run(["scan", *common, "--out", tmp_path / "all"])[0] == 0
    full = pd.read_csv(tmp_path / "all.assoc.txt", sep="\t", dtype=str)
    # every variant listed for the kinship: the plain LOCO scan, byte for byte
    bim = pd.read_csv(f"{DEMO}.bim", sep="\t", header=None)
    every = tmp_path / "every.txt"
    every.write_text("\n".join(bim[1]) + "\n")
    assert run(["scan", *common, "--ksnps", every, "--out", tmp_path / "k"])[0] == 0
    assert (tmp_path / "k.assoc.txt").read_bytes() == (tmp_path / "all.assoc.txt").read_bytes()
    # --snps: the same rows for the listed variants (the kinships use every variant)
    some = tmp_path / "some.txt"
    some.write_text("\n".join(bim[1].iloc[::5]) + "\n")
    assert run(["scan", *common, "--snps", some, "--out", tmp_path / "s"])[0] == 0
    part = pd.read_csv(tmp_path / "s.assoc.txt", sep="\t", dtype=str)
    expected = full[full["rs"].isin(set(bim[1].iloc[::5]))].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, expected)


def test_loco_ksnps_must_cover_the_tested_chromosomes(tmp_path, capsys):
    bim = pd.read_csv(f"{DEMO}.bim", sep="\t", header=None)
    chroms = bim[0].unique()
    listed = tmp_path / "two.txt"
    listed.write_text("\n".join(bim[1][bim[0] != chroms[-1]]) + "\n")
    args = ["scan", "--bfile", DEMO, "--pheno", f"{DEMO}.pheno.txt", "--loco"]
    status, _, err = run([*args, "--ksnps", listed, "--out", tmp_path / "x"], capsys)
    assert status == 2
    assert "no kinship variant" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("x*"))


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--lmin", "1", "--lmax", "1"], "--lmin (1) must be below --lmax (1)"),
        (["--lmin", "0"], "--lmin"),
        (["--hwe", "2"], "--hwe"),
        (["--snps", "EMPTY"], "lists no variant ID"),
        (["--snps", "NOMATCH"], "none of the 2 listed variant IDs"),
        (["--ksnps", "NOMATCH", "--kinship", "K"], "--ksnps chooses the variants"),
    ],
)
def test_bad_flags_one_line_exit_2(tmp_path, capsys, extra, words):
    (tmp_path / "EMPTY").write_text("\n\n")
    (tmp_path / "NOMATCH").write_text("no_such_snp\nnor_this one\n")
    (tmp_path / "K").write_text("1\n")
    extra = [str(tmp_path / x) if x in ("EMPTY", "NOMATCH", "K") else x for x in extra]
    args = ["scan", "--bfile", DEMO, "--pheno", f"{DEMO}.pheno.txt", *extra]
    status, out, err = run([*args, "--out", tmp_path / "o"], capsys)
    assert status == 2
    assert words in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("o*"))


# ------------------------------------------------------------------ the pieces


def _hwe_reference(hom1: int, het: int, hom2: int) -> float:
    """The exact test from the closed-form conditional distribution
    (Wigginton et al. 2005, eq. 2) in log space: P(het = k | N, rare copies)."""
    n = hom1 + het + hom2
    rare = min(2 * hom1 + het, 2 * hom2 + het)
    common = 2 * n - rare

    def logp(k: int) -> float:
        r, c = (rare - k) // 2, (common - k) // 2
        return (
            k * math.log(2)
            + math.lgamma(n + 1)
            - math.lgamma(r + 1)
            - math.lgamma(k + 1)
            - math.lgamma(c + 1)
            + math.lgamma(rare + 1)
            + math.lgamma(common + 1)
            - math.lgamma(2 * n + 1)
        )

    ks = range(rare % 2, rare + 1, 2)
    lp = {k: logp(k) for k in ks}
    obs = lp[het]
    # ties within rounding count as "no more likely", as in the recursion's exact ties
    return min(1.0, math.fsum(math.exp(v) for v in lp.values() if v <= obs + 1e-9))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 60), st.integers(0, 120), st.integers(0, 60))
def test_hwe_exact_matches_the_closed_form(hom1, het, hom2):
    if hom1 + het + hom2 == 0:
        assert _core.hwe_exact(np.array([0]), np.array([0]), np.array([0]))[0] == 1.0
        return
    p = _core.hwe_exact(np.array([hom1]), np.array([het]), np.array([hom2]))[0]
    # the recursion's products against lgamma's sums: ~1e-12 relative on a term,
    # and a term that ties the observed one within that may fall either side
    ref = _hwe_reference(hom1, het, hom2)
    assert p == pytest.approx(ref, rel=1e-8, abs=1e-300)


def test_hwe_known_values():
    # all heterozygotes: far from equilibrium; an equilibrium sample: p = 1
    p = _core.hwe_exact(np.array([0, 25]), np.array([100, 50]), np.array([0, 25]))
    assert p[0] < 1e-25 and p[1] == pytest.approx(1.0)
    X = np.array([[0, 0], [1, 0], [2, 0], [np.nan, 2]], dtype=float)
    np.testing.assert_allclose(hwe_pvalues(X), _core.hwe_exact(
        np.array([1, 3]), np.array([1, 0]), np.array([1, 1])))  # fmt: skip


def test_hwe_filter_order_and_switches():
    rng = np.random.default_rng(5)
    X = rng.binomial(2, 0.4, size=(300, 40)).astype(float)
    X[:, 0] = np.r_[np.ones(290), np.zeros(5), 2 * np.ones(5)]  # mostly heterozygotes
    keep, _, _, c = gemma_filter(X, hwe=1e-6)
    assert not keep[0] and c.removed["hwe"] == 1
    assert list(c.removed) == ["miss", "maf", "monomorphic", "hwe", "r2"]
    keep0, _, _, c0 = gemma_filter(X)  # off by default: no "hwe" key
    assert keep0[0] and "hwe" not in c0.removed
    keep_nomaf, _, _, c1 = gemma_filter(X, hwe=1e-6, maf=-1)  # GEMMA: -notsnp turns it off
    assert keep_nomaf[0] and "hwe" not in c1.removed


def test_subset_source_reads_the_listed_snps(mouse_plink):
    rs = mouse_plink.snps["rs"]
    ids = list(rs.iloc[[3, 4, 5, 200, 201, 5000, 12225]]) + ["absent"]
    sub, missing = select_snps(mouse_plink, ids, "--snps")
    assert missing == 1 and sub.n_snps == 7
    index = np.array([3, 4, 5, 200, 201, 5000, 12225])
    samples = np.arange(0, 1940, 3)
    np.testing.assert_array_equal(
        sub.read(1, 6, samples), mouse_plink.read(0, 12226, samples)[:, index[1:6]]
    )
    assert list(sub.snps["rs"]) == ids[:7]
    assert sub.samples is mouse_plink.samples  # everything else is the source's
    clone = pickle.loads(pickle.dumps(sub))  # Dask sends sources to its workers
    np.testing.assert_array_equal(clone.read(0, 7), sub.read(0, 7))
    assert isinstance(clone, SubsetGenotypes)


@pytest.mark.parametrize(("step", "block"), [(50, 100), (50, 3), (2, 400), (1, 300)])
def test_a_scattered_subset_reads_no_more_than_its_block(mouse_plink, monkeypatch, step, block):
    """Every 50th SNP (an LD-pruned --ksnps) was read as one run per block:
    50 times the block's columns, past the memory plan (5x its peak)."""
    index = np.arange(7, 12226, step)
    sub = SubsetGenotypes(mouse_plink, index)
    spans: list[int] = []
    real = type(mouse_plink).read

    def read(self, start, stop, samples=None):
        spans.append(stop - start)
        return real(self, start, stop, samples)

    monkeypatch.setattr(type(mouse_plink), "read", read)
    for a in range(0, index.size, block):
        got = sub.read(a, a + block)
        want = np.column_stack([real(mouse_plink, i, i + 1) for i in index[a : a + block]])
        np.testing.assert_array_equal(got, want)
    assert max(spans) <= max(block, SubsetGenotypes.GAP)
    if step == 1:  # contiguous: one read per block, as before
        assert len(spans) == -(-index.size // block)


def test_scan_api_takes_hwe_and_bounds(mouse_plink):
    y = mouse_plink.fam_phenotypes([1])[:, 0]
    sub = SubsetGenotypes(mouse_plink, np.arange(0, 12226, 25))
    K = lmmscan.kinship(mouse_plink, filter_samples=~np.isnan(y))
    bounds = lmmscan.model.LambdaBounds(0.5, 3.0, 6)
    t = lmmscan.scan(sub, y, kinship=K, hwe=1e-3, bounds=bounds, test="wald")
    plain = lmmscan.scan(sub, y, kinship=K, test="wald")
    assert len(t) < len(plain)
    assert t["l_remle"].between(0.5, 3.0).all()
