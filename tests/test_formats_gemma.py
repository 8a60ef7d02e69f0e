"""GEMMA's numbers from every genotype format: the dosage study of
tests/data/dosage (made by its make_reference.sh: quarter-step dosages written
as VCF with DS, converted by plink2 to .pgen and 16-bit BGEN, and given to
GEMMA 0.98.5 as BIMBAM) read as .pgen, VCF, BCF, BGEN and BIMBAM."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmscan
from lmmscan.cli import main

from .conftest import DATA
from .gemma_files import read_log
from .test_cli_gemma import compare_assoc, compare_null_json

REF = DATA / "dosage"

# 16-bit BGEN stores a probability as k / 65,535: a quarter dosage comes back
# within 2 x 0.5 / 65,535 (two probabilities, each rounded), so a kinship entry
# (a mean of products of centred dosages in [-2, 2]) moves by at most
# 2 x 2 x eps + eps^2
BGEN16_EPS = 1.0 / 65535
BGEN16_KIN_ATOL = 4 * BGEN16_EPS + BGEN16_EPS**2

FORMATS = {
    "pgen": ["--pfile", "study"],
    "vcf": ["--vcf", "study.vcf.gz"],
    "bcf": ["--vcf", "study.bcf"],  # chromosome 2 only (README)
    "bgen16": ["--bgen", "study.bgen", "--sample", "study.sample"],
    "bimbam": ["--bimbam-geno", "study.geno.txt.gz", "--bimbam-anno", "study.anno.txt"],
}
# the 3 multi-allelic variants (ma1-ma3), in the VCFs, the BCF and the .pgen
MULTI = {"pgen": 3, "vcf": 3, "bcf": 3, "bgen16": 0, "bimbam": 0}


def run(argv):
    try:
        return main([str(a) for a in argv])
    except SystemExit as exc:
        return exc.code


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dosage")
    for src in REF.iterdir():
        if src.name.startswith("study"):
            shutil.copy(src, d / src.name)
    with gzip.open(REF / "dos_gk1.cXX.txt.gz", "rb") as fin, open(d / "K.txt", "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return d


def flags_of(study: Path, name: str) -> list:
    return [f if f.startswith("--") else study / f for f in FORMATS[name]]


@pytest.mark.parametrize("name", [f for f in FORMATS if f != "bcf"])
def test_kinship_equals_gemma_gk1(study, name, tmp_path):
    out = tmp_path / "K.npy"
    argv = ["kinship", *flags_of(study, name), "--pheno", study / "study.pheno.txt", "--out", out]
    assert run([*argv, "--quiet"]) == 0
    K = np.load(out)
    ref = pd.read_csv(REF / "dos_gk1.kin.tsv.gz", sep="\t", dtype={"diag": str})
    atol = BGEN16_KIN_ATOL if name == "bgen16" else 1e-8
    np.testing.assert_allclose(np.diag(K), ref["diag"].astype(float), rtol=0, atol=atol)
    np.testing.assert_allclose(K.sum(axis=1), ref["rowsum"], rtol=0, atol=K.shape[0] * atol)


@pytest.mark.parametrize("name", list(FORMATS))
def test_scan_equals_gemma_lmm4(study, name, tmp_path):
    out = tmp_path / "s"
    argv = ["scan", *flags_of(study, name), "--pheno", study / "study.pheno.txt",
            "--covar", study / "study.covar.txt", "--kinship", study / "K.txt",
            "--test", "all", "--out", out, "--quiet"]  # fmt: skip
    assert run(argv) == 0
    subset = name == "bcf"
    compare_assoc(
        Path(f"{out}.assoc.txt"),
        REF / "dos_lmm4.assoc.txt.gz",
        rows_of_ref=1 if subset else None,
        af_last_digit=name == "bgen16",  # dosages within 1/65,535 of GEMMA's
    )
    compare_null_json(Path(f"{out}.null.json"), read_log(REF / "dos_lmm4.log.txt"))
    null = json.loads(Path(f"{out}.null.json").read_text())
    skipped = {"multi-allelic": MULTI[name]} if MULTI[name] else None
    assert null.get("skipped_variants") == skipped


def test_quarter_dosages_are_exact_in_pgen_vcf_and_bimbam(study):
    """The grid survives .pgen, VCF and BCF exactly (the tables above then run
    the same operations on the same numbers as the BIMBAM path)."""
    bimbam = lmmscan.read_bimbam(study / "study.geno.txt.gz", study / "study.anno.txt")
    G = bimbam.read(0, bimbam.n_snps)
    assert np.array_equal(G[~np.isnan(G)] * 4, np.round(G[~np.isnan(G)] * 4))
    for src in (
        lmmscan.read_pgen(study / "study"),
        lmmscan.read_vcf(study / "study.vcf.gz"),
        lmmscan.read_vcf(study / "study.bcf"),
    ):
        assert src.skipped == {"multi-allelic": 3}
        rs = pd.Index(bimbam.snps["rs"])
        pos = rs.get_indexer(src.snps["rs"])
        assert (pos >= 0).all() and src.n_snps in (3000, 1000)
        np.testing.assert_array_equal(src.read(0, src.n_snps), G[:, pos])
    bgen = lmmscan.read_bgen(study / "study.bgen", study / "study.sample")
    B = bgen.read(0, bgen.n_snps)
    np.testing.assert_array_equal(np.isnan(B), np.isnan(G))
    assert np.nanmax(np.abs(B - G)) <= 2 * 0.5 * BGEN16_EPS * 1.0001


def _analysed(study: Path) -> np.ndarray:
    pheno = pd.read_csv(study / "study.pheno.txt", header=None, na_values="NA")[0]
    return pheno.notna().to_numpy()


def test_info_equals_bcftools_impute_info(study):
    """IMPUTE's info over the analysed individuals from a VCF's GP, against
    bcftools +impute-info (make_info_reference.sh; 6 printed digits).

    lmmscan leaves a sample with missing GP out (N counts the others);
    bcftools counts it in N with zero probabilities, so its theta and its
    denominator differ by the missing count.  Where no analysed sample is
    missing the two are the same number; elsewhere lmmscan's terms, put into
    bcftools' convention, give bcftools' number.  The BGEN (probabilities
    from the same dosages, 16-bit) gives the VCF's info to its rounding."""
    ref = pd.read_csv(REF / "info_gp.tsv", sep="\t")
    mask = _analysed(study)
    vcf = lmmscan.read_vcf(study / "study_gp.vcf.gz", "GP")
    assert list(vcf.snps["rs"]) == list(ref["ID"])
    info = vcf.info(0, vcf.n_snps, mask)
    E = vcf.read(0, vcf.n_snps, mask)
    n_all = E.shape[0]
    m = (~np.isnan(E)).sum(axis=0)
    theta = np.nansum(E, axis=0) / (2 * m)
    complete = m == n_all
    assert complete.sum() >= 10
    np.testing.assert_allclose(info[complete], ref["INFO"][complete], rtol=2e-6)
    v = (1 - info) * 2 * m * theta * (1 - theta)  # sum of f - e^2
    theta_b = theta * m / n_all
    denom = 2 * n_all * theta_b * (1 - theta_b)
    bcftools = np.where(denom > 0, 1 - v / np.where(denom > 0, denom, 1), 1.0)  # 1: monomorphic
    np.testing.assert_allclose(bcftools, ref["INFO"], rtol=2e-6)
    assert not np.allclose(info, ref["INFO"], rtol=1e-4)  # the conventions do differ
    bgen = lmmscan.read_bgen(study / "study.bgen", study / "study.sample")
    pos = pd.Index(bgen.snps["rs"]).get_indexer(ref["ID"])
    np.testing.assert_allclose(bgen.info(0, bgen.n_snps, mask)[pos], info, atol=1e-4)


