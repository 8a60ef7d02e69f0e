"""PLINK 2 .pgen, BGEN and VCF/BCF: the hard calls of mouse_hs1940 converted by
plink2 (tests/data/converted/make_converted.sh) give the .bed path's numbers,
and the readers' API, sample subsets, skipped variants and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmscan
from lmmscan.cli import main

from .conftest import DATA, copy_converted

CONV = DATA / "converted"


def run(argv, capsys=None):
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    if capsys is None:
        return status, "", ""
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def conv(tmp_path_factory) -> Path:
    return copy_converted(tmp_path_factory.mktemp("converted"))


@pytest.fixture(scope="module")
def mouse_ref(mouse_dir, tmp_path_factory):
    """The .bed path on the first 2,000 SNPs: kinship of all SNPs, --test all."""
    d = tmp_path_factory.mktemp("bedref")
    # plink2 drops the 326 SNPs of the first 2,000 with position -9 (PLINK 1's
    # "excluded" mark; GEMMA keeps them): the .bed path tests the others
    pvar = pd.read_csv(CONV / "mouse2k.pvar", sep="\t", dtype=str)
    (d / "first2k.txt").write_text("\n".join(pvar["ID"]) + "\n")
    K = d / "K.npy"
    assert run(["kinship", "--bfile", mouse_dir / "mouse_hs1940", "--out", K, "--quiet"])[0] == 0
    common = ["--kinship", K, "--pheno", mouse_dir / "mouse_hs1940.pheno.txt", "--test", "all"]
    status, _, _ = run(
        ["scan", "--bfile", mouse_dir / "mouse_hs1940", "--snps", d / "first2k.txt", *common,
         "--out", d / "bed", "--quiet"]
    )  # fmt: skip
    assert status == 0
    return d, common


@pytest.mark.parametrize(
    "flags",
    [
        ["--pfile", "mouse2k"],
        ["--vcf", "mouse2k.vcf.gz"],
        ["--bgen", "mouse2k.bgen", "--sample", "mouse2k.sample"],
        ["--bgen", "mouse2k.bgen"],
    ],
    ids=["pgen", "vcf", "bgen-sample", "bgen-embedded"],
)
def test_converted_hard_calls_give_the_bed_table(conv, mouse_ref, flags, tmp_path):
    """plink2's conversions of the .bed carry the same calls, counted allele
    (ALT = .bim column 5; BGEN written REF first) and order: the same
    operations run on the same numbers, so the tables are byte-identical."""
    d, common = mouse_ref
    flags = [flags[0], conv / flags[1], *[conv / f if f.startswith("mouse") else f
                                          for f in flags[2:]]]  # fmt: skip
    status, _, err = run(["scan", *flags, *common, "--out", tmp_path / "x", "--quiet"])
    assert status == 0, err
    assert (tmp_path / "x.assoc.txt").read_bytes() == (d / "bed.assoc.txt").read_bytes()
    ours = json.loads((tmp_path / "x.null.json").read_text())
    ref = json.loads((d / "bed.null.json").read_text())
    for key in ("seconds", "memory", "phenotype"):
        del ours[key], ref[key]
    del ref["variant_lists"]  # the .bed run's --snps
    assert ours == ref


def same_snps(src, mouse_plink):
    """The .bed's SNPs that a converted file holds, as a source."""
    from lmmscan.genotypes import SubsetGenotypes

    pos = pd.Index(mouse_plink.snps["rs"]).get_indexer(src.snps["rs"])
    assert (pos >= 0).all() and (np.diff(pos) > 0).all()
    return SubsetGenotypes(mouse_plink, pos)


@pytest.mark.parametrize(
    "opener",
    [
        lambda c: lmmscan.read_pgen(c / "mouse2k"),
        lambda c: lmmscan.read_vcf(c / "mouse2k.vcf.gz"),
        lambda c: lmmscan.read_vcf(c / "mouse300.bcf"),
        lambda c: lmmscan.read_bgen(c / "mouse2k.bgen"),
        lambda c: lmmscan.read_bgen(c / "mouse300_v11.bgen", c / "mouse300.sample"),
        lambda c: lmmscan.read_bgen(c / "mouse300_v13.bgen"),
    ],
    ids=["pgen", "vcf.gz", "bcf", "bgen-1.2-8bit", "bgen-1.1", "bgen-1.3-zstd-16bit"],
)
@pytest.mark.parametrize("chunk", [None, 7])
def test_readers_match_the_bed_reader(conv, mouse_plink, opener, chunk, monkeypatch):
    """Every layout and compression decodes the hard calls exactly, for all
    samples, a mask, and unordered indices; blocks out of file order too.
    The variant table is the same however many rows go into each of its
    chunks (VCF and BGEN fill it row by row)."""
    if chunk is not None:
        from lmmscan.variants import VariantRows

        monkeypatch.setattr(VariantRows, "CHUNK", chunk)
    src = opener(conv)
    m = src.n_snps
    assert src.n_samples == mouse_plink.n_samples
    assert m in (1674, 250)  # of 2,000 and 300: plink2 drops position -9
    bed = same_snps(src, mouse_plink)
    for col in ("chr", "rs", "ps", "allele1", "allele0"):
        assert (src.snps[col].to_numpy() == bed.snps[col].to_numpy()).all(), col
    np.testing.assert_array_equal(src.read(0, m), bed.read(0, m))
    rng = np.random.default_rng(5)
    mask = rng.random(src.n_samples) < 0.4
    np.testing.assert_array_equal(src.read(120, 240, mask), bed.read(120, 240, mask))
    idx = rng.permutation(src.n_samples)[:50]
    np.testing.assert_array_equal(src.read(10, 20, idx), bed.read(10, 20, idx))
    np.testing.assert_array_equal(src.read(3, 7), bed.read(3, 7))  # backwards
    assert src.skipped == {}
    assert src.read(0, 5).flags.f_contiguous


