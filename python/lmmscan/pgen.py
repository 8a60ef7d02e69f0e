"""PLINK 2 filesets (.pgen/.pvar/.psam) as a lazy genotype source, read by
pgenlib, plink2's own reader (extra ``pgen``).

The counted allele (``allele1``) is ALT, as in plink2's ``--glm`` and
REGENIE; a dosage is ALT's expected count in [0, 2], a hard call 0/1/2.
Multi-allelic variants are skipped and counted (``skipped``).  pgenlib
subsets the samples in C, with the GIL released, so the read-ahead thread
decodes while the scan rotates.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._errors import InputError, plural
from .genotypes import SampleText, VariantFile, check_unique_ids, require_extra, watch_fork
from .textio import data_line, first_short_row, input_stat, not_exact_integers, wider_row
from .variants import VariantTable, text_columns

if TYPE_CHECKING:
    import pandas as pd

# .psam columns that are not phenotypes
_PSAM_IDS = ("FID", "IID", "SID", "PAT", "MAT", "SEX")


def _header_lines(path: Path, opener) -> tuple[int, str | None]:
    """How many lines open a text file before its header or first row
    (``##`` lines, and blank ones), and that line.  A UTF-8 byte-order mark
    is no part of the first line: with it, or a blank first line, the
    header was not seen, and the file was read as one without a header."""
    n = 0
    with opener(path) as fh:
        for raw in fh:
            line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
            if n == 0:
                line = line.removeprefix("\ufeff")
            if line.strip() and not line.startswith("##"):
                return n, line.rstrip("\r\n")
            n += 1
    return n, None


class SubsetReader:
    """pgenlib's reader of one .pgen (or PLINK 1 .bed), opened on first use and
    moved to the sample subset each read asks for.  Pickles as its file name
    (the reader is reopened where it is unpickled)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        n_samples: int,
        n_variants: int,
        allele_idx_offsets: np.ndarray | None = None,
    ) -> None:
        self.path = os.fsencode(path)
        self.n_samples, self.n_variants = n_samples, n_variants
        self.allele_idx_offsets = allele_idx_offsets
        self._reader = None
        self._rows: np.ndarray | None = None
        self._size = -1  # the file's size when the reader was opened

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_reader": None, "_rows": None}

    def _drop_handles(self) -> None:
        self._reader, self._rows = None, None

    def changed(self) -> str | None:
        """Why the file is no longer the one opened (its size changed), else
        None.  pgenlib reads a file cut short after opening it without a
        word, returning what it had read before: check after each read."""
        try:
            size = os.stat(self.path).st_size
        except OSError:
            size = -1
        if size == self._size:
            return None
        return f"the file changed while it was read ({size} bytes, {self._size} when opened)"

    def get(self, rows: np.ndarray | None):
        """The reader with the ascending sample indices ``rows`` (None: all)
        as its subset; pgenlib's RuntimeError as it comes."""
        import pgenlib

        same = (rows is None and self._rows is None) or (
            rows is not None and self._rows is not None and np.array_equal(rows, self._rows)
        )
        if self._reader is not None and same:
            return self._reader
        subset = None if rows is None else np.ascontiguousarray(rows, dtype=np.uint32)
        if self._reader is None:
            watch_fork(self)
            self._size = os.stat(self.path).st_size
            self._reader = pgenlib.PgenReader(
                self.path,
                raw_sample_ct=self.n_samples,
                variant_ct=self.n_variants,
                sample_subset=subset,
                allele_idx_offsets=self.allele_idx_offsets,
            )
        else:
            self._reader.change_sample_subset(subset)
        self._rows = None if rows is None else rows.copy()
        return self._reader


def _opener(path: Path):
    if path.suffix == ".zst":
        try:
            import zstandard
        except ImportError:
            raise InputError(
                "reading a .zst file needs the zstandard package: pip install zstandard",
                path=str(path),
            ) from None

        def open_zst(p):
            import io

            return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(p, "rb")))

        return open_zst
    return lambda p: open(p, "rb")