@pytest.mark.parametrize("fmt", ["vcf", "bgen"])
def test_info_filter_keeps_what_bcftools_keeps(study, tmp_path, fmt):
    """--info keeps the variants whose info (lmmscan's, checked against
    bcftools' above) reaches the threshold, on chromosome 2 of both files."""
    mask = _analysed(study)
    vcf = lmmscan.read_vcf(study / "study_gp.vcf.gz", "GP")
    info = vcf.info(0, vcf.n_snps, mask)
    # a threshold in a gap of the values, away from them by more than the
    # BGEN's rounding, near the 40th percentile
    v = np.unique(info)
    gaps = np.flatnonzero(np.diff(v) > 2e-4)
    i = gaps[np.argmin(np.abs(gaps - 0.4 * v.size))]
    threshold = round(float(v[i] + v[i + 1]) / 2, 6)
    assert (np.abs(info - threshold) > 1e-4).all()
    keep = set(vcf.snps["rs"][info >= threshold])
    assert 100 < len(keep) < vcf.n_snps - 100
    flags = (["--vcf", study / "study_gp.vcf.gz", "--vcf-field", "GP"] if fmt == "vcf"
             else ["--bgen", study / "study.bgen", "--sample", study / "study.sample"])  # fmt: skip
    out = tmp_path / "s"
    argv = ["scan", *flags, "--pheno", study / "study.pheno.txt", "--kinship",
            study / "K.txt", "--info", threshold, "--maf", -1, "--miss", 1, "--test", "wald",
            "--out", out, "--quiet"]  # fmt: skip
    assert run(argv) == 0
    table = pd.read_csv(f"{out}.assoc.txt", sep="\t", dtype={"chr": str})
    # the BGEN holds chromosomes 1-3; the reference (study_gp.vcf.gz) chromosome 2
    # (the monomorphic variants pass --info, at 1, then GEMMA's monomorphic filter)
    E = vcf.read(0, vcf.n_snps, mask)
    monomorphic = set(vcf.snps["rs"][np.nanmax(E, axis=0) == np.nanmin(E, axis=0)])
    assert monomorphic
    assert set(table["rs"][table["chr"] == "2"]) == keep - monomorphic
    null = json.loads(Path(f"{out}.null.json").read_text())
    assert null["info_filter"]["individuals"] == 391
    assert null["info_filter"]["variants"] == len(table) + null["filters"]["monomorphic"]
    if fmt == "vcf":
        assert null["info_filter"]["variants"] == len(keep)
