"""Result tables in the formats downstream tools read, written so that no
half-written file ever carries the final name.

``gemma``     PREFIX.assoc.txt: GEMMA 0.98.5's header, columns and number
              formats for the test (``%.6e`` after af, af ``%.3f``), tab-separated.
``plink2``    PREFIX.glm.linear: PLINK 2 ``--glm`` column names (#CHROM POS ID
              REF ALT A1 A1_FREQ TEST OBS_CT BETA SE T_STAT P LOG10_P), NA missing
              (as plink2 writes it; "." for a SNP with no chromosome).
``regenie``   PREFIX.regenie: regenie step-2 columns (CHROM GENPOS ID ALLELE0
              ALLELE1 A1FREQ N TEST BETA SE CHISQ LOG10P EXTRA), space-separated,
              NA missing, then P (regenie itself has only LOG10P).
``gwas-ssf``  PREFIX.ssf.tsv: the GWAS Catalog's GWAS-SSF (chromosome
              base_pair_location effect_allele other_allele beta standard_error
              effect_allele_frequency p_value, then neg_log_10_p_value rsid n),
              "#NA" missing.

The non-GEMMA formats report one test: Wald when it was run, else the LRT,
else the score test.  N (OBS_CT, n) is the number of analysed individuals
with an observed genotype.  p-values below 1e-300 are printed from their
logarithm, computed from the test statistic ("3.1e-412", never 0), and
-log10 p is always computed that way for them.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ._threads import usable_cores
from .pvalues import TINY_P, neg_log10_ps, test_statistics
from .variants import LINE_BREAKS, VariantTable, unprintable_field

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("gemma", "plink2", "regenie", "gwas-ssf")
EXTENSIONS = {
    "gemma": ".assoc.txt",
    "plink2": ".glm.linear",
    "regenie": ".regenie",
    "gwas-ssf": ".ssf.tsv",
}
# bytes no field of each format's rows can hold (regenie's fields are
# separated by spaces, the others' by tabs)
FIELD_BREAKS = {fmt: LINE_BREAKS + (b" " if fmt == "regenie" else b"") for fmt in FORMATS}
LEADING = ["chr", "rs", "ps", "n_miss", "allele1", "allele0", "af"]


# ------------------------------------------------------------------ atomic files


def temp_name(path: Path) -> Path:
    """The hidden name ``path`` is written under before it is renamed into place."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


# a temporary file untouched this long, whose process is not running here, is
# a killed run's (a run on another machine or container writes continuously)
_STALE_SECONDS = 600


def temporaries(path: Path) -> Iterator[tuple[Path, str]]:
    """The temporary files of ``path`` (``.NAME.tmpPID``, :func:`temp_name`)
    with the text after ``tmp``, the writer's process number."""
    for temp in path.parent.glob(f".{glob.escape(path.name)}.tmp*"):
        yield temp, temp.name[len(path.name) + 5 :]


