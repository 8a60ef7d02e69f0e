"""Genome-wide scans: every SNP tested as an extra fixed effect, as GEMMA -lmm."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import scipy.special

from . import _core
from ._errors import InputError
from .filters import FilterCounts, Scratch, filter_impute
from .genotypes import as_source, default_block_size
from .model import NullModel, Spectral, Whitening, analysed_samples, fit_null

Test = Literal["wald", "lrt", "score", "all"]

LEADING = ["chr", "rs", "ps", "n_miss", "allele1", "allele0", "af"]
TEST_COLUMNS: dict[str, list[str]] = {
    "wald": ["beta", "se", "logl_H1", "l_remle", "p_wald"],
    "lrt": ["logl_H1", "l_mle", "p_lrt"],
    "score": ["beta", "se", "p_score"],
    "all": ["beta", "se", "logl_H1", "l_remle", "l_mle", "p_wald", "p_lrt", "p_score"],
}
_RES = {name: i for i, name in enumerate(_core.RESULT_COLUMNS)}


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class ScanReport:
    """What a scan did: SNP counts per filter and seconds per phase."""

    filters: FilterCounts = field(default_factory=FilterCounts)
    seconds: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(["read", "filter", "rotate", "tests"], 0.0)
    )
    null_models: dict[str, NullModel] = field(default_factory=dict)  # per chromosome (LOCO)


def statistics(raw: np.ndarray, test: str, logl_mle_null: float) -> dict[str, np.ndarray]:
    """The test statistics behind the p-values, keyed by p-value column.

    p_wald and p_score: F(1, n - c - 1) statistics; p_lrt: the chi-square(1)
    statistic 2 (logl_H1 - logl_H0).  Output code uses them to print
    -log10 p in log space where p itself underflows.
    """
    col = {name: raw[:, i] for name, i in _RES.items()}
    out: dict[str, np.ndarray] = {}
    if test in ("wald", "all"):
        out["p_wald"] = col["f_wald"]
    if test in ("lrt", "all"):
        out["p_lrt"] = 2.0 * (col["logl_mle"] - logl_mle_null)
    if test in ("score", "all"):
        out["p_score"] = col["f_score"]
    return out


def p_values(
    raw: np.ndarray,
    test: str,
    df: int,
    logl_mle_null: float,
    stats: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """GEMMA's columns from the core's raw results (b, RESULT_COLUMNS); ``stats``:
    :func:`statistics` of the same results, when the caller has them."""
    col = {name: raw[:, i] for name, i in _RES.items()}
    if stats is None:
        stats = statistics(raw, test, logl_mle_null)
    out: dict[str, np.ndarray] = {}
    if test in ("wald", "all"):
        out["beta"], out["se"] = col["beta"], col["se"]
    elif test == "score":
        out["beta"], out["se"] = col["beta_score"], col["se_score"]
    if test == "wald":
        out["logl_H1"] = col["logl_reml"]
    elif test in ("lrt", "all"):
        out["logl_H1"] = col["logl_mle"]
    if test in ("wald", "all"):
        out["l_remle"] = col["l_remle"]
    if test in ("lrt", "all"):
        out["l_mle"] = col["l_mle"]
    for name in ("p_wald", "p_score"):
        if name in stats:
            out[name] = scipy.special.fdtrc(1.0, df, stats[name])
    if "p_lrt" in stats:
        stat = stats["p_lrt"]
        out["p_lrt"] = np.where(stat < 0, 1.0, scipy.special.chdtrc(1.0, np.maximum(stat, 0.0)))
    return {name: out[name] for name in TEST_COLUMNS[test]}


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
        threads: int | None = None,
        lambda_mode: str = "per-snp",
        whiten: bool = False,
    ) -> None:
        if test not in TEST_COLUMNS:
            raise InputError(f"test must be one of {sorted(TEST_COLUMNS)}, got {test!r}")
        if lambda_mode not in ("per-snp", "null"):
            raise InputError(f"lambda_mode must be 'per-snp' or 'null', got {lambda_mode!r}")
        self.null = null
        self.test = test
        self.maf, self.miss, self.r2 = maf, miss, r2
        self.threads = threads or default_threads()
        if self.threads < 1:
            raise InputError(f"threads must be at least 1, got {threads}")
        b = null.bounds
        self.whitening: Whitening | None = None
        UtW, Uty, raw = null.UtW, null.Uty, {}
        if whiten:
            lam = whitening_lambda(null, test, lambda_mode)
            if lam is None:
                raise InputError(
                    "whiten=True needs lambda_mode='null', a dense kinship and one test "
                    "lambda (test 'wald', 'lrt' or 'score')"
                )
            self.whitening = Whitening.from_spectral(null.spectral, lam)
            UtW = np.asfortranarray(self.whitening.whiten(null.W))
            Uty = self.whitening.whiten(null.y)
            raw = dict(raw_W=null.W, raw_y=null.y, whitened_lambda=lam)
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
            n_total=null.spectral.n_total if null.complement is not None else 0,
            complement=null.complement,
            fixed_lambda=lambda_mode == "null",
            **raw,
        )
        self.df = null.n_analyzed - null.n_covariates - 1
        self._V = np.column_stack([null.W, null.y]) if null.complement is not None else None
        # block buffers reused by _prepare, per thread, freed with the scanner
        self._local = threading.local()

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
        keep, n_miss, af, UtX, _ = self._prepare(X, report)
        return keep, n_miss, af, UtX

    def _prepare(self, X: np.ndarray, report: ScanReport | None):
        """(keep, n_miss, af, UtX, Xk); Xk (the imputed kept SNPs) lives in this
        scanner's scratch buffer for this thread until the next call."""
        t0 = time.perf_counter()
        keep, n_miss, af, counts, Xk = filter_impute(
            X,
            maf=self.maf,
            miss=self.miss,
            W=self.null.W,
            r2=self.r2,
            scratch=self._scratch(),
            threads=self.threads,
        )
        t1 = time.perf_counter()
        idx = np.flatnonzero(keep)
        UtX = (self.whitening or self.null.spectral).rotate_rows(Xk)
        if report is not None:
            report.filters.add(counts)
            report.seconds["filter"] += t1 - t0
            report.seconds["rotate"] += time.perf_counter() - t1
        return keep, n_miss[idx], af[idx], UtX, Xk

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
    ) -> tuple[dict, dict]:
        """As :meth:`test_rotated`, plus the statistics behind each p-value
        (see :func:`statistics`)."""
        X = None
        if self.whitening is not None:
            if Xk is None:
                raise InputError("a whitening scanner needs the unrotated SNPs (Xk=) of UtX")
            X = np.ascontiguousarray(Xk.T)
        t0 = time.perf_counter()
        raw = self._core.scan(UtX, comp, self.threads, X)
        if report is not None:
            report.seconds["tests"] += time.perf_counter() - t0
        stats = statistics(raw, self.test, self.null.loglik_ml)
        return p_values(raw, self.test, self.df, self.null.loglik_ml, stats), stats

    def scan_with_statistics(
        self, X: np.ndarray, report: ScanReport | None = None
    ) -> tuple[np.ndarray, dict, dict]:
        """As :meth:`scan`, plus the statistic behind each p-value (see
        :func:`statistics`); handles a zero-eigenvalue complement."""
        keep, n_miss, af, UtX, Xk = self._prepare(X, report)
        comp = None
        if self._V is not None:
            comp = np.ascontiguousarray(self.null.spectral.complement_rows(Xk, self._V))
        tested, stats = self.test_rotated_with_statistics(UtX, report, comp, Xk)
        return keep, {"n_miss": n_miss, "af": af, **tested}, stats

    def scan(self, X: np.ndarray, report: ScanReport | None = None) -> tuple[np.ndarray, dict]:
        """Test the columns of X (analysed samples x SNPs, NaN missing).

        Returns (keep mask, columns) with columns n_miss, af and the test's.
        """
        keep, cols, _ = self.scan_with_statistics(X, report)
        return keep, cols


