"""BIMBAM mean-genotype files (plain or gzipped) as a streaming genotype source.

A line is ``rs allele1 allele0 g_1 ... g_N``, fields separated by any run of
spaces, tabs or commas (GEMMA's strtok on " ,\\t"); ``g`` is the dosage of
allele1 (0..2), ``NA`` missing.  One pass over the file finds the SNPs, their
IDs and alleles and checks that every line has the same number of
genotypes; blocks of SNPs are then parsed on demand, sequentially, so the
whole file is never in memory.

An annotation file (GEMMA's ``-a``: ``rs pos chr [cM]``) gives chr and ps;
SNPs missing from it (or without one) get chr "-9" and ps -9, as in GEMMA.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from ._errors import InputError, plural
from .genotypes import watch_fork
from .samples import HUGE
from .textio import check_line_ends, gzip_errors

_SEP = b" ,\t\r"
_TO_NEWLINE = bytes.maketrans(_SEP, b"\n" * len(_SEP))
_HEAD = re.compile(rb"[ ,\t\r]*([^ ,\t\r\n]+)[ ,\t\r]+([^ ,\t\r\n]+)[ ,\t\r]+([^ ,\t\r\n]+)")
_CHUNK = 16 << 20
# a block's text is read into its buffer this much at a time
_READ_PIECE = 1 << 20
NEEDS_FILE = "BIMBAM genotypes are read twice (once to find the SNPs, then by blocks)"


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode()
    except UnicodeDecodeError:
        return False
    return True


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def read_bimbam_anno(path: str | os.PathLike[str]) -> dict[str, tuple[str, int]]:
    """rs -> (chr, pos) from a BIMBAM annotation file (rs pos chr [cM]).

    ``NA`` (or an absent field) gives pos -9 / chr "-9"; a later line for the
    same rs wins, as in GEMMA.
    """
    from .textio import read_text

    path = Path(path)
    out: dict[str, tuple[str, int]] = {}
    # rows are matched by rs, not position: blank lines are skipped, and each
    # row keeps its file line for the messages
    text = read_text(path, "annotation file")
    check_line_ends(text[: 1 << 20].encode(), path)  # CR alone: one line, every SNP unplaced
    lines = text.split("\n")
    rows = [(k, fields) for k, fields in enumerate((x.replace(",", " ").split() for x in lines), 1)
            if fields]  # fmt: skip
    if not rows:
        raise InputError("annotation file is empty", path=str(path))
    for line, row in rows:
        if len(row) < 2:
            raise InputError(
                "an annotation line needs at least rs and position",
                path=str(path),
                line=line,
            )
        pos_tok = row[1]
        if pos_tok == "NA":
            pos = -9
        else:
            try:
                pos = int(pos_tok)
            except ValueError:
                try:
                    pos = int(float(pos_tok))
                except (ValueError, OverflowError):  # not a number, or inf / nan
                    raise InputError(
                        f"position {pos_tok!r} is not a number",
                        path=str(path),
                        line=line,
                        column=2,
                    ) from None
            if not -(2**63) <= pos < 2**63:
                raise InputError(
                    f"position {pos_tok!r} is out of range (a 64-bit integer)",
                    path=str(path),
                    line=line,
                    column=2,
                )
        chr_ = row[2] if len(row) > 2 and row[2] != "NA" else "-9"
        out[row[0]] = (chr_, pos)
    return out


def _read_exactly(fh: io.BufferedIOBase, size: int) -> bytearray:
    """``size`` bytes from ``fh`` in one buffer (fewer at the end of the
    file), read in pieces: a gzip stream's read() would make its own copy."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        k = fh.readinto(view[got : min(size, got + _READ_PIECE)])
        if not k:
            break
        got += k
    view.release()
    if got < size:
        del buf[got:]
    return buf


def _every_sample(rows: np.ndarray, n: int) -> bool:
    """Whether ``rows`` lists 0..n-1 in order (nothing to take)."""
    return rows.size == n and bool((rows == np.arange(n)).all())


def _blank(text: bytearray, begin: np.ndarray, end: np.ndarray) -> None:
    """Spaces over ``text[begin[k]:end[k]]`` for each k."""
    lengths = end - begin
    total = int(lengths.sum())
    if total:
        before = np.cumsum(lengths) - lengths
        where = np.repeat(begin - before, lengths) + np.arange(total)
        np.frombuffer(text, np.uint8)[where] = ord(" ")


