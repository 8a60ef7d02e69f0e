"""The .bim's fast paths (split by the core into arrays; else positions parsed
as integers by read_csv) read what the general path reads and refuse what it
refuses, with the same message."""

from __future__ import annotations

import numpy as np
import pytest

from lmmscan import plink
from lmmscan._errors import InputError
from lmmscan.variants import VariantTable

GOOD = "1\trs1\t0\t100\tA\tG\n1 rs2 0.5 200 C T\n2\trs3\t0\t-9\tA\tC\n"


def outcome(fn, name):
    try:
        got = fn(name)
    except InputError as exc:
        return "error", str(exc)
    # the columns the source keeps (chromosome, ID, alleles) and the positions
    if isinstance(got, VariantTable):
        rows = [[got[c][i] for c in ("chr", "rs", "allele1", "allele0")] for i in range(len(got))]
        return "ok", (rows, got.ps.tolist())
    table, ps = got
    return "ok", (table[[0, 1, 4, 5]].astype(str).to_numpy().tolist(), ps.tolist())


@pytest.mark.parametrize(
    "text",
    [
        GOOD,
        GOOD + "3 rs4 0 5000000000 G T extra\n",  # a longer line than the first
        GOOD.replace("\n", " x\n"),  # seven columns everywhere
        GOOD + "3 rs4 0 300 G\n",  # a short line
        GOOD + "3 rs4 0\n",  # shorter, the position missing
        GOOD.replace("200", "2e2"),  # not a plain integer, accepted by both
        GOOD.replace("200", "200.0"),
        GOOD.replace("200", "+200"),
        GOOD.replace("200", "200.5"),  # refused by both
        GOOD.replace("200", "chr"),
        GOOD.replace("200", str(2**62 + 1)),
        GOOD.replace("200", str(-(2**63))),
        GOOD.replace("200", str(2**64)),
        "",
        "1 rs1 0 100 A\n",  # five columns
        "  1 rs1 0 100 A G\n1 rs2 0 200 C T  \n",  # leading and trailing blanks
        GOOD.replace("\n", "\r\n"),  # Windows line ends
        GOOD + "\n3 rs4 0 300 G T\n",  # a blank line
        GOOD + "3 rs4 0 300 G T",  # no newline at the end
        GOOD.replace("rs2", '"rs 2"'),  # a quoted field
        GOOD.replace("rs2", "rs\u00e92"),  # not ASCII
        GOOD.replace("200", "0200"),
        GOOD.replace("200", "-0"),
        GOOD.replace("200", "+"),
        GOOD.replace("200", str(2**62)),
        GOOD.replace("200", str(-(2**62))),
        GOOD.replace("\t", "  \t "),  # runs of blanks
    ],
)
def test_fast_path_equals_the_general_reader(tmp_path, text):
    name = str(tmp_path / "s.bim")
    (tmp_path / "s.bim").write_text(text)
    # the general reader alone is how every .bim was read before the fast path
    assert outcome(plink._read_bim, name) == outcome(plink._read_bim_general, name)


def test_positions_are_exact_integers(tmp_path):
    name = str(tmp_path / "s.bim")
    big = 2**53 + 1  # not a double: the fast path keeps it exact
    (tmp_path / "s.bim").write_text(f"1 rs1 0 {big} A G\n")
    ps = plink._read_bim(name).ps
    assert ps.dtype == np.int64 and ps.tolist() == [big]


def test_non_utf8_goes_to_the_general_reader(tmp_path):
    path = tmp_path / "s.bim"
    path.write_bytes(b"1 rs1 0 100 A G\n1 rs\xff 0 200 C T\n")
    with pytest.raises(InputError, match="line 2, column 2.*not UTF-8"):
        plink._read_bim(str(path))


def test_a_good_bim_takes_one_pass(tmp_path, monkeypatch):
    """Not plain (Windows line ends) but well formed: one read_csv pass, not
    the general reader's second one."""
    name = str(tmp_path / "s.bim")
    (tmp_path / "s.bim").write_bytes(GOOD.replace("\n", "\r\n").encode())

    def second_pass(*args, **kwargs):
        raise AssertionError("read twice")

    monkeypatch.setattr(plink, "_read_table", second_pass)
    assert plink._read_bim_plain(plink.Path(name)) is None
    table = plink._read_bim(name)
    assert table.ps.tolist() == [100, 200, -9] and table["rs"].tolist() == ["rs1", "rs2", "rs3"]


def test_a_plain_bim_is_split_by_the_core(tmp_path, monkeypatch):
    """No read_csv (no Python object per field) for plain text; a .bim that is
    not plain still reads through pandas."""
    import pandas as pd

    name = str(tmp_path / "s.bim")
    (tmp_path / "s.bim").write_text(GOOD)

    def read_csv(*args, **kwargs):
        raise AssertionError("read_csv called")

    monkeypatch.setattr(pd, "read_csv", read_csv)
    table = plink._read_bim(name)
    assert table.ps.tolist() == [100, 200, -9] and table["rs"].tolist() == ["rs1", "rs2", "rs3"]
    assert table["chr"].text() == b"1\n1\n2\n"
    (tmp_path / "s.bim").write_text(GOOD.replace("200", "2e2"))
    with pytest.raises(AssertionError, match="read_csv called"):
        plink._read_bim(name)


@pytest.mark.parametrize("text", [GOOD, GOOD.replace("200", "200.0"), GOOD + "3 rs4 0 300 G\n"])
def test_a_bim_from_a_pipe_is_read_once(tmp_path, text):
    import os
    import threading

    plain = tmp_path / "plain.bim"
    plain.write_text(text)
    fifo = tmp_path / "pipe.bim"
    os.mkfifo(fifo)
    # a reader from the start: the writer's open never waits for one, and its
    # writes never break (EPIPE) when the reader under test came and went first
    holder = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer = threading.Thread(target=fifo.write_text, args=(text,))
    writer.start()
    try:
        # A FIFO that no process has opened for writing reads as empty (by
        # design: never a wait for ever).  On a busy machine the reader can
        # open it before the writer thread does: it is then read again.
        for _ in range(200):
            # a writer done before the read has all its data in the pipe (the
            # holder keeps it): reading nothing then is a real failure
            done = not writer.is_alive()
            got = outcome(plink._read_bim, str(fifo))
            if got[0] == "ok" or "nothing to read from this pipe" not in got[1] or done:
                break
            writer.join(timeout=0.05)
    finally:
        writer.join(timeout=30)
        if writer.is_alive():  # the reader never opened the pipe: drain it rather than hang
            fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            os.set_blocking(fd, True)
            while os.read(fd, 1 << 16):
                pass
            os.close(fd)
            writer.join()
        os.close(holder)
    want = outcome(plink._read_bim, str(plain))
    assert got[0] == want[0]
    if got[0] == "ok":
        assert got == want
    else:  # the same message about another file name
        assert got[1] == want[1].replace("plain.bim", "pipe.bim")
