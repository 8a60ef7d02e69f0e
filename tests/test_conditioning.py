"""Ill-conditioned covariates and phenotypes (found by an adversarial run
against GEMMA 0.98.5, which prints NaN or wrong numbers on them).

The fit works from weighted Gram products, which square a condition number:
adding 1e7 to y, or to a covariate beside the intercept, moved p-values by up
to 10^0.5 (exit 0, no warning), though every test depends on y only through
its part off the covariates' span and on the covariates only through that
span.  Such inputs are now fitted through an orthogonal basis of the span and
y's residual on it (lmmscan.model.CONDITION_LIMIT).  Covariates whose scales
differ by 1e8 gave the intercept beta = se = 0 (a pivot taken as zero), and a
phenotype the covariates explain exactly gave negative variances.

Tolerances: y + 1e7 keeps y's residual to about 1e7 x eps = 2e-9 of its spread
(the offset's rounding), so p-values agree to ~1e-8 relative; 1e-6 in log10 p
leaves a margin of 100 while the unconditioned fit missed by 0.5.
"""

from __future__ import annotations

import numpy as np
import pytest

import lmmscan
from lmmscan import InputError
from lmmscan.cli import main

N, SNPS = 150, 40


@pytest.fixture(scope="module")
def study():
    rng = np.random.default_rng(11)
    X = rng.binomial(2, rng.uniform(0.1, 0.5, 300), (N, 300)).astype(float)
    Xc = X - X.mean(axis=0)
    K = Xc @ Xc.T / X.shape[1]
    x = rng.normal(size=N)
    G = X[:, :SNPS]
    y = (
        0.5 * x
        + 0.3 * (G[:, 3] - G[:, 3].mean())
        + rng.multivariate_normal(np.zeros(N), K + np.eye(N))
    )
    return G, K, x, y


def p_values(G, K, y, cov):
    table = lmmscan.scan(lmmscan.ArrayGenotypes(G), y, kinship=K, covariates=cov, test="all")
    return table[["p_wald", "p_lrt", "p_score"]].to_numpy()


def test_a_phenotype_offset_changes_nothing(study):
    G, K, x, y = study
    base = p_values(G, K, y, x[:, None])
    shifted = p_values(G, K, y + 1e7, x[:, None])
    np.testing.assert_allclose(np.log10(shifted), np.log10(base), rtol=0, atol=1e-6)
    null, moved = (
        lmmscan.fit_null(y, x[:, None], kinship=K),
        lmmscan.fit_null(y + 1e7, x[:, None], kinship=K),
    )
    assert moved.conditioned is not None and null.conditioned is None
    np.testing.assert_allclose(moved.lambda_, null.lambda_, rtol=1e-8)
    np.testing.assert_allclose(moved.beta, null.beta + [0.0, 1e7], rtol=1e-8)
    np.testing.assert_allclose(moved.beta_se, null.beta_se, rtol=1e-6)
    np.testing.assert_allclose(moved.residuals(), null.residuals(), rtol=0, atol=1e-6)


def test_a_covariate_offset_beside_the_intercept_changes_nothing(study):
    G, K, x, y = study
    base = p_values(G, K, y, np.column_stack([np.ones(N), x]))
    shifted = p_values(G, K, y, np.column_stack([np.ones(N), x + 1e7]))
    np.testing.assert_allclose(np.log10(shifted), np.log10(base), rtol=0, atol=1e-6)
    null = lmmscan.fit_null(y, np.column_stack([np.ones(N), x]), kinship=K)
    moved = lmmscan.fit_null(y, np.column_stack([np.ones(N), x + 1e7]), kinship=K)
    np.testing.assert_allclose(moved.beta[1], null.beta[1], rtol=1e-6)
    np.testing.assert_allclose(moved.beta[0], null.beta[0] - 1e7 * moved.beta[1], rtol=1e-12)
    np.testing.assert_allclose(moved.beta_se[1], null.beta_se[1], rtol=1e-6)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_covariates_of_very_different_scales_keep_their_coefficients(study, method):
    """[1, x * 1e8]: its beta is beta(x) / 1e8; the intercept's was 0 +- 0."""
    _, K, x, y = study
    null = lmmscan.fit_null(y, np.column_stack([np.ones(N), x]), kinship=K, method=method)
    scaled = lmmscan.fit_null(y, np.column_stack([np.ones(N), x * 1e8]), kinship=K, method=method)
    np.testing.assert_allclose(scaled.beta, null.beta * [1.0, 1e-8], rtol=1e-9)
    np.testing.assert_allclose(scaled.beta_se, null.beta_se * [1.0, 1e-8], rtol=1e-9)


