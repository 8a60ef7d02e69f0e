"""An output that is one of the run's own input files is refused before any
work: scan --out r with --pheno r.assoc.txt replaced the phenotype file with
the table (GEMMA does the same), also through a symlink."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lmmscan.cli import main
from lmmscan.demo import copy_study


@pytest.fixture()
def study(tmp_path) -> Path:
    return copy_study(tmp_path / "in")


def refused(argv, capsys, *needles) -> None:
    status = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_the_table_named_as_the_phenotype_file(study, tmp_path, capsys):
    pheno = tmp_path / "r.assoc.txt"
    shutil.copy(f"{study}.pheno.txt", pheno)
    before = pheno.read_bytes()
    refused(["scan", "--bfile", study, "--pheno", pheno, "--out", tmp_path / "r", "--quiet"],
            capsys, "r.assoc.txt: is the --pheno input", "choose another --out")  # fmt: skip
    assert pheno.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "r.assoc.txt"]


def test_through_a_symlink_and_for_null_json(study, tmp_path, capsys):
    (tmp_path / "r.assoc.txt").symlink_to(f"{study}.pheno.txt")
    refused(["scan", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--out",
             tmp_path / "r", "--quiet"], capsys, "is the --pheno input")  # fmt: skip
    os.link(f"{study}.covar.txt", tmp_path / "c.null.json")  # a hard link: the same file
    refused(["scan", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--covar",
             f"{study}.covar.txt", "--out", tmp_path / "c", "--quiet"], capsys,
            "c.null.json: is the --covar input")  # fmt: skip


def test_kinship_over_a_genotype_file(study, capsys):
    refused(["kinship", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--out",
             f"{study}.bim", "--quiet"], capsys, "is the --bfile input")  # fmt: skip