def scan(
    genotypes: object,
    y: object = None,
    *,
    kinship: object = None,
    covariates: object = None,
    groups: object = None,
    null_model: NullModel | None = None,
    test: Test = "all",
    maf: float | None = 0.01,
    miss: float = 0.05,
    r2: float = 0.9999,
    lambda_mode: str = "per-snp",
    threads: int | None = None,
    block_size: int | None = None,
    report: ScanReport | None = None,
    progress: bool = False,
    loco: bool = False,
    eigen: object = None,
    sample_ids: object = None,
    client: object = None,
) -> pd.DataFrame:
    """Test every SNP as an extra fixed effect in the linear mixed model.

    Parameters
    ----------
    genotypes
        (samples x SNPs) array with NaN for missing, or a source such as
        :func:`lmmscan.read_plink`.  Values are allele counts (GEMMA: the
        .bim column-5 allele); they are not centred.
    y
        Phenotype, one value per sample, NaN for missing.  Not needed when
        ``null_model`` is given.
    kinship, covariates, groups
        As for :func:`lmmscan.fit_null` (a kinship, or group labels for a
        random group intercept); ignored when ``null_model`` is given.
        ``kinship`` may also be a :class:`lmmscan.LowRankKinship` (k SNPs,
        k < n: no n x n matrix is formed, see :mod:`lmmscan.lowrank`).
    null_model
        A fitted :class:`NullModel` to reuse (its samples and eigenvectors).
    test
        ``"wald"`` (GEMMA -lmm 1), ``"lrt"`` (-lmm 2), ``"score"`` (-lmm 3)
        or ``"all"`` (-lmm 4).
    maf, miss, r2
        GEMMA's SNP filters on the analysed samples.
    lambda_mode
        ``"per-snp"`` (GEMMA: lambda re-optimised for every SNP, REML for the
        Wald test and ML for the likelihood ratio) or ``"null"`` (EMMAX /
        FaST-LMM / GCTA style: every SNP tested at the null model's lambda,
        REML for Wald, ML for the LRT; much faster, slightly conservative
        where a SNP has a large effect).
    threads
        Threads for the per-SNP tests (default: the usable cores).
    block_size
        SNPs per block (memory: samples x block_size doubles).
    report
        A :class:`ScanReport` to fill with filter counts and timings.
    loco
        Leave one chromosome out (:mod:`lmmscan.loco`): each chromosome's SNPs
        are tested with a kinship of the other chromosomes, built from
        ``genotypes`` (``kinship`` may name the method, ``"centered"`` by
        default, or ``"standardized"``).  The per-chromosome null models go to
        ``report.null_models``.
    eigen
        A saved eigendecomposition to reuse instead of ``kinship``
        (:class:`lmmscan.Eigendecomposition` or the path of its ``.npz``).
        The analysed samples must be the ones it was made for
        (:class:`InputError` otherwise).
    sample_ids
        One ID per sample, matched against ``eigen``'s (default: the IDs of
        a PLINK source, else the positions "0", "1", ...).
    client
        A ``dask.distributed.Client``: the null model is fitted here, sent
        to every worker once, and each task reads and tests its own slice
        of SNPs (:mod:`lmmscan.distributed`).  The rows are the same as
        without it.

    Returns a DataFrame with GEMMA's columns for ``test``: chr rs ps n_miss
    allele1 allele0 af, then beta se logl_H1 l_remle l_mle p_wald p_lrt
    p_score as the test has them; one row per analysed SNP, in file order.
    """
    source = as_source(genotypes)
    reader = null_seconds = None
    if loco:
        return _scan_loco(
            source,
            y,
            kinship,
            covariates,
            groups,
            null_model,
            eigen,
            client,
            test=test,
            maf=maf,
            miss=miss,
            r2=r2,
            lambda_mode=lambda_mode,
            threads=threads,
            block_size=block_size,
            report=report,
            progress=progress,
        )
    try:
        if null_model is None and (eigen is not None or _is_low_rank(kinship)):
            null_model = _fit_reused(source, y, covariates, kinship, groups, eigen, sample_ids)
        elif eigen is not None:
            raise InputError("give either null_model or eigen, not both")
        if null_model is None:
            if y is None or (kinship is None and groups is None):
                raise InputError("scan needs y and a kinship or groups (or a fitted null_model)")
            if np.asarray(y).shape[0] != source.n_samples:
                raise InputError(
                    f"y has {np.asarray(y).shape[0]} values but genotypes have "
                    f"{source.n_samples} samples"
                )
            if client is None:  # the first block is read while the null model is fitted
                reader = _early_reader(source, y, covariates, block_size)
            t0 = time.perf_counter()
            null_model = fit_null(y, covariates, kinship=kinship, groups=groups)
            null_seconds = time.perf_counter() - t0
        elif null_model.analyzed.shape[0] != source.n_samples:
            raise InputError(
                f"null_model was fitted on {null_model.analyzed.shape[0]} samples but genotypes "
                f"have {source.n_samples}"
            )
        report = report if report is not None else ScanReport()
        if null_seconds is not None:
            report.seconds["null_fit"] = report.seconds.get("null_fit", 0.0) + null_seconds
        scanner = BlockScanner(
            null_model,
            test,
            maf=maf,
            miss=miss,
            r2=r2,
            threads=threads,
            lambda_mode=lambda_mode,
            whiten=client is None and whitening_lambda(null_model, test, lambda_mode) is not None,
        )
        block_size = block_size or default_block_size(null_model.n_analyzed)
        samples = np.flatnonzero(null_model.analyzed)
        if block_size < 1:
            raise InputError(f"block_size must be positive, got {block_size}")
        parts: list[dict] = []
        keeps: list[np.ndarray] = []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=source.n_snps, unit="SNP", unit_scale=True, leave=False)
        if client is not None:
            from .distributed import scan_blocks

            options = dict(test=test, maf=maf, miss=miss, r2=r2, lambda_mode=lambda_mode)
            for keep, cols, _ in scan_blocks(
                client, source, null_model, block_size=block_size, options=options, report=report
            ):
                keeps.append(keep)
                parts.append(cols)
        if client is None:
            reader = ReadAhead.reuse(reader, source, block_size, samples)
            for start, stop, X in reader.blocks(report.seconds):
                keep, cols = scanner.scan(X, report)
                keeps.append(keep)
                parts.append(cols)
                if bar is not None:
                    bar.update(stop - start)
        if bar is not None:
            bar.close()
    finally:
        if reader is not None:
            reader.close()
    keep_all = np.concatenate(keeps) if keeps else np.zeros(0, dtype=bool)
    snps = source.snps.loc[keep_all].reset_index(drop=True)
    table = pd.DataFrame({name: snps[name] for name in ["chr", "rs", "ps"]})
    columns = ["n_miss", "af", *TEST_COLUMNS[test]]
    merged = {
        name: (np.concatenate([p[name] for p in parts]) if parts else np.zeros(0))
        for name in columns
    }
    table["n_miss"] = merged["n_miss"].astype(np.int64)
    table["allele1"] = snps["allele1"]
    table["allele0"] = snps["allele0"]
    table["af"] = merged["af"]
    for name in TEST_COLUMNS[test]:
        table[name] = merged[name]
    return table


