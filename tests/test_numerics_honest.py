"""Numerical honesty (issue 14): inputs on which the arithmetic used to give a
silent wrong answer now give the right one, a warning, or a one-line refusal.
docs/edge-cases.md ("Numerical honesty") lists them; one test per row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lmmscan
from lmmscan.cli import main
from lmmscan.demo import copy_study
from lmmscan.output import format_p
from lmmscan.pvalues import neg_log10_p, untestable_reasons


@pytest.fixture(scope="module")
def study():
    rng = np.random.default_rng(7)
    n, p = 80, 150
    G = rng.binomial(2, rng.uniform(0.1, 0.5, p), size=(n, p)).astype(float)
    K = lmmscan.kinship(G)
    y = G[:, :4].sum(axis=1) * 0.3 + rng.normal(size=n)
    return G, K, y


@pytest.fixture()
def demo(tmp_path) -> Path:
    return copy_study(tmp_path / "in")


def call(argv, capsys) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def demo_kinship(demo: Path, tmp_path: Path, capsys) -> np.ndarray:
    path = tmp_path / "K.txt"
    argv = ["kinship", "--bfile", demo, "--pheno", f"{demo}.pheno.txt", "--out", path, "--quiet"]
    assert call(argv, capsys)[0] == 0
    return np.loadtxt(path)


# ------------------------------------------------------------------ 1. kinship not PSD


@pytest.mark.parametrize("kind", ["minus_K", "minus_I"])
def test_negative_definite_kinship_is_refused_not_turned_into_least_squares(study, kind):
    G, K, y = study
    bad = -K if kind == "minus_K" else -np.eye(len(y))
    with pytest.raises(lmmscan.InputError, match="kinship is not positive semi-definite") as e:
        lmmscan.scan(G, y, kinship=bad)
    assert "most negative eigenvalue" in str(e.value) and "rounding" in str(e.value)


@pytest.mark.parametrize("digits", [10, 6])
def test_rounding_negatives_of_a_text_kinship_are_accepted(study, digits):
    """A low-rank kinship written with 10 digits (GEMMA) or 6 (plink2's
    --make-rel, %g) has eigenvalues of about -1e-10 or -1e-6 after centring:
    rounding, zeroed as GEMMA does (the 6-digit one was refused: helper 56)."""
    G, _, y = study
    K = lmmscan.kinship(G[:, :20])
    Kr = np.vectorize(lambda v: float(f"{v:.{digits}g}"))(K)
    assert np.linalg.eigvalsh(Kr).min() < 0
    lmmscan.fit_null(y, kinship=Kr)


def test_a_structured_kinship_with_a_real_negative_eigenvalue_is_refused():
    """Review (helper 57): a tolerance in n x the largest eigenvalue grows as
    n^2 in a structured sample (its largest eigenvalue is about n times an
    entry), which let a pairwise-complete GRM's -0.45 through.  It is in n x
    the largest entry: rounding of 6 digits, not a negative eigenvalue of
    -0.3 beside one of 3,001."""
    n = 300
    rng = np.random.default_rng(2)
    u = np.where(np.arange(n) < n // 2, 1.0, -1.0) / np.sqrt(n)  # two populations
    w = rng.normal(size=n)
    w -= w.mean()
    w -= (w @ u) * u
    w /= np.linalg.norm(w)
    K = np.eye(n) + 3000.0 * np.outer(u, u) - 1.3 * np.outer(w, w)
    assert np.linalg.eigvalsh(K).max() > 3000 and np.abs(K).max() < 12
    y = rng.normal(size=n)
    with pytest.raises(lmmscan.InputError, match="largest \\|entry\\|"):
        lmmscan.fit_null(y, kinship=K)


def test_negative_kinship_file_is_refused_with_its_name(demo, tmp_path, capsys):
    K = demo_kinship(demo, tmp_path, capsys)
    bad = tmp_path / "neg.txt"
    np.savetxt(bad, -K, fmt="%.10g", delimiter="\t")
    inputs = ["--bfile", demo, "--pheno", f"{demo}.pheno.txt", "--kinship", bad, "--quiet"]
    for command, out in (("scan", tmp_path / "r"), ("eigen", tmp_path / "e.npz")):
        status, _, err = call([command, *inputs, "--out", out], capsys)
        assert status == 2
        assert len(err.strip().splitlines()) == 1
        assert err.startswith(f"lmmscan {command}: error: {bad}: ")
        assert "kinship is not positive semi-definite" in err
    assert not (tmp_path / "e.npz").exists()


# ------------------------------------------------------------------ 2. lambda on a bound


def test_lambda_on_its_search_bound_is_a_warning(study):
    G, K, _ = study
    rng = np.random.default_rng(1)
    y = G @ rng.normal(size=G.shape[1]) * 0.1 + rng.normal(size=G.shape[0])  # polygenic
    assert lmmscan.fit_null(y, kinship=K).warnings == []
    m = lmmscan.fit_null(y, kinship=K * 1e6)
    assert m.lambda_reml == 1e-5  # GEMMA's number is kept ...
    assert any("lower bound" in w and "REML" in w for w in m.warnings)  # ... and said
    m = lmmscan.fit_null(y, kinship=K * 1e-14)
    assert any("every eigenvalue" in w for w in m.warnings)
    # a kinship of equal entries centres to zero: said so, not "scaled down" alone
    m = lmmscan.fit_null(y, kinship=np.full_like(K, 0.5))
    assert any("entries are all equal centres to zero" in w for w in m.warnings)
    # an identity kinship: the likelihood hardly depends on lambda (helper 56: the
    # summary said the kinship "explains almost all of the variance")
    m = lmmscan.fit_null(y, kinship=np.eye(len(y)))
    bound = [w for w in m.warnings if "bound" in w]
    assert bound and all("nonzero eigenvalues are all equal" in w for w in bound), m.warnings
    # households of equal size: equal nonzero eigenvalues too, but lambda is the
    # data's (reviews, helpers 57 and 58), dense or as groups
    households = np.arange(len(y)) // 4
    y_h = np.random.default_rng(5).normal(size=households.max() + 1)[households]
    y_h = y_h + 1e-6 * np.random.default_rng(6).normal(size=len(y))
    D = (households[:, None] == households[None, :]).astype(float)
    for fit in (
        lmmscan.fit_null(y_h, kinship=D, center=False),
        lmmscan.fit_null(y_h, groups=households),
    ):
        assert not any("all equal" in w for w in fit.warnings), fit.warnings


def test_lambda_on_its_bound_is_warned_in_summary_and_null_json(demo, tmp_path, capsys):
    K = demo_kinship(demo, tmp_path, capsys)
    big = tmp_path / "big.txt"
    np.savetxt(big, K * 1e6, fmt="%.10g", delimiter="\t")
    out = tmp_path / "r"
    status, stdout, _ = call(
        ["scan", "--bfile", demo, "--pheno", f"{demo}.pheno.txt", "--kinship", big,
         "--out", out],
        capsys,
    )  # fmt: skip
    assert status == 0
    data = json.loads(Path(f"{out}.null.json").read_text())
    assert any("bound" in w for w in data["warnings"])
    assert "warning: lambda (REML)" in stdout


# ------------------------------------------------------------------ 3. units and overflow


@pytest.mark.parametrize("scale", [1e200, 1e-200])
def test_phenotype_units_near_overflow_do_not_change_the_tests(study, scale):
    G, K, y = study
    a = lmmscan.scan(G, y, kinship=K, test="all")
    b = lmmscan.scan(G, y * scale, kinship=K, test="all")
    for col in ("p_wald", "p_lrt", "p_score", "l_remle", "l_mle"):
        np.testing.assert_allclose(b[col], a[col], rtol=1e-9, err_msg=col)
    np.testing.assert_allclose(b.beta / scale, a.beta, rtol=1e-9)
    np.testing.assert_allclose(b.se / scale, a.se, rtol=1e-9)
    # logl shifts by -n log(scale) (ML; -lmm 4 prints the ML value)
    np.testing.assert_allclose(b.logl_H1 + len(y) * np.log(scale), a.logl_H1, rtol=1e-9)


def test_ordinary_phenotype_is_not_rescaled(study):
    """Tables stay GEMMA's bit for bit: y inside [2^-256, 2^256] goes in as given."""
    G, K, y = study
    assert lmmscan.fit_null(y, kinship=K).y_scale == 1.0
    assert lmmscan.fit_null(y * 1e200, kinship=K).y_scale != 1.0


