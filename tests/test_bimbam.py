"""BIMBAM mean-genotype files and annotations as GEMMA reads them."""

from __future__ import annotations

import gzip
import pickle

import numpy as np
import pytest

from lmmscan import InputError
from lmmscan.bimbam import read_bimbam, read_bimbam_anno

G = np.array(
    [
        [0, 1, 2, np.nan, 1],
        [2, 2, 1, 0, 0.25],
        [1, np.nan, np.nan, 1, 1],
        [0.5, 1.5, 0, 2, 1],
    ]
)  # SNPs x individuals


def write(path, seps=(", ", " ", "\t", ","), gz=False, extra_line=""):
    lines = []
    for j, row in enumerate(G):
        sep = seps[j % len(seps)]
        vals = ["NA" if np.isnan(v) else f"{v:g}" for v in row]
        lines.append(sep.join([f"rs{j}", "A", "T", *vals]))
    text = "\n".join(lines) + "\n" + extra_line
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_reads_dosages_any_separator(tmp_path, gz):
    src = read_bimbam(write(tmp_path / "g.txt", gz=gz))
    assert (src.n_samples, src.n_snps) == (5, 4)
    np.testing.assert_array_equal(src.read(0, 4), G.T)
    assert list(src.snps.columns) == ["chr", "rs", "ps", "allele1", "allele0"]
    assert src.snps["rs"].tolist() == ["rs0", "rs1", "rs2", "rs3"]
    assert (src.snps["chr"] == "-9").all() and (src.snps["ps"] == -9).all()
    assert (src.snps["allele1"] == "A").all() and (src.snps["allele0"] == "T").all()


def test_blocks_in_any_order_samples_and_pickle(tmp_path):
    src = read_bimbam(write(tmp_path / "g.txt.gz", gz=True))
    np.testing.assert_array_equal(src.read(2, 4, np.array([4, 0])), G[2:4][:, [4, 0]].T)
    np.testing.assert_array_equal(src.read(0, 1), G[:1].T)  # backwards: reopens
    assert src.read(1, 1).shape == (5, 0)
    clone = pickle.loads(pickle.dumps(src))
    np.testing.assert_array_equal(clone.read(1, 3), G[1:3].T)


def test_annotation_gives_chr_and_ps(tmp_path):
    anno = tmp_path / "a.txt"
    anno.write_text("rs0 100 1 0.1\nrs2\tNA\tX\nrs3,300\nrs9 5 2\n")
    src = read_bimbam(write(tmp_path / "g.txt"), anno)
    assert src.snps["chr"].tolist() == ["1", "-9", "X", "-9"]
    assert src.snps["ps"].tolist() == [100, -9, -9, 300]
    assert read_bimbam_anno(anno)["rs9"] == ("2", 5)


@pytest.mark.parametrize("gz", [False, True])
def test_a_byte_order_mark_is_no_part_of_the_first_id(tmp_path, gz):
    """Mutation fuzzing (helper 43): a file saved with a UTF-8 BOM gave the
    first SNP the ID '\ufeffrs0' (chr/ps -9 however annotated, not matched
    by --snps), and the annotation's first SNP was left unplaced."""
    from lmmscan.textio import read_snp_list

    geno = write(tmp_path / "g.txt")
    bom = b"\xef\xbb\xbf" + geno.read_bytes()
    (tmp_path / "b.txt").write_bytes(gzip.compress(bom) if gz else bom)
    anno = tmp_path / "a.txt"
    anno.write_bytes(b"\xef\xbb\xbfrs0 100 1\nrs1 200 1\n")
    src = read_bimbam(tmp_path / "b.txt", anno)
    assert src.snps["rs"].tolist() == ["rs0", "rs1", "rs2", "rs3"]
    assert src.snps["ps"].tolist() == [100, 200, -9, -9]
    np.testing.assert_array_equal(src.read(0, 4), G.T)
    (tmp_path / "s.txt").write_bytes(b"\xef\xbb\xbfrs2\nrs3\n")
    assert read_snp_list(tmp_path / "s.txt", "--snps") == ["rs2", "rs3"]


