"""``lmmscan demo``: the whole job on the small simulated study shipped with lmmscan."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import command


def add_parser(sub: argparse._SubParsersAction) -> None:
    d = command(
        sub,
        "demo",
        help="the whole job on a small simulated study shipped with lmmscan",
        description="The whole job end to end on a small simulated study shipped inside "
        "lmmscan (PLINK files, two phenotypes with missing values, covariates, three "
        "chromosomes): prints each command, then the summary.",
    )
    d.add_argument(
        "--out",
        metavar="DIR",
        default="lmmscan-demo",
        help="directory for the demo's inputs and outputs. Default: ./lmmscan-demo",
    )
    d.add_argument("--quiet", action="store_true", help="no progress bar. Default: off")
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run as run_demo

    return run_demo(Path(args.out), quiet=args.quiet, main=args.main)
