"""BLAS and LAPACK with 64-bit integers (ILP64), for n x n work past 32-bit indices.

scipy's LAPACK takes 32-bit integers: ``dsyevd``'s workspace (1 + 6n + 2n^2)
overflows them past n ~ 32,700, and the reference LAPACK routines index an
n x n matrix with them past n = 46,340.  numpy >= 2 ships an ILP64 OpenBLAS
with the full LAPACK (``scipy_dsyevd_64_`` ...; PyPI's ``scipy-openblas64``
is the same library), loaded as soon as numpy is.  This module calls its
routines through ctypes, on Fortran-ordered float64 arrays, in place.

:data:`ILP64_FROM` is the order from which :mod:`lmmscan.spectral` and the
kinship sums use these routines instead of scipy's (the same OpenBLAS
kernels, another build: results agree to rounding, not bit for bit, so the
usual sizes keep scipy's).  Tests lower it.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from typing import Any

import numpy as np

from ._errors import InputError, NumericalError

# n x n work from this order on goes through the ILP64 routines: below
# dsyevd's 32-bit workspace limit (n ~ 32,700) with a margin
ILP64_FROM = 30_000

_i64 = ctypes.c_int64
_f64 = ctypes.c_double
_PTR = ctypes.c_void_p
# gfortran passes each CHARACTER argument's length after the others
_LEN = ctypes.c_size_t


class Ilp64Missing(InputError):
    """No ILP64 LAPACK in this Python (numpy < 2 without scipy-openblas64)."""


def _candidates() -> list[str]:
    """Shared libraries that may hold an ILP64 OpenBLAS: the ones loaded (numpy's)."""
    paths = []
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            path = info.get("filepath") or ""
            if info.get("internal_api") == "openblas" and "64" in os.path.basename(path):
                paths.append(path)
    except Exception:  # pragma: no cover - threadpoolctl is a dependency
        pass
    try:  # PyPI's scipy-openblas64, when installed
        import scipy_openblas64  # type: ignore[import-not-found]

        paths.append(scipy_openblas64.get_library_path())  # pragma: no cover
    except Exception:
        pass
    return paths


class _Lib:
    def __init__(self, lib: ctypes.CDLL, path: str, pattern: str, bits: int = 64) -> None:
        self.lib, self.path, self.pattern = lib, path, pattern
        self.int = ctypes.c_int64 if bits == 64 else ctypes.c_int32
        self.np_int = np.int64 if bits == 64 else np.int32

    def fn(self, name: str) -> Any:
        return getattr(self.lib, self.pattern.format(name))


@functools.lru_cache(maxsize=1)
def _library() -> _Lib | None:
    for path in _candidates():
        try:
            lib = ctypes.CDLL(path)
        except OSError:  # pragma: no cover
            continue
        for pattern in ("scipy_{}_64_", "{}_64_", "{}64_"):
            if hasattr(lib, pattern.format("dsyevd")):
                return _Lib(lib, path, pattern)
    return None


@functools.lru_cache(maxsize=1)
def scipy_library() -> _Lib | None:
    """scipy's own OpenBLAS (32-bit integers, ``scipy_dsyevr_`` ...): the
    library behind ``scipy.linalg``, called here through ctypes, which
    releases the GIL during the call (scipy's wrappers hold it), with the
    same routine and arguments, so the same numbers as ``scipy.linalg.eigh``.

    Found first among the files of the scipy wheel (``scipy.libs``), loaded
    without importing scipy (~0.15 s that the command line then spends
    beside the decomposition, see :meth:`lmmscan.spectral.Spectral.from_kinship`);
    else (another scipy build) through importing ``scipy.linalg`` and the
    libraries it loads."""
    lib = _first_scipy_lib(_scipy_wheel_openblas())
    if lib is not None:
        return lib
    import scipy.linalg  # noqa: F401 - loads the library

    try:
        from threadpoolctl import threadpool_info

        infos = threadpool_info()
    except Exception:  # pragma: no cover - threadpoolctl is a dependency
        return None
    paths = [
        info.get("filepath") or ""
        for info in infos
        if info.get("internal_api") == "openblas"
        and "scipy_openblas" in (info.get("filepath") or "")
        and "64" not in os.path.basename(info.get("filepath") or "").replace("x86_64", "")
    ]
    return _first_scipy_lib(paths)


def _first_scipy_lib(paths: list[str]) -> _Lib | None:
    """The first of ``paths`` that loads and has scipy's 32-bit LAPACK names."""
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:  # pragma: no cover
            continue
        if hasattr(lib, "scipy_dsyevr_"):
            return _Lib(lib, path, "scipy_{}_", bits=32)
    return None


def _scipy_wheel_openblas() -> list[str]:
    """The 32-bit OpenBLAS that scipy's wheel carries (``scipy.libs/libscipy_openblas-*``),
    found from scipy's install directory without importing it."""
    import glob
    import importlib.util

    try:
        spec = importlib.util.find_spec("scipy")
    except (ImportError, ValueError):  # pragma: no cover
        return []
    if spec is None or spec.origin is None:  # pragma: no cover
        return []
    libs = os.path.join(os.path.dirname(os.path.dirname(spec.origin)), "scipy.libs")
    found = glob.glob(os.path.join(libs, "libscipy_openblas-*.so*"))
    # resolved, as threadpoolctl records a library's path (serial_library selects by it)
    return sorted(os.path.realpath(p) for p in found if "openblas64" not in os.path.basename(p))


def available() -> bool:
    return _library() is not None


def library_path() -> str | None:
    lib = _library()
    return None if lib is None else lib.path


def _lib() -> _Lib:
    lib = _library()
    if lib is None:
        raise Ilp64Missing(
            "an n x n problem this large needs a LAPACK with 64-bit integers: install "
            "numpy >= 2 (pip install -U numpy) or scipy-openblas64"
        )
    return lib


def _ptr(a: np.ndarray) -> int:
    return int(a.ctypes.data)


def _fortran(a: np.ndarray, name: str) -> None:
    if a.dtype != np.float64 or not a.flags.f_contiguous or not a.flags.writeable:
        raise InputError(f"{name} must be a writeable Fortran-ordered float64 array")


def _ref(x: Any) -> Any:
    return ctypes.byref(x)


# LAPACK workspaces kept between calls, per thread (see keep_workspaces)
_kept = threading.local()


def keep_workspaces() -> None:
    """From now on this thread keeps its eigensolver workspace for its next call.

    ``dsyevd``'s workspace is 2n^2 doubles (``dstedc``'s n^2 reuses it;
    ``dsytrd``'s n x NB is kept beside): fresh memory each time, whose first
    touch costs page faults (0.02-0.08 s at n = 1,410 here, 7-25% of the
    decomposition).  A thread that decomposes one kinship after another
    (LOCO's workers) calls this once; the arrays go when the thread ends.
    The same sizes are passed to LAPACK, so the results are unchanged.
    """
    _kept.buffers = getattr(_kept, "buffers", {})


def _workspace(name: str, size: int, dtype: Any) -> np.ndarray:
    """A buffer of ``size`` elements: kept from this thread's last call when
    the thread keeps workspaces (:func:`keep_workspaces`), otherwise new."""
    buffers = getattr(_kept, "buffers", None)
    if buffers is None:
        return np.empty(size, dtype=dtype)
    buf = buffers.get(name)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = buffers[name] = np.empty(size, dtype=dtype)
    return buf[:size]


def syevd(A: np.ndarray, lib: _Lib | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of the symmetric A (lower
    triangle), by ``dsyevd``; the eigenvectors overwrite A, which is returned.
    ``lib``: another LAPACK (:func:`scipy_library`); default the ILP64 one."""
    _fortran(A, "A")
    lib = lib or _lib()
    I = lib.int  # noqa: E741 - LAPACK's INTEGER
    n = A.shape[0]
    f = lib.fn("dsyevd")
    w = np.empty(n)
    info, lwork, liwork = I(0), I(-1), I(-1)
    work_q, iwork_q = np.empty(1), np.empty(1, dtype=lib.np_int)
    args = (_ref(I(n)), _PTR(_ptr(A)), _ref(I(max(1, n))), _PTR(_ptr(w)))
    f(b"V", b"L", *args, _PTR(_ptr(work_q)), _ref(lwork), _PTR(_ptr(iwork_q)),
      _ref(liwork), _ref(info), _LEN(1), _LEN(1))  # fmt: skip
    _check(info, "dsyevd")
    work = _workspace("eigen work", int(work_q[0]), np.float64)
    iwork = _workspace("eigen iwork", int(iwork_q[0]), lib.np_int)
    f(b"V", b"L", *args, _PTR(_ptr(work)), _ref(I(work.size)), _PTR(_ptr(iwork)),
      _ref(I(iwork.size)), _ref(info), _LEN(1), _LEN(1))  # fmt: skip
    _check(info, "dsyevd")
    return w, A


# scipy's dgesdd takes 32-bit integers, and its workspace (3k^2 + 7k doubles
# and more for a k-column factor) wraps past them from k = 26,755: scipy then
# passes the wrapped size and LAPACK's own check, computed alike, lets it
# through (a heap overflow).  From this many columns the ILP64 one is used.
GESDD_ILP64_FROM = 20_000


def gesdd(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, s, VT) of the thin SVD of A (m, n), m >= n, by ``dgesdd`` (JOBZ
    'S') with 64-bit integers; A (Fortran-ordered float64) is destroyed.  U
    (m, n) and VT (n, n) are new Fortran arrays, s descending."""
    _fortran(A, "A")
    m, n = A.shape
    if m < n:
        raise InputError(f"gesdd needs at least as many rows as columns, got {A.shape}")
    f = _lib().fn("dgesdd")
    s = np.empty(n)
    U = np.empty((m, n), order="F")
    VT = np.empty((n, n), order="F")
    iwork = np.empty(8 * max(1, n), dtype=np.int64)
    info = _i64(0)
    work_q = np.empty(1)
    lda, ldv = _ref(_i64(max(1, m))), _ref(_i64(max(1, n)))
    args = (_ref(_i64(m)), _ref(_i64(n)), _PTR(_ptr(A)), lda, _PTR(_ptr(s)), _PTR(_ptr(U)), lda,
            _PTR(_ptr(VT)), ldv)  # fmt: skip
    f(b"S", *args, _PTR(_ptr(work_q)), _ref(_i64(-1)), _PTR(_ptr(iwork)), _ref(info), _LEN(1))
    _check(info, "dgesdd")
    work = np.empty(int(work_q[0]))
    f(b"S", *args, _PTR(_ptr(work)), _ref(_i64(work.size)), _PTR(_ptr(iwork)), _ref(info),
      _LEN(1))  # fmt: skip
    _check(info, "dgesdd")
    return U, s, VT


def syevd_workspace(n: int) -> tuple[int, int]:
    """(LWORK, LIWORK) that ``dsyevd`` asks for at order n (a workspace query:
    no matrix is touched).  Past n ~ 32,700, LWORK = 1 + 6n + 2n^2 exceeds
    what a 32-bit integer holds."""
    f = _lib().fn("dsyevd")
    dummy, w = np.zeros(1), np.zeros(1)
    work_q, iwork_q = np.zeros(1), np.zeros(1, dtype=np.int64)
    info = _i64(0)
    f(b"V", b"L", _ref(_i64(n)), _PTR(_ptr(dummy)), _ref(_i64(max(1, n))), _PTR(_ptr(w)),
      _PTR(_ptr(work_q)), _ref(_i64(-1)), _PTR(_ptr(iwork_q)), _ref(_i64(-1)), _ref(info),
      _LEN(1), _LEN(1))  # fmt: skip
    _check(info, "dsyevd")
    return int(work_q[0]), int(iwork_q[0])


def syevr(A: np.ndarray, lib: _Lib | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors of the symmetric A (lower
    triangle) by ``dsyevr`` (all of them, abstol 0 as scipy passes); A is
    destroyed, the eigenvectors are a new (n, n) Fortran array.  ``lib``:
    another LAPACK (:func:`scipy_library`); default the ILP64 one."""
    _fortran(A, "A")
    lib = lib or _lib()
    I = lib.int  # noqa: E741 - LAPACK's INTEGER
    n = A.shape[0]
    f = lib.fn("dsyevr")
    w = np.empty(n)
    Z = np.empty((n, n), order="F")
    isuppz = np.empty(2 * max(1, n), dtype=lib.np_int)
    m, info = I(0), I(0)
    zero, izero = _f64(0.0), I(0)
    head = (_ref(I(n)), _PTR(_ptr(A)), _ref(I(max(1, n))), _ref(zero), _ref(zero),
            _ref(izero), _ref(izero), _ref(zero), _ref(m), _PTR(_ptr(w)), _PTR(_ptr(Z)),
            _ref(I(max(1, n))), _PTR(_ptr(isuppz)))  # fmt: skip
    work_q, iwork_q = np.empty(1), np.empty(1, dtype=lib.np_int)
    f(b"V", b"A", b"L", *head, _PTR(_ptr(work_q)), _ref(I(-1)), _PTR(_ptr(iwork_q)),
      _ref(I(-1)), _ref(info), _LEN(1), _LEN(1), _LEN(1))  # fmt: skip
    _check(info, "dsyevr")
    work = np.empty(int(work_q[0]))
    iwork = np.empty(int(iwork_q[0]), dtype=lib.np_int)
    f(b"V", b"A", b"L", *head, _PTR(_ptr(work)), _ref(I(work.size)), _PTR(_ptr(iwork)),
      _ref(I(iwork.size)), _ref(info), _LEN(1), _LEN(1), _LEN(1))  # fmt: skip
    _check(info, "dsyevr")
    return w, Z


# LAPACK's dormqr/dormql: the block reflector T of NBMAX = 64 columns, LDT = 65
_ORM_TSIZE = 65 * 64


def sytrd(A: np.ndarray, lib: _Lib | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(d, e, tau): ``dsytrd``'s reduction of the symmetric A (lower triangle)
    to the tridiagonal T = Q' A Q, T's diagonal d and subdiagonal e; Q's
    Householder vectors overwrite A below its subdiagonal, their scalars
    in ``tau``.  The call ``dsyevd`` makes first (an optimal workspace:
    the blocked reduction), so the same T.  ``lib``: as :func:`syevd`."""
    _fortran(A, "A")
    lib = lib or _lib()
    I = lib.int  # noqa: E741 - LAPACK's INTEGER
    n = A.shape[0]
    f = lib.fn("dsytrd")
    d, e, tau = np.empty(n), np.empty(max(1, n - 1)), np.empty(max(1, n - 1))
    info, work_q = I(0), np.empty(1)
    args = (b"L", _ref(I(n)), _PTR(_ptr(A)), _ref(I(max(1, n))), _PTR(_ptr(d)),
            _PTR(_ptr(e)), _PTR(_ptr(tau)))  # fmt: skip
    f(*args, _PTR(_ptr(work_q)), _ref(I(-1)), _ref(info), _LEN(1))
    _check(info, "dsytrd")
    work = _workspace("dsytrd work", max(1, int(work_q[0])), np.float64)  # n x NB
    f(*args, _PTR(_ptr(work)), _ref(I(work.size)), _ref(info), _LEN(1))
    _check(info, "dsytrd")
    return d, e, tau


def stedc(d: np.ndarray, e: np.ndarray, lib: _Lib | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(eigenvalues, V): the tridiagonal T (diagonal d, subdiagonal e) =
    V diag(eigenvalues) V' by ``dstedc`` (divide and conquer, ``COMPZ='I'``,
    as ``dsyevd`` calls it); the eigenvalues overwrite d (ascending), V is a
    new (n, n) Fortran array.  ``lib``: as :func:`syevd`."""
    lib = lib or _lib()
    I = lib.int  # noqa: E741 - LAPACK's INTEGER
    n = d.size
    if d.dtype != np.float64 or e.dtype != np.float64 or e.size < n - 1:
        raise InputError("stedc needs d (n,) and e (n - 1,) in float64")
    f = lib.fn("dstedc")
    V = np.empty((n, n), order="F")
    info, work_q, iwork_q = I(0), np.empty(1), np.empty(1, dtype=lib.np_int)
    args = (b"I", _ref(I(n)), _PTR(_ptr(d)), _PTR(_ptr(e)), _PTR(_ptr(V)), _ref(I(max(1, n))))
    f(*args, _PTR(_ptr(work_q)), _ref(I(-1)), _PTR(_ptr(iwork_q)), _ref(I(-1)), _ref(info),
      _LEN(1))  # fmt: skip
    _check(info, "dstedc")
    # dsyevd's buffers (stedc's are smaller): a worker that decomposes both
    # ways keeps one of each
    work = _workspace("eigen work", max(1, int(work_q[0])), np.float64)
    iwork = _workspace("eigen iwork", max(1, int(iwork_q[0])), lib.np_int)
    f(*args, _PTR(_ptr(work)), _ref(I(work.size)), _PTR(_ptr(iwork)), _ref(I(iwork.size)),
      _ref(info), _LEN(1))  # fmt: skip
    _check(info, "dstedc")
    return d, V


def ormtr(
    A: np.ndarray, tau: np.ndarray, C: np.ndarray, *, transpose: bool, lib: _Lib | None = None
) -> np.ndarray:
    """C <- Q' C (``transpose``) or Q C, in place, for the Q whose Householder
    vectors :func:`sytrd` left in A (lower) and ``tau``; C (n, m) Fortran
    order.  ``lib``: as :func:`syevd`."""
    _fortran(C, "C")
    n, m = C.shape
    if not (A.flags.f_contiguous and A.dtype == np.float64 and A.shape == (n, n)):
        raise InputError(f"ormtr needs the (n, n) reflectors of C's {n} rows, got {A.shape}")
    if tau.dtype != np.float64 or tau.size < n - 1:
        raise InputError("ormtr needs n - 1 scalars tau")
    lib = lib or _lib()
    I = lib.int  # noqa: E741 - LAPACK's INTEGER
    if m == 0 or n == 0:
        return C
    f = lib.fn("dormtr")
    info, work_q = I(0), np.empty(1)
    args = (b"L", b"L", b"T" if transpose else b"N", _ref(I(n)), _ref(I(m)), _PTR(_ptr(A)),
            _ref(I(max(1, n))), _PTR(_ptr(tau)), _PTR(_ptr(C)), _ref(I(max(1, n))))  # fmt: skip
    f(*args, _PTR(_ptr(work_q)), _ref(I(-1)), _ref(info), _LEN(1), _LEN(1), _LEN(1))
    _check(info, "dormtr")
    # dormtr's query answers m x NB, but the dormqr it calls takes its blocked
    # path (dlarft + dlarfb) only with room for the block reflector T too
    # (LAPACK's TSIZE, 65 x 64); with less it shrinks NB, and below ~138
    # columns falls back to dorm2r, which writes into the reflectors
    work = np.empty(max(1, int(work_q[0])) + _ORM_TSIZE)
    f(*args, _PTR(_ptr(work)), _ref(I(work.size)), _ref(info), _LEN(1), _LEN(1), _LEN(1))
    _check(info, "dormtr")
    return C


def potrf_lower(A: np.ndarray) -> int:
    """Cholesky factor L (lower triangle of A, in place; the upper triangle is
    zeroed as scipy's ``clean=1`` does).  Returns LAPACK's info."""
    _fortran(A, "A")
    n = A.shape[0]
    info = _i64(0)
    _lib().fn("dpotrf")(b"L", _ref(_i64(n)), _PTR(_ptr(A)), _ref(_i64(max(1, n))),
                        _ref(info), _LEN(1))  # fmt: skip
    if info.value == 0:
        A[np.triu_indices(n, 1)] = 0.0
    return int(info.value)


def trtri_lower(A: np.ndarray) -> int:
    """Inverse of the lower triangular A, in place.  Returns LAPACK's info."""
    _fortran(A, "A")
    n = A.shape[0]
    info = _i64(0)
    _lib().fn("dtrtri")(b"L", b"N", _ref(_i64(n)), _PTR(_ptr(A)), _ref(_i64(max(1, n))),
                        _ref(info), _LEN(1), _LEN(1))  # fmt: skip
    return int(info.value)


def trmm_lower(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """B <- L B for the lower triangular L (n, n) and B (n, k), in place."""
    _fortran(B, "B")
    if L.dtype != np.float64 or not L.flags.f_contiguous:
        raise InputError("L must be a Fortran-ordered float64 array")
    n, k = B.shape
    _lib().fn("dtrmm")(b"L", b"L", b"N", b"N", _ref(_i64(n)), _ref(_i64(k)), _ref(_f64(1.0)),
                       _PTR(_ptr(L)), _ref(_i64(max(1, L.shape[0]))), _PTR(_ptr(B)),
                       _ref(_i64(max(1, n))), _LEN(1), _LEN(1), _LEN(1), _LEN(1))  # fmt: skip
    return B


# OpenBLAS's threaded dsyrk (0.3.31; scipy's and numpy's builds, the
# SkylakeX kernels) crashes (SIGSEGV in dgemm_otcopy) from n ~ 29,500 on two
# threads, whatever k: from SYRK_PANELS_FROM on, C is updated in column panels
# of SYRK_PANEL, each a dsyrk of its diagonal block and a dgemm of the rest
# of its triangle's part (the same products; other sums' order, so other last
# bits than one dsyrk).  Far below the crash, for other kernels' block sizes.
SYRK_PANELS_FROM = 8192
SYRK_PANEL = 4096


def syrk(C: np.ndarray, A: np.ndarray, *, lower: bool, lib: _Lib | None = None) -> np.ndarray:
    """C <- C + A A' on one triangle of C (n, n), A (n, k): both Fortran order.
    ``lib``: another BLAS (:func:`scipy_library`); default the ILP64 one."""
    _fortran(C, "C")
    if A.dtype != np.float64 or not A.flags.f_contiguous:
        raise InputError("A must be a Fortran-ordered float64 array")
    n, k = A.shape
    if C.shape != (n, n):
        raise InputError(f"C must be {n} x {n}, got {C.shape}")
    if k == 0:
        return C
    lib = lib or _lib()
    I = lib.int  # noqa: E741 - BLAS's INTEGER
    one = _f64(1.0)
    a, c, ld = _ptr(A), _ptr(C), _ref(I(max(1, n)))
    uplo = b"L" if lower else b"U"
    if n < SYRK_PANELS_FROM:
        lib.fn("dsyrk")(uplo, b"N", _ref(I(n)), _ref(I(k)), _ref(one), _PTR(a), ld, _ref(one),
                        _PTR(c), ld, _LEN(1), _LEN(1))  # fmt: skip
        return C
    size = 8  # bytes of a double: element (i, j) is at 8 (i + j n)
    for j0 in range(0, n, SYRK_PANEL):
        j1 = min(n, j0 + SYRK_PANEL)
        w = j1 - j0
        diagonal = _PTR(c + size * (j0 + j0 * n))
        lib.fn("dsyrk")(uplo, b"N", _ref(I(w)), _ref(I(k)), _ref(one), _PTR(a + size * j0), ld,
                        _ref(one), diagonal, ld, _LEN(1), _LEN(1))  # fmt: skip
        r0, r1 = (j1, n) if lower else (0, j0)  # the panel's rows off its diagonal block
        if r1 > r0:
            lib.fn("dgemm")(b"N", b"T", _ref(I(r1 - r0)), _ref(I(w)), _ref(I(k)), _ref(one),
                            _PTR(a + size * r0), ld, _PTR(a + size * j0), ld, _ref(one),
                            _PTR(c + size * (r0 + j0 * n)), ld, _LEN(1), _LEN(1))  # fmt: skip
    return C


def _check(info: Any, name: str) -> None:
    if info.value < 0:
        raise InputError(f"{name}: argument {-info.value} is invalid")
    if info.value > 0:
        raise NumericalError(f"{name} did not converge (info {info.value})")
