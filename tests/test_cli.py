"""The lmmscan command line: bad input, help, formats, several phenotypes, demo.

Runs on the small simulated study shipped for ``lmmscan demo`` (400
individuals x 3,000 SNPs), so every case takes well under a second or two.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmscan
from lmmscan import cli
from lmmscan.cli import main
from lmmscan.demo import copy_study


@pytest.fixture()
def study(tmp_path) -> Path:
    """A fresh copy of the demo study; returns its PLINK prefix."""
    return copy_study(tmp_path / "in")


def call(argv, capsys) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def scan_args(prefix: Path, out: Path, *extra) -> list:
    return [
        "scan", "--bfile", prefix, "--pheno", f"{prefix}.pheno.txt",
        "--covar", f"{prefix}.covar.txt", "--out", out, *extra,
    ]  # fmt: skip


def files_in(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()} if d.exists() else set()


# ------------------------------------------------------------------ bad input


def expect_input_error(capsys, argv, outdir: Path, *needles: str) -> str:
    before = files_in(outdir)
    status, out, err = call(argv, capsys)
    assert status == 2, (status, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert files_in(outdir) == before, "an output (or temporary) file was left behind"
    return lines[0]


def test_missing_file(study, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    expect_input_error(
        capsys, scan_args(tmp_path / "nope", out / "r"), out, "nope.fam", "not found"
    )
    args = scan_args(study, out / "r")
    args[args.index("--covar") + 1] = tmp_path / "absent.txt"
    expect_input_error(capsys, args, out, "absent.txt", "not found")


def test_output_directory_missing(study, capsys):
    args = scan_args(study, study.parent / "no" / "such" / "r")
    expect_input_error(capsys, args, study.parent, "no/such", "output directory")


def test_bed_wrong_magic(study, capsys):
    bed = Path(f"{study}.bed")
    bed.write_bytes(b"\x6c\x1b\x00" + bed.read_bytes()[3:])
    expect_input_error(
        capsys, scan_args(study, study.parent / "r"), study.parent, "demo.bed", "magic"
    )


def test_bed_truncated(study, capsys):
    bed = Path(f"{study}.bed")
    bed.write_bytes(bed.read_bytes()[:-10])
    expect_input_error(
        capsys, scan_args(study, study.parent / "r"), study.parent, "demo.bed", "size"
    )


def test_bim_fam_counts_do_not_match_bed(study, capsys):
    bim = Path(f"{study}.bim")
    bim.write_text(bim.read_text() + "3\textra\t0\t60000000\tA\tG\n")
    expect_input_error(
        capsys, scan_args(study, study.parent / "r"), study.parent, "demo.bed", "3001"
    )
    fam = Path(f"{study}.fam")
    bim.write_text("".join(bim.read_text().splitlines(keepends=True)[:-1]))
    # 399 individuals would still fill 100 bytes per SNP: drop 4
    fam.write_text("".join(fam.read_text().splitlines(keepends=True)[:-4]))
    expect_input_error(
        capsys, scan_args(study, study.parent / "r"), study.parent, "demo.bed", "396"
    )


@pytest.mark.parametrize("which", ["pheno", "covar"])
def test_wrong_number_of_rows(study, capsys, which):
    path = Path(f"{study}.{which}.txt")
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-3]))
    expect_input_error(
        capsys, scan_args(study, study.parent / "r"), study.parent, path.name, "397 rows", "400"
    )


@pytest.mark.parametrize("which, line, column", [("pheno", 7, 2), ("covar", 12, 1)])
def test_non_numeric_token(study, capsys, which, line, column):
    path = Path(f"{study}.{which}.txt")
    rows = [r.split("\t") for r in path.read_text().splitlines()]
    rows[line - 1][column - 1] = "abc"
    path.write_text("".join("\t".join(r) + "\n" for r in rows))
    msg = expect_input_error(
        capsys, scan_args(study, study.parent / "r", "--pheno-col", "1,2"), study.parent,
        path.name, f"line {line}", f"column {column}", "'abc'",
    )  # fmt: skip
    assert "is not a number" in msg


def _kinship(study, capsys) -> np.ndarray:
    k = study.parent / "k.npy"
    assert (
        call(["kinship", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--out", k], capsys)[0]
        == 0
    )
    return np.load(k)


def test_kinship_wrong_size_asymmetric_nan(study, capsys):
    K = _kinship(study, capsys)
    d = study.parent
    cases = []
    small = K[:399, :399]
    np.savetxt(d / "small.txt", small, fmt="%.10g", delimiter="\t")
    cases.append((d / "small.txt", ["small.txt", "399 x 399", "400"]))
    asym = K.copy()
    asym[3, 5] += 0.1
    np.save(d / "asym.npy", asym)
    cases.append((d / "asym.npy", ["asym.npy", "not symmetric", "(4, 6)"]))
    nan = K.copy()
    nan[10, 20] = nan[20, 10] = np.nan
    np.savetxt(d / "nan.txt", nan, fmt="%.10g", delimiter="\t")
    cases.append((d / "nan.txt", ["nan.txt", "line 11", "column 21"]))
    ragged = (d / "small.txt").read_text().splitlines(keepends=True)
    ragged[4] = ragged[4].rsplit("\t", 1)[0] + "\n"
    (d / "ragged.txt").write_text("".join(ragged))
    cases.append((d / "ragged.txt", ["ragged.txt", "line 5", "398 values"]))
    for path, needles in cases:
        expect_input_error(capsys, [*scan_args(study, d / "r"), "--kinship", path], d, *needles)


def test_pheno_col_out_of_range(study, capsys):
    args = scan_args(study, study.parent / "r", "--pheno-col", "3")
    expect_input_error(
        capsys, args, study.parent, "demo.pheno.txt", "--pheno-col 3", "out of range"
    )
    # .fam phenotypes: only column 6
    args = ["scan", "--bfile", study, "--pheno-col", "2", "--out", study.parent / "r"]
    expect_input_error(capsys, args, study.parent, "demo.fam", "out of range")
    # quoted as given, not through a float (helper 50: ...567168)
    big = "12345678901234567891"
    args = scan_args(study, study.parent / "r", "--pheno-col", big)
    expect_input_error(capsys, args, study.parent, f"--pheno-col {big} is out of range")


def test_every_phenotype_missing(study, capsys):
    # the .fam phenotype of the demo is -9 for everyone
    args = ["scan", "--bfile", study, "--out", study.parent / "r"]
    expect_input_error(capsys, args, study.parent, "demo.fam", "missing")
    path = Path(f"{study}.pheno.txt")
    path.write_text("NA\t1\n" * 400)
    expect_input_error(capsys, scan_args(study, study.parent / "r"), study.parent, "demo.pheno.txt")


def test_no_snp_left_after_filtering(study, capsys):
    kin = study.parent / "k.txt"
    assert (
        call(["kinship", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--out", kin], capsys)[
            0
        ]
        == 0
    )
    args = [*scan_args(study, study.parent / "r", "--kinship", kin), "--maf", "0.6"]
    expect_input_error(capsys, args, study.parent, "no SNP left")
    args = ["kinship", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--maf", "0.6",
            "--out", study.parent / "k2.txt"]  # fmt: skip
    expect_input_error(capsys, args, study.parent, "no SNP passed")


def test_bimbam_row_with_wrong_number_of_genotypes(tmp_path, capsys):
    geno = tmp_path / "g.txt"
    rng = np.random.default_rng(0)
    lines = [
        f"rs{j}, A, G, " + ", ".join(str(v) for v in rng.integers(0, 3, 30)) for j in range(20)
    ]
    lines[13] += ", 1"
    geno.write_text("\n".join(lines) + "\n")
    (tmp_path / "p.txt").write_text("".join(f"{v}\n" for v in rng.normal(size=30)))
    args = ["scan", "--bimbam-geno", geno, "--pheno", tmp_path / "p.txt", "--out", tmp_path / "r"]
    expect_input_error(capsys, args, tmp_path, "g.txt", "line 14", "31 genotypes", "30")


def test_bad_flags_are_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["scan", "--bfile", "x", "--out", "y", "--pheno-col", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--pheno-col" in err


def test_pheno_col_given_again_adds_its_columns():
    """--pheno-col 1 --pheno-col 2 scanned column 2 only, silently."""
    from lmmscan.cli import build_parser

    parser = build_parser()
    base = ["scan", "--bfile", "x", "--out", "y"]
    again = parser.parse_args([*base, "--pheno-col", "1", "--pheno-col", "3,4"])
    assert again.pheno_col == [1, 3, 4]
    assert parser.parse_args(base).pheno_col == [1]
    assert parser.parse_args([*base, "--pheno-col", "2"]).pheno_col == [2]
    assert parser.parse_args([*base, "--pheno-col", " 1, 3"]).pheno_col == [1, 3]
    for empty in ("1,,3", "1,"):  # an empty field was skipped: 1,3 (helper 68)
        with pytest.raises(SystemExit):
            parser.parse_args([*base, "--pheno-col", empty])


@pytest.mark.parametrize("argv, needle", [
    (["scan", "--pheno-col", "1", "--pheno-col", "1,2"], "named twice across the flags"),
    (["kinship", "--pheno-col", "1", "--pheno-col", "2"], "--pheno-col is given twice"),
])  # fmt: skip
def test_pheno_col_twice_where_it_cannot_be(capsys, argv, needle):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--bfile", "x", "--out", "y"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and needle in err


def test_process_exit_status_and_no_traceback(tmp_path):
    """Through the real entry point: python -m lmmscan."""
    proc = subprocess.run(
        [sys.executable, "-m", "lmmscan", "scan", "--bfile", str(tmp_path / "none"), "--out",
         str(tmp_path / "r")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "none.fam" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert files_in(tmp_path) == set()


def test_process_success_flushes_everything(study):
    """The entry point ends with os._exit (cli.run): the piped summary on stdout
    is complete and the files are whole, as after a normal exit."""
    out = study.parent / "ok"
    proc = subprocess.run(
        [sys.executable, "-m", "lmmscan", *map(str, scan_args(study, out))],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1].startswith("done in")
    assert "seconds:" in proc.stdout
    table = pd.read_csv(f"{out}.assoc.txt", sep="\t")
    assert len(table) > 2000 and table["p_wald"].notna().all()
    assert json.loads(Path(f"{out}.null.json").read_text())["seconds"]["total"] > 0


def test_interrupted_run_leaves_nothing(study, capsys, monkeypatch):
    from lmmscan.engine import BlockScanner

    def interrupt(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(BlockScanner, "test_rotated_with_statistics", interrupt)
    before = files_in(study.parent)
    status, _, err = call(scan_args(study, study.parent / "r"), capsys)
    assert status == 130 and "interrupted" in err
    assert files_in(study.parent) == before


# ------------------------------------------------------------------ help


@pytest.mark.parametrize("command", ["kinship", "scan", "demo"])
def test_help_explains_every_flag_and_default(command, capsys):
    parser = cli.build_parser()
    p = parser._subparsers._group_actions[0].choices[command]
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for action in p._actions:
        if not action.option_strings or "-h" in action.option_strings:
            continue
        assert action.option_strings[0] in text
        assert "default" in action.help.lower() or "required" in action.help.lower(), action


def test_top_level_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for word in ("kinship", "scan", "demo", "-gk", "-lmm"):
        assert word in out


# ------------------------------------------------------------------ runs


def test_summary_and_quiet(study, capsys):
    status, out, err = call(scan_args(study, study.parent / "a"), capsys)
    assert status == 0 and err == ""  # no progress bar: stderr is not a terminal
    for needle in ("individuals analysed: 376 of 400", "SNPs tested: 2940 of 3000", "maf 60",
                   "pve =", "top 10 by p_wald", "lambda_GC =", "snp0500"):  # fmt: skip
        assert needle in out, needle
    status, out, err = call([*scan_args(study, study.parent / "b"), "--quiet"], capsys)
    assert status == 0 and out == "" and err == ""
    assert (
        Path(study.parent / "a.assoc.txt").read_bytes()
        == Path(study.parent / "b.assoc.txt").read_bytes()
    )
    null = json.loads((study.parent / "a.null.json").read_text())
    for key in ("n_analyzed", "n_covariates", "n_snps_total", "n_snps_analyzed", "lambda_remle",
                "lambda_mle", "loglik_remle", "loglik_mle", "pve", "pve_se", "vg", "ve", "beta",
                "beta_se", "filters", "seconds"):  # fmt: skip
        assert key in null
    assert null["n_snps_analyzed"] == 2940 and null["filters"]["maf"] == 60
    assert null["lmmscan"] == lmmscan.__version__  # which lmmscan wrote it
    assert len(null["beta"]) == 3  # sex, age, appended intercept


def test_scan_without_kinship_equals_kinship_first(study, capsys):
    d = study.parent
    kin = d / "k.txt"
    kargs = ["kinship", "--bfile", study, "--pheno", f"{study}.pheno.txt",
             "--covar", f"{study}.covar.txt", "--out", kin]  # fmt: skip
    assert call(kargs, capsys)[0] == 0
    assert call([*scan_args(study, d / "given", "--kinship", kin), "--quiet"], capsys)[0] == 0
    assert call([*scan_args(study, d / "computed"), "--quiet"], capsys)[0] == 0
    a = pd.read_csv(d / "given.assoc.txt", sep="\t")
    b = pd.read_csv(d / "computed.assoc.txt", sep="\t")
    assert (a["rs"] == b["rs"]).all()
    # the text kinship holds 10 significant digits
    np.testing.assert_allclose(a["p_wald"], b["p_wald"], rtol=1e-6)


def test_several_columns_equal_single_runs(study, capsys):
    d = study.parent
    assert call([*scan_args(study, d / "multi", "--pheno-col", "1,2"), "--test", "all",
                 "--quiet"], capsys)[0] == 0  # fmt: skip
    assert not (d / "multi.assoc.txt").exists()
    for k in (1, 2):
        assert call([*scan_args(study, d / f"one{k}", "--pheno-col", k), "--test", "all",
                     "--quiet"], capsys)[0] == 0  # fmt: skip
        assert (d / f"multi.{k}.assoc.txt").read_bytes() == (d / f"one{k}.assoc.txt").read_bytes()
        a = json.loads((d / f"multi.{k}.null.json").read_text())
        b = json.loads((d / f"one{k}.null.json").read_text())
        a.pop("seconds"), b.pop("seconds")
        # the memory plan: one run's estimate and measured peak (two phenotypes
        # at once hold more than one)
        assert a.pop("memory")["estimate_bytes"] >= b.pop("memory")["estimate_bytes"]
        assert a == b


def test_same_individuals_share_one_eigendecomposition(study, capsys, monkeypatch):
    """Columns with the same analysed individuals: one eigendecomposition, one rotation."""
    import lmmscan.spectral
    from lmmscan.cli.scan import load_phenotypes
    from lmmscan.engine import BlockScanner
    from lmmscan.plink import read_plink
    from lmmscan.samples import groups_by_samples

    y = pd.read_csv(f"{study}.pheno.txt", sep="\t", header=None)[0].fillna(0.0).to_numpy()
    pheno = study.parent / "three.txt"
    np.savetxt(pheno, np.column_stack([y, 2 * y + 1, y[::-1]]), fmt="%.10g")
    argv = ["scan", "--bfile", str(study), "--pheno", str(pheno), "--pheno-col", "1,2,3",
            "--out", str(study.parent / "three"), "--quiet"]  # fmt: skip
    phenos = load_phenotypes(cli.build_parser().parse_args(argv), read_plink(study))
    groups = groups_by_samples([ph.analysed.mask for ph in phenos])
    assert len(phenos) == 3 and len(groups) == 1
    counts = {"eigh": 0, "prepare": 0}
    real_eigh = lmmscan.spectral.Spectral.from_kinship.__func__
    real_prepare = BlockScanner._prepare

    def eigh(cls, K, **kwargs):
        counts["eigh"] += 1
        return real_eigh(cls, K, **kwargs)

    def prepare(self, X, report=None):
        counts["prepare"] += 1
        return real_prepare(self, X, report)

    monkeypatch.setattr(lmmscan.spectral.Spectral, "from_kinship", classmethod(eigh))
    monkeypatch.setattr(BlockScanner, "_prepare", prepare)
    assert call(argv, capsys)[0] == 0
    assert counts["eigh"] == 1
    assert counts["prepare"] == 1  # one block of 3,000 SNPs, rotated once for three phenotypes
    nulls = [json.loads((study.parent / f"three.{k}.null.json").read_text()) for k in (1, 2, 3)]
    assert nulls[1]["lambda_remle"] == pytest.approx(nulls[0]["lambda_remle"], rel=1e-6)


@pytest.mark.parametrize("fmt", ["plink2", "regenie", "gwas-ssf"])
def test_other_formats(study, capsys, fmt):
    d = study.parent
    assert call([*scan_args(study, d / "g"), "--quiet"], capsys)[0] == 0
    assert call([*scan_args(study, d / "o", "--format", fmt), "--quiet"], capsys)[0] == 0
    gem = pd.read_csv(d / "g.assoc.txt", sep="\t")
    ext = {"plink2": ".glm.linear", "regenie": ".regenie", "gwas-ssf": ".ssf.tsv"}[fmt]
    sep = " " if fmt == "regenie" else "\t"
    t = pd.read_csv(d / f"o{ext}", sep=sep, keep_default_na=False)
    names = {
        "plink2": ("#CHROM", "POS", "ID", "A1", "OBS_CT", "BETA", "SE", "P", "LOG10_P"),
        "regenie": ("CHROM", "GENPOS", "ID", "ALLELE1", "N", "BETA", "SE", "LOG10P", "P"),
        "gwas-ssf": ("chromosome", "base_pair_location", "effect_allele", "beta",
                     "standard_error", "p_value", "neg_log_10_p_value", "n"),
    }[fmt]  # fmt: skip
    for name in names:
        assert name in t.columns
    p = {"plink2": "P", "regenie": "P", "gwas-ssf": "p_value"}[fmt]
    lp = {"plink2": "LOG10_P", "regenie": "LOG10P", "gwas-ssf": "neg_log_10_p_value"}[fmt]
    n = {"plink2": "OBS_CT", "regenie": "N", "gwas-ssf": "n"}[fmt]
    beta = {"plink2": "BETA", "regenie": "BETA", "gwas-ssf": "beta"}[fmt]
    assert len(t) == len(gem)
    np.testing.assert_allclose(t[p].astype(float), gem["p_wald"], rtol=1e-5)
    np.testing.assert_allclose(t[lp].astype(float), -np.log10(gem["p_wald"]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(t[beta].astype(float), gem["beta"], rtol=1e-5)
    np.testing.assert_array_equal(t[n].astype(int), 376 - gem["n_miss"])


def test_other_formats_follow_their_tools_conventions(study, capsys):
    """Found against plink2 2.00a3.5 and the GWAS Catalog's validator:
    plink2 writes NA, not ".", for a missing value; regenie's CHISQ of a
    collinear SNP (no p-value) was a number, 0 or negative; GWAS-SSF wrote a
    .bim's 25 (XY) as 25 (MT) and 26 (MT) as #NA, and IDs not of the form
    rs<digits> in its rsid column."""
    from lmmscan.plink import read_plink

    bim = Path(f"{study}.bim")
    lines = bim.read_text().splitlines()
    # helper 51: chr01 was written 01 (the validator refuses it), chr25 and chr26
    # (XY, MT) as 25 (MT) and #NA; plink2 and regenie copied chr1 and chrX
    names = ("25", "26", "23", "chr25", "chr26", "chr01", "chrX", "chrM", "07")
    for i, chrom in enumerate(names):
        fields = lines[i].split("\t")
        lines[i] = "\t".join([chrom, "rs123" if i == 2 else fields[1], *fields[2:]])
    bim.write_text("\n".join(lines) + "\n")
    collinear = 10  # a covariate equal to the SNP: beta and p cannot be computed
    g = read_plink(study).read(collinear, collinear + 1)[:, 0]
    covar = study.parent / "covar_snp.txt"
    covar.write_text("".join("NA\n" if np.isnan(v) else f"{v:g}\n" for v in g))
    d = study.parent
    base = ["scan", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--covar", covar,
            "--r2", "1", "--quiet"]  # fmt: skip
    read = {"sep": "\t", "dtype": str, "keep_default_na": False}
    assert call([*base, "--format", "plink2", "--out", d / "p"], capsys)[0] == 0
    plink2 = pd.read_csv(d / "p.glm.linear", **read)
    row = plink2.iloc[collinear]
    assert [row[c] for c in ("BETA", "SE", "T_STAT", "P", "LOG10_P")] == ["NA"] * 5
    assert "." not in set(plink2.drop(columns="#CHROM").to_numpy().ravel())
    # as plink2 reads them; numbers stay numbers (25 is a cow's 25th chromosome)
    want = ["25", "26", "23", "25", "26", "1", "X", "MT", "7"]
    assert list(plink2["#CHROM"][: len(names)]) == want
    for test in ("wald", "all"):
        argv = [*base, "--test", test, "--format", "regenie", "--out", d / "r"]
        assert call(argv, capsys)[0] == 0
        regenie = pd.read_csv(d / "r.regenie", **{**read, "sep": " "})
        assert [regenie.iloc[collinear][c] for c in ("CHISQ", "LOG10P", "P")] == ["NA"] * 3
        assert (regenie["CHISQ"] != "NA").sum() == len(regenie) - 1
        assert list(regenie["CHROM"][: len(names)]) == want
    assert call([*base, "--format", "gwas-ssf", "--out", d / "s"], capsys)[0] == 0
    ssf = pd.read_csv(d / "s.ssf.tsv", **read)
    assert list(ssf["chromosome"][: len(names)]) == [
        "23",
        "25",
        "23",
        "23",
        "25",
        "1",
        "23",
        "25",
        "7",
    ]
    assert list(ssf["rsid"][:4]) == ["#NA", "#NA", "rs123", "#NA"]
    argv = [*base, "--format", "gwas-ssf", "--test", "lrt", "--out", d / "x"]
    status, _, err = call(argv, capsys)
    assert status == 2 and "--format gwas-ssf needs beta and standard_error" in err
    assert not list(d.glob("x.*"))


def test_tiny_p_values_never_print_as_zero(study, capsys):
    """A SNP that explains the phenotype almost exactly: p far below 1e-300."""
    from lmmscan.plink import read_plink

    g = read_plink(study).read(500, 501)[:, 0]
    rng = np.random.default_rng(1)
    y = np.where(np.isnan(g), np.nan, g + 1e-4 * rng.normal(size=g.size))
    pheno = study.parent / "strong.txt"
    pheno.write_text("".join("NA\n" if np.isnan(v) else f"{v:.12g}\n" for v in y))
    d = study.parent
    base = ["scan", "--bfile", study, "--pheno", pheno, "--quiet"]
    assert call([*base, "--test", "all", "--out", d / "s"], capsys)[0] == 0
    assert call([*base, "--format", "plink2", "--out", d / "s"], capsys)[0] == 0
    row = pd.read_csv(d / "s.assoc.txt", sep="\t", dtype=str).set_index("rs").loc["snp0500"]
    for col in ("p_wald", "p_lrt"):  # the score F is at most n: p_score stays moderate
        mant, exp = row[col].split("e")
        assert float(mant) >= 1.0 and int(exp) < -300, (col, row[col])
    prow = pd.read_csv(d / "s.glm.linear", sep="\t", dtype=str).set_index("ID").loc["snp0500"]
    log10p = float(prow["LOG10_P"])
    assert log10p > 300
    mant, exp = prow["P"].split("e")
    assert math.isclose(-(math.log10(float(mant)) + int(exp)), log10p, rel_tol=1e-5)
    # the printed p agrees with GEMMA's Wald F through the exact tail formula
    wald = pd.read_csv(d / "s.assoc.txt", sep="\t", dtype=str).set_index("rs").loc["snp0500"]
    assert wald["p_wald"].split("e")[1] == prow["P"].split("e")[1]


def test_bimbam_scan_runs_and_matches_plink(study, tmp_path, capsys):
    """The demo study written as BIMBAM (gzip, commas, NA) gives the PLINK run's table."""
    import gzip

    from lmmscan.plink import read_plink

    src = read_plink(study)
    G = src.read(0, src.n_snps)
    snps = src.snps
    with gzip.open(tmp_path / "demo.geno.gz", "wt") as fh:
        for j in range(G.shape[1]):
            vals = ["NA" if np.isnan(v) else f"{v:g}" for v in G[:, j]]
            fh.write(f"{snps.rs[j]}, {snps.allele1[j]}, {snps.allele0[j]}, {', '.join(vals)}\n")
    with open(tmp_path / "demo.anno", "w") as fh:
        for j in range(G.shape[1]):
            fh.write(f"{snps.rs[j]}\t{snps.ps[j]}\t{snps.chr[j]}\n")
    common = ["--pheno", f"{study}.pheno.txt", "--covar", f"{study}.covar.txt", "--quiet"]
    assert call(["scan", "--bfile", study, *common, "--out", tmp_path / "p"], capsys)[0] == 0
    args = ["scan", "--bimbam-geno", tmp_path / "demo.geno.gz", "--bimbam-anno",
            tmp_path / "demo.anno", *common, "--out", tmp_path / "b"]  # fmt: skip
    assert call(args, capsys)[0] == 0
    assert (tmp_path / "p.assoc.txt").read_bytes() == (tmp_path / "b.assoc.txt").read_bytes()


