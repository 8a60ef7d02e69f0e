"""Manhattan and QQ plots, lambda_GC and top hits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.special

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
from lmmscan import plot  # noqa: E402

from .conftest import GEMMA  # noqa: E402


def fake_table(n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    table = pd.DataFrame(
        {
            "chr": np.repeat(["1", "2", "10", "X"], n // 4),
            "rs": [f"rs{i}" for i in range(n)],
            "ps": np.tile(np.arange(n // 4) * 1000, 4),
            "p_wald": rng.uniform(size=n),
        }
    )
    table.loc[[5, 6, 7000], "p_wald"] = [1e-12, 1e-320 * 0, 3e-9]  # one underflow to 0
    return table


def test_lambda_gc():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=200_001)
    assert plot.lambda_gc(p) == pytest.approx(1.0, abs=0.01)
    inflated = scipy.special.chdtrc(1, 1.2 * scipy.special.chdtri(1, p))
    assert plot.lambda_gc(inflated) == pytest.approx(1.2, abs=0.02)
    assert np.isnan(plot.lambda_gc(np.array([np.nan])))


def test_manhattan_and_qq_draw(tmp_path):
    table = fake_table()
    fig = plot.manhattan(table, title="t")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert "rs6" in labels and "rs5" not in labels  # p = 0 is the strongest; one per locus
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "10", "X"]
    # every point above the thinning threshold (p < 1e-3) is drawn
    offsets = ax.collections[0].get_offsets()
    strong = (table.p_wald < 1e-3).sum()
    assert (offsets[:, 1] > 3).sum() == strong
    fig.savefig(tmp_path / "m.png")
    fig = plot.qq(table)
    assert any("lambda" in t.get_text() for t in fig.axes[0].texts)
    fig.savefig(tmp_path / "q.png")
    assert (tmp_path / "m.png").stat().st_size > 10_000


def test_a_top_hit_without_an_id_is_labelled_by_its_place():
    """A GWAS-SSF table's rsid is #NA for IDs that are not rs numbers, which
    pandas reads as NaN: the top hits were labelled "nan" (helper 51)."""
    table = fake_table()
    table["rs"] = table["rs"].astype(object)
    table.loc[table.p_wald.idxmin(), "rs"] = np.nan
    fig = plot.manhattan(table)
    labels = [t.get_text() for t in fig.axes[0].texts]
    best = table.loc[table.p_wald.idxmin()]
    assert f"{best.chr}:{best.ps}" in labels and "nan" not in labels
    # a #NA position makes the column floats: still 2500, not 2500.0
    table["ps"] = table["ps"].astype(float)
    fig2 = plot.manhattan(table)
    labels = [t.get_text() for t in fig2.axes[0].texts]
    assert f"{best.chr}:{int(best.ps)}" in labels
    import matplotlib.pyplot as plt

    plt.close(fig)
    plt.close(fig2)


def test_plots_of_gemma_table(tmp_path):
    table = pd.read_csv(GEMMA / "mouse_lmm4_n1.assoc.txt.gz", sep="\t", dtype={"chr": str})
    fig = plot.manhattan(table)
    notes = [t.get_text() for t in fig.axes[0].texts]
    assert any("without a chromosome or position" in t for t in notes)  # GEMMA's ps = -9
    top = plot.top_hits(table, n=3)
    assert list(top.columns) == ["chr", "rs", "ps", "beta", "se", "p_wald"]
    assert top.p_wald.is_monotonic_increasing and top.rs[0] == "mCV22965443"


def test_missing_p_column():
    with pytest.raises(KeyError, match="no p-value column"):
        plot.manhattan(pd.DataFrame({"chr": ["1"], "ps": [1]}))


def test_rows_without_a_chromosome_are_counted_in_the_note(tmp_path):
    """Rows with an NA chromosome were left out of the Manhattan plot unsaid."""
    import matplotlib

    matplotlib.use("Agg")
    from lmmscan import plot

    table = pd.DataFrame({"chr": ["1", None, "2", "2"], "rs": list("abcd"),
                          "ps": [10, 20, -9, 40], "p_wald": [0.5, 0.01, 0.2, 0.3]})  # fmt: skip
    fig = plot.manhattan(table)
    notes = [t.get_text() for t in fig.axes[0].texts]
    assert "2 SNPs without a chromosome or position not shown" in notes