class BimbamGenotypes:
    """A BIMBAM mean-genotype file as a genotype source (see :mod:`lmmscan.genotypes`).

    ``snps`` has chr, rs, ps, allele1 (the counted allele: BIMBAM column 2),
    allele0.  ``read(start, stop, samples)`` parses those SNP lines only.
    """

    def __init__(
        self, path: str | os.PathLike[str], anno: str | os.PathLike[str] | None = None
    ) -> None:
        from .textio import input_stat

        self.path = Path(path)
        if not self.path.exists():
            raise InputError("BIMBAM genotype file not found", path=str(self.path))
        if self.path.is_dir():
            raise InputError("is a directory, not a BIMBAM genotype file", path=str(self.path))
        input_stat(self.path, needs_file=NEEDS_FILE)
        self._gzip = _is_gzip(self.path)
        self._scan_lines()
        amap = read_bimbam_anno(anno) if anno is not None else {}
        rs = self._rs
        chr_ = [amap[r][0] if r in amap else "-9" for r in rs]
        ps = np.array([amap[r][1] if r in amap else -9 for r in rs], dtype=np.int64)
        # which SNPs the annotation lists (its NA chromosome is the name "-9",
        # as in GEMMA: a chromosome for LOCO; an unlisted SNP is on none)
        self.annotated = np.array([r in amap for r in rs], dtype=bool)
        self._snps = pd.DataFrame(
            {"chr": chr_, "rs": rs, "ps": ps, "allele1": self._a1, "allele0": self._a0}
        )
        del self._rs, self._a1, self._a0
        self._fh = None
        self._pos = 0
        # the SNPs read with values outside [0, 2] (a mask: a set of 10M took 588 MB)
        self.outside_range: dict = {"snps": np.zeros(len(rs), dtype=bool), "first": None}
        self._outside_lock = threading.Lock()
        # the open file and its position: one reader at a time (two scans of
        # one reader on two threads read each other's bytes, exit 0)
        self._file_lock = threading.Lock()

    # -- first pass ---------------------------------------------------------

    def _open(self):
        return gzip.open(self.path, "rb") if self._gzip else open(self.path, "rb")

    def _scan_lines(self) -> None:
        from .textio import _tokens_per_line, line_chunks

        rs: list[str] = []
        a1: list[str] = []
        a0: list[str] = []
        geno_start: list[int] = []  # offset of each SNP's first genotype
        line_end: list[int] = []  # offset just past each SNP's newline
        line_no: list[int] = []
        n_tokens = None
        offset = 0  # stream offset of the current chunk
        lines_before = 0
        try:
            fh = self._open()
            with fh, gzip_errors(self.path):
                for chunk in line_chunks(fh, _CHUNK):
                    if offset == 0:
                        check_line_ends(chunk, self.path)
                    counts = _tokens_per_line(chunk)
                    ends = np.flatnonzero(np.frombuffer(chunk, np.uint8) == 10) + 1
                    starts = np.concatenate([[0], ends[:-1]])
                    for k in np.flatnonzero(counts).tolist():
                        lineno = lines_before + k + 1
                        count = int(counts[k])
                        if n_tokens is None:
                            n_tokens = count
                            if count < 4:
                                raise InputError(
                                    f"a line needs rs, two alleles and genotypes; found {count} "
                                    "fields",
                                    path=str(self.path),
                                    line=lineno,
                                )
                        elif count != n_tokens:
                            raise InputError(
                                f"{count - 3} genotypes where the first SNP has {n_tokens - 3}"
                                if count >= 4
                                else f"a line needs rs, two alleles and genotypes; found "
                                f"{plural(count, 'field')}",
                                path=str(self.path),
                                line=lineno,
                            )
                        s, e = int(starts[k]), int(ends[k])
                        m = _HEAD.match(chunk, s, e)
                        assert m is not None  # the line has at least 3 tokens (checked)
                        try:
                            name = m.group(1).decode()
                            if offset == 0 and s == 0:  # a byte-order mark is no part of it
                                name = name.removeprefix("\ufeff")
                            rs.append(name)
                            a1.append(m.group(2).decode())
                            a0.append(m.group(3).decode())
                        except UnicodeDecodeError:
                            # as the .bim's reader: an ID is not changed on its way
                            # to the table (it was replaced by U+FFFD)
                            field = next(f for f in (1, 2, 3) if not _is_utf8(m.group(f)))
                            raise InputError(
                                f"{('the rs ID', 'allele 1', 'allele 0')[field - 1]} "
                                f"{m.group(field)!r} is not UTF-8 text",
                                path=str(self.path),
                                line=lineno,
                                column=field,
                            ) from None
                        geno_start.append(offset + m.end())
                        line_end.append(offset + e)
                        line_no.append(lineno)
                    lines_before += counts.size
                    offset += len(chunk)
                # a last line without a newline was given one by line_chunks:
                # its end is the file's (helper 62: every read of it was
                # refused as a file that changed)
                if line_end:
                    line_end[-1] = min(line_end[-1], fh.tell())
        except OSError as exc:
            raise InputError(f"cannot read ({exc})", path=str(self.path)) from None
        if n_tokens is None:
            raise InputError("BIMBAM genotype file has no SNP", path=str(self.path))
        self._n = n_tokens - 3
        self._rs, self._a1, self._a0 = rs, a1, a0
        self._geno_start = np.array(geno_start, dtype=np.int64)
        self._line_end = np.array(line_end, dtype=np.int64)
        self._line_no = np.array(line_no, dtype=np.int64)

    # -- protocol -----------------------------------------------------------

    @property
    def n_samples(self) -> int:
        return self._n

    @property
    def n_snps(self) -> int:
        return len(self._snps)

    @property
    def snps(self) -> pd.DataFrame:
        return self._snps

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_fh"] = None
        state["_pos"] = 0
        state["_outside_lock"] = state["_file_lock"] = None
        return state

    def _drop_handles(self) -> None:
        """Forget the open file (a forked child's: see genotypes.watch_fork)."""
        self._fh, self._pos = None, 0

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._outside_lock = threading.Lock()
        self._file_lock = threading.Lock()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def close(self) -> None:
        with self._file_lock:
            self._close()

    def _close(self) -> None:
        # forgotten before it is closed: an interrupt inside close() left a
        # closed stream to read ("I/O operation on closed file")
        fh, self._fh, self._pos = self._fh, None, 0
        if fh is not None:
            fh.close()

    def _read_bytes(self, begin: int, end: int, last: bool) -> bytearray:
        """The file's bytes begin..end-1, in a buffer of their own (fewer if
        the file ends before); ``last``: the pass is over, the file is closed
        (not held open).  Under the file's lock."""
        with self._file_lock:
            data = self._read_unlocked(begin, end)
            if last:
                self._close()
        return data

    def _read_unlocked(self, begin: int, end: int) -> bytearray:
        # gzip streams seek forward by decompressing: reading blocks in order
        # (as scans do) never decompresses twice; going back reopens the file.
        fh = self._fh
        if fh is None or begin < self._pos:
            self._close()
            fh = self._fh = self._open()
            watch_fork(self)
        # a stream cut short or damaged while the scan reads it: bad input
        # (the checkpoint is kept, as for a plain file that changed)
        try:
            with gzip_errors(self.path):
                if begin != self._pos:
                    fh.seek(begin)
                data = _read_exactly(fh, end - begin)
        except BaseException:
            # a read or seek cut short (Ctrl-C inside gzip's) leaves the stream
            # and _pos apart: the next read blamed the file (helper 53)
            self._close()
            raise
        self._pos = end
        return data

    def read(self, start: int, stop: int, samples: np.ndarray | None = None) -> np.ndarray:
        """Dosages of SNPs start..stop-1, (samples x SNPs) float64, NaN for NA,
        Fortran-ordered (each SNP's values together, as a file's lines hold
        them: the samples are gathered from the parsed lines, with no
        transposing copy, and the block is in the order the repeat-SNP search
        takes)."""
        if not 0 <= start <= stop <= self.n_snps:
            raise IndexError(f"SNP range {start}:{stop} outside 0:{self.n_snps}")
        rows = None
        if samples is not None:
            rows = np.asarray(samples)
            if rows.dtype == bool:
                if rows.shape != (self._n,):
                    raise InputError(f"a sample mask must have {self._n} entries, got {rows.shape}")
                rows = np.flatnonzero(rows)
            rows = rows.astype(np.intp, copy=False)
        if stop == start:
            P = np.zeros((0, self._n))
        else:
            # a pass is over at the last SNP: the file is not held open
            last = stop == self.n_snps
            base = int(self._geno_start[start])
            text = self._read_bytes(base, int(self._line_end[stop - 1]), last)
            ends = self._line_end[start:stop] - base
            if len(text) != ends[-1]:
                raise InputError(
                    "the file is shorter than when it was first read: it changed during the run",
                    path=str(self.path),
                )
            # each later SNP's rs and alleles (and any blank lines before
            # them) are blanked in the buffer read: the parser sees only
            # genotypes, with no copy of the text (helper 55: the text sliced
            # and joined took three times its size beside the block)
            heads = (
                self._line_end[start : stop - 1] - base,
                self._geno_start[start + 1 : stop] - base,
            )
            _blank(text, *heads)
            P = self._parse(text, start, stop, ends)  # (SNPs, samples)
            del text
        if rows is not None and not _every_sample(rows, self._n):
            P = P.take(rows, axis=1)  # (SNPs, analysed samples), C order: one gather
        return np.asfortranarray(P.T)  # a view

    def read_overhead(self, block: int, subset: bool) -> int:
        """Bytes a read of ``block`` SNPs holds beside the block it returns, at
        most: the text of the SNPs (their lines as the file has them), then,
        for a ``subset`` of the samples, all samples' values before the
        analysed ones are taken (see :mod:`lmmscan.memory`)."""
        block = max(1, min(block, self.n_snps))
        text = int(
            (self._line_end[block - 1 :] - self._geno_start[: self.n_snps - block + 1]).max()
        )
        return max(text, 8 * self._n * block if subset else 0)

    def _parse(self, text: bytearray, start: int, stop: int, ends: np.ndarray) -> np.ndarray:
        """The genotypes of SNPs start..stop-1: ``text`` is their genotype
        fields, one line each, the line of SNP start + k ending at ``ends[k]``."""
        from ._core import parse_numbers
        from .textio import _parse_threads, token_at

        # only NA is missing: nan, inf and the like are not genotypes
        values, _, bad = parse_numbers(text, _parse_threads(len(text)), nan_words=False)
        if bad >= 0:
            k = int(np.searchsorted(ends, bad, side="right"))
            line_start = int(ends[k - 1]) if k else 0
            token, _, column = token_at(text[line_start:], bad - line_start)
            raise InputError(
                f"genotype {token!r} is not a number (use NA for missing)",
                path=str(self.path),
                line=int(self._line_no[start + k]),
                column=column + 3,  # after the rs and the two allele columns
            )
        if values.size != (stop - start) * self._n:  # pragma: no cover - checked in pass 1
            raise InputError("genotype count changed while reading", path=str(self.path))
        # inf, and values whose squares overflow in the filters and kinship;
        # then dosages outside [0, 2], kept as GEMMA keeps them but counted
        if (values < 0.0).any() or (values > 2.0).any():
            if (values > HUGE).any() or (values < -HUGE).any():
                self._raise_bad_token(start, stop)
            self._count_outside(values, start, stop)
        return values.reshape(stop - start, self._n)

    def _count_outside(self, values: np.ndarray, start: int, stop: int) -> None:
        """Count dosages outside [0, 2] (GEMMA uses them as numbers; a -9 is
        likely meant as missing, which BIMBAM writes NA); the first is named."""
        outside = (values < 0.0) | (values > 2.0)
        rows = outside.reshape(stop - start, self._n).any(axis=1)
        with self._outside_lock:  # a SNP read twice (kinship, then tests) counts once
            self.outside_range["snps"][start:stop] |= rows
            first = int(np.argmax(outside))
            k, j = divmod(first, self._n)
            where = (int(self._line_no[start + k]), j + 4, float(values[first]))
            known = self.outside_range.get("first")
            if known is None or where[0] < known[0]:  # blocks may come in any order
                self.outside_range["first"] = where

    def warnings(self) -> list[str]:
        """What the run should say about the values read so far."""
        found = self.outside_range
        k = int(np.count_nonzero(found["snps"]))
        if not k:
            return []
        line, column, value = found["first"]
        # (SNPs read on Dask workers, or before a --resume, are not counted)
        return [
            f"{self.path}: {plural(k, 'SNP')} read with genotype values outside "
            f"[0, 2] (the first {value:g}, line {line}, column {column}), used as dosages as "
            "GEMMA does; BIMBAM writes a missing genotype as NA"
        ]

    def _raise_bad_token(self, start: int, stop: int) -> None:
        for k in range(start, stop):
            text = self._read_bytes(int(self._geno_start[k]), int(self._line_end[k]), False)
            for j, tok in enumerate(text.translate(_TO_NEWLINE).split()):
                if tok == b"NA":
                    continue
                try:
                    value = float(tok)
                except ValueError:
                    value = float("nan")
                if not abs(value) <= HUGE:
                    why = (
                        f"is too large (beyond ±{HUGE:.0e} its square overflows)"
                        if np.isfinite(value)
                        else "is not a number (use NA for missing)"
                    )
                    raise InputError(
                        f"genotype {tok.decode(errors='replace')!r} {why}",
                        path=str(self.path),
                        line=int(self._line_no[k]),
                        column=j + 4,
                    )
        raise InputError("cannot parse the genotypes", path=str(self.path))  # pragma: no cover


def read_bimbam(
    path: str | os.PathLike[str], anno: str | os.PathLike[str] | None = None
) -> BimbamGenotypes:
    """Open a BIMBAM mean-genotype file (``.gz`` or plain) with an optional annotation."""
    return BimbamGenotypes(path, anno)