def _rows(path: Path, skip: int) -> Iterator[tuple[int, list[bytes]]]:
    """(file line, its tab-separated fields) of every non-blank row after the
    header (``skip`` ## lines, then the header): the file read again, line
    by line, only where read_csv's verdict needs its place."""
    with _opener(path)(path) as fh:
        for k, raw in enumerate(fh, start=1):
            line = raw.rstrip(b"\r\n")
            if k > skip + 1 and line:  # read_csv skips blank lines
                yield k, line.split(b"\t")


def _only_trailing_tabs(path: Path, skip: int, fields: int) -> bool:
    """Whether every row wider than the header is wider only by empty fields
    at its end (tabs left at the ends of the lines)."""
    return all(not any(parts[fields:]) for _, parts in _rows(path, skip))


def _line_fields(path: Path, skip: int, fields: int, short: bool) -> tuple[int, str]:
    """The file line of the first row with more fields than ``fields`` (or,
    ``short``, fewer, or an empty one), and what is wrong with it."""
    for k, parts in _rows(path, skip):
        n = len(parts)
        if n > fields or (short and n < fields):
            spaced = n < fields and any(b" " in p.strip() for p in parts)
            tabs = "; fields are separated by tabs, not spaces" if spaced else ""
            return k, f"{plural(n, 'field')} where the header has {fields}{tabs}"
        if short and not all(parts[:fields]):
            return k, f"field {parts.index(b'') + 1} is empty"
    return skip + 2, f"a line's fields do not match the header's {fields}"


def _spaced(header: str) -> str:
    """A note for a header that holds spaces but no tab."""
    if "\t" not in header and " " in header.strip():
        return " (its fields are separated by spaces; PLINK 2's are separated by tabs)"
    return ""


def _read_text_table(
    path: Path, skip: int, header: bool, what: str, dtype: Any = str
) -> pd.DataFrame:
    import warnings

    import pandas as pd  # here: reading the .bed through pgenlib loads this module

    compression = "zstd" if path.suffix == ".zst" else None

    def read(wider: str) -> pd.DataFrame:
        with warnings.catch_warnings():
            warnings.simplefilter(wider, pd.errors.ParserWarning)  # type: ignore[arg-type]
            table = pd.read_csv(
                path,
                sep="\t" if header else r"\s+",
                skiprows=skip,
                header=0 if header else None,
                index_col=False if header else None,
                dtype=dtype,
                keep_default_na=False,
                compression=compression,
                engine="c",
            )
        # tabs at the ends of the header and the rows: an unnamed, empty column
        while header and table.shape[1] and str(table.columns[-1]).startswith("Unnamed: "):
            if not (table.iloc[:, -1] == "").all():
                break
            table = table.iloc[:, :-1]
        return table

    try:
        # rows wider than the header: read_csv would take their first fields
        # as the index (every column shifted), or with index_col False drop
        # their last ones with this warning
        return read("error")
    except pd.errors.ParserWarning:
        _, first = _header_lines(path, _opener(path))
        fields = (first or "").count("\t") + 1
        if _only_trailing_tabs(path, skip, fields):  # what is dropped is empty
            return read("ignore")
        at_line, message = _line_fields(path, skip, fields, short=False)
        raise InputError(message, path=str(path), line=at_line) from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{what} file has no variants or samples", path=str(path)) from None
    except pd.errors.ParserError as exc:
        found = wider_row(exc)
        if found is None:
            raise InputError(f"cannot parse {what} file: {exc}", path=str(path)) from None
        expected, at, saw = found
        raise InputError(
            f"{saw} fields where the header has {expected}", path=str(path), line=at
        ) from None
    except UnicodeDecodeError:
        raise InputError(f"{what} file is not UTF-8 text", path=str(path)) from None


