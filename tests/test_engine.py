"""The one scan engine: phenotypes grouped by their analysed samples share one
read, filter and rotation of each block, and every way of scanning (the API,
LOCO, the command line) gives the rows a lone phenotype's scan gives."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmscan
from lmmscan.cli import main
from lmmscan.engine import BlockScanner, Collector, Engine, ScanOptions

DEMO = Path(__file__).resolve().parents[1] / "python" / "lmmscan" / "data" / "demo"


@pytest.fixture(scope="module")
def demo():
    source = lmmscan.read_plink(DEMO)
    Y = pd.read_csv(f"{DEMO}.pheno.txt", sep="\t", header=None).to_numpy(dtype=float)
    cov = pd.read_csv(f"{DEMO}.covar.txt", sep="\t", header=None).to_numpy(dtype=float)
    return source, Y, cov


def count_prepares(monkeypatch) -> dict:
    counts = {"prepare": 0}
    real = BlockScanner._prepare

    def prepare(self, X, report=None):
        counts["prepare"] += 1
        return real(self, X, report)

    monkeypatch.setattr(BlockScanner, "_prepare", prepare)
    return counts


def test_scan_takes_several_phenotypes(demo, monkeypatch):
    """A 2-D y gives one table per column, each equal to the column's own scan;
    columns with the same analysed samples share each block's rotation."""
    source, Y, cov = demo
    K = lmmscan.kinship(source, filter_samples=~np.isnan(Y[:, 0]))
    y1 = Y[:, 0]
    y2 = 2.0 * y1 + 1.0  # the same analysed samples as y1
    y3 = Y[:, 1]  # other missing samples: a group of its own
    assert not np.array_equal(np.isnan(y1), np.isnan(y3))
    singles = [
        lmmscan.scan(source, y, kinship=K, covariates=cov, test="all", block_size=1000)
        for y in (y1, y2, y3)
    ]
    counts = count_prepares(monkeypatch)
    tables = lmmscan.scan(
        source, np.column_stack([y1, y2, y3]), kinship=K, covariates=cov, test="all",
        block_size=1000,
    )  # fmt: skip
    assert isinstance(tables, list) and len(tables) == 3
    # Two groups: each takes its rows of the union's block, a C-ordered copy,
    # where a lone scan reads its own samples in Fortran order; the rotation's
    # GEMM then runs on the other layout, which some BLAS kernels (OpenBLAS's
    # Haswell ones) sum in another order: rounding, as between C- and F-ordered
    # genotypes (test_memory_layout_does_not_change_results).
    for table, single in zip(tables, singles, strict=True):
        pd.testing.assert_frame_equal(table, single, check_exact=False, rtol=1e-12, atol=1e-13)
    assert counts["prepare"] == 2 * 3  # two groups x three blocks


def test_scan_takes_a_list_of_null_models(demo):
    source, Y, cov = demo
    K = lmmscan.kinship(source, filter_samples=~np.isnan(Y[:, 0]))
    nulls = [lmmscan.fit_null(Y[:, k], cov, kinship=K) for k in (0, 1)]
    tables = lmmscan.scan(source, null_model=nulls, test="wald")
    for table, null in zip(tables, nulls, strict=True):
        pd.testing.assert_frame_equal(
            table, lmmscan.scan(source, null_model=null, test="wald"), check_exact=True
        )


def test_engine_delivers_blocks_in_file_order_with_their_filter_counts(demo):
    source, Y, cov = demo
    K = lmmscan.kinship(source, filter_samples=~np.isnan(Y[:, 0]))
    null = lmmscan.fit_null(Y[:, 0], cov, kinship=K)

    class Sink(Collector):
        def __init__(self) -> None:
            super().__init__(1)
            self.done: list[int] = []

        def block_done(self, stop: int) -> None:
            self.done.append(stop)

    sink = Sink()
    with Engine(source, ScanOptions(test="wald"), block_size=700) as engine:
        (report,) = engine.scan([null], sink)
    assert sink.done == [700, 1400, 2100, 2800, 3000]
    starts = [int(b.index[0]) for b in sink.blocks[0] if b.index.size]
    assert starts == sorted(starts)
    assert sum(b.filters.total for b in sink.blocks[0]) == source.n_snps == report.filters.total
    assert sum(b.filters.kept for b in sink.blocks[0]) == report.filters.kept


def test_loco_phenotypes_share_the_kinship_pass_and_each_block(tmp_path, capsys, monkeypatch):
    """--loco with two columns of the same analysed individuals: the tables of
    two lone runs, with one read and rotation of each block for both."""
    pheno = tmp_path / "two.txt"
    y = pd.read_csv(f"{DEMO}.pheno.txt", sep="\t", header=None)[0].to_numpy(dtype=float)
    np.savetxt(pheno, np.column_stack([y, 0.5 * y - 3.0]), fmt="%.10g", delimiter="\t")
    base = ["scan", "--bfile", str(DEMO), "--pheno", str(pheno), "--loco", "--test", "all",
            "--block-size", "400", "--quiet"]  # fmt: skip
    for k in (1, 2):
        assert main([*base, "--pheno-col", str(k), "--out", str(tmp_path / f"one{k}")]) == 0
    counts = count_prepares(monkeypatch)
    assert main([*base, "--pheno-col", "1,2", "--out", str(tmp_path / "both")]) == 0
    for k in (1, 2):
        assert (tmp_path / f"both.{k}.assoc.txt").read_bytes() == (
            tmp_path / f"one{k}.assoc.txt"
        ).read_bytes()
        a = json.loads((tmp_path / f"both.{k}.null.json").read_text())
        b = json.loads((tmp_path / f"one{k}.null.json").read_text())
        a.pop("seconds"), b.pop("seconds")
        a.pop("memory"), b.pop("memory")  # each run's own plan and measured peak
        assert a == b
    both = counts["prepare"]
    assert main([*base, "--pheno-col", "1", "--out", str(tmp_path / "again")]) == 0
    assert both == counts["prepare"] - both > 0  # once per block, not once per phenotype
    capsys.readouterr()


def test_dask_scans_a_group_once_per_slice(demo):
    distributed = pytest.importorskip("distributed")
    source, Y, cov = demo
    K = lmmscan.kinship(source, filter_samples=~np.isnan(Y[:, 0]))
    y2 = 3.0 - Y[:, 0]
    phenos = np.column_stack([Y[:, 0], y2])
    local = lmmscan.scan(source, phenos, kinship=K, covariates=cov, test="all")
    with distributed.Client(
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0"
        )
    ) as client:
        remote = lmmscan.scan(source, phenos, kinship=K, covariates=cov, test="all", client=client)
    assert len(remote) == 2
    for a, b in zip(remote, local, strict=True):
        assert (a["rs"] == b["rs"]).all()
        # a task's slice is narrower than a local block: BLAS may sum in another order
        for col in ("beta", "se", "p_wald", "p_lrt", "p_score"):
            np.testing.assert_allclose(a[col], b[col], rtol=1e-10, err_msg=col)
