"""Variant tables without a Python object per row.

A genotype file's variants (chr, rs, ps, allele1, allele0) as a few arrays:
each text column is one buffer of its tokens, each ended by a newline, with
the offset where each token starts (:class:`TextColumn`); ps is int64.  A
PLINK .bim of 10,000,000 lines is split into them by the core
(``_core.split_fields``) in one pass; BGEN and VCF readers, whose packages
hand out each variant's fields as Python values, fill one chunk of rows at
a time (:class:`VariantRows`), so no row's objects outlive their chunk.  The
tables the scan writes take their rows' tokens straight from the buffers
(``_core.format_rows`` prints a column from exactly this form).

``source.snps`` (a pandas DataFrame) stays the public view; a reader that
keeps a :class:`VariantTable` builds that DataFrame only when it is asked
for.  :func:`variant_table` gives any source's table: its own when it keeps
one, else one made from its DataFrame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

TEXT_COLUMNS = ("chr", "rs", "allele1", "allele0")
COLUMNS = ("chr", "rs", "ps", "allele1", "allele0")


class TextColumn:
    """n tokens in one buffer: token i is ``data[offsets[i] : offsets[i + 1] - 1]``,
    followed by a newline (so a range of rows is one slice of the buffer)."""

    __slots__ = ("data", "offsets")
    _SCAN_ROWS = 1 << 20  # first_holding's rows at a time

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        self.data = np.asarray(data, dtype=np.uint8)
        self.offsets = np.asarray(offsets, dtype=np.int64)

    @classmethod
    def from_strings(cls, values: Sequence[Any]) -> TextColumn:
        """From Python values (their ``str``), UTF-8 with surrogateescape, as
        the tables print them."""
        tokens = [str(v).encode("utf-8", "surrogateescape") for v in values]
        lengths = np.fromiter((len(t) + 1 for t in tokens), dtype=np.int64, count=len(tokens))
        offsets = np.zeros(len(tokens) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        data = np.frombuffer(b"".join(t + b"\n" for t in tokens), dtype=np.uint8)
        return cls(data, offsets)

    @classmethod
    def concatenate(cls, columns: Sequence[TextColumn]) -> TextColumn:
        """The rows of ``columns``, one after the other, in one buffer."""
        if not columns:
            return cls.from_strings([])
        data = np.concatenate([c.data[c.offsets[0] : c.offsets[-1]] for c in columns])
        offsets = np.zeros(sum(len(c) for c in columns) + 1, dtype=np.int64)
        row = base = 0
        for c in columns:
            offsets[row + 1 : row + len(c) + 1] = c.offsets[1:] - c.offsets[0] + base
            row += len(c)
            base = int(offsets[row])
        return cls(data, offsets)

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    def __getitem__(self, i: int) -> str:
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1]) - 1
        return self.data[start:stop].tobytes().decode("utf-8", "surrogateescape")

    def text(self) -> bytes:
        """The tokens, each followed by a newline (``format_rows``' 's' column)."""
        return self.data[self.offsets[0] : self.offsets[-1]].tobytes()

    def printable(self) -> bool:
        """True when no token holds a newline or a tab: then :meth:`text` is
        one line per token and prints as one field."""
        raw = self.data[self.offsets[0] : self.offsets[-1]]
        return int(np.count_nonzero(raw == 10)) == len(self) and not bool((raw == 9).any())

    def tolist(self) -> list[str]:
        """The tokens as Python strings (one object per row: for the DataFrame
        view and the formats printed row by row)."""
        if len(self) == 0:
            return []
        text = self.text().decode("utf-8", "surrogateescape")
        if self.printable():
            return text[:-1].split("\n")
        return [self[i] for i in range(len(self))]

    def take(self, index: np.ndarray | slice) -> TextColumn:
        """Rows ``index`` (positions or a slice), as a new column; a
        contiguous range shares this column's buffer."""
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                stop = max(start, stop)
                return TextColumn(self.data, self.offsets[start : stop + 1])
            index = np.arange(start, stop, step)
        index = np.asarray(index)
        if index.dtype.kind not in "iu":
            raise TypeError(f"rows are taken by integer positions, not {index.dtype}")
        index = index.astype(np.int64, copy=False)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError("a row position is outside the column")
        if index.size and index[-1] - index[0] == index.size - 1 and (np.diff(index) == 1).all():
            return self.take(slice(int(index[0]), int(index[-1]) + 1))
        starts = self.offsets[index]
        lengths = self.offsets[index + 1] - starts
        offsets = np.zeros(index.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # byte j of the new buffer comes from starts[row] + (j - offsets[row])
        shift = np.repeat(starts - offsets[:-1], lengths)
        data = self.data[shift + np.arange(offsets[-1], dtype=np.int64)]
        return TextColumn(data, offsets)

    def first_holding(self, chars: bytes) -> int:
        """The row of the first token holding one of the bytes ``chars`` (a
        newline only inside a token, not the one ending it), or -1."""
        others = [bytes([c]) for c in chars if c != 10]
        for r0 in range(0, len(self), self._SCAN_ROWS):  # a bounded copy at a time
            r1 = min(r0 + self._SCAN_ROWS, len(self))
            a = int(self.offsets[r0])
            text = self.data[a : int(self.offsets[r1])].tobytes()
            found = [i for i in (text.find(c) for c in others) if i >= 0]
            if b"\n" in chars and text.count(b"\n") != r1 - r0:  # one inside a token
                ends = self.offsets[r0 + 1 : r1 + 1] - 1 - a
                breaks = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == 10)
                k = min(breaks.size, ends.size)  # the first newline that ends no token
                found.append(int(breaks[np.flatnonzero(breaks[:k] != ends[:k])[0]]))
            if found:
                return int(np.searchsorted(self.offsets, a + min(found), side="right")) - 1
        return -1

    def count(self, byte: bytes) -> np.ndarray:
        """How many times ``byte`` occurs in each token (int64 per row)."""
        if len(self) == 0:
            return np.zeros(0, dtype=np.int64)
        hits = (self.data[self.offsets[0] : self.offsets[-1]] == ord(byte)).astype(np.int64)
        return np.add.reduceat(hits, self.offsets[:-1] - self.offsets[0])

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.offsets.nbytes)


