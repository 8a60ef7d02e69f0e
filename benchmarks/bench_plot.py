"""Manhattan and QQ plots of 10 million rows (issue target: under a minute each).

python benchmarks/bench_plot.py [--rows 10000000] [--out DIR]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from lmmscan import plot  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--out", type=Path, default=Path("/tmp"))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = args.rows
    per = n // 22 + 1
    table = pd.DataFrame(
        {
            "chr": np.repeat(np.arange(1, 23), per)[:n].astype(str),
            "ps": np.tile(np.arange(per) * 100, 22)[:n],
            "rs": "snp",
            "p_wald": rng.uniform(size=n),
        }
    )
    table.loc[:: max(1, n // 20), "p_wald"] = 1e-12
    for name, fn in (("manhattan", plot.manhattan), ("qq", plot.qq)):
        t = time.perf_counter()
        fig = fn(table)
        fig.savefig(args.out / f"bench_{name}.png", dpi=100)
        print(f"{name}: {n:,} rows in {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