def test_one_phenotype_value_of_1e308_gives_numbers_not_nan(study):
    G, K, y = study
    y = y.copy()
    y[3] = 1e308
    t = lmmscan.scan(G, y, kinship=K, test="all")
    assert np.isfinite(t[["se", "p_wald", "p_lrt", "p_score"]]).all().all()


def test_kinship_with_entries_whose_squares_overflow_is_refused(study):
    G, _, y = study
    K = np.diag(np.full(len(y), 1e308))
    with pytest.raises(lmmscan.InputError, match="kinship has an entry of magnitude 1e"):
        lmmscan.scan(G, y, kinship=K)


def test_covariate_whose_squares_overflow_is_refused(study):
    G, K, y = study
    cov = np.column_stack([np.where(np.arange(len(y)) % 2, 1e200, 3e199)])
    with pytest.raises(lmmscan.InputError, match="covariates column 1 has a value"):
        lmmscan.fit_null(y, cov, kinship=K)


def test_genotype_value_whose_square_overflows_is_refused(study):
    G, K, y = study
    G = G.copy()
    G[5, 7] = 1e200
    with pytest.raises(lmmscan.InputError, match="1e.200.*square overflows"):
        lmmscan.scan(G, y, kinship=K, maf=None)


# ------------------------------------------------------------------ 4. untestable SNPs