def test_a_phenotype_the_covariates_explain_exactly_is_refused(study, tmp_path, capsys):
    G, K, x, _ = study
    with pytest.raises(InputError, match=r"the covariates explain y exactly .* no variance"):
        lmmscan.fit_null(2.0 * x + 1.0, x[:, None], kinship=K)
    np.savetxt(tmp_path / "K.txt", K)
    np.savetxt(tmp_path / "y.txt", 2.0 * x + 1.0)
    np.savetxt(tmp_path / "c.txt", np.column_stack([np.ones(N), x]))
    bed = tmp_path / "g"
    from bed_reader import to_bed

    to_bed(f"{bed}.bed", np.ascontiguousarray(G))
    for extra in ([], ["--loco"]):
        kin = [] if extra else ["--kinship", tmp_path / "K.txt"]
        argv = ["scan", "--bfile", bed, *kin, "--pheno", tmp_path / "y.txt", "--covar",
                tmp_path / "c.txt", "--out", tmp_path / "o", "--quiet", *extra]  # fmt: skip
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "the covariates explain y exactly" in err
    assert not list(tmp_path.glob("o.*"))


def test_ordinary_inputs_go_in_as_given(study):
    """So their tables stay GEMMA's bit for bit (the reference tests)."""
    _, K, x, y = study
    assert lmmscan.fit_null(y, np.column_stack([x, x**2]), kinship=K).conditioned is None
    assert lmmscan.fit_null(y * 1e9 + 5e9, kinship=K).conditioned is None


@pytest.mark.parametrize("how", ["loco", "fixed lambda"])
def test_loco_and_the_fixed_lambda_scan_too(study, how):
    """LOCO fits a null model per chromosome, --lambda null whitens: both on
    the conditioned inputs."""
    import pandas as pd

    G, K, x, y = study
    snps = pd.DataFrame({"chr": ["1"] * 20 + ["2"] * 20, "rs": [f"s{j}" for j in range(SNPS)],
                         "ps": np.arange(SNPS) + 1, "allele1": ["A"] * SNPS,
                         "allele0": ["G"] * SNPS})  # fmt: skip
    source = lmmscan.ArrayGenotypes(np.ascontiguousarray(G), snps=snps)

    def p(yy):
        if how == "loco":
            table = lmmscan.loco_scan(source, yy, x[:, None], test="all")
        else:
            table = lmmscan.scan(source, yy, kinship=K, covariates=x[:, None], test="wald",
                                 lambda_mode="null")  # fmt: skip
        return table.filter(like="p_").to_numpy()

    np.testing.assert_allclose(np.log10(p(y + 1e7)), np.log10(p(y)), rtol=0, atol=1e-6)


def test_the_model_helpers_work_in_the_conditioned_basis(study):
    """A review found the helpers still solving with the ill-conditioned W:
    the posterior mean 8% from beta, lme4's log-likelihood off by 0.06."""
    _, K, x, y = study
    plain = lmmscan.fit_null(y, np.column_stack([np.ones(N), x]), kinship=K)
    moved = lmmscan.fit_null(y, np.column_stack([np.ones(N), x + 1e7]), kinship=K)
    assert moved.conditioned is not None
    mean, cov = moved.fixed_effects_posterior()
    np.testing.assert_allclose(mean, moved.beta, rtol=1e-8)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), moved.beta_se, rtol=1e-8)
    np.testing.assert_allclose(moved.loglik, plain.loglik, rtol=1e-10)  # det T = 1
    np.testing.assert_allclose(
        moved.random_effects().to_numpy(), plain.random_effects().to_numpy(), rtol=1e-6
    )


