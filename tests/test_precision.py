"""--precision single: the rotation in float32, everything else in double."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lmmscan
from lmmscan.cli import main
from lmmscan.engine import ScanOptions

# SGEMM rounds U and the block to float32 (relative 2^-24 = 6e-8) and sums n
# products in float32: a rotated value is off by about sqrt(n) x 6e-8 of its
# terms' size (~2e-6 at n = 1,410), worst case n x 6e-8 (8e-5).  Measured on
# mouse_hs1940: |dlog10 p| 5e-6, |dbeta|/se 3e-6 (benchmarks/RESULTS.md);
# the bound is the worst case, with room for other CPUs' SGEMM kernels.
BOUND = 1e-3


@pytest.fixture(scope="module")
def mouse_K(mouse_plink, mouse_gk):
    return mouse_gk["centered"]


def test_single_is_close_to_double(mouse_plink, mouse_K):
    y = mouse_plink.phenotype
    kw = dict(kinship=mouse_K, test="all")
    a = lmmscan.scan(mouse_plink, y, **kw)
    b = lmmscan.scan(mouse_plink, y, precision="single", **kw)
    assert (a["rs"].to_numpy() == b["rs"].to_numpy()).all()
    for p in ("p_wald", "p_lrt", "p_score"):
        d = np.abs(np.log10(a[p]) - np.log10(b[p]))
        assert 0 < d.max() <= BOUND, p  # single is not double, and close to it
    assert np.max(np.abs(a["beta"] - b["beta"]) / a["se"]) <= BOUND
    # the per-SNP lambda searches see the float32 rotation too
    assert (a["l_mle"].to_numpy() != b["l_mle"].to_numpy()).any()


def test_whitened_scan_stays_double(mouse_plink, mouse_K):
    y = mouse_plink.phenotype
    kw = dict(kinship=mouse_K, test="wald", lambda_mode="null")
    a = lmmscan.scan(mouse_plink, y, **kw)
    b = lmmscan.scan(mouse_plink, y, precision="single", **kw)
    assert a.equals(b)


def test_bad_precision_is_refused(mouse_plink, mouse_K):
    with pytest.raises(lmmscan.InputError, match="precision"):
        lmmscan.scan(mouse_plink, mouse_plink.phenotype, kinship=mouse_K, precision="half")


def test_cli_records_the_precision(mouse_dir, tmp_path, mouse_K):
    K = tmp_path / "K.npy"
    np.save(K, mouse_K)
    argv = ["scan", "--bfile", str(mouse_dir / "mouse_hs1940"), "--kinship", str(K),
            "--block-size", "3000", "--quiet"]  # fmt: skip
    assert main([*argv, "--precision", "single", "--out", str(tmp_path / "s")]) == 0
    assert main([*argv, "--out", str(tmp_path / "d")]) == 0
    s = json.loads((tmp_path / "s.null.json").read_text())
    d = json.loads((tmp_path / "d.null.json").read_text())
    assert s["precision"] == "single" and "precision" not in d
    assert s["lambda_remle"] == d["lambda_remle"]  # the null fit is double either way


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threaded_conversion_equals_astype(threads):
    from lmmscan.spectral import convert

    rng = np.random.default_rng(4)
    X = rng.normal(size=(700, 1500)) * 1e3
    for src, dtype in [
        (np.asfortranarray(X), np.float32),
        (np.ascontiguousarray(X), np.float32),
        (X[:, ::2], np.float32),  # neither order: converted in one piece
        (np.asfortranarray(X).astype(np.float32), np.float64),
        (X[:5, :7].copy(order="F"), np.float32),  # below the split size
    ]:
        out = convert(src, dtype, threads)
        expected = src.astype(dtype)
        assert out.dtype == dtype and out.shape == src.shape
        assert out.tobytes(order="A") == expected.tobytes(order="A")
        if src.flags.f_contiguous and not src.flags.c_contiguous:
            assert out.flags.f_contiguous


@pytest.mark.parametrize("threads", [1, 2])
def test_float32_rows_are_tested_as_their_float64_widening(mouse_plink, mouse_K, threads):
    """The core tests a float32 rotation as the float64 array astype makes of
    it (widening is exact): the same bits, and a single-precision scan's
    table is the one the float64 copy gave before the core took float32."""
    y = mouse_plink.phenotype
    null = lmmscan.fit_null(y, kinship=mouse_K)
    scanner = ScanOptions(test="all").scanner(null, threads)
    rows = np.flatnonzero(null.analyzed)
    X = mouse_plink.read(0, 300)[rows]
    keep, _, _, Xk = scanner.filter(X)
    U32 = np.asarray(null.spectral.U, dtype=np.float32)
    R32 = np.ascontiguousarray(Xk.astype(np.float32).T @ U32)
    assert R32.dtype == np.float32 and keep.sum() > 200
    wide = scanner._core.scan(R32, None, threads)
    assert wide.tobytes() == scanner._core.scan(R32.astype(np.float64), None, threads).tobytes()
    R32[5, 3] = np.inf
    with pytest.raises(ValueError, match="finite"):
        scanner._core.scan(R32, None, threads)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_float32_filter_gives_the_table_of_a_converted_block(mouse_plink, mouse_K, threads):
    """With a dense basis the filter writes the kept SNPs in float32 (no
    float64 block, no conversion): the same rounded values as converting the
    float64 block, so the same table, repeats found among float32 columns."""
    y = mouse_plink.phenotype
    null = lmmscan.fit_null(y, kinship=mouse_K)
    fused = ScanOptions(test="all", precision="single").scanner(null, threads)
    converted = ScanOptions(test="all", precision="single").scanner(null, threads)
    assert fused._filter_dtype == np.float32
    converted._filter_dtype = np.float64  # the block converted after the filter
    rows = np.flatnonzero(null.analyzed)
    for start in (0, 4000):
        # Fortran order, as the command line's blocks (the search needs it)
        X = np.asfortranarray(mouse_plink.read(start, start + 3000)[rows])
        (keep_a, a), (keep_b, b) = fused.scan(X), converted.scan(X)
        assert np.array_equal(keep_a, keep_b) and a.keys() == b.keys()
        for key in a:
            assert np.asarray(a[key]).tobytes() == np.asarray(b[key]).tobytes(), key
    assert fused._searched[1] > 0  # mouse_hs1940's repeats were found in float32


def test_without_the_r2_filter_the_collinearity_check_reads_double():
    """With the r2 filter off (r2 = 1), a SNP in the covariates' span is found
    by 1 - R2 < 1e-11 on the imputed SNPs, which a float32 x'x cannot
    resolve (an imputed 2 af is not a float32): the filter then writes them
    in double, and such a SNP is untestable (NaN) in single precision as in
    double (with float32 SNPs, 11 of 16 got a p-value)."""
    rng = np.random.default_rng(1)
    n = 300
    Z = rng.binomial(2, 0.3, size=(n, 500)).astype(float)
    Z -= Z.mean(axis=0)
    K = Z @ Z.T / 500
    X = np.asfortranarray(rng.binomial(2, rng.uniform(0.1, 0.5, 20), size=(n, 20)).astype(float))
    y = rng.normal(size=n) + 0.3 * X[:, 3]
    X[rng.random(X.shape) < 0.02] = np.nan
    tested = 0
    for j in range(20):
        x = X[:, j]
        cov = np.where(np.isnan(x), np.nanmean(x), x)[:, None]  # SNP j imputed, a covariate
        null = lmmscan.fit_null(y, kinship=K, covariates=cov)
        for precision in ("double", "single"):
            scanner = ScanOptions(test="wald", precision=precision, r2=1.0).scanner(null, 2)
            keep, cols = scanner.scan(X)
            if keep[j]:  # (or its R2 rounded above 1: filtered)
                assert np.isnan(cols["p_wald"][int(np.count_nonzero(keep[:j]))]), (j, precision)
                tested += 1
            assert scanner._filter_dtype == np.float64
    assert tested == 32
    on = ScanOptions(test="wald", precision="single").scanner(null, 2)
    assert on._filter_dtype == np.float32  # with the r2 filter (the default)
