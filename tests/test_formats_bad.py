"""Bad .pgen, BGEN and VCF files: one line naming the file, exit status 2,
nothing written (docs/edge-cases.md, "Genotype formats")."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

import lmmscan
from lmmscan.cli import main

from .conftest import DATA, copy_converted


def run(argv, capsys):
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def refused(capsys, tmp_path, flags, *needles):
    """kinship and scan both refuse with one line naming ``needles``, and
    write nothing."""
    pheno = tmp_path / "pheno.txt"
    with gzip.open(DATA / "mouse_hs1940" / "mouse_hs1940.pheno.txt.gz", "rt") as fh:
        pheno.write_text(fh.read())
    before = sorted(tmp_path.iterdir())
    for argv in (
        ["kinship", *flags, "--out", tmp_path / "k.npy"],
        ["scan", *flags, "--pheno", pheno, "--out", tmp_path / "s"],
    ):
        status, out, err = run(argv, capsys)
        assert status == 2, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert "Traceback" not in err
        for needle in needles:
            assert needle in lines[0], (needle, lines[0])
        assert sorted(tmp_path.iterdir()) == before  # nothing written


@pytest.fixture
def files(tmp_path) -> Path:
    return copy_converted(tmp_path)


def _copy_fileset(d: Path, name: str) -> None:
    for ext in ("pgen", "pvar", "psam"):
        shutil.copy(d / f"mouse2k.{ext}", d / f"{name}.{ext}")


def test_truncated_pgen(files, capsys):
    _copy_fileset(files, "t")
    data = (files / "t.pgen").read_bytes()
    (files / "t.pgen").write_bytes(data[: len(data) // 2])
    refused(capsys, files, ["--pfile", files / "t"], "t.pgen", "truncated or corrupt")


def test_pgen_cut_short_while_read(files):
    """pgenlib reads a .pgen cut short after opening it without a word (stale data):
    the size is checked after each read."""
    import lmmscan
    from lmmscan import InputError

    _copy_fileset(files, "c")
    geno = lmmscan.read_pgen(files / "c")
    geno.read(0, 10)
    data = (files / "c.pgen").read_bytes()
    (files / "c.pgen").write_bytes(data[:-100])  # the first variants are still there
    with pytest.raises(InputError, match="the file changed while it was read") as err:
        geno.read(0, 10)
    assert "c.pgen" in str(err.value)


def test_psam_with_fewer_samples_than_the_pgen(files, capsys):
    _copy_fileset(files, "s")
    lines = (files / "s.psam").read_text().splitlines(keepends=True)
    (files / "s.psam").write_text("".join(lines[:100]))
    refused(capsys, files, ["--pfile", files / "s"], "s.pgen", "1940 samples", "s.psam lists 99")


def test_a_short_line_in_a_psam_without_a_header(files, capsys):
    """A .psam without a header (a .fam) with one line of 3 fields: its
    phenotype and sex were read as absent, exit 0 (plink2: "Line 4 of s.psam
    has fewer tokens than expected")."""
    _copy_fileset(files, "f")
    lines = (files / "f.psam").read_text().splitlines()
    fam = [" ".join([*row.split("\t")[:2], "0", "0", "1", "-9"]) for row in lines[1:]]
    fam[2] = " ".join(fam[2].split()[:3])
    (files / "f.psam").write_text("\n".join(fam) + "\n")
    refused(capsys, files, ["--pfile", files / "f"], "f.psam, line 3", "3 fields where other")


def test_a_psam_phenotype_na_in_any_case_is_missing(files):
    """plink2 reads NA, na or Na in a .psam phenotype column as missing;
    "na" was refused as no number (helper 67)."""
    _copy_fileset(files, "n")
    lines = (files / "n.psam").read_text().splitlines()
    header, rows = lines[0].split("\t"), [row.split("\t") for row in lines[1:]]
    words = ["na", "Na", "nA", "1.5"]
    rows = [[*row, words[k % 4]] for k, row in enumerate(rows)]
    (files / "n.psam").write_text(
        "\n".join("\t".join(r) for r in [[*header, "EXTRA"], *rows]) + "\n"
    )
    geno = lmmscan.read_pgen(files / "n")
    got = geno.fam_phenotypes([geno.n_pheno_columns])[:8, 0]  # the last column
    np.testing.assert_array_equal(got, [np.nan] * 3 + [1.5] + [np.nan] * 3 + [1.5])


def test_a_zstd_pvar_reads_as_the_plain_one(files):
    """plink2's --make-pgen vzs writes .pvar.zst; the pgen extra did not
    install the zstandard package that reads it (helper 67)."""
    import zstandard

    _copy_fileset(files, "z")
    plain = files / "z.pvar"
    (files / "z.pvar.zst").write_bytes(zstandard.ZstdCompressor().compress(plain.read_bytes()))
    want = lmmscan.read_pgen(files / "z").snps
    plain.unlink()
    got = lmmscan.read_pgen(files / "z")
    assert got.snps.equals(want)
    np.testing.assert_array_equal(got.read(0, 5), lmmscan.read_pgen(files / "mouse2k").read(0, 5))


def test_pvar_with_fewer_variants_than_the_pgen(files, capsys):
    _copy_fileset(files, "v")
    lines = (files / "v.pvar").read_text().splitlines(keepends=True)
    (files / "v.pvar").write_text("".join(lines[:100]))
    refused(capsys, files, ["--pfile", files / "v"], "v.pgen", "1674 variants")


def _rows(path: Path, change) -> None:
    """Rewrite the lines after the header (the first line) of ``path``."""
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], *map(change, lines[1:])]) + "\n")