def _pvar_table(path: Path, skip: int, header: bool, first: str, fast: bool) -> pd.DataFrame:
    """The .pvar's table, every column as text, its POS column then as
    integers when each is a plain integer (the fallback of the core's split,
    :func:`_read_pvar_plain`; read_csv's own int64 parse took "1e-400" as
    0); as text otherwise (a position such as "1e3", a short line, bad
    bytes), so that the checks after it name the line at fault as before."""
    import pandas as pd

    if fast:
        fields = len(first.split())
        pos = "POS" if header else {6: 3, 5: 2}.get(fields)
        if pos is not None:
            # by name after a header (any other column text); by index without
            # one (a defaultdict's default does not reach unnamed columns)
            dtype: Any = (
                collections.defaultdict(lambda: str)
                if header
                else dict.fromkeys(range(fields), str)
            )
            try:
                table = _read_text_table(path, skip, header, ".pvar", dtype)
            except (ValueError, OverflowError):  # InputError is a ValueError too
                table = None
            if table is not None and pos in table.columns:
                # text, then integers: read_csv's int64 took "12.0", "1e-400"
                # (as 0) and "2565440.0000000001" (as 2565440)
                ints = pd.to_numeric(table[pos], errors="coerce")
                if ints.dtype == np.int64:
                    table[pos] = ints
                    return table
    return _read_text_table(path, skip, header, ".pvar")


_INT64_MAX = 2**63 - 1


def _plain_table(path: Path, headers: tuple[bytes, ...]) -> tuple[list[str], int, bytes] | None:
    """(column names, file line of the first row, the rows' bytes) of a
    plink2 text table: ``##`` lines, then a header starting with one of
    ``headers`` (ASCII, tab-separated, no name twice), then rows with one tab
    between fields and no space.  None for anything else, which read_csv
    reads: it splits at each tab, so a space would part a field here, and two
    tabs in a row hold an empty field there that a run of blanks here would
    hide."""
    raw = path.read_bytes()
    start = 0
    while raw.startswith(b"##", start):  # the ## lines
        start = raw.find(b"\n", start) + 1
        if start == 0:
            return None
    end = raw.find(b"\n", start)
    if end < 0 or not raw.startswith(headers, start):
        return None
    header = raw[start:end]
    if not header.isascii():
        return None
    names = header.decode("ascii").lstrip("#").split("\t")
    if len(set(names)) != len(names):
        return None
    first_line = raw.count(b"\n", 0, end) + 2
    body = raw[end + 1 :]
    del raw
    if not body or b" " in body or b"\t\t" in body:
        return None
    return names, first_line, body


def _read_pvar_plain(path: Path) -> VariantTable | None:
    """A .pvar with a ``#CHROM`` header whose variant lines are plain text
    (one tab between fields, no space, every line with the header's fields; see
    ``_core.split_fields``), split by the core into a variant table
    (allele1 ALT, allele0 REF) without a Python object per row.  None for
    anything else (compressed, no header, a missing column, a line that is
    not plain): :func:`read_pvar` reads those and names what is wrong."""
    if path.suffix == ".zst":
        return None
    found = _plain_table(path, (b"#CHROM",))
    if found is None:
        return None
    names, _, body = found
    need = ["CHROM", "POS", "ID", "REF", "ALT"]
    if any(names.count(c) != 1 for c in need):
        return None
    at = {c: names.index(c) for c in need}
    kinds = ["-"] * (max(at.values()) + 1)
    for c, i in at.items():
        kinds[i] = "i" if c == "POS" else "s"
    from ._core import split_fields

    split = split_fields(body, "".join(kinds), _INT64_MAX)
    del body
    if split is None or split[1] != len(names):
        return None
    cols = {c: split[2][i] for c, i in at.items()}
    return VariantTable.from_split(cols["CHROM"], cols["ID"], cols["POS"], cols["ALT"], cols["REF"])