def test_demo_runs(tmp_path, capsys):
    status, out, _ = call(["demo", "--out", tmp_path / "demo"], capsys)
    assert status == 0
    assert "$ lmmscan kinship" in out and "$ lmmscan scan" in out
    assert "snp0500" in out
    for name in ("demo.cXX.txt", "demo.1.assoc.txt", "demo.2.assoc.txt", "demo.1.null.json"):
        assert (tmp_path / "demo" / name).exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses a Linux pty")
def test_progress_bar_on_a_terminal(study):
    """tqdm on stderr with SNPs/s when stderr is a terminal (a pty, 100 columns)."""
    import fcntl
    import pty
    import struct
    import termios

    argv = [sys.executable, "-m", "lmmscan", *map(str, scan_args(study, study.parent / "t"))]
    argv += ["--block-size", "100"]
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    buf = b""
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO once the child has closed the terminal
            break
        if not data:
            break
        buf += data
    os.close(master)
    assert proc.wait() == 0
    frames = buf.decode(errors="replace").split("\r")
    assert any("scan:" in f and "SNP/s" in f for f in frames)
    assert any("kinship:" in f for f in frames)


def test_a_file_named_as_bytes_is_printed_as_a_path(monkeypatch, capsys):
    """A library that opens files by a bytes name (pgenlib) raises OSErrors
    whose filename is bytes: the one line said b'fc2/m.bed'."""
    import lmmscan.cli.demo

    def run(args):
        raise FileNotFoundError(2, "No such file or directory", b"fc2/m.bed")

    monkeypatch.setattr(lmmscan.cli.demo, "run", run)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "lmmscan demo: error: fc2/m.bed: No such file or directory", err