@pytest.mark.parametrize(
    "ext, change, needles",
    [
        # one field more than the header on every row: read_csv took the first
        # field as the index and every column shifted (IID = SEX, silently)
        ("psam", lambda r: r + "\tX", ["x.psam, line 2", "7 fields where the header has 6"]),
        ("pvar", lambda r: r + "\t\tX", ["x.pvar, line 2", "8 fields where the header has 6"]),
        # an empty field: the line named is the one that has it
        ("pvar", lambda r: r.replace("\tA\t", "\t\t") if r.startswith("1\t3407393") else r,
         ["x.pvar, line 3", "field 4 is empty"]),
        # a tab-separated header over space-separated rows: one field each,
        # read as FID, with every IID empty
        ("psam", lambda r: r.replace("\t", " "),
         ["x.psam, line 2", "1 field where the header has 6", "separated by tabs"]),
        ("pvar", lambda r: r.replace("\t", " "),
         ["x.pvar, line 2", "1 field where the header has 6", "separated by tabs"]),
        # a row short of a field: its SEX and PHENO1 were shifted, silently
        ("psam", lambda r: r.rsplit("\t", 1)[0] if r.startswith("1_5\t") else r,
         ["x.psam, line 3", "5 fields where the header has 6"]),
        # no variant under the header: the .pgen was blamed, with "()"
        ("pvar", None, ["x.pvar", "no variants"]),
    ],
)  # fmt: skip
def test_plink2_text_rows_that_do_not_match_the_header(files, capsys, ext, change, needles):
    _copy_fileset(files, "x")
    path = files / f"x.{ext}"
    if change is None:
        path.write_text(path.read_text().splitlines()[0] + "\n")
    else:
        _rows(path, change)
    refused(capsys, files, ["--pfile", files / "x"], *needles)


@pytest.mark.parametrize("ext", ["psam", "pvar"])
@pytest.mark.parametrize("header_too", [False, True])
def test_plink2_trailing_tabs_are_read_as_without(files, ext, header_too):
    """Tabs left at the ends of the lines (of the rows, or of the header too)
    add only empty fields: the file reads as without them (a .psam with them
    on every line was refused by the first version of the field checks)."""
    import lmmscan

    _copy_fileset(files, "x")
    _copy_fileset(files, "t")
    path = files / f"t.{ext}"
    lines = path.read_text().splitlines()
    first = lines[0] + "\t" if header_too else lines[0]
    path.write_text("\n".join([first, *(x + "\t" for x in lines[1:])]) + "\n")
    a, b = lmmscan.read_pgen(files / "x"), lmmscan.read_pgen(files / "t")
    assert a.snps.equals(b.snps)
    assert a.samples.equals(b.samples)
    assert a.fam_phenotypes([1]).tobytes() == b.fam_phenotypes([1]).tobytes()


def test_plink2_header_with_spaces_says_so(files, capsys):
    _copy_fileset(files, "x")
    for ext, needle in (("psam", "no IID column"), ("pvar", "no CHROM, POS, ID, REF, ALT")):
        path = files / f"x.{ext}"
        keep = path.read_text()
        path.write_text(keep.replace("\t", " "))
        refused(capsys, files, ["--pfile", files / "x"], f"x.{ext}", needle,
                "separated by spaces; PLINK 2's are separated by tabs")  # fmt: skip
        path.write_text(keep)