def read_pvar(path: Path, *, fast: bool = True) -> pd.DataFrame:
    """A .pvar (or .bim-like headerless .pvar) as chr, rs, ps, ref, alt.
    ``fast=False`` reads every column as text first (see :func:`_pvar_table`;
    the same result)."""
    import pandas as pd

    skip, first = _header_lines(path, _opener(path))
    if first is None:
        raise InputError(".pvar file has no variants", path=str(path))
    if first.startswith("#CHROM"):
        table = _pvar_table(path, skip, True, first, fast)
        table.columns = [c.lstrip("#") for c in table.columns]
        need = ["CHROM", "POS", "ID", "REF", "ALT"]
        absent = [c for c in need if c not in table.columns]
        if absent:
            raise InputError(
                f"the header line has no {', '.join(absent)} column{_spaced(first)}",
                path=str(path),
                line=skip + 1,
            )
        chr_, pos, rs, ref, alt = (table[c] for c in need)
        first_data = skip + 2
    else:  # no header: CHROM ID [CM] POS ALT REF, as a .bim
        table = _pvar_table(path, skip, False, first, fast)
        if table.shape[1] not in (5, 6):
            raise InputError(
                f"a .pvar without a #CHROM header needs 5 or 6 columns, found {table.shape[1]}",
                path=str(path),
                line=skip + 1,
            )
        cols = [0, 1, 3, 4, 5] if table.shape[1] == 6 else [0, 1, 2, 3, 4]
        chr_, rs, pos, alt, ref = (table[c] for c in cols)
        first_data = skip + 1
    if len(table) == 0:
        raise InputError(".pvar file has no variants", path=str(path))
    empty = (table == "").any(axis=1).to_numpy()
    if empty.any():
        line = data_line(path, int(np.flatnonzero(empty)[0]), first_data)
        message = "a line has fewer fields than the header"
        if first.startswith("#CHROM"):
            line, message = _line_fields(path, skip, first.count("\t") + 1, short=True)
        raise InputError(message, path=str(path), line=line)
    if pos.dtype == np.int64:  # parsed as integers on the fast path: nothing to check
        ps = pos.to_numpy()
    else:
        ps = pd.to_numeric(pos, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(ps) | (ps != np.round(ps))
        if not bad.any():
            bad = not_exact_integers(pos.astype(str).tolist(), ps)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"position {pos.iloc[i]!r} is not an integer",
                path=str(path),
                line=data_line(path, i, first_data),
            )
    return pd.DataFrame(
        {"chr": chr_.to_numpy(), "rs": rs.to_numpy(), "ps": ps.astype(np.int64, copy=False),
         "ref": ref.to_numpy(), "alt": alt.to_numpy()}
    )  # fmt: skip


def _read_psam_plain(path: Path) -> SampleText | None:
    """A .psam with a ``#FID`` or ``#IID`` header whose sample lines are plain
    text (one tab between fields, no space, every line with the header's
    fields), split by the core without pandas.  None for anything else
    (compressed, a header-less .fam, a line that is not plain):
    :func:`read_psam` reads those and names what is wrong."""
    found = _plain_table(path, (b"#FID", b"#IID"))
    if found is None:
        return None
    names, first_line, body = found
    if "IID" not in names:
        return None
    split = text_columns(body, len(names))
    del body
    if split is None:
        return None
    # as Python strings only the columns kept: the IDs and the phenotypes
    cols = {
        name: col.tolist()
        for name, col in zip(names, split, strict=True)
        if name in ("FID", "IID") or name not in _PSAM_IDS
    }
    iid = cols["IID"]
    pheno = [cols[c] for c in names if c not in _PSAM_IDS]
    return SampleText(cols.get("FID", iid), iid, pheno, first_line)


def read_psam(path: Path) -> SampleText:
    """A .psam (or .fam): the sample IDs and the phenotype columns, as text."""
    text = _read_psam_plain(path) if path.suffix != ".zst" else None
    if text is None:
        text = _read_psam_table(path)
    check_unique_ids(text.fid, text.iid, str(path), first_line=text.first_line, ids="sample IDs")
    return text


