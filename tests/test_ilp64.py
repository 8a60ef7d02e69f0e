"""n x n LAPACK and BLAS with 64-bit integers (lmmscan._lapack64), forced at
small n by lowering ILP64_FROM: the same numbers as scipy's 32-bit routines.

The two are builds of OpenBLAS (numpy's ILP64 one and scipy's), possibly of
other versions and kernels: the eigenvectors may then differ by rounding
(~1e-14), which the tolerances below allow for with a wide margin.  On the
development machine (numpy 2.4.6's OpenBLAS 0.3.31 against scipy 1.17.1's
0.3.30, both SkylakeX kernels) the tables were identical."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lmmscan
from lmmscan import _lapack64
from lmmscan.spectral import eigh_driver

DEMO = Path(__file__).resolve().parents[1] / "python" / "lmmscan" / "data" / "demo"
NUMERIC = ("beta", "se", "logl_H1", "l_remle", "l_mle")

pytestmark = pytest.mark.skipif(not _lapack64.available(), reason="no ILP64 LAPACK")


@pytest.fixture(scope="module")
def demo():
    geno = lmmscan.read_plink(DEMO)
    y = lmmscan.read_pheno(f"{DEMO}.pheno.txt", [1], geno.n_samples)[:, 0]
    return geno, y


def both(fn, monkeypatch):
    """fn() with scipy's routines, then with the ILP64 ones."""
    usual = fn()
    monkeypatch.setattr(_lapack64, "ILP64_FROM", 1)
    forced = fn()
    monkeypatch.undo()
    return usual, forced


def close_tables(a, b):
    assert list(a["rs"]) == list(b["rs"])
    for col in [c for c in NUMERIC if c in a]:
        np.testing.assert_allclose(b[col], a[col], rtol=1e-10, atol=1e-12, err_msg=col)
    for col in [c for c in a.columns if c.startswith("p_")]:
        d = np.abs(np.log10(a[col]) - np.log10(b[col]))
        assert d.max() <= 1e-10, col


def test_kinship_sums(demo, monkeypatch):
    geno, y = demo
    K0, K1 = both(lambda: lmmscan.kinship(geno, filter_samples=~np.isnan(y)), monkeypatch)
    np.testing.assert_allclose(K1, K0, rtol=0, atol=1e-13)


@pytest.mark.parametrize("driver", ["evr", "evd"])
def test_exact_scan(demo, monkeypatch, driver):
    geno, y = demo
    K = lmmscan.kinship(geno, filter_samples=~np.isnan(y))

    def run():
        with eigh_driver(driver):
            return lmmscan.scan(geno, y, kinship=K, test="all")

    close_tables(*both(run, monkeypatch))


def test_whitened_scan(demo, monkeypatch):
    """Fixed lambda, one test: the Cholesky factor, its inverse and dtrmm."""
    geno, y = demo
    K = lmmscan.kinship(geno, filter_samples=~np.isnan(y))
    run = lambda: lmmscan.scan(geno, y, kinship=K, test="wald", lambda_mode="null")  # noqa: E731
    close_tables(*both(run, monkeypatch))


def test_loco_scan(demo, monkeypatch):
    geno, y = demo
    close_tables(*both(lambda: lmmscan.scan(geno, y, loco=True, test="wald"), monkeypatch))


def test_missing_ilp64_is_one_line(demo, monkeypatch):
    geno, y = demo
    K = lmmscan.kinship(geno, filter_samples=~np.isnan(y))
    monkeypatch.setattr(_lapack64, "ILP64_FROM", 1)
    monkeypatch.setattr(_lapack64, "_library", lambda: None)
    with pytest.raises(lmmscan.InputError, match="64-bit integers: install numpy >= 2"):
        lmmscan.fit_null(y, kinship=K)


def test_routines_against_scipy():
    import scipy.linalg

    rng = np.random.default_rng(3)
    n = 300
    Z = rng.normal(size=(n, 500))
    K = Z @ Z.T / 500
    for driver, fn in (("evd", _lapack64.syevd), ("evr", _lapack64.syevr)):
        d0, U0 = scipy.linalg.eigh(K, driver=driver)
        d1, U1 = fn(np.asfortranarray(K))
        np.testing.assert_allclose(d1, d0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.abs(np.sum(U0 * U1, axis=0)), 1.0, atol=1e-10)
    H = np.asfortranarray(K + np.eye(n))
    L0 = scipy.linalg.cholesky(K + np.eye(n), lower=True)
    assert _lapack64.potrf_lower(H) == 0
    np.testing.assert_allclose(H, L0, rtol=0, atol=1e-12)
    assert _lapack64.trtri_lower(H) == 0
    np.testing.assert_allclose(H @ L0, np.eye(n), rtol=0, atol=1e-12)
    B = np.asfortranarray(rng.normal(size=(n, 5)))
    expected = H @ B
    np.testing.assert_allclose(_lapack64.trmm_lower(H, B), expected, rtol=0, atol=1e-12)
    C = np.zeros((n, n), order="F")
    _lapack64.syrk(C, np.asfortranarray(Z), lower=True)
    np.testing.assert_allclose(np.tril(C), np.tril(Z @ Z.T), rtol=1e-13, atol=1e-10)
    with pytest.raises(lmmscan.InputError, match="Fortran-ordered"):
        _lapack64.syevd(np.ones((10, 10)))  # C order