class ReadAhead:
    """Blocks of SNPs from SNP ``first`` on, each read on a thread while the
    one before it is processed.

    The first read starts here, so a caller can create the reader before
    other work (the null fit) and find the first block ready.  Reading
    (bed-reader, file parsing) overlaps the filtering, BLAS rotation and C++
    tests of the current block; one read is in flight at a time, in file
    order, so sequential sources stay sequential.
    """

    def __init__(self, source, block_size: int, samples: np.ndarray | None, first: int = 0) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.source, self.block_size, self.samples = source, block_size, samples
        self.first = first
        self._starts = list(range(first, source.n_snps, block_size))
        self._pool = self._pending = None
        if self._starts:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmmscan-read")
            self._pending = self._submit(0)

    @classmethod
    def reuse(
        cls,
        reader: ReadAhead | None,
        source,
        block_size: int,
        samples: np.ndarray | None,
        first: int = 0,
    ) -> ReadAhead:
        """``reader`` if it reads these blocks, else a new reader (``reader``,
        started on a guess that turned out wrong, is closed)."""
        if reader is not None:
            if (
                reader.source is source
                and reader.first == first
                and reader.block_size == block_size
                and np.array_equal(reader.samples, samples)
            ):
                return reader
            reader.close()
        return cls(source, block_size, samples, first)

    def _submit(self, i: int):
        start = self._starts[i]
        return self._pool.submit(
            self.source.read, start, min(self.source.n_snps, start + self.block_size), self.samples
        )

    def blocks(self, seconds: dict):
        """Yield (start, stop, block); ``seconds["read"]`` gets the time spent
        waiting for a block.  Once, then the reader is closed."""
        try:
            for i, start in enumerate(self._starts):
                t0 = time.perf_counter()
                X = self._pending.result()
                seconds["read"] += time.perf_counter() - t0
                self._pending = self._submit(i + 1) if i + 1 < len(self._starts) else None
                yield start, min(self.source.n_snps, start + self.block_size), X
        finally:
            self.close()

    def close(self) -> None:
        """Stop reading (waits for a read in flight; its result is dropped)."""
        if self._pool is not None:
            if self._pending is not None:
                self._pending.cancel()
            self._pool.shutdown(wait=True)
            self._pool = self._pending = None


