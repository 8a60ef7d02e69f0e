"""SNPs whose imputed values repeat an earlier SNP's are rotated and tested once
(lmmscan.engine.distinct_snps, cpp/include/lmmscan/duplicates.hpp)."""

from __future__ import annotations

import numpy as np
import pytest

import lmmscan
from lmmscan import _core, engine


def planted(n: int, k: int, copies: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X, source): k columns (Fortran order), `copies` of them repeats of
    earlier ones; source[j] = the first column with column j's values."""
    rng = np.random.default_rng(seed)
    X = np.asfortranarray(rng.binomial(2, 0.3, size=(n, k)).astype(float))
    source = np.arange(k)
    for j in rng.choice(np.arange(1, k), size=copies, replace=False):
        source[j] = source[rng.integers(0, j)]
    X = np.asfortranarray(X[:, source])
    # every column's first occurrence (a drawn source may itself be a copy)
    _, first = np.unique(X.T, axis=0, return_index=True)
    firsts = np.sort(first)
    where = {X[:, j].tobytes(): j for j in firsts[::-1]}
    return X, np.array([where[X[:, j].tobytes()] for j in range(k)])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("threads", [1, 2])
def test_distinct_columns_moves_each_first_occurrence_to_the_front_in_order(threads, dtype):
    # 37 samples: a float32 column's bytes end in half a 64-bit word
    X, first = planted(37, 300, 60)
    X = np.asfortranarray(X.astype(dtype))
    original = X.copy(order="F")
    found = _core.distinct_columns(X, 1, threads)
    assert found is not None
    d, inverse = found
    firsts = np.unique(first)
    assert d == firsts.size < 300
    # the distinct SNPs in file order at the front, every SNP rebuilt exactly
    np.testing.assert_array_equal(X[:, :d], original[:, firsts])
    np.testing.assert_array_equal(X[:, :d][:, inverse], original)
    np.testing.assert_array_equal(inverse, np.searchsorted(firsts, first))


def test_columns_that_differ_in_one_value_or_in_the_sign_of_zero_stay_apart():
    rng = np.random.default_rng(3)
    base = rng.binomial(2, 0.2, size=501).astype(float)
    X = np.asfortranarray(np.repeat(base[:, None], 200, axis=1))
    for j in range(1, 200):  # each differs from the first in one place
        X[j * 2 % 501, j] += 0.5
    X[:, 150] = X[:, 0]  # an exact repeat among them
    X[:, 151] = np.where(X[:, 0] == 0.0, -0.0, X[:, 0])  # equal as numbers, not as bits
    original = X.copy(order="F")
    d, inverse = _core.distinct_columns(X, 1, 2)
    assert d == 199 and inverse[150] == 0 and inverse[151] != 0
    np.testing.assert_array_equal(X[:, :d][:, inverse], original)


def test_too_few_repeats_leave_the_block_as_it_is():
    X, _ = planted(20, 128, 1)
    original = X.copy(order="F")
    assert _core.distinct_columns(X, 2, 1) is None
    np.testing.assert_array_equal(X, original)
    assert _core.distinct_columns(np.asfortranarray(np.eye(4)), 1, 1) is None  # none repeats


def test_distinct_columns_refuses_what_it_cannot_compact_in_place():
    X, _ = planted(10, 8, 2)
    with pytest.raises(ValueError, match="Fortran"):
        _core.distinct_columns(np.ascontiguousarray(X), 1, 1)
    X.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        _core.distinct_columns(X, 1, 1)
    with pytest.raises(ValueError, match="2-dimensional float64 or float32"):
        _core.distinct_columns(np.asfortranarray(X.astype(np.float16)), 1, 1)


def test_float32_columns_that_differ_only_in_their_last_odd_value_stay_apart():
    # the hash's tail (the last 4 bytes of an odd-length float32 column) and
    # the comparison both see the last value
    X = np.asfortranarray(np.ones((5, 70), dtype=np.float32))
    X[4, 1::2] = 2.0
    d, inverse = _core.distinct_columns(X, 1, 1)
    assert d == 2 and list(inverse[:4]) == [0, 1, 0, 1]


