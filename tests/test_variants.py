"""Variant tables without a Python object per row (lmmscan.variants): the same
tokens, rows and DataFrame as the pandas tables they stand for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmscan
from lmmscan import plink
from lmmscan.genotypes import SubsetGenotypes
from lmmscan.variants import (
    TextColumn,
    VariantRows,
    VariantTable,
    keeps_variants,
    variant_table,
)


def frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "chr": [str(c) for c in rng.integers(1, 23, n)],
            "rs": [f"rs{i}{'x' * (i % 7)}" for i in range(n)],
            "ps": rng.integers(-9, 2**40, n),
            "allele1": [["A", "CT", "-9", "é"][i % 4] for i in range(n)],
            "allele0": ["G"] * n,
        }
    )


@pytest.mark.parametrize(
    "index",
    [
        np.array([], dtype=np.int64),
        np.array([3]),
        np.arange(10, 40),  # a range: shares the buffer
        np.array([0, 2, 3, 7, 8, 9, 99]),
        np.array([99, 0, 5]),  # any order
        slice(5, 50),
        slice(90, 200),
    ],
)
def test_take_is_iloc(index):
    df = frame(100)
    table = VariantTable.from_frame(df)
    got = table.take(index)
    want = df.iloc[index].reset_index(drop=True)
    pd.testing.assert_frame_equal(got.frame(), want, check_dtype=False)
    for name in ("chr", "rs", "allele1", "allele0"):
        assert got[name].text() == "".join(f"{v}\n" for v in want[name]).encode()
    if len(want):
        assert got.row(0) == {k: (int(v) if k == "ps" else v) for k, v in want.iloc[0].items()}


def test_text_with_a_newline_or_tab_is_not_printable():
    col = TextColumn.from_strings(["a", "b\nc", "d"])
    assert len(col) == 3 and col[1] == "b\nc" and col.tolist() == ["a", "b\nc", "d"]
    assert not col.printable()
    assert not TextColumn.from_strings(["a\tb"]).printable()
    assert TextColumn.from_strings(["a", "b"]).printable()
    assert TextColumn.from_strings([]).tolist() == []
    assert TextColumn.from_strings(["A", "A,C", ",,"]).count(b",").tolist() == [0, 1, 2]
    assert TextColumn.from_strings([]).count(b",").size == 0


def test_a_bim_table_is_the_dataframe_it_replaces(tmp_path):
    """The plain .bim's arrays against read_csv's DataFrame of the same file."""
    df = frame(500, seed=1)
    df["allele1"] = df["allele1"].replace("é", "T")  # plain: ASCII
    lines = [f"{r.chr}\t{r.rs}\t0\t{r.ps}\t{r.allele1}\t{r.allele0}\n" for r in df.itertuples()]
    path = tmp_path / "s.bim"
    path.write_text("".join(lines))
    table = plink._read_bim(str(path))
    bim, ps = plink._read_bim_fast(path)
    want = pd.DataFrame(
        {"chr": bim[0], "rs": bim[1], "ps": ps, "allele1": bim[4], "allele0": bim[5]}
    )
    pd.testing.assert_frame_equal(table.frame(), want)


def test_a_subset_has_its_own_rows(mouse_plink):
    """--snps views: their table is the selected rows, never the whole file's
    (which the view's attribute forwarding would otherwise hand out)."""
    src = mouse_plink
    assert keeps_variants(src)
    index = np.array([1, 5, 6, 7, 400, src.n_snps - 1])
    sub = SubsetGenotypes(src, index)
    assert len(variant_table(sub)) == index.size
    pd.testing.assert_frame_equal(variant_table(sub).frame(), sub.snps)
    pd.testing.assert_frame_equal(
        sub.snps, src.snps.iloc[index].reset_index(drop=True), check_dtype=False
    )
    arr = lmmscan.ArrayGenotypes(src.read(0, 3), src.snps.iloc[:3].reset_index(drop=True))
    assert not keeps_variants(arr)
    pd.testing.assert_frame_equal(variant_table(arr).frame(), arr.snps, check_dtype=False)


def test_a_table_is_smaller_than_its_dataframe():
    df = frame(20_000)
    table = VariantTable.from_frame(df)
    assert table.nbytes < df.memory_usage(deep=True).sum() / 2


def test_split_fields_refuses_what_is_not_plain():
    from lmmscan import _core
    from lmmscan._errors import InputError

    ok = _core.split_fields(b"a 1 x\nb -2 y\n", "si", 10)
    assert ok is not None and ok[:2] == (2, 3) and ok[2][1].tolist() == [1, -2]
    for text in (b"a 11 x\n", b"a 1\tx \n", b"a 1 x\n\nb 2 y\n", b"a\n", b"a 1 x\r\n", b""):
        assert _core.split_fields(text, "si", 10) is None, text
    with pytest.raises(InputError, match="kind"):
        _core.split_fields(b"a 1\n", "sx", 10)


def test_take_refuses_what_is_not_a_row_position():
    col = TextColumn.from_strings(["a", "b", "c"])
    with pytest.raises(IndexError):
        col.take(np.array([-2, -1]))
    with pytest.raises(IndexError):
        col.take(np.array([3]))
    with pytest.raises(TypeError):
        col.take(np.array([True, False, True]))
    from lmmscan import _core

    assert _core.split_fields(b"9\n", "i", 3) is None
    assert _core.split_fields(b"3\n-3\n", "i", 3)[2][0].tolist() == [3, -3]
    assert _core.split_fields(b"19\n", "i", 19)[2][0].tolist() == [19]
    assert _core.split_fields(b"20\n", "i", 19) is None


@pytest.mark.parametrize("sizes", [[], [0], [3], [0, 4, 0, 2], [5, 1, 7]])
def test_concatenated_columns_are_one_column_of_all_rows(sizes):
    values = [f"v{i}{'é' * (i % 3)}" for i in range(sum(sizes))]
    parts, at = [], 0
    for k in sizes:
        # each part a view into a larger column, as take() gives
        whole = TextColumn.from_strings(["x", *values[at : at + k], "y"])
        parts.append(whole.take(slice(1, k + 1)))
        at += k
    got = TextColumn.concatenate(parts)
    assert got.tolist() == values
    assert got.text() == TextColumn.from_strings(values).text()
    assert got.offsets.tolist() == TextColumn.from_strings(values).offsets.tolist()


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_variant_rows_give_the_table_of_their_rows(chunk, monkeypatch):
    monkeypatch.setattr(VariantRows, "CHUNK", chunk)
    df = frame(10, seed=3)
    rows = VariantRows()
    add = rows.appenders()
    for r in df.itertuples():
        for append, value in zip(add, (r.chr, r.rs, r.ps, r.allele1, r.allele0), strict=True):
            append(value)
        rows.flush_if_full()
        assert len(rows.chr) < chunk  # no more strings held than a chunk's
    assert len(rows) == len(df)
    pd.testing.assert_frame_equal(rows.table().frame(), df, check_dtype=False)