def near_fit_study(seed: int):
    """300 samples x 40 SNPs and their kinship, for phenotypes that are a SNP
    plus noise at rounding's scale."""
    rng = np.random.default_rng(seed)
    G = rng.binomial(2, rng.uniform(0.1, 0.5, 40), size=(300, 40)).astype(float)
    return rng, G, lmmscan.kinship(G)


def test_snp_that_fits_the_phenotype_exactly_has_a_reason_beside_its_lrt():
    rng, G, K = near_fit_study(7)
    n = G.shape[0]
    failed = 0
    for j in range(5):
        y = G[:, j] + 1e-12 * rng.normal(size=n)
        t = lmmscan.scan(G, y, kinship=K, test="all")
        row = t.iloc[j]
        if np.isnan(row.se):  # y'Py given the SNP came out <= 0
            failed += 1
            assert np.isnan(row.p_wald)
            assert untestable_reasons(t)["exact_fit"] == 1
        else:
            assert untestable_reasons(t) == {}
    assert failed  # 4 of the 5 with this seed


def test_an_lrt_table_does_not_call_a_snp_without_a_statistic_collinear():
    """--test lrt has no beta: a SNP whose LRT statistic is not finite (y a
    SNP plus 1e-9 noise) was counted "collinear" (not in the covariates'
    span), where --test all says exact_fit and no_statistic."""
    rng, G, K = near_fit_study(8)
    n = G.shape[0]
    seen = 0
    for j in range(20):  # which SNPs lose their statistic is rounding's: 20 make some certain
        y = G[:, j] + 1e-10 * rng.normal(size=n)
        stats: dict = {}
        lrt = lmmscan.scan(G, y, kinship=K, test="lrt", statistics=stats)
        every = lmmscan.scan(G, y, kinship=K, test="all")
        assert "collinear" not in untestable_reasons(lrt, stats)
        expected = untestable_reasons(every).get("no_statistic", 0)
        assert untestable_reasons(lrt, stats).get("no_statistic", 0) == expected
        seen += expected
    assert seen  # 6 of the 20 here


@pytest.mark.parametrize("lambda_mode", ["per-snp", "null"])
@pytest.mark.parametrize("test", ["all", "wald", "lrt", "score"])
def test_snp_identical_to_a_covariate_with_r2_1_is_untestable_not_p_0(study, test, lambda_mode):
    G, K, y = study
    t = lmmscan.scan(
        G, y, kinship=K, covariates=G[:, [10]], r2=1.0, test=test, lambda_mode=lambda_mode
    )
    row = t[t.rs == "snp11"].iloc[0]
    for col in [c for c in t.columns if c.startswith("p_")]:
        assert np.isnan(row[col]), col
    assert untestable_reasons(t) == {"collinear": 1}
    if test == "lrt":  # told by its finite statistic too
        stats: dict = {}
        lmmscan.scan(G, y, kinship=K, covariates=G[:, [10]], r2=1.0, test=test,
                     lambda_mode=lambda_mode, statistics=stats)  # fmt: skip
        assert untestable_reasons(t, stats) == {"collinear": 1}
    others = t[t.rs != "snp11"]
    assert np.isfinite(others[[c for c in t.columns if c.startswith("p_")]]).all().all()


# ------------------------------------------------------------------ 5. never 0 or -0


