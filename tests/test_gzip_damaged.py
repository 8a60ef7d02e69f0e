"""Damaged gzip inputs: a stream cut short, bad deflate data or a bad CRC is
bad input (one line naming the file, exit status 2), whichever reader meets
it: phenotypes, covariates, a kinship, a BIMBAM annotation or genotype file,
a table to plot.  Before, the text readers let EOFError and zlib.error out as
tracebacks, and a bad CRC printed without the file's name."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

import lmmscan
from lmmscan import InputError
from lmmscan.cli import main

DATA = Path(__file__).parent / "data" / "bxd"


def cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def flip(data: bytes) -> bytes:
    """One byte of the deflate stream changed: an error or a CRC mismatch."""
    out = bytearray(data)
    out[len(out) // 2] ^= 0xFF
    return bytes(out)


@pytest.fixture
def study(tmp_path) -> Path:
    for name in ("BXD_geno.txt.gz", "BXD_snps.txt.gz", "BXD_pheno.txt", "BXD_covariates2.txt"):
        shutil.copy(DATA / name, tmp_path / name)
    return tmp_path


def scan_argv(d: Path, **swap: Path) -> list[str]:
    files = {
        "--bimbam-geno": d / "BXD_geno.txt.gz",
        "--bimbam-anno": d / "BXD_snps.txt.gz",
        "--pheno": d / "BXD_pheno.txt",
        "--covar": d / "BXD_covariates2.txt",
        **{f"--{k.replace('_', '-')}": v for k, v in swap.items()},
    }
    return ["scan", *[str(a) for kv in files.items() for a in kv], "--out", str(d / "out" / "r")]


def refused(argv: list[str], capsys, name: str) -> None:
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert name in lines[0] and "truncated or corrupt gzip file" in lines[0], lines[0]


@pytest.mark.parametrize("damage", [cut, flip])
@pytest.mark.parametrize("flag", ["pheno", "covar", "bimbam_anno", "bimbam_geno", "kinship"])
def test_damaged_gzip_input_is_one_line(study, capsys, flag, damage):
    (study / "out").mkdir()
    if flag == "kinship":
        rng = np.random.default_rng(1)
        A = rng.normal(size=(79, 30))  # a GEMMA text kinship, gzipped
        raw = gzip.compress("\n".join(" ".join(f"{v:.6f}" for v in row) for row in A @ A.T / 30)
                            .encode())  # fmt: skip
    else:
        source = {
            "pheno": "BXD_pheno.txt",
            "covar": "BXD_covariates2.txt",
            "bimbam_anno": "BXD_snps.txt.gz",
            "bimbam_geno": "BXD_geno.txt.gz",
        }[flag]
        data = (study / source).read_bytes()
        raw = data if source.endswith(".gz") else gzip.compress(data)
    bad = study / f"bad_{flag}.gz"
    bad.write_bytes(damage(raw))
    argv = scan_argv(study, **{flag: bad})
    if flag == "kinship":
        argv += ["--kinship", str(bad)]
    refused(argv, capsys, bad.name)
    assert not list((study / "out").iterdir())  # nothing written


def test_damaged_gzip_table_to_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    table = "chr\trs\tps\tn_miss\tallele1\tallele0\taf\tbeta\tse\tlogl_H1\tl_remle\tp_wald\n"
    table += "".join(f"1\trs{i}\t{i * 1000}\t0\tA\tG\t0.3\t0.1\t0.1\t-1\t1\t{0.5:.6e}\n"
                     for i in range(2000))  # fmt: skip
    bad = tmp_path / "t.assoc.txt.gz"
    bad.write_bytes(cut(gzip.compress(table.encode())))
    refused(["plot", str(bad), "--out", str(tmp_path / "p.png")], capsys, bad.name)


def test_bimbam_cut_short_while_read_is_bad_input(study):
    """A gzipped BIMBAM file cut short after the first pass (a file still being
    copied): the block read is bad input, which keeps a scan's checkpoint."""
    path = study / "BXD_geno.txt.gz"
    geno = lmmscan.read_bimbam(path)
    geno.read(0, 10)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="truncated or corrupt gzip file") as err:
        geno.read(geno.n_snps - 10, geno.n_snps)
    assert path.name in str(err.value)
