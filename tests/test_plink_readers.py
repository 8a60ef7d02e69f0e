"""The .bed decoded by pgenlib (the default when the pgen extra is installed)
and by bed-reader: the same genotypes, so the same results, bit for bit."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

import lmmscan
from lmmscan import InputError

pytest.importorskip("pgenlib")


@pytest.fixture(scope="module")
def with_missing(tmp_path_factory) -> Path:
    """A small .bed with missing calls in every pattern (whole SNPs, whole samples)."""
    from bed_reader import to_bed

    rng = np.random.default_rng(7)
    n, m = 37, 203  # neither a multiple of 4 nor of a block
    G = rng.integers(0, 3, (n, m)).astype(np.float32)
    G[rng.random((n, m)) < 0.1] = np.nan
    G[:, 5] = np.nan
    G[3, :] = np.nan
    prefix = tmp_path_factory.mktemp("bed") / "g"
    to_bed(f"{prefix}.bed", G)
    return prefix


@pytest.mark.parametrize(
    "samples",
    [None, "mask", "ascending", "unordered", "repeated"],
)
def test_both_readers_give_the_same_genotypes(with_missing, samples):
    a = lmmscan.read_plink(with_missing, reader="pgenlib")
    b = lmmscan.read_plink(with_missing, reader="bed-reader")
    n = a.n_samples
    rng = np.random.default_rng(1)
    rows = {
        None: None,
        "mask": rng.random(n) < 0.7,
        "ascending": np.flatnonzero(rng.random(n) < 0.5),
        "unordered": rng.permutation(n)[:20],
        "repeated": np.array([4, 1, 4, 30, 0]),
    }[samples]
    for start, stop in ((0, 203), (17, 18), (100, 100), (199, 203)):
        x, y = a.read(start, stop, rows), b.read(start, stop, rows)
        assert x.shape == y.shape and x.dtype == y.dtype == np.float64
        assert x.flags.f_contiguous
        np.testing.assert_array_equal(x, y)  # NaN where NaN, exact elsewhere


def test_auto_is_pgenlib_when_installed(with_missing):
    assert lmmscan.read_plink(with_missing).reader == "pgenlib"


def test_unknown_reader_is_refused(with_missing):
    with pytest.raises(InputError, match="reader must be one of"):
        lmmscan.read_plink(with_missing, reader="plink")


def test_pgenlib_reader_pickles_without_its_handle(with_missing):
    a = lmmscan.read_plink(with_missing)
    first = a.read(0, 50)
    b = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(b.read(0, 50), first)


def test_scan_tables_equal_bit_for_bit(mouse_dir):
    """mouse_hs1940 end to end through each reader: the same table."""
    prefix = mouse_dir / "mouse_hs1940"
    tables = []
    for reader in ("pgenlib", "bed-reader"):
        geno = lmmscan.read_plink(prefix, reader=reader)
        y = geno.phenotype
        null = lmmscan.fit_null(y, None, kinship=lmmscan.kinship(geno))
        tables.append(lmmscan.scan(geno, null_model=null, test="all"))
    assert tables[0].equals(tables[1])


def test_cut_short_while_read_names_the_bed(tmp_path, with_missing):
    bed = tmp_path / "g.bed"
    for ext in ("bed", "bim", "fam"):
        (tmp_path / f"g.{ext}").write_bytes(Path(f"{with_missing}.{ext}").read_bytes())
    geno = lmmscan.read_plink(tmp_path / "g", reader="pgenlib")
    geno.read(0, 10)
    bed.write_bytes(bed.read_bytes()[:500])
    with pytest.raises(InputError, match=r"cannot read SNPs 51-203: the file changed") as err:
        geno.read(50, 203)
    assert str(bed) in str(err.value)


def _blank_then(lines: list[str], blank_at: int) -> str:
    """The lines with a blank one inserted before line ``blank_at`` (1-based)."""
    return "\n".join(lines[: blank_at - 1] + [""] + lines[blank_at - 1 :]) + "\n"


def test_line_numbers_count_blank_lines(tmp_path):
    """Blank lines are skipped but were not counted: an error on physical
    line 21 after a blank line 5 said line 20 (.bim positions, .fam and
    .psam duplicates, .pvar positions; mutation fuzzing, helper 43)."""
    import shutil

    from .conftest import copy_converted

    demo = Path(lmmscan.__file__).parent / "data" / "demo"
    for ext in (".bed", ".fam"):
        shutil.copy(f"{demo}{ext}", tmp_path / f"d{ext}")
    bim = Path(f"{demo}.bim").read_text().splitlines()
    bim[19] = "\t".join(bim[19].split("\t")[:3] + ["x"] + bim[19].split("\t")[4:])
    (tmp_path / "d.bim").write_text(_blank_then(bim, 5))
    with pytest.raises(InputError, match=r"d\.bim, line 21, column 4: position 'x'"):
        lmmscan.read_plink(tmp_path / "d")
    shutil.copy(f"{demo}.bim", tmp_path / "d.bim")
    fam = Path(f"{demo}.fam").read_text().splitlines()
    fam[19] = fam[2]
    (tmp_path / "d.fam").write_text(_blank_then(fam, 5))
    with pytest.raises(InputError, match=r"d\.fam, line 21: .* is on lines 3 and 21"):
        lmmscan.read_plink(tmp_path / "d")

    conv = tmp_path / "conv"
    conv.mkdir()
    copy_converted(conv)
    psam = (conv / "mouse2k.psam").read_text().splitlines()
    psam[20] = psam[3]  # data rows 3 and 20 (file lines 4 and 21), then a blank line 5
    (conv / "mouse2k.psam").write_text(_blank_then(psam, 5))
    with pytest.raises(InputError, match=r"mouse2k\.psam, line 22: .* on lines 4 and 22"):
        lmmscan.read_pgen(conv / "mouse2k")
    shutil.copy(Path(__file__).parent / "data" / "converted" / "mouse2k.psam", conv)
    pvar = (conv / "mouse2k.pvar").read_text().splitlines()
    pvar[20] = pvar[20].replace("\t", "\t1.5x", 1)  # line 21's POS
    (conv / "mouse2k.pvar").write_text(_blank_then(pvar, 5))
    with pytest.raises(InputError, match=r"mouse2k\.pvar, line 22: position '1\.5x"):
        _ = lmmscan.read_pgen(conv / "mouse2k").snps
    pytest.importorskip("bgen")
    sample = (conv / "mouse2k.sample").read_text().splitlines()
    sample[12] = " ".join(sample[12].split()[:-1])  # line 13 short: 14 after the blank line
    (conv / "mouse2k.sample").write_text(_blank_then(sample, 5))
    with pytest.raises(InputError, match=r"mouse2k\.sample, line 14: \d+ fields where line 1"):
        lmmscan.read_bgen(conv / "mouse2k.bgen", conv / "mouse2k.sample")
    (conv / "mouse2k.sample").write_text("\n" + _blank_then(sample, 5))  # a blank first line
    with pytest.raises(InputError, match=r"mouse2k\.sample, line 15: \d+ fields where line 1"):
        lmmscan.read_bgen(conv / "mouse2k.bgen", conv / "mouse2k.sample")


@pytest.mark.parametrize("token", ["1e-400", "2565440.0000000001"])
def test_a_position_that_is_no_integer_is_refused_though_it_rounds_to_one(tmp_path, token):
    """read_csv's int64 parse (and the float check after it) took "1e-400"
    as position 0 and "2565440.0000000001" as 2565440 (mutation fuzzing,
    helper 43).  "1e3" and "12.0" write integers and are read."""
    import shutil

    from .conftest import copy_converted

    demo = Path(lmmscan.__file__).parent / "data" / "demo"
    for ext in (".bed", ".fam"):
        shutil.copy(f"{demo}{ext}", tmp_path / f"d{ext}")
    conv = tmp_path / "conv"
    conv.mkdir()
    copy_converted(conv)
    bim = Path(f"{demo}.bim").read_text().splitlines()
    pvar = (conv / "mouse2k.pvar").read_text().splitlines()
    for tok, refused in ((token, True), ("1e3", False), ("12.0", False)):
        fields = bim[7].split("\t")
        fields[3] = tok
        (tmp_path / "d.bim").write_text("\n".join([*bim[:7], "\t".join(fields), *bim[8:]]) + "\n")
        fields = pvar[8].split("\t")
        fields[1] = tok
        (conv / "mouse2k.pvar").write_text(
            "\n".join([*pvar[:8], "\t".join(fields), *pvar[9:]]) + "\n"
        )
        readers = [
            (lambda: lmmscan.read_plink(tmp_path / "d"), r"d\.bim, line 8"),
            (lambda: lmmscan.read_pgen(conv / "mouse2k"), r"\.pvar, line 9"),
        ]
        for read, where in readers:
            if refused:
                with pytest.raises(InputError, match=rf"{where}.*position '{tok}' is not an"):
                    _ = read().snps
            else:
                assert read().snps["ps"][7] == float(tok)


@pytest.mark.parametrize("prefix", [b"\n", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("name", ["mouse2k.psam", "mouse2k.pvar"])
def test_a_psam_or_pvar_opening_with_a_blank_line_or_bom_is_read(tmp_path, prefix, name):
    """A blank first line or a byte-order mark hid the header: the .psam was
    read as a .fam ("needs 6 columns; found 2") and the .pvar's header as a
    row (re-fuzzing, helper 46).  Both now read as without them."""
    from .conftest import copy_converted

    copy_converted(tmp_path)
    clean = lmmscan.read_pgen(tmp_path / "mouse2k")
    snps, samples = clean.snps.copy(), clean.samples.copy()
    path = tmp_path / name
    path.write_bytes(prefix + path.read_bytes())
    source = lmmscan.read_pgen(tmp_path / "mouse2k")
    assert source.snps.equals(snps) and source.samples.equals(samples)


def test_missing_dosages_become_nan_a_megabyte_at_a_time():
    """pgenlib's -9 set to NaN across chunk boundaries, with no mask of the
    whole block beside it (one byte a value: 9.5 MiB at n = 2,000 and
    blocks of 5,000, kept in the reading thread's heap, not planned)."""
    import tracemalloc

    from lmmscan.pgen import missing_to_nan

    rng = np.random.default_rng(3)
    out = rng.integers(0, 3, (3001, 1000)).astype(np.float64)
    out[rng.random(out.shape) < 0.05] = -9.0
    out[1047:1050] = -9.0  # across the first chunk's end (1,048 rows)
    expected = np.where(out == -9.0, np.nan, out)
    tracemalloc.start()
    try:
        missing_to_nan(out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(out, expected)
    assert peak <= (1 << 20) + (64 << 10)  # the whole mask: 3 MB