def test_p_of_one_gives_log10p_0_not_minus_0():
    lp = neg_log10_p(np.array([1.0, 0.5]), None)
    assert not np.signbit(lp[0])
    assert format(lp[0], ".6g") == "0"


def test_a_p_of_0_without_a_logarithm_is_never_printed_as_0():
    p = np.array([0.0, 1e-320, 0.5])
    log10p = np.array([np.inf, 320.0, 0.30103])
    assert format_p(p, log10p, "e") == ["nan", "1.000000e-320", "5.000000e-01"]
    assert format_p(p, log10p, "g", "NA")[0] == "NA"


@pytest.mark.parametrize("fmt", ["gemma", "plink2", "regenie", "gwas-ssf"])
def test_no_format_prints_0_or_minus_0_for_a_p_or_log10p(demo, tmp_path, capsys, fmt):
    """A SNP identical to a covariate, --r2 1, --test all: every p column and
    log10 p column of every format."""
    from bed_reader import open_bed

    with open_bed(f"{demo}.bed") as bed:
        x = bed.read(index=np.s_[:, 5], dtype="float64")[:, 0]
    cov = tmp_path / "cov.txt"
    np.savetxt(cov, np.nan_to_num(x, nan=1.0), fmt="%g")
    out = tmp_path / "r"
    status, _, err = call(
        ["scan", "--bfile", demo, "--pheno", f"{demo}.pheno.txt", "--covar", cov, "--r2", "1",
         "--test", "all", "--format", fmt, "--out", out, "--quiet", "--miss", "1"],
        capsys,
    )  # fmt: skip
    assert status == 0, err
    table = next(p for p in tmp_path.iterdir() if p.name.startswith("r.") and "json" not in p.name)
    lines = table.read_text().splitlines()
    sep = " " if fmt == "regenie" else "\t"
    header = lines[0].split(sep)
    pcols = [i for i, h in enumerate(header) if "p" in h.lower() and "pos" not in h.lower()]
    for line in lines[1:]:
        fields = line.split(sep)
        for i in pcols:
            assert fields[i] not in ("0", "-0") and not fields[i].startswith("0.000000e+00"), (
                header[i],
                line,
            )
            assert not fields[i].startswith("-0"), (header[i], line)
    data = json.loads(Path(f"{out}.null.json").read_text())
    assert all(hit["p"] is None or hit["p"] > 0 for hit in data["results"]["top_hits"])


# ------------------------------------------------------------------ 6. top hits


def test_top_hits_do_not_depend_on_the_block_size_when_p_values_tie(demo, tmp_path, capsys):
    """Duplicate SNPs tie exactly; the first in the file comes first, whatever
    the blocks."""
    from bed_reader import open_bed, to_bed

    with open_bed(f"{demo}.bed") as bed:
        X = bed.read(dtype="float32")
        props = {
            "fid": bed.fid, "iid": bed.iid, "sex": bed.sex, "pheno": bed.pheno,
            "chromosome": bed.chromosome, "sid": bed.sid, "bp_position": bed.bp_position,
            "allele_1": bed.allele_1, "allele_2": bed.allele_2,
        }  # fmt: skip
    reps = 20
    X = np.tile(X[:, :50], reps)
    props["sid"] = np.array([f"s{k}" for k in range(X.shape[1])])
    props["chromosome"] = np.array(["1"] * X.shape[1])
    props["bp_position"] = np.arange(1, X.shape[1] + 1)
    props["allele_1"] = props["allele_1"][:50].repeat(1)[np.arange(X.shape[1]) % 50]
    props["allele_2"] = props["allele_2"][:50][np.arange(X.shape[1]) % 50]
    prefix = tmp_path / "dup"
    to_bed(f"{prefix}.bed", X, properties=props)
    hits = []
    for block in (7, 64, 1000):
        out = tmp_path / f"r{block}"
        argv = ["scan", "--bfile", prefix, "--pheno", f"{demo}.pheno.txt", "--out", out,
                "--block-size", block, "--quiet"]  # fmt: skip
        assert call(argv, capsys)[0] == 0
        data = json.loads(Path(f"{out}.null.json").read_text())
        hits.append([h["rs"] for h in data["results"]["top_hits"]])
    assert hits[0] == hits[1] == hits[2]
    best = hits[0][0]
    assert hits[0][: min(reps, 10)] == [f"s{int(best[1:]) % 50 + 50 * k}" for k in range(10)]