def test_readers_pickle(conv, mouse_plink):
    """Dask ships sources to workers: a pickled source reads the same."""
    import pickle

    for src in (
        lmmscan.read_pgen(conv / "mouse2k"),
        lmmscan.read_vcf(conv / "mouse300.bcf"),
        lmmscan.read_bgen(conv / "mouse2k.bgen"),
    ):
        src.read(0, 3)  # with its file open
        copy = pickle.loads(pickle.dumps(src))
        np.testing.assert_array_equal(copy.read(5, 9), same_snps(src, mouse_plink).read(5, 9))


def test_kinship_from_each_format(conv, mouse_dir, tmp_path):
    """`lmmscan kinship` takes every format: the same kinship, bit for bit."""
    ref = tmp_path / "bed.npy"
    snps = tmp_path / "first300.txt"
    ids = lmmscan.read_bgen(conv / "mouse300_v13.bgen").snps["rs"]
    snps.write_text("\n".join(ids) + "\n")
    assert run(["kinship", "--bfile", mouse_dir / "mouse_hs1940", "--snps", snps,
                "--out", ref, "--quiet"])[0] == 0  # fmt: skip
    K = np.load(ref)
    for flags in (
        ["--vcf", conv / "mouse300.bcf"],
        ["--bgen", conv / "mouse300_v13.bgen"],
        ["--pfile", conv / "mouse2k", "--snps", snps],
    ):
        out = tmp_path / "k.npy"
        status, _, err = run(["kinship", *flags, "--out", out, "--quiet"])
        assert status == 0, err
        np.testing.assert_array_equal(np.load(out), K)


@pytest.fixture(scope="module")
def lists(mouse_dir, tmp_path_factory):
    """The .bed restricted to the converted files' SNPs, for the tested and the
    kinship variants alike, and the phenotype."""
    d = tmp_path_factory.mktemp("lists")
    pvar = pd.read_csv(CONV / "mouse2k.pvar", sep="\t", dtype=str)
    (d / "ids.txt").write_text("\n".join(pvar["ID"]) + "\n")
    bed = ["--bfile", mouse_dir / "mouse_hs1940", "--snps", d / "ids.txt", "--ksnps", d / "ids.txt"]
    return bed, ["--pheno", mouse_dir / "mouse_hs1940.pheno.txt"]


def test_loco_from_a_pgen_and_a_vcf(conv, lists, tmp_path):
    """--loco reads the file twice over (kinship passes, then the scan): the
    .bed's LOCO table, from the same variants."""
    bed, pheno = lists
    common = [*pheno, "--loco", "--test", "wald", "--quiet"]
    assert run(["scan", *bed, *common, "--out", tmp_path / "bed"])[0] == 0
    ref = (tmp_path / "bed.assoc.txt").read_bytes()
    for name, flags in (("pgen", ["--pfile", conv / "mouse2k"]),
                        ("vcf", ["--vcf", conv / "mouse2k.vcf.gz"])):  # fmt: skip
        status, _, err = run(["scan", *flags, *common, "--out", tmp_path / name])
        assert status == 0, err
        assert (tmp_path / f"{name}.assoc.txt").read_bytes() == ref, name


@pytest.mark.parametrize("fmt", ["vcf", "bgen"])
def test_resume_from_a_vcf_and_a_bgen(conv, lists, tmp_path, monkeypatch, fmt):
    """An interrupted scan of a sequentially read file resumes mid-file and
    gives one run's table."""
    _, pheno = lists
    flags = (["--vcf", conv / "mouse2k.vcf.gz"] if fmt == "vcf"
             else ["--bgen", conv / "mouse2k.bgen"])  # fmt: skip
    K = tmp_path / "K.npy"
    assert run(["kinship", *flags, "--out", K, "--quiet"])[0] == 0
    common = [*flags, *pheno, "--kinship", K, "--block-size", "256", "--quiet"]
    assert run(["scan", *common, "--out", tmp_path / "one"])[0] == 0
    monkeypatch.setenv("LMMSCAN_TEST_STOP_AFTER_BLOCKS", "3")
    assert run(["scan", *common, "--out", tmp_path / "two"])[0] == 130
    assert (tmp_path / "two.resume.json").exists()
    monkeypatch.delenv("LMMSCAN_TEST_STOP_AFTER_BLOCKS")
    assert run(["scan", *common, "--resume", "--out", tmp_path / "two"])[0] == 0
    one = (tmp_path / "one.assoc.txt").read_bytes()
    assert (tmp_path / "two.assoc.txt").read_bytes() == one


