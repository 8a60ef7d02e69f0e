"""The spectral step: every basis the null fit and the scan rotate with.

- :class:`Spectral`: K = U diag(d) U' from LAPACK, all n directions
  (:func:`decompose_kinship` restricts, double-centres and decomposes a
  kinship as GEMMA does); :class:`TridiagonalSpectral`, the same with U
  kept as two factors, for a basis that rotates few columns (LOCO).
- :class:`GroupSpectral`: K = D D' for group labels, in closed form.
- :class:`LowRankSpectral`: k < n directions, the other n - k with
  eigenvalue 0 (FaST-LMM's low rank; :mod:`lmmscan.lowrank` builds it).
- :class:`DaskLowRankSpectral`: the same with U kept on a Dask cluster,
  chunked by samples.
- :class:`Whitening`: the inverse Cholesky factor of lambda K + I, the
  cheaper rotation of a fixed-lambda scan.

The first three satisfy :class:`SpectralBasis`, the protocol
:func:`lmmscan.fit_null` and the scan engine are typed against; all four
satisfy :class:`BlockRotation`, what the engine needs of a block's rotation.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from ._errors import InputError, NumericalError, real_array
from ._threads import blas_threads, call_interruptibly, importing_beside, run_parts

EIGEN_ZERO = 1e-10  # GEMMA zeroes every eigenvalue below this
# How negative an eigenvalue of a positive semi-definite kinship can come out.
# Two roundings perturb K by E: a text kinship's digits (plink2's --make-rel
# writes 6 significant digits, %g: |E_ij| <= 5e-7 |K_ij|; GEMMA's %.10g
# 5e-10), so ||E||_2 <= ||E||_F <= n 5e-7 max|K_ij|; and LAPACK's backward
# error, about n eps max|d| (eps = 2.2e-16), far smaller.  Centring is a
# projection, so it adds nothing.  Twice the 6-digit bound, in the largest
# entry of the kinship as given (a plink2 GRM of a rank-deficient study, -5.4e-6
# at n = 200, was refused under GEMMA's 10-digit bound: helper 56; in the
# largest eigenvalue, about n times an entry in a structured sample, the bound
# let a pairwise-complete GRM's -0.45 through: helper 57), and at least
# n x 1e-9 x the largest |eigenvalue| (twice the 10-digit bound in the
# eigenvalues, the bound used before), whichever is larger.  The bound is for
# significant digits: a kinship rounded to fixed decimals (%.4f) carries an
# absolute error in every entry, however small, and a rank-deficient one may
# be refused (write more digits).  GEMMA's 1e-10 is the floor.
PSD_RELATIVE_TOLERANCE = 1e-6
PSD_EIGENVALUE_TOLERANCE = 1e-9
_MIN_GEMM_COLUMNS = 64


# Below this size the eigendecomposition runs on one BLAS thread, where a
# second thread buys nothing.  Above it, BLAS's own thread count applies
# (capped by --threads / threadpoolctl): on an idle 2-core machine two threads
# took dsyevr from 1.12-1.30 to 0.67-0.71 s at n = 1,940 and from 3.7-4.2 to
# 2.1 s at n = 3,000.  On a machine shared with other busy processes the same
# two threads spin while they wait for each other and were 4-10x slower than
# one (n = 1,410-3,000, load 2-4): there, pass --threads 1 (or set
# OPENBLAS_NUM_THREADS=1).
EIGH_SERIAL_BELOW = 1000

# The LAPACK eigensolver.  "evr" (dsyevr, MRRR) needs O(n) workspace: the
# decomposition holds K's buffer and U, 2 x 8n^2 bytes.  "evd" (dsyevd, divide
# and conquer) writes U into K's buffer and needs 2n^2 doubles of workspace
# beside it (8n^2 bytes more in all), and is never slower: 6-8% faster at
# n = 1,410 (0.336 against 0.356 s on one thread, 0.250 against 0.270 on
# two; medians of 5, benchmarks/RESULTS.md), the same on full-rank
# kinships at n = 7,000 (37.8 s against 39.5), and much faster when K has
# fewer SNPs than samples, where a large cluster of zero eigenvalues slows
# MRRR down (n = 7,000, 2,000 SNPs: 33.7 s against 233.4; at n = 9,709
# dsyevr took 11 minutes).  "auto" (the default) takes dsyevd wherever its
# memory fits (the memory plan, lmmscan.memory) and dsyevr elsewhere; the
# CLI's --eigh-driver and eigh_driver() choose one.
EIGH_DRIVERS = ("auto", "evr", "evd")
_EIGH_DRIVER = ["auto"]


@contextlib.contextmanager
def eigh_driver(driver: str) -> Iterator[None]:
    """Use LAPACK driver ``driver`` ("auto", "evr" or "evd") for every kinship
    eigendecomposition inside the ``with`` block (see EIGH_DRIVERS)."""
    previous = _EIGH_DRIVER[0]
    set_eigh_driver(driver)
    try:
        yield
    finally:
        _EIGH_DRIVER[0] = previous


def set_eigh_driver(driver: str) -> None:
    """Inside an :func:`eigh_driver` block (which restores the previous one on
    exit): use ``driver`` from here on, e.g. once a memory plan chose it."""
    if driver not in EIGH_DRIVERS:
        raise InputError(f"eigh driver must be one of {EIGH_DRIVERS}, got {driver!r}")
    _EIGH_DRIVER[0] = driver


def resolve_eigh_driver(
    n: int, overwrite: bool, driver: str | None = None, *, concurrent: int = 1
) -> str:
    """The driver ("evr" or "evd") an n x n decomposition runs with: ``driver``
    (default: the one in effect), "auto" resolved to dsyevd when its kinship
    copy (unless ``overwrite``) and workspace, ``concurrent`` times over, fit
    in the memory available (:func:`lmmscan.memory.available`), else to
    dsyevr."""
    driver = _EIGH_DRIVER[0] if driver is None else driver
    if driver != "auto":
        return driver
    from .memory import BASE, Plan, decomposition, fits

    plan = Plan("")
    decomposition(plan, 0 if overwrite else n, n, "evd")
    return "evd" if fits(BASE + concurrent * (plan.peak - BASE)) else "evr"


def _eigh_threads(n: int) -> contextlib.AbstractContextManager:
    """BLAS thread limit for an n x n eigendecomposition (see EIGH_SERIAL_BELOW)."""
    return blas_threads(None if n >= EIGH_SERIAL_BELOW else 1)


def serial_library() -> contextlib.AbstractContextManager:
    """scipy's OpenBLAS (the decompositions' library; numpy's, which rotates
    and fits, keeps its threads) limited to one thread, process-wide: GIL-free
    decompositions (``release_gil=True``) on several Python threads then each
    run on one thread, and give the same bits every run (a threaded BLAS call
    that finds the library's threads busy takes fewer, and rounds otherwise)."""
    from . import _lapack64
    from ._threads import library_threads

    lib = _lapack64.scipy_library()
    return library_threads(None if lib is None else lib.path, 1)


def _eigh_gil_free(
    A: np.ndarray, overwrite: bool, driver: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """(d, U) by scipy's own LAPACK called through ctypes, which releases the
    GIL while LAPACK runs (scipy's wrappers hold it, so decompositions on
    several Python threads ran one at a time).  The routine and its
    arguments are scipy's: the same numbers as ``scipy.linalg.eigh``.  None
    when scipy's library cannot be found."""
    from . import _lapack64

    lib = _lapack64.scipy_library()
    if lib is None:  # pragma: no cover - another scipy build
        return None
    if not (overwrite and A.flags.f_contiguous and A.flags.writeable):
        A = np.array(A, dtype=np.float64, order="F")
    if driver == "evd":
        return _lapack64.syevd(A, lib)
    return _lapack64.syevr(A, lib)


# From this order on a decomposition runs where the command's signals act
# (call_interruptibly: on a worker thread; it takes seconds from here on, and
# held SIGTERM 38 s at n = 6,000).  Below it, on the calling thread: a
# worker's heap keeps what LAPACK freed there (malloc_trim leaves the top of
# a thread's heap), and dsyevd's workspace (2n^2 doubles) stays in the heap
# below MALLOC_KEEP: mouse_hs1940 with its kinship given peaked 30 MiB
# higher.  From here on the workspace is mapped and unmapped (MALLOC_KEEP).
DETACH_FROM = 2048


def _detached(n: int, release_gil: bool) -> bool:
    """Whether an n x n decomposition goes through call_interruptibly (a
    caller that released the GIL runs it on a thread of its own already)."""
    return not release_gil and n >= DETACH_FROM


def _check_decomposition_memory(n: int, overwrite: bool, driver: str) -> None:
    """Before LAPACK allocates: its eigenvectors and workspace (and the copy of
    K it works on unless ``overwrite``) against the memory available, so that
    a decomposition that cannot fit raises lmmscan.NotEnoughMemory instead of
    being killed by the kernel.  Small problems are not checked."""
    if n < 2000:
        return
    from .memory import Plan, check, decomposition

    plan = Plan(f"the eigendecomposition of a {n} x {n} kinship")
    decomposition(plan, 0 if overwrite else n, n, driver)
    check(plan, None, ["a low-rank kinship (lmmscan.low_rank_kinship)", "a larger machine"])


def use_ilp64(n: int) -> bool:
    """True when n x n LAPACK work goes through the 64-bit-integer routines
    (:mod:`lmmscan._lapack64`; from ``ILP64_FROM`` on)."""
    from . import _lapack64

    return n >= _lapack64.ILP64_FROM


def _eigh_ilp64(A: np.ndarray, driver: str, overwrite: bool) -> tuple[np.ndarray, np.ndarray]:
    """scipy.linalg.eigh(A, driver) with 64-bit integers (A's lower triangle)."""
    from . import _lapack64

    if not (overwrite and A.flags.f_contiguous and A.flags.writeable):
        A = np.array(A, order="F", dtype=np.float64)
    return _lapack64.syevd(A) if driver == "evd" else _lapack64.syevr(A)


def syrk_update(C: np.ndarray, Z: np.ndarray, *, lower: bool) -> np.ndarray:
    """C + Z Z' on one triangle of the Fortran-ordered C (n, n), in place when
    BLAS allows (64-bit integers from ``ILP64_FROM`` on).

    Below that order, scipy's ``dsyrk``: called through ctypes in scipy's
    own OpenBLAS when it is found without importing scipy (the same routine,
    arguments and library as ``scipy.linalg.blas.dsyrk``, so the same
    numbers; the GIL is released and the kinship pass needs no
    ``scipy.linalg``), else through ``scipy.linalg.blas``.  From
    ``_lapack64.SYRK_PANELS_FROM`` on, in column panels: OpenBLAS's threaded
    dsyrk crashed there (scipy.linalg.blas's on one thread)."""
    from . import _lapack64

    if use_ilp64(C.shape[0]):
        return _lapack64.syrk(C, np.asfortranarray(Z, dtype=np.float64), lower=lower)
    lib = _lapack64.scipy_library()
    if lib is not None and C.dtype == np.float64 and C.flags.f_contiguous and C.flags.writeable:
        return _lapack64.syrk(C, np.asfortranarray(Z, dtype=np.float64), lower=lower, lib=lib)
    from scipy.linalg.blas import dsyrk

    # OpenBLAS's threaded dsyrk crashes at large n (see _lapack64.SYRK_PANELS_FROM),
    # and this one cannot be given panels of C: one thread there
    serial = C.shape[0] >= _lapack64.SYRK_PANELS_FROM
    with blas_threads(1) if serial else contextlib.nullcontext():
        return dsyrk(  # type: ignore[no-any-return]
            1.0, np.asfortranarray(Z), beta=1.0, c=C, trans=0, lower=int(lower), overwrite_c=1
        )


# The whitening's LAPACK/BLAS calls on n x n data, each in place on a
# Fortran-ordered float64 array: scipy's 32-bit routines, or the ILP64 ones
# from ILP64_FROM on (see syrk_update).


def _potrf_lower(H: np.ndarray) -> tuple[np.ndarray, int]:
    """(L, info): the lower Cholesky factor of H, upper triangle zeroed."""
    if use_ilp64(H.shape[0]):
        from . import _lapack64

        return H, _lapack64.potrf_lower(H)
    from scipy.linalg import lapack

    L, info = lapack.dpotrf(H, lower=1, clean=1, overwrite_a=1)
    return L, int(info)


def _trtri_lower(L: np.ndarray) -> tuple[np.ndarray, int]:
    """(L^-1, info) of a lower triangular L."""
    if use_ilp64(L.shape[0]):
        from . import _lapack64

        return L, _lapack64.trtri_lower(L)
    from scipy.linalg import lapack

    L_inv, info = lapack.dtrtri(L, lower=1, overwrite_c=1)
    return L_inv, int(info)


def _trmm_lower(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """L B for a lower triangular L, in B's memory (B Fortran-ordered)."""
    if use_ilp64(L.shape[0]):
        from . import _lapack64

        return _lapack64.trmm_lower(L, B)
    from scipy.linalg import blas

    return blas.dtrmm(1.0, L, B, lower=1, overwrite_b=1)  # type: ignore[no-any-return]


def check_kinship(K: object, n: int, name: str = "kinship") -> np.ndarray:
    """A validated (n, n) float64 kinship: square, finite, symmetric."""
    K = real_array(K, name)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise InputError(f"{name} must be a square matrix, got shape {K.shape}")
    if K.shape[0] != n:
        raise InputError(f"{name} is {K.shape[0]} x {K.shape[1]} but there are {n} samples")
    # in row blocks of ~4 MB: no n x n temporaries, and blocks small enough that
    # malloc reuses their memory (a fresh 30 MB temporary costs more in page
    # faults, ~2.4 ms per MB here, than the check itself)
    step = max(1, (1 << 19) // max(1, n))
    scale = 0.0
    for i in range(0, n, step):
        rows = K[i : i + step]
        if not np.isfinite(rows).all():
            raise InputError(f"{name} contains NaN or infinite values")
        scale = max(scale, float(np.abs(rows).max()))
    tol = 1e-8 * max(scale, 1e-300)
    for i in range(0, n, step):
        if np.abs(K[i : i + step] - K[:, i : i + step].T).max(initial=0.0) > tol:
            raise InputError(f"{name} is not symmetric")
    return K


def double_centre(K: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
    """(I - J/n) K (I - J/n), as GEMMA applies to every kinship it reads.

    With ``overwrite`` K itself is centred (no n x n temporary).
    """
    row = K.mean(axis=1)
    total = row.mean()
    out = K if overwrite else K.copy()
    out -= row[:, None]
    out -= row[None, :]
    out += total
    return out


def _check_semi_definite(d: np.ndarray, entry_scale: float | None = None) -> None:
    """Refuse eigenvalues more negative than rounding explains (see
    PSD_RELATIVE_TOLERANCE): GEMMA would zero them, and fit a different model.
    ``entry_scale``: the largest |entry| of the kinship as given (its
    analysed samples'), before centring; None: judged by its eigenvalues."""
    if d.size == 0:
        return
    lowest = float(d.min())
    by_eigenvalue = d.size * PSD_EIGENVALUE_TOLERANCE * float(np.abs(d).max())
    by_entry = 0.0 if entry_scale is None else d.size * PSD_RELATIVE_TOLERANCE * entry_scale
    tol = max(EIGEN_ZERO, by_eigenvalue, by_entry)
    if lowest < -tol:
        how = (
            f"n x {PSD_RELATIVE_TOLERANCE:g} x the largest |entry|"
            if by_entry >= by_eigenvalue
            else f"n x {PSD_EIGENVALUE_TOLERANCE:g} x the largest |eigenvalue|"
        )
        raise InputError(
            "kinship is not positive semi-definite: its most negative eigenvalue (after "
            f"GEMMA's double-centring) is {lowest:.6g}, beyond what rounding explains "
            f"(-{tol:.3g} = -{how}); GEMMA would set it to 0 and fit another model"
        )


def check_kinship_scale(K: np.ndarray, name: str = "kinship") -> float:
    """Refuse a kinship whose entries' squares (summed over a row) overflow:
    the eigensolver and lambda x eigenvalue in the likelihood would give inf
    or NaN.  max and min, not abs: no n x n temporary.  Returns the largest
    |entry|."""
    n = max(1, K.shape[0])
    limit = math.sqrt(np.finfo(np.float64).max / n)
    big = max(float(np.max(K, initial=0.0)), -float(np.min(K, initial=0.0)))
    if big > limit:
        raise InputError(
            f"{name} has an entry of magnitude {big:.3g}: beyond {limit:.3g} (sqrt(max double "
            "/ n)) its squares overflow; divide it by a constant (its scale only moves lambda)"
        )
    return big


class BlockRotation(Protocol):
    """What the scan engine needs to rotate a block of SNPs."""

    def rotate_rows(self, X: np.ndarray) -> np.ndarray:
        """The rotated block, one SNP per row, (b, k) in C order, for X (n, b)."""
        ...


def rows_product(X: np.ndarray, U: np.ndarray) -> np.ndarray:
    """(X' U), C order, in X's and U's dtype, for X (n, b) and U (n, k).

    Narrow blocks are padded to 64 columns: BLAS takes other kernels (with
    another summation order) for very narrow products, and the results must
    not depend on how the SNPs were split into blocks (for X itself: a
    :class:`TridiagonalSpectral` hands over Q'X, which does).
    """
    b = X.shape[1]
    if b < _MIN_GEMM_COLUMNS:
        # the padded block keeps X's memory order (the same BLAS path as a full block)
        order: Literal["C", "F"] = "C" if X.flags.c_contiguous and not X.flags.f_contiguous else "F"
        padded = np.zeros((X.shape[0], _MIN_GEMM_COLUMNS), dtype=X.dtype, order=order)
        padded[:, :b] = X
        X = padded
    return np.ascontiguousarray((X.T @ U)[:b])


# elements per part below which a conversion is not split over threads
_SPLIT_CAST = 1 << 18


def convert(X: np.ndarray, dtype: Any, threads: int = 1) -> np.ndarray:
    """X converted to ``dtype`` in X's memory order (as ``astype``), in ``threads`` parts
    (whole columns of an F-ordered X, whole rows of a C-ordered one) converted
    at once: numpy's casts release the GIL.  The values of ``X.astype(dtype)``."""
    if not (X.flags.f_contiguous or X.flags.c_contiguous):
        return X.astype(dtype)
    fortran = X.flags.f_contiguous and not X.flags.c_contiguous
    out = np.empty(X.shape, dtype=dtype, order="F" if fortran else "C")
    axis = 1 if fortran else 0
    parts = min(threads, X.size // _SPLIT_CAST) if X.ndim == 2 else 1
    if parts < 2:
        np.copyto(out, X, casting="unsafe")
        return out
    cuts = np.linspace(0, X.shape[axis], parts + 1).astype(int)
    spans = [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    pieces = [(slice(None), span) if axis else (span,) for span in spans]
    run_parts([partial(np.copyto, out[piece], X[piece], casting="unsafe") for piece in pieces])
    return out


@runtime_checkable
class SpectralBasis(Protocol):
    """K = U diag(d) U' on k <= n directions, eigenvalue 0 on the other n - k.

    Directions outside the k rotated ones (none for :class:`Spectral`) enter
    the likelihood only through Gram matrices on the complement of U.
    """

    d: np.ndarray  # (k,) eigenvalues, >= 0

    @property
    def n_total(self) -> int:
        """n: the analysed samples."""
        ...

    def rotate(self, X: np.ndarray) -> np.ndarray:
        """U' X for X (n,) or (n, m), Fortran order."""
        ...

    def rotate_rows(self, X: np.ndarray) -> np.ndarray:
        """(U' X)' for X (n, b): one rotated column of X per row, C order."""
        ...

    def complement_gram(self, V: np.ndarray) -> np.ndarray | None:
        """V'(I - UU')V for V (n, m); None when U spans every direction."""
        ...

    def complement_rows(self, X: np.ndarray, V: np.ndarray) -> np.ndarray | None:
        """(b, c + 2): x'(I - UU')[V[:, :c], x, V[:, c]] for each column x of
        X; None when U spans every direction."""
        ...

    def smooth(self, r: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """U diag(weights) U' r."""
        ...

    def kernel_diag(self, weights: np.ndarray) -> np.ndarray:
        """diag(U diag(weights) U')."""
        ...


@dataclass
class ReleasedSpectral:
    """What a null model keeps of its spectral basis once the eigenvectors are
    released: the eigenvalues ``d`` and the number of samples.

    A LOCO scan reports each chromosome's null model this way (all their
    n x n eigenvector matrices would otherwise stay in memory to the end, one
    per chromosome).  What needs the eigenvectors raises: the model's
    random effects and fitted values :class:`lmmscan.InputError`, the basis's
    own U and products AttributeError, both saying why.
    """

    d: np.ndarray
    n: int

    WHY = (
        "this null model keeps its kinship's eigenvalues but not its eigenvectors: LOCO "
        "reports each chromosome's model this way (lmmscan.loco_scan(..., null_models={}) "
        "keeps them whole)"
    )

    @property
    def n_total(self) -> int:
        return self.n

    def __getattr__(self, name: str) -> Any:
        # reached only for what this class lacks: U and the products
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"{name}: {self.WHY}")


@dataclass
class Spectral:
    """K = U diag(d) U' with eigenvalues below 1e-10 set to 0 (all n directions)."""

    d: np.ndarray
    U: np.ndarray

    @classmethod
    def from_kinship(
        cls,
        K: np.ndarray,
        *,
        overwrite: bool = False,
        release_gil: bool = False,
        entry_scale: float | None = None,
    ) -> Spectral:
        """Eigendecomposition (LAPACK dsyevd where its memory fits, else
        dsyevr; see :func:`eigh_driver`; lower triangle) of a symmetric K; ``overwrite``
        lets LAPACK work in K's memory instead of a copy.  scipy's LAPACK is
        called through ctypes, with the GIL released (scipy.linalg.eigh where
        its library is not found).  ``release_gil``: the caller runs
        decompositions on several threads and set the BLAS threads itself
        (:func:`serial_library`); otherwise they are set here and
        scipy.special is imported beside the call."""
        # LAPACK works in Fortran order; K is symmetric, so a C-ordered K is
        # handed over as its (Fortran-ordered) transpose instead of copied
        A = K.T if K.flags.c_contiguous and not K.flags.f_contiguous else K
        n = A.shape[0]
        driver = resolve_eigh_driver(n, overwrite)
        _check_decomposition_memory(n, overwrite, driver)

        def decompose() -> tuple[np.ndarray, np.ndarray]:
            free = None
            if not use_ilp64(n):
                from . import _lapack64

                _lapack64.scipy_library()  # loaded before its threads are set
                # scipy's LAPACK through ctypes: the GIL is released and scipy
                # is not imported.  Unless ``release_gil`` (the caller set the
                # threads and runs other decompositions beside), the scan's
                # p-values' scipy.special (~0.15 s of imports) is imported on
                # another thread meanwhile.
                if release_gil:
                    free = _eigh_gil_free(A, overwrite, driver)
                else:
                    with _eigh_threads(n), importing_beside("scipy.special"):
                        free = _eigh_gil_free(A, overwrite, driver)
            if free is not None:
                return free
            import scipy.linalg  # only where scipy's library was not found

            with _eigh_threads(n):
                if use_ilp64(n):
                    return _eigh_ilp64(A, driver, overwrite)
                return scipy.linalg.eigh(
                    A, driver=driver, overwrite_a=overwrite, check_finite=False
                )

        # (the command's Ctrl-C and SIGTERM act during a long one: _detached)
        d, U = call_interruptibly(decompose) if _detached(n, release_gil) else decompose()
        _check_semi_definite(d, entry_scale)
        d = np.where(d < EIGEN_ZERO, 0.0, d)
        # U stays in LAPACK's (Fortran) order: a C-order copy would cost 8n^2
        # bytes, and U.T @ X / X.T @ U run as fast either way
        return cls(d=np.ascontiguousarray(d), U=U)

    @property
    def n_total(self) -> int:
        return int(self.U.shape[0])

    def rotate(self, X: np.ndarray) -> np.ndarray:
        """U' X for X (n, k), returned (n, k) in Fortran order."""
        return np.asfortranarray(self.U.T @ X)

    def rotate_rows(self, X: np.ndarray) -> np.ndarray:
        """(U' X)' for X (n, b): one rotated column of X per row, C order.

        Narrow blocks are padded to 64 columns: BLAS takes other kernels (with
        another summation order) for very narrow products, and the results
        must not depend on how the SNPs were split into blocks.
        """
        return rows_product(X, self.U)

    def complement_gram(self, V: np.ndarray) -> np.ndarray | None:
        """V'(I - UU')V: nothing here, every direction is rotated."""
        return None

    def complement_rows(self, X: np.ndarray, V: np.ndarray) -> np.ndarray | None:
        return None

    def smooth(self, r: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """U diag(weights) U' r."""
        return self.U @ (weights * (self.U.T @ r))

    def kernel_diag(self, weights: np.ndarray) -> np.ndarray:
        """diag(U diag(weights) U')."""
        return np.einsum("ik,k,ik->i", self.U, weights, self.U)


# A basis rotates its columns through Q and V (TridiagonalSpectral) instead of
# forming U = Q V when it rotates fewer columns than n / TRIDIAGONAL_SHARE.
# Forming U costs 2n^3 flops (dormtr on n columns); rotating through Q costs
# 2n^2 per column more than through U.  By flops alone (dormtr keeps its pace
# on a few hundred columns since it has its block reflector's workspace) the
# factors pay below n columns: one thread at n = 1,410, a decomposition and
# the rotation of m columns took 0.75-0.80 (m = 500-700), 0.85 (1,000-1,200)
# and 0.975 (1,400) of the time with U formed.  End to end it did not show:
# LOCO on mouse_hs1940 with the factors below n took the wall and CPU time
# of n / 2 (paired 1.009 and 1.013 over 9 and 5 rounds, the same table,
# 2026-12-06), so n / 2 stays.  Likely why: a formed U keeps the repeat-SNP
# search, which the factors cannot (their rotations depend on the block), and
# 24% of mouse_hs1940's SNPs repeat an earlier one
TRIDIAGONAL_SHARE = 2


def tridiagonal_pays(n: int, columns: int) -> bool:
    """Whether rotating ``columns`` columns of n samples through Q and V
    (:class:`TridiagonalSpectral`) costs less than forming U first."""
    return columns * TRIDIAGONAL_SHARE < n


class TridiagonalSpectral(Spectral):
    """K = U diag(d) U' with U = Q V kept as its two factors: Q, the
    Householder reflections of LAPACK's reduction of K to a tridiagonal T
    (``dsytrd``, in K's own buffer), and V, T's eigenvectors (``dstedc``).

    ``dsyevd`` makes the same two calls and then forms U = Q V (``dormtr`` on
    n columns, 2n^3 flops); here U'X is V'(Q'X), which costs 2n^2 flops per
    column of X more than U'X.  Where few columns are rotated (a LOCO
    chromosome with fewer SNPs than n / 2, see :func:`tridiagonal_pays`),
    that is less work than forming U.  The eigenvalues are ``dsyevd``'s bit
    for bit (the same calls on the same T); the rotations agree with U's to
    rounding, not bit for bit, and a column's last bits depend on the block
    it is rotated in (``dormtr``'s block reflectors are applied by BLAS
    products whose kernels vary with the block's width), so the scan does
    not look for repeated SNPs in such blocks, and a LOCO table's last digits
    can depend on the block size.  U itself is formed on first use
    (:attr:`U`: random effects, predictions).  Pickled, it finds its LAPACK
    again where it is loaded."""

    def __init__(
        self, d: np.ndarray, reflectors: np.ndarray, tau: np.ndarray, V: np.ndarray, lib: Any
    ) -> None:
        self.d = d
        self.reflectors, self.tau, self.V = reflectors, tau, V
        self._lib = lib
        self._U: np.ndarray | None = None

    @classmethod
    def from_kinship(
        cls,
        K: np.ndarray,
        *,
        overwrite: bool = False,
        release_gil: bool = False,
        entry_scale: float | None = None,
    ) -> Spectral:
        """The factors of K (lower triangle), through ctypes with the GIL
        released; ``overwrite`` lets the reflectors take K's buffer;
        ``release_gil``: the caller set the BLAS threads (see
        :meth:`Spectral.from_kinship`), else they are set here as for
        dsyevd, whose eigenvalues these then are bit for bit.  A
        :class:`Spectral` (dsyevd) where LAPACK cannot be called directly."""
        from . import _lapack64

        A = K.T if K.flags.c_contiguous and not K.flags.f_contiguous else K
        n = A.shape[0]
        lib = cls._library(n)
        # below 64 samples the factors save nothing, and dormtr would apply
        # them unblocked (dorm2r), which writes into the reflectors as it goes
        if lib is None or n < _MIN_GEMM_COLUMNS:
            return Spectral.from_kinship(
                K, overwrite=overwrite, release_gil=release_gil, entry_scale=entry_scale
            )
        if not (overwrite and A.flags.f_contiguous and A.flags.writeable):
            A = np.array(A, dtype=np.float64, order="F")

        def factor() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            with contextlib.nullcontext() if release_gil else _eigh_threads(n):
                d, e, tau = _lapack64.sytrd(A, lib)
                d, V = _lapack64.stedc(d, e, lib)
            return d, tau, V

        d, tau, V = call_interruptibly(factor) if _detached(n, release_gil) else factor()
        _check_semi_definite(d, entry_scale)
        d = np.where(d < EIGEN_ZERO, 0.0, d)
        return cls(np.ascontiguousarray(d), A, tau, V, lib)

    def __repr__(self) -> str:
        return f"TridiagonalSpectral(n={self.n_total})"

    def __getstate__(self) -> dict:
        # the ctypes library does not pickle: found again on loading
        return {k: v for k, v in self.__dict__.items() if k != "_lib"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lib = self._library(self.n_total)

    @staticmethod
    def _library(n: int) -> Any:
        """The LAPACK the factors of an n x n kinship are computed and applied
        with: the ILP64 one from ILP64_FROM on, else scipy's (None: not found)."""
        from . import _lapack64

        return _lapack64._lib() if use_ilp64(n) else _lapack64.scipy_library()

    @property
    def U(self) -> np.ndarray:
        """U = Q V, formed (2n^3 flops) and kept on first use."""
        if self._U is None:
            from . import _lapack64

            U = np.array(self.V, order="F")
            self._U = _lapack64.ormtr(self.reflectors, self.tau, U, transpose=False, lib=self._lib)
        return self._U

    @U.setter
    def U(self, U: np.ndarray) -> None:
        self._U = U

    @property
    def n_total(self) -> int:
        return int(self.V.shape[0])

    def _reflected(self, X: np.ndarray) -> np.ndarray:
        """Q'X (n, m) for X (n,) or (n, m), a new Fortran array."""
        from . import _lapack64

        C = np.array(X.reshape(X.shape[0], -1), dtype=np.float64, order="F")
        return _lapack64.ormtr(self.reflectors, self.tau, C, transpose=True, lib=self._lib)

    def rotate(self, X: np.ndarray) -> np.ndarray:
        """U' X = V'(Q'X) for X (n, k), returned (n, k) in Fortran order."""
        R = np.asfortranarray(self.V.T @ self._reflected(X))
        return R.reshape(X.shape) if X.ndim == 1 else R

    def rotate_rows(self, X: np.ndarray) -> np.ndarray:
        """(V'(Q'X))' for X (n, b): one rotated column of X per row, C order."""
        return rows_product(self._reflected(X), self.V)


class GroupSpectral:
    """K = D D' for group labels, in closed form (no n x n matrix).

    Group j (sorted labels) has the eigenvector 1_j / sqrt(n_j) with
    eigenvalue n_j; the n - J within-group contrasts have eigenvalue 0 and
    enter the likelihood through the complement Gram matrix (within-group
    centred cross-products).  Costs O(n) per vector.
    """

    def __init__(self, codes: np.ndarray, labels: np.ndarray) -> None:
        self.codes = np.asarray(codes, dtype=np.int64)
        self.labels = labels
        self.sizes = np.bincount(self.codes, minlength=len(labels)).astype(np.float64)
        self.d = np.ascontiguousarray(self.sizes)
        n = self.codes.shape[0]
        import scipy.sparse

        self._Dt = scipy.sparse.csr_matrix(
            (np.ones(n), (self.codes, np.arange(n))), shape=(len(labels), n)
        )

    @property
    def n_total(self) -> int:
        return int(self.codes.shape[0])

    def _sums(self, X: np.ndarray) -> np.ndarray:
        X2 = X if X.ndim == 2 else X[:, None]
        out = np.asarray(self._Dt @ X2)
        return out if X.ndim == 2 else out[:, 0]

    def _centre(self, X: np.ndarray) -> np.ndarray:
        means = self._sums(X) / (self.sizes if X.ndim == 1 else self.sizes[:, None])
        return X - means[self.codes]

    def rotate(self, X: np.ndarray) -> np.ndarray:
        scale = np.sqrt(self.sizes)
        return np.asfortranarray(self._sums(X) / (scale if X.ndim == 1 else scale[:, None]))

    def rotate_rows(self, X: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray((self._sums(X) / np.sqrt(self.sizes)[:, None]).T)

    def complement_gram(self, V: np.ndarray) -> np.ndarray:
        Vc = self._centre(V)
        return np.ascontiguousarray(Vc.T @ Vc)

    def complement_rows(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        """(b, m): for each column x of X, x_c' [V_c[:, :c], x_c, V_c[:, c]]."""
        Xc = self._centre(X)
        Vc = self._centre(V)
        c = V.shape[1] - 1
        out = np.empty((X.shape[1], c + 2))
        out[:, :c] = Xc.T @ Vc[:, :c]
        out[:, c] = np.einsum("ij,ij->j", Xc, Xc)
        out[:, c + 1] = Xc.T @ Vc[:, c]
        return out

    def smooth(self, r: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """U diag(weights) U' r (zero weight on the complement)."""
        return (weights * self._sums(r) / self.sizes)[self.codes]

    def kernel_diag(self, weights: np.ndarray) -> np.ndarray:
        return (weights / self.sizes)[self.codes]


def _svd_u(A: np.ndarray, overwrite: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(U, s) of the thin SVD of A by gesdd: scipy's (called as before, so
    the same bits), or from ``_lapack64.GESDD_ILP64_FROM`` on (rows and
    columns) the 64-bit-integer one: scipy's workspace size wraps past 32
    bits there."""
    import scipy.linalg

    from . import _lapack64

    if min(A.shape) < _lapack64.GESDD_ILP64_FROM:
        U, s, _ = scipy.linalg.svd(A, check_finite=False, lapack_driver="gesdd")  # A square
        return U, s
    if not _lapack64.available():
        raise _lapack64.Ilp64Missing(
            f"the SVD of a {A.shape[0]} x {A.shape[1]} kinship factor needs LAPACK with "
            "64-bit integers (numpy >= 2 ships it)"
        )
    if A.shape[0] < A.shape[1]:  # more SNPs than samples: A's U is the V of A'
        _, s, VT = _lapack64.gesdd(np.array(A.T, order="F", dtype=np.float64))
        return np.asfortranarray(VT.T), s
    own = overwrite and A.flags.f_contiguous and A.flags.writeable and A.dtype == np.float64
    U, s, _ = _lapack64.gesdd(A if own else np.array(A, order="F", dtype=np.float64))
    return U, s


def _thin_svd_in_place(Z: np.ndarray, rows: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Left singular vectors and singular values of a tall Z (n, k), n > k,
    Fortran order, in Z's own memory: Householder QR in place (``dgeqrf``),
    the SVD of the k x k factor R, Q formed in place (``dorgqr``), then
    U = Q U_R by blocks of rows written back.  One n x k matrix, as against
    gesdd's copy and workspace (about three); as backward stable.  Returns
    (U, s) with U a view of Z's memory."""
    from scipy.linalg import lapack

    n, k = Z.shape
    # no workspace query through the routines themselves: f2py would copy Z
    # for it (no overwrite_a); 64 columns a block is LAPACK's usual choice
    work, info = lapack.dgeqrf_lwork(n, k)
    lwork = max(int(work), 64 * k) if info == 0 else 64 * k
    qr, tau, _, info = lapack.dgeqrf(Z, lwork=lwork, overwrite_a=1)
    if info != 0:
        raise NumericalError(f"the QR factorisation of the kinship factor failed (info {info})")
    R = np.triu(qr[:k, :k])
    Ur, s = _svd_u(R)
    del R
    Q, _, info = lapack.dorgqr(qr, tau, lwork=lwork, overwrite_a=1)
    if info != 0:
        raise NumericalError(f"forming Q of the kinship factor failed (info {info})")
    for start in range(0, n, rows):
        block = slice(start, min(n, start + rows))
        Q[block] = Q[block] @ Ur
    return Q, s


def complement_from_products(
    UtX: np.ndarray, UtV: np.ndarray, XtV: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """(b, c + 2): for each SNP x, x'(I - UU')[V[:, :c], x, V[:, c]] from
    its products with the basis (UtX (b, k) and UtV (k, c + 1)), with V
    (XtV (b, c + 1)) and with itself (xx (b,))."""
    c = UtV.shape[1] - 1
    proj = UtX @ UtV
    out = np.empty((UtX.shape[0], c + 2))
    out[:, :c] = XtV[:, :c] - proj[:, :c]
    out[:, c] = xx - np.einsum("ij,ij->i", UtX, UtX)
    out[:, c + 1] = XtV[:, c] - proj[:, c]
    return out


class LowRankSpectral:
    """K = U diag(d) U' with U (n, k) orthonormal, k <= n; eigenvalue 0 elsewhere.

    The spectral interface of :func:`lmmscan.fit_null` (``spectral=``) and of
    the scan: ``rotate``/``rotate_rows`` project on the k directions,
    ``complement_gram``/``complement_rows`` give the Gram matrices on the
    n - k others.  Nothing of size n x n is ever formed.
    """

    def __init__(self, d: np.ndarray, U: np.ndarray) -> None:
        d = np.ascontiguousarray(d, dtype=np.float64)
        U = np.asarray(U, dtype=np.float64)
        if not (U.flags.c_contiguous or U.flags.f_contiguous):
            U = np.ascontiguousarray(U)  # either order: an n x k copy is costly here
        if d.ndim != 1 or U.ndim != 2 or U.shape[1] != d.shape[0]:
            raise InputError(f"need d (k,) and U (n, k), got {d.shape} and {U.shape}")
        if U.shape[1] > U.shape[0]:
            raise InputError(f"U has more columns ({U.shape[1]}) than samples ({U.shape[0]})")
        if np.any(d < 0) or not np.isfinite(d).all():
            raise InputError("eigenvalues must be finite and non-negative")
        self.d = d
        self.U = U
        self._memo: tuple[object, np.ndarray] | None = None
        self._UtV: tuple[object, np.ndarray] | None = None

    @classmethod
    def from_factor(
        cls,
        Z: np.ndarray,
        *,
        rank: int | None = None,
        zero: float = EIGEN_ZERO,
        overwrite: bool = False,
    ) -> LowRankSpectral:
        """The spectral decomposition of K = Z Z' for a factor Z (n, p), any p.

        Eigenvalues below ``zero`` (GEMMA's 1e-10) are left to the complement;
        ``rank`` keeps at most that many of the largest.  Z is not centred here;
        ``overwrite`` lets LAPACK destroy it (saves a copy of n x p).
        """
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim != 2:
            raise InputError(f"the kinship factor must be 2-D (samples x SNPs), got {Z.shape}")
        if not np.isfinite(Z.sum(axis=0)).all():  # a NaN or inf reaches its column's sum
            raise InputError("the kinship factor contains NaN or infinite values")
        import scipy.linalg

        from . import _lapack64

        if overwrite and Z.flags.f_contiguous and Z.flags.writeable and Z.shape[0] > Z.shape[1]:
            U, s = _thin_svd_in_place(Z)
        elif min(Z.shape) >= _lapack64.GESDD_ILP64_FROM:  # the ILP64 gesdd
            U, s = _svd_u(Z, overwrite=overwrite)
        else:
            U, s, _ = scipy.linalg.svd(
                Z,
                full_matrices=False,
                overwrite_a=overwrite,
                check_finite=False,
                lapack_driver="gesdd",
            )
        d = s * s
        keep = d >= zero
        if rank is not None:
            if rank < 1:
                raise InputError(f"rank must be at least 1, got {rank}")
            keep &= np.arange(d.size) < rank  # s is sorted descending
        # s is sorted descending, so the kept ones are a prefix: a view of U
        r = int(np.count_nonzero(keep))
        if not keep[:r].all():  # pragma: no cover - LAPACK sorts singular values
            return cls(d[keep], U[:, keep])
        return cls(d[:r], U[:, :r])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_memo"] = None
        state["_UtV"] = None
        return state

    @property
    def n_total(self) -> int:
        return int(self.U.shape[0])

    @property
    def rank(self) -> int:
        return int(self.U.shape[1])

    def rotate(self, X: np.ndarray) -> np.ndarray:
        """U' X for X (n,) or (n, m): (k,) or (k, m) in Fortran order."""
        return np.asfortranarray(self.U.T @ X)

    def rotate_rows(self, X: np.ndarray) -> np.ndarray:
        """(U' X)' for X (n, b), C order.  Remembered for the complement_rows
        call on the same block that follows in a scan (it needs U'X too, and
        this product is the scan's largest cost)."""
        out = np.ascontiguousarray(X.T @ self.U)
        self._memo = (X, out)
        return out

    def complement_gram(self, V: np.ndarray) -> np.ndarray:
        """V'(I - UU')V for V (n, m), from the projected residual (accurate
        even where V lies mostly in the span of U)."""
        R = V - self.U @ (self.U.T @ V)
        return np.ascontiguousarray(R.T @ R)

    def _rotated_rows(self, X: np.ndarray) -> np.ndarray:
        memo, self._memo = self._memo, None  # do not hold the block past its use
        if memo is not None and memo[0] is X:
            return memo[1]
        return np.ascontiguousarray(X.T @ self.U)

    def _rotated_V(self, V: np.ndarray) -> np.ndarray:
        memo = self._UtV
        if memo is not None and memo[0] is V:
            return memo[1]
        UtV = self.U.T @ V
        self._UtV = (V, UtV)
        return UtV

    def complement_rows(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        """(b, c + 2): for each column x of X, x'(I - UU')[V[:, :c], x, V[:, c]]."""
        UtX = self._rotated_rows(X)  # (b, k)
        UtV = self._rotated_V(V)  # (k, c + 1)
        return complement_from_products(UtX, UtV, X.T @ V, np.einsum("ij,ij->j", X, X))

    def smooth(self, r: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """U diag(weights) U' r (weight 0 on the complement, where d = 0)."""
        return self.U @ (weights * (self.U.T @ r))

    def kernel_diag(self, weights: np.ndarray) -> np.ndarray:
        """diag(U diag(weights) U')."""
        return np.einsum("ik,k,ik->i", self.U, weights, self.U)


class DaskLowRankSpectral:
    """A :class:`LowRankSpectral` whose U (n, k) stays on a Dask cluster,
    chunked by samples (:meth:`lmmscan.lowrank.DaskLowRankKinship.spectral`
    builds it with Dask's tall-and-skinny SVD): no machine holds all of it.

    The null fit's products with U (``rotate``, ``complement_gram``,
    ``smooth``, ``kernel_diag``) run on the cluster and return small
    arrays.  A scan with it runs on the same cluster (``client=``): each
    task multiplies a block's rows by the rows of U its worker holds
    (:mod:`lmmscan.distributed`).  Pickled (to the scan's workers), it
    keeps d and the sample count only.
    """

    def __init__(self, d: np.ndarray, U: Any, client: Any) -> None:
        self.d = np.ascontiguousarray(d, dtype=np.float64)
        self.U = U  # a persisted dask array (n, k), one column chunk
        self.client = client
        shape = U.shape
        self._n, self._k = int(shape[0]), int(shape[1])
        if self.d.shape != (self._k,):
            raise InputError(f"need d ({self._k},) for U {shape}, got {self.d.shape}")

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["U"] = None
        state["client"] = None
        return state

    @property
    def n_total(self) -> int:
        return self._n

    @property
    def rank(self) -> int:
        return self._k

    @property
    def row_chunks(self) -> tuple[int, ...]:
        """The number of samples in each of U's chunks, in order."""
        return tuple(int(c) for c in self._dask().chunks[0])

    def _dask(self) -> Any:
        if self.U is None:
            raise InputError("this low-rank basis lives on its Dask cluster, not on this worker")
        return self.U

    def _compute(self, expr: Any) -> np.ndarray:
        return np.asarray(self.client.compute(expr).result())

    def _chunked(self, X: np.ndarray) -> Any:
        import dask.array as da

        U = self._dask()
        chunks = (U.chunks[0],) + tuple((m,) for m in X.shape[1:])
        return da.from_array(np.asarray(X, dtype=np.float64), chunks=chunks)

    def rotate(self, X: np.ndarray) -> np.ndarray:
        """U' X for X (n,) or (n, m): (k,) or (k, m) in Fortran order."""
        U = self._dask()
        return np.asfortranarray(self._compute(U.T @ self._chunked(X)))

    def rotate_rows(self, X: np.ndarray) -> np.ndarray:
        raise InputError(
            "a low-rank kinship on a Dask cluster scans on that cluster: pass client= to the scan"
        )

    def complement_gram(self, V: np.ndarray) -> np.ndarray:
        """V'(I - UU')V from the projected residual, as LowRankSpectral."""
        U = self._dask()
        Vd = self._chunked(V)
        UtV = self._compute(U.T @ Vd)
        R = Vd - U @ UtV
        return np.ascontiguousarray(self._compute(R.T @ R))

    def complement_rows(self, X: np.ndarray, V: np.ndarray) -> np.ndarray:
        return self.rotate_rows(X)

    def smooth(self, r: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """U diag(weights) U' r."""
        U = self._dask()
        return self._compute(U @ (weights * self.rotate(r)))

    def kernel_diag(self, weights: np.ndarray) -> np.ndarray:
        """diag(U diag(weights) U')."""
        U = self._dask()
        return self._compute((U * U) @ weights)


@dataclass
class Whitening:
    """The inverse of the lower Cholesky factor L of H = lambda K + I, for
    fixed-lambda scans.

    At one lambda the tests need x' H^-1 v only, and L^-1 x (a triangular
    product, n^2 flops per SNP) gives them at half the cost of U' x (2 n^2).
    L^-1 is formed once (dtrtri, n^3 / 3 flops) because OpenBLAS multiplies
    by a triangular matrix (dtrmm) ~12% faster than it solves with one
    (dtrsm); the two agree to ~1e-15.  H is built from the
    eigendecomposition, so it is the same model as the rotated scan's
    (eigenvalues below 1e-10 count as 0).
    """

    lambda_: float
    L_inv: np.ndarray  # (n, n) Fortran order, lower triangle

    @classmethod
    def from_spectral(cls, spectral: Spectral, lambda_: float, *, block: int = 256) -> Whitening:
        """L L' = U diag(lambda d + 1) U', accumulated by symmetric rank-k
        updates over blocks of eigenvectors (no second n x n temporary)."""
        U, d = spectral.U, spectral.d
        n = U.shape[0]
        if U.shape[1] != n:
            raise InputError("whitening needs all n eigenvectors (a dense kinship)")
        h_inv = lambda_ * d + 1.0
        if not np.all(h_inv > 0):
            raise NumericalError(
                f"lambda K + I is not positive definite at lambda = {lambda_:.6g} (smallest "
                f"eigenvalue {float(np.min(h_inv)):.6g})"
            )
        scale = np.sqrt(h_inv)
        H = np.zeros((n, n), order="F")
        for start in range(0, n, block):
            cols = slice(start, min(n, start + block))
            H = syrk_update(H, U[:, cols] * scale[cols], lower=True)
        # (n^3 flops on this thread, 4.9 s at n = 9,654, for which a signal
        # waits: scipy's wrappers hold the GIL, so a worker thread would not
        # free the main one, helpers 69 and 71)
        L, info = _potrf_lower(H)
        if info != 0:
            raise NumericalError(
                f"lambda K + I is not positive definite in floating point at lambda = "
                f"{lambda_:.6g} (dpotrf: leading minor {info})"
            )
        L_inv, info = _trtri_lower(L)
        if info != 0:
            raise NumericalError(f"the factor of lambda K + I is singular (dtrtri info {info})")
        return cls(lambda_=float(lambda_), L_inv=L_inv)

    def whiten(self, V: np.ndarray) -> np.ndarray:
        """L^-1 V for V (n,) or (n, k)."""
        V = np.asarray(V, dtype=np.float64)
        B = np.array(V.reshape(V.shape[0], -1), order="F")  # dtrmm works in place
        return _trmm_lower(self.L_inv, B).reshape(V.shape)

    def rotate_rows(self, X: np.ndarray) -> np.ndarray:
        """(L^-1 X)' for X (n, b): one whitened column of X per row, C order.

        Narrow blocks are padded to 64 columns, as in
        :meth:`Spectral.rotate_rows`, so that no result depends on the block size.
        """
        b = X.shape[1]
        if b >= _MIN_GEMM_COLUMNS:  # dtrmm works in place: on a copy, X stays as it is
            padded = np.array(X, order="F")
        else:
            padded = np.zeros((X.shape[0], _MIN_GEMM_COLUMNS), order="F")
            padded[:, :b] = X
        return _trmm_lower(self.L_inv, padded).T[:b]


def decompose_kinship(
    K: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    center: bool = True,
    overwrite_kinship: bool = False,
    release_gil: bool = False,
    tridiagonal: bool = False,
) -> Spectral:
    """The spectral decomposition lmmscan fits with: K restricted to ``mask``,
    double-centred (GEMMA) unless ``center=False``, tiny eigenvalues zeroed.

    One private copy of the analysed block is centred and handed to LAPACK
    to work in (no other n x n temporary).  Every path (fit_null, saved
    eigendecompositions, LOCO) goes through here, so their eigenvalues agree
    bitwise (and their eigenvectors, except a ``tridiagonal`` basis's, whose
    rotations agree to rounding).

    ``overwrite_kinship=True`` (as scipy's ``overwrite_a``) lets the
    restriction, the centring and LAPACK work in K's own buffer instead of
    that copy: **K's contents are destroyed** (it holds no kinship
    afterwards; drop it).  Then only K's buffer and the eigenvectors exist
    (about 2 x 8n^2 bytes instead of 3); with dsyevd (:func:`eigh_driver`,
    the default where it fits) the eigenvectors are computed in K's buffer
    itself, and K is then made read-only, so that a later write into it
    raises instead of changing the fitted model.  K must be a writeable
    float64 array in C or Fortran order for that; any other K is copied as
    without the option.  The result is the same as without it.
    ``release_gil``: see :meth:`Spectral.from_kinship`.  ``tridiagonal``:
    U kept as its two factors (:class:`TridiagonalSpectral`, for bases that
    rotate few columns), the reflectors in K's buffer as the eigenvectors
    would be.
    """
    in_place = overwrite_kinship and _can_overwrite(K)
    if in_place:
        Ka = _restrict_in_place(K, mask)
    elif mask is None or mask.all():
        Ka = np.array(K, dtype=np.float64, order="C")
    else:
        Ka = np.ascontiguousarray(K[np.ix_(mask, mask)], dtype=np.float64)
    entries = check_kinship_scale(Ka)
    if center:
        double_centre(Ka, overwrite=True)
    kind = TridiagonalSpectral if tridiagonal else Spectral
    spectral = kind.from_kinship(Ka, overwrite=True, release_gil=release_gil, entry_scale=entries)
    held = spectral.reflectors if isinstance(spectral, TridiagonalSpectral) else spectral.U
    if in_place and np.shares_memory(held, K):
        K.flags.writeable = False
    return spectral


def _can_overwrite(K: object) -> bool:
    return (
        isinstance(K, np.ndarray)
        and K.dtype == np.float64
        and K.ndim == 2
        and K.flags.writeable
        and (K.flags.c_contiguous or K.flags.f_contiguous)
    )


def _restrict_in_place(K: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """K[mask][:, mask] as a C-ordered view of the start of K's own buffer.

    Row i of the result is written over K's buffer at i * m, at or before
    where K's row rows[i] starts (rows[i] >= i, n >= m); rows are gathered a
    chunk at a time before they are written, so nothing is overwritten before
    it is read.  A Fortran-ordered K is compacted as its C-ordered transpose,
    then transposed in place.  The values are exactly those of
    ``np.ascontiguousarray(K[np.ix_(mask, mask)])``, so the rest of the
    decomposition runs bit for bit as on that copy.
    """
    fortran = not K.flags.c_contiguous
    src = K.T if fortran else K
    if mask is None or mask.all():
        out = src
    else:
        rows = np.flatnonzero(mask)
        m = rows.shape[0]
        flat = src.reshape(-1)  # a view: src is C-contiguous
        step = max(1, (1 << 19) // max(1, m))  # at most 4 MB gathered at a time
        for i in range(0, m, step):
            chunk = src[np.ix_(rows[i : i + step], rows)]
            flat[i * m : i * m + chunk.size] = chunk.reshape(-1)
        out = flat[: m * m].reshape(m, m)
    if fortran:
        _transpose_in_place(out)
    return out


def _transpose_in_place(A: np.ndarray) -> None:
    """A <- A' for a square A, a band of rows at a time (O(band x n) scratch)."""
    m = A.shape[0]
    step = max(1, (1 << 19) // max(1, m))
    for i in range(0, m, step):
        j = min(m, i + step)
        upper = A[i:j, i:].copy()
        A[i:j, i:] = A[i:, i:j].T
        A[i:, i:j] = upper.T
