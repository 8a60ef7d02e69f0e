"""PLINK 1 binary filesets (.bed/.bim/.fam) as a lazy genotype source."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._errors import InputError, one_line, printable
from .genotypes import SampleText, check_unique_ids, import_failure, require_extra, sample_rows
from .textio import (
    INFINITE_NOTE,
    BadToken,
    data_line,
    first_short_row,
    input_source,
    input_stat,
    not_exact_integers,
    not_utf8,
    parse_phenotype,
    source_bytes,
    wider_row,
)
from .variants import VariantTable, text_columns

if TYPE_CHECKING:
    import pandas as pd

    from .pgen import SubsetReader

__all__ = ["BED_READERS", "BadToken", "PlinkGenotypes", "parse_phenotype", "read_plink"]

_BED_MAGIC = b"\x6c\x1b\x01"  # SNP-major

# "auto": pgenlib when it is installed (the pgen extra), else bed-reader.  The
# two give the same arrays; pgenlib decodes a .bed 15-20x faster (one thread
# against bed-reader's several: 0.09 s against 1.4 s for 400,000 SNPs x 484
# samples), which a scan whose cores are busy rotating and testing feels.
BED_READERS = ("auto", "pgenlib", "bed-reader")


def _resolve(reader: str) -> str:
    if reader != "auto":
        return reader
    # not installed, or installed but not importable (a missing shared library)
    return "bed-reader" if import_failure("pgenlib") is not None else "pgenlib"


def _read_table(
    path: Path, ncols: int, what: str, source: Path | io.BytesIO | None = None
) -> pd.DataFrame:
    """Every field as text; a line with more or fewer fields than the first,
    or fewer than ``ncols``, is refused with its line number."""
    import pandas as pd  # here: a plain .bim and .fam never need it

    if source is None:
        source = input_source(path)
    elif isinstance(source, io.BytesIO):
        source.seek(0)
    try:
        table = pd.read_csv(
            source, sep=r"\s+", header=None, dtype=str, engine="c", keep_default_na=False
        )
    except pd.errors.EmptyDataError:
        raise InputError(f"{what} file is empty", path=printable(path)) from None
    except pd.errors.ParserError as exc:
        # "Expected 6 fields in line 3, saw 7": a line longer than the first
        found = wider_row(exc)
        if found is None:
            raise InputError(f"cannot parse {what} file: {exc}", path=printable(path)) from None
        first, line, saw = found
        raise InputError(
            f"{saw} fields where line 1 has {first} (every line needs the same fields)",
            path=printable(path),
            line=line,
        ) from None
    except UnicodeDecodeError:
        # pandas reports the offset inside its buffer: find the byte in the file
        raw = source_bytes(source)
        try:
            raw.decode()
        except UnicodeDecodeError as exc:
            raise not_utf8(raw, exc.start, f"{what} file", path) from None
        raise InputError(f"{what} file is not UTF-8 text", path=printable(path)) from None
    if table.shape[1] < ncols:
        raise InputError(
            f"{what} file has {table.shape[1]} columns, expected at least {ncols}",
            path=printable(path),
        )
    # a shorter line than the first (pandas pads it with NaN): its fields would
    # be read as missing, or shift the columns after them
    # (with keep_default_na=False an absent field is "", never a real token)
    short = first_short_row(table)
    if short is not None:
        i, have = short
        least = f"fewer than {ncols} columns: " if have < ncols else ""
        raise InputError(
            f"{least}{have} fields where line 1 has {table.shape[1]} "
            "(every line needs the same fields)",
            path=printable(path),
            line=data_line(path, i),
        )
    return table


# The .bim's columns as read_csv parses them on the fast path: the position as
# an integer (not as text converted afterwards: 2x faster to read, no
# to_numeric pass), the rest as text.
_BIM_DTYPES = {0: str, 1: str, 2: str, 3: str, 4: str, 5: str}
_POS_LIMIT = 2**62


def _read_bim(name: str) -> VariantTable:
    """The .bim's variants (chr, rs, ps, allele1, allele0).

    Plain text (ASCII, spaces or tabs between fields, every line alike, plain
    integer positions) is split by the core into arrays, without a Python
    object per field (:func:`_read_bim_plain`): 10,000,000 lines in ~1 s.
    Anything else goes through read_csv: :func:`_read_bim_fast` when every
    line has the first line's fields and a plain integer position, else
    :func:`_read_bim_general`, which accepts what it accepted before and
    names the line and column at fault."""
    source = input_source(Path(name))
    plain = _read_bim_plain(source)
    if plain is not None:
        return plain
    fast = _read_bim_fast(source)
    import pandas as pd

    bim, ps = fast if fast is not None else _read_bim_general(name, source)
    return VariantTable.from_frame(
        pd.DataFrame({"chr": bim[0], "rs": bim[1], "ps": ps, "allele1": bim[4], "allele0": bim[5]})
    )


def _read_bim_plain(source: Path | io.BytesIO) -> VariantTable | None:
    """The .bim split by ``_core.split_fields``; None unless it is plain text
    (see there), and then read_csv gives the same tokens."""
    from ._core import split_fields

    split = split_fields(source_bytes(source), "ss-iss", _POS_LIMIT)
    if split is None:
        return None
    chrom, rs, _, ps, allele1, allele0 = split[2]
    return VariantTable.from_split(chrom, rs, ps, allele1, allele0)


def _read_bim_fast(source: Path | io.BytesIO) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The .bim in one read_csv pass, then positions as int64; None unless
    every line has the first line's fields and a plain integer position."""
    import pandas as pd

    try:
        table = pd.read_csv(
            source, sep=r"\s+", header=None, dtype=_BIM_DTYPES, engine="c", keep_default_na=False
        )
    except (ValueError, OverflowError):  # pandas' parse errors are ValueErrors
        return None
    if table.shape[1] < 6:
        return None
    # read as text, then as integers: read_csv's int64 took "12.0", "1e-400"
    # (as 0) and "2565440.0000000001" (as 2565440); those go the general way
    ints = pd.to_numeric(table[3], errors="coerce")
    if ints.dtype != np.int64:
        return None
    # whitespace runs are one separator, so a short line leaves its last
    # fields empty: the last column shows it
    last = table.iloc[:, -1]
    ps = ints.to_numpy()
    if (last.isna() | (last == "")).any() or ((ps > _POS_LIMIT) | (ps < -_POS_LIMIT)).any():
        return None
    return table, ps


