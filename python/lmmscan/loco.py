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
once, its null model fitted, and chromosome c scanned (by
:meth:`lmmscan.engine.Engine.scan_loco`, with the passes of this module);
the output is one table in file order.

Reading.  When the per-chromosome sums fit in ``memory_limit`` bytes
(chromosomes x n^2 x 8) they are all kept from the kinship pass, and every
SNP is read twice (kinship pass, test pass), as a GEMMA run without LOCO.
Otherwise only S is kept and each chromosome's S_c is recomputed from its
own SNPs just before its scan (three reads of each SNP, never one read per
chromosome of the whole genome).

SNPs on no chromosome (a BIMBAM SNP the annotation file does not list,
which the tables print on chromosome -9; a missing name in an API table)
are neither in any kinship nor tested, as in GEMMA.  A chromosome named
"-9" or "0" (an annotation line with NA, a .bim's unplaced SNPs) is a
chromosome like any other, as GEMMA's -loco treats it: in every other
chromosome's kinship, and tested against the kinship without it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from . import _core, _lapack64
from ._errors import InputError
from ._threads import helper_pool
from .filters import FilterCounts, Scratch, gemma_filter, no_snp_left
from .genotypes import GenotypeSource, default_block_size, snp_runs
from .kinship import check_method, standardize
from .memory import LOCO_SUMS
from .samples import r2_basis
from .spectral import (
    Spectral,
    decompose_kinship,
    eigh_driver,
    resolve_eigh_driver,
    serial_library,
    syrk_update,
    tridiagonal_pays,
)

# "on no chromosome": a line break, which no chromosome of a scan can hold
# (scan refuses it: cli.common.check_table_fields), unlike "" (a BGEN's may)
UNKNOWN_CHROMOSOME = "\n"
DEFAULT_MEMORY = LOCO_SUMS


@dataclass
class _Chromosome:
    name: str
    index: np.ndarray  # SNP positions in the source, ascending
    p: int = 0  # kinship SNPs (passing the filters) on it
    S: np.ndarray | None = None  # its kinship sum (n, n), when kept


def chromosome_names(source: GenotypeSource) -> np.ndarray:
    """The chromosome of every SNP as a string (UNKNOWN_CHROMOSOME for a SNP
    on none: missing in the table, or not ``annotated`` where the source says
    which are, as BIMBAM does)."""
    from .variants import keeps_variants

    out: np.ndarray
    if keeps_variants(source):  # text tokens, never missing: no DataFrame built
        tokens = source.variants["chr"].tolist()  # type: ignore[attr-defined]
        out = np.array(tokens, dtype=object)
    else:
        chrom = source.snps["chr"]
        out = chrom.astype(str).to_numpy().astype(object)
        out[chrom.isna().to_numpy()] = UNKNOWN_CHROMOSOME
    annotated = getattr(source, "annotated", None)
    if annotated is not None:
        out[~np.asarray(annotated, dtype=bool)] = UNKNOWN_CHROMOSOME
    return out


def _unique(names: np.ndarray) -> list[str]:
    """The distinct names in order of first appearance."""
    return list(dict.fromkeys(names.tolist()))


def _chromosomes(names: np.ndarray) -> list[_Chromosome]:
    order = _unique(names[names != UNKNOWN_CHROMOSOME])
    if len(order) == 0:
        raise InputError(
            "LOCO needs the chromosome of each SNP, but none is known (for BIMBAM, give "
            "the annotation file with chromosome names)"
        )
    if len(order) < 2:
        raise InputError(f"LOCO needs at least two chromosomes, but every SNP is on {order[0]!r}")
    return [_Chromosome(str(c), np.flatnonzero(names == c)) for c in order]


def _add_gram(S: np.ndarray, Z: np.ndarray) -> None:
    """S += Z Z' on the upper triangle (BLAS syrk, in place; S Fortran order)."""
    if Z.shape[1] == 0:
        return
    syrk_update(S, Z, lower=False)  # in place: S is Fortran-ordered float64


def _difference(S: np.ndarray, S_c: np.ndarray, p: int) -> np.ndarray:
    """The symmetric (S - S_c) / p (C order) from the upper triangles of S and
    S_c (Fortran order, as syrk leaves them; the lower triangles are not
    read), in one pass in C++ (``_core.loco_difference``): each entry one
    subtraction and one division, the bits of numpy's."""
    return _core.loco_difference(S, S_c, float(p))


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
        hwe: float = 0.0,
    ) -> None:
        self.source, self.mask, self.W = source, mask, r2_basis(W)
        self.method, self.maf, self.miss, self.r2 = method, maf, miss, r2
        self.hwe = hwe
        self.block_size = block_size
        self.rows = np.flatnonzero(mask)
        self.scratch = Scratch()  # a block's kinship columns, reused
        self.counts = FilterCounts()  # the kinship pass's filter verdicts
        n = self.rows.size
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
        for start, stop, pos in snp_runs(placed, block_size):
            Z, kept = self._block(start, stop, pos, count=True)
            t0 = time.perf_counter()
            codes = self.codes[kept]
            for i in np.unique(codes):
                chrom = chroms[i]
                at = np.flatnonzero(codes == i)
                chrom.p += at.size
                # a sorted file's chromosome is a run of columns: a view, not a copy
                run = at[-1] - at[0] + 1 == at.size
                part = Z[:, at[0] : at[-1] + 1] if run else Z[:, at]
                _add_gram(chrom.S if keep_each else self.S, part)
            self._time(t0)
        if keep_each:
            for c in chroms:
                self.S += c.S
        self.p = sum(c.p for c in chroms)

    def _time(self, t0: float) -> None:
        seconds = self.report.seconds
        seconds["kinship"] = seconds.get("kinship", 0.0) + time.perf_counter() - t0

    def _block(
        self, start: int, stop: int, pos: np.ndarray, count: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Kinship columns (analysed rows) of the SNPs at ``pos`` that pass the filters."""
        t0 = time.perf_counter()
        X = self.source.read(start, stop)
        if pos.size != stop - start or not X.flags.f_contiguous:
            # numpy's column selection is Fortran-ordered: the filter sees the
            # layout of a whole .bed block either way
            X = X[:, pos - start]
        t1 = time.perf_counter()
        keep, _, _, counts = gemma_filter(
            X[self.mask], maf=self.maf, miss=self.miss, W=self.W, r2=self.r2, hwe=self.hwe
        )
        if count:  # the pass over every SNP, not a chromosome's recomputation
            self.counts.add(counts)
        k = int(np.count_nonzero(keep))
        buf = self.scratch.get("Z", self.rows.size * k, np.float64)
        Z = standardize(X, self.method, cols=keep, rows=self.rows, out=buf)
        self.report.seconds["read"] += t1 - t0
        self._time(t1)
        return Z, pos[keep]

    def chromosome_sum(self, chrom: _Chromosome) -> np.ndarray:
        if chrom.S is not None:
            return chrom.S
        S = np.zeros_like(self.S, order="F")
        for start, stop, pos in snp_runs(chrom.index, self.block_size):
            Z, _ = self._block(start, stop, pos)
            t0 = time.perf_counter()
            _add_gram(S, Z)
            self._time(t0)
        return S

    def loco_kinship(self, chrom: _Chromosome) -> np.ndarray:
        p = self.p - chrom.p
        if p <= 0:
            raise InputError(f"no kinship SNP is left when chromosome {chrom.name!r} is left out")
        K = _difference(self.S, self.chromosome_sum(chrom), p)
        if chrom.S is not None:
            chrom.S = None  # free it: it is needed once
        return K


def _decompose(K: np.ndarray, tridiagonal: bool) -> Spectral:
    # a worker decomposes one kinship after another: it keeps LAPACK's workspaces
    _lapack64.keep_workspaces()
    # K is this chromosome's fresh LOCO kinship, held by nothing else
    return decompose_kinship(K, overwrite_kinship=True, release_gil=True, tridiagonal=tridiagonal)


def _tridiagonal_fits(n: int, workers: int) -> bool:
    """Room for the factored bases (:class:`lmmscan.spectral.TridiagonalSpectral`)
    in the memory available: this process as it is, the ``workers`` + 1
    bases in memory, each V beside its reflectors (2 x 8n^2), and each
    worker's workspace (dsyevd's, 2n^2 doubles, which dstedc reuses)."""
    from .memory import current_rss, eigh_workspace, fits

    sq = 8 * n * n
    return fits(current_rss() + (workers + 1) * 2 * sq + workers * eigh_workspace(n, "evd"))


def _spectra(
    sums: _KinshipSums,
    chroms: list[_Chromosome],
    workers: int,
    columns: dict[str, int] | None = None,
    planned: bool = False,
):
    """(chromosome, spectral, seconds waited, busy) in order, decomposed
    ``workers`` at a time, each on one BLAS thread, while the caller scans;
    ``busy``: decompositions run while the caller scans this chromosome.

    LAPACK's symmetric eigensolvers scale poorly over threads (the
    tridiagonal reduction is memory-bound) and collapse when the cores are
    shared, so independent decompositions side by side, one BLAS thread
    each, use the cores better than one multi-threaded decomposition after
    another.  They run with the GIL released, on scipy's OpenBLAS limited
    to one thread (:func:`lmmscan.spectral.serial_library`), while the caller scans the
    chromosome before on numpy's OpenBLAS with its threads.  At most
    ``workers`` + 1 kinships are in memory at once.  The kinships themselves
    are formed in this thread (they may read genotypes).

    ``columns``: how many columns (SNPs) each chromosome's basis will rotate;
    where that is few (:func:`lmmscan.spectral.tridiagonal_pays`), dsyevd's
    last step, forming the eigenvectors, is left out and the SNPs are
    rotated through its factors instead
    (:class:`lmmscan.spectral.TridiagonalSpectral`), when dsyevd is the
    driver and the memory allows (``planned``: the caller's memory plan
    counted them; else the memory available is asked).
    """
    # "auto" chosen once for the decompositions that run side by side (each
    # decomposes its own kinship, which it overwrites)
    n = sums.S.shape[0]
    driver = resolve_eigh_driver(n, overwrite=True, concurrent=workers)
    # the factors are dsyevd's first two steps: where dsyevd is the driver
    factored = bool(columns) and driver == "evd" and (planned or _tridiagonal_fits(n, workers))
    with serial_library(), eigh_driver(driver), helper_pool(workers) as pool:
        pending: deque = deque()
        todo = iter(chroms)

        def submit() -> None:
            chrom = next(todo, None)
            if chrom is not None:
                few = factored and tridiagonal_pays(n, (columns or {}).get(chrom.name, n))
                pending.append((chrom, pool.submit(_decompose, sums.loco_kinship(chrom), few)))

        for _ in range(workers):
            submit()
        while pending:
            chrom, future = pending.popleft()
            t0 = time.perf_counter()
            spectral = future.result()
            waited = time.perf_counter() - t0
            submit()
            yield chrom, spectral, waited, bool(pending)


def tested_positions(
    source: GenotypeSource,
    wanted: list[_Chromosome],
    kinship_chroms: list[_Chromosome],
    kinship_source: GenotypeSource | None,
) -> dict[str, _Chromosome]:
    """The scanned SNPs of each wanted chromosome, by name.  When the kinship
    comes from the scanned source they are the kinship pass's own; from
    another source (GEMMA's -ksnps), the scanned source's SNPs with that
    chromosome name, and a scanned SNP on a chromosome the kinship SNPs do
    not cover is refused (its K_-c would be the whole kinship)."""
    if kinship_source is None:
        return {c.name: c for c in wanted}
    names = chromosome_names(source)
    covered = {c.name for c in kinship_chroms} | {UNKNOWN_CHROMOSOME}
    stray = _unique(names[~np.isin(names, list(covered))])
    if len(stray):
        raise InputError(
            f"the variants to test include chromosome(s) {sorted(map(str, stray))} on which no "
            "kinship variant lies (--ksnps): list variants of every tested chromosome"
        )
    return {c.name: _Chromosome(c.name, np.flatnonzero(names == c.name)) for c in wanted}


def unplaced(source: GenotypeSource) -> int:
    """SNPs of ``source`` on no known chromosome."""
    return int(np.count_nonzero(chromosome_names(source) == UNKNOWN_CHROMOSOME))


class KinshipPasses:
    """The LOCO kinships of one set of analysed samples: the kinship pass over
    the genotypes at creation, then each chromosome's K_-c decomposed on
    demand (:meth:`spectra`).  ``report`` receives the seconds of the passes
    ("read", "kinship") and of waiting for decompositions ("eigen")."""

    def __init__(
        self,
        source: GenotypeSource,
        mask: np.ndarray,
        W: np.ndarray,
        method: str,
        options: Any,
        block_size: int | None,
        report: Any,
        *,
        memory_limit: int | None = None,
    ) -> None:
        check_method(method)
        names = chromosome_names(source)
        self.chroms = _chromosomes(names)
        n = int(mask.sum())
        block_size = block_size or default_block_size(source.n_samples)
        limit = DEFAULT_MEMORY if memory_limit is None else memory_limit
        keep_each = len(self.chroms) * n * n * 8 <= limit
        self.report = report
        self.sums = _KinshipSums(
            source,
            mask,
            W,
            self.chroms,
            names,
            method,
            options.maf,
            options.miss,
            options.r2,
            block_size,
            keep_each,
            report,
            options.hwe,
        )
        self.unplaced = int((self.sums.codes < 0).sum())

    def tested(self, chromosomes: Sequence[str] | None) -> list[_Chromosome]:
        """The chromosomes to test (all, or those named), in file order."""
        chroms = self.chroms
        if chromosomes is not None:
            wanted = [str(c) for c in chromosomes]
            unknown = sorted(set(wanted) - {c.name for c in chroms})
            if unknown:
                raise InputError(f"no SNP on chromosome(s) {unknown}")
            chroms = [c for c in chroms if c.name in set(wanted)]
        if self.sums.p == 0:
            raise InputError(no_snp_left(self.sums.counts, "the kinship cannot be computed"))
        return chroms

    def spectra(
        self,
        chroms: list[_Chromosome],
        workers: int,
        columns: dict[str, int] | None = None,
        planned: bool = False,
    ) -> Iterator[tuple[_Chromosome, Spectral, bool]]:
        """(chromosome, the spectral basis of its K_-c, whether decompositions
        run meanwhile) in order (see :func:`_spectra`, and there ``columns``
        and ``planned``)."""
        for chrom, spectral, waited, busy in _spectra(self.sums, chroms, workers, columns, planned):
            seconds = self.report.seconds
            seconds["eigen"] = seconds.get("eigen", 0.0) + waited
            yield chrom, spectral, busy


class FileOrder:
    """A sink between the engine and the caller's that keeps each phenotype's
    rows in file order: chromosomes are tested one after the other, which is
    file order when each is one run of SNPs in order of first appearance (a
    sorted file); otherwise the phenotype's blocks are held and handed on
    sorted by :meth:`flush`."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.held: dict[int, list[Any]] = {}

    def expect(self, members: list[int], chroms: list[_Chromosome]) -> None:
        """``members`` will be tested on ``chroms``, in this order."""
        index = np.concatenate([c.index for c in chroms]) if chroms else np.zeros(0)
        if index.size > 1 and np.any(np.diff(index) <= 0):
            for k in members:
                self.held[k] = []

    def tested(self, block: Any) -> None:
        held = self.held.get(block.phenotype)
        if held is None:
            self.sink.tested(block)
        else:
            held.append(block)

    def block_done(self, stop: int) -> None:
        pass

    def flush(self) -> None:
        """Hand on every held phenotype's rows as one block in file order."""
        for blocks in self.held.values():
            if not blocks:
                continue
            index = np.concatenate([b.index for b in blocks])
            order = np.argsort(index, kind="stable")
            first = blocks[0]
            merged = replace(
                first,
                index=index[order],
                columns={
                    n: np.concatenate([b.columns[n] for b in blocks])[order] for n in first.columns
                },
                statistics={
                    n: np.concatenate([b.statistics[n] for b in blocks])[order]
                    for n in first.statistics
                },
                filters=_summed([b.filters for b in blocks]),
            )
            self.sink.tested(merged)
        self.held = {}


def _summed(counts: list[FilterCounts]) -> FilterCounts:
    total = FilterCounts()
    for c in counts:
        total.add(c)
    return total