@pytest.mark.parametrize("pos", ["99999999999999999999", "1e30", "-1e19"])
def test_annotation_position_beyond_64_bits_names_its_field(tmp_path, pos):
    """Before: an OverflowError traceback when the positions became int64."""
    anno = tmp_path / "a.txt"
    anno.write_text(f"rs0 100 1\nrs1 {pos} 1\n")
    with pytest.raises(InputError, match=r"line 2, column 2: position .* is out of range"):
        read_bimbam(write(tmp_path / "g.txt"), anno)


def test_a_line_without_genotypes_says_what_a_line_needs(tmp_path):
    """Before: "-1 genotypes where the first SNP has 2"."""
    path = tmp_path / "g.txt"
    path.write_text("rs0 A T 1 2\nrs1 A\nrs2 A T 0 1\n")
    with pytest.raises(InputError, match="line 2: a line needs rs, two alleles and genotypes; "
                       "found 2 fields"):  # fmt: skip
        read_bimbam(path)


def test_an_id_that_is_not_utf8_is_refused(tmp_path):
    """Before: replaced by U+FFFD on its way to the table, silently (the .bim's
    reader refuses it)."""
    path = tmp_path / "g.txt"
    path.write_bytes(b"rs0 A T 1 2\nrs\xff1 A T 0 1\n")
    with pytest.raises(InputError, match=r"line 2, column 1: the rs ID .* is not UTF-8"):
        read_bimbam(path)


