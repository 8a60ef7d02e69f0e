"""VCF and BCF files (plain or bgzipped) as a genotype source, read by
cyvcf2, htslib's Python binding (extra ``vcf``).

The counted allele (``allele1``) is ALT.  ``field`` picks what a sample's
value is: ``DS`` (ALT dosage; where a sample has no DS, its GT, as plink2
reads such files), ``GP`` (P(0/1) + 2 P(1/1)) or ``GT`` (the ALT count of a
hard call).  One pass over the fixed columns, with no sample parsed, finds
the variants; blocks are then decoded in file order by htslib for the
analysed samples only.  Multi-allelic records, and records without the
field, are skipped and counted; a record where an analysed sample's GT is
not diploid (with ``GT``) reads as missing and is counted.
"""

from __future__ import annotations

import os
import zlib
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import InputError, one_line
from .genotypes import (
    DOSAGE_SLACK,
    SampleText,
    VariantFile,
    bad_probabilities,
    probability_moments,
    require_extra,
    watch_fork,
)
from .variants import VariantRows

FIELDS = ("DS", "GP", "GT")


# what reading a text VCF again may raise: it changed, is cut short or damaged
# (InputError is a ValueError)
_READ_AGAIN = (OSError, EOFError, ValueError, zlib.error)


def _text_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of a text VCF's lines, read again (for a message
    or the first record's check); none for a BCF, which is binary.  Raises
    what _READ_AGAIN names."""
    from .textio import open_input

    with open_input(Path(path)) as fh:
        for line, text in enumerate(fh, 1):
            if line == 1 and text.startswith(b"BCF"):
                return
            yield line, text


def _header_fault(path: str) -> tuple[int, str] | None:
    """(line, what is wrong) in a text VCF's header that htslib refuses with
    only "cannot parse VCF header": a sample name given twice, or header lines
    without their #CHROM line; None when neither (or a BCF, or unreadable:
    the caller's message stands).  Runs on an error path only."""
    try:
        for line, text in _text_lines(path):
            if text.startswith(b"#CHROM"):
                names = text.rstrip(b"\r\n").split(b"\t")[9:]
                first: dict[bytes, int] = {}
                for i, name in enumerate(names):
                    if name in first:
                        shown = name.decode("utf-8", "replace")
                        return line, (
                            f"sample name {shown!r} appears twice (columns "
                            f"{first[name] + 10} and {i + 10}); VCF sample names must "
                            "be unique"
                        )
                    first[name] = i
                return None
            if not text.startswith(b"#"):
                if line == 1:  # not a VCF at all: htslib's words stand
                    return None
                return line, "the header has no #CHROM line before the first record"
    except _READ_AGAIN:
        return None
    return None


def _record_columns(path: str, record: int = 0) -> tuple[int, int] | None:
    """(line, sample columns) of a text VCF's record ``record`` (0-based: the
    line that many after the header's, as htslib and ``_line_of`` count
    them); None for a BCF, a file with fewer records, or one unreadable."""
    try:
        seen = 0
        header = True
        for line, text in _text_lines(path):
            header = header and text.startswith(b"#")
            if header or (record == 0 and not text.strip()):  # (a blank line before the first)
                continue
            if seen == record:
                # a tab at the line's end ends no column: htslib reads it so
                fields = text.rstrip(b"\r\n").rstrip(b"\t").count(b"\t") + 1
                return (line, max(0, fields - 9)) if fields > 8 else None
            seen += 1
    except _READ_AGAIN:
        return None
    return None


def _first_record_columns(path: str, n_samples: int) -> tuple[int, int] | None:
    """(line, sample columns) of a text VCF's first record when its sample
    columns are not the #CHROM line's names; None when they are (or a BCF,
    no record, unreadable).  htslib reads a record with more columns than
    the header names by dropping the last ones: a header naming 79 samples
    over records of 80 gave each sample its neighbour's genotypes, exit 0.
    Only the first record is looked at (one more pass over every record
    would cost as much as the decompression); one record further on with a
    column too many is read as htslib and plink2 read it (its last column
    dropped), one with a column too few is refused when it is read
    (:func:`_columns_fault`)."""
    found = _record_columns(path)
    return found if found is not None and found[1] != n_samples else None


