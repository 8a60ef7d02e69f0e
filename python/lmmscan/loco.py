"""Leave-one-chromosome-out scans: each chromosome's SNPs tested with a
kinship built from all the other chromosomes.

GEMMA 0.98.5 does this one chromosome per run (``-loco c``: ``-gk`` over the
SNPs of the other chromosomes of the ``-a`` file, then ``-lmm`` testing only
the SNPs of c), reading the genotypes twice per chromosome.  Here the
kinship sums are accumulated once:

    S = sum over kinship SNPs j of z_j z_j',   S_c = the same over chromosome c,
    K_-c = (S - S_c) / (p - p_c)

with z_j GEMMA's kinship column (centred, or standardised, over all samples,
missing set to the mean) restricted to the analysed samples, and p, p_c the
SNP counts.  (GEMMA's K spans every sample, but it is restricted to the
analysed ones and double-centred before use, so the rows of the other
samples never matter.)  The SNPs are those that pass GEMMA's filters on the
analysed samples, as in GEMMA.  Each K_-c is double-centred and decomposed
once, its null model fitted, and chromosome c scanned; the output is one
table in file order.

Reading.  When the per-chromosome sums fit in ``memory_limit`` bytes
(chromosomes x n^2 x 8) they are all kept from the kinship pass, and every
SNP is read twice (kinship pass, test pass), as a GEMMA run without LOCO.
Otherwise only S is kept and each chromosome's S_c is recomputed from its
own SNPs just before its scan (three reads of each SNP, never one read per
chromosome of the whole genome).

SNPs whose chromosome is unknown (``"-9"``, GEMMA's marker for a SNP missing
from the annotation) are neither in any kinship nor tested, as in GEMMA.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg.blas

from ._errors import InputError
from .filters import gemma_filter
from .genotypes import GenotypeSource, as_source, default_block_size
from .lowrank import standardize
from .model import (
    LambdaBounds,
    NullModel,
    Spectral,
    analysed_samples,
    decompose_kinship,
    fit_null,
)

UNKNOWN_CHROMOSOME = "-9"
DEFAULT_MEMORY = 2 << 30


@dataclass
class _Chromosome:
    name: str
    index: np.ndarray  # SNP positions in the source, ascending
    p: int = 0  # kinship SNPs (passing the filters) on it
    S: np.ndarray | None = None  # its kinship sum (n, n), when kept


def chromosome_names(source: GenotypeSource) -> np.ndarray:
    """The chromosome of every SNP as a string ("-9" when unknown)."""
    chrom = source.snps["chr"]
    out = chrom.astype(str).to_numpy().astype(object)
    out[chrom.isna().to_numpy()] = UNKNOWN_CHROMOSOME
    return out


def _chromosomes(names: np.ndarray) -> list[_Chromosome]:
    order = pd.unique(names[names != UNKNOWN_CHROMOSOME])
    if len(order) == 0:
        raise InputError(
            "LOCO needs the chromosome of each SNP, but none is known (for BIMBAM, give "
            "the annotation file with chromosome names)"
        )
    if len(order) < 2:
        raise InputError(f"LOCO needs at least two chromosomes, but every SNP is on {order[0]!r}")
    return [_Chromosome(str(c), np.flatnonzero(names == c)) for c in order]


def _ranges(index: np.ndarray, block_size: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, positions) blocks of consecutive SNPs covering ``index``."""
    i = 0
    while i < index.size:
        start = int(index[i])
        stop = min(start + block_size, int(index[-1]) + 1)
        j = int(np.searchsorted(index, stop, side="left"))
        yield start, stop, index[i:j]
        i = j


def _add_gram(S: np.ndarray, Z: np.ndarray) -> None:
    """S += Z Z' on the upper triangle (BLAS syrk, in place; S Fortran order)."""
    if Z.shape[1] == 0:
        return
    scipy.linalg.blas.dsyrk(
        1.0, np.asfortranarray(Z), beta=1.0, c=S, trans=0, lower=0, overwrite_c=1
    )


def _symmetric(S: np.ndarray) -> np.ndarray:
    upper = np.triu(S)
    return upper + np.triu(upper, 1).T