def test_eigen_command_and_a_saved_eigendecomposition(conv, lists, tmp_path):
    """`lmmscan eigen` takes a BGEN's samples; the scan from the .npz is the
    scan from the kinship."""
    _, pheno = lists
    flags = ["--bgen", conv / "mouse2k.bgen", *pheno]
    K = tmp_path / "K.npy"
    assert run(["kinship", *flags, "--out", K, "--quiet"])[0] == 0
    status, _, err = run(["eigen", *flags, "--kinship", K, "--out", tmp_path / "e.npz", "--quiet"])
    assert status == 0, err
    assert run(["scan", *flags, "--kinship", K, "--out", tmp_path / "k", "--quiet"])[0] == 0
    status, _, err = run(["scan", *flags, "--eigen", tmp_path / "e.npz", "--out", tmp_path / "e",
                          "--quiet"])  # fmt: skip
    assert status == 0, err
    a = pd.read_csv(tmp_path / "k.assoc.txt", sep="\t")
    b = pd.read_csv(tmp_path / "e.assoc.txt", sep="\t")
    np.testing.assert_allclose(b["p_wald"], a["p_wald"], rtol=1e-8)


def test_dask_scheduler_with_a_pgen(conv, lists, tmp_path):
    """The readers pickle to Dask workers: the cluster's table is the local one."""
    distributed = pytest.importorskip("distributed")
    _, pheno = lists
    common = ["scan", "--pfile", conv / "mouse2k", *pheno, "--test", "all",
              "--block-size", "500", "--quiet"]  # fmt: skip
    assert run([*common, "--threads", "1", "--out", tmp_path / "local"])[0] == 0
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as cluster:
        status, _, err = run(
            [*common, "--dask-scheduler", cluster.scheduler_address, "--out", tmp_path / "dask"]
        )
    assert status == 0, err
    local = (tmp_path / "local.assoc.txt").read_text()
    assert (tmp_path / "dask.assoc.txt").read_text() == local


def test_low_rank_eigen_several_phenotypes_and_lambda_null(conv, mouse_dir, tmp_path):
    """A low-rank eigendecomposition built from a .pgen (API) scanned from a VCF
    (command line), with two phenotype columns and --lambda null: the .bed's
    numbers for each column."""
    from lmmscan.eigen import sample_ids_of

    pgen = lmmscan.read_pgen(conv / "mouse2k")
    lr = lmmscan.low_rank_kinship(pgen, snps=np.arange(0, pgen.n_snps, 3))
    pheno = mouse_dir / "mouse_hs1940.pheno.txt"
    Y = np.genfromtxt(pheno, missing_values="NA")
    mask = ~np.isnan(Y[:, 0]) & ~np.isnan(Y[:, 1])
    Y2 = np.where(mask[:, None], Y[:, :2], np.nan)
    (tmp_path / "p.txt").write_text(
        "".join(" ".join("NA" if np.isnan(v) else repr(float(v)) for v in row) + "\n" for row in Y2)
    )
    # the sample IDs differ: plink2 writes FID_IID as the VCF's sample ID
    vcf = lmmscan.read_vcf(conv / "mouse2k.vcf.gz")
    for name, src in (("p", pgen), ("v", vcf)):
        spectral = lr.spectral(mask)
        eig = lmmscan.Eigendecomposition.from_spectral(spectral, sample_ids_of(src)[mask])
        eig.save(tmp_path / f"lr_{name}.npz")
    common = ["--pheno", tmp_path / "p.txt", "--pheno-col", "1,2", "--test", "wald",
              "--lambda", "null", "--quiet"]  # fmt: skip
    for name, flags in (("v", ["--vcf", conv / "mouse2k.vcf.gz"]),
                        ("p", ["--pfile", conv / "mouse2k"])):  # fmt: skip
        argv = ["scan", *flags, *common, "--eigen", tmp_path / f"lr_{name}.npz"]
        status, _, err = run([*argv, "--out", tmp_path / name])
        assert status == 0, err
    for col in (1, 2):
        v = (tmp_path / f"v.{col}.assoc.txt").read_bytes()
        assert v == (tmp_path / f"p.{col}.assoc.txt").read_bytes()
        got = pd.read_csv(tmp_path / f"v.{col}.assoc.txt", sep="\t")
        ref = lmmscan.scan(pgen, Y2[:, col - 1], kinship=lr, test="wald", lambda_mode="null")
        assert (got["rs"].to_numpy() == ref["rs"].to_numpy()).all()
        np.testing.assert_allclose(got["p_wald"], ref["p_wald"], rtol=1e-6)