def text_columns(raw: bytes, fields: int, first_line: bool = False) -> list[TextColumn] | None:
    """``raw``'s lines split by the core into ``fields`` text columns (with
    ``first_line``: as many as its first line has, at least ``fields``); None
    unless the text is plain and every line has that many fields (a reader
    then reads it the general way, which names the line at fault)."""
    from ._core import split_fields

    if first_line:
        end = raw.find(b"\n")
        fields = max(fields, len((raw if end < 0 else raw[:end]).split()))
    if fields < 1:
        return None
    split = split_fields(raw, "s" * fields, 0)
    if split is None or split[1] != fields:
        return None
    return [TextColumn(*col) for col in split[2]]


class VariantTable:
    """chr, rs, ps, allele1 and allele0 of n variants (see the module)."""

    __slots__ = ("columns", "ps")

    def __init__(self, columns: dict[str, TextColumn], ps: np.ndarray) -> None:
        self.columns = columns
        self.ps = np.asarray(ps)
        n = self.ps.shape[0]
        if any(len(columns[name]) != n for name in TEXT_COLUMNS):
            raise ValueError("a variant table's columns must have one row per variant")

    @classmethod
    def from_split(
        cls,
        chrom: tuple[np.ndarray, np.ndarray],
        rs: tuple[np.ndarray, np.ndarray],
        ps: np.ndarray,
        allele1: tuple[np.ndarray, np.ndarray],
        allele0: tuple[np.ndarray, np.ndarray],
    ) -> VariantTable:
        """From ``_core.split_fields``' columns: (bytes, offsets) per text column."""
        texts = {"chr": chrom, "rs": rs, "allele1": allele1, "allele0": allele0}
        return cls({name: TextColumn(*col) for name, col in texts.items()}, ps)

    @classmethod
    def from_frame(cls, snps: pd.DataFrame) -> VariantTable:
        """From a DataFrame with chr, rs, ps, allele1 and allele0."""
        columns = {name: TextColumn.from_strings(snps[name].tolist()) for name in TEXT_COLUMNS}
        return cls(columns, snps["ps"].to_numpy())

    def __len__(self) -> int:
        return int(self.ps.shape[0])

    def __getitem__(self, name: str) -> TextColumn:
        return self.columns[name]

    def take(self, index: np.ndarray | slice) -> VariantTable:
        return VariantTable(
            {name: col.take(index) for name, col in self.columns.items()}, self.ps[index]
        )

    def first_holding(self, chars: bytes) -> tuple[int, str] | None:
        """(row, text column) of the first field holding one of the bytes
        ``chars`` (see :meth:`TextColumn.first_holding`), or None."""
        rows = [self.columns[name].first_holding(chars) for name in TEXT_COLUMNS]
        found = [(row, k) for k, row in enumerate(rows) if row >= 0]
        if not found:
            return None
        row, k = min(found)
        return row, TEXT_COLUMNS[k]

    def row(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {name: self.columns[name][i] for name in TEXT_COLUMNS}
        out["ps"] = self.ps[i].item()
        return out

    def frame(self, names: Sequence[str] = COLUMNS) -> pd.DataFrame:
        """The DataFrame view (one Python string per text field), columns ``names``."""
        import pandas as pd

        data = {
            name: self.ps if name == "ps" else pd.Series(self.columns[name].tolist(), dtype=str)
            for name in names
        }
        return pd.DataFrame(data)

    @property
    def nbytes(self) -> int:
        return int(sum(col.nbytes for col in self.columns.values()) + self.ps.nbytes)


class VariantRows:
    """A variant table filled row by row from a reader that hands out Python
    values (BGEN, VCF): append each row's fields with :meth:`appenders` (chr,
    rs, ps, allele1, allele0), then call :meth:`flush_if_full`; every
    ``CHUNK`` rows the strings go into the table's buffers, so none is held
    past its chunk."""

    CHUNK = 1 << 16

    def __init__(self) -> None:
        from array import array

        self.chr: list[str] = []
        self.rs: list[str] = []
        self.allele1: list[str] = []
        self.allele0: list[str] = []
        self.ps = array("q")
        self._parts: dict[str, list[TextColumn]] = {name: [] for name in TEXT_COLUMNS}

    def __len__(self) -> int:
        return len(self.ps)

    def appenders(self) -> tuple[Any, Any, Any, Any, Any]:
        """The append methods of chr, rs, ps, allele1 and allele0 (bound once:
        a reader's loop calls them for every row)."""
        return (self.chr.append, self.rs.append, self.ps.append, self.allele1.append,
                self.allele0.append)  # fmt: skip

    def flush_if_full(self) -> None:
        if len(self.chr) >= self.CHUNK:
            self._flush()

    def _flush(self) -> None:
        for name in TEXT_COLUMNS:
            values = getattr(self, name)
            self._parts[name].append(TextColumn.from_strings(values))
            values.clear()

    def table(self) -> VariantTable:
        self._flush()
        columns = {name: TextColumn.concatenate(self._parts[name]) for name in TEXT_COLUMNS}
        return VariantTable(columns, np.frombuffer(self.ps, dtype=np.int64).copy())


# bytes no field of a table can hold (its rows are lines of tab-separated
# fields; regenie's are separated by spaces: output.FIELD_BREAKS)
LINE_BREAKS = b"\t\r\n"
_NAMES = {"chr": "chromosome", "rs": "ID", "allele1": "allele", "allele0": "allele"}
_CHARS = {"\t": "a tab", "\r": "a carriage return", "\n": "a line break", " ": "a space"}


def unprintable_field(
    table: VariantTable,
    chars: bytes = LINE_BREAKS,
    rows: Sequence[int] | np.ndarray | None = None,
    numbered: bool = True,
    noun: str = "variant",
) -> str | None:
    """What is wrong with the first field of ``table`` that holds one of
    ``chars`` ("variant 4 (chromosome 1, position 103): its ID 'rs\\t3' holds
    a tab ..."), or None when no field does: such a field would print as two
    fields, or two lines.  ``rows``: each row's number in its file (from 0),
    when not the row itself; ``numbered=False``: the variant named by its place
    on the genome only; ``noun``: what a row is called ("row" in a table)."""
    found = table.first_holding(chars)
    if found is None:
        return None
    row, name = found
    value = table[name][row]
    what = next(_CHARS[c] for c in value if c in chars.decode("latin-1"))
    chrom = table["chr"][row]
    place = f"chromosome {chrom if chrom.isprintable() else repr(chrom)}, position {table.ps[row]}"
    if numbered:
        number = (row if rows is None else int(rows[row])) + 1
        variant = f"{noun} {number} ({place})"
    else:
        variant = f"the {noun} at {place}"
    return (
        f"{variant}: its {_NAMES[name]} {value!r} holds {what}, which the output "
        "table cannot hold in one field"
    )


def keeps_variants(source: Any) -> bool:
    """True when ``source``'s class keeps a variant table (defines the
    ``variants`` property): a wrapper that forwards other attributes to the
    source it wraps does not count."""
    return isinstance(getattr(type(source), "variants", None), property)


def variant_table(source: Any) -> VariantTable:
    """``source``'s variants as a table: the one it keeps, else one made
    from ``source.snps``."""
    return source.variants if keeps_variants(source) else VariantTable.from_frame(source.snps)