def _read_psam_table(path: Path) -> SampleText:
    """:func:`read_psam` by pandas' read_csv: any .psam it takes, and the
    line at fault of one it refuses."""
    skip, first = _header_lines(path, _opener(path))
    if first is None:
        raise InputError(".psam file has no samples", path=str(path))
    if first.startswith("#FID") or first.startswith("#IID"):
        table = _read_text_table(path, skip, True, ".psam")
        table.columns = [c.lstrip("#") for c in table.columns]
        if "IID" not in table.columns:
            raise InputError(
                f"the .psam header has no IID column{_spaced(first)}", path=str(path), line=skip + 1
            )
        if (table == "").to_numpy().any():  # read_csv fills a short row's fields with ""
            line, message = _line_fields(path, skip, len(table.columns), short=True)
            raise InputError(message, path=str(path), line=line)
        iid = table["IID"].tolist()
        fid = table["FID"].tolist() if "FID" in table.columns else iid
        pheno = [table[c].tolist() for c in table.columns if c not in _PSAM_IDS]
        return SampleText(fid, iid, pheno, skip + 2)
    # a .fam: FID IID PAT MAT SEX PHENO
    table = _read_text_table(path, skip, False, ".psam")
    if table.shape[1] < 5:
        raise InputError(
            f"a .psam without a header is a .fam, which needs 6 columns; found {table.shape[1]}",
            path=str(path),
            line=skip + 1,
        )
    # a line shorter than the others (read_csv pads it with ""): its missing
    # fields would be read as an absent phenotype; plink2 refuses it too
    short = first_short_row(table)
    if short is not None:
        i, have = short
        raise InputError(
            f"{plural(have, 'field')} where other lines have {table.shape[1]} "
            "(every line of a .psam without a header needs the same fields)",
            path=str(path),
            line=data_line(path, i, skip + 1),
        )
    pheno = [table[c].tolist() for c in table.columns[5:]]
    return SampleText(table[0].tolist(), table[1].tolist(), pheno, skip + 1)