def test_truncated_bgen(files, capsys):
    data = (files / "mouse2k.bgen").read_bytes()
    (files / "t.bgen").write_bytes(data[: len(data) // 2])
    refused(capsys, files, ["--bgen", files / "t.bgen"], "t.bgen", "truncated")


def _bgenix_index(bgen_path: Path, drop_first: bool = False) -> Path:
    """A bgenix index (.bgi: SQLite, bgenix's Variant table) of the file, or of
    a version of it without its first variant."""
    import sqlite3

    bgen = pytest.importorskip("bgen")
    reader = bgen.BgenReader(str(bgen_path), delay_parsing=True)
    rows = [
        (v.chrom, v.pos, v.rsid, len(v.alleles), v.alleles[0], v.alleles[-1], v.fileoffset,
         v.next_variant_offset - v.fileoffset)
        for v in reader
    ]  # fmt: skip
    reader.close()
    index = Path(f"{bgen_path}.bgi")
    con = sqlite3.connect(index)
    con.execute(
        "CREATE TABLE Variant (chromosome TEXT, position INT, rsid TEXT, number_of_alleles "
        "INT, allele1 TEXT, allele2 TEXT, file_start_position INT, size_in_bytes INT)"
    )
    con.executemany("INSERT INTO Variant VALUES (?,?,?,?,?,?,?,?)", rows[int(drop_first) :])
    con.commit()
    con.close()
    return index


def test_a_bgenix_index_of_another_file_version_is_refused(files, capsys):
    """The bgen package reads variant i at the index's i-th offset: an index
    missing one variant gave each variant its neighbour's genotypes."""
    path = files / "mouse2k.bgen"
    plain = lmmscan.read_bgen(path).read(0, 20)
    index = _bgenix_index(path)  # a true index: the same genotypes
    np.testing.assert_array_equal(lmmscan.read_bgen(path).read(0, 20), plain)
    index.unlink()
    _bgenix_index(path, drop_first=True)
    refused(capsys, files, ["--bgen", path], "mouse2k.bgen.bgi", "another version of the file")
    index.unlink()
    index.write_text("not an index\n")
    refused(capsys, files, ["--bgen", path], "mouse2k.bgen.bgi", "not a readable bgenix index")


def test_sample_file_of_another_size(files, capsys):
    lines = (files / "mouse2k.sample").read_text().splitlines(keepends=True)
    (files / "s.sample").write_text("".join(lines[:100]))
    refused(
        capsys,
        files,
        ["--bgen", files / "mouse2k.bgen", "--sample", files / "s.sample"],
        "s.sample",
        "98 samples",
    )


@pytest.mark.parametrize(
    "change, needles",
    [
        # a line given twice in place of the next: every later sample shifted
        (lambda ls: ls[:5] + [ls[4]] + ls[6:], ["d.sample, line 6", "lines 5 and 6", "unique"]),
        # one row a field longer: pandas' words, not the file's line
        (lambda ls: ls[:10] + [ls[10].rstrip("\n") + " 7\n"] + ls[11:],
         ["d.sample, line 11", "6 fields where line 1 has 5"]),
        # every row a field longer than line 1: read_csv took ID_1 as the index
        # and shifted every column (ID_2 read as "missing"), silently
        (lambda ls: ls[:1] + [x.rstrip("\n") + " 7\n" for x in ls[1:]],
         ["d.sample, line 2", "6 fields where line 1 has 5"]),
    ],
)  # fmt: skip
def test_sample_file_rows_that_do_not_fit(files, capsys, change, needles):
    lines = (files / "mouse2k.sample").read_text().splitlines(keepends=True)
    (files / "d.sample").write_text("".join(change(lines)))
    refused(capsys, files, ["--bgen", files / "mouse2k.bgen", "--sample", files / "d.sample"],
            *needles)  # fmt: skip


def test_sample_file_wider_only_as_pandas_counts(tmp_path):
    """A quoted header field holding a blank: read_csv's warning, but no row
    wider by blanks; the search for the row ended in StopIteration."""
    from lmmscan import InputError
    from lmmscan.bgenfile import read_sample_file

    path = tmp_path / "q.sample"
    path.write_text('ID_1 ID_2 missing "P 1"\n0 0 0 P 9\na a 0 1.5 9\nb b 0 2.5 9\n')
    with pytest.raises(InputError, match="q.sample: the rows have more fields than line 1"):
        read_sample_file(path)


def test_bgi_that_is_a_directory(files, capsys):
    """Before: a sqlite3.OperationalError traceback from inside the bgen package."""
    (files / "mouse2k.bgen.bgi").mkdir()
    refused(capsys, files, ["--bgen", files / "mouse2k.bgen"], "mouse2k.bgen.bgi", "not a file")


def test_bgen_embedded_ids_must_be_unique():
    from lmmscan import InputError
    from lmmscan.bgenfile import _check_unique_embedded

    _check_unique_embedded(["a", "b", "c"], "x.bgen")
    with pytest.raises(InputError, match="x.bgen: sample ID 'a' is samples 1 and 3"):
        _check_unique_embedded(["a", "b", "a"], "x.bgen")


def test_sample_file_with_other_ids(files, capsys):
    lines = (files / "mouse2k.sample").read_text().splitlines(keepends=True)
    fields = lines[4].split()
    fields[1] = "someone_else"
    lines[4] = " ".join(fields) + "\n"
    (files / "i.sample").write_text("".join(lines))
    refused(
        capsys,
        files,
        ["--bgen", files / "mouse2k.bgen", "--sample", files / "i.sample"],
        "i.sample, line 5",
        "someone_else",
    )


@pytest.mark.parametrize("field", ["DS", "GP"])
def test_vcf_without_the_requested_field(files, capsys, field):
    refused(
        capsys,
        files,
        ["--vcf", files / "mouse2k.vcf.gz", "--vcf-field", field],
        "mouse2k.vcf.gz",
        f"no FORMAT {field} field",
    )


def test_corrupt_bgzip_block(files, capsys):
    data = bytearray((files / "mouse2k.vcf.gz").read_bytes())
    data[200_000:200_050] = b"x" * 50  # inside a compressed block: its CRC fails
    (files / "c.vcf.gz").write_bytes(bytes(data))
    refused(capsys, files, ["--vcf", files / "c.vcf.gz"], "c.vcf.gz", "cut short or damaged")


def test_truncated_bgzip_file(files, capsys):
    data = (files / "mouse2k.vcf.gz").read_bytes()
    (files / "t.vcf.gz").write_bytes(data[:300_000])
    refused(capsys, files, ["--vcf", files / "t.vcf.gz"], "t.vcf.gz", "cut short or damaged")


VCF_HEADER = (
    "##fileformat=VCFv4.2\n##contig=<ID=1>\n"
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
    '##FORMAT=<ID=DS,Number=A,Type=Float,Description="ALT dosage">\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ta\tb\tc\td\n"
)


# the same with a FORMAT GP line
GP_HEADER = VCF_HEADER.replace(
    "##FORMAT=<ID=DS", '##FORMAT=<ID=GP,Number=G,Type=Float,Description="GP">\n##FORMAT=<ID=DS'
)


def test_multi_allelic_only_vcf(tmp_path, capsys):
    body = "".join(
        f"1\t{100 * i}\tm{i}\tA\tC,T\t.\t.\t.\tGT\t0/1\t1/2\t0/0\t2/2\n" for i in range(1, 4)
    )
    (tmp_path / "m.vcf").write_text(VCF_HEADER + body)
    refused(capsys, tmp_path, ["--vcf", tmp_path / "m.vcf"], "m.vcf", "multi-allelic 3")


def test_multi_allelic_and_haploid_records_are_counted_not_tested(tmp_path, capsys):
    """Biallelic records are read; a multi-allelic record is skipped on
    opening, a haploid one (GT) while reading: both are counted, in the
    summary and in null.json."""
    rows = [
        "1\t100\ts1\tA\tC\t.\t.\t.\tGT\t0/1\t1/1\t0/0\t0/1",
        "1\t200\tmulti\tA\tC,T\t.\t.\t.\tGT\t0/1\t1/2\t0/0\t2/2",
        "1\t300\ts2\tA\tG\t.\t.\t.\tGT\t0/0\t0/1\t./.\t1/1",
        "1\t400\thap\tA\tG\t.\t.\t.\tGT\t0\t1\t0\t1",
    ]
    (tmp_path / "x.vcf").write_text(VCF_HEADER + "\n".join(rows) + "\n")
    src = lmmscan.read_vcf(tmp_path / "x.vcf", "GT")
    assert src.skipped == {"multi-allelic": 1}
    assert list(src.snps["rs"]) == ["s1", "s2", "hap"]
    G = src.read(0, 3)
    np.testing.assert_array_equal(G[:, 0], [1, 2, 0, 1])
    np.testing.assert_array_equal(G[:, 1], [0, 1, np.nan, 2])
    assert np.isnan(G[:, 2]).all()
    assert src.skipped_at_read == {"ploidy other than 2": 1}


def test_snps_naming_only_a_skipped_multi_allelic_variant_says_so(tmp_path, capsys):
    """--snps listing only a multi-allelic variant said its ID "is not in the
    genotypes", which the user could see in the file."""
    rows = [
        "1\t100\ts1\tA\tC\t.\t.\t.\tGT\t0/1\t1/1\t0/0\t0/1",
        "1\t200\tmulti\tA\tC,T\t.\t.\t.\tGT\t0/1\t1/2\t0/0\t2/2",
    ]
    (tmp_path / "x.vcf").write_text(VCF_HEADER + "\n".join(rows) + "\n")
    (tmp_path / "snps.txt").write_text("multi\n")
    (tmp_path / "p.txt").write_text("1\n2\n3\n5\n")
    flags = ["--vcf", tmp_path / "x.vcf", "--snps", tmp_path / "snps.txt"]
    for argv in (
        ["kinship", *flags, "--out", tmp_path / "k.npy"],
        ["scan", *flags, "--pheno", tmp_path / "p.txt", "--out", tmp_path / "s"],
    ):
        status, _, err = run(argv, capsys)
        assert status == 2 and len(err.strip().splitlines()) == 1, err
        assert err.strip().endswith(
            "snps.txt: none of the 1 listed variant IDs is in the genotypes (they skip 1 "
            "multi-allelic variant, which a listed ID may name)"
        ), err


def test_a_variant_read_as_missing_is_counted_once_however_many_passes_read_it(tmp_path, capsys):
    """skipped_variants counted a haploid record once per pass over the file:
    2 with the kinship computed, 1 with it given."""
    import json

    rng = np.random.default_rng(7)
    n = 30
    names = "\t".join(f"s{i}" for i in range(n))
    header = VCF_HEADER.replace("\ta\tb\tc\td\n", "\t" + names + "\n")
    rows = []
    for j in range(25):
        calls = [f"{a}/{b}" for a, b in rng.binomial(1, 0.4, size=(n, 2))]
        if j == 3:
            calls[4] = "1"  # haploid
        rows.append(f"1\t{100 * (j + 1)}\tv{j}\tA\tG\t.\t.\t.\tGT\t" + "\t".join(calls))
    (tmp_path / "h.vcf").write_text(header + "\n".join(rows) + "\n")
    (tmp_path / "p.txt").write_text("\n".join(f"{v:.4f}" for v in rng.normal(size=n)) + "\n")
    status, _, err = run(["scan", "--vcf", tmp_path / "h.vcf", "--pheno", tmp_path / "p.txt",
                          "--quiet", "--out", tmp_path / "r"], capsys)  # fmt: skip
    assert status == 0, err
    summary = json.loads((tmp_path / "r.null.json").read_text())
    assert summary["skipped_variants"] == {"ploidy other than 2": 1}


def test_a_header_naming_fewer_samples_than_the_records_hold_is_refused(tmp_path):
    """htslib drops the sample columns a record has beyond the #CHROM line's
    names: a header naming 3 samples over records of 4 read each record's
    first 3 columns, exit 0 (mutation fuzzing, helpers 43 and 46)."""
    header = VCF_HEADER.replace("\ta\tb\tc\td\n", "\ta\tb\tc\n")
    rows = [f"1\t{100 * j}\tv{j}\tA\tG\t.\t.\t.\tGT\t0/1\t1/1\t0/0\t0/1" for j in range(1, 4)]
    (tmp_path / "x.vcf").write_text(header + "\n".join(rows) + "\n")
    with pytest.raises(lmmscan.InputError, match=r"x\.vcf, line 6: the first record has 4 sample "
                       r"columns, but the #CHROM line names 3 samples"):  # fmt: skip
        lmmscan.read_vcf(tmp_path / "x.vcf", "GT")
    (tmp_path / "y.vcf").write_text(VCF_HEADER + "\n".join(rows) + "\n")
    assert lmmscan.read_vcf(tmp_path / "y.vcf", "GT").n_samples == 4
    # a tab at the first record's end ends no column (htslib reads it): read (review)
    (tmp_path / "t.vcf").write_text(VCF_HEADER + rows[0] + "\t\n" + "\n".join(rows[1:]) + "\n")
    assert lmmscan.read_vcf(tmp_path / "t.vcf", "GT").n_samples == 4


def test_read_as_missing_runs_from_a_checkpoint_are_checked(tmp_path):
    """The runs a checkpoint gives back (read_as_missing): an empty reason is
    left out, and a run outside the file's variants (a hand edit: 10^12
    integers to expand) is refused (review, helper 45)."""
    rows = [f"1\t{100 * j}\tv{j}\tA\tG\t.\t.\t.\tGT\t0/1\t1/1\t0/0\t0/1" for j in range(1, 4)]
    (tmp_path / "x.vcf").write_text(VCF_HEADER + "\n".join(rows) + "\n")
    src = lmmscan.read_vcf(tmp_path / "x.vcf", "GT")
    src.add_read_as_missing({"ploidy other than 2": []})
    assert src.read_as_missing() == {} and src.skipped_at_read == {}
    with pytest.raises(ValueError, match="not of the file's"):
        src.add_read_as_missing({"ploidy other than 2": [[0, 10**12]]})
    src.add_read_as_missing({"ploidy other than 2": [[1, 3]]})
    assert src.read_as_missing() == {"ploidy other than 2": [[1, 3]]}


def test_a_haploid_sample_skips_its_record_whichever_field_is_read(tmp_path):
    """A male's chrX (GT "1", DS 1, GP two values) was used as a diploid dosage
    with DS (0-1 on the 0-2 scale, uncounted), read as missing with GP, and
    skipped with GT: the docs say skipped."""
    header = GP_HEADER.replace("##contig=<ID=1>", "##contig=<ID=1>\n##contig=<ID=X>")
    rows = [
        "1\t100\ts1\tA\tG\t.\t.\t.\tGT:DS:GP\t0/1:1:0,1,0\t1/1:2:0,0,1\t0/0:0:1,0,0\t0/1:1:0,1,0",
        "X\t200\tx1\tA\tG\t.\t.\t.\tGT:DS:GP\t0/1:1:0,1,0\t1:1:0,1\t0/0:0:1,0,0\t0:0:1,0",
        # every sample haploid (chrY): cyvcf2's GT array is two columns wide
        "X\t300\ty1\tA\tG\t.\t.\t.\tGT:DS:GP\t0:0:1,0\t1:1:0,1\t0:0:1,0\t1:1:0,1",
        # a lone '.' is a missing call in a diploid record, not a haploid one
        "1\t400\tdot\tA\tG\t.\t.\t.\tGT:DS:GP\t.:1:0,1,0\t1/1:2:0,0,1\t0/0:0:1,0,0\t0/1:1:0,1,0",
    ]
    (tmp_path / "x.vcf").write_text(header + "\n".join(rows) + "\n")
    for field in ("DS", "GP", "GT"):
        src = lmmscan.read_vcf(tmp_path / "x.vcf", field)
        G = src.read(0, 4)
        np.testing.assert_array_equal(G[:, 0], [1, 2, 0, 1])
        assert np.isnan(G[:, 1:3]).all(), field
        dot = [np.nan if field == "GT" else 1, 2, 0, 1]  # DS and GP have the value
        np.testing.assert_array_equal(G[:, 3], dot, err_msg=field)
        assert src.skipped_at_read == {"ploidy other than 2": 2}, field


@pytest.mark.parametrize(
    "cell, shown",
    [("-0.5,1,0.5", "-0.5,1,0.5"), ("0.5,0.5,0.5", "0.5,0.5,0.5"), ("inf,0,0", "inf,0,0"),
     ("0,1.2,0", "0,1.2,0")],
)  # fmt: skip
def test_genotype_probabilities_out_of_range_are_refused(tmp_path, cell, shown):
    """Mutation fuzzing (helper 43): only the dosage from GP was checked, so
    -0.5,1,0.5 gave 2, 0.5,0.5,0.5 gave 1.5, inf,0,0 gave 0, all tested with
    exit 0.  Triples rounded to 2 decimals (sums of 1.01) are read (review,
    helper 45)."""
    header = GP_HEADER
    good = "0.34,0.34,0.33\t0.01,0.01,0.99\t1,0,0"  # rounded to 2 decimals: sums of 1.01
    rows = [
        f"1\t100\ts1\tA\tG\t.\t.\t.\tGP\t0.2,0.7999,0.0001\t{good}",
        f"1\t200\ts2\tA\tG\t.\t.\t.\tGP\t0,0.4,0.6\t0.25,0.5,0.25\t{cell}\t.",
    ]
    (tmp_path / "x.vcf").write_text(header + "\n".join(rows) + "\n")
    src = lmmscan.read_vcf(tmp_path / "x.vcf", "GP")
    # divided by their sums, as plink2 reads them: 1 / 1.01 and 1.99 / 1.01
    np.testing.assert_allclose(
        src.read(0, 1)[:, 0], [0.8001, 1 / 1.01, 1.99 / 1.01, 0.0], rtol=1e-6
    )
    with pytest.raises(lmmscan.InputError, match=rf"record 2 .*sample 'c' is {shown}; genotype"):
        src.read(1, 2)


def test_gp_read_as_plink2_reads_it(tmp_path):
    """Helper 52: GP 0,0,0 was read as dosage 0 (plink2: missing), a sum
    below 1 was not divided by it (0,0,0.5 read 1, plink2 2), and a sample
    without GP, or a record without a GP field, was missing where plink2
    takes the GT (as lmmscan does for DS)."""
    rows = [
        "1\t100\tz\tA\tG\t.\t.\t.\tGP\t0,0,0\t0,1,0\t1,0,0\t0,0,1",
        "1\t200\tlow\tA\tG\t.\t.\t.\tGP\t0,0,0.5\t0.3,0.3,0.3\t1,0,0\t0,1,0",
        "1\t300\tgt\tA\tG\t.\t.\t.\tGT:GP\t1/1:.\t0/1:0,1,0\t0/0:0,0,0\t1/1:0,0,1",
        "1\t400\tonly\tA\tG\t.\t.\t.\tGT\t0/1\t1/1\t0/0\t0/1",
        # every GP '.': htslib gives one value a sample, which was taken for a
        # haploid record and skipped (helper 67; plink2 reads the GT)
        "1\t500\tnone\tA\tG\t.\t.\t.\tGT:GP\t0/1:.\t1/1:.\t./.:.\t0/0:.",
    ]
    (tmp_path / "x.vcf").write_text(GP_HEADER + "\n".join(rows) + "\n")
    src = lmmscan.read_vcf(tmp_path / "x.vcf", "GP")
    G = src.read(0, 5)
    np.testing.assert_array_equal(G[:, 0], [np.nan, 1, 0, 2])
    np.testing.assert_allclose(G[:, 1], [2, 1, 0, 1])
    np.testing.assert_array_equal(G[:, 2], [2, 1, 0, 2])
    np.testing.assert_array_equal(G[:, 3], [1, 2, 0, 1])
    np.testing.assert_array_equal(G[:, 4], [1, 2, np.nan, 0])
    assert src.skipped_at_read == {}
    info = src.info(0, 5)  # no traceback on the GT-only records; certain calls: 1
    assert np.isfinite(info).all() and info[3] == 1.0 and info[4] == 1.0


def test_gp_summing_to_1_in_decimal_is_not_divided_by_its_float_sum(tmp_path):
    """Review (helper 54): GP as imputation servers write them (3 decimals
    summing to 1) sum to 1 - 3.4e-8 in float32; dividing by that moved the
    dosages' last bits.  They are P(0/1) + 2 P(1/1), in double precision."""
    cells = ["0.002,0.251,0.747", "0.101,0.798,0.101", "0.333,0.334,0.333", "0.9,0.1,0"]
    row = "1\t100\ts\tA\tG\t.\t.\t.\tGP\t" + "\t".join(cells)
    (tmp_path / "x.vcf").write_text(GP_HEADER + row + "\n")
    got = lmmscan.read_vcf(tmp_path / "x.vcf", "GP").read(0, 1)[:, 0]
    gp = np.array([[float(v) for v in c.split(",")] for c in cells], dtype=np.float32)
    want = gp[:, 1].astype(np.float64) + 2.0 * gp[:, 2].astype(np.float64)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("names", [["^a", "b", "c", "d"], ["^a", "^b", "c", "d"]])
def test_a_sample_named_with_a_leading_caret_is_read_as_itself(tmp_path, names):
    """htslib takes the samples to decode as one list, "every sample but
    these" when it starts with '^': a first sample named '^a' made it decode
    the other samples, tested in the analysed ones' places, exit 0 (helper
    52)."""
    rows = "".join(
        f"1\t{100 * (k + 1)}\ts{k}\tA\tG\t.\t.\t.\tDS\t{k % 3}\t1\t2\t0.5\n" for k in range(3)
    )
    plain = VCF_HEADER
    caret = plain.replace("\ta\tb\tc\td", "\t" + "\t".join(names))
    (tmp_path / "p.vcf").write_text(plain + rows)
    (tmp_path / "c.vcf").write_text(caret + rows)
    want, got = lmmscan.read_vcf(tmp_path / "p.vcf"), lmmscan.read_vcf(tmp_path / "c.vcf")
    for samples in (None, np.array([0, 1]), np.array([0]), np.array([1, 3])):
        np.testing.assert_array_equal(got.read(0, 3, samples), want.read(0, 3, samples))


@pytest.mark.parametrize(
    "field, cells, needle",
    [
        ("GT", "0/1\t0/0\t0/0\t0/0", "sample 'a' has allele 1, but the record has no ALT allele"),
        ("DS", "0\t1\t0\t0", "dosage of sample 'b' is 1; the record has no ALT allele"),
    ],
)
def test_a_record_without_alt_refuses_alt_calls(tmp_path, field, cells, needle):
    """ALT '.' with a 0/1 call was tested, its allele1 printed as '.'."""
    rows = [
        "1\t100\ts1\tA\tG\t.\t.\t.\tGT\t0/1\t1/1\t0/0\t0/1",
        f"1\t200\tnoalt\tA\t.\t.\t.\t.\t{field}\t{cells}",
    ]
    (tmp_path / "x.vcf").write_text(VCF_HEADER + "\n".join(rows) + "\n")
    src = lmmscan.read_vcf(tmp_path / "x.vcf", field)
    with pytest.raises(lmmscan.InputError, match=needle):
        src.read(0, 2)
    zeros = f"1\t200\tnoalt\tA\t.\t.\t.\t.\t{field}\t" + cells.replace("1", "0")
    (tmp_path / "y.vcf").write_text(VCF_HEADER + rows[0] + "\n" + zeros + "\n")
    G = lmmscan.read_vcf(tmp_path / "y.vcf", field).read(0, 2)  # all reference: monomorphic
    np.testing.assert_array_equal(G[:, 1], [0, 0, 0, 0])


def test_a_record_without_alt_reads_its_gp_as_reference(tmp_path):
    """GP is Number=G: ALT '.' leaves one probability per sample, which was
    read as a haploid record (skipped, "ploidy other than 2")."""
    header = GP_HEADER
    rows = [
        "1\t100\ts1\tA\tG\t.\t.\t.\tGP\t0,1,0\t0,0,1\t1,0,0\t0,1,0",
        "1\t200\tnoalt\tA\t.\t.\t.\t.\tGP\t1\t1\t.\t1",
    ]
    (tmp_path / "x.vcf").write_text(header + "\n".join(rows) + "\n")
    src = lmmscan.read_vcf(tmp_path / "x.vcf", "GP")
    np.testing.assert_array_equal(src.read(0, 2)[:, 1], [0, 0, np.nan, 0])
    assert src.skipped_at_read == {}


def test_missing_reader_is_named_before_any_work(files, capsys, monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec

    def no_readers(name, *args):
        if name in ("pgenlib", "bgen", "cyvcf2"):
            return None
        return real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", no_readers)
    for flags, extra in (
        (["--pfile", files / "mouse2k"], "lmmscan[pgen]"),
        (["--bgen", files / "mouse2k.bgen"], "lmmscan[bgen]"),
        (["--vcf", files / "mouse2k.vcf.gz"], "lmmscan[vcf]"),
    ):
        refused(capsys, files, flags, flags[0], extra)


def test_flags_of_another_format_are_refused(files, capsys):
    refused(
        capsys,
        files,
        ["--pfile", files / "mouse2k", "--sample", files / "mouse2k.sample"],
        "--sample goes with --bgen",
    )
    refused(capsys, files, ["--bgen", files / "mouse2k.bgen", "--vcf-field", "GT"], "--vcf")
    refused(capsys, files, ["--pfile", files / "mouse2k", "--info", "0.5"], "--info")


def test_hwe_on_dosages_is_refused(files, capsys):
    refused(capsys, files, ["--bgen", files / "mouse2k.bgen", "--hwe", "0.001"], "--hwe")
