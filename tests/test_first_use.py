"""First use: help, summaries, the demo and the small API rough edges a new
user met (issue 14, "First use" and "Tracebacks and unhelpful messages")."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmscan
from lmmscan.cli import main
from lmmscan.cli.common import plural
from lmmscan.demo import copy_study


@pytest.fixture()
def study(tmp_path) -> Path:
    return copy_study(tmp_path / "in")


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_top_level_help_lists_each_command_once(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("kinship", "scan", "eigen", "plot", "demo"):
        assert sum(line.split()[:1] == [command] for line in out.splitlines()) == 1, out
    assert "COMMAND --help" in out


def test_plot_help_says_95_percent_not_95_percent_percent(capsys):
    with pytest.raises(SystemExit):
        main(["plot", "--help"])
    out = capsys.readouterr().out
    assert "95% band" in out and "%%" not in out


def test_summaries_count_one_snp_in_the_singular():
    assert plural(1, "SNP") == "1 SNP" and plural(2, "SNP") == "2 SNPs"
    assert plural(0, "individual") == "0 individuals"


def test_save_eigen_takes_either_order(tmp_path):
    """save_eigen(eig, "K.npz") raised TypeError (the order is path, eig)."""
    eig = lmmscan.eigendecompose(np.eye(3) + 0.5, ["a", "b", "c"])
    a = lmmscan.save_eigen(tmp_path / "a.npz", eig)
    b = lmmscan.save_eigen(eig, tmp_path / "b.npz")
    assert a is not None and b is not None
    np.testing.assert_array_equal(lmmscan.load_eigen(a).U, lmmscan.load_eigen(b).U)
    with pytest.raises(lmmscan.InputError, match="needs an Eigendecomposition"):
        lmmscan.save_eigen(tmp_path / "c.npz", np.eye(3))  # type: ignore[arg-type]


def test_text_file_as_eigen_is_named_not_given_pickle_advice(study, tmp_path, capsys):
    """A text file as --eigen got advice to use allow_pickle."""
    text = tmp_path / "K.txt"
    text.write_text("1\t0.5\n0.5\t1\n")
    with pytest.raises(lmmscan.InputError, match="cannot read it as an .npz file") as exc:
        lmmscan.load_eigen(text)
    assert "pickle" not in str(exc.value)
    argv = ["scan", "--bfile", str(study), "--pheno", f"{study}.pheno.txt", "--eigen",
            str(text), "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert "K.txt" in line and "not an lmmscan eigendecomposition" in line
    assert "pickle" not in line


def test_duplicate_sample_ids_name_the_id_not_an_api_argument():
    """Duplicate IDs in `lmmscan eigen` suggested sample_ids=, an API argument."""
    from lmmscan.eigen import sample_ids_of

    class Source:
        n_samples = 3
        samples = pd.DataFrame({"fid": ["f", "f", "g"], "iid": ["x", "x", "y"]})

    with pytest.raises(lmmscan.InputError, match=r"IID 'x' appears twice.*\.fam"):
        sample_ids_of(Source())


@pytest.mark.parametrize("value, column", [("1.5", "p_wald"), ("-0.1", "p_wald"), ("", "beta")])
def test_plot_refuses_values_that_are_no_p_values(tmp_path, capsys, value, column):
    """`lmmscan plot` drew p-values of 1.5 and -0.1 (or --p-column beta) with a
    numpy warning and exit 0."""
    pytest.importorskip("matplotlib")
    table = tmp_path / "t.assoc.txt"
    rows = ["chr\trs\tps\tbeta\tp_wald", "1\ta\t10\t0.2\t0.5", "1\tb\t20\t-3.5\t0.01"]
    if value:
        rows.append(f"2\tc\t30\t0.1\t{value}")
    table.write_text("\n".join(rows) + "\n")
    argv = ["plot", str(table), "--out", str(tmp_path / "f.png")]
    if column != "p_wald":
        argv += ["--p-column", column]
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert "t.assoc.txt, line" in line and "no p-value" in line
    assert not (tmp_path / "f.png").exists()


def test_constant_phenotype_is_not_blamed_on_the_kinship_file(study, tmp_path, capsys):
    """A constant phenotype with --kinship: the message was prefixed with the
    kinship's file name."""
    kin = tmp_path / "K.txt"
    assert main(["kinship", "--bfile", str(study), "--pheno", f"{study}.pheno.txt", "--quiet",
                 "--out", str(kin)]) == 0  # fmt: skip
    pheno = tmp_path / "flat.txt"
    pheno.write_text("3\n" * 400)
    argv = ["scan", "--bfile", str(study), "--pheno", str(pheno), "--kinship", str(kin),
            "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert "constant" in line and "K.txt" not in line and "flat.txt column 1" in line


def test_demo_says_which_causal_snp_the_filters_removed(tmp_path, capsys, monkeypatch):
    """The demo named snp2600 as causal, but it is monomorphic and filtered out."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # no plots: faster
    assert main(["demo", "--out", str(tmp_path / "d"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Not tested: snp2600, removed by the SNP filters" in out


def test_kinship_of_a_fam_without_phenotypes_says_so(study):
    """On the demo's files the README's kinship said "no sample to compute the SNP
    filters on (filter_samples is empty)"."""
    geno = lmmscan.read_plink(study)
    with pytest.raises(lmmscan.InputError, match="the .fam carries no phenotype"):
        lmmscan.kinship(geno)


@pytest.mark.parametrize("command", ["kinship", "scan"])
def test_the_commands_on_a_fam_without_phenotypes_name_pheno(study, tmp_path, capsys, command):
    """They said "every sample has a missing phenotype or covariate: nothing to
    analyse", naming neither the cause nor --pheno."""
    assert main([command, "--bfile", str(study), "--out", str(tmp_path / "o.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (
        f"{study}.fam phenotype 1 (column 6): every value is missing: the genotype files carry "
        "no phenotype; give one with --pheno"
    ) in err
