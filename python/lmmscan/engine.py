"""The scan engine: every way of scanning (``lmmscan.scan``, LOCO, Dask, the
command line) runs its blocks of SNPs through here.

- :class:`BlockScanner`: filter, impute, rotate (or whiten) and test one
  block against one null model, with the C++ core.
- :class:`ReadAhead`: the next block read on a thread while this one is
  processed.
- :class:`Engine`: the orchestrator.  Phenotypes whose null models share
  one spectral basis (the same analysed individuals and kinship) and the
  same covariates form a group: each block is read once for all groups,
  filtered and rotated (or whitened) once per group, and tested once per
  phenotype.  Each phenotype's tested rows go to a :class:`BlockSink` as
  :class:`TestedBlock` s, in file order; the caller writes tables, keeps a
  DataFrame or checkpoints.  Three ways to run the same blocks: locally in
  lockstep (:meth:`Engine.scan`), on a Dask cluster (``client``: the same
  block function on the workers, each task reading its own slice), or
  leaving one chromosome out (:meth:`Engine.scan_loco`: one kinship,
  decomposition and null fit per chromosome, see :mod:`lmmscan.loco`).
"""

from __future__ import annotations

import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, cast

import numpy as np

from . import _core
from ._errors import InputError, number, one_line
from ._threads import blas_threads, importing_beside, usable_cores
from .filters import UNPLACED, FilterCounts, Scratch, filter_impute
from .genotypes import GenotypeSource, ReadAhead, default_block_size, snp_runs
from .model import LambdaBounds, NullModel, check_varies, fit_null, log_scale_shift
from .pvalues import COLLINEAR_1_MINUS_R2, TEST_COLUMNS, p_values, statistics, untestable
from .samples import analysed_samples, groups_by_samples, r2_basis
from .spectral import (
    DaskLowRankSpectral,
    Spectral,
    Whitening,
    complement_from_products,
    convert,
    rows_product,
)

Test = Literal["wald", "lrt", "score", "all"]
LAMBDA_MODES = ("per-snp", "null")


@dataclass
class ScanReport:
    """What a scan did: SNP counts per filter and seconds per phase."""

    filters: FilterCounts = field(default_factory=FilterCounts)
    seconds: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(["read", "filter", "rotate", "tests"], 0.0)
    )
    # per chromosome (LOCO), without their eigenvectors unless asked for
    null_models: dict[str, NullModel] = field(default_factory=dict)

    def add_seconds(self, seconds: dict[str, float]) -> None:
        for key, value in seconds.items():
            self.seconds[key] = self.seconds.get(key, 0.0) + value


@dataclass(frozen=True)
class ScanOptions:
    """What is tested and which SNPs: the test, GEMMA's filters, the lambda mode."""

    test: Test = "all"
    maf: float | None = 0.01
    miss: float = 0.05
    r2: float = 0.9999
    lambda_mode: str = "per-snp"
    hwe: float = 0.0
    precision: str = "double"

    def __post_init__(self) -> None:
        check_test(self.test, self.lambda_mode)
        check_thresholds(self.maf, self.miss, self.r2, self.hwe)
        check_precision(self.precision)

    @property
    def columns(self) -> list[str]:
        """The tested columns of a block: n_miss, af, then the test's."""
        return ["n_miss", "af", *TEST_COLUMNS[self.test]]

    def scanner(self, null: NullModel, threads: int | None, whiten: bool = False) -> BlockScanner:
        return BlockScanner(
            null,
            self.test,
            maf=self.maf,
            miss=self.miss,
            r2=self.r2,
            hwe=self.hwe,
            threads=threads,
            lambda_mode=self.lambda_mode,
            whiten=whiten,
            precision=self.precision,
        )


PRECISIONS = ("double", "single")


def check_thresholds(maf: object, miss: object, r2: object, hwe: object) -> None:
    """GEMMA's filter thresholds as the command line takes them: miss, r2 and
    hwe from 0 to 1, maf a number (negative: no maf filter) or None; a
    negative miss or r2 dropped every SNP, and NaN none, without a word."""
    for name, value in (("miss", miss), ("r2", r2), ("hwe", hwe)):
        v = number(value)
        if v is None or not 0.0 <= v <= 1.0:
            raise InputError(f"{name} must be a number from 0 to 1, got {value!r}")
    m = number(maf)
    if maf is not None and (m is None or math.isnan(m)):
        raise InputError(f"maf must be a number (negative: no maf filter) or None, got {maf!r}")


def check_test(test: object, lambda_mode: object) -> None:
    """``test`` and ``lambda_mode`` among their choices (a list is unhashable:
    it was a TypeError from the lookup, helper 70)."""
    if not isinstance(test, str) or test not in TEST_COLUMNS:
        raise InputError(f"test must be one of {sorted(TEST_COLUMNS)}, got {test!r}")
    if not isinstance(lambda_mode, str) or lambda_mode not in LAMBDA_MODES:
        raise InputError(f"lambda_mode must be 'per-snp' or 'null', got {lambda_mode!r}")


def check_precision(precision: str) -> None:
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise InputError(f"precision must be 'double' or 'single', got {precision!r}")


def whitening_lambda(null: NullModel, test: str, lambda_mode: str) -> float | None:
    """The one lambda a fixed-lambda scan of ``test`` needs, when a Cholesky
    whitening can replace the eigenvector rotation (a dense kinship, all n
    eigenvectors); None otherwise.  The Wald test is at the null REML lambda,
    the likelihood ratio and score tests at the null ML lambda, so ``"all"``
    needs two unless they coincide."""
    if lambda_mode != "null" or null.complement is not None:
        return None
    if type(null.spectral) is not Spectral or null.spectral.U.shape[1] != null.n_analyzed:
        return None
    reml, ml = null.fit.lambda_remle, null.fit.lambda_mle
    lam = {"wald": reml, "lrt": ml, "score": ml}.get(test, reml if reml == ml else None)
    return lam if lam is not None and np.isfinite(lam) else None


# A block's SNPs are rotated and tested once per distinct vector of imputed
# values when at least 1/64 of them repeat an earlier SNP's (below that,
# moving the distinct ones together costs about what it saves)
_DUPLICATE_SHARE = 64
# a scanner stops looking when this many blocks had too few repeats to move
_SEARCH_FIRST_BLOCKS = 4


