"""Dask-distributed scans: two worker processes give the local scan's rows."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmscan

distributed = pytest.importorskip("distributed")
threadpoolctl = pytest.importorskip("threadpoolctl")


def local_one_thread(*args, **kwargs) -> pd.DataFrame:
    """The local scan with the workers' BLAS setting (one thread): OpenBLAS
    splits a product differently with two threads, which moves last bits."""
    with threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        return lmmscan.scan(*args, **kwargs)


@pytest.fixture(scope="module")
def client():
    # processes=True: the source and null model really cross a process boundary
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def test_plink_scan_on_two_workers_equals_local(client, mouse_plink, mouse_gk):
    """Each task reads its own slice of the .bed file on the worker."""
    null = lmmscan.fit_null(mouse_plink.phenotype, kinship=mouse_gk["centered"])
    local_report, dask_report = lmmscan.ScanReport(), lmmscan.ScanReport()
    local = local_one_thread(mouse_plink, null_model=null, block_size=1024, report=local_report)
    remote = lmmscan.scan(
        mouse_plink, null_model=null, block_size=1024, client=client, report=dask_report
    )
    pd.testing.assert_frame_equal(local, remote, check_exact=True)
    assert dask_report.filters == local_report.filters
    # with the machine's BLAS threads the local scan differs in the last bits only
    threaded = lmmscan.scan(mouse_plink, null_model=null, block_size=1024)
    pd.testing.assert_frame_equal(threaded, remote, check_exact=False, rtol=1e-9)


def test_low_rank_and_covariates_on_workers(client):
    rng = np.random.default_rng(8)
    n = 300
    G = rng.binomial(2, rng.uniform(0.05, 0.5, 500), size=(n, 500)).astype(np.float64)
    y = G[:, :20] @ rng.normal(scale=0.2, size=20) + rng.normal(size=n)
    cov = rng.normal(size=(n, 2))
    y[:4] = np.nan
    lr = lmmscan.low_rank_kinship(G[:, :80])
    null = lmmscan.lowrank.fit_null_lowrank(y, cov, lr)
    local = local_one_thread(G[:, 80:], null_model=null, test="wald", block_size=64)
    remote = lmmscan.scan(G[:, 80:], null_model=null, test="wald", block_size=64, client=client)
    # A Dask task's slice (53 SNPs here) is narrower than a local block (64): the
    # low-rank rotation X'U and the complement products run through BLAS
    # kernels chosen by the width, which sum in another order on some CPUs (an
    # AMD EPYC: 7 of 420 betas 9.6e-15 apart, each the last SNP of a task).
    # Rounding, not a different computation: a few hundred ulps at most.
    pd.testing.assert_frame_equal(local, remote, check_exact=False, rtol=1e-12, atol=0)


@pytest.mark.parametrize("reader", ["bed-reader", "pgenlib"])
def test_a_genotype_file_gone_on_the_workers_is_named(client, tmp_path, reader):
    """A .bed moved away once the scan had started: bed-reader's OSError said
    "No such file or directory (os error 2)" without a name, pgenlib's named
    it as bytes (b'...'); now an InputError naming it, as a local scan says."""
    import shutil

    from lmmscan import InputError

    if reader == "pgenlib":
        pytest.importorskip("pgenlib")
    demo = Path(lmmscan.__file__).parent / "data" / "demo"
    for ext in (".bed", ".bim", ".fam"):
        shutil.copy(f"{demo}{ext}", tmp_path / f"d{ext}")
    source = lmmscan.read_plink(str(tmp_path / "d"), reader=reader)
    y = np.genfromtxt(f"{demo}.pheno.txt", usecols=0)  # NA: nan
    K = lmmscan.kinship(source, filter_samples=np.ones(source.n_samples, bool))
    null = lmmscan.fit_null(y, kinship=K)
    (tmp_path / "d.bed").rename(tmp_path / "gone.bed")
    with pytest.raises(InputError, match=r"d\.bed: a Dask worker cannot read it: No such file"):
        lmmscan.scan(source, null_model=null, client=client)


def test_what_crosses_the_wire_pickles():
    """A PLINK source pickles without its open file handle; the low-rank
    spectral drops its per-block memo."""
    spec = lmmscan.LowRankSpectral(np.ones(2), np.eye(4)[:, :2])
    X = np.ones((4, 3))
    spec.rotate_rows(X)
    back = pickle.loads(pickle.dumps(spec))
    assert back._memo is None
    np.testing.assert_array_equal(back.U, spec.U)


def test_client_must_be_a_client():
    G = np.random.default_rng(0).binomial(2, 0.3, size=(30, 10)).astype(np.float64)
    y = np.random.default_rng(1).normal(size=30)
    null = lmmscan.fit_null(y, kinship=lmmscan.kinship(G))
    with pytest.raises(lmmscan.InputError, match="dask.distributed.Client"):
        lmmscan.scan(G, null_model=null, client="tcp://localhost:8786")


def test_low_rank_basis_on_the_cluster_equals_local(client, mouse_plink):
    """low_rank_kinship(client=): the factor is read in chunks of samples by
    the workers and decomposed by Dask's TSQR; the scan multiplies each chunk
    of U where it is.  The local path decomposes the whole factor with one
    Householder QR and multiplies whole blocks: the same quantities summed
    in another order, so the rows agree to rounding.  Bound: 1e-8 relative,
    the issue's; measured ~1e-13 for beta and se, ~1e-10 for p_lrt (a
    difference of log-likelihoods, whose rounding the chi-square tail
    amplifies)."""
    from lmmscan.genotypes import SubsetGenotypes
    from lmmscan.lowrank import DaskLowRankKinship, fit_null_lowrank

    y = mouse_plink.phenotype
    kin_snps = np.arange(0, 1000)
    tested = SubsetGenotypes(mouse_plink, np.arange(1000, 2500))
    rng = np.random.default_rng(3)
    cov = np.column_stack([np.ones(y.size), rng.normal(size=y.size)])
    for method in ("centered", "standardized"):
        local_k = lmmscan.low_rank_kinship(mouse_plink, method, snps=kin_snps)
        dask_k = lmmscan.low_rank_kinship(
            mouse_plink, method, snps=kin_snps, client=client, chunk_rows=400
        )
        assert isinstance(dask_k, DaskLowRankKinship)
        assert dask_k.n_snps == local_k.n_snps and dask_k.counts == local_k.counts
        null_local = fit_null_lowrank(y, cov, local_k)
        null_dask = fit_null_lowrank(y, cov, dask_k)
        assert len(null_dask.spectral.row_chunks) == 4  # 1,410 analysed samples by 400
        np.testing.assert_allclose(null_dask.spectral.d, null_local.spectral.d, rtol=1e-10)
        assert null_dask.lambda_ == pytest.approx(null_local.lambda_, rel=1e-10)
        local = local_one_thread(tested, null_model=null_local, block_size=256)
        remote = lmmscan.scan(tested, null_model=null_dask, block_size=256, client=client)
        pd.testing.assert_frame_equal(local, remote, check_exact=False, rtol=1e-8, atol=0)
    # two phenotypes share each chunk's products.  The first tested SNP is
    # also a covariate and r2=1 keeps it: the collinearity check, from the
    # products on the cluster, must find it as the local one does
    x = tested.read(0, 1)[:, 0]
    x[np.isnan(x)] = np.nanmean(x[~np.isnan(y)])  # the scan's mean imputation
    cov = np.column_stack([np.ones(y.size), x])
    Y = np.column_stack([y, y + rng.normal(size=y.size)])
    nulls_dask = [fit_null_lowrank(Y[:, j], cov, dask_k) for j in range(2)]
    nulls_local = [fit_null_lowrank(Y[:, j], cov, local_k) for j in range(2)]
    remote = lmmscan.scan(tested, null_model=nulls_dask, r2=1.0, client=client, block_size=256)
    local = local_one_thread(tested, null_model=nulls_local, r2=1.0, block_size=256)
    for a, b in zip(local, remote, strict=True):
        # the collinear SNP's statistics are NaN in both; its lambdas are
        # those of a numerically zero SNP (arbitrary, and not compared)
        stats = ["beta", "se", "p_wald", "p_lrt", "p_score"]
        assert a[stats].iloc[0].isna().all() and b[stats].iloc[0].isna().all()
        assert b["p_wald"].iloc[1:].notna().all()
        pd.testing.assert_frame_equal(a.iloc[1:], b.iloc[1:], check_exact=False, rtol=1e-8, atol=0)


def test_cluster_basis_needs_its_client(client):
    rng = np.random.default_rng(4)
    G = rng.binomial(2, 0.3, size=(80, 40)).astype(np.float64)
    y = rng.normal(size=80)
    kin = lmmscan.low_rank_kinship(G[:, :20], client=client)
    null = lmmscan.lowrank.fit_null_lowrank(y, None, kin)
    with pytest.raises(lmmscan.InputError, match="pass its client="):
        lmmscan.scan(G[:, 20:], null_model=null)