def test_a_scan_with_repeated_snps_tests_each_once_with_the_same_results(tmp_path, monkeypatch):
    from bed_reader import to_bed

    rng = np.random.default_rng(42)
    n, p = 80, 150
    G = rng.binomial(2, rng.uniform(0.1, 0.5, p), size=(n, p)).astype(np.float32)
    G[rng.random(G.shape) < 0.01] = np.nan  # imputed alike in the repeats
    cols = np.concatenate([np.arange(p), rng.integers(0, p, 50)])
    rng.shuffle(cols)
    to_bed(str(tmp_path / "g.bed"), G[:, cols])  # read back Fortran-ordered
    geno = lmmscan.read_plink(str(tmp_path / "g"))
    K = lmmscan.kinship(geno)
    y = np.nan_to_num(G[:, :3]).sum(axis=1) * 0.4 + rng.normal(size=n)
    cov = np.column_stack([np.ones(n), rng.normal(size=n)])
    model = lmmscan.fit_null(y, covariates=cov, kinship=K)
    seen = []
    real = engine.distinct_snps

    def spy(Xk, threads):
        Xd, inverse = real(Xk, threads)
        seen.append((Xk.shape[1], Xd.shape[1]))
        return Xd, inverse

    monkeypatch.setattr(engine, "distinct_snps", spy)
    once = lmmscan.scan(geno, null_model=model, test="all", block_size=90)
    # repeats are looked for within a block (most sit next to their first
    # occurrence in real files, in LD)
    assert len(seen) == 3 and sum(k - d for k, d in seen) >= 10
    monkeypatch.setattr(engine, "distinct_snps", lambda Xk, threads: (Xk, None))
    every = lmmscan.scan(geno, null_model=model, test="all", block_size=90)
    assert list(once.columns) == list(every.columns) and list(once.rs) == list(every.rs)
    # A SNP's rotated values depend on its own values alone, to the BLAS
    # kernel: the same bits where GEMM sums each column in an order that does
    # not depend on the block's other columns, as OpenBLAS's x86-64 kernels
    # do; 1e-12 allows a kernel that would not, as for other block sizes
    # (test_api_inputs.test_threads_and_block_size_do_not_change_results).
    for col in once.columns[7:]:
        np.testing.assert_allclose(once[col], every[col], rtol=1e-12, atol=0, err_msg=col)
    # every repeat has its first occurrence's row: exactly within a block (one
    # computation), to 1e-12 across blocks (another block, as above)
    rows = once.set_index("rs")
    repeats = 0
    for j in range(len(cols)):
        i = int(np.flatnonzero(cols == cols[j])[0])
        if i != j and geno.snps.rs[j] in rows.index:
            repeats += 1
            got = rows.loc[geno.snps.rs[j]].iloc[6:].to_numpy(dtype=float)
            want = rows.loc[geno.snps.rs[i]].iloc[6:].to_numpy(dtype=float)
            if i // 90 == j // 90:
                np.testing.assert_array_equal(got, want)
            else:
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert repeats > 30  # within blocks and across them


def test_a_scan_whose_first_blocks_repeat_nothing_stops_looking(tmp_path, monkeypatch):
    from bed_reader import to_bed

    rng = np.random.default_rng(7)
    n, p = 60, 400
    G = rng.binomial(2, rng.uniform(0.2, 0.5, p), size=(n, p)).astype(np.float32)
    G[:, 300:350] = G[:, 250:300]  # repeats only after the first blocks: not looked for
    to_bed(str(tmp_path / "g.bed"), G)
    geno = lmmscan.read_plink(str(tmp_path / "g"))
    model = lmmscan.fit_null(rng.normal(size=n), kinship=lmmscan.kinship(geno))
    calls = []
    real = engine.distinct_snps

    def spy(Xk, threads):
        calls.append(Xk.shape[1])
        return real(Xk, threads)

    monkeypatch.setattr(engine, "distinct_snps", spy)
    lmmscan.scan(geno, null_model=model, test="wald", block_size=50, threads=1)
    assert len(calls) == engine._SEARCH_FIRST_BLOCKS  # of 8 blocks
    calls.clear()
    G[:, 10:20] = G[:, 0:10]  # a first block with repeats: every block is looked at
    to_bed(str(tmp_path / "h.bed"), G)
    geno = lmmscan.read_plink(str(tmp_path / "h"))
    lmmscan.scan(geno, null_model=model, test="wald", block_size=50, threads=1)
    assert len(calls) == 8


def test_a_snp_subset_keeps_the_files_column_order_so_repeats_are_searched(tmp_path):
    """GEMMA's -snps (SubsetGenotypes) reads runs of the file's columns: the
    block stays column-major, as the repeat search needs."""
    from bed_reader import to_bed

    from lmmscan.genotypes import SubsetGenotypes

    rng = np.random.default_rng(3)
    G = rng.binomial(2, 0.3, size=(40, 300)).astype(np.float32)
    to_bed(str(tmp_path / "s.bed"), G)
    geno = lmmscan.read_plink(str(tmp_path / "s"))
    picked = np.r_[0:20, 100:180:3, 250:300]  # runs, a gapped run and a far one
    block = SubsetGenotypes(geno, picked).read(0, picked.size)
    assert block.flags.f_contiguous and not block.flags.c_contiguous
    np.testing.assert_array_equal(block, G[:, picked])
