"""A decomposition kept as its two factors (TridiagonalSpectral): U = Q V with
Q the Householder reflections of dsytrd and V the tridiagonal's eigenvectors
(dstedc), used by LOCO for chromosomes with fewer SNPs than n / 2.

Tolerances: the eigenvalues come from the same two LAPACK calls dsyevd makes,
on one thread, so they are compared bit for bit.  The rotations U'X and
V'(Q'X) are two orthogonal transformations computed in different orders:
each is backward stable, and they differ by a few n eps |X| (n = 150:
~3e-14 relative); 1e-12 leaves room for any BLAS kernel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmscan
from lmmscan import _lapack64, loco, memory
from lmmscan.spectral import Spectral, TridiagonalSpectral, eigh_driver, tridiagonal_pays

from .test_loco import simulate

pytestmark = pytest.mark.skipif(
    _lapack64.scipy_library() is None, reason="scipy's LAPACK cannot be called directly"
)


def _kinship(n: int, m: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Z = rng.binomial(2, rng.uniform(0.05, 0.5, m), size=(n, m)).astype(float)
    Z -= Z.mean(axis=0)
    return Z @ Z.T / m


def _both(K: np.ndarray) -> tuple[Spectral, Spectral]:
    with eigh_driver("evd"):
        whole = Spectral.from_kinship(K.copy())
    factors = TridiagonalSpectral.from_kinship(K.copy())
    assert type(whole) is Spectral and type(factors) is TridiagonalSpectral
    return whole, factors


@pytest.mark.parametrize(("n", "m"), [(150, 400), (150, 60), (64, 200)])
def test_eigenvalues_are_dsyevds_bit_for_bit(n, m):
    """Full rank and rank-deficient (zero eigenvalues, deflation in dstedc)."""
    whole, factors = _both(_kinship(n, m))
    assert factors.d.tobytes() == whole.d.tobytes()
    assert factors.n_total == n


@pytest.mark.parametrize("n", [1, 2, 63])
def test_below_64_samples_the_eigenvectors_are_formed(n):
    """(dormtr would apply so few reflections unblocked, writing into them)"""
    K = _kinship(n, 5) + np.eye(n)
    got = TridiagonalSpectral.from_kinship(K.copy())
    assert type(got) is Spectral
    with eigh_driver("evd"):
        assert got.d.tobytes() == Spectral.from_kinship(K.copy()).d.tobytes()


def test_the_64_bit_integer_lapack_gives_the_same_factors(monkeypatch):
    if not _lapack64.available():
        pytest.skip("no ILP64 LAPACK")
    K = _kinship(150, 400)
    X = np.random.default_rng(3).normal(size=(150, 70))
    ours = TridiagonalSpectral.from_kinship(K.copy())
    monkeypatch.setattr(_lapack64, "ILP64_FROM", 1)  # numpy's OpenBLAS, 64-bit integers
    wide = TridiagonalSpectral.from_kinship(K.copy())
    assert type(wide) is TridiagonalSpectral and wide._lib is not ours._lib
    # another build of the same kernels: the same numbers to rounding
    np.testing.assert_allclose(wide.d, ours.d, rtol=0, atol=1e-12 * ours.d.max())
    np.testing.assert_allclose(
        np.abs(wide.rotate_rows(X)), np.abs(ours.rotate_rows(X)), rtol=0, atol=1e-10
    )


def test_pickled_factors_rotate_the_same(tmp_path):
    import pickle

    _, factors = _both(_kinship(150, 400))
    back = pickle.loads(pickle.dumps(factors))
    X = np.random.default_rng(5).normal(size=(150, 70))
    assert back.rotate_rows(X).tobytes() == factors.rotate_rows(X).tobytes()
    assert back.d.tobytes() == factors.d.tobytes()


@pytest.mark.parametrize("columns", [0, 1, 5, 64, 200])
def test_rotations_agree_with_the_eigenvectors(columns):
    n = 150
    whole, factors = _both(_kinship(n, 400))
    X = np.random.default_rng(columns).normal(size=(n, columns))
    scale = max(1.0, float(np.abs(X).max(initial=0.0))) * np.sqrt(n)
    rows = factors.rotate_rows(X)
    assert rows.shape == (columns, n) and rows.flags.c_contiguous
    np.testing.assert_allclose(rows, whole.rotate_rows(X), rtol=0, atol=1e-12 * scale)
    rotated = factors.rotate(X)
    assert rotated.shape == (n, columns) and rotated.flags.f_contiguous
    np.testing.assert_allclose(rotated, whole.rotate(X), rtol=0, atol=1e-12 * scale)
    if columns:
        y = X[:, 0].copy()
        assert factors.rotate(y).shape == (n,)
        np.testing.assert_allclose(factors.rotate(y), whole.rotate(y), rtol=0, atol=1e-12 * scale)
    assert X.shape == (n, columns)  # the input is not overwritten


def test_eigenvectors_are_formed_on_first_use():
    whole, factors = _both(_kinship(150, 400))
    assert factors._U is None
    U = factors.U
    assert factors.U is U  # kept
    np.testing.assert_allclose(U, whole.U, rtol=0, atol=1e-12)
    np.testing.assert_allclose(U.T @ U, np.eye(150), rtol=0, atol=1e-12)
    r, w = np.arange(150.0), np.linspace(0.1, 1.0, 150)
    np.testing.assert_allclose(factors.smooth(r, w), whole.smooth(r, w), atol=1e-10)
    np.testing.assert_allclose(factors.kernel_diag(w), whole.kernel_diag(w), atol=1e-12)


def test_tridiagonal_pays_below_half_the_samples():
    assert tridiagonal_pays(1410, 567)
    assert not tridiagonal_pays(1410, 705)
    assert not tridiagonal_pays(5000, 4545)


def _kinds(precision: str = "double", lambda_mode: str = "per-snp") -> tuple[pd.DataFrame, dict]:
    # n = 120: chromosomes 1 and 3 (40 and 50 SNPs) have fewer than n / 2, 2 (70) not
    source, y, cov = simulate(4, per_chrom=(40, 70, 50))
    models: dict = {}
    table = lmmscan.loco_scan(
        source, y, cov, null_models=models, precision=precision, lambda_mode=lambda_mode
    )
    return table, {c: type(m.spectral) for c, m in models.items()}


def test_loco_keeps_the_factors_of_chromosomes_with_few_snps(monkeypatch):
    table, kinds = _kinds()
    assert kinds == {"1": TridiagonalSpectral, "2": Spectral, "3": TridiagonalSpectral}
    # the same scan with every chromosome's eigenvectors formed: the same
    # eigenvalues, rotations that differ by rounding (rtol as the other LOCO
    # paths, lmmscan's lambda search moves them by at most ~1e-12 relative)
    monkeypatch.setattr(loco, "tridiagonal_pays", lambda n, columns: False)
    formed, kinds = _kinds()
    assert set(kinds.values()) == {Spectral}
    assert (table["rs"] == formed["rs"]).all()
    pd.testing.assert_frame_equal(table, formed, check_exact=False, rtol=1e-9, atol=0)


def test_the_null_lambda_uses_the_factors_too():
    _, kinds = _kinds(lambda_mode="null")
    assert kinds["1"] is TridiagonalSpectral


def test_single_precision_forms_the_eigenvectors():
    """(its float32 product needs U itself)"""
    _, kinds = _kinds("single")
    assert set(kinds.values()) == {Spectral}


def test_random_effects_from_the_factors(monkeypatch):
    source, y, cov = simulate(4, per_chrom=(40, 70, 50))
    ours: dict = {}
    lmmscan.loco_scan(source, y, cov, null_models=ours, chromosomes=["1"])
    monkeypatch.setattr(loco, "tridiagonal_pays", lambda n, columns: False)
    formed: dict = {}
    lmmscan.loco_scan(source, y, cov, null_models=formed, chromosomes=["1"])
    assert type(ours["1"].spectral) is TridiagonalSpectral
    assert type(formed["1"].spectral) is Spectral
    a, b = ours["1"].random_effects(), formed["1"].random_effects()
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9, atol=1e-12)


def test_memory_plan_counts_the_tridiagonal_eigenvectors():
    n = 3000
    common = dict(
        n_file=n, analysed=[n], n_variants=10_000, block=1000, kinship="loco", chromosomes=19,
        workers=2,
    )  # fmt: skip
    plain = memory.scan_plan(driver="evd", **common)
    factors = memory.scan_plan(driver="evd", tridiagonal=True, **common)
    # V beside the reflectors in each of the workers + 1 bases in memory
    assert factors.peak - plain.peak == 3 * 8 * n * n
    # dsyevr's plan has no factors to keep
    evr = memory.scan_plan(driver="evr", **common)
    assert memory.scan_plan(driver="evr", tridiagonal=True, **common).peak == evr.peak


def test_a_worker_keeps_one_workspace_for_both_decompositions():
    """A LOCO worker decomposes large chromosomes with dsyevd and small ones
    as factors: dstedc reuses dsyevd's kept workspace (the memory plan counts
    one per worker)."""
    import threading

    K = _kinship(150, 400)
    seen: list = []

    def work() -> None:
        _lapack64.keep_workspaces()
        with eigh_driver("evd"):
            Spectral.from_kinship(K.copy(), release_gil=True)
        first = _lapack64._kept.buffers["eigen work"]
        TridiagonalSpectral.from_kinship(K.copy(), release_gil=True)
        seen.extend([first, _lapack64._kept.buffers["eigen work"], set(_lapack64._kept.buffers)])

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen[0] is seen[1]
    assert seen[2] == {"eigen work", "eigen iwork", "dsytrd work"}
