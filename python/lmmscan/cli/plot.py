"""``lmmscan plot``: Manhattan and QQ plots of an association table."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._errors import InputError
from .common import check_out_dir, one_line, plural, require_matplotlib
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
    pl.add_argument("--out", metavar="FIG", required=True, help="output image (.png). Required")
    pl.add_argument(
        "--p-column",
        metavar="NAME",
        default=None,
        help="p-value column to plot. Default: the first of p_wald, p_lrt, p_score",
    )
    pl.set_defaults(func=run)


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
    check_out_dir(args.out)
    try:
        table = pd.read_csv(path, sep="\t", dtype={"chr": str, "rs": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the table: {one_line(exc)}", path=str(path)) from None
    missing = [c for c in ("chr", "ps") if c not in table.columns]
    if missing:
        raise InputError(f"the table has no column {missing[0]!r}", path=str(path))
    try:
        col = plot.p_column(table, args.p_column)
    except KeyError as exc:
        raise InputError(str(exc.args[0]), path=str(path)) from None
    table[col] = pd.to_numeric(table[col], errors="coerce")
    values = table[col].to_numpy(dtype=float)
    outside = (values < 0) | (values > 1)  # nan (NA) is a missing p, not a bad one
    if outside.any():
        row = int(outside.argmax())
        raise InputError(
            f"column {col!r} holds {values[row]:g}, which is no p-value (not in [0, 1]); "
            "name a p-value column with --p-column",
            path=str(path),
            line=row + 2,  # after the header
        )
    fig = plot.results_figure(table, col, title=path.name)
    with atomic_path(args.out) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    print(
        f"wrote {args.out}: lambda_GC = {plot.lambda_gc(table[col].to_numpy()):.3f}, "
        f"{plural(int((table[col] < plot.GENOME_WIDE).sum()), 'SNP')} with {col} < 5e-8"
    )
    return 0