class PgenGenotypes(VariantFile):
    """A PLINK 2 .pgen/.pvar/.psam fileset as a genotype source (see
    :mod:`lmmscan.genotypes`); ``samples`` has fid and iid."""

    dosages_only = False  # hard calls, or dosages binned as GEMMA bins BIMBAM's

    def __init__(self, prefix: str | os.PathLike[str]) -> None:
        require_extra("pgenlib", "pgenlib", "pgen", "--pfile")
        prefix = str(prefix)
        for ext in (".pgen", ".pvar", ".psam", ".pvar.zst"):
            prefix = prefix.removesuffix(ext)
        self.prefix = prefix
        self.path = prefix + ".pgen"
        pvar = Path(prefix + ".pvar")
        if not pvar.exists() and Path(prefix + ".pvar.zst").exists():
            pvar = Path(prefix + ".pvar.zst")
        for p in (Path(self.path), pvar, Path(prefix + ".psam")):
            if not p.exists():
                raise InputError(f"{p.name} not found (--pfile needs .pgen, .pvar, .psam)",
                                 path=str(p))  # fmt: skip
            input_stat(p, needs_file="the .pgen is read at any variant's offset"
                       if p.suffix == ".pgen" else None)  # fmt: skip
        self.pvar_path, self.psam_path = str(pvar), prefix + ".psam"
        table = _read_pvar_plain(pvar)
        if table is None:
            frame = read_pvar(pvar)
            table = VariantTable.from_frame(
                frame.rename(columns={"alt": "allele1", "ref": "allele0"})
            )
        samples = read_psam(Path(self.psam_path))
        n_alleles = table["allele1"].count(b",") + 2
        multi = n_alleles > 2
        self._allele_idx_offsets = (
            np.concatenate([[0], np.cumsum(n_alleles)]).astype(np.uintp) if multi.any() else None
        )
        self._set_variants(samples, table, {"multi-allelic": multi})
        self._check_pgen(len(table))
        self._reader = SubsetReader(
            self.path, self.n_samples, self._n_file, self._allele_idx_offsets
        )

    def _open(self, rows: np.ndarray | None):
        try:
            return self._reader.get(rows)
        except RuntimeError as exc:
            raise InputError(_pgen_message(exc), path=self.path) from None

    def _check_pgen(self, n_variants: int) -> None:
        """The .pgen's header against the .pvar's and .psam's counts, now."""
        import pgenlib

        self._n_file = n_variants
        try:
            offsets = self._allele_idx_offsets
            try:
                r = pgenlib.PgenReader(os.fsencode(self.path), allele_idx_offsets=offsets)
            except RuntimeError as exc:
                if "PLINK 1 .bed" not in _pgen_message(exc):
                    raise
                # a .bed named .pgen (pgenlib reads both): it has no sample count
                r = pgenlib.PgenReader(
                    os.fsencode(self.path), raw_sample_ct=self.n_samples, allele_idx_offsets=offsets
                )
            try:
                n, m = r.get_raw_sample_ct(), r.get_variant_ct()
            finally:
                r.close()
        except RuntimeError as exc:
            raise InputError(_pgen_message(exc), path=self.path) from None
        if n != self.n_samples:
            raise InputError(
                f"has {n} samples, but {self.psam_path} lists {self.n_samples}", path=self.path
            )
        if m != n_variants:
            raise InputError(
                f"has {m} variants, but {self.pvar_path} lists {n_variants}", path=self.path
            )

    def _decode(self, file_index: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        reader = self._open(rows)
        width = self.n_samples if rows is None else rows.size
        out = np.empty((file_index.size, width), dtype=np.float64)
        if file_index.size == 0:
            return out
        first, last = int(file_index[0]), int(file_index[-1]) + 1
        try:
            if last - first == file_index.size:
                reader.read_dosages_range(first, last, out)
            else:
                reader.read_dosages_list(np.ascontiguousarray(file_index, dtype=np.uint32), out)
        except RuntimeError as exc:
            raise InputError(
                f"cannot read variants {first + 1}-{last} ({_pgen_message(exc)}): the file is "
                "truncated or corrupt",
                path=self.path,
            ) from None
        why = self._reader.changed()
        if why is not None:
            raise InputError(f"cannot read variants {first + 1}-{last}: {why}", path=self.path)
        missing_to_nan(out)
        return out

    def fam_phenotypes(self, columns: list[int]) -> np.ndarray:
        """.psam phenotype columns (1 = the first after the ID and SEX columns)
        as (samples, len(columns)), NaN for NA or -9."""
        return self._phenotype_columns(columns, self.psam_path, "phenotype column(s) in the .psam")


def missing_to_nan(out: np.ndarray) -> None:
    """pgenlib's missing dosages (-9) in ``out`` (variants x samples, C
    order) set to NaN, a megabyte of rows at a time: the whole block's
    mask was one byte a value beside the block, kept in the reading
    thread's heap (n = 2,000, blocks of 5,000: 9.5 MiB unplanned)."""
    step = max(1, (1 << 20) // max(1, out.shape[1]))
    for i in range(0, out.shape[0], step):
        rows = out[i : i + step]
        rows[rows == -9.0] = np.nan


def _pgen_message(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else ""
    if isinstance(arg, bytes):  # pgenlib's messages are bytes
        arg = arg.decode("utf-8", "replace")
    text = " ".join(str(arg).split()) or type(exc).__name__
    return text.rstrip(".")


def read_pgen(prefix: str | os.PathLike[str]) -> PgenGenotypes:
    """Open a PLINK 2 .pgen/.pvar/.psam fileset lazily (``prefix`` without
    extension; a .pvar.zst is read when there is no .pvar).  ALT is counted;
    multi-allelic variants are skipped and counted in ``skipped``."""
    return PgenGenotypes(prefix)
