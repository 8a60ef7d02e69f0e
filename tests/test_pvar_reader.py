"""The .pvar's fast path (POS parsed as integers by read_csv) reads what the
all-text path reads and refuses what it refuses, with the same message."""

from __future__ import annotations

import pytest

from lmmscan import pgen
from lmmscan._errors import InputError

HEADER = "##fileformat=PVARv1.0\n#CHROM\tPOS\tID\tREF\tALT\tINFO\n"
ROWS = "1\t100\trs1\tA\tG\t.\n1\t200\trs2\tC\tT\tAF=0.1\n2\t-9\trs3\tA\tC\t.\n"
BIMLIKE = "1 rs1 0 100 G A\n1 rs2 0.5 200 T C\n2 rs3 0 -9 C A\n"
FIVE = "1 rs1 100 G A\n1 rs2 200 T C\n"


def outcome(path, fast):
    try:
        table = pgen.read_pvar(path, fast=fast)
    except InputError as exc:
        return "error", str(exc)
    return "ok", (table.astype(str).to_numpy().tolist(), table["ps"].dtype.str)


CASES = [
    HEADER + ROWS,
    HEADER + ROWS.replace("\t200\t", "\t2e2\t"),  # an integer, not plain: text path
    HEADER + ROWS.replace("\t200\t", "\t200.5\t"),  # refused by both
    HEADER + ROWS.replace("\t200\t", "\t\t"),  # an empty field
    HEADER + ROWS + "3\t300\trs4\tG\n",  # a short line
    HEADER + ROWS + "3\t300\trs4\tG\tT\t.\textra\n",  # a long line
    HEADER + ROWS.replace("\tAF=0.1", "\t"),  # INFO empty
    HEADER.replace("POS", "BP") + ROWS,  # no POS column
    HEADER,  # no variants
    BIMLIKE,
    BIMLIKE.replace(" 200 ", " 200.0 "),
    BIMLIKE + "3 rs4 0\n",
    FIVE,
    FIVE.replace(" 200 ", " x "),
    "1 rs1 100 G\n",  # four columns
    (HEADER + ROWS).replace("\n", "\r\n"),  # Windows line ends
    BIMLIKE.replace("\n", "\r\n"),
]


@pytest.mark.parametrize("text", CASES)
def test_fast_path_equals_the_text_path(tmp_path, text):
    path = tmp_path / "s.pvar"
    path.write_text(text)
    assert outcome(path, True) == outcome(path, False)


def test_fast_path_is_taken(tmp_path, monkeypatch):
    calls = []
    real = pgen._read_text_table

    def spy(path, skip, header, what, dtype=str):
        calls.append(dtype is str)
        return real(path, skip, header, what, dtype)

    monkeypatch.setattr(pgen, "_read_text_table", spy)
    for text in (HEADER + ROWS, BIMLIKE, FIVE):
        path = tmp_path / "s.pvar"
        path.write_text(text)
        calls.clear()
        assert pgen.read_pvar(path)["ps"].tolist()[:2] == [100, 200]
        assert calls == [False]  # one read, with POS typed


PLAIN_CASES = [
    *CASES,
    HEADER + ROWS.replace("rs2", "rs 2"),  # a space inside a field
    HEADER + ROWS.replace("rs2", "rs\u00e92"),  # not ASCII
    HEADER + ROWS.replace("\t200\t", "\t+200\t"),
    HEADER + ROWS.replace("\t200\t", f"\t{2**63}\t"),
    HEADER + ROWS.replace("\tG\t", "\tG,T\t"),  # multi-allelic
    HEADER.replace("INFO", "ID") + ROWS,  # a column named twice
    "#CHROM\tPOS\tID\tREF\tALT\n1\t5\tx\tA\tC",  # no ## line, no last newline
    HEADER.replace("#CHROM\tPOS", "#CHROM\tFOO\tPOS") + ROWS.replace("\n", "\tq\n"),
    HEADER.replace("\tINFO", "") + "1\t100\t\trs1\tA\n1\t200\trs2\tG\tT\n",  # an empty field
    HEADER.replace("INFO", "INF\u00d8") + ROWS,  # a header that is not ASCII
]


@pytest.mark.parametrize("text", PLAIN_CASES)
def test_plain_split_equals_read_csv(tmp_path, text):
    """The core's split of a plain .pvar against read_pvar's DataFrame; None
    (read_pvar reads it then) for anything that is not plain."""
    path = tmp_path / "s.pvar"
    path.write_bytes(text.encode())
    table = pgen._read_pvar_plain(path)
    if table is None:
        return
    frame = pgen.read_pvar(path)
    got = table.frame()
    assert got["chr"].tolist() == frame["chr"].tolist()
    assert got["rs"].tolist() == frame["rs"].tolist()
    assert got["ps"].tolist() == frame["ps"].tolist()
    assert got["allele1"].tolist() == frame["alt"].tolist()
    assert got["allele0"].tolist() == frame["ref"].tolist()


def test_plain_is_taken_for_plink2s_own_pvar(tmp_path):
    path = tmp_path / "s.pvar"
    path.write_text(HEADER + ROWS)
    assert pgen._read_pvar_plain(path) is not None
    for text in (
        BIMLIKE,
        HEADER + ROWS.replace("\n", "\r\n"),
        HEADER + ROWS + "\n",
        HEADER + ROWS.replace("\tAF=0.1", "\t"),  # an empty INFO: two tabs
    ):
        path.write_text(text)
        assert pgen._read_pvar_plain(path) is None
