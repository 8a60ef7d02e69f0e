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
        "a table written by 'lmmscan scan' or GEMMA (.assoc.txt), side by side in one PNG.\n\n"
        "example: lmmscan plot study.assoc.txt --out study.png",
    )
    pl.add_argument("table", metavar="TABLE", help="GEMMA-format association table (.assoc.txt)")
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


def _line_fields(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(fields, line) of each non-blank line of tab-separated ``data``: its
    number of fields and its 1-based line number (pandas skips blank lines).
    In pieces of 8 MB, so that the temporaries stay small."""
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
        count = np.concatenate([[0], np.cumsum(buf[lo:hi] == ord("\t"), dtype=np.int32)])
        tabs[first:stop] = count[ends[first:stop] - lo] - count[starts[first:stop] - lo]
        first = stop
    filled = ends > starts
    return tabs[filled] + 1, np.flatnonzero(filled) + 1


def _read_table(path: Path, pd):
    """The table, read once (a pipe too); every row with the header's number
    of fields (pandas fills a short row, a table cut off mid-line, with NaN),
    and the line number of each row."""
    import io

    import numpy as np

    from ..textio import open_input

    with open_input(path) as fh:  # gunzipped if gzip (GEMMA's tables often are)
        data = fh.read()
    fields, lines = _line_fields(data) if data else (np.zeros(0, int), np.zeros(0, int))
    bad = np.flatnonzero(fields != fields[0]) if fields.size else fields
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"{fields[i]} fields where the header has {fields[0]} "
            "(a row cut short, or a table being written)",
            path=str(path),
            line=int(lines[i]),
        )
    table = pd.read_csv(io.BytesIO(data), sep="\t", dtype={"chr": str, "rs": str})
    return table, lines[1:]


def run(args: argparse.Namespace) -> int:
    require_matplotlib("lmmscan plot")
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from .. import plot
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
    outside = (values < 0) | (values > 1)  # nan (NA) is a missing p, not a bad one
    if outside.any():
        row = int(outside.argmax())
        raise InputError(
            f"column {col!r} holds {values[row]:g}, which is no p-value (not in [0, 1]); "
            "name a p-value column with --p-column",
            path=str(path),
            line=int(lines[row]),
        )
    fig = plot.results_figure(table, col, title=path.name)
    with atomic_path(args.out) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format=kind, dpi=100)
    print(
        f"wrote {args.out}: lambda_GC = {plot.lambda_gc(table[col].to_numpy()):.3f}, "
        f"{plural(int((table[col] < plot.GENOME_WIDE).sum()), 'SNP')} with {col} < 5e-8"
    )
    return 0
