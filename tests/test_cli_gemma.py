"""The lmmscan command line against GEMMA 0.98.5 (fixtures: tests/data/gemma/,
made by make_reference.sh with Debian's gemma).

Kinships are computed by ``lmmscan kinship`` from all SNPs and compared with
GEMMA's; scans then use them through ``--kinship`` (as GEMMA's -k reads its
-gk output).  PLINK scans test the first SUBSET SNPs of a copy of the
fileset (the API test covers every SNP); BIMBAM and BXD are scanned whole.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmmscan.cli import main

from .conftest import DATA, GEMMA
from .gemma_files import read_kinship_sample, read_log

SUBSET = 1500
NUMERIC = ("beta", "se", "logl_H1", "l_remle", "l_mle", "p_wald", "p_lrt", "p_score")
DEVIATIONS: dict[str, float] = {}  # worst deviation per column over the module (printed)


def run(argv: list[str], capsys=None) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    if capsys is None:
        return status, "", ""
    out, err = capsys.readouterr()
    return status, out, err


def subset_bfile(src: Path, dst: Path, k: int) -> Path:
    """The first k SNPs of a PLINK fileset (SNP-major .bed: byte slices)."""
    fam = Path(f"{src}.fam").read_text()
    n = len(fam.splitlines())
    per_snp = (n + 3) // 4
    Path(f"{dst}.fam").write_text(fam)
    bim = Path(f"{src}.bim").read_text().splitlines(keepends=True)
    Path(f"{dst}.bim").write_text("".join(bim[:k]))
    with open(f"{src}.bed", "rb") as fh:
        data = fh.read(3 + k * per_snp)
    Path(f"{dst}.bed").write_bytes(data)
    return dst


def compare_assoc(
    ours: Path, ref: Path, *, rows_of_ref: int | None = None, af_last_digit: bool = False
) -> dict:
    """Token-by-token comparison with GEMMA's text, within the API test's tolerances.

    ``af_last_digit``: af (printed %.3f) may differ by one in its last digit, for
    dosages stored within rounding of GEMMA's (16-bit BGEN), where an allele
    frequency on a rounding tie (0.9375) can print either way."""
    a = pd.read_csv(ours, sep="\t", dtype=str, keep_default_na=False)
    b = pd.read_csv(ref, sep="\t", dtype=str, keep_default_na=False)
    if rows_of_ref is not None:
        b = b[b["rs"].isin(set(a["rs"]))].reset_index(drop=True)
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b) > 0
    exact = ("chr", "rs", "ps", "n_miss", "allele1", "allele0")
    for col in exact if af_last_digit else (*exact, "af"):
        diff = np.flatnonzero(a[col].to_numpy() != b[col].to_numpy())
        assert diff.size == 0, (col, a[col][diff[0]], b[col][diff[0]])
    if af_last_digit:
        d = np.abs(a["af"].astype(float).to_numpy() - b["af"].astype(float).to_numpy())
        assert d.max() <= 0.001 + 1e-12, ("af", d.max())
    for col in NUMERIC:
        if col in a:
            assert a[col].str.fullmatch(r"-?\d\.\d{6}e[+-]\d{2,3}|-?nan").all(), col
    x = {c: a[c].astype(float).to_numpy() for c in a.columns if c in NUMERIC}
    y = {c: b[c].astype(float).to_numpy() for c in b.columns if c in NUMERIC}
    # GEMMA's BIMBAM path prints nan where its Newton step leaves the lambda range;
    # lmmscan gives the root (README: where lmmscan differs on purpose)
    for c in y:
        assert np.isfinite(x[c]).all(), c
        gemma_nan = np.isnan(y[c])
        x[c], y[c] = np.where(gemma_nan, 1.0, x[c]), np.where(gemma_nan, 1.0, y[c])
    dev = {}
    for p in ("p_wald", "p_lrt", "p_score"):
        if p in x:
            d = np.abs(np.log10(x[p]) - np.log10(y[p]))
            dev[p] = float(d.max())
            assert dev[p] <= 1e-4, (p, dev[p], b["rs"][int(d.argmax())])
    for col in ("se", "logl_H1"):
        if col in x:
            r = np.abs(x[col] / y[col] - 1)
            dev[col] = float(r.max())
            assert dev[col] <= 1e-5, (col, dev[col])
    if "beta" in x:
        d = np.abs(x["beta"] - y["beta"]) / y["se"]
        dev["beta"] = float(d.max())
        assert dev["beta"] <= 1e-4
    for col in ("l_remle", "l_mle"):
        if col in x:
            big = y[col] > 1e-3
            r = np.abs(x[col][big] / y[col][big] - 1)
            dev[col] = float(r.max()) if r.size else 0.0
            assert dev[col] <= 1e-3, (col, dev[col])
    for k, v in dev.items():
        DEVIATIONS[k] = max(DEVIATIONS.get(k, 0.0), v)
    return dev


def compare_null_json(path: Path, log: dict) -> None:
    got = json.loads(path.read_text())
    assert got["n_analyzed"] == log["n_analyzed"]
    assert got["n_covariates"] == log["n_covariates"]
    assert got["n_snps_total"] > 0
    for ours, key in (
        ("loglik_remle", "loglik_reml"),
        ("loglik_mle", "loglik_ml"),
        ("pve", "pve"),
        ("pve_se", "pve_se"),
        ("vg", "vg"),
        ("ve", "ve"),
    ):
        assert got[ours] == pytest.approx(log[key], rel=1e-5, abs=1e-10), key
    np.testing.assert_allclose(got["beta_se"], log["beta_se"], rtol=1e-5)
    scale = float(np.min(log["beta_se"]))
    np.testing.assert_allclose(got["beta"], log["beta"], rtol=1e-5, atol=1e-5 * scale)
    assert set(got["filters"]) == {"miss", "maf", "monomorphic", "r2"}
    assert set(got["seconds"]) >= {"read", "filter", "rotate", "tests"}


def compare_kinship(K_path: Path, stem: str) -> None:
    if K_path.suffix == ".npy":
        K = np.load(K_path)
    else:
        K = pd.read_csv(K_path, sep="\t", header=None, dtype=np.float64).to_numpy()
    entries, rowsums = read_kinship_sample(GEMMA / stem)
    got = K[entries["i"].to_numpy(), entries["j"].to_numpy()]
    np.testing.assert_allclose(got, entries["value"].to_numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(K.sum(axis=1), rowsums, rtol=0, atol=K.shape[0] * 1e-9)


@pytest.fixture(scope="module")
def work(tmp_path_factory, mouse_dir) -> Path:
    w = tmp_path_factory.mktemp("cli_gemma")
    subset_bfile(mouse_dir / "mouse_hs1940", w / "sub", SUBSET)
    for name in ("mouse_covar.txt", "mouse_pheno_sim.txt"):
        (w / name).write_bytes((GEMMA / name).read_bytes())
    return w


@pytest.fixture(scope="module")
def plink_k(work, mouse_dir) -> Path:
    out = work / "mouse.cXX.txt"
    assert run(["kinship", "--bfile", mouse_dir / "mouse_hs1940", "--out", out, "--quiet"])[0] == 0
    return out


# ------------------------------------------------------------------ kinship


def test_kinship_centered_text_equals_gemma(plink_k):
    text = plink_k.read_text()
    first = text.split("\n", 1)[0].split("\t")
    assert len(first) == 1940 and not text.endswith("\t\n")
    compare_kinship(plink_k, "mouse_gk1")


def test_kinship_standardized_npy_equals_gemma(work, mouse_dir):
    out = work / "mouse.sXX.npy"
    args = [
        "kinship",
        "--bfile",
        mouse_dir / "mouse_hs1940",
        "--method",
        "standardized",
        "--out",
        out,
        "--quiet",
    ]
    assert run(args)[0] == 0
    compare_kinship(out, "mouse_gk2")


# ------------------------------------------------------------------ PLINK scans


@pytest.mark.parametrize("col, ref", [(1, "mouse_lmm4_n1"), (6, "mouse_lmm4_n6")])
def test_scan_bfile_equals_gemma(work, plink_k, col, ref):
    out = work / f"plink_n{col}"
    args = [
        "scan",
        "--bfile",
        work / "sub",
        "--kinship",
        plink_k,
        "--pheno-col",
        col,
        "--test",
        "all",
        "--out",
        out,
        "--quiet",
    ]
    assert run(args)[0] == 0
    compare_assoc(Path(f"{out}.assoc.txt"), GEMMA / f"{ref}.assoc.txt.gz", rows_of_ref=SUBSET)
    log = read_log(GEMMA / f"{ref}.log.txt")
    compare_null_json(Path(f"{out}.null.json"), log)


# ------------------------------------------------------------------ mouse_sim: covariates


@pytest.fixture(scope="module")
def sim_k(work, mouse_dir):
    """GEMMA's -gk with -p/-n/-c per phenotype: the filters use that run's individuals."""
    out = {}
    for k in (1, 2, 3):
        path = work / f"sim{k}.cXX.txt"
        args = [
            "kinship",
            "--bfile",
            mouse_dir / "mouse_hs1940",
            "--pheno",
            work / "mouse_pheno_sim.txt",
            "--pheno-col",
            k,
            "--covar",
            work / "mouse_covar.txt",
            "--out",
            path,
            "--quiet",
        ]
        assert run(args)[0] == 0
        out[k] = path
    return out


@pytest.mark.parametrize("k", [1, 2, 3])
def test_sim_kinship_equals_gemma(sim_k, k):
    compare_kinship(sim_k[k], f"mouse_sim_n{k}_gk1")


@pytest.mark.parametrize("k", [1, 2, 3])
def test_sim_scan_equals_gemma(work, sim_k, k):
    """Covariates (intercept appended), missing phenotypes and covariates; n1 has
    its null lambda at the 1e-5 boundary, n3 a real signal."""
    out = work / f"sim_n{k}"
    args = [
        "scan",
        "--bfile",
        work / "sub",
        "--pheno",
        work / "mouse_pheno_sim.txt",
        "--pheno-col",
        k,
        "--covar",
        work / "mouse_covar.txt",
        "--kinship",
        sim_k[k],
        "--test",
        "all",
        "--out",
        out,
        "--quiet",
    ]
    assert run(args)[0] == 0
    compare_assoc(
        Path(f"{out}.assoc.txt"), GEMMA / f"mouse_sim_n{k}.assoc.txt.gz", rows_of_ref=SUBSET
    )
    log = read_log(GEMMA / f"mouse_sim_n{k}.log.txt")
    compare_null_json(Path(f"{out}.null.json"), log)
    if k == 1:
        null = json.loads(Path(f"{out}.null.json").read_text())
        assert null["lambda_remle"] == pytest.approx(1e-5) == null["lambda_mle"]


# ------------------------------------------------------------------ BIMBAM


def test_bimbam_kinship_and_scan_equal_gemma(work, mouse_dir):
    geno = mouse_dir / "mouse_hs1940.geno.txt.gz"
    pheno = mouse_dir / "mouse_hs1940.pheno.txt"
    anno = mouse_dir / "mouse_hs1940.anno.txt"
    kin = work / "bimbam.cXX.txt"
    args = ["kinship", "--bimbam-geno", geno, "--pheno", pheno, "--out", kin, "--quiet"]
    assert run(args)[0] == 0
    compare_kinship(kin, "mouse_bimbam_gk1")
    out = work / "bimbam"
    args = [
        "scan",
        "--bimbam-geno",
        geno,
        "--bimbam-anno",
        anno,
        "--pheno",
        pheno,
        "--kinship",
        kin,
        "--test",
        "all",
        "--out",
        out,
        "--quiet",
    ]
    assert run(args)[0] == 0
    compare_assoc(Path(f"{out}.assoc.txt"), GEMMA / "mouse_bimbam_lmm4.assoc.txt.gz")
    compare_null_json(Path(f"{out}.null.json"), read_log(GEMMA / "mouse_bimbam_lmm4.log.txt"))


def test_bxd_equals_gemma(work):
    """BIMBAM without annotation (chr/ps -9), covariates with a trailing tab, -maf 0.1,
    GEMMA's own gzipped kinship text read back with --kinship."""
    bxd = DATA / "bxd"
    kin = work / "bxd.cXX.txt"
    common = [
        "--bimbam-geno",
        bxd / "BXD_geno.txt.gz",
        "--pheno",
        bxd / "BXD_pheno.txt",
        "--covar",
        bxd / "BXD_covariates2.txt",
        "--quiet",
    ]
    assert run(["kinship", *common, "--out", kin])[0] == 0
    ours = pd.read_csv(kin, sep="\t", header=None).to_numpy()
    ref = pd.read_csv(GEMMA / "bxd_gk1.cXX.txt.gz", sep="\t", header=None).to_numpy()
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)
    for name, K in (("ours", kin), ("gemma", GEMMA / "bxd_gk1.cXX.txt.gz")):
        out = work / f"bxd_{name}"
        args = ["scan", *common, "--kinship", K, "--maf", "0.1", "--test", "all", "--out", out]
        assert run(args)[0] == 0
        compare_assoc(Path(f"{out}.assoc.txt"), GEMMA / "bxd_lmm4.assoc.txt.gz")
        compare_null_json(Path(f"{out}.null.json"), read_log(GEMMA / "bxd_lmm4.log.txt"))


