"""Pictures of association results: Manhattan and QQ plots, and the genomic
inflation factor.

Both plots take the DataFrame of :func:`lmmscan.scan` (or a GEMMA
``.assoc.txt`` read with pandas) and stay fast on 10 million rows: points
that would land on the same pixel are drawn once (the bulk near p = 1 is
thinned, every point with p < 1e-3 is kept), and the scatter is rasterised.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._errors import printable
from .pvalues import GENOME_WIDE, lambda_gc

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

SUGGESTIVE = 1e-5
P_COLUMNS = ("p_wald", "p_lrt", "p_score", "p", "P", "PValue")


def p_column(table: pd.DataFrame, p: str | None = None) -> str:
    """The p-value column to plot: ``p`` or the first of p_wald, p_lrt, p_score."""
    if p is not None:
        if p not in table.columns:
            raise KeyError(f"no column {p!r} in the table")
        return p
    for name in P_COLUMNS:
        if name in table.columns:
            return name
    raise KeyError(f"no p-value column (one of {', '.join(P_COLUMNS)}) in the table")


def neg_log10(pvalues: np.ndarray, log10p: np.ndarray | None = None) -> np.ndarray:
    """-log10 p.  Where p = 0 (below double's range): the row's -log10 p from
    ``log10p`` when given and finite (the tables print such p from it), else
    320 rather than infinity."""
    p = np.asarray(pvalues, dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = -np.log10(p)
    zero = p == 0
    out[zero] = 320.0
    if log10p is not None:
        lp = np.asarray(log10p, dtype=np.float64)
        known = zero & np.isfinite(lp)
        out[known] = lp[known]
    return out


def _chromosome_key(name: str) -> tuple[int, int | str]:
    s = str(name)
    s = re.sub(r"^chr", "", s, flags=re.IGNORECASE)
    if s.isdigit():
        return (0, int(s))
    special = {"X": 1, "Y": 2, "XY": 3, "MT": 4, "M": 4}
    return (1, special.get(s.upper(), 99)) if s.upper() in special else (2, s)


def _thin(x: np.ndarray, y: np.ndarray, keep_above: float, bins: tuple[int, int]) -> np.ndarray:
    """Indices to draw: all points with y > keep_above, one per pixel bin below."""
    strong = y > keep_above
    idx_weak = np.flatnonzero(~strong)
    if idx_weak.size:
        xr = (x.max() - x.min()) or 1.0
        yr = keep_above or 1.0
        bx = np.clip(((x[idx_weak] - x.min()) / xr * bins[0]).astype(np.int64), 0, bins[0])
        by = np.clip((y[idx_weak] / yr * bins[1]).astype(np.int64), 0, bins[1])
        _, first = np.unique(bx * (bins[1] + 1) + by, return_index=True)
        idx_weak = idx_weak[first]
    return np.sort(np.concatenate([np.flatnonzero(strong), idx_weak]))


def _literal(text: object) -> str:
    """``text`` as matplotlib should print it: a ``$`` as itself (two of them
    started mathtext, which refused an ID such as ``run$1_$2``) and a byte of
    a file name that is not UTF-8 as ``\\xff`` (the font renderer refused the
    surrogate that stands for it)."""
    return printable(text).replace("$", r"\$")


def _snp_label(table: pd.DataFrame, i: int) -> str:
    """A top hit's label: its ID, or chr:position where it has none (a
    GWAS-SSF table's rsid is #NA for IDs that are not rs numbers: "nan")."""
    rs = table["rs"].iloc[i]
    if not pd.isna(rs) and str(rs) not in ("", ".", "#NA", "NA"):
        return str(rs)
    pos = next((table[c].iloc[i] for c in ("ps", "bp") if c in table.columns), None)
    if pos is None or pd.isna(pos):
        return "?"
    # (a column with a #NA position is read as floats: 2500, not 2500.0)
    return f"{table['chr'].iloc[i]}:{int(pos) if float(pos).is_integer() else pos}"


def manhattan(
    table: pd.DataFrame,
    p: str | None = None,
    *,
    genome_wide: float = GENOME_WIDE,
    suggestive: float = SUGGESTIVE,
    label_top: int = 10,
    ax=None,
    title: str | None = None,
    log10p: np.ndarray | None = None,
) -> Figure:
    """A Manhattan plot: -log10 p along the genome, chromosomes in alternating colours.

    Horizontal lines mark genome-wide (5e-8) and suggestive (1e-5)
    significance; the ``label_top`` smallest p-values below the suggestive
    line are labelled with their rs ID.  Needs columns chr, ps (or bp) and
    a p-value column; ``log10p``: each row's -log10 p, drawn where p is 0
    (see :func:`neg_log10`).  Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    col = p_column(table, p)
    pos_col = "ps" if "ps" in table.columns else "bp"
    codes, levels = pd.factorize(table["chr"], sort=False)
    levels = [str(v) for v in levels]
    pos = pd.to_numeric(table[pos_col], errors="coerce").to_numpy(dtype=np.float64)
    y = neg_log10(table[col].to_numpy(), log10p)
    ok = np.isfinite(y) & np.isfinite(pos) & (codes >= 0)
    # GEMMA writes ps = -9 for SNPs without a position; a chromosome may be NA
    unplaced = int((np.isfinite(y) & (~(pos >= 0) | (codes < 0))).sum())
    ok &= pos >= 0
    present = np.unique(codes[ok])
    order = sorted(present, key=lambda c: _chromosome_key(levels[c]))
    x = np.zeros(len(table))
    ticks, names = [], []
    rank = np.zeros(len(levels) + 1, dtype=np.int64)
    offset = 0.0
    for r, code in enumerate(order):
        rank[code] = r
        name = levels[code]
        sel = ok & (codes == code)
        lo, hi = pos[sel].min(), pos[sel].max()
        x[sel] = pos[sel] - lo + offset
        ticks.append(offset + (hi - lo) / 2)
        names.append(name)
        offset += (hi - lo) + max(1.0, 0.01 * (hi - lo)) + 1.0
    idx = np.flatnonzero(ok)
    if idx.size:
        idx = idx[_thin(x[idx], y[idx], keep_above=3.0, bins=(2000, 300))]
    if ax is None:
        fig, ax = plt.subplots(figsize=(12, 4.5))
    else:
        fig = ax.figure
    colours = np.array(["#1f4e79", "#7fa7cf"])
    ax.scatter(x[idx], y[idx], s=4, c=colours[rank[codes[idx]] % 2], rasterized=True, linewidths=0)
    ax.axhline(-np.log10(genome_wide), color="#c0392b", lw=1, label=f"genome-wide {genome_wide:g}")
    ax.axhline(
        -np.log10(suggestive), color="#e67e22", lw=1, ls="--", label=f"suggestive {suggestive:g}"
    )
    if label_top and "rs" in table.columns:
        # one label per locus: the best SNP, skipping others of the same
        # chromosome within 2% of the axis
        pv = table[col].to_numpy()
        hits = np.flatnonzero(ok & (pv < suggestive))
        labelled: list[int] = []
        for i in hits[np.argsort(-y[hits], kind="stable")]:
            if len(labelled) == label_top:
                break
            if all(
                codes[i] != codes[j] or abs(x[i] - x[j]) > 0.02 * max(offset, 1.0) for j in labelled
            ):
                labelled.append(i)
                ax.annotate(
                    _literal(_snp_label(table, i)),
                    (x[i], y[i]),
                    xytext=(4, 2),
                    textcoords="offset points",
                    fontsize=7,
                )
    ax.set_xticks(ticks)
    ax.set_xticklabels(names, fontsize=8 if len(names) < 30 else 6)
    ax.set_xlim(-0.01 * max(offset, 1.0), max(offset, 1.0) * 1.01)
    ax.set_ylim(0, max(float(y[ok].max()) if ok.any() else 1.0, -np.log10(genome_wide)) * 1.1)
    ax.set_xlabel("chromosome")
    ax.set_ylabel(r"$-\log_{10}\,p$" + f" ({_literal(col)})")
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, fontsize=8, frameon=False)
    if unplaced:
        ax.text(
            0.0,
            1.01,
            f"{unplaced:,} SNPs without a chromosome or position not shown",
            transform=ax.transAxes,
            fontsize=7,
            va="bottom",
        )
    if title:
        ax.set_title(_literal(title))
    fig.tight_layout()
    return fig


def qq(
    table: pd.DataFrame,
    p: str | None = None,
    *,
    ax=None,
    title: str | None = None,
    log10p: np.ndarray | None = None,
) -> Figure:
    """A QQ plot of observed against expected -log10 p, with the 95% band
    (pointwise, from the Beta(i, n - i + 1) order statistics) and the genomic
    inflation factor lambda_GC printed on it (``log10p``: as :func:`manhattan`'s).
    Returns the matplotlib Figure."""
    import matplotlib.pyplot as plt
    from scipy.stats import beta as beta_dist

    col = p_column(table, p)
    pv = table[col].to_numpy(dtype=np.float64)
    valid = np.isfinite(pv) & (pv >= 0) & (pv <= 1)
    pv = pv[valid]
    observed_all = neg_log10(pv, None if log10p is None else np.asarray(log10p)[valid])
    n = pv.size
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 5))
    else:
        fig = ax.figure
    if n:
        ranks = np.arange(1, n + 1)
        expected = -np.log10((ranks - 0.5) / n)
        observed = -np.sort(-observed_all)  # the smallest p first, as expected
        idx = _thin(expected, observed, keep_above=3.0, bins=(800, 800))
        # the band on about 500 log-spaced ranks is smooth and cheap at any n
        band_ranks = np.unique(np.geomspace(1, n, num=min(n, 500)).astype(np.int64))
        lo = -np.log10(beta_dist.ppf(0.975, band_ranks, n - band_ranks + 1))
        hi = -np.log10(beta_dist.ppf(0.025, band_ranks, n - band_ranks + 1))
        band_x = -np.log10((band_ranks - 0.5) / n)
        ax.fill_between(band_x, lo, hi, color="#d0d0d0", label="95% band")
        ax.scatter(
            expected[idx], observed[idx], s=5, color="#1f4e79", rasterized=True, linewidths=0
        )
        top = max(expected.max(), 1.0)
        ax.plot([0, top], [0, top], color="#c0392b", lw=1)
        lam = lambda_gc(pv)
        ax.text(0.05, 0.92, rf"$\lambda_{{GC}}$ = {lam:.3f}", transform=ax.transAxes, fontsize=11)
        ax.text(0.05, 0.85, f"{n:,} tests", transform=ax.transAxes, fontsize=9)
    ax.set_xlabel(r"expected $-\log_{10}\,p$")
    ax.set_ylabel(r"observed $-\log_{10}\,p$" + f" ({_literal(col)})")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    if title:
        ax.set_title(_literal(title))
    fig.tight_layout()
    return fig


def results_figure(
    table: pd.DataFrame,
    p: str | None = None,
    *,
    title: str | None = None,
    log10p: np.ndarray | None = None,
):
    """Manhattan (left, wide) and QQ (right) plots side by side in one figure
    (``log10p``: as :func:`manhattan`'s)."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(16, 4.8))
    grid = fig.add_gridspec(1, 2, width_ratios=[3.2, 1])
    manhattan(table, p, ax=fig.add_subplot(grid[0]), title=title, log10p=log10p)
    qq(table, p, ax=fig.add_subplot(grid[1]), log10p=log10p)
    fig.tight_layout()
    return fig


def top_hits(table: pd.DataFrame, p: str | None = None, n: int = 10) -> pd.DataFrame:
    """The ``n`` rows with the smallest p-values (chr, rs, ps, beta, se, p)."""
    col = p_column(table, p)
    cols = [c for c in ("chr", "rs", "ps", "beta", "se") if c in table.columns] + [col]
    order = np.argsort(table[col].to_numpy(dtype=np.float64), kind="stable")[:n]
    return table.iloc[order][cols].reset_index(drop=True)