def _read_bim_general(
    name: str, source: Path | io.BytesIO | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Every field as text (:func:`_read_table`), then the positions: any
    number that is an integer ("1e3", "12.0"), else refused by line."""
    import pandas as pd

    bim = _read_table(Path(name), 6, ".bim", source)
    pos = pd.to_numeric(bim[3], errors="coerce").to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(pos) | (pos != np.round(pos)) | (np.abs(pos) > float(_POS_LIMIT))
    if not bad.any():
        bad = not_exact_integers(bim[3].tolist(), pos)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"position {bim[3][i]!r} is not an integer", path=name, line=data_line(name, i),
            column=4,
        )  # fmt: skip
    return bim, pos.astype(np.int64)


def _read_fam(path: Path) -> list[list[str]]:
    """The .fam's fields, one list of text per column (at least 6 columns):
    split by the core when the text is plain (no pandas import), else read
    by :func:`_read_table`, which names the line at fault."""
    source = input_source(path)
    # every field as text: as many as the first line has (a line with other
    # fields, or fewer than 6, is not plain)
    columns = text_columns(source_bytes(source), 6, first_line=True)
    if columns is not None:
        return [col.tolist() for col in columns]
    table = _read_table(path, 6, ".fam", source)
    return [table[c].tolist() for c in table.columns]


class PlinkGenotypes:
    """A PLINK .bed/.bim/.fam fileset, read block by block with pgenlib or
    bed-reader (``reader``: see :data:`BED_READERS`).

    Genotypes count the .bim column-5 allele (``allele1``, as GEMMA), as
    float64 with NaN for missing.  ``samples`` has fid, iid and the .fam
    phenotype (``phenotype``: NA and -9 missing); ``snps`` has chr, rs, ps,
    allele1, allele0.
    """

    integer_calls = True  # 0, 1, 2: none is constant to rounding (engine._collinear)

    def __init__(
        self,
        prefix: str | os.PathLike[str],
        *,
        num_threads: int | None = None,
        reader: str = "auto",
    ) -> None:
        if reader not in BED_READERS:
            raise InputError(f"reader must be one of {', '.join(BED_READERS)}, got {reader!r}")
        if reader == "pgenlib":
            require_extra("pgenlib", "pgenlib", "pgen", "reader='pgenlib'")
        prefix = str(prefix)
        for ext in (".bed", ".bim", ".fam"):
            if prefix.endswith(ext):
                prefix = prefix[: -len(ext)]
        self.prefix = prefix
        self.bed_path = Path(prefix + ".bed")
        fam = _read_fam(Path(prefix + ".fam"))
        self._variants = _read_bim(prefix + ".bim")
        self._fam_raw = fam
        try:
            pheno = parse_phenotype(fam[5], minus9_missing=True)
        except BadToken as exc:
            raise InputError(
                f"phenotype {exc.token!r} is not a number",
                path=prefix + ".fam",
                line=exc.index + 1,
                column=6,
            ) from None
        pheno.flags.writeable = False  # as pandas' view of its column was
        self._fid, self._iid, self._phenotype = fam[0], fam[1], pheno
        self._samples: pd.DataFrame | None = None  # the DataFrame view, made when asked for
        check_unique_ids(fam[0], fam[1], prefix + ".fam")
        self._snps: pd.DataFrame | None = None  # the DataFrame view, made when asked for
        self._check_bed()
        self._num_threads = num_threads
        self._bed = None
        self._choice = reader
        self.reader = _resolve(reader)
        self._pgen: SubsetReader | None = None  # pgenlib's reader, made on first use
        self._lock = threading.Lock()  # one pgenlib reader: one read at a time

    def _check_bed(self) -> None:
        from .textio import check_utf8_path

        path = self.bed_path
        if not path.exists():
            raise InputError(".bed file not found", path=str(path))
        check_utf8_path(path)  # bed-reader opens it by a str name
        input_stat(path, needs_file="the .bed is read at any SNP's offset")
        with open(path, "rb") as fh:
            magic = fh.read(3)
        if magic != _BED_MAGIC:
            raise InputError("not a SNP-major PLINK .bed file (wrong magic bytes)", path=str(path))
        expected = 3 + self.n_snps * ((self.n_samples + 3) // 4)
        size = path.stat().st_size
        if size != expected:
            raise InputError(
                f"size {size} bytes does not match {self.n_samples} samples (.fam) x "
                f"{self.n_snps} SNPs (.bim): expected {expected} bytes",
                path=str(path),
            )

    def _open(self):
        if self._bed is None:
            from bed_reader import open_bed

            self._bed = open_bed(
                self.bed_path,
                iid_count=self.n_samples,
                sid_count=self.n_snps,
                count_A1=True,
                num_threads=self._num_threads,
                skip_format_check=True,
            )
        return self._bed

    def _read_pgen(self, start: int, stop: int, samples: np.ndarray | None) -> np.ndarray:
        from .pgen import missing_to_nan

        rows, order = sample_rows(samples, self.n_samples)
        width = self.n_samples if rows is None else rows.size
        out = np.empty((stop - start, width), dtype=np.float64)
        if stop > start:
            with self._lock:
                try:
                    if self._pgen is None:
                        from .pgen import SubsetReader

                        self._pgen = SubsetReader(self.bed_path, self.n_samples, self.n_snps)
                    self._pgen.get(rows).read_dosages_range(start, stop, out)
                except RuntimeError as exc:
                    text = one_line(exc)
                    raise InputError(
                        f"cannot read SNPs {start + 1}-{stop}: {text}", path=self.prefix + ".bed"
                    ) from None
                why = self._pgen.changed()  # (bed-reader checks at every read)
            if why is not None:
                raise InputError(
                    f"cannot read SNPs {start + 1}-{stop}: {why}", path=self.prefix + ".bed"
                )
        missing_to_nan(out)
        X = out.T  # samples x SNPs in Fortran order, as bed-reader's
        return X if order is None else np.asfortranarray(X[order])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_bed"] = None
        state["_pgen"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self.reader = _resolve(self._choice)  # "auto": what this process (a worker) has

    @property
    def n_samples(self) -> int:
        return len(self._fid)

    @property
    def n_snps(self) -> int:
        return len(self._variants)

    @property
    def variants(self) -> VariantTable:
        """The .bim's variants as arrays (:mod:`lmmscan.variants`)."""
        return self._variants

    @property
    def snps(self) -> pd.DataFrame:
        if self._snps is None:
            self._snps = self._variants.frame()
        return self._snps

    @property
    def samples(self) -> pd.DataFrame:
        if self._samples is None:
            frame = SampleText(self._fid, self._iid).frame()
            self._samples = frame.assign(phenotype=self._phenotype)
        return self._samples

    @property
    def phenotype(self) -> np.ndarray:
        """The .fam column-6 phenotype (NaN for NA or -9)."""
        return self._phenotype

    def fam_phenotypes(self, columns: list[int]) -> np.ndarray:
        """.fam phenotype columns as (samples, len(columns)), NaN for NA or -9.

        Column 1 is .fam column 6, column k is .fam column 5 + k (GEMMA's ``-n k``).
        """
        fam = self._fam_raw
        n_pheno = len(fam) - 5
        out = np.empty((self.n_samples, len(columns)))
        for i, col in enumerate(columns):
            if not 1 <= col <= n_pheno:
                raise InputError(
                    f"phenotype column {col} is out of range: the .fam has {n_pheno} phenotype "
                    f"column{'s' if n_pheno != 1 else ''} (column 6 onwards)",
                    path=self.prefix + ".fam",
                )
            try:
                out[:, i] = parse_phenotype(fam[4 + col], minus9_missing=True, finite=True)
            except BadToken as exc:
                raise InputError(
                    f"phenotype {exc}{INFINITE_NOTE if exc.infinite else ''}",
                    path=self.prefix + ".fam",
                    line=exc.index + 1,
                    column=5 + col,
                ) from None
        return out

    def read(self, start: int, stop: int, samples: np.ndarray | None = None) -> np.ndarray:
        """Genotypes of SNPs start..stop-1 (samples x SNPs, NaN missing), in
        Fortran order (one SNP contiguous)."""
        if self.reader == "pgenlib":
            return self._read_pgen(start, stop, samples)
        if samples is None:
            rows: slice | np.ndarray = slice(None)
        else:
            rows = np.asarray(samples)
            if rows.dtype == bool:
                rows = np.flatnonzero(rows)
        try:
            return self._open().read(index=np.s_[rows, start:stop], dtype="float64", order="F")
        except ValueError as exc:  # bed-reader: a file changed or cut short while it was read
            text = one_line(exc)
            raise InputError(
                f"cannot read SNPs {start + 1}-{stop}: {text}", path=self.prefix + ".bed"
            ) from None


def read_plink(
    prefix: str | os.PathLike[str], *, num_threads: int | None = None, reader: str = "auto"
) -> PlinkGenotypes:
    """Open a PLINK .bed/.bim/.fam fileset lazily.

    ``prefix`` is the path without extension (``data/mouse`` for
    ``data/mouse.bed``).  Nothing but the .bim/.fam tables is read until
    blocks are requested.  ``reader``: ``"pgenlib"`` (the ``pgen`` extra),
    ``"bed-reader"`` or ``"auto"`` (pgenlib when installed); both give the
    same genotypes.  ``num_threads``: bed-reader's decoding threads.
    """
    return PlinkGenotypes(prefix, num_threads=num_threads, reader=reader)