def test_windows_line_ends_and_blank_lines(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("rs0 A T 1 2\r\n\r\nrs1 A T 0 NA\r\n")
    src = read_bimbam(path)
    np.testing.assert_array_equal(src.read(0, 2), [[1, 0], [2, np.nan]])


def test_wrong_number_of_genotypes_names_the_line(tmp_path):
    path = write(tmp_path / "g.txt", extra_line="rs9 A T 1 1 1\n")
    with pytest.raises(InputError) as exc:
        read_bimbam(path)
    msg = str(exc.value)
    assert str(path) in msg and "line 5" in msg and "3 genotypes" in msg


def test_bad_token_names_line_and_column(tmp_path):
    path = tmp_path / "g.txt"
    path.write_text("rs0 A T 1 2 0\nrs1 A T 0 x 1\n")
    src = read_bimbam(path)
    with pytest.raises(InputError) as exc:
        src.read(0, 2)
    msg = str(exc.value)
    assert "line 2" in msg and "column 5" in msg and "'x'" in msg


@pytest.mark.parametrize("token", ["nan", "NaN", "-nan", "inf", "-Infinity", "1e999", "1_0", "+"])
def test_only_na_is_missing(tmp_path, token):
    """nan and inf spellings are errors (only NA is missing), as is anything
    Python's float reads that a C parser does not ("1_0"); the error names the
    SNP's line and the token's column in any block."""
    path = tmp_path / "g.txt"
    path.write_text(f"rs0 A T 1 2 0\nrs1 A T NA 1 1\n\nrs2 A T 0,1,{token}\n")
    src = read_bimbam(path)
    np.testing.assert_array_equal(src.read(0, 2), [[1, np.nan], [2, 1], [0, 1]])
    for start in (0, 1, 2):
        with pytest.raises(InputError) as exc:
            src.read(start, 3)
        msg = str(exc.value)
        assert "line 4" in msg and "column 6" in msg and repr(token) in msg


@pytest.mark.parametrize("text", ["", "\n\n", "rs0 A T\n"])
def test_no_snp_or_no_genotype(tmp_path, text):
    path = tmp_path / "g.txt"
    path.write_text(text)
    with pytest.raises(InputError, match="g.txt"):
        read_bimbam(path)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_bimbam(tmp_path / "none.txt")


def test_mouse_bimbam_equals_plink_calls(mouse_dir, mouse_plink):
    """GEMMA's example: the .bed holds the BIMBAM dosages' hard calls."""
    src = read_bimbam(mouse_dir / "mouse_hs1940.geno.txt.gz", mouse_dir / "mouse_hs1940.anno.txt")
    assert (src.n_samples, src.n_snps) == (1940, 12226)
    X = src.read(0, 500)
    P = mouse_plink.read(0, 500)
    integer = X == np.round(X)
    np.testing.assert_array_equal(X[integer], P[integer])
    assert src.snps["rs"].tolist()[:500] == mouse_plink.snps["rs"].tolist()[:500]


def test_blocks_are_fortran_ordered_fresh_and_searched_for_repeats(tmp_path, monkeypatch):
    """Each SNP's values together, as the file's lines hold them (the samples
    gathered from the parsed lines, in the order asked): the layout the
    engine's repeat-SNP search takes; every read a new, writeable array."""
    import lmmscan
    from lmmscan import engine

    src = read_bimbam(write(tmp_path / "g.txt"))
    block = G[1:4].T  # individuals x SNPs
    for samples, rows in [
        (None, [0, 1, 2, 3, 4]),
        (np.array([4, 0, 2]), [4, 0, 2]),
        (np.array([True, False, True, True, False]), [0, 2, 3]),
        ([], []),
    ]:
        X = src.read(1, 4, samples)
        assert X.flags.f_contiguous and X.flags.writeable
        np.testing.assert_array_equal(X, block[rows])
    a, b = src.read(0, 4), src.read(0, 4)
    a[0, 0] = 99.0
    assert b[0, 0] == 0.0
    with pytest.raises(InputError, match="sample mask must have 5 entries"):
        src.read(0, 2, np.array([True, False]))
    # a study whose SNPs repeat: the scan compacts its BIMBAM blocks
    rng = np.random.default_rng(2)
    n = 60
    base = rng.binomial(2, 0.4, size=(n, 40)).astype(float)
    geno = base[:, np.arange(80) % 40]  # every SNP twice
    lines = [", ".join([f"rs{j}", "A", "T", *[f"{v:g}" for v in geno[:, j]]]) for j in range(80)]
    (tmp_path / "rep.txt").write_text("\n".join(lines) + "\n")
    seen = []
    search = engine.distinct_snps
    monkeypatch.setattr(
        engine, "distinct_snps", lambda Xk, t: seen.append(search(Xk, t)) or seen[-1]
    )
    y = base[:, 0] + rng.normal(size=n)
    Z = base - base.mean(axis=0)
    lmmscan.scan(read_bimbam(tmp_path / "rep.txt"), y, kinship=Z @ Z.T / 40, test="wald")
    assert seen and seen[0][1] is not None and seen[0][0].shape[1] < 80


def test_dosages_outside_0_2_are_used_and_named_once(tmp_path, capsys):
    """GEMMA uses -9 or 2.5 as dosages; so does lmmscan, but it says so (a -9
    is likely meant as missing, NA in BIMBAM): once per SNP though the file is
    read twice (kinship, then tests)."""
    import json

    from lmmscan.cli import main

    rng = np.random.default_rng(0)
    n, m = 60, 30
    G = rng.binomial(2, 0.3, (m, n)).astype(float)
    G[5, 3], G[7, 1], G[7, 2] = -9.0, 2.5, -0.2
    geno = tmp_path / "g.txt"
    geno.write_text("".join(f"rs{j}, A, T, " + ", ".join(f"{v:g}" for v in G[j]) + "\n"
                            for j in range(m)))  # fmt: skip
    np.savetxt(tmp_path / "y.txt", rng.normal(size=n))
    argv = ["scan", "--bimbam-geno", geno, "--pheno", tmp_path / "y.txt", "--out", tmp_path / "o"]
    assert main([str(a) for a in argv]) == 0
    said = (
        f"{geno}: 2 SNPs read with genotype values outside [0, 2] (the first -9, line 6, "
        "column 7), used as dosages as GEMMA does; BIMBAM writes a missing genotype as NA"
    )
    assert f"warning: {said}" in capsys.readouterr().out
    assert said in json.loads((tmp_path / "o.null.json").read_text())["warnings"]
    kin = ["kinship", "--bimbam-geno", geno, "--pheno", tmp_path / "y.txt", "--out",
           tmp_path / "K.txt"]  # fmt: skip
    assert main([str(a) for a in kin]) == 0  # (the kinship command said nothing)
    assert f"warning: {said}" in capsys.readouterr().out
    G[5, 3], G[7, 1], G[7, 2] = 0.0, 2.0, 0.0
    geno.write_text("".join(f"rs{j}, A, T, " + ", ".join(f"{v:g}" for v in G[j]) + "\n"
                            for j in range(m)))  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    assert "outside [0, 2]" not in capsys.readouterr().out


@pytest.mark.parametrize("gz", [False, True])
def test_one_reader_read_by_two_threads_at_once(tmp_path, gz):
    """The reader's open file and position were shared unlocked: two scans of
    one reader on two threads read each other's bytes ("genotype 'rs608' is
    not a number", "I/O operation on closed file") or another SNP's values
    (p off by 0.8, exit 0).  Reads of blocks in every order on four threads
    must give what one thread gives."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(3)
    n, m = 60, 400
    G = rng.binomial(2, rng.uniform(0.1, 0.5, m), size=(n, m)).astype(float)
    path = tmp_path / ("g.txt.gz" if gz else "g.txt")
    text = "".join(f"rs{j} A T " + " ".join(f"{v:g}" for v in G[:, j]) + "\n" for j in range(m))
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    reader = read_bimbam(path)
    starts = list(range(0, m, 25))
    jobs = [(start, samples) for start in starts for samples in (None, np.arange(0, n, 2))]
    rng.shuffle(jobs)

    def block(job):
        start, samples = job
        return reader.read(start, min(m, start + 25), samples)

    for _ in range(3):
        with ThreadPoolExecutor(4) as pool:
            blocks = list(pool.map(block, jobs))
        for (start, samples), X in zip(jobs, blocks, strict=True):
            expected = G[:, start : start + 25]
            np.testing.assert_array_equal(X, expected if samples is None else expected[samples])


def test_lines_ending_in_a_carriage_return_alone_are_named(tmp_path):
    """Classic Mac line ends: one SNP line of every value, and the error
    blamed the phenotype file (mutation fuzzing, helper 43).  CRLF reads."""
    text = write(tmp_path / "g.txt").read_text()
    (tmp_path / "cr.txt").write_text(text.replace("\n", "\r"), newline="")
    with pytest.raises(InputError, match=r"cr\.txt, line 1: its lines end in a carriage return"):
        read_bimbam(tmp_path / "cr.txt")
    for ending in ("\r\n", "\r\r\n"):  # the second: CRLF written in Windows text mode
        (tmp_path / "crlf.txt").write_text(text.replace("\n", ending), newline="")
        np.testing.assert_array_equal(read_bimbam(tmp_path / "crlf.txt").read(0, 4), G.T)
    # the annotation too (review, helper 54): one line, every SNP but the first unplaced
    anno = tmp_path / "a.txt"
    anno.write_text("rs0 100 1\rrs1 200 1\rrs2 300 2\r", newline="")
    with pytest.raises(InputError, match=r"a\.txt, line 1: its lines end in a carriage return"):
        read_bimbam_anno(anno)
    anno.write_text("rs0 100 1\r\nrs1 200 1\r\n", newline="")
    assert read_bimbam_anno(anno) == {"rs0": ("1", 100), "rs1": ("1", 200)}


def test_annotation_blank_lines_are_skipped_and_counted(tmp_path):
    """An annotation's rows are matched by rs: a blank line said "empty line
    in the annotation file (one row per individual expected)" (re-fuzzing,
    helper 46); it is skipped, and a later error's line counts it."""
    anno = tmp_path / "a.txt"
    anno.write_text("rs0 100 1\n\nrs1 200 1\n  \nrs2 300 2\n")
    src = read_bimbam(write(tmp_path / "g.txt"), anno)
    assert src.snps["ps"].tolist() == [100, 200, 300, -9]
    anno.write_text("rs0 100 1\n\nrs1 2x0 1\n")
    with pytest.raises(InputError, match=r"a\.txt, line 3, column 2: position '2x0'"):
        read_bimbam_anno(anno)
    anno.write_text("\n\n")
    with pytest.raises(InputError, match="annotation file is empty"):
        read_bimbam_anno(anno)
    for blank in (",,", "\f", " \t\r"):  # blank to the reader: the lines still count (review)
        anno.write_text(f"rs1 100 1\n{blank}\nrs2 x 1\n")
        with pytest.raises(InputError, match=r"a\.txt, line 3, column 2: position 'x'"):
            read_bimbam_anno(anno)


def test_a_text_kinship_with_a_byte_order_mark_says_so(tmp_path):
    from lmmscan.textio import read_kinship

    (tmp_path / "K.txt").write_bytes(b"\xef\xbb\xbf1 0\n0 1\n")
    with pytest.raises(InputError, match=r"K\.txt, line 1, column 1: the file starts with a UTF-8"):
        read_kinship(tmp_path / "K.txt", 2)
