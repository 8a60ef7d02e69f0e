"""``lmmscan plot``: Manhattan and QQ plots of an association table."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

from .._errors import InputError
from .common import (
    check_out_file,
    check_spares_inputs,
    one_line,
    plural,
    require_matplotlib,
)
from .options import command


def add_parser(sub: argparse._SubParsersAction) -> None:
    pl = command(
        sub,
        "plot",
        help="Manhattan and QQ plots of an association table",
        description="Draw a Manhattan plot (chromosomes alternated, genome-wide 5e-8 and "
        "suggestive 1e-5 lines, top hits labelled) and a QQ plot (95% band, lambda_GC) of "
        "a table written by 'lmmscan scan' (any --format) or GEMMA (.assoc.txt), side by side "
        "in one PNG.\n\n"
        "example: lmmscan plot study.assoc.txt --out study.png",
    )
    pl.add_argument(
        "table",
        metavar="TABLE",
        help="association table: GEMMA's .assoc.txt, or lmmscan scan's plink2, regenie or "
        "gwas-ssf table",
    )
    pl.add_argument(
        "--out", metavar="FIG", required=True, help="output image (.png, .pdf or .svg). Required"
    )
    pl.add_argument(
        "--p-column",
        metavar="NAME",
        default=None,
        help="p-value column to plot. Default: the first of p_wald, p_lrt, p_score",
    )
    pl.set_defaults(func=run)


FIGURE_FORMATS = ("png", "pdf", "svg")


_PIECE = 1 << 23  # bytes of the table whose tabs are counted at once


def _line_fields(data: bytes, sep: bytes = b"\t") -> tuple[np.ndarray, np.ndarray]:
    """(fields, line) of each non-blank line of ``data`` (fields separated by
    ``sep``): its number of fields and its 1-based line number (pandas skips
    blank lines, a lone carriage return too).  In pieces of 8 MB, so that the
    temporaries stay small."""
    import numpy as np

    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == ord("\n"))
    if ends.size == 0 or ends[-1] != buf.size - 1:
        ends = np.append(ends, buf.size)  # a last line without its newline
    starts = np.concatenate([[0], ends[:-1] + 1])
    tabs = np.empty(ends.size, dtype=np.int64)
    step = _PIECE
    first = 0
    while first < ends.size:  # lines whose text lies within one piece of the buffer
        stop = int(np.searchsorted(ends, starts[first] + step, side="right"))
        stop = max(stop, first + 1)
        lo, hi = int(starts[first]), int(ends[stop - 1])
        count = np.concatenate([[0], np.cumsum(buf[lo:hi] == ord(sep), dtype=np.int32)])
        tabs[first:stop] = count[ends[first:stop] - lo] - count[starts[first:stop] - lo]
        first = stop
    lone_cr = (ends == starts + 1) & (buf[np.minimum(starts, buf.size - 1)] == ord("\r"))
    filled = (ends > starts) & ~lone_cr
    return tabs[filled] + 1, np.flatnonzero(filled) + 1


# the other formats of lmmscan scan (plink2, regenie, gwas-ssf): their names
# for GEMMA's columns, and for -log10 p (printed where p is below 1e-308)
ALIASES = {
    "#CHROM": "chr", "CHROM": "chr", "chromosome": "chr",
    "POS": "ps", "GENPOS": "ps", "base_pair_location": "ps",
    "ID": "rs", "rsid": "rs", "p_value": "p",
}  # fmt: skip
LOG10P_COLUMNS = ("LOG10_P", "LOG10P", "neg_log_10_p_value")


def _read_table(path: Path, pd):
    """The table, read once (a pipe too); every row with the header's number
    of fields (pandas fills a short row, a table cut off mid-line, with NaN),
    and the line number of each row.  Tab-separated, or space-separated
    (regenie's); quotes are characters like any other, and bytes that are
    not UTF-8 are read as U+FFFD (an ID is only a label here)."""
    import csv
    import io

    import numpy as np

    from ..textio import open_input

    with open_input(path) as fh:  # gunzipped if gzip (GEMMA's tables often are)
        data = fh.read()
    body = data.lstrip(b"\r\n")  # pandas skips blank lines before the header
    header = body[: body.find(b"\n")] if b"\n" in body else body
    sep = b"\t" if b"\t" in header or b" " not in header.strip() else b" "
    fields, lines = _line_fields(data, sep) if data else (np.zeros(0, int), np.zeros(0, int))
    bad = np.flatnonzero(fields != fields[0]) if fields.size else fields
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"{fields[i]} fields where the header has {fields[0]} "
            "(a row cut short, or a table being written)",
            path=str(path),
            line=int(lines[i]),
        )
    from ..plot import P_COLUMNS

    names = ("chr", "rs", "#CHROM", "CHROM", "chromosome", "ID", "rsid", "p_value", *P_COLUMNS)
    text = dict.fromkeys(names, str)  # p as printed: below 1e-308 its float is 0
    table = pd.read_csv(io.BytesIO(data), sep=sep.decode(), dtype=text,
                        quoting=csv.QUOTE_NONE, encoding_errors="replace")  # fmt: skip
    table = table.rename(columns={k: v for k, v in ALIASES.items() if v not in table.columns})
    return table, lines[1:]


def _log10p(table, col: str, raw) -> np.ndarray | None:
    """-log10 p of each row whose p reads as 0 though it is not (printed
    below 1e-308, as GEMMA-format tables print such p from their logarithm):
    from the printed mantissa and exponent, or from the table's -log10 p
    column; NaN elsewhere.  None when no row needs it."""
    import numpy as np
    import pandas as pd

    p = table[col].to_numpy(dtype=float)
    zero = p == 0
    if not zero.any():
        return None
    out = np.full(p.size, np.nan)
    given = next((c for c in LOG10P_COLUMNS if c in table.columns), None)
    if given is not None:
        out[zero] = pd.to_numeric(table[given], errors="coerce").to_numpy(dtype=float)[zero]
    parts = raw[zero].astype(str).str.extract(r"^\s*([0-9]*\.?[0-9]+)[eE]([-+]?[0-9]+)\s*$")
    mantissa = pd.to_numeric(parts[0], errors="coerce").to_numpy(dtype=float)
    exponent = pd.to_numeric(parts[1], errors="coerce").to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        printed = -np.log10(mantissa) - exponent
    rows = np.flatnonzero(zero)
    usable = np.isfinite(printed) & (mantissa > 0)
    out[rows[usable]] = printed[usable]
    return out


def run(args: argparse.Namespace) -> int:
    require_matplotlib("lmmscan plot")
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    import pandas as pd

    from .. import plot
    from .._errors import naming
    from ..output import atomic_path

    path = Path(args.table)
    if not path.exists():
        raise InputError("association table not found", path=str(path))
    check_out_file(args.out)
    check_spares_inputs([args.out], [(str(path), "TABLE", None)])
    kind = Path(args.out).suffix.lower().lstrip(".")
    if kind not in FIGURE_FORMATS:
        raise InputError(
            f"--out {args.out!r}: name a .png, .pdf or .svg file (the format follows the name)"
        )
    try:
        table, lines = _read_table(path, pd)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the table: {one_line(exc)}", path=str(path)) from None
    if len(table) == 0:
        raise InputError("the table has a header but no rows: nothing to plot", path=str(path))
    missing = [c for c in ("chr", "ps") if c not in table.columns]
    if missing:
        raise InputError(f"the table has no column {missing[0]!r}", path=str(path))
    try:
        col = plot.p_column(table, args.p_column)
    except KeyError as exc:
        raise InputError(str(exc.args[0]), path=str(path)) from None
    raw = table[col]
    table[col] = pd.to_numeric(raw, errors="coerce")
    log10p = _log10p(table, col, raw)
    # NA and nan are missing p-values (read as NaN); any other text is an error
    text = table[col].isna() & raw.notna()
    if text.any():
        row = int(text.to_numpy().argmax())
        raise InputError(
            f"column {col!r} holds {raw.iloc[row]!r}, which is not a number (NA for missing)",
            path=str(path),
            line=int(lines[row]),
        )
    values = table[col].to_numpy(dtype=float)
    if np.isnan(values).all():
        raise InputError(f"column {col!r} holds no p-value (every row is NA): nothing to plot",
                         path=str(path))  # fmt: skip
    outside = (values < 0) | (values > 1)  # nan (NA) is a missing p, not a bad one
    if outside.any():
        row = int(outside.argmax())
        raise InputError(
            f"column {col!r} holds {values[row]:g}, which is no p-value (not in [0, 1]); "
            "name a p-value column with --p-column",
            path=str(path),
            line=int(lines[row]),
        )
    fig = plot.results_figure(table, col, title=path.name, log10p=log10p)
    with naming(args.out), atomic_path(args.out) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format=kind, dpi=100)  # a full disk: the error names the file
    print(
        f"wrote {args.out}: lambda_GC = {plot.lambda_gc(table[col].to_numpy()):.3f}, "
        f"{plural(int((table[col] < plot.GENOME_WIDE).sum()), 'SNP')} with {col} < 5e-8"
    )
    return 0
