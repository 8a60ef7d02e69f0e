"""lmmscan against GEMMA 0.98.5 on mouse_hs1940 (PLINK), fixtures made by
tests/data/gemma/make_reference.sh with Debian's gemma."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmscan

from .conftest import GEMMA, round_sig10
from .gemma_files import read_assoc, read_kinship_sample, read_log


@pytest.mark.parametrize("method, stem", [("centered", "mouse_gk1"), ("standardized", "mouse_gk2")])
def test_kinship_equals_gemma(mouse_gk, method, stem):
    entries, rowsums = read_kinship_sample(GEMMA / stem)
    K = mouse_gk[method]
    assert K.shape == (1940, 1940)
    got = K[entries["i"].to_numpy(), entries["j"].to_numpy()]
    np.testing.assert_allclose(got, entries["value"].to_numpy(), rtol=0, atol=1e-8)
    # every entry, through the row sums (1940 terms of 10-digit text each)
    np.testing.assert_allclose(K.sum(axis=1), rowsums, rtol=0, atol=1940 * 1e-9)


def test_kinship_filters_on_analysed_samples(mouse_plink):
    """GEMMA's -gk SNP filter uses the analysed individuals (here phenotype 6's)."""
    entries, rowsums = read_kinship_sample(GEMMA / "mouse_gk1_n6")
    fam = mouse_plink._fam_raw
    pheno6 = lmmscan.plink.parse_phenotype(fam[10], minus9_missing=True)
    K = lmmscan.kinship(mouse_plink, "centered", filter_samples=~np.isnan(pheno6))
    got = K[entries["i"].to_numpy(), entries["j"].to_numpy()]
    np.testing.assert_allclose(got, entries["value"].to_numpy(), rtol=0, atol=1e-8)


def compare_null(model: lmmscan.NullModel, log: dict) -> None:
    assert model.n_analyzed == log["n_analyzed"]
    assert model.n_covariates == log["n_covariates"]
    for ours, key in (
        (model.loglik_reml, "loglik_reml"),
        (model.loglik_ml, "loglik_ml"),
        (model.pve, "pve"),
        (model.pve_se, "pve_se"),
        (model.vg, "vg"),
        (model.ve, "ve"),
    ):
        # GEMMA prints 6 significant digits: 1e-5 relative is within its rounding
        assert ours == pytest.approx(log[key], rel=1e-5), key
    np.testing.assert_allclose(model.beta_se, log["beta_se"], rtol=1e-5)
    # beta is ~1e-17 here (a standardised phenotype): compare on the scale of se
    np.testing.assert_allclose(
        model.beta, log["beta"], rtol=1e-5, atol=1e-5 * float(log["beta_se"].min())
    )


def compare_scan(ours: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert list(ours.columns) == list(ref.columns)
    assert len(ours) == len(ref)
    assert (ours["rs"].to_numpy() == ref["rs"].to_numpy()).all()
    assert (ours["chr"].astype(str).to_numpy() == ref["chr"].to_numpy()).all()
    assert (ours["ps"].to_numpy() == ref["ps"].to_numpy()).all()
    assert (ours["n_miss"].to_numpy() == ref["n_miss"].to_numpy()).all()
    assert (ours["allele1"].to_numpy() == ref["allele1"].to_numpy()).all()
    np.testing.assert_allclose(ours["af"], ref["af"], rtol=0, atol=0.0005 + 1e-12)
    for p in ("p_wald", "p_lrt", "p_score"):
        d = np.abs(np.log10(ours[p].to_numpy()) - np.log10(ref[p].to_numpy()))
        assert d.max() <= 1e-4, (p, d.max(), ref["rs"][int(d.argmax())])
    for col in ("se", "logl_H1"):
        np.testing.assert_allclose(ours[col], ref[col], rtol=1e-5, err_msg=col)
    dbeta = np.abs(ours["beta"] - ref["beta"]) / ref["se"]
    assert dbeta.max() <= 1e-4, dbeta.max()
    for col in ("l_remle", "l_mle"):
        big = ref[col].to_numpy() > 1e-3
        np.testing.assert_allclose(ours[col][big], ref[col][big], rtol=1e-3, err_msg=col)


@pytest.fixture(scope="module")
def mouse_k_text(mouse_gk):
    """The centred kinship as GEMMA's -lmm reads it back from its text file."""
    return round_sig10(mouse_gk["centered"])


def test_null_and_scan_phenotype_1(mouse_plink, mouse_k_text):
    log = read_log(GEMMA / "mouse_lmm4_n1.log.txt")
    y = mouse_plink.phenotype
    model = lmmscan.fit_null(y, kinship=mouse_k_text)
    compare_null(model, log)
    report = lmmscan.ScanReport()
    table = lmmscan.scan(mouse_plink, null_model=model, test="all", report=report)
    assert report.filters.total == log["n_snps_total"]
    assert report.filters.kept == log["n_snps_analyzed"] == 10768
    compare_scan(table, read_assoc(GEMMA / "mouse_lmm4_n1.assoc.txt.gz"))


def test_null_and_scan_phenotype_6(mouse_plink, mouse_k_text):
    """Another .fam phenotype column, with different missingness (360 missing)."""
    log = read_log(GEMMA / "mouse_lmm4_n6.log.txt")
    y = lmmscan.plink.parse_phenotype(mouse_plink._fam_raw[10], minus9_missing=True)
    model = lmmscan.fit_null(y, kinship=mouse_k_text)
    compare_null(model, log)
    table = lmmscan.scan(mouse_plink, null_model=model, test="all")
    compare_scan(table, read_assoc(GEMMA / "mouse_lmm4_n6.assoc.txt.gz"))
