"""BGEN files (v1.1, v1.2, v1.3: layouts 1 and 2, 1-32 bit, zlib or zstd)
as a lazy genotype source, read by the ``bgen`` package (extra ``bgen``).

The counted allele (``allele1``) is the second allele of each variant, as
plink2 and REGENIE count it; a dosage is its expected count from the
genotype probabilities (phased or not), in [0, 2].  Variants with more than
two alleles are skipped and counted; a variant where an analysed sample is
not diploid is read as missing and counted (``skipped_at_read``).
Samples come from ``--sample`` (Oxford format) or the IDs the file embeds.
"""

from __future__ import annotations

import logging
import os
import threading
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import InputError, one_line
from .genotypes import (
    SampleText,
    VariantFile,
    bad_probabilities,
    check_unique_ids,
    probability_moments,
    require_extra,
    watch_fork,
)
from .variants import VariantRows


def read_sample_file(path: Path) -> SampleText:
    """An Oxford .sample file: fid and iid from ID_1/ID_2, and its phenotype
    columns (type P or C) as text."""
    from .textio import input_source, source_bytes
    from .variants import text_columns

    raw = source_bytes(input_source(path))  # (a pipe read once)
    plain = text_columns(raw, 1, first_line=True)  # no pandas import (30 MiB)
    if plain is not None:
        columns = [col.tolist() for col in plain]
    else:
        columns = _sample_columns(path, raw)
    names = [c[0] for c in columns]
    if len(columns) < 3 or len(columns[0]) < 2 or names[:2] != ["ID_1", "ID_2"]:
        raise InputError(
            "not an Oxford .sample file: line 1 must start with ID_1 ID_2 missing", path=str(path)
        )
    types = [c[1] for c in columns]
    if types[0] != "0" or types[1] != "0":
        raise InputError("line 2 of a .sample file must start with 0 0", path=str(path), line=2)
    pheno = [c[2:] for c, kind in zip(columns[3:], types[3:], strict=True) if kind in ("P", "C")]
    fid, iid = columns[0][2:], columns[1][2:]
    check_unique_ids(fid, iid, str(path), first_line=3, ids="ID_1 and ID_2")
    return SampleText(fid, iid, pheno, 3)


def _sample_columns(path: Path, raw: bytes) -> list[list[str]]:
    """The columns of ``path`` (its bytes ``raw``), line 1's names first, read
    by pandas, which accepts what the core does not (quotes, CRLF, UTF-8)
    and names the line at fault."""
    import io
    import warnings

    import pandas as pd

    try:
        with warnings.catch_warnings():
            # rows wider than line 1: read_csv would take their first fields as
            # the index (every column shifted), or with index_col=False drop
            # their last ones with this warning
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(
                io.BytesIO(raw),
                sep=r"\s+",
                dtype=str,
                keep_default_na=False,
                engine="c",
                index_col=False,
            )
    except pd.errors.ParserWarning:
        lines = raw.splitlines()
        width = len(lines[0].split())
        at = next((i for i, line in enumerate(lines) if len(line.split()) > width), None)
        if at is None:  # wider as read_csv counts (a quoted field with a blank)
            raise InputError(
                "the rows have more fields than line 1 (a quoted field holding a blank?)",
                path=str(path),
            ) from None
        raise InputError(
            f"{len(lines[at].split())} fields where line 1 has {width}",
            path=str(path),
            line=at + 1,
        ) from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        from .textio import wider_row

        found = wider_row(exc)
        if found is not None:
            expected, line, saw = found
            raise InputError(
                f"{saw} fields where line 1 has {expected}", path=str(path), line=line
            ) from None
        raise InputError(f"cannot read the .sample file: {' '.join(str(exc).split())}",
                         path=str(path)) from None  # fmt: skip
    if table.shape[1] >= 3 and len(table) >= 1 and list(table.columns[:2]) == ["ID_1", "ID_2"]:
        # pandas fills a short line's end with "" (fields split on blanks are never empty)
        filled = (table != "") & table.notna()
        short = ~filled.to_numpy().all(axis=1)
        if short.any():
            r = int(short.argmax())  # table row r, after the header
            from .textio import data_line

            raise InputError(
                f"{int(filled.iloc[r].sum())} fields where line 1 has {table.shape[1]}",
                path=str(path),
                line=data_line(path, r + 1),  # the header is the first row read_csv reads
            )
    return [[str(name), *table[name].tolist()] for name in table.columns]