def distinct_snps(Xk: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(Xd, inverse): the imputed block Xk (n, k) with every SNP whose values
    are bit for bit those of an earlier SNP left out, and kept SNP j's
    column of Xd (None, and Xk itself, when too few SNPs repeat).  Xk is
    rewritten in place (Xd is a view of it); a C-ordered Xk is not looked
    at (only a Fortran one has each SNP's values together: in-memory arrays
    and the blocks of a scan with several groups of samples are C-ordered).

    With the dense basis (U formed: not a LOCO chromosome's
    :class:`lmmscan.spectral.TridiagonalSpectral`), a SNP's rotated values
    and statistics depend on its own values alone
    (:func:`lmmscan.spectral.rows_product`), so the repeats get the same bits
    as if they were computed."""
    k = Xk.shape[1]
    if k < 2 or not Xk.flags.f_contiguous or not Xk.flags.writeable:
        return Xk, None
    found = _core.distinct_columns(Xk, max(1, k // _DUPLICATE_SHARE), threads)
    if found is None:
        return Xk, None
    d, inverse = found
    return Xk[:, :d], inverse


@dataclass
class Prepared:
    """A filtered, imputed and rotated block (:meth:`BlockScanner._prepare`).

    ``keep``: which of the block's SNPs passed the filters; ``n_miss`` and
    ``af``: of each kept SNP; ``UtX`` (rows) and ``Xk`` (columns): the rotated
    and imputed values, one per distinct kept SNP; ``inverse``: kept SNP j's
    row of UtX (None: one row per kept SNP, in order)."""

    keep: np.ndarray
    n_miss: np.ndarray
    af: np.ndarray
    UtX: np.ndarray
    Xk: np.ndarray
    inverse: np.ndarray | None = None

    def expand(self, cols: dict, stats: dict) -> tuple[dict, dict]:
        """Columns and statistics of UtX's rows as rows of the kept SNPs."""
        if self.inverse is None:
            return cols, stats
        inv = self.inverse
        return {k: v[inv] for k, v in cols.items()}, {k: v[inv] for k, v in stats.items()}


class BlockScanner:
    """Filters, imputes, rotates and tests blocks of SNPs against a null model.

    ``whiten=True`` (fixed lambda, one test; see :func:`whitening_lambda`)
    replaces the rotation U'X by the triangular product L^-1 X with
    L L' = lambda K + I: half the flops of the scan's dominant step, same
    results to rounding.  A whitened block belongs to this scanner's
    phenotype (its lambda); a rotated block can be shared by the scanners of
    phenotypes with the same samples, covariates and kinship.
    """

    def __init__(
        self,
        null: NullModel,
        test: Test = "all",
        *,
        maf: float | None = 0.01,
        miss: float = 0.05,
        r2: float = 0.9999,
        hwe: float = 0.0,
        threads: int | None = None,
        lambda_mode: str = "per-snp",
        whiten: bool = False,
        precision: str = "double",
    ) -> None:
        check_precision(precision)
        self.precision = precision
        self._U32: np.ndarray | None = None  # U in float32, for precision="single"
        check_test(test, lambda_mode)
        self.null = null
        self.test = test
        self.maf, self.miss, self.r2, self.hwe = maf, miss, r2, hwe
        self.threads = threads or usable_cores()
        if self.threads < 1:
            raise InputError(f"threads must be at least 1, got {threads}")
        b = null.bounds
        # y in the units of the null fit (see NullModel.y_scale and fit_y)
        self._y = null.fit_y
        self.whitening: Whitening | None = None
        UtW, Uty, complement = null.fit_rotated
        raw_W = raw_y = None
        lam = whitening_lambda(null, test, lambda_mode) if whiten else None
        if whiten:
            if lam is None or not isinstance(null.spectral, Spectral):
                raise InputError(
                    "whiten=True needs lambda_mode='null', a dense kinship and one test "
                    "lambda (test 'wald', 'lrt' or 'score')"
                )
            self.whitening = Whitening.from_spectral(null.spectral, lam)
            UtW = np.asfortranarray(self.whitening.whiten(null.fit_W))
            Uty = self.whitening.whiten(self._y)
            raw_W, raw_y = null.fit_W, self._y
        self._core = _core.Scanner(
            null.spectral.d,
            UtW,
            Uty,
            null.fit,
            wald=test in ("wald", "all"),
            lrt=test in ("lrt", "all"),
            score=test in ("score", "all"),
            l_min=b.l_min,
            l_max=b.l_max,
            n_region=b.n_region,
            n_total=null.spectral.n_total if complement is not None else 0,
            complement=complement,
            fixed_lambda=lambda_mode == "null",
            raw_W=raw_W,
            raw_y=raw_y,
            whitened_lambda=lam if lam is not None else float("nan"),
        )
        self.df = null.n_analyzed - null.n_covariates - 1
        self._V = np.column_stack([null.fit_W, self._y]) if complement is not None else None
        # single precision with a dense basis: the filter writes the kept SNPs
        # in float32.  Nothing else reads them: no whitening, no complement,
        # and the r2 filter on (without it, the collinearity check reads them
        # in double: a float32 x'x would hide 1 - R2 < 1e-11)
        self._filter_dtype = (
            np.float32
            if precision == "single"
            and self.whitening is None
            and self._V is None
            and isinstance(null.spectral, Spectral)
            and (self._r2_filtered() or null.W.shape[1] == 1)
            else np.float64
        )
        # set by the engine for a source of whole-number calls (.bed, VCF GT)
        self.integer_calls = False
        self._filter_W = r2_basis(null.W)  # the covariates as the r2 filter takes them
        # block buffers reused by _prepare, per thread, freed with the scanner
        self._local = threading.local()
        # blocks searched for repeated SNPs, and those that had enough to move
        self._searched = [0, 0]

    def _scratch(self) -> Scratch:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = Scratch()
        return scratch

    def prepare(
        self, X: np.ndarray, report: ScanReport | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Filter, impute and rotate a block X (analysed samples x SNPs, NaN missing).

        Returns (keep, n_miss, af, UtX) with n_miss and af of the kept SNPs and
        UtX (kept, n) their rotated genotypes.  Phenotypes sharing the analysed
        samples, covariates and kinship can share one prepared block, unless
        the scanner whitens (its block is then L^-1 X, and
        :meth:`test_rotated` also needs the raw block: use :meth:`scan`).
        """
        p = self._prepare(X, report, distinct=False)
        # (float32 in single precision: the tests widen it; callers get float64)
        return p.keep, p.n_miss, p.af, np.asarray(p.UtX, dtype=np.float64)

    def _prepare(self, X: np.ndarray, report: ScanReport | None, distinct: bool = True) -> Prepared:
        """The block filtered, imputed and rotated; its Xk (the imputed kept
        SNPs; float32 in single precision with a dense basis) lives in this
        scanner's scratch buffer for this thread until the next call.
        ``distinct``: SNPs whose imputed values are those of an earlier SNP of
        the block are rotated (and then tested) once (:class:`Prepared`)."""
        keep, n_miss, af, Xk = self.filter(X, report)
        inverse = None
        # only where each SNP's rotation is a function of its values alone: the
        # dense basis and the whitening pad narrow blocks (rows_product); the
        # low-rank and group bases' narrow products take other BLAS kernels
        searched, compacted = self._searched
        # a study whose first blocks have no repeats (dosages, a simulation) has
        # none to find: the search's ~0.3 us per SNP is not spent on the rest
        worth = compacted > 0 or searched < _SEARCH_FIRST_BLOCKS
        # (a TridiagonalSpectral's rotation of a column depends on its block)
        if distinct and worth and type(self.null.spectral) is Spectral:
            t0 = time.perf_counter()
            Xk, inverse = distinct_snps(Xk, self.threads)
            self._searched = [searched + 1, compacted + (inverse is not None)]
            if report is not None:
                report.seconds["filter"] += time.perf_counter() - t0
        t1 = time.perf_counter()
        if self.precision == "single" and self.whitening is None:
            UtX = self._rotate_single(Xk)
        else:
            UtX = (self.whitening or self.null.spectral).rotate_rows(Xk)
        if report is not None:
            report.seconds["rotate"] += time.perf_counter() - t1
        return Prepared(keep, n_miss, af, UtX, Xk, inverse)

    def filter(
        self, X: np.ndarray, report: ScanReport | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """GEMMA's filters and mean imputation of a block X (analysed samples x
        SNPs, NaN missing): (keep, n_miss, af, Xk) with n_miss and af of the
        kept SNPs and Xk (n, kept) imputed (missing set to 2 af; float32 in
        single precision with a dense basis), in this scanner's scratch buffer
        for this thread until the next call."""
        t0 = time.perf_counter()
        keep, n_miss, af, counts, Xk = filter_impute(
            X,
            maf=self.maf,
            miss=self.miss,
            W=self._filter_W,
            r2=self.r2,
            hwe=self.hwe,
            scratch=self._scratch(),
            threads=self.threads,
            dtype=self._filter_dtype,
        )
        idx = np.flatnonzero(keep)
        assert Xk is not None  # filter_impute imputes (and checks the values' scale) by default
        if report is not None:
            report.filters.add(counts)
            report.seconds["filter"] += time.perf_counter() - t0
        return keep, n_miss[idx], af[idx], Xk

    def _rotate_single(self, Xk: np.ndarray) -> np.ndarray:
        """(U' X)' with U and the block in float32 (SGEMM, about twice DGEMM's
        speed; U's float32 copy is made once), returned in float32: the core's
        tests widen each SNP to double (exactly, as astype would) and keep the
        statistics and the lambda search in double."""
        spectral = self.null.spectral
        U = getattr(spectral, "U", None)
        if U is None:  # a group model has no eigenvectors to rotate with
            return spectral.rotate_rows(Xk)
        if self._U32 is None:
            self._U32 = np.asarray(U, dtype=np.float32, order="F" if U.flags.f_contiguous else "C")
        # the filter wrote Xk in float32 for a dense basis; a conversion, ~1/6
        # of the time on one thread, runs on all
        X32 = Xk if Xk.dtype == np.float32 else convert(Xk, np.float32, self.threads)
        return rows_product(X32, self._U32)

    def complement(self, Xk: np.ndarray) -> np.ndarray | None:
        """Each SNP's complement entries (b, c + 2) for the imputed SNPs Xk
        (n, b), when the model has a zero-eigenvalue complement; else None."""
        if self._V is None:
            return None
        return np.ascontiguousarray(self.null.spectral.complement_rows(Xk, self._V))

    def test_rotated(
        self,
        UtX: np.ndarray,
        report: ScanReport | None = None,
        comp: np.ndarray | None = None,
        Xk: np.ndarray | None = None,
    ) -> dict:
        """The test's columns (GEMMA names) for rotated SNPs UtX (b, k).

        ``comp`` (b, c + 2): each SNP's complement entries, needed when the
        model has a zero-eigenvalue complement (group models).  ``Xk``
        (n, b): the imputed SNPs before rotation, needed when the scanner
        whitens.
        """
        cols, _ = self.test_rotated_with_statistics(UtX, report, comp, Xk)
        return cols

    def test_rotated_with_statistics(
        self,
        UtX: np.ndarray,
        report: ScanReport | None = None,
        comp: np.ndarray | None = None,
        Xk: np.ndarray | None = None,
        collinear: np.ndarray | None = None,
    ) -> tuple[dict, dict]:
        """As :meth:`test_rotated`, plus the statistics behind each p-value
        (see :func:`statistics`).  ``collinear``: which SNPs lie in the span of
        the covariates, when Xk is not given (see
        :meth:`collinear_from_products`)."""
        X = None
        if self.whitening is not None:
            if Xk is None:
                raise InputError("a whitening scanner needs the unrotated SNPs (Xk=) of UtX")
            X = np.ascontiguousarray(Xk.T)
        t0 = time.perf_counter()
        # (a signal's handler runs meanwhile: the core asks for it every 50 ms)
        raw = self._core.scan(UtX, comp, self.threads, X)
        if report is not None:
            report.seconds["tests"] += time.perf_counter() - t0
        null = self.null
        s = null.y_scale
        # the statistics in the fit's units (exact); then y's units
        logl_ml = null.loglik_ml - log_scale_shift(s, null.n_analyzed)
        stats = statistics(raw, self.test, logl_ml)
        if s != 1.0:
            raw = _unscale(raw, s, null.n_analyzed, self.df)
        cols = p_values(raw, self.test, self.df, null.loglik_ml, stats, self.threads)
        if Xk is not None:
            collinear = self._collinear(Xk)
        return untestable(cols, stats, self.test, collinear), stats

    def _r2_filtered(self) -> bool:
        """Whether the r2 filter has removed the collinear SNPs already (GEMMA
        runs it with more than one covariate column only)."""
        return (
            self.r2 is not None
            and self.r2 < 1.0 - COLLINEAR_1_MINUS_R2
            and self.null.W.shape[1] > 1
        )

    def _collinear(self, Xk: np.ndarray | None) -> np.ndarray | None:
        """SNPs of Xk (n, b) in the span of the covariates to rounding (see
        pvalues.COLLINEAR_1_MINUS_R2); None when the r2 filter has removed
        them already, when Xk is not given, or when the only covariate is the
        intercept and the genotypes are whole-number calls (a call SNP the
        monomorphic filter kept is far from constant).

        With one covariate column (the intercept) a SNP is collinear when it
        is constant to rounding: dosages of 1 +- 1e-9 got confident p-values
        (GEMMA: NaN).  Summed in double, also over float32 values (single
        precision), whose rounding adds ~1e-15 to 1 - R^2."""
        if Xk is None or self._r2_filtered():
            return None
        if self.null.W.shape[1] == 1:
            if self.integer_calls:
                return None
            w = float(self.null.W[0, 0])  # the one column is constant (the intercept)
            wx = w * Xk.sum(axis=0, dtype=np.float64)  # no float64 copy of a float32 block
            xx = np.einsum("ij,ij->j", Xk, Xk, dtype=np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                resid = 1.0 - wx * wx / (Xk.shape[0] * w * w * xx)
            return ~(resid > COLLINEAR_1_MINUS_R2)
        W = self.null.fit_W
        Q = np.linalg.qr(W)[0]
        proj = Q.T @ Xk
        xx = np.einsum("ij,ij->j", Xk, Xk)
        with np.errstate(invalid="ignore", divide="ignore"):
            resid = 1.0 - np.einsum("ij,ij->j", proj, proj) / xx
        return ~(resid > COLLINEAR_1_MINUS_R2)

    def collinear_from_products(self, XtW: np.ndarray, xx: np.ndarray) -> np.ndarray | None:
        """:meth:`_collinear` from the SNPs' products with the covariates
        (XtW (b, c)) and with themselves (xx (b,)), for a block no process
        holds whole: Q'x = R^-T W'x for W = QR."""
        if self._r2_filtered():
            return None
        import scipy.linalg

        R = np.linalg.qr(self.null.fit_W, mode="r")  # V's covariates
        proj = scipy.linalg.solve_triangular(R, XtW.T, trans="T", lower=False)
        with np.errstate(invalid="ignore", divide="ignore"):
            resid = 1.0 - np.einsum("ij,ij->j", proj, proj) / xx
        return ~(resid > COLLINEAR_1_MINUS_R2)

    def scan_with_statistics(
        self, X: np.ndarray, report: ScanReport | None = None
    ) -> tuple[np.ndarray, dict, dict]:
        """As :meth:`scan`, plus the statistic behind each p-value (see
        :func:`statistics`); handles a zero-eigenvalue complement."""
        p = self._prepare(X, report)
        tested, stats = p.expand(
            *self.test_rotated_with_statistics(p.UtX, report, self.complement(p.Xk), p.Xk)
        )
        return p.keep, {"n_miss": p.n_miss, "af": p.af, **tested}, stats

    def scan(self, X: np.ndarray, report: ScanReport | None = None) -> tuple[np.ndarray, dict]:
        """Test the columns of X (analysed samples x SNPs, NaN missing).

        Returns (keep mask, columns) with columns n_miss, af and the test's.
        """
        keep, cols, _ = self.scan_with_statistics(X, report)
        return keep, cols


def _unscale(raw: np.ndarray, s: float, n: int, df: int) -> np.ndarray:
    """The core's columns for y scaled by s, in y's own units."""
    out = raw.copy()
    col = {name: i for i, name in enumerate(_core.RESULT_COLUMNS)}
    for name in ("beta", "se", "beta_score", "se_score"):
        out[:, col[name]] /= s
    out[:, col["logl_reml"]] += log_scale_shift(s, df)
    out[:, col["logl_mle"]] += log_scale_shift(s, n)
    return out


@dataclass
class TestedBlock:
    """One phenotype's tested SNPs of one block."""

    phenotype: int  # the position of its null model (or phenotype) in the engine call
    index: np.ndarray  # positions of the tested SNPs in the source, ascending
    columns: dict[str, np.ndarray]  # n_miss, af and the test's columns
    statistics: dict[str, np.ndarray]  # the statistic behind each p column
    filters: FilterCounts  # what the filters did to this block's SNPs


class BlockSink(Protocol):
    """Where the engine delivers results."""

    def tested(self, block: TestedBlock) -> None:
        """A phenotype's rows of a block, in file order for that phenotype."""
        ...

    def block_done(self, stop: int) -> None:
        """Every phenotype's rows of the SNPs before ``stop`` are delivered
        (the local lockstep scan only: the point a checkpoint can be taken)."""
        ...


class Collector:
    """A sink that keeps every phenotype's blocks (for DataFrames)."""

    def __init__(self, n_phenotypes: int) -> None:
        self.blocks: list[list[TestedBlock]] = [[] for _ in range(n_phenotypes)]

    def tested(self, block: TestedBlock) -> None:
        self.blocks[block.phenotype].append(block)

    def block_done(self, stop: int) -> None:
        pass

    def merged(self, k: int, columns: list[str]) -> tuple[np.ndarray, dict, dict]:
        """(index, columns, statistics) of phenotype k, every block in file order."""
        blocks = sorted(self.blocks[k], key=lambda b: int(b.index[0]) if b.index.size else -1)
        index = np.concatenate([b.index for b in blocks]) if blocks else np.zeros(0, np.int64)
        cols = {
            name: np.concatenate([b.columns[name] for b in blocks]) if blocks else np.zeros(0)
            for name in columns
        }
        names = blocks[0].statistics if blocks else {}
        stats = {name: np.concatenate([b.statistics[name] for b in blocks]) for name in names}
        return index, cols, stats


@dataclass
class _Group:
    """Phenotypes that share one read, one filter and one rotation of each block."""

    members: list[int]  # positions in the engine call
    mask: np.ndarray  # the analysed samples
    scanners: list[BlockScanner] = field(default_factory=list)
    reports: list[ScanReport] = field(default_factory=list)  # the members' own (tests)
    report: ScanReport = field(default_factory=ScanReport)  # shared: filters, filter, rotate
    rows: np.ndarray | None = None  # the group's rows in a block of the union of samples

    def share(self, read_seconds: float) -> None:
        """Give every member the group's filter counts and the seconds of the
        work done once for all of them (all but the tests)."""
        for report in self.reports:
            report.filters = self.report.filters
            for key, value in self.report.seconds.items():
                if key != "tests":
                    report.seconds[key] = value
            report.seconds["read"] = read_seconds


def _same_rotation(a: NullModel, b: NullModel, dask: bool) -> bool:
    # the filter reads W, each scanner its own fit_W; on Dask the group shares
    # its covariates' products (V), in one basis
    if dask:
        return a.spectral is b.spectral and np.array_equal(a.fit_W, b.fit_W)
    return a.spectral is b.spectral and np.array_equal(a.W, b.W)


class Engine:
    """The one orchestrator of scans (see the module docstring).

    ``threads``: the per-SNP tests' threads (default: the usable cores).
    ``block_size``: SNPs per block (default: about 32 MB of the samples
    read).  ``client``: a ``dask.distributed.Client`` to scan on.
    ``progress(n)``: called with the number of SNPs each finished block
    covers.  Use as a context manager, or call :meth:`close`, so that a read
    in flight is stopped.
    """

    def __init__(
        self,
        source: GenotypeSource,
        options: ScanOptions,
        *,
        threads: int | None = None,
        block_size: int | None = None,
        client: Any = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        for name, value in (("threads", threads), ("block_size", block_size)):
            if value is not None and (number(value, whole=True) or 0) < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        self.source = source
        self.options = options
        self.threads = threads
        self.block_size = block_size
        self.client = client
        self.progress = progress
        self.seconds: dict[str, float] = {}  # the phases of every scan of this engine, once each
        self._reader: ReadAhead | None = None

    def _scanner(self, null: NullModel, whiten: bool = False) -> BlockScanner:
        """A scanner of this engine's options and threads for ``null``, told
        whether the source gives whole-number calls (.bed, VCF GT)."""
        scanner = self.options.scanner(null, self.threads, whiten=whiten)
        scanner.integer_calls = getattr(self.source, "integer_calls", False)
        return scanner

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop a read in flight (its block is dropped)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def block_size_for(self, n_samples: int) -> int:
        return self.block_size or default_block_size(n_samples)

    def prefetch(self, samples: np.ndarray, first: int = 0) -> None:
        """Start reading the first block of ``samples`` (indices) now, so that
        it is read while the caller fits the null models.  A guess: a scan of
        other samples or from another SNP reads its own blocks."""
        if self.client is None and samples.size:
            self.close()
            self._reader = ReadAhead(self.source, self.block_size_for(samples.size), samples, first)

    def _advance(self, n: int) -> None:
        if self.progress is not None:
            self.progress(n)

    # -- phenotype groups

    def _groups(
        self, nulls: Sequence[NullModel], reports: list[ScanReport], whiten: bool
    ) -> list[_Group]:
        groups = self._members(nulls, reports)
        for g in groups:
            for k in g.members:
                t0 = time.perf_counter()
                g.scanners.append(self._scanner(nulls[k], whiten=self._whitens(g, nulls, whiten)))
                if g.scanners[-1].whitening is not None:  # the factorisation, timed as such
                    g.report.add_seconds({"eigen": time.perf_counter() - t0})
        return groups

    def _whitens(self, g: _Group, nulls: Sequence[NullModel], whiten: bool) -> bool:
        """Whether group ``g``'s scanner whitens (one phenotype at a fixed
        lambda, locally) instead of rotating."""
        alone = whiten and len(g.members) == 1 and self.client is None
        lam = whitening_lambda(nulls[g.members[0]], self.options.test, self.options.lambda_mode)
        return alone and lam is not None

    def rotates_in_single_precision(self, nulls: Sequence[NullModel]) -> bool:
        """Whether a scan of ``nulls`` rotates some block through SGEMM, whose
        last bits follow the number of BLAS threads (a whitened scan stays in
        double)."""
        if self.options.precision != "single":
            return False
        groups = self._members(nulls, [ScanReport() for _ in nulls])
        return not all(self._whitens(g, nulls, True) for g in groups)

    def _members(self, nulls: Sequence[NullModel], reports: list[ScanReport]) -> list[_Group]:
        """The groups of null models that share a rotation, without scanners."""
        groups: list[_Group] = []
        for k, null in enumerate(nulls):
            if null.analyzed.shape[0] != self.source.n_samples:
                raise InputError(
                    f"null_model was fitted on {null.analyzed.shape[0]} samples but genotypes "
                    f"have {self.source.n_samples}"
                )
            dask = self.client is not None
            same = (g for g in groups if _same_rotation(nulls[g.members[0]], null, dask))
            group = next(same, None)
            if group is None:
                group = _Group([], null.analyzed)
                groups.append(group)
            group.members.append(k)
            group.reports.append(reports[k])
        return groups

    def _test_block(
        self, g: _Group, X: np.ndarray, positions: np.ndarray | int, sink: BlockSink
    ) -> None:
        """Filter and rotate X (the group's samples x the SNPs at ``positions``,
        or from SNP ``positions`` on) once, then test it for each phenotype of
        the group."""
        part = ScanReport()
        p = g.scanners[0]._prepare(X, part)
        g.report.filters.add(part.filters)
        g.report.add_seconds({key: part.seconds[key] for key in ("filter", "rotate")})
        if isinstance(positions, int):
            index = positions + np.flatnonzero(p.keep)
        else:
            index = positions[p.keep]
        for k, scanner, report in zip(g.members, g.scanners, g.reports, strict=True):
            tested, stats = p.expand(
                *scanner.test_rotated_with_statistics(p.UtX, report, scanner.complement(p.Xk), p.Xk)
            )
            cols = {"n_miss": p.n_miss, "af": p.af, **tested}
            sink.tested(TestedBlock(k, index, cols, stats, part.filters))

    # -- every SNP against fitted null models: locally in lockstep, or on Dask

    def scan(
        self,
        nulls: Sequence[NullModel],
        sink: BlockSink,
        *,
        first: int = 0,
        whiten: bool = True,
    ) -> list[ScanReport]:
        """Test every SNP from ``first`` on against each null model; returns a
        report per null model.  ``whiten``: a group of one phenotype scanned at
        a fixed lambda may whiten instead of rotating (see
        :func:`whitening_lambda`; never on Dask)."""
        if self.client is None and any(isinstance(n.spectral, DaskLowRankSpectral) for n in nulls):
            raise InputError(
                "a low-rank kinship on a Dask cluster scans on that cluster: pass its client="
            )
        # the p-values' scipy.special, loaded here if the decomposition did not
        # load it beside LAPACK: not by the first block's tests while the
        # read-ahead thread runs beside them (an import holds the GIL)
        import scipy.special  # noqa: F401

        reports = [ScanReport() for _ in nulls]
        groups = self._groups(nulls, reports, whiten)
        if self.client is not None:
            if first:
                raise InputError("a Dask scan starts at the first SNP")
            read = self._scan_dask(nulls, groups, sink)
        else:
            read = self._scan_local(groups, sink, first)
        for g in groups:
            g.share(read)
        self._add_seconds(groups, {"read": read})
        return reports

    def _add_seconds(self, groups: list[_Group], extra: dict[str, float]) -> None:
        """The run's phases, each counted once: a group's shared work once, its
        phenotypes' tests and fits each."""
        totals = ScanReport(seconds=dict(extra))
        for g in groups:
            totals.add_seconds(g.report.seconds)
            for report in g.reports:
                totals.add_seconds(
                    {key: report.seconds.get(key, 0.0) for key in ("tests", "null_fit")}
                )
        for key, value in totals.seconds.items():
            self.seconds[key] = self.seconds.get(key, 0.0) + value

    def _scan_local(self, groups: list[_Group], sink: BlockSink, first: int) -> float:
        """One read of the union of the groups' samples per block; returns the
        seconds spent waiting for blocks."""
        union = np.zeros(self.source.n_samples, dtype=bool)
        for g in groups:
            union |= g.mask
        samples = np.flatnonzero(union)
        if len(groups) > 1:
            position = np.full(self.source.n_samples, -1)
            position[samples] = np.arange(samples.size)
            for g in groups:
                g.rows = position[g.mask]
        reader = ReadAhead.reuse(
            self._reader, self.source, self.block_size_for(samples.size), samples, first
        )
        self._reader = None
        seconds = {"read": 0.0}
        try:
            for start, stop, X in reader.blocks(seconds):
                for g in groups:
                    self._test_block(g, X if g.rows is None else X[g.rows], start, sink)
                sink.block_done(stop)
                self._advance(stop - start)
        finally:
            reader.close()
        return seconds["read"]

    def _scan_dask(
        self, nulls: Sequence[NullModel], groups: list[_Group], sink: BlockSink
    ) -> float:
        """Each group's SNPs in slices on the cluster: the null models go to
        every worker once, each task reads its own slice (see
        :mod:`lmmscan.distributed`)."""
        from . import distributed

        read = 0.0
        for g in groups:
            shared = _Shared(
                token=uuid.uuid4().hex,
                # pybind11 objects do not pickle: the workers refit (see _Shared)
                nulls=[replace(nulls[k], fit=cast(Any, None)) for k in g.members],
                lambdas=[(nulls[k].fit.lambda_remle, nulls[k].fit.lambda_mle) for k in g.members],
                options=self.options,
            )
            spectral = nulls[g.members[0]].spectral
            if isinstance(spectral, DaskLowRankSpectral):
                # U is on the cluster in chunks of samples: each slice is
                # filtered once, multiplied chunk by chunk where U's rows are,
                # then tested (see lmmscan.distributed.map_sharded_slices)
                rows = np.flatnonzero(g.mask)
                V = np.column_stack([g.scanners[0].null.fit_W] + [s._y for s in g.scanners])
                slices = distributed.map_sharded_slices(
                    self.client,
                    distributed.ShardedTasks(_filter_slice, _slice_products, _test_sharded),
                    shared,
                    self.source,
                    spectral.U,
                    rows,
                    V,
                    self.block_size_for(max(spectral.row_chunks)),
                )
            else:
                block = self.block_size_for(int(g.mask.sum()))
                slices = distributed.map_slices(
                    self.client, _scan_slice, shared, self.source, block
                )
            for start, (keep, tested, part) in slices:
                index = start + np.flatnonzero(keep)
                for k, (cols, stats), report, seconds in zip(
                    g.members, tested, g.reports, part.tests, strict=True
                ):
                    report.add_seconds({"tests": seconds})
                    sink.tested(TestedBlock(k, index, cols, stats, part.report.filters))
                g.report.filters.add(part.report.filters)
                g.report.add_seconds(
                    {key: part.report.seconds[key] for key in ("filter", "rotate")}
                )
                read += part.report.seconds["read"]
                self._advance(keep.size)
        return read

    # -- leave one chromosome out

    def scan_loco(
        self,
        phenotypes: Sequence[tuple[np.ndarray, np.ndarray | None]],
        sink: BlockSink,
        *,
        method: str = "centered",
        bounds: LambdaBounds | None = None,
        chromosomes: Sequence[str] | None = None,
        memory_limit: int | None = None,
        kinship_source: GenotypeSource | None = None,
        keep_eigenvectors: bool = False,
        factors: bool | None = None,
    ) -> list[ScanReport]:
        """Each chromosome's SNPs tested against a kinship of the others, for
        each phenotype ``(y, covariates)`` (see :mod:`lmmscan.loco`).  The
        phenotypes with the same analysed samples share the kinship pass, the
        decompositions, and each block's read and rotation.  Every
        chromosome's null model goes to the report's ``null_models``, with
        its eigenvalues but not its n x n eigenvectors
        (:meth:`NullModel.without_eigenvectors`: one such matrix per
        chromosome would stay in memory to the end, where the memory plan
        counts those of the chromosomes in flight) unless
        ``keep_eigenvectors``.
        ``chromosomes`` restricts the tests (every kinship still uses all
        the other chromosomes).  ``kinship_source``: the SNPs the kinships
        come from (GEMMA's -ksnps; default the scanned source), matched to
        the scanned SNPs by chromosome name.  ``factors``: whether a
        chromosome with few SNPs may keep its decomposition as two factors
        (:class:`lmmscan.spectral.TridiagonalSpectral`): True where the
        caller's memory plan counted them, False never, None where the memory
        available has room (asked when the decompositions start)."""
        from . import _lapack64, loco

        if self.client is not None:
            raise InputError("LOCO does not run on a Dask client yet")
        if kinship_source is self.source:
            kinship_source = None
        masks, Ws = [], []
        for k, (y, cov) in enumerate(phenotypes):
            name = f"phenotype {k + 1}" if len(phenotypes) > 1 else ""
            try:
                mask, y_an, W, _, _ = analysed_samples(y, cov)
            except InputError as exc:
                if not name:
                    raise
                raise InputError(f"{name}: {exc}") from None
            # before the kinship pass, not after it: its fit would refuse y
            check_varies(y_an, name, W)
            masks.append(mask)
            Ws.append(W)
        reports = [ScanReport() for _ in phenotypes]
        order = loco.FileOrder(sink)
        for members in groups_by_samples(masks):
            mask = masks[members[0]]
            g = _Group(members, mask, reports=[reports[k] for k in members])
            # the p-values' scipy.special (as in scan()) is imported beside the
            # first kinship pass, whose syrk releases the GIL: not after it, on
            # one core.  The syrk's library is found first, in case finding it
            # means importing scipy.linalg (another scipy build).
            _lapack64.scipy_library()
            with importing_beside("scipy.special"):
                passes = loco.KinshipPasses(
                    kinship_source or self.source,
                    mask,
                    Ws[members[0]],
                    method,
                    self.options,
                    self.block_size,
                    g.report,
                    memory_limit=memory_limit,
                )
            wanted = passes.tested(chromosomes)
            tested = loco.tested_positions(self.source, wanted, passes.chroms, kinship_source)
            wanted = [c for c in wanted if tested[c.name].index.size]
            order.expect(members, [tested[c.name] for c in wanted])
            samples = np.flatnonzero(mask)
            block = self.block_size_for(self.source.n_samples)
            workers = self.threads or usable_cores()
            # each chromosome's SNPs, rotated through the factors of its
            # decomposition where they are few; not in single precision, whose
            # float32 product needs the eigenvectors themselves
            columns = None
            if self.options.precision == "double" and factors is not False:
                columns = {c.name: int(tested[c.name].index.size) for c in wanted}
            for chrom, spectral, busy in passes.spectra(
                wanted, workers, columns, planned=factors is True
            ):
                for k, report in zip(members, g.reports, strict=True):
                    y, cov = phenotypes[k]
                    t0 = time.perf_counter()
                    # one BLAS thread: the next decompositions run meanwhile, and
                    # OpenBLAS's threaded products then vary in their last bits
                    with blas_threads(1):
                        null = fit_null(y, cov, spectral=spectral, bounds=bounds)
                    report.add_seconds({"null_fit": time.perf_counter() - t0})
                    kept = null if keep_eigenvectors else null.without_eigenvectors()
                    report.null_models[chrom.name] = kept
                    g.scanners.append(self._scanner(null))
                del spectral
                # while later chromosomes are decomposed beside it, the rotation
                # takes one BLAS thread: OpenBLAS's threads spin while they wait
                # for each other, which with the cores shared cost ~5% of a
                # LOCO run (OpenBLAS divides a product's rows and columns among
                # its threads, not its sums: mouse_hs1940's table is the same)
                with blas_threads(1 if busy else None):
                    for start, stop, pos in snp_runs(tested[chrom.name].index, block):
                        t0 = time.perf_counter()
                        X = self.source.read(start, stop, samples)[:, pos - start]
                        g.report.add_seconds({"read": time.perf_counter() - t0})
                        self._test_block(g, X, pos, order)
                        self._advance(pos.size)
                # this chromosome's scanners, and with them its eigenvectors, go
                # before the next kinship is formed (the memory plan counts
                # workers + 1 of them at once)
                g.scanners = []
            if chromosomes is None:  # SNPs on no known chromosome: neither kept nor tested
                unplaced = passes.unplaced if kinship_source is None else loco.unplaced(self.source)
                g.report.filters.total += unplaced
                if unplaced:  # counted first, so that the counts add up to the total
                    g.report.filters.removed = {UNPLACED: unplaced, **g.report.filters.removed}
            g.share(g.report.seconds["read"])
            self._add_seconds([g], {})
        order.flush()
        return reports


# -- Dask tasks (run on the workers; lmmscan.distributed sends them)

_CACHE_SIZE = 2
_cache: dict[str, list[BlockScanner]] = {}
_cache_lock = threading.Lock()


@dataclass
class _Shared:
    """What every task of a group needs: the null models without their C++
    fit objects (pybind11 objects do not pickle), rebuilt on the worker from
    the same rotated data, which gives the same lambdas bit for bit (checked)."""

    token: str
    nulls: list[NullModel]  # with fit=None
    lambdas: list[tuple[float, float]]  # each core fit's (lambda_remle, lambda_mle)
    options: ScanOptions


@dataclass
class _SlicePart:
    report: ScanReport  # read, filter and rotate of the slice, its filter counts
    tests: list[float]  # each phenotype's test seconds


def _rebuild(shared: _Shared) -> list[BlockScanner]:
    with _cache_lock:
        hit = _cache.get(shared.token)
    if hit is not None:
        return hit
    scanners = []
    for null, lambdas in zip(shared.nulls, shared.lambdas, strict=True):
        b = null.bounds
        UtW, Uty, complement = null.fit_rotated
        n_total = null.spectral.n_total if complement is not None else 0
        fit = _core.fit_null(
            null.spectral.d, UtW, Uty, b.l_min, b.l_max, b.n_region, n_total, complement
        )
        if not np.array_equal((fit.lambda_remle, fit.lambda_mle), lambdas, equal_nan=True):
            raise RuntimeError(
                "the null model rebuilt on a worker differs from the client's: lambdas "
                f"{(fit.lambda_remle, fit.lambda_mle)} vs {lambdas}"
            )
        scanners.append(shared.options.scanner(replace(null, fit=fit), threads=1))
    with _cache_lock:
        while len(_cache) >= _CACHE_SIZE:
            _cache.pop(next(iter(_cache)))
        _cache[shared.token] = scanners
    return scanners


def _worker_read(source: GenotypeSource, start: int, stop: int, rows: np.ndarray) -> np.ndarray:
    """``source.read`` in a task: a genotype file the worker cannot open
    (moved or deleted once the scan had started, unreadable there) is an
    InputError naming it, as a scan on this machine says it; bed-reader
    raised a bare OSError without the name, pgenlib one with the name as
    bytes."""
    from .distributed import _genotype_file

    try:
        return source.read(start, stop, rows)
    except OSError as exc:
        name = exc.filename if isinstance(exc.filename, (str, bytes)) else None
        path = _genotype_file(source) or (None if name is None else os.fsdecode(name))
        reason = exc.strerror or one_line(exc)
        raise InputError(f"a Dask worker cannot read it: {reason}", path=path) from None


def _scan_slice(shared: _Shared, source: GenotypeSource, start: int, stop: int) -> tuple:
    """One task: read SNPs start..stop-1 of the group's samples and test them
    for each of its phenotypes, on one thread (BLAS included), so that the
    cluster's workers x threads is the number of busy cores."""
    report = ScanReport()
    tested, tests = [], []
    with blas_threads(1):
        scanners = _rebuild(shared)
        t0 = time.perf_counter()
        X = _worker_read(source, start, stop, np.flatnonzero(shared.nulls[0].analyzed))
        report.seconds["read"] += time.perf_counter() - t0
        p = scanners[0]._prepare(X, report)
        for scanner in scanners:
            own = ScanReport()
            cols, stats = p.expand(
                *scanner.test_rotated_with_statistics(p.UtX, own, scanner.complement(p.Xk), p.Xk)
            )
            tested.append(({"n_miss": p.n_miss, "af": p.af, **cols}, stats))
            tests.append(own.seconds["tests"])
    return p.keep, tested, _SlicePart(report, tests)


def _filter_slice(shared: _Shared, source: GenotypeSource, start: int, stop: int) -> tuple:
    """A task of a scan with U on the cluster (DaskLowRankSpectral): read SNPs
    start..stop-1 of the analysed samples and filter them; returns (keep,
    n_miss, af, report) of the kept SNPs.  The imputed values are 2 af."""
    report = ScanReport()
    with blas_threads(1):
        scanners = _rebuild(shared)
        t0 = time.perf_counter()
        X = _worker_read(source, start, stop, np.flatnonzero(shared.nulls[0].analyzed))
        report.seconds["read"] += time.perf_counter() - t0
        keep, n_miss, af, _ = scanners[0].filter(X, report)
    return keep, n_miss, af, report


def _slice_products(
    source: GenotypeSource,
    start: int,
    stop: int,
    rows: np.ndarray,
    filtered: tuple,
    U: np.ndarray,
    V: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float]]:
    """A task on the worker that holds U's rows ``rows`` (samples): the kept
    SNPs of start..stop-1 on those samples, imputed as the filter imputed
    them, and their products with U, with V = [W, y...] and with
    themselves, the parts of the block's rotation that these samples add;
    and the seconds spent reading and multiplying."""
    keep, _, af, _ = filtered
    t0 = time.perf_counter()
    X = _worker_read(source, start, stop, rows)[:, keep]
    t1 = time.perf_counter()
    with blas_threads(1):
        X = np.where(np.isnan(X), 2.0 * af, X)
        UtX, XtV, xx = X.T @ U, X.T @ V, np.einsum("ij,ij->j", X, X)
    return UtX, XtV, xx, (t1 - t0, time.perf_counter() - t1)


def _test_sharded(shared: _Shared, filtered: tuple, *parts: tuple) -> tuple:
    """A task: a slice's products summed over U's chunks (in chunk order),
    then tested for each phenotype of the group, as :func:`_scan_slice`."""
    keep, n_miss, af, report = filtered
    t0 = time.perf_counter()
    UtX, XtV, xx = (part.copy() for part in parts[0][:3])
    for part in parts[1:]:  # in chunk order: the same sums on every run
        UtX += part[0]
        XtV += part[1]
        xx += part[2]
    report.seconds["rotate"] += time.perf_counter() - t0 + sum(part[3][1] for part in parts)
    report.seconds["read"] += sum(part[3][0] for part in parts)
    tested, tests = [], []
    with blas_threads(1):
        scanners = _rebuild(shared)
        c = shared.nulls[0].W.shape[1]
        for k, (scanner, null) in enumerate(zip(scanners, shared.nulls, strict=True)):
            columns = [*range(c), c + k]
            UtV = np.column_stack(null.fit_rotated[:2])
            comp = complement_from_products(UtX, UtV, XtV[:, columns], xx)
            own = ScanReport()
            cols, stats = scanner.test_rotated_with_statistics(
                np.ascontiguousarray(UtX),
                own,
                comp,
                collinear=scanner.collinear_from_products(XtV[:, :c], xx),
            )
            tested.append(({"n_miss": n_miss, "af": af, **cols}, stats))
            tests.append(own.seconds["tests"])
    return keep, tested, _SlicePart(report, tests)
