"""VCF files htslib half-reads: one line naming the file, exit status 2.

Before, a malformed record on a contig the header does not declare (a blank
line, spaces for tabs, a missing CHROM or POS) crashed the process (SIGSEGV:
htslib hands on a half-filled record whose ID and REF cyvcf2 then reads), a
comma or a byte that is not UTF-8 in a sample name, or DS declared as a
String, ended in a traceback.  The crash is run in a subprocess, so that a
regression fails this test rather than the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lmmscan

pytest.importorskip("cyvcf2")

PYTHONPATH = str(Path(lmmscan.__file__).resolve().parents[1])
HEADER = (
    "##fileformat=VCFv4.2\n##contig=<ID=1>\n"
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
)
COLUMNS = "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\tc\td\n"
GOOD = [
    "1\t100\ts1\tA\tC\t.\t.\t.\tGT\t0/1\t1/1\t0/0\t0/1\n",
    "1\t200\ts2\tA\tG\t.\t.\t.\tGT\t0/0\t0/1\t1/1\t1/1\n",
]


def kinship(path: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    argv = ["kinship", "--vcf", str(path), "--maf", "-1", "--out", str(tmp_path / "k.txt")]
    return subprocess.run(
        [sys.executable, "-m", "lmmscan", *argv],
        env={"PYTHONPATH": PYTHONPATH, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "bad",
    [
        "\n",  # a blank line at the end
        "1 300 s3 A G . . . GT 0/0 0/1 1/1 1/1\n",  # spaces for tabs
        "300\ts3\tA\tG\t.\t.\t.\tGT\t0/0\t0/1\t1/1\t1/1\n",  # no CHROM
        "7\tabc\ts3\tA\tG\t.\t.\t.\tGT\t0/0\t0/1\t1/1\t1/1\n",  # POS not a number
        "7\t300\n",  # two fields
    ],
)
def test_a_record_htslib_half_reads_is_named(tmp_path, bad):
    path = tmp_path / "bad.vcf"
    path.write_text(HEADER + COLUMNS + "".join(GOOD) + bad)
    proc = kinship(path, tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "bad.vcf: record 3 (line 7) is not a VCF record" in lines[0]
    assert not (tmp_path / "k.txt").exists()


def test_an_undeclared_contig_is_still_read(tmp_path):
    path = tmp_path / "ok.vcf"
    path.write_text(HEADER + COLUMNS + "".join(GOOD) + GOOD[1].replace("1\t200", "7\t300"))
    proc = kinship(path, tmp_path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "columns, header, needle",
    [
        (COLUMNS.replace("\tc\t", "\tc,x\t"), HEADER,
         "sample name 'c,x' (column 12 of the #CHROM line) holds a comma"),
        (COLUMNS.replace("\td\n", "\t\udcff\n"), HEADER,
         "a sample name in the #CHROM line is not UTF-8"),
        (COLUMNS, HEADER.replace("ID=GT,Number=1,Type=String", "ID=DS,Number=A,Type=String"),
         "declares FORMAT DS as Type=String"),
    ],
)  # fmt: skip
def test_sample_names_and_types_htslib_cannot_serve(tmp_path, columns, header, needle):
    path = tmp_path / "bad.vcf"
    body = "".join(GOOD)
    if "DS" in header:
        body = body.replace("GT\t0/1\t1/1\t0/0\t0/1", "DS\t1\t2\t0\t1").replace(
            "GT\t0/0\t0/1\t1/1\t1/1", "DS\t0\t1\t2\t2"
        )
    path.write_bytes((header + columns + body).encode("utf-8", "surrogateescape"))
    proc = kinship(path, tmp_path)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "bad.vcf" in lines[0] and needle in lines[0], proc.stderr


def test_covariate_faults_name_the_covariate_file_not_none_fam(tmp_path):
    """A VCF has no phenotype: the covariate faults of kinship named
    "None.fam phenotype 1 (column 6)"."""
    path = tmp_path / "ok.vcf"
    path.write_text(HEADER + COLUMNS + "".join(GOOD))
    for name, rows in (("na.txt", ["NA 1"] * 4), ("wide.txt", ["1 2 3 4"] * 4)):
        covar = tmp_path / name
        covar.write_text("\n".join(rows) + "\n")
        argv = ["kinship", "--vcf", str(path), "--covar", str(covar), "--maf", "-1",
                "--out", str(tmp_path / "k.txt")]  # fmt: skip
        proc = subprocess.run(
            [sys.executable, "-m", "lmmscan", *argv],
            env={"PYTHONPATH": PYTHONPATH, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        line = proc.stderr.strip()
        assert line.startswith(f"lmmscan kinship: error: {covar}: "), line
        assert "None" not in line


def test_an_allele_the_record_lacks_is_refused(tmp_path):
    """0/2 on a biallelic record was counted as one ALT copy, silently."""
    path = tmp_path / "bad.vcf"
    path.write_text(HEADER + COLUMNS + GOOD[0].replace("0/1\n", "0/2\n") + GOOD[1])
    proc = kinship(path, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "record 1 (line 5) (1:100 s1): sample 'd' has allele 2" in proc.stderr


def test_positions_past_two_to_the_31(tmp_path):
    """cyvcf2's POS is a C int: 3,000,000,000 was read as -1,294,967,296."""
    from lmmscan import read_vcf

    path = tmp_path / "big.vcf"
    path.write_text(HEADER + COLUMNS + GOOD[0].replace("\t100\t", "\t3000000000\t") +
                    GOOD[1].replace("\t200\t", "\t99999999999\t"))  # fmt: skip
    assert read_vcf(path, "GT").snps["ps"].tolist() == [3_000_000_000, 99_999_999_999]


def test_a_file_read_all_missing_says_why(tmp_path):
    """Every record haploid: the error blamed --maf/--miss alone."""
    path = tmp_path / "haploid.vcf"
    rows = [r.replace("0/1", "1").replace("1/1", "1").replace("0/0", "0") for r in GOOD]
    path.write_text(HEADER + COLUMNS + "".join(rows))
    proc = kinship(path, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "2 variants of the genotype file read as missing (ploidy other than 2: 2)" in (
        proc.stderr
    )


def test_a_record_short_of_columns_further_on_says_so(tmp_path):
    """A record past the first with a sample column too few was refused with
    htslib's "error parsing variant ... ret: -2" (helper 67); plink2 says the
    line has fewer tokens than expected.  One column too many is read as
    htslib and plink2 read it, its last column dropped (docs/edge-cases.md)."""
    short = "1\t300\ts3\tA\tG\t.\t.\t.\tGT\t0/0\t0/1\t1/1\n"
    path = tmp_path / "short.vcf"
    path.write_text(HEADER + COLUMNS + "".join(GOOD) + short)
    with pytest.raises(lmmscan.InputError) as refused:
        lmmscan.read_vcf(path, "GT").read(0, 3)
    assert str(refused.value).endswith(
        "short.vcf: cannot read record 3 (line 7): it has 3 sample columns, but the #CHROM "
        "line names 4 samples"
    )
    long = "1\t300\ts3\tA\tG\t.\t.\t.\tGT\t0/0\t0/1\t1/1\t1/1\t0/1\n"
    path.write_text(HEADER + COLUMNS + "".join(GOOD) + long)
    np.testing.assert_array_equal(lmmscan.read_vcf(path, "GT").read(2, 3)[:, 0], [0, 1, 2, 2])