def _remove_dead_temporaries(path: Path) -> None:
    """Remove the temporary files of ``path`` that killed runs left: those
    whose process is gone and which have not been written to for 10 minutes
    (a process number is this machine's: a shared directory may hold a live
    run's from another)."""
    import time

    for stale, pid in temporaries(path):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            if time.time() - stale.stat().st_mtime < _STALE_SECONDS:
                continue
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                stale.unlink()
        except OSError:  # gone already, or another user's process: alive
            pass


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed to it when the block succeeds.

    On any exception (including KeyboardInterrupt) the temporary file is
    removed and ``path`` is left untouched.
    """
    outputs = OutputSet()
    try:
        yield outputs.add(path)
        outputs.commit()
    finally:
        outputs.discard()


def output_file(path: str | os.PathLike[str]) -> Path:
    """The file an output named ``path`` is renamed to: a symlink's target
    (written through, as a shell redirection writes), never a directory, a
    device, a FIFO or a socket (a rename would replace the node itself)."""
    final = Path(path)
    if final.is_symlink():
        final = Path(os.path.realpath(final))
        if not final.parent.is_dir():
            from ._errors import InputError

            raise InputError(
                f"the output name is a symlink to {final}, whose directory does not exist",
                path=str(path),
            )
    check_output_name(final, shown=str(path))
    return final


def check_output_name(path: Path, shown: str | None = None) -> None:
    """Refuse an output name taken by a directory, a device, a FIFO or a
    socket (renaming the finished file over it would replace it)."""
    from ._errors import InputError

    shown = str(path) if shown is None else shown
    if path.is_dir():
        raise InputError("the output name is taken by a directory", path=shown)
    if path.exists() and not path.is_file():
        raise InputError("the output name is taken by a device, FIFO or socket", path=shown)


class OutputSet:
    """Several output files that appear together or not at all."""

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []

    def add(self, path: str | os.PathLike[str]) -> Path:
        final = output_file(path)
        _remove_dead_temporaries(final)
        tmp = temp_name(final)
        self._pending.append((final, tmp))
        return tmp

    @property
    def pending(self) -> list[tuple[Path, Path]]:
        """(final, temporary) of each file not yet put in place."""
        return list(self._pending)

    def commit(self) -> None:
        for final, tmp in self._pending:
            os.replace(tmp, final)
        self._pending = []

    def committed(self) -> None:
        """The caller has renamed every pending file itself."""
        self._pending = []

    def discard(self) -> None:
        for _, tmp in self._pending:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._pending = []


# ------------------------------------------------------------------ number text


def _fmt(values: np.ndarray, spec: str, na: str | None = None) -> list[str]:
    if na is None:
        return [format(v, spec) for v in np.asarray(values, dtype=np.float64).tolist()]
    return [
        format(v, spec) if v == v and abs(v) != math.inf else na
        for v in np.asarray(values, dtype=np.float64).tolist()
    ]


def _sci_from_log10(log10p: float, digits: int, style: str) -> str:
    """p = 10**(-log10p) in "%.{digits}e" ("e") or "%.{digits}g" ("g") style."""
    q = -log10p
    exp = math.floor(q)
    mant = round(10.0 ** (q - exp), digits if style == "e" else digits - 1)
    if mant >= 10.0:
        mant, exp = 1.0, exp + 1
    if style == "e":
        return f"{mant:.{digits}f}e{exp:+03d}"
    text = f"{mant:.{digits - 1}f}".rstrip("0").rstrip(".")
    return f"{text}e{exp:+03d}"


def format_p(p: np.ndarray, log10p: np.ndarray, style: str, na: str | None = None) -> list[str]:
    """p-values as text; values below 1e-300 are spelled from -log10 p, never 0."""
    spec = ".6e" if style == "e" else ".6g"
    digits = 6
    text = _fmt(p, spec, na)
    p = np.asarray(p)
    spelled = (p < TINY_P) & np.isfinite(log10p)
    for i in np.flatnonzero(spelled).tolist():
        text[i] = _sci_from_log10(float(log10p[i]), digits, style)
    # a p of 0 without a finite -log10 p (an infinite statistic) has no value:
    # the scan marks those NaN; this keeps any other caller from printing 0
    for i in np.flatnonzero((p == 0) & ~spelled).tolist():
        text[i] = na if na is not None else "nan"
    return text


# ------------------------------------------------------------------ table writers


class TableWriter:
    """Writes a scan's rows block by block in one of :data:`FORMATS`."""

    def __init__(
        self,
        fh,
        fmt: str,
        test: str,
        *,
        n_analyzed: int,
        df: int,
        loglik_mle_null: float,
        test_columns: list[str],
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}")
        if fmt == "gwas-ssf" and "beta" not in test_columns:
            from ._errors import InputError

            raise InputError(no_beta_for_ssf("format 'gwas-ssf'", f"a table of test {test!r}"))
        self.fh = fh
        self.fmt = fmt
        self.test = test
        self.n = n_analyzed
        self.df = df
        self.loglik_mle_null = loglik_mle_null
        self.test_columns = test_columns
        self.main_p = next(p for p in ("p_wald", "p_lrt", "p_score") if p in test_columns)
        self.rows = 0  # rows written
        self.fh.write(self._header() + "\n")

    def _header(self) -> str:
        if self.fmt == "gemma":
            return "\t".join(LEADING + self.test_columns)
        if self.fmt == "plink2":
            return "\t".join(
                [
                    "#CHROM",
                    "POS",
                    "ID",
                    "REF",
                    "ALT",
                    "A1",
                    "A1_FREQ",
                    "TEST",
                    "OBS_CT",
                    "BETA",
                    "SE",
                    "T_STAT",
                    "P",
                    "LOG10_P",
                ]
            )
        if self.fmt == "regenie":
            return " ".join(
                [
                    "CHROM",
                    "GENPOS",
                    "ID",
                    "ALLELE0",
                    "ALLELE1",
                    "A1FREQ",
                    "N",
                    "TEST",
                    "BETA",
                    "SE",
                    "CHISQ",
                    "LOG10P",
                    "EXTRA",
                    "P",
                ]
            )
        return "\t".join(
            [
                "chromosome",
                "base_pair_location",
                "effect_allele",
                "other_allele",
                "beta",
                "standard_error",
                "effect_allele_frequency",
                "p_value",
                "neg_log_10_p_value",
                "rsid",
                "n",
            ]
        )

    def write(
        self,
        snps: VariantTable | pd.DataFrame,
        cols: dict,
        extra_stats: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Write rows for ``snps`` (chr rs ps allele1 allele0: a variant table,
        or a DataFrame with those columns) and the scan's ``cols``.

        ``extra_stats``: the statistic behind each p column, as
        :meth:`lmmscan.scan.BlockScanner.test_rotated_with_statistics` returns
        them; without them they are recovered from the printed columns where
        possible.  Returns -log10 p per p column.
        """
        if len(snps) == 0:
            return {p: np.zeros(0) for p in self.test_columns if p.startswith("p_")}
        if not isinstance(snps, VariantTable):
            snps = VariantTable.from_frame(snps)
        rows = range(self.rows, self.rows + len(snps))
        wrong = unprintable_field(snps, FIELD_BREAKS[self.fmt], rows, noun="row")
        if wrong is not None:
            from ._errors import InputError

            raise InputError(wrong)
        self.rows += len(snps)
        stats = dict(extra_stats or {})
        if any(p not in stats for p in self.test_columns if p.startswith("p_")):
            # recovered from the printed columns only where the scan gave none
            recovered = test_statistics(cols, self.test, self.df, self.n, self.loglik_mle_null)
            stats = {**recovered, **stats}
        names = [p for p in self.test_columns if p.startswith("p_")]
        log10p = neg_log10_ps(cols, stats, self.df, names)
        text = self._text_gemma(snps, cols, log10p) if self.fmt == "gemma" else None
        if text is None:
            writer = getattr(self, "_rows_" + self.fmt.replace("-", "_"))
            lines = writer(snps, cols, log10p, stats)
            text = "".join(line + "\n" for line in lines)
        self.fh.write(text)
        return log10p

    def _text_gemma(self, snps, cols, log10p) -> str | None:
        """GEMMA's rows formatted by the core (``_core.format_rows``: the bytes
        of :meth:`_rows_gemma`, without a Python object per number); None for
        what only the Python formatting handles (positions or counts that are
        not integers).  No token holds a tab or line break (:meth:`write`)."""
        from . import _core

        n = len(snps)
        ps = snps.ps
        n_miss = np.asarray(cols["n_miss"])
        if ps.dtype.kind not in "iu" or n_miss.dtype.kind not in "iu":
            return None
        text = {name: ("s", snps[name].text()) for name in ("chr", "rs", "allele1", "allele0")}
        columns: list[tuple[str, object]] = [
            text["chr"],
            text["rs"],
            ("i", ps),
            ("i", n_miss),
            text["allele1"],
            text["allele0"],
            ("f", np.asarray(cols["af"], dtype=np.float64)),
        ]
        for name in self.test_columns:
            values = np.asarray(cols[name], dtype=np.float64)
            if name.startswith("p_"):
                columns.append(("p", (values, np.asarray(log10p[name], dtype=np.float64))))
            else:
                columns.append(("e", values))
        threads = usable_cores()  # same bytes on any number (the rows cut into ranges)
        return _core.format_rows(columns, n, TINY_P, threads).decode("utf-8", "surrogateescape")

    def _rows_gemma(self, snps, cols, log10p, stats):
        fields = [
            snps["chr"].tolist(),
            snps["rs"].tolist(),
            [str(v) for v in snps.ps.tolist()],
            [str(v) for v in np.asarray(cols["n_miss"]).tolist()],
            snps["allele1"].tolist(),
            snps["allele0"].tolist(),
            _fmt(cols["af"], ".3f"),
        ]
        for name in self.test_columns:
            if name.startswith("p_"):
                fields.append(format_p(cols[name], log10p[name], "e"))
            else:
                fields.append(_fmt(cols[name], ".6e"))
        return ["\t".join(row) for row in zip(*fields, strict=True)]

    def _main(self, cols, log10p, stats, na):
        p = self.main_p
        has_beta = "beta" in cols
        beta = _fmt(cols["beta"], ".6g", na) if has_beta else [na] * len(cols[p])
        se = _fmt(cols["se"], ".6g", na) if has_beta else [na] * len(cols[p])
        return beta, se, format_p(cols[p], log10p[p], "g", na), _fmt(log10p[p], ".6g", na)

    def _obs(self, cols) -> list[str]:
        return [str(self.n - int(m)) for m in np.asarray(cols["n_miss"]).tolist()]

    def _rows_plink2(self, snps, cols, log10p, stats):
        beta, se, p, lp = self._main(cols, log10p, stats, "NA")
        if self.main_p == "p_lrt":
            t = ["NA"] * len(p)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                t = _fmt(np.asarray(cols["beta"]) / np.asarray(cols["se"]), ".6g", "NA")
        a1 = snps["allele1"].tolist()
        fields = [
            [_plink_chr(c) for c in snps["chr"].tolist()],
            [str(v) for v in snps.ps.tolist()],
            snps["rs"].tolist(),
            snps["allele0"].tolist(),
            a1,
            a1,
            _fmt(cols["af"], ".6g", "NA"),
            ["ADD"] * len(p),
            self._obs(cols),
            beta,
            se,
            t,
            p,
            lp,
        ]
        return ["\t".join(row) for row in zip(*fields, strict=True)]

    def _rows_regenie(self, snps, cols, log10p, stats):
        beta, se, p, lp = self._main(cols, log10p, stats, "NA")
        # the statistic of a test that has no p-value (a collinear SNP) is no number
        chi = np.asarray(stats.get(self.main_p, np.full(len(p), np.nan)), dtype=np.float64)
        chisq = _fmt(np.where(np.isnan(cols[self.main_p]), np.nan, chi), ".6g", "NA")
        fields = [
            [_regenie_chr(c) for c in snps["chr"].tolist()],
            [str(v) for v in snps.ps.tolist()],
            snps["rs"].tolist(),
            snps["allele0"].tolist(),
            snps["allele1"].tolist(),
            _fmt(cols["af"], ".6g", "NA"),
            self._obs(cols),
            ["ADD"] * len(p),
            beta,
            se,
            chisq,
            lp,
            ["NA"] * len(p),
            p,
        ]
        return [" ".join(row) for row in zip(*fields, strict=True)]

    def _rows_gwas_ssf(self, snps, cols, log10p, stats):
        beta, se, p, lp = self._main(cols, log10p, stats, "#NA")
        ps = [str(v) if v > 0 else "#NA" for v in snps.ps.tolist()]
        fields = [
            [_ssf_chr(c) for c in snps["chr"].tolist()],
            ps,
            snps["allele1"].tolist(),
            snps["allele0"].tolist(),
            beta,
            se,
            _fmt(cols["af"], ".6g", "#NA"),
            p,
            lp,
            [r if _RSID.fullmatch(r) else "#NA" for r in snps["rs"].tolist()],
            self._obs(cols),
        ]
        return ["\t".join(row) for row in zip(*fields, strict=True)]


# rows formatted per call of TableWriter.write: the text of one call is in memory
_WRITE_ROWS = 1 << 18
# rows on which write_table checks that the table's p-values are its statistics'
_CHECKED_ROWS = 1000


def write_table(
    table: pd.DataFrame,
    path: str | os.PathLike[str],
    format: str = "gemma",
    *,
    statistics: dict[str, np.ndarray] | None = None,
    n_analyzed: int | None = None,
    df: int | None = None,
    loglik_mle_null: float | dict[str, float] | None = None,
) -> Path:
    """Write a table of :func:`lmmscan.scan` or :func:`lmmscan.loco_scan` as
    the command line writes it (``format``: one of :data:`FORMATS`; GEMMA's
    formatted by the core, without a Python object per number); the file
    appears whole under ``path`` or not at all.  Returns the path written.

    The table may be a subset of the scan's rows, in any order, with its
    columns unchanged.  The analysed count, the degrees of freedom and the
    null model's ML log-likelihood (per chromosome for LOCO) come from
    ``table.attrs``, where the scan puts them; give them when the table has
    lost them.  They are checked against the table: its p-values must be
    those of its statistics with these degrees of freedom.  regenie's CHISQ
    and p-values below 1e-300 are printed from the test statistic:
    ``statistics`` (the exact ones, as ``lmmscan.scan(..., statistics={})``
    and :func:`lmmscan.loco_scan` give them for the scan's rows, matched to
    the table's rows by its index), else recovered from the table's columns
    (beta/se, logl_H1), which may move their last printed digit, and cannot
    recover the score test's when it ran with the others.  With them, the
    file is the command line's, byte for byte.
    """
    import operator

    import pandas as pd

    from ._errors import InputError
    from .pvalues import TEST_COLUMNS

    if format not in FORMATS:
        raise InputError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    test = _scan_test(table)
    stats = _aligned_statistics(table, statistics, test)
    meta = dict(table.attrs.get("lmmscan", {}))
    given = {"n_analyzed": n_analyzed, "df": df, "loglik_mle_null": loglik_mle_null}
    values: dict[str, Any] = {k: meta.get(k) if v is None else v for k, v in given.items()}
    # the null log-likelihood only recovers the LRT's statistic
    needed = ["n_analyzed", "df"]
    if "p_lrt" in TEST_COLUMNS[test] and "p_lrt" not in stats:
        needed.append("loglik_mle_null")
    missing = [k for k in needed if values[k] is None]
    if missing:
        raise InputError(
            f"write_table needs {', '.join(missing)}: a table of lmmscan.scan carries them "
            "in table.attrs['lmmscan'] (lost here); give them as arguments"
        )
    try:
        n_an, d_f = operator.index(values["n_analyzed"]), operator.index(values["df"])
    except TypeError:
        raise InputError("n_analyzed and df must be integers") from None
    cols = {name: table[name].to_numpy() for name in ["af", *TEST_COLUMNS[test]]}
    cols["n_miss"] = _whole_numbers(table, "n_miss")
    if len(table) and int(cols["n_miss"].max()) > n_an:
        raise InputError(f"the table has n_miss above n_analyzed ({n_an}): not its scan's count")
    loglik = _per_row_loglik(table, values["loglik_mle_null"])
    stats = {**test_statistics(cols, test, d_f, n_an, loglik), **stats}
    _check_statistics(cols, stats, d_f, n_an)
    out = Path(path)
    if not out.parent.is_dir():
        raise InputError("the output's directory does not exist", path=str(path))
    snps = pd.DataFrame(
        {
            "chr": table["chr"].to_numpy(),
            "rs": table["rs"].to_numpy(),
            "ps": _whole_numbers(table, "ps"),
            "allele1": table["allele1"].to_numpy(),
            "allele0": table["allele0"].to_numpy(),
        }
    )
    with atomic_path(path) as tmp, _table_text(tmp, out.name.lower().endswith(".gz")) as fh:
        writer = TableWriter(
            fh,
            format,
            test,
            n_analyzed=n_an,
            df=d_f,
            loglik_mle_null=float("nan"),  # the statistics are all given below
            test_columns=TEST_COLUMNS[test],
        )
        for a in range(0, len(table), _WRITE_ROWS):
            part = slice(a, a + _WRITE_ROWS)
            writer.write(
                snps.iloc[part],
                {k: v[part] for k, v in cols.items()},
                {k: v[part] for k, v in stats.items()},
            )
    return out


@contextlib.contextmanager
def _table_text(tmp: Path, gz: bool) -> Iterator[Any]:
    """The text stream write_table writes to ``tmp``: gzip-compressed where
    the name ends in .gz (plain text went under that name, helper 70), with
    no name or time in its header, so the same table gives the same bytes."""
    if not gz:
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as fh:
            yield fh
        return
    import gzip
    import io

    with (
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed,
        io.TextIOWrapper(packed, encoding="utf-8", errors="surrogateescape", newline="") as fh,
    ):
        yield fh


def _scan_test(table: pd.DataFrame) -> str:
    """The test whose columns follow GEMMA's leading ones in ``table``."""
    from ._errors import InputError
    from .pvalues import TEST_COLUMNS

    rest = [c for c in table.columns if c not in LEADING]
    test = next((t for t, cols in TEST_COLUMNS.items() if cols == rest), None)
    if test is None or any(c not in table.columns for c in LEADING):
        raise InputError(
            "not a table of lmmscan.scan: its columns must be "
            f"{', '.join(LEADING)} and one test's ({', '.join(TEST_COLUMNS['all'])} for 'all')"
        )
    return test


def _whole_numbers(table: pd.DataFrame, name: str) -> np.ndarray:
    """Column ``name`` as int64: whole numbers in floats (a merge) too, NaN refused."""
    from ._errors import InputError

    v = table[name].to_numpy()
    if v.dtype.kind in "iu":
        return v
    v = np.asarray(v, dtype=np.float64)
    if not (np.isfinite(v).all() and (v == np.round(v)).all()):
        raise InputError(f"the table's {name} column must hold whole numbers")
    return v.astype(np.int64)


def _aligned_statistics(
    table: pd.DataFrame, statistics: dict[str, np.ndarray] | None, test: str
) -> dict[str, np.ndarray]:
    """``statistics`` (the scan's rows) for the table's rows, by its index
    when it numbers the scan's rows, else row for row."""
    from ._errors import InputError
    from .pvalues import TEST_COLUMNS

    if statistics is None:
        return {}
    p_cols = [c for c in TEST_COLUMNS[test] if c.startswith("p_")]
    if not isinstance(statistics, dict) or any(k not in p_cols for k in statistics):
        raise InputError(
            f"statistics must be a dict with keys among {', '.join(p_cols)} (this table's "
            "p columns), as lmmscan.scan(..., statistics={}) fills it"
        )
    n, labels = len(table), table.index.to_numpy()
    out = {}
    for k, v in statistics.items():
        v = np.asarray(v, dtype=np.float64)
        if v.ndim != 1:
            raise InputError(f"statistics[{k!r}] must be 1-dimensional")
        numbered = labels.dtype.kind in "iu" and (
            n == 0 or (labels.min() >= 0 and labels.max() < v.size)
        )
        if numbered:
            out[k] = v[labels]  # the scan's rows, by the table's index
        elif v.size == n:
            out[k] = v
        else:
            raise InputError(
                f"statistics[{k!r}] has {v.size} values for a table of {n} rows whose "
                "index does not number the scan's rows"
            )
    return out


def _per_row_loglik(table: pd.DataFrame, loglik: Any) -> float | np.ndarray:
    """The null ML log-likelihood for each row: one value, or (LOCO) each
    row's chromosome's; NaN when not given (no LRT to recover)."""
    from ._errors import InputError

    if loglik is None:
        return float("nan")
    if not isinstance(loglik, dict):
        return loglik
    try:
        return np.array([loglik[str(c)] for c in table["chr"]], dtype=np.float64)
    except KeyError as exc:
        raise InputError(f"loglik_mle_null has no chromosome {exc.args[0]!r}") from None


def _check_statistics(cols: dict, stats: dict, d_f: int, n_an: int) -> None:
    """The table's p-values are its statistics' at ``d_f`` degrees of freedom
    (attrs or statistics of another scan would print another N or df, or
    other rows' statistics): on up to _CHECKED_ROWS rows, to rounding (the
    recovered statistics' last bits)."""
    from ._errors import InputError
    from .pvalues import log_tails

    n = len(cols["af"])
    rows = np.linspace(0, n - 1, min(n, _CHECKED_ROWS)).astype(np.int64)
    for name, stat in stats.items():
        p = np.asarray(cols[name], dtype=np.float64)[rows]
        with np.errstate(all="ignore"):
            expected = np.exp(log_tails({name: np.asarray(stat)[rows]}, d_f)[name])
        ok = ~np.isfinite(p) | (p < TINY_P) | np.isclose(p, expected, rtol=1e-6, atol=0)
        if not ok.all():
            raise InputError(
                f"the table's {name} is not that of its statistic with df {d_f} (n_analyzed "
                f"{n_an}) on {int((~ok).sum())} of {rows.size} rows checked: statistics or "
                "attrs of another scan?"
            )


_LETTER_CODES = {"X": "X", "Y": "Y", "XY": "XY", "MT": "MT", "M": "MT"}


def _chromosome_code(c: str) -> str | None:
    """A chromosome name without its 'chr' and a number's leading zeros, and
    X, Y, XY, MT in capitals, as plink2 reads such names (chr01 is 1, chrM
    MT); None for another name (a contig, -9).  Numbers stay numbers: 25 is
    XY in PLINK's human numbering but chromosome 25 of a cow, and lmmscan is
    not told the species."""
    body = c[3:] if c[:3].lower() == "chr" else c
    if body.isascii() and body.isdigit():
        return str(int(body))
    return _LETTER_CODES.get(body.upper())


def _plink_chr(c: str) -> str:
    """plink2's #CHROM: chr1 and chr01 as 1, chrX as X (a filter on 1 or X
    missed them); other names as given, -9 as '.'."""
    if c in ("-9", ""):
        return "."
    return _chromosome_code(c) or c


def _regenie_chr(c: str) -> str:
    """regenie's CHROM: 'chr' and leading zeros dropped, as regenie reads
    them; other names as given."""
    return _chromosome_code(c) or c


# GWAS-SSF is for human chromosomes, numbered 1-25 (X 23, Y 24, MT 25); a bare
# number is read as PLINK numbers a human .bim's chromosomes: 23 X, 24 Y, 25 XY
# (X's pseudo-autosomal part, on X's coordinates: written as X), 26 MT
_SSF_CHR = {
    "X": "23",
    "Y": "24",
    "XY": "23",
    "MT": "25",
    "23": "23",
    "24": "24",
    "25": "23",
    "26": "25",
}
# the standard's rsid pattern; any other ID is no rsid
_RSID = re.compile(r"rs[0-9]+")


def no_beta_for_ssf(fmt: str, what: str) -> str:
    """The refusal of a GWAS-SSF table without beta and standard_error."""
    return (
        f"{fmt} needs beta and standard_error, which GWAS-SSF makes mandatory and {what} "
        "does not have (GEMMA's -lmm 2 columns): test wald or all"
    )


def _ssf_chr(c: str) -> str:
    """GWAS-SSF's chromosome, 1-25, from the name as plink2 reads a human
    one (chr01 was written 01, which the Catalog's validator refuses; chr25
    and chr26, XY and MT, were written 25 (MT) and #NA); #NA for any other."""
    code = _chromosome_code(c)
    if code is None:
        return "#NA"
    if code.isdigit() and 1 <= int(code) <= 22:
        return code
    return _SSF_CHR.get(code, "#NA")


# ------------------------------------------------------------------ null.json


def null_summary(
    null,
    report,
    *,
    phenotype: str,
    n_snps_total: int,
    lambda_mode: str = "per-snp",
    seconds: dict[str, float] | None = None,
) -> dict:
    """The null model and the scan's bookkeeping as PREFIX.null.json holds them.

    ``lambda_mode``: how the SNPs were tested ("per-snp" or "null", see
    :func:`lmmscan.scan`).  ``seconds``: wall seconds per phase (default: the
    scan's own, ``report.seconds``); the command line gives every phase of
    the run, from start-up to writing, and the total.
    """
    seconds = report.seconds if seconds is None else seconds
    from ._version import __version__

    return {
        "lmmscan": __version__,
        "phenotype": phenotype,
        "n_analyzed": int(null.n_analyzed),
        "n_covariates": int(null.n_covariates),
        "intercept_added": bool(null.intercept_added),
        "n_snps_total": int(n_snps_total),
        "n_snps_analyzed": int(report.filters.kept),
        "lambda_remle": float(null.lambda_),
        "lambda_mle": float(null.lambda_mle),
        "lambda_mode": lambda_mode,
        "loglik_remle": float(null.loglik_reml),
        "loglik_mle": float(null.loglik_ml),
        "pve": float(null.pve),
        "pve_se": float(null.pve_se),
        "vg": float(null.vg),
        "ve": float(null.ve),
        "beta": [float(v) for v in np.asarray(null.beta)],
        "beta_se": [float(v) for v in np.asarray(null.beta_se)],
        "filters": {k: int(v) for k, v in report.filters.removed.items()},
        "warnings": list(getattr(null, "warnings", [])),
        "seconds": {k: round(float(v), 4) for k, v in seconds.items()},
    }


def write_json(fh, data: dict) -> None:
    fh.write(json.dumps(data, indent=2, allow_nan=True) + "\n")
