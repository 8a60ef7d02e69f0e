"""The block reader that reads one block ahead on a thread (scan.ReadAhead),
and lmmscan.scan starting it before the null fit."""

from __future__ import annotations

import threading

import numpy as np

import lmmscan
from lmmscan.genotypes import ArrayGenotypes, ReadAhead


def _genotypes(n=50, p=230, seed=7):
    rng = np.random.default_rng(seed)
    G = rng.binomial(2, rng.uniform(0.05, 0.5, p), size=(n, p)).astype(float)
    G[rng.uniform(size=G.shape) < 0.01] = np.nan
    return G


def _reader_threads() -> int:
    return sum(t.name.startswith("lmmscan-read") for t in threading.enumerate())


def test_blocks_from_first_snp_on_the_given_samples():
    G = _genotypes()
    samples = np.arange(0, 50, 3)
    seconds = {"read": 0.0}
    got = list(ReadAhead(ArrayGenotypes(G), 64, samples, first=10).blocks(seconds))
    assert [(a, b) for a, b, _ in got] == [(10, 74), (74, 138), (138, 202), (202, 230)]
    for start, stop, X in got:
        assert np.array_equal(X, G[samples, start:stop], equal_nan=True)
    assert seconds["read"] >= 0.0 and _reader_threads() == 0


def test_close_stops_the_thread_midway_and_twice():
    reader = ReadAhead(ArrayGenotypes(_genotypes()), 16, None)
    blocks = reader.blocks({"read": 0.0})
    next(blocks)
    reader.close()
    reader.close()
    assert _reader_threads() == 0
    unused = ReadAhead(ArrayGenotypes(_genotypes()), 16, None)  # never iterated
    unused.close()
    assert _reader_threads() == 0


def test_scan_given_the_kinship_equals_scan_of_a_fitted_null():
    """scan(y, kinship=K) reads its first block during the fit; the table is the
    one of scan(null_model=fit_null(...)), also when samples are missing."""
    G = _genotypes(n=80, p=150, seed=11)
    rng = np.random.default_rng(2)
    K = lmmscan.kinship(np.nan_to_num(G, nan=1.0))
    y = np.nansum(G[:, :4], axis=1) * 0.3 + rng.normal(size=80)
    y[[3, 17, 40]] = np.nan
    cov = np.column_stack([np.ones(80), rng.normal(size=80)])
    cov[5, 1] = np.nan
    report = lmmscan.ScanReport()
    a = lmmscan.scan(G, y, kinship=K, covariates=cov, block_size=40, report=report)
    null = lmmscan.fit_null(y, cov, kinship=K)
    b = lmmscan.scan(G, null_model=null, block_size=40)
    assert a.equals(b)
    assert report.seconds["null_fit"] > 0.0 and _reader_threads() == 0