def _columns_fault(path: str, record: int, n_samples: int) -> str | None:
    """What is wrong with record ``record`` (0-based) of a text VCF that
    htslib could not read, where it is its number of sample columns (htslib
    says only "error parsing variant"); None otherwise.  Error paths only."""
    found = _record_columns(path, record)
    if found is None or found[1] >= n_samples:  # (one too many is read: htslib drops it)
        return None
    return f"it has {found[1]} sample columns, but the #CHROM line names {n_samples} samples"


class VcfGenotypes(VariantFile):
    """A VCF/BCF file as a genotype source (see :mod:`lmmscan.genotypes`)."""

    _handles = ("_reader",)

    def __init__(self, path: str | os.PathLike[str], field: str | None = None) -> None:
        require_extra("cyvcf2", "cyvcf2", "vcf", "--vcf")
        self._set_path(
            path, "VCF file", "a VCF is read twice (once to find the variants, then by blocks)"
        )
        import cyvcf2

        _quiet_htslib()
        try:
            vcf = cyvcf2.VCF(self.path, samples=[])
        except Exception as exc:  # cyvcf2's own errors are plain Exceptions
            fault = _header_fault(self.path)
            if fault is not None:
                raise InputError(fault[1], path=self.path, line=fault[0]) from None
            raise InputError(f"not a readable VCF/BCF file ({one_line(exc)})", path=self.path) \
                from None  # fmt: skip
        rows = VariantRows()
        names: list[str] | None = None
        try:
            names = self._sample_names()
            wrong = _first_record_columns(self.path, len(names))
            if wrong is not None:
                raise InputError(
                    f"the first record has {wrong[1]} sample columns, but the #CHROM line names "
                    f"{len(names)} samples",
                    path=self.path,
                    line=wrong[0],
                )
            if field is None:
                field = "DS" if vcf.contains("DS") else "GT"
            if field not in FIELDS:
                raise InputError(f"--vcf-field must be one of {', '.join(FIELDS)}, not {field!r}")
            if not vcf.contains(field):
                declared = [f for f in FIELDS if vcf.contains(f)]
                raise InputError(
                    f"the header declares no FORMAT {field} field (it declares "
                    f"{', '.join(declared) or 'none of DS, GP, GT'}): choose --vcf-field",
                    path=self.path,
                )
            kind = _format_type(vcf, field)
            if field != "GT" and kind not in (None, "Float"):
                raise InputError(
                    f"the header declares FORMAT {field} as Type={kind}; lmmscan reads {field} "
                    "as numbers (Type=Float)",
                    path=self.path,
                )
            self.field = field
            self.dosages_only = field != "GT"
            self.integer_calls = field == "GT"  # see engine.BlockScanner._collinear
            add_chr, add_rs, add_ps, add_allele1, add_allele0 = rows.appenders()
            n_alt = array("q")
            add_count = n_alt.append
            for rec in vcf:
                if rec.end <= rec.start:
                    # htslib could not parse the line (on a contig the header
                    # does not declare it hands on a half-filled record, whose
                    # ID and REF crash the process when read): every record
                    # spans at least its REF's one base
                    raise InputError(
                        f"record {len(rows) + 1}{self._line_of(len(rows))} is not a VCF "
                        "record: a blank line, or fewer than the 8 tab-separated fixed "
                        "fields with a number as POS",
                        path=self.path,
                    )
                add_chr(rec.CHROM)
                add_ps(rec.start + 1)  # POS is a C int in cyvcf2: past 2^31 it wraps
                add_rs(rec.ID or ".")
                add_allele0(rec.REF)
                alt = rec.ALT
                add_count(len(alt))
                add_allele1(alt[0] if len(alt) == 1 else ",".join(alt) or ".")
                rows.flush_if_full()
        except InputError:
            raise
        except Exception as exc:  # cyvcf2 raises Exception itself on a bad record
            why = None if names is None else _columns_fault(self.path, len(rows), len(names))
            raise InputError(
                f"cannot read record {len(rows) + 1}{self._line_of(len(rows))}"
                + (
                    f": {why}"
                    if why
                    else f" ({one_line(exc)}): a malformed record, or a file cut short or damaged"
                ),
                path=self.path,
            ) from None
        finally:
            vcf.close()
        if not len(rows):
            raise InputError("the VCF holds no records", path=self.path)
        samples = SampleText(names, names)
        multi = np.frombuffer(n_alt, dtype=np.int64) > 1
        self._set_variants(samples, rows.table(), {"multi-allelic": multi})
        self._reader: Any = None
        self._rows: np.ndarray | None = None
        self._next = 0  # file index of the record the open reader yields next

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._next = 0

    def _sample_names(self) -> list[str]:
        import cyvcf2

        vcf = cyvcf2.VCF(self.path)
        try:
            names = list(vcf.samples)
        except UnicodeDecodeError:
            raise InputError(
                "a sample name in the #CHROM line is not UTF-8 text", path=self.path
            ) from None
        finally:
            vcf.close()
        if not names:
            raise InputError("the VCF has no sample columns", path=self.path)
        if len(set(names)) != len(names):
            raise InputError("a sample ID appears twice in the #CHROM line", path=self.path)
        comma = next((i for i, name in enumerate(names) if "," in name), None)
        if comma is not None:
            # htslib takes the samples to decode as one comma-separated list
            raise InputError(
                f"sample name {names[comma]!r} (column {comma + 10} of the #CHROM line) holds "
                "a comma, which htslib's choice of samples cannot take: rename it (bcftools "
                "reheader)",
                path=self.path,
            )
        return names

    def _seek(self, target: int, rows: np.ndarray | None):
        """The reader positioned at file record ``target`` for ``rows``."""
        import cyvcf2

        same_rows = (rows is None and self._rows is None) or (
            rows is not None and self._rows is not None and np.array_equal(rows, self._rows)
        )
        if self._reader is None or not same_rows or target < self._next:
            if self._reader is not None:
                self._reader.close()
            names = list(self._sample_text.iid)
            subset = names if rows is None else [names[i] for i in rows.tolist()]
            self._reader = cyvcf2.VCF(
                self.path, samples=_htslib_samples(names, subset), gts012=False
            )
            watch_fork(self)
            if list(self._reader.samples) != subset:  # never tested in another's place
                self._reader.close()
                self._reader = None
                raise InputError(
                    f"htslib decoded other samples than the {len(subset)} asked for",
                    path=self.path,
                )
            self._rows = None if rows is None else rows.copy()
            self._next = 0
        reader: Any = self._reader
        while self._next < target:
            next(reader)
            self._next += 1
        return reader

    def _decode(self, file_index: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        width = self.n_samples if rows is None else rows.size
        out = np.empty((file_index.size, width))
        if file_index.size == 0:
            return out
        # htslib marks a missing value with a signalling NaN: casting it warns
        with np.errstate(invalid="ignore"):
            return self._decode_records(file_index, rows, out)

    def _records(self, file_index: np.ndarray, rows: np.ndarray | None) -> Iterator[Any]:
        """The file's records ``file_index`` (ascending), in order, for the
        samples ``rows``; a record htslib cannot read is one line naming them."""
        try:
            reader = self._seek(int(file_index[0]), rows)
            for i in file_index.tolist():
                while self._next < i:
                    next(reader)
                    self._next += 1
                rec = next(reader)
                self._next += 1
                yield rec
        except StopIteration:
            raise InputError(
                f"the file ended before record {int(file_index[-1]) + 1}: it changed since it "
                "was opened",
                path=self.path,
            ) from None
        except BaseException as exc:
            # an interrupt between next(reader) and the count left the count a
            # record behind, and the next read took each variant's successor
            # (helper 53): the reader is dropped, to be reopened
            self._reader = None
            if not isinstance(exc, Exception):  # KeyboardInterrupt, GeneratorExit
                raise
            # cyvcf2 raises Exception itself on a bad record
            bad = self._next  # the record being read: counted only once it was
            why = _columns_fault(self.path, bad, self.n_samples) or one_line(exc)
            raise InputError(
                f"cannot read record {bad + 1}{self._line_of(bad)}: {why}", path=self.path
            ) from None

    def _line_of(self, record: int) -> str:
        """ ", line N" of a record (0-based) in the file's text (its header lines
        and the records before it), or "" for a BCF or a header not read."""
        header = 0
        try:
            for _, text in _text_lines(self.path):
                if not text.startswith(b"#"):
                    break
                header += 1
        except _READ_AGAIN:  # an error path: no line then
            return ""
        if header == 0:  # a BCF is binary: no lines
            return ""
        return f" (line {header + record + 1})"

    def _decode_records(
        self, file_index: np.ndarray, rows: np.ndarray | None, out: np.ndarray
    ) -> np.ndarray:
        for j, rec in enumerate(self._records(file_index, rows)):
            index = int(file_index[j])
            try:
                skipped = self._decode_record(rec, index, rows, out[j])
            except AlleleBeyond as exc:
                at = exc.sample if rows is None else int(rows[exc.sample])
                sample = self._sample_text.iid[at]
                raise InputError(
                    f"record {index + 1}{self._line_of(index)} ({rec.CHROM}:{rec.start + 1} "
                    f"{rec.ID or '.'}): sample {sample!r} has allele {exc.code}, but the record "
                    + ("has one ALT allele" if rec.ALT else "has no ALT allele (ALT is '.')"),
                    path=self.path,
                ) from None
            if skipped is not None:  # under read()'s lock, as the decoding
                self._read_as_missing(skipped, index)
                out[j] = np.nan
        return out

    def _decode_record(
        self, rec: Any, index: int, rows: np.ndarray | None, x: np.ndarray
    ) -> str | None:
        """Record ``rec`` (file record ``index``) into ``x``; or why it is
        skipped (a key of the counts)."""
        field = self.field
        fmt = rec.FORMAT
        has_gt = "GT" in fmt
        if field not in fmt and not has_gt:
            return f"no {field} field"
        if field not in fmt or field == "GT":  # hard calls (a record with GT only)
            return None if _gt_dosage(rec, x) else "ploidy other than 2"
        if field == "GP":
            if not rec.ALT:  # ALT '.': one probability per sample (Number=G), of 0/0
                x[:] = np.where(np.isnan(rec.format("GP")[:, 0]), np.nan, 0.0)
                return None
            gp = _diploid_gp(rec)
            if gp is None:
                return "ploidy other than 2"
            if has_gt and np.isnan(gp).all():  # no sample's GP: read as a record of GT only
                return None if _gt_dosage(rec, x) else "ploidy other than 2"
            self._check_probabilities(gp, rec, index, rows)
            x[:] = probability_moments(gp)[0]
            self._check_dosages(x, rec, index, rows)
        else:
            if has_gt and _haploid_gt(rec):  # a male's X: DS in 0-1 is no diploid dosage
                return "ploidy other than 2"
            x[:] = rec.format("DS")[:, 0]
            self._check_dosages(x, rec, index, rows)
        if has_gt:  # a sample without DS or GP: its GT, as plink2 imports it
            _fill_from_gt(rec, x)
        return None

    def _check_probabilities(
        self, gp: np.ndarray, rec: Any, index: int, rows: np.ndarray | None
    ) -> None:
        """A GP triple with a probability outside 0-1 (or infinite), or that
        sums to more than 1 beyond rounding (:func:`bad_probabilities`), is
        bad input (plink2 refuses the first kind): its dosage (1.5 from
        0.5,0.5,0.5; 2 from -0.5,1,0.5; 0 from inf,0,0) was tested without a
        word.  NaN is a missing value."""
        bad = bad_probabilities(gp)
        if bad.size == 0:
            return
        i = int(bad[0])
        sample = self._sample_text.iid[i if rows is None else int(rows[i])]
        shown = ",".join(f"{v:g}" for v in gp[i])
        raise InputError(
            f"record {index + 1} ({rec.CHROM}:{rec.start + 1} {rec.ID or '.'}): the GP of sample "
            f"{sample!r} is {shown}; genotype probabilities run from 0 to 1 and sum to 1",
            path=self.path,
        )

    def _check_dosages(self, x: np.ndarray, rec: Any, index: int, rows: np.ndarray | None) -> None:
        """A dosage (DS, or from GP) outside 0-2, or infinite, is bad input: the
        filters would drop the variant as if its frequency were out of range,
        or test a value no genotype has.  NaN is a missing value."""
        top = 2.0 if rec.ALT else 0.0  # ALT '.': no ALT allele to count
        bad = np.flatnonzero(~((x >= -DOSAGE_SLACK) & (x <= top + DOSAGE_SLACK)) & ~np.isnan(x))
        if bad.size == 0:
            return
        i = int(bad[0])
        sample = self._sample_text.iid[i if rows is None else int(rows[i])]
        why = "dosages run from 0 to 2" if rec.ALT else "the record has no ALT allele (ALT is '.')"
        raise InputError(
            f"record {index + 1} ({rec.CHROM}:{rec.start + 1} {rec.ID or '.'}): the {self.field} "
            f"dosage of sample {sample!r} is {x[i]:g}; {why}",
            path=self.path,
        )

    def info(self, start: int, stop: int, samples: np.ndarray | None = None) -> np.ndarray:
        """IMPUTE's info of SNPs start..stop-1 over ``samples``, from GP."""
        from .bgenfile import impute_info
        from .genotypes import sample_rows

        if self.field != "GP":
            raise InputError("--info needs genotype probabilities: --vcf-field GP")
        rows, _ = sample_rows(samples, self.n_samples)
        file_index = self._file_index[start:stop]
        if file_index.size == 0:
            return np.zeros(0)
        width = self.n_samples if rows is None else rows.size
        e = np.empty((file_index.size, width))
        f = np.empty((file_index.size, width))
        with self._lock, np.errstate(invalid="ignore"):
            for j, rec in enumerate(self._records(file_index, rows)):
                has_gp, has_gt = "GP" in rec.FORMAT, "GT" in rec.FORMAT
                gp = _diploid_gp(rec) if has_gp else None
                if (has_gp and gp is None) or not (has_gp or has_gt):
                    e[j] = f[j] = np.nan  # no info (the scan skips it)
                    continue
                e[j], f[j] = probability_moments(gp) if gp is not None else (np.nan, np.nan)
                if has_gt:  # samples without GP: their GT, certain calls, as the scan
                    called = np.isnan(e[j])
                    _fill_from_gt(rec, e[j])
                    f[j][called] = e[j][called] ** 2
        return impute_info(e.T, f.T)


def _format_type(vcf: Any, field: str) -> str | None:
    """The Type the header gives FORMAT ``field`` (None if it declares none)."""
    for line in vcf.header_iter():
        info = line.info()
        if info.get("HeaderType") == "FORMAT" and info.get("ID") == field:
            return str(info.get("Type"))
    return None


def _htslib_samples(names: list[str], subset: list[str]) -> list[str] | None:
    """``subset`` of the file's samples ``names`` as htslib's choice of samples
    takes it: a list joined by commas (a name with a comma is refused on
    opening), read as "every sample but these" when it starts with '^'.  A
    name '^a' first made htslib decode the other samples, which were tested
    in the analysed ones' places, exit 0 (helper 52).  htslib keeps the
    file's order whatever the list's, so a name without '^' goes first; when
    every chosen name has one, the others are excluded instead.  None: all."""
    if len(subset) == len(names):
        return None
    plain = next((k for k, name in enumerate(subset) if not name.startswith("^")), None)
    if plain is not None:
        return [subset[plain], *subset[:plain], *subset[plain + 1 :]]
    chosen = set(subset)
    others = [name for name in names if name not in chosen]
    return ["^" + others[0], *others[1:]]


def _diploid_gp(rec: Any) -> np.ndarray | None:
    """A record's GP (samples, 3), or None where a sample is haploid (chrY,
    MT, a male's X: two probabilities, the third one the vector's end, which
    reads as NaN; its dosage was read as missing).  A record whose every GP
    is '.' comes one value wide: every sample's GP is missing (its GT is
    read), not a haploid record's (it was skipped as "ploidy other than 2",
    helper 67)."""
    gp = rec.format("GP")
    if gp.ndim == 2 and gp.shape[1] < 3 and np.isnan(gp).all():
        return np.full((gp.shape[0], 3), np.nan)
    if gp.ndim != 2 or gp.shape[1] != 3:
        return None
    if (np.isnan(gp[:, 2]) & ~np.isnan(gp[:, 1])).any():
        return None
    return gp


def _haploid_gt(rec: Any) -> bool:
    """Whether a sample's GT is not diploid (see :func:`_not_diploid`)."""
    return bool(_not_diploid(rec.genotype.array()).any())


def _not_diploid(gt: np.ndarray) -> np.ndarray:
    """Which samples of ``genotype.array()`` (allele codes, then the phase;
    -1 missing, -2 the end of a shorter call) are not diploid: every one
    where the record's calls are not two alleles wide (haploid throughout:
    two columns), else a called allele followed by the end (a male's chrX).
    A lone '.' ([-1, -2]) is a missing call."""
    if gt.shape[1] != 3:
        return np.ones(gt.shape[0], dtype=bool)
    return (gt[:, 1] == -2) & (gt[:, 0] != -1)


def _quiet_htslib() -> None:
    """htslib prints its own errors on stderr; lmmscan reports them in one
    line, so htslib's logging is turned off (cyvcf2 links htslib in)."""
    import ctypes

    import cyvcf2.cyvcf2 as binding

    try:
        ctypes.CDLL(binding.__file__).hts_set_log_level(0)  # HTS_LOG_OFF
    except (OSError, AttributeError):  # pragma: no cover - another cyvcf2 build
        pass


class AlleleBeyond(ValueError):
    """A GT allele code beyond the record's ALT alleles: ``sample`` (the
    index among the samples decoded), ``code``."""

    def __init__(self, sample: int, code: int) -> None:
        super().__init__(f"allele {code}")
        self.sample, self.code = sample, code


def _fill_from_gt(rec: Any, x: np.ndarray) -> None:
    """Each sample of ``x`` without a dosage (NaN: no DS or GP value, or GP
    0,0,0) gets its GT's, as plink2 imports such a file; a record whose GT is
    not diploid leaves them missing."""
    missing = np.isnan(x)
    if missing.any():
        which = np.flatnonzero(missing)
        gt = np.empty(which.size)
        if _gt_dosage(rec, gt, which):
            x[which] = gt


def _gt_dosage(rec, out: np.ndarray, which: np.ndarray | None = None) -> bool:
    """The ALT count of a biallelic record's GT per sample (of the indices
    ``which``, or all) into ``out``, NaN where a call is missing; False when a
    sample's GT is not diploid.

    ``genotype.array()`` gives each sample's two allele codes (-1 missing, -2
    the end of a shorter call) and the phase: one int16 array, faster than
    cyvcf2's ``gt_types``."""
    gt = rec.genotype.array()
    if which is not None:
        gt = gt[which]
    if _not_diploid(gt).any():
        return False
    a, b = gt[:, 0], gt[:, 1]
    n_alt = len(rec.ALT)  # 1, or 0 where ALT is '.' (no ALT: every call must be 0)
    beyond = (a > n_alt) | (b > n_alt)  # an allele the record does not have
    if beyond.any():
        i = int(np.flatnonzero(beyond)[0])
        raise AlleleBeyond(i if which is None else int(which[i]), int(max(a[i], b[i])))
    out[:] = a > 0
    out += b > 0
    out[(a < 0) | (b < 0)] = np.nan
    return True


def read_vcf(path: str | os.PathLike[str], field: str | None = None) -> VcfGenotypes:
    """Open a VCF or BCF file (plain or bgzipped) lazily.  ``field``: "DS",
    "GP" or "GT" (default: DS when the header declares it, else GT).  ALT is
    counted; multi-allelic records are skipped and counted in ``skipped``."""
    return VcfGenotypes(path, field)