class _KinshipSums:
    """The kinship pass: S and (optionally) every S_c in one read of the SNPs."""

    def __init__(
        self,
        source,
        mask,
        W,
        chroms,
        names,
        method,
        maf,
        miss,
        r2,
        block_size,
        keep_each: bool,
        report,
    ) -> None:
        self.source, self.mask, self.W = source, mask, W
        self.method, self.maf, self.miss, self.r2 = method, maf, miss, r2
        self.block_size = block_size
        n = int(mask.sum())
        self.S = np.zeros((n, n), order="F")
        self.p = 0
        code = {c.name: i for i, c in enumerate(chroms)}
        self.codes = np.array([code.get(x, -1) for x in names], dtype=np.int64)
        for c in chroms:
            if keep_each:
                c.S = np.zeros((n, n), order="F")
        self.chroms = chroms
        self.report = report
        placed = np.flatnonzero(self.codes >= 0)
        for start, stop, pos in _ranges(placed, block_size):
            Z, kept = self._block(start, stop, pos)
            t0 = time.perf_counter()
            codes = self.codes[kept]
            for i in np.unique(codes):
                chrom = chroms[i]
                sel = codes == i
                chrom.p += int(sel.sum())
                _add_gram(chrom.S if keep_each else self.S, Z[:, sel])
            self._time(t0)
        if keep_each:
            for c in chroms:
                self.S += c.S
        self.p = sum(c.p for c in chroms)

    def _time(self, t0: float) -> None:
        seconds = self.report.seconds
        seconds["kinship"] = seconds.get("kinship", 0.0) + time.perf_counter() - t0

    def _block(self, start: int, stop: int, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Kinship columns (analysed rows) of the SNPs at ``pos`` that pass the filters."""
        t0 = time.perf_counter()
        X = self.source.read(start, stop)[:, pos - start]
        t1 = time.perf_counter()
        keep = gemma_filter(X[self.mask], maf=self.maf, miss=self.miss, W=self.W, r2=self.r2)[0]
        Z = standardize(X[:, keep], self.method)[self.mask]
        self.report.seconds["read"] += t1 - t0
        self._time(t1)
        return Z, pos[keep]

    def chromosome_sum(self, chrom: _Chromosome) -> np.ndarray:
        if chrom.S is not None:
            return chrom.S
        S = np.zeros_like(self.S, order="F")
        for start, stop, pos in _ranges(chrom.index, self.block_size):
            Z, _ = self._block(start, stop, pos)
            t0 = time.perf_counter()
            _add_gram(S, Z)
            self._time(t0)
        return S

    def loco_kinship(self, chrom: _Chromosome) -> np.ndarray:
        p = self.p - chrom.p
        if p <= 0:
            raise InputError(f"no kinship SNP is left when chromosome {chrom.name!r} is left out")
        K = _symmetric(self.S - self.chromosome_sum(chrom))
        K /= p
        if chrom.S is not None:
            chrom.S = None  # free it: it is needed once
        return K


def _decompose(K: np.ndarray) -> Spectral:
    # K is this chromosome's fresh LOCO kinship, held by nothing else
    return decompose_kinship(K, overwrite_kinship=True)


def _spectra(sums: _KinshipSums, chroms: list[_Chromosome], workers: int):
    """(chromosome, spectral, seconds waited) in order, decomposed ``workers``
    at a time on single-threaded BLAS.

    LAPACK's symmetric eigensolvers scale poorly over threads (the
    tridiagonal reduction is memory-bound) and collapse when the cores are
    shared, so independent decompositions side by side, one BLAS thread
    each, use the cores better than one multi-threaded decomposition after
    another.  At most ``workers`` + 1 kinships are in memory at once.  The
    kinships themselves are formed in this thread (they may read genotypes).
    """
    limit = _blas_limit(1) if workers > 1 else contextlib.nullcontext()
    with limit, ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        todo = iter(chroms)

        def submit() -> None:
            chrom = next(todo, None)
            if chrom is not None:
                pending.append((chrom, pool.submit(_decompose, sums.loco_kinship(chrom))))

        for _ in range(workers):
            submit()
        while pending:
            chrom, future = pending.popleft()
            t0 = time.perf_counter()
            spectral = future.result()
            waited = time.perf_counter() - t0
            submit()
            yield chrom, spectral, waited


def _blas_limit(n: int):
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n, user_api="blas")


def loco_scan(
    genotypes: object,
    y: object,
    covariates: object = None,
    *,
    method: str = "centered",
    test: str = "all",
    maf: float | None = 0.01,
    miss: float = 0.05,
    r2: float = 0.9999,
    lambda_mode: str = "per-snp",
    bounds: LambdaBounds | None = None,
    threads: int | None = None,
    block_size: int | None = None,
    memory_limit: int = DEFAULT_MEMORY,
    report=None,
    progress: bool = False,
    null_models: dict[str, NullModel] | None = None,
    chromosomes: list[str] | None = None,
    statistics: dict[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Scan every SNP against a kinship of the other chromosomes (see module doc).

    ``method`` is the kinship (``"centered"``: GEMMA -gk 1; ``"standardized"``:
    -gk 2); the other arguments are those of :func:`lmmscan.scan`.
    ``null_models``, if a dict, receives each chromosome's fitted null model.
    ``statistics``, if a dict, receives the statistic behind each p column,
    row for row (:func:`lmmscan.scan.statistics`; the LRT's uses its own
    chromosome's null model).
    ``chromosomes`` restricts the tests to those chromosomes (GEMMA's
    ``-loco c`` for one); every kinship still uses all the others.
    Returns one table, GEMMA's columns, the tested SNPs in file order.
    """
    from .scan import TEST_COLUMNS, BlockScanner, ScanReport, default_threads

    if method not in ("centered", "standardized"):
        raise InputError(f"method must be 'centered' or 'standardized', got {method!r}")
    source = as_source(genotypes)
    y_arr = np.asarray(y, dtype=np.float64)
    if y_arr.ndim != 1 or y_arr.shape[0] != source.n_samples:
        raise InputError(f"y has shape {y_arr.shape} but genotypes have {source.n_samples} samples")
    mask, _, W, _, _ = analysed_samples(y_arr, covariates)
    report = report if report is not None else ScanReport()
    names = chromosome_names(source)
    chroms = _chromosomes(names)
    n = int(mask.sum())
    block_size = block_size or default_block_size(source.n_samples)
    if block_size < 1:
        raise InputError(f"block_size must be positive, got {block_size}")
    keep_each = len(chroms) * n * n * 8 <= memory_limit
    sums = _KinshipSums(
        source, mask, W, chroms, names, method, maf, miss, r2, block_size, keep_each, report
    )
    if chromosomes is not None:
        wanted = [str(c) for c in chromosomes]
        unknown = sorted(set(wanted) - {c.name for c in chroms})
        if unknown:
            raise InputError(f"no SNP on chromosome(s) {unknown}")
        chroms = [c for c in chroms if c.name in set(wanted)]
    if sums.p == 0:
        raise InputError("no SNP passed the filters: the kinship cannot be computed")
    samples = np.flatnonzero(mask)
    rows: list[np.ndarray] = []
    parts: list[dict] = []
    stat_parts: list[dict] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=int(sum(c.index.size for c in chroms)), unit="SNP", unit_scale=True, leave=False
        )
    workers = threads or default_threads()
    for chrom, spectral, waited in _spectra(sums, chroms, workers):
        report.seconds["eigen"] = report.seconds.get("eigen", 0.0) + waited
        null = fit_null(y_arr, covariates, spectral=spectral, bounds=bounds)
        del spectral
        if null_models is not None:
            null_models[chrom.name] = null
        scanner = BlockScanner(
            null, test, maf=maf, miss=miss, r2=r2, threads=threads, lambda_mode=lambda_mode
        )
        for start, stop, pos in _ranges(chrom.index, block_size):
            t1 = time.perf_counter()
            X = source.read(start, stop, samples)[:, pos - start]
            report.seconds["read"] += time.perf_counter() - t1
            keep, cols, stats = scanner.scan_with_statistics(X, report)
            rows.append(pos[keep])
            parts.append(cols)
            stat_parts.append(stats)
            if bar is not None:
                bar.update(pos.size)
    if bar is not None:
        bar.close()
    # the test pass counted the filters of the placed SNPs (the same filters as
    # the kinship pass); SNPs on no known chromosome are neither kept nor tested
    if chromosomes is None:
        report.filters.total += int((sums.codes < 0).sum())
    table = _table(source, rows, parts, ["n_miss", "af", *TEST_COLUMNS[test]], test)
    if statistics is not None and stat_parts:
        order = np.argsort(np.concatenate(rows), kind="stable")
        for name in stat_parts[0]:
            statistics[name] = np.concatenate([p[name] for p in stat_parts])[order]
    return table


def _table(
    source: GenotypeSource, rows: list[np.ndarray], parts: list[dict], columns: list[str], test: str
) -> pd.DataFrame:
    """GEMMA's table of the tested SNPs (positions ``rows``), in file order."""
    from .scan import TEST_COLUMNS

    pos = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    order = np.argsort(pos, kind="stable")
    merged = {
        name: (np.concatenate([p[name] for p in parts]) if parts else np.zeros(0))[order]
        for name in columns
    }
    snps = source.snps.iloc[pos[order]].reset_index(drop=True)
    table = pd.DataFrame({name: snps[name] for name in ["chr", "rs", "ps"]})
    table["n_miss"] = merged["n_miss"].astype(np.int64)
    table["allele1"] = snps["allele1"]
    table["allele0"] = snps["allele0"]
    table["af"] = merged["af"]
    for name in TEST_COLUMNS[test]:
        table[name] = merged[name]
    return table