def test_demo_study_with_missing_genotypes_equals_gemma(tmp_path):
    """The shipped demo study (1% missing calls, NA phenotypes and covariates) against
    GEMMA's output for it, made by python/lmmscan/data/make_demo.py --gemma."""
    import importlib.resources

    from lmmscan.demo import copy_study

    prefix = copy_study(tmp_path)
    common = ["--bfile", prefix, "--pheno", f"{prefix}.pheno.txt", "--covar",
              f"{prefix}.covar.txt", "--quiet"]  # fmt: skip
    kin = tmp_path / "demo.cXX.txt"
    assert run(["kinship", *common, "--out", kin])[0] == 0
    assert (
        run(["scan", *common, "--kinship", kin, "--test", "all", "--out", tmp_path / "d"])[0] == 0
    )
    data = importlib.resources.files("lmmscan") / "data"
    with importlib.resources.as_file(data / "demo.gemma.assoc.txt.gz") as ref:
        compare_assoc(tmp_path / "d.assoc.txt", ref)
        assert (pd.read_csv(ref, sep="\t")["n_miss"] > 0).sum() > 2000
    with importlib.resources.as_file(data / "demo.gemma.log.txt") as log:
        compare_null_json(tmp_path / "d.null.json", read_log(log))


def test_report_deviations():
    """Print the worst deviation per column seen in this module (run with -s)."""
    print("\nCLI vs GEMMA, worst deviations:", {k: f"{v:.2e}" for k, v in DEVIATIONS.items()})