def _early_reader(source, y, covariates, block_size: int | None) -> ReadAhead | None:
    """A reader of the first blocks, started before the null fit (which the
    first block's read then overlaps), on the samples GEMMA's rule analyses;
    None when that rule rejects the inputs (the fit then says why)."""
    try:
        mask = analysed_samples(y, covariates)[0]
    except (InputError, ValueError):
        return None
    if mask.shape[0] != source.n_samples:
        return None
    n = int(mask.sum())
    size = block_size or default_block_size(n)
    if n == 0 or size < 1:
        return None
    return ReadAhead(source, size, np.flatnonzero(mask))


def _is_low_rank(kinship: object) -> bool:
    from .lowrank import LowRankKinship

    return isinstance(kinship, LowRankKinship)


def _fit_reused(source, y, covariates, kinship, groups, eigen, sample_ids) -> NullModel:
    """The null model from a saved eigendecomposition or a low-rank kinship."""
    from .eigen import Eigendecomposition, load_eigen, sample_ids_of
    from .model import analysed_samples

    if y is None:
        raise InputError("scan needs y to fit the null model")
    if groups is not None or (eigen is not None and kinship is not None):
        raise InputError("give one of kinship, groups or eigen")
    y_arr = np.asarray(y, dtype=np.float64)
    if y_arr.shape[0:1] != (source.n_samples,):
        raise InputError(
            f"y has {y_arr.shape[0] if y_arr.ndim else 0} values but genotypes have "
            f"{source.n_samples} samples"
        )
    mask = analysed_samples(y_arr, covariates)[0]
    if eigen is None:
        if kinship.n_samples != source.n_samples:
            raise InputError(
                f"the low-rank kinship has {kinship.n_samples} samples but genotypes have "
                f"{source.n_samples}"
            )
        return fit_null(y_arr, covariates, spectral=kinship.spectral(mask))
    if not isinstance(eigen, Eigendecomposition):
        eigen = load_eigen(eigen)
    if sample_ids is None:
        ids = sample_ids_of(source)
    else:
        ids = np.asarray(sample_ids).astype(str)
        if ids.shape != (source.n_samples,):
            raise InputError(f"sample_ids must have {source.n_samples} entries, got {ids.shape}")
    return fit_null(y_arr, covariates, spectral=eigen.spectral_for(ids[mask]))


def _scan_loco(
    source, y, kinship, covariates, groups, null_model, eigen, client, *, report, **options
) -> pd.DataFrame:
    from .loco import loco_scan

    if null_model is not None or groups is not None or eigen is not None:
        raise InputError(
            "loco=True builds its own kinships: give y (and covariates), "
            "not null_model, groups or eigen"
        )
    if client is not None:
        raise InputError("loco=True does not run on a Dask client yet")
    if kinship is None:
        kinship = "centered"
    if not isinstance(kinship, str):
        raise InputError(
            "with loco=True, kinship names the method ('centered' or "
            "'standardized'); the kinships come from the genotypes"
        )
    if y is None:
        raise InputError("scan needs y")
    report = report if report is not None else ScanReport()
    return loco_scan(
        source,
        y,
        covariates,
        method=kinship,
        report=report,
        null_models=report.null_models,
        **options,
    )