def test_kept_workspace_gives_the_same_decomposition():
    """A thread that keeps dsyevd's workspace (LOCO's workers) reuses it, and
    gets the same bits as with a new one each time."""
    import threading

    rng = np.random.default_rng(7)
    mats = []
    for n in (60, 40, 60):  # a smaller one in between: a slice of the kept buffer
        Z = rng.normal(size=(n, n + 5))
        mats.append(Z @ Z.T)
    fresh = [_lapack64.syevd(np.array(K, order="F")) for K in mats]
    kept, buffers = [], []

    def work() -> None:
        _lapack64.keep_workspaces()
        for K in mats:
            kept.append(_lapack64.syevd(np.array(K, order="F")))
            buffers.append(_lapack64._kept.buffers["eigen work"])

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert buffers[0] is buffers[1] is buffers[2]  # allocated once
    for (w0, U0), (w1, U1) in zip(fresh, kept, strict=True):
        assert w0.tobytes() == w1.tobytes() and U0.tobytes() == U1.tobytes()
    assert getattr(_lapack64._kept, "buffers", None) is None  # not this thread's


def test_workspace_past_32_bits():
    """At n = 50,000 dsyevd asks for 1 + 6n + 2n^2 = 5,000,300,001 doubles, more
    than a 32-bit LWORK holds: the ILP64 query returns it whole."""
    lwork, liwork = _lapack64.syevd_workspace(50_000)
    assert lwork == 1 + 6 * 50_000 + 2 * 50_000**2 > 2**31
    assert liwork == 3 + 5 * 50_000


@pytest.mark.parametrize(
    "shape, overwrite", [((300, 40), True), ((300, 40), False), ((40, 300), False)]
)
def test_low_rank_svd_through_ilp64_gesdd(monkeypatch, shape, overwrite):
    """scipy's dgesdd sizes its workspace (3k^2 + 7k doubles and more) in
    32-bit integers, which wrap from k = 26,755 and pass LAPACK's own check
    (a heap overflow; scale audit, helper 42).  From GESDD_ILP64_FROM, lowered
    here, the ILP64 dgesdd decomposes the factor: the same basis to rounding,
    for a tall factor (in place, or copied) and a wide one."""
    rng = np.random.default_rng(2)
    Z = rng.normal(size=shape)
    usual = lmmscan.LowRankSpectral.from_factor(Z.copy(order="F"), overwrite=overwrite)
    monkeypatch.setattr(_lapack64, "GESDD_ILP64_FROM", 10)
    forced = lmmscan.LowRankSpectral.from_factor(Z.copy(order="F"), overwrite=overwrite)
    np.testing.assert_allclose(forced.d, usual.d, rtol=1e-12)
    # the same subspace and vectors up to sign
    cos = np.abs(np.einsum("ij,ij->j", forced.U, usual.U))
    np.testing.assert_allclose(cos, 1.0, atol=1e-10)


def test_gesdd_workspace_past_32_bits():
    """The ILP64 query at k = 26,755 returns the whole workspace (more than a
    32-bit LWORK holds); nothing of that size is allocated."""
    f = _lapack64._lib().fn("dgesdd")
    k = 26_755
    i64, ref, ptr = _lapack64._i64, _lapack64._ref, _lapack64._PTR
    dummy, work = np.zeros(1), np.zeros(1)
    iwork, info = np.zeros(1, dtype=np.int64), i64(0)
    p = ptr(dummy.ctypes.data)
    f(b"S", ref(i64(k)), ref(i64(k)), p, ref(i64(k)), p, p, ref(i64(k)), p, ref(i64(k)),
      ptr(work.ctypes.data), ref(i64(-1)), ptr(iwork.ctypes.data), ref(info),
      _lapack64._LEN(1))  # fmt: skip
    assert info.value == 0 and work[0] >= 3 * k * k + 7 * k > 2**31


@pytest.mark.parametrize("lower", [False, True])
@pytest.mark.parametrize("library", ["ilp64", "scipy"])
def test_syrk_in_panels(monkeypatch, lower, library):
    """OpenBLAS's threaded dsyrk crashed (SIGSEGV) from n ~ 29,500 on two
    threads (a kinship of 29,999 samples: exit 139, no message); from
    SYRK_PANELS_FROM on the update runs in column panels, lowered here: one
    triangle updated as A A' is, to rounding, the other untouched.  The
    crash itself needs a 7 GB C: checked by hand (n = 29,999 and 40,000, k =
    8 and 2,000, two threads: the panels run, one dsyrk crashes)."""
    lib = _lapack64.scipy_library() if library == "scipy" else None
    if library == "scipy" and lib is None:
        pytest.skip("scipy's OpenBLAS not found by ctypes")
    rng = np.random.default_rng(5)
    n, k = 203, 17
    A = np.asfortranarray(rng.normal(size=(n, k)))
    C0 = np.asfortranarray(rng.normal(size=(n, n)))
    one = _lapack64.syrk(C0.copy(order="F"), A, lower=lower, lib=lib)
    monkeypatch.setattr(_lapack64, "SYRK_PANELS_FROM", 50)
    monkeypatch.setattr(_lapack64, "SYRK_PANEL", 37)  # 6 panels, the last of 18
    panels = _lapack64.syrk(C0.copy(order="F"), A, lower=lower, lib=lib)
    part, rest = (
        (np.tril, lambda M: np.triu(M, 1)) if lower else (np.triu, lambda M: np.tril(M, -1))
    )
    np.testing.assert_allclose(part(panels), part(C0 + A @ A.T), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(part(panels), part(one), rtol=1e-13, atol=1e-13)
    assert np.array_equal(rest(panels), rest(C0))