def impute_info(e: np.ndarray, f: np.ndarray) -> np.ndarray:
    """IMPUTE's info measure per variant (columns), as GCTA's --info and
    qctool compute it: 1 - sum(f - e^2) / (2 N theta (1 - theta)) over the
    N non-missing samples, with e the dosage, f = E[g^2] and theta the allele
    frequency; 1 where theta is 0 or 1.  ``e`` and ``f`` are (samples x
    variants), NaN missing."""
    ok = ~np.isnan(e)
    n = ok.sum(axis=0)
    e0 = np.where(ok, e, 0.0)
    theta = e0.sum(axis=0) / np.maximum(2 * n, 1)
    var = np.where(ok, f - e0 * e0, 0.0).sum(axis=0)
    denom = 2 * n * theta * (1 - theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        info = np.where(denom > 0, 1 - var / np.where(denom > 0, denom, 1.0), 1.0)
    return info


def _check_index(path: str, offsets: np.ndarray) -> None:
    """Refuse a bgenix index (PATH.bgi) that does not list this file's
    variants: the bgen package reads variant i at the index's i-th offset
    whenever an index is there, so an index made for another version of the
    file gave other variants' genotypes, or failed mid-scan."""
    index = Path(path + ".bgi")
    if not index.exists():
        return
    import sqlite3

    remake = f"remove it, or remake it with: bgenix -g {path} -index"
    try:
        con = sqlite3.connect(index.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            # one text of the offsets in file order, parsed by the core: a Python
            # object per row took 0.9 s for 1,000,000 variants, this 0.3 s
            query = (
                "SELECT group_concat(file_start_position, ' ') FROM "
                "(SELECT file_start_position FROM Variant ORDER BY file_start_position)"
            )
            text = con.execute(query).fetchone()[0] or ""
        finally:
            con.close()
        if not isinstance(text, str):
            raise ValueError("its offsets are not byte positions")
        from . import _core

        values, _, bad = _core.parse_numbers(text.encode(), 1, nan_words=False)
        whole = np.isfinite(values) & (values >= 0) & (values == np.floor(values))
        if bad >= 0 or not whole.all():
            raise ValueError("its offsets are not byte positions")
        listed = values.astype(np.uint64) if values.size else np.zeros(0, np.uint64)
    except (sqlite3.Error, OverflowError, TypeError, ValueError) as exc:
        raise InputError(f"not a readable bgenix index ({exc}): {remake}", path=str(index)) \
            from None  # fmt: skip
    if listed.shape != offsets.shape:
        raise InputError(
            f"lists {len(listed)} variants but {path} holds {len(offsets)}: it was made for "
            f"another version of the file; {remake}",
            path=str(index),
        )
    differ = np.flatnonzero(listed != offsets)
    if differ.size:
        raise InputError(
            f"gives variant {int(differ[0]) + 1} of {path} at byte {int(listed[differ[0]])}, "
            f"but it starts at byte {int(offsets[differ[0]])}: the index was made for another "
            f"version of the file; {remake}",
            path=str(index),
        )


def _check_unique_embedded(ids: list[str], path: str) -> None:
    """Refuse sample IDs embedded twice in a BGEN file (as a .fam's are)."""
    seen: dict[str, int] = {}
    for i, name in enumerate(ids):
        if name in seen:
            raise InputError(
                f"sample ID {name!r} is samples {seen[name] + 1} and {i + 1} of the file's "
                "sample block (sample IDs must be unique; give a .sample file with --sample)",
                path=path,
            )
        seen[name] = i


class _MalformedProbabilities(logging.Filter):
    """While decoding: whether the bgen package warned that a variant's
    stored probabilities sum past its bit depth (it then infers a negative
    or clamped last probability and goes on).  A filter on the root logger,
    where the package logs, for the block's decoding: that warning is noted
    instead of printed, the read refuses the variant, and every other record
    passes as before."""

    def __init__(self) -> None:
        super().__init__()
        self.found = False
        self._thread = threading.get_ident()  # the decoding thread: another's
        # reader (API users' threads) has a filter of its own

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.thread == self._thread
            and record.levelno >= logging.WARNING
            and "genotype probabilities" in record.getMessage()
        ):
            self.found = True
            return False
        return True

    def __enter__(self) -> _MalformedProbabilities:
        logging.getLogger().addFilter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeFilter(self)


class BgenGenotypes(VariantFile):
    """A BGEN file as a genotype source (see :mod:`lmmscan.genotypes`)."""

    _handles = ("_reader",)

    def __init__(
        self, path: str | os.PathLike[str], sample: str | os.PathLike[str] | None = None
    ) -> None:
        require_extra("bgen", "bgen", "bgen", "--bgen")
        self._set_path(path, "BGEN file", "a BGEN file is read at any variant's offset")
        self.sample_path = None if sample is None else str(sample)
        if sample is not None and not Path(sample).exists():
            raise InputError(".sample file not found", path=str(sample))
        import sqlite3

        import bgen

        index = Path(self.path + ".bgi")
        if index.exists() and not index.is_file():
            raise InputError(
                "is not a file: the bgen package reads a bgenix index there (remove it)",
                path=str(index),
            )
        try:
            reader = bgen.BgenReader(self.path, delay_parsing=True)
            header = reader.header
            n = header.nsamples
            embedded = list(reader.samples) if header.has_sample_ids else None
            rows = VariantRows()
            add_chr, add_rs, add_ps, add_allele1, add_allele0 = rows.appenders()
            n_alleles = array("q")
            add_count = n_alleles.append
            offsets = array("Q")
            add_offset = offsets.append
            for v in reader:
                alleles = v.alleles
                count = len(alleles)
                add_count(count)
                add_chr(v.chrom)
                add_rs(v.rsid or v.varid)
                add_ps(v.pos)
                add_allele1(alleles[1] if count == 2 else "")
                add_allele0(alleles[0] if count == 2 else "")
                add_offset(v.fileoffset)
                rows.flush_if_full()
        except sqlite3.Error as exc:  # the bgen package opens PATH.bgi when there is one
            raise InputError(
                f"not a readable bgenix index ({one_line(exc)}): remove it, or remake it with: "
                f"bgenix -g {self.path} -index",
                path=str(index),
            ) from None
        except (ValueError, RuntimeError, OSError, IndexError) as exc:
            # (the bgen package says "truncated" of a damaged variant too, helper 67)
            raise InputError(
                f"not a readable BGEN file: cut short or damaged ({one_line(exc)})", path=self.path
            ) from None
        if len(rows) != header.nvariants:
            raise InputError(
                f"the header lists {header.nvariants} variants but the file holds "
                f"{len(rows)}: it is cut short or damaged, or its header is wrong",
                path=self.path,
            )
        _check_index(self.path, np.frombuffer(offsets, dtype=np.uint64))
        if sample is not None:
            samples = read_sample_file(Path(sample))
            if len(samples.iid) != n:
                raise InputError(
                    f"lists {len(samples.iid)} samples, but {self.path} has {n}", path=str(sample)
                )
            if embedded is not None:
                iid = np.asarray(samples.iid, dtype=object)
                joined = np.asarray(samples.fid, dtype=object) + "_" + iid
                emb = np.asarray(embedded, dtype=object)
                bad = (emb != iid) & (emb != joined)
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise InputError(
                        f"sample {i + 1} is {iid[i]!r} here but {emb[i]!r} in {self.path}",
                        path=str(sample),
                        line=i + 3,
                    )
        elif embedded is not None:
            _check_unique_embedded(embedded, self.path)
            samples = SampleText(embedded, embedded)
        else:
            raise InputError(
                "the BGEN file embeds no sample IDs: give the .sample file with --sample",
                path=self.path,
            )
        two = np.frombuffer(n_alleles, dtype=np.int64) == 2
        self._set_variants(samples, rows.table(), {"multi-allelic": ~two})
        self._reader = None

    def _open(self):
        if self._reader is None:
            import bgen

            self._reader = bgen.BgenReader(self.path, delay_parsing=True)
            watch_fork(self)  # (a forked child's "zlib decompression gave data of wrong length")
        return self._reader

    def _moments(
        self, file_index: np.ndarray, rows: np.ndarray | None, second: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        reader = self._open()
        width = self.n_samples if rows is None else rows.size
        e = np.empty((file_index.size, width))
        f = np.empty((file_index.size, width)) if second else None
        with _MalformedProbabilities() as malformed:
            for j, i in enumerate(file_index.tolist()):
                try:
                    v = reader[i]
                    ploidy = v.ploidy if rows is None else v.ploidy[rows]
                except (ValueError, RuntimeError, OSError, IndexError) as exc:
                    raise InputError(
                        f"cannot read variant {i + 1}: {one_line(exc)}", path=self.path
                    ) from None
                if (ploidy != 2).any():  # under the lock of read() or info(), as the decoding
                    self._read_as_missing("ploidy other than 2", i)
                    e[j] = np.nan
                    if f is not None:
                        f[j] = np.nan
                    continue
                if v.layout == 1:
                    self._check_layout1(v, i)
                self._moments_of(v, rows, j, e, f)
                if malformed.found:
                    raise InputError(
                        f"variant {i + 1} ({v.rsid or v.varid}) stores genotype probabilities "
                        "that sum to more than its bit depth allows: the file is malformed",
                        path=self.path,
                    )
        return e, f

    def _check_layout1(self, v: Any, i: int) -> None:
        """BGEN v1.1 (layout 1) stores each probability on its own 16 bits,
        so nothing in the format keeps a sample's three within 0-1 or their
        sum at most 1; the package infers the dosage as if they summed to 1
        (1.99, 1.99, 1.99 gave -3.97, and 0, 1.9, 0 gave 0.1), which was
        tested without a word.  Such a variant is refused, as VCF GP is."""
        p = np.asarray(v.probabilities, dtype=np.float64)
        bad = bad_probabilities(p)
        if bad.size:
            k = int(bad[0])
            shown = ",".join(f"{x:g}" for x in p[k])
            raise InputError(
                f"variant {i + 1} ({v.rsid or v.varid}): the genotype probabilities of sample "
                f"{self._sample_text.iid[k]!r} are {shown}; they run from 0 to 1 and sum to 1",
                path=self.path,
            )

    @staticmethod
    def _moments_of(
        v: Any, rows: np.ndarray | None, j: int, e: np.ndarray, f: np.ndarray | None
    ) -> None:
        """A diploid variant's expected dosage into e[j] (and E[x^2] into f[j])."""
        if f is None and not v.is_phased and v.layout == 2:  # the package's sum, 2x faster
            # (layout 2 stores two of the three probabilities, the third
            # being what they leave; layout 1 stores all three, whose sum may
            # fall short of 1, which the package's dosage ignores)
            d = v.alt_dosage
            e[j] = d if rows is None else d[rows]
            return
        p = v.probabilities if rows is None else v.probabilities[rows]
        if v.is_phased:  # per haplotype: P(allele 1), P(allele 2), twice
            h1, h2 = p[:, 1].astype(np.float64), p[:, 3].astype(np.float64)
            e[j] = h1 + h2
            if f is not None:
                f[j] = h1 + h2 + 2 * h1 * h2
        else:  # P(11), P(12), P(22): summing to 1 (layout 2), or at most 1 (layout 1)
            e[j], second = probability_moments(p)
            if f is not None:
                f[j] = second

    def _decode(self, file_index: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        return self._moments(file_index, rows, second=False)[0]

    def info(self, start: int, stop: int, samples: np.ndarray | None = None) -> np.ndarray:
        """IMPUTE's info of SNPs start..stop-1 over ``samples`` (see :func:`impute_info`)."""
        from .genotypes import sample_rows

        rows, _ = sample_rows(samples, self.n_samples)
        with self._lock:
            e, f = self._moments(self._file_index[start:stop], rows, second=True)
        assert f is not None
        return impute_info(e.T, f.T)

    def fam_phenotypes(self, columns: list[int]) -> np.ndarray:
        """The .sample file's phenotype columns (type P or C), NaN for NA or -9."""
        return self._phenotype_columns(
            columns,
            self.sample_path or self.path,
            "phenotype column(s) (type P or C in the .sample file); give --pheno",
        )


def read_bgen(
    path: str | os.PathLike[str], sample: str | os.PathLike[str] | None = None
) -> BgenGenotypes:
    """Open a BGEN file lazily; ``sample`` is its Oxford .sample file
    (optional when the file embeds sample IDs).  The second allele is counted;
    multi-allelic variants are skipped and counted in ``skipped``."""
    return BgenGenotypes(path, sample)
