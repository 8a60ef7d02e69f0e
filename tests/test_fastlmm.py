"""lmmscan's fixed-lambda mode reproduces FaST-LMM's single_snp p-values.

The reference (tests/data/fastlmm, made by make_reference.py there with
fastlmm 0.6.13) is FaST-LMM's single_snp on mouse_hs1940 with FaST-LMM's own
kinship given as K0, no LOCO.  FaST-LMM fits h2 by REML (its lmm_cov works
in the space orthogonal to the covariates, sigma^2 = r2 / (n - c)) and tests
each SNP with the Wald F(1, n - c - 1) at that h2: by definition lmmscan's
``lambda_mode="null"`` p_wald with lambda = h2 / (1 - h2) on the same K.
The only numerical difference is the two optimisers' tolerance on h2.
FaST-LMM is not needed to run this test.
"""

from __future__ import annotations

import gzip
import importlib.util
import json

import numpy as np
import pandas as pd
import pytest

import lmmscan

from .conftest import DATA

REF = DATA / "fastlmm"


def _reference_module():
    spec = importlib.util.spec_from_file_location(
        "fastlmm_make_reference", REF / "make_reference.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # imports numpy only at module level
    return mod


@pytest.fixture(scope="module")
def mouse_kinship_snps(mouse_dir):
    """The reference's kinship SNPs (every KIN_STEP-th), all 1940 samples, NaN missing."""
    from bed_reader import open_bed

    step = _reference_module().KIN_STEP
    with open_bed(mouse_dir / "mouse_hs1940.bed", count_A1=True) as bed:
        return bed.read(index=np.s_[:, ::step], dtype="float64")


@pytest.mark.parametrize("case", ["pheno1", "sim3_covar"])
def test_fixed_lambda_matches_fastlmm(case, mouse_dir, mouse_plink, mouse_kinship_snps):
    mr = _reference_module()
    meta = json.loads((REF / f"mouse_{case}.json").read_text())
    with gzip.open(REF / f"mouse_{case}.tsv.gz", "rt") as fh:
        ref = pd.read_csv(fh, sep="\t")

    y, cov = mr.case_inputs(case, mouse_dir / "mouse_hs1940.fam")
    keep = ~np.isnan(y)
    if cov is not None:
        keep &= ~np.isnan(cov).any(axis=1)
    assert keep.sum() == meta["n_analysed"]
    assert meta["n_kinship_snps"] == mouse_kinship_snps.shape[1]
    K = mr.fastlmm_kinship(mouse_kinship_snps[keep])  # FaST-LMM's (Unit, Z Z', DiagKtoN)

    null = lmmscan.fit_null(y[keep], None if cov is None else cov[keep], kinship=K)
    assert null.n_covariates == meta["n_covariates_with_intercept"]
    h2 = meta["Nullh2"]
    # Same REML optimum: lambda = h2 / (1 - h2) (optimiser tolerances differ).
    assert null.lambda_reml == pytest.approx(h2 / (1.0 - h2), rel=1e-6)

    n_test = meta["n_test_snps"]
    G = mouse_plink.read(0, n_test, np.flatnonzero(keep))  # lmmscan's reader (A1 counted)
    source = lmmscan.ArrayGenotypes(G, snps=mouse_plink.snps.iloc[:n_test])
    table = lmmscan.scan(
        source, null_model=null, test="wald", lambda_mode="null", maf=None, miss=1.0, r2=1.0
    )
    assert (table["l_remle"] == null.lambda_reml).all()

    merged = ref.merge(table, left_on="sid", right_on="rs", how="left")
    tested = merged["p_wald"].notna().to_numpy()
    # lmmscan drops monomorphic SNPs (GEMMA); FaST-LMM reports them with p = 1, weight 0.
    untested = merged[~tested]
    assert (untested["PValue"] == 1.0).all() and (untested["SnpWeight"] == 0.0).all()
    assert tested.sum() > 0.85 * n_test

    m = merged[tested]
    np.testing.assert_allclose(m["p_wald"], m["PValue"], rtol=1e-5, atol=0)  # seen: 1.6e-6
    # FaST-LMM's weight is the effect of the standardised SNP: beta * sd(x).
    idx = [mouse_plink.snps.index[mouse_plink.snps["rs"] == rs][0] for rs in m["rs"]]
    sd = np.nanstd(G[:, idx], axis=0)
    # (a beta near 0 is compared on the scale of its standard error)
    diff = np.abs(m["beta"] * sd - m["SnpWeight"])
    assert (diff <= 1e-5 * np.abs(m["SnpWeight"]) + 1e-5 * m["SnpWeightSE"]).all()
    np.testing.assert_allclose(m["se"] * sd, m["SnpWeightSE"], rtol=1e-5)