def test_a_group_model_at_a_zero_variance_is_conditioned_too(study):
    """lambda = 0 (no group effect) recomputes beta and ve: it did so from the
    original W and y (ve 3% off at y + 1e7, 0 at y + 1e9)."""
    _, _, x, _ = study
    rng = np.random.default_rng(3)
    y = 0.5 * x + rng.normal(size=N)
    groups = np.repeat(np.arange(15), N // 15)
    plain = lmmscan.fit_null(y, x[:, None], groups=groups)
    assert plain.vg == 0.0
    for off in (1e7, 1e9):
        moved = lmmscan.fit_null(y + off, x[:, None], groups=groups)
        assert moved.vg == 0.0 and moved.conditioned is not None
        np.testing.assert_allclose(moved.ve, plain.ve, rtol=1e-6)
        # y + 1e9 is y to 1e9 eps = 2e-7: beta(x) to ~1e-7
        np.testing.assert_allclose(moved.beta, plain.beta + [0.0, off], rtol=1e-6)
        np.testing.assert_allclose(moved.beta_se, plain.beta_se, rtol=1e-6)


def test_the_exact_fit_check_is_scale_free_and_spares_real_offsets(study):
    from lmmscan.model import check_varies

    _, K, x, y = study
    W = np.column_stack([np.ones(N), x])
    for scale in (1e160, 1e-170):  # the norms overflowed and underflowed
        check_varies(y * scale, "y", W)
    lmmscan.fit_null(y + 1e11, x[:, None], kinship=K)  # five digits of y left: fitted
    with pytest.raises(InputError, match="explain y exactly"):
        check_varies((2 * x + 1) * 1e-170, "y", W)


def test_a_byte_that_is_not_utf8_before_a_tab_is_named():
    from lmmscan.variants import TextColumn, VariantTable, unprintable_field

    rs = TextColumn(np.frombuffer(b"a\n\xff\tb\n", dtype=np.uint8), np.array([0, 2, 6]))
    text = {name: TextColumn.from_strings([v, v]) for name, v in
            (("chr", "1"), ("allele1", "A"), ("allele0", "G"))}  # fmt: skip
    table = VariantTable({**text, "rs": rs}, np.array([1, 2]))
    assert "its ID '\\udcff\\tb' holds a tab" in unprintable_field(table)


@pytest.mark.parametrize("precision", ["double", "single"])
def test_a_dosage_constant_to_rounding_is_untestable_with_the_intercept_alone(study, precision):
    """With the intercept as the only covariate GEMMA's r2 filter does not run,
    and nothing else looked: dosages of 1 +- 1e-9 got p = 0.998 (the SNP's own
    answer is 0.624; GEMMA prints NaN).  Such a SNP is now NaN, marked
    collinear; one at 1 +- 1e-3 keeps its numbers (1 - R^2 = 6e-9)."""
    _, K, _, y = study
    rng = np.random.default_rng(8)
    G = rng.binomial(2, 0.4, (N, 4)).astype(float)
    for j, eps in ((1, 1e-9), (2, 1e-6), (3, 1e-3)):
        G[:, j] = 1.0
        G[7, j] += eps
    table = lmmscan.scan(lmmscan.ArrayGenotypes(G), y, kinship=K, test="all",
                         precision=precision)  # fmt: skip
    p = table[["p_wald", "p_lrt", "p_score"]].to_numpy()
    assert np.isfinite(p[[0, 3]]).all() and np.isnan(p[[1, 2]]).all()
    from lmmscan.pvalues import untestable_reasons

    assert untestable_reasons(table) == {"collinear": 2}


def test_large_offsets_keep_the_digits_left_after_them(study):
    """A review found the residual's error growing with the offset (3.2e-5 in
    log10 p at y + 1e11): the median is now taken off along the intercept
    first, exactly for the entries near it.  y and x are rounded to 2^-16 so
    that y + 1e11 and x + 1e9 hold them exactly (x + 1e10 is refused: beside
    the intercept it is collinear to 1e-10)."""
    G, K, x, y = study
    y, x = np.round(y * 2**16) / 2**16, np.round(x * 2**16) / 2**16
    base = p_values(G, K, y, x[:, None])
    for yy, xx in ((y + 1e11, x), (y, x + 1e9), (y + 1e11, x + 1e9)):
        assert (yy - (yy - y)[0] == y).all() and (xx - (xx - x)[0] == x).all()  # exact offsets
        moved = p_values(G, K, yy, np.column_stack([np.ones(N), xx]))
        np.testing.assert_allclose(np.log10(moved), np.log10(base), rtol=0, atol=1e-9)


def test_a_covariate_scaled_past_1e30_is_conditioned(study):
    """x * 1e100 (no offset) put lambda on its bound and p off by 10^1.2:
    its scale, not its direction, was past what the products mix."""
    G, K, x, y = study
    base = p_values(G, K, y, x[:, None])
    for scale in (1e100, 1e-100):
        null = lmmscan.fit_null(y, (x * scale)[:, None], kinship=K)
        assert null.conditioned is not None
        moved = p_values(G, K, y, (x * scale)[:, None])
        np.testing.assert_allclose(np.log10(moved), np.log10(base), rtol=0, atol=1e-8)


def test_the_r2_filter_sees_the_span_not_the_offset(study):
    """The r2 filter solved with W'W: a covariate near SNP 5 (R^2 0.9997, kept)
    plus 1e7 dropped the SNP, plus 3e9 raised LinAlgError."""
    G, K, _, y = study
    rng = np.random.default_rng(9)
    c = G[:, 5] + rng.normal(scale=0.02, size=N)
    tables = [
        lmmscan.scan(
            lmmscan.ArrayGenotypes(G), y, kinship=K, covariates=(c + off)[:, None], test="wald"
        )  # fmt: skip
        for off in (0.0, 1e7, 3e9)
    ]
    assert "snp6" in set(tables[0]["rs"])  # 1-based names: SNP 5
    for t in tables[1:]:
        assert list(t["rs"]) == list(tables[0]["rs"])
        np.testing.assert_allclose(np.log10(t["p_wald"]), np.log10(tables[0]["p_wald"]),
                                   rtol=0, atol=1e-6)  # fmt: skip


def test_standard_errors_of_extreme_phenotypes_stay_finite(study):
    """The conditioned beta_se came from a variance in y's units squared:
    inf at y * 1e160 + 1e168, 0 at y * 1e-200 + 1e-192."""
    _, K, x, y = study
    for sc, off in ((1e160, 1e168), (1e-200, 1e-192)):
        plain = lmmscan.fit_null(y * sc, x[:, None], kinship=K)
        moved = lmmscan.fit_null(y * sc + off, x[:, None], kinship=K)
        assert moved.conditioned is not None
        np.testing.assert_allclose(moved.beta_se, plain.beta_se, rtol=1e-6)
        np.testing.assert_allclose(moved.beta[0], plain.beta[0], rtol=1e-6)  # x (intercept last)
