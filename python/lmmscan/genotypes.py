"""Genotype sources: anything that yields blocks of SNPs for the analysed samples.

A source has ``n_samples`` and ``n_snps``, a ``snps`` table (chr, rs, ps,
allele1, allele0: allele1 is the counted allele) and ``read(start, stop,
samples=None)`` returning a float64 array (samples x SNPs) with NaN for
missing calls.  Sources never hold all genotypes in memory unless they were
given an in-memory array.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import numpy as np

from ._errors import InputError, plural, real_array
from .samples import HUGE, loaded_pandas

if TYPE_CHECKING:
    import pandas as pd

    from .variants import VariantTable

SNP_COLUMNS = ["chr", "rs", "ps", "allele1", "allele0"]


@runtime_checkable
class GenotypeSource(Protocol):
    """What lmmscan needs from a genotype file or array."""

    @property
    def n_samples(self) -> int: ...

    @property
    def n_snps(self) -> int: ...

    @property
    def snps(self) -> pd.DataFrame: ...

    def read(self, start: int, stop: int, samples: np.ndarray | None = None) -> np.ndarray: ...


class ArrayGenotypes:
    """An in-memory genotype matrix (samples x SNPs) as a source.

    ``snps`` (a DataFrame of chr, rs, ps, allele1, allele0) defaults to chr
    "-9", rs "snp<i>", ps -9 and alleles "-9", as GEMMA writes for BIMBAM
    files without an annotation; so does each of those columns it lacks.

    A float64 array is not copied (a biobank-size matrix held twice): the
    source reads it as it is when read, so changing it afterwards changes
    what later scans and kinships see, and its values are checked only
    here.  Pass a copy to keep the source fixed.
    """

    def __init__(self, genotypes: np.ndarray, snps: pd.DataFrame | None = None) -> None:
        g = real_array(genotypes, "genotypes")
        if g.ndim != 2:
            raise InputError(f"genotypes must be a 2-D array (samples x SNPs), got shape {g.shape}")
        # inf, or a value whose square overflows (no n x m temporary but booleans)
        if (g > HUGE).any() or (g < -HUGE).any():
            if np.isinf(g).any():
                raise InputError("genotypes contain infinite values (use NaN for missing)")
            i, j = np.argwhere((g > HUGE) | (g < -HUGE))[0]
            raise InputError(
                f"genotype of SNP {j + 1}, sample {i + 1} is {g[i, j]:.6g}: beyond ±{HUGE:.0e} "
                "its square overflows"
            )
        self._g = g
        import pandas as pd

        m = g.shape[1]
        defaults = {
            "chr": ["-9"] * m,
            "rs": [f"snp{i + 1}" for i in range(m)],
            "ps": np.full(m, -9, dtype=np.int64),
            "allele1": ["-9"] * m,
            "allele0": ["-9"] * m,
        }
        # chr given, or none: then every SNP is on no chromosome for LOCO
        self.annotated = np.zeros(m, dtype=bool) if snps is None else None
        if snps is None:
            snps = pd.DataFrame(defaults)
        elif not isinstance(snps, pd.DataFrame):
            raise InputError(f"snps must be a pandas DataFrame, got {type(snps).__name__}")
        elif len(snps) != m:
            raise InputError(f"snps has {len(snps)} rows but genotypes has {m} columns")
        else:  # a column it lacks as GEMMA writes it (a KeyError in the scan otherwise)
            if "chr" not in snps.columns:
                self.annotated = np.zeros(m, dtype=bool)
            snps = snps.assign(**{c: v for c, v in defaults.items() if c not in snps.columns})
        self._snps = snps.reset_index(drop=True)

    @property
    def n_samples(self) -> int:
        return int(self._g.shape[0])

    @property
    def n_snps(self) -> int:
        return int(self._g.shape[1])

    @property
    def snps(self) -> pd.DataFrame:
        return self._snps

    def read(self, start: int, stop: int, samples: np.ndarray | None = None) -> np.ndarray:
        block = self._g[:, start:stop]
        if samples is not None:
            block = block[samples]
        return np.array(block, dtype=np.float64, order="C")


class SubsetGenotypes:
    """The SNPs of ``source`` at the positions ``index`` (ascending, unique),
    as a source of their own: GEMMA's -snps / -ksnps.  Everything but the
    SNPs (the samples, their IDs and phenotypes) is the source's."""

    # the largest gap between selected SNPs read in one call to the source:
    # reading a few unselected SNPs costs less than another call.  A call
    # spans at most as many SNPs as the block holds (or GAP): every 50th SNP
    # (an LD-pruned --ksnps) read as one run took 50 times the block's memory,
    # past the memory plan and --memory-limit
    GAP = 64

    def __init__(self, source: GenotypeSource, index: np.ndarray) -> None:
        index = np.asarray(index, dtype=np.int64)
        if index.ndim != 1 or (index.size and (index[0] < 0 or index[-1] >= source.n_snps)):
            raise InputError("SNP positions out of range")
        if index.size > 1 and np.any(np.diff(index) <= 0):
            raise InputError("SNP positions must be ascending and unique")
        self.source = source
        self.index = index
        self._snps: pd.DataFrame | None = None  # the DataFrame view, made when asked for
        self._variants: VariantTable | None = None

    @property
    def annotated(self) -> np.ndarray | None:
        """The source's per-SNP ``annotated`` mask (BIMBAM), for these SNPs."""
        mask = getattr(self.source, "annotated", None)
        return None if mask is None else np.asarray(mask)[self.index]

    def __getattr__(self, name: str) -> object:
        if name.startswith("__") or name in ("source", "index", "_snps", "_variants"):
            raise AttributeError(name)  # unpickling: before __dict__ is set
        return getattr(self.source, name)

    @property
    def n_samples(self) -> int:
        return self.source.n_samples

    @property
    def n_snps(self) -> int:
        return int(self.index.size)

    @property
    def snps(self) -> pd.DataFrame:
        if self._snps is None:
            self._snps = self.source.snps.iloc[self.index].reset_index(drop=True)
        return self._snps

    @property
    def variants(self) -> VariantTable:
        """The selected SNPs' rows of the source's variant table (never the
        source's own, which ``__getattr__`` would hand out)."""
        if self._variants is None:
            from .variants import VariantTable, keeps_variants

            self._variants = (
                self.source.variants.take(self.index)  # type: ignore[attr-defined]
                if keeps_variants(self.source)
                else VariantTable.from_frame(self.snps)
            )
        return self._variants

    def read(self, start: int, stop: int, samples: np.ndarray | None = None) -> np.ndarray:
        pos = self.index[start:stop]
        if pos.size == 0:
            n = self.n_samples if samples is None else np.arange(self.n_samples)[samples].size
            return np.zeros((n, 0))
        out: np.ndarray | None = None
        fortran = True
        done = 0
        for run in self._runs(pos):
            first = int(run[0])
            block = self.source.read(first, int(run[-1]) + 1, samples)
            # (a run of one SNP is both C and F: it does not decide)
            one = block.shape[1] == 1
            fortran = fortran and block.flags.f_contiguous and (one or not block.flags.c_contiguous)
            if out is None:
                if run.size == pos.size and block.shape[1] == run.size:
                    out = block  # one run, every SNP of it: the source's block
                    break
                # each run's SNPs are placed in one block, in the memory order
                # of the source's first (helper 55: the runs' copies, joined
                # and reordered, held four blocks)
                out = np.empty((block.shape[0], pos.size), order="F" if fortran else "C")
            _place(out, done, block, run - first)
            done += run.size
            del block
        assert out is not None
        # in the source's memory order: a file's column-major blocks stay
        # column-major, the order the engine's repeat search takes
        order: Literal["C", "F"] = "F" if fortran else "C"
        return np.asarray(out, dtype=np.float64, order=order)

    def read_overhead(self, block: int, subset: bool) -> int:
        """Bytes a read of ``block`` SNPs holds beside the block it returns, at
        most: one call's block of the source (a run of up to max(block, GAP)
        of its SNPs) and that call's own overhead, and a row-major block's
        gathered columns (_GATHER)."""
        span = max(1, min(max(block, self.GAP), self.source.n_snps))
        rows = self.n_samples  # (a subset's rows are fewer)
        inner = getattr(self.source, "read_overhead", None)
        return 8 * rows * span + (inner(span, subset) if inner is not None else 0) + _GATHER

    def _runs(self, pos: np.ndarray) -> Iterator[np.ndarray]:
        """``pos`` in runs read by one call each: SNPs no more than GAP apart,
        each run spanning at most max(pos.size, GAP) SNPs of the source."""
        span = max(int(pos.size), self.GAP)
        for run in np.split(pos, np.flatnonzero(np.diff(pos) > self.GAP) + 1):
            i = 0
            while i < run.size:
                j = int(np.searchsorted(run, run[i] + span, side="left"))
                yield run[i:j]
                i = j


_GATHER = 4 << 20


def _place(out: np.ndarray, at: int, block: np.ndarray, columns: np.ndarray) -> None:
    """``block``'s ``columns`` into ``out``'s columns at..: with no copy of
    them where ``out`` is column-major (each column is a row of out.T), else
    through copies of at most _GATHER bytes."""
    m = columns.size
    if block.shape[1] == m:
        out[:, at : at + m] = block
    elif out.flags.f_contiguous:
        np.take(block.T, columns, axis=0, out=out.T[at : at + m], mode="clip")
    else:
        step = max(1, _GATHER // (8 * max(1, out.shape[0])))
        for k in range(0, m, step):
            end = min(m, k + step)
            out[:, at + k : at + end] = block[:, columns[k:end]]


def select_snps(source: GenotypeSource, ids: list[str], flag: str) -> tuple[SubsetGenotypes, int]:
    """``source`` restricted to the SNPs whose rs is in ``ids`` (every SNP with
    a listed ID, in file order), and how many listed IDs name no SNP."""
    from .variants import keeps_variants

    wanted = set(ids)
    # a variant table's IDs, without building the source's whole DataFrame
    rs: list[str] = (
        source.variants["rs"].tolist()  # type: ignore[attr-defined]
        if keeps_variants(source)
        else source.snps["rs"].astype(str).tolist()
    )
    index = np.flatnonzero(np.fromiter((r in wanted for r in rs), dtype=bool, count=len(rs)))
    missing = len(wanted) - len({rs[i] for i in index.tolist()})
    if index.size == 0:
        skipped = getattr(source, "skipped", None) or {}
        why = ", ".join(plural(k, f"{what} variant") for what, k in skipped.items())
        raise InputError(
            f"{flag}: none of the {len(wanted)} listed variant IDs is in the genotypes"
            + (f" (they skip {why}, which a listed ID may name)" if why else "")
        )
    return SubsetGenotypes(source, index), missing


def as_source(genotypes: object) -> GenotypeSource:
    """A genotype source from a source or a (samples x SNPs) array; a
    DataFrame's column labels, unless 0, 1, ..., are the SNPs' rs IDs."""
    if isinstance(genotypes, GenotypeSource) and not isinstance(genotypes, np.ndarray):
        return genotypes
    pd = loaded_pandas()  # not imported: genotypes is no DataFrame
    if pd is not None and isinstance(genotypes, pd.DataFrame):
        columns = genotypes.columns
        named = not columns.equals(pd.RangeIndex(len(columns)))
        values = real_array(genotypes, "genotypes")
        return ArrayGenotypes(values, pd.DataFrame({"rs": columns.astype(str)}) if named else None)
    return ArrayGenotypes(np.asarray(genotypes))


def iter_blocks(
    source: GenotypeSource, block_size: int, samples: np.ndarray | None = None
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (start, stop, block) over the SNPs of a source."""
    for start in range(0, source.n_snps, block_size):
        stop = min(source.n_snps, start + block_size)
        yield start, stop, source.read(start, stop, samples)


def snp_runs(index: np.ndarray, block_size: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, positions) blocks of at most ``block_size`` consecutive
    SNP positions that cover the sorted positions ``index``; ``positions``
    are those of ``index`` inside [start, stop)."""
    i = 0
    while i < index.size:
        start = int(index[i])
        stop = min(start + block_size, int(index[-1]) + 1)
        j = int(np.searchsorted(index, stop, side="left"))
        yield start, stop, index[i:j]
        i = j


def default_block_size(n_samples: int, budget_bytes: int = 32 << 20) -> int:
    """SNPs per block so that one float64 block stays near ``budget_bytes``.

    32 MB: BLAS multiplies blocks of 400 SNPs or more as fast as wider ones
    (n = 4,852: ~100 GFLOP/s at 432, 864 and 1,728 columns), and a block
    touches half the fresh memory of a 64 MB one: the mouse_hs1940 command
    took 1.85 s against 2.03 s (medians of 10 alternating runs), and the
    block buffers at n = 10,000 halve.
    """
    return int(max(64, min(8192, budget_bytes // (8 * max(1, n_samples)))))


class ReadAhead:
    """Blocks of SNPs from SNP ``first`` on, each read on a thread while the
    one before it is processed.

    The first read starts here, so a caller can create the reader before
    other work (the null fit) and find the first block ready.  Reading
    (bed-reader, file parsing) overlaps the filtering, BLAS rotation and C++
    tests of the current block; one read is in flight at a time, in file
    order, so sequential sources stay sequential.
    """

    def __init__(
        self,
        source: GenotypeSource,
        block_size: int,
        samples: np.ndarray | None,
        first: int = 0,
    ) -> None:
        self.source, self.block_size, self.samples = source, block_size, samples
        self.first = first
        self._starts = list(range(first, source.n_snps, block_size))
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[np.ndarray] | None = None
        if self._starts:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmmscan-read")
            self._pending = self._submit(self._pool, 0)

    @classmethod
    def reuse(
        cls,
        reader: ReadAhead | None,
        source: GenotypeSource,
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
                and (
                    reader.samples is samples
                    or (
                        reader.samples is not None
                        and samples is not None
                        and np.array_equal(reader.samples, samples)
                    )
                )
            ):
                return reader
            reader.close()
        return cls(source, block_size, samples, first)

    def _submit(self, pool: ThreadPoolExecutor, i: int) -> Future[np.ndarray]:
        start = self._starts[i]
        return pool.submit(
            self.source.read, start, min(self.source.n_snps, start + self.block_size), self.samples
        )

    def blocks(self, seconds: dict[str, float]) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield (start, stop, block); ``seconds["read"]`` gets the time spent
        waiting for a block.  Once, then the reader is closed."""
        try:
            for i, start in enumerate(self._starts):
                if self._pool is None or self._pending is None:
                    return  # closed
                t0 = time.perf_counter()
                X = self._pending.result()
                seconds["read"] += time.perf_counter() - t0
                more = i + 1 < len(self._starts)
                self._pending = self._submit(self._pool, i + 1) if more else None
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


def root_source(source: object) -> object:
    """The genotype file under any views (``--snps``, ``--info``: a
    :class:`SubsetGenotypes` keeps the source it selects from)."""
    while hasattr(source, "source"):
        source = source.source
    return source


def import_failure(module: str) -> str | None:
    """None when ``module`` imports; "" when it is not installed; else the
    first line of why an installed one does not (a missing shared library)."""
    import importlib
    import importlib.util

    if importlib.util.find_spec(module) is None:
        return ""
    try:
        importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - a broken install raises anything at import
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return None


def require_extra(module: str, package: str, extra: str, flag: str) -> None:
    """An optional reader's package, checked before any work: a missing one
    in one line naming the extra that installs it."""
    why = import_failure(module)
    if why == "":
        raise InputError(
            f"{flag} needs the {package} package: pip install 'lmmscan[{extra}]' "
            "(or 'lmmscan[all]' for every genotype format)"
        )
    if why is not None:
        raise InputError(
            f"{flag} needs the {package} package, which is installed but does not import "
            f"({why}): reinstall it with pip install --force-reinstall 'lmmscan[{extra}]'"
        )


def sample_rows(samples: np.ndarray | None, n: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``read``'s ``samples`` (None, a boolean mask or indices) as ascending
    unique indices for a reader that subsets samples itself, and the order
    that puts the reader's rows back in the order asked (None: already)."""
    if samples is None:
        return None, None
    rows = np.asarray(samples)
    if rows.dtype == bool:
        if rows.shape != (n,):
            raise InputError(f"a sample mask must have {n} entries, got {rows.shape}")
        return np.flatnonzero(rows), None
    rows = rows.astype(np.int64, copy=False)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise InputError("sample indices out of range")
    if rows.size < 2 or bool(np.all(np.diff(rows) > 0)):
        return rows, None
    unique, inverse = np.unique(rows, return_inverse=True)
    return unique, inverse


@dataclass
class SampleText:
    """The samples of a sample file (.psam, .sample) or a genotype file's own
    list, as text: family and individual IDs, and the phenotype columns
    (each a list of tokens), whose first sample is on file line
    ``first_line``.  No pandas: the DataFrame is made when asked for."""

    fid: Sequence[str]
    iid: Sequence[str]
    pheno: Sequence[Sequence[str]] = field(default_factory=list)
    first_line: int = 1

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame({"fid": pd.Series(self.fid, dtype=str),
                             "iid": pd.Series(self.iid, dtype=str)})  # fmt: skip


def check_unique_ids(
    fid: Sequence[str],
    iid: Sequence[str],
    path: str,
    *,
    first_line: int = 1,
    ids: str = "family and individual IDs",
) -> None:
    """Refuse a sample file with an individual twice (as PLINK does): a line
    duplicated in place of another would shift every later individual.
    Names the individual seen twice whose first line comes first; sample i
    is on line ``first_line`` + i."""
    seen: dict[tuple[str, str], int] = {}
    repeats: dict[tuple[str, str], int] = {}  # the first repeat of each key
    for i, key in enumerate(zip(fid, iid, strict=True)):
        if key not in seen:
            seen[key] = i
        elif key not in repeats:
            repeats[key] = i
    if repeats:
        from .textio import data_line

        key = min(repeats, key=seen.__getitem__)
        one, two = (data_line(path, k, first_line) for k in (seen[key], repeats[key]))
        raise InputError(
            f"individual {key[0]!r} {key[1]!r} is on lines {one} and {two} ({ids} must be unique)",
            path=path,
            line=two,
        )


# rounding in a file's dosages or probabilities (GP summing to 1.001) is not an error
DOSAGE_SLACK = 1e-3
# three probabilities each rounded to 2 decimals sum to up to 1.015 (0.34,0.34,0.33
# is 1.01), and a BGEN v1.1 file stores each in 1/32768ths: a sum is refused
# only beyond this
SUM_SLACK = 0.02


def bad_probabilities(p: np.ndarray) -> np.ndarray:
    """The samples (rows of p, samples x 3 genotype probabilities) with a
    probability outside 0-1 (beyond DOSAGE_SLACK) or infinite, or whose three
    sum to more than 1 + SUM_SLACK; NaN is a missing value."""
    with np.errstate(invalid="ignore"):
        off = ~((p >= -DOSAGE_SLACK) & (p <= 1.0 + DOSAGE_SLACK)) & ~np.isnan(p)
        return np.flatnonzero(off.any(axis=1) | (np.nansum(p, axis=1) > 1.0 + SUM_SLACK))


# a sum of probabilities this close to 1 is 1: three float32 GP values written
# with 3 decimals that sum to 1 (0.002, 0.251, 0.747) sum to 1 - 3.4e-8
SUM_IS_ONE = 1e-6


def probability_moments(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The expected ALT count and its expected square per sample from unphased
    diploid probabilities (samples x 3: P(00), P(01), P(11), as VCF GP and
    BGEN v1.1 store them): P(01) + 2 P(11) and P(01) + 4 P(11), divided by the
    three's sum where it is not 1 (beyond SUM_IS_ONE), as plink2 reads them:
    a sum below 1 leaves the rest to no genotype, not to either homozygote
    (the bgen package's dosage gave it to P(11): 0.8,0,0 read 0.4), and all
    three 0 is missing (VCF GP 0,0,0 had been read as 0).  A sum of 1 within
    float32's rounding is not divided by: those dosages are the last bits of
    P(01) + 2 P(11), as before."""
    p1, p2 = p[:, 1].astype(np.float64), p[:, 2].astype(np.float64)
    total = p[:, 0] + p1 + p2
    e = p1 + 2.0 * p2
    f = p1 + 4.0 * p2
    off = np.flatnonzero(np.abs(total - 1.0) > SUM_IS_ONE)  # NaN: missing, left as is
    with np.errstate(invalid="ignore", divide="ignore"):
        e[off] /= total[off]
        f[off] /= total[off]
    return e, f


# Readers holding an open file (watch_fork): a process forked from this one
# shares each file's offset with it, and a multiprocessing fork pool's
# children then read each other's places: errors blaming the file, and
# tables of other SNPs' genotypes, exit 0 (helper 70).  In a forked child
# each drops its handles (its _drop_handles) and opens its own on next use.
_HOLDING_FILES: weakref.WeakSet = weakref.WeakSet()


def watch_fork(holder: object) -> None:
    """Have ``holder`` drop its open files in a forked child (it defines
    ``_drop_handles()``); called where it opens one."""
    _HOLDING_FILES.add(holder)


def _drop_handles_in_child() -> None:
    for holder in list(_HOLDING_FILES):
        holder._drop_handles()  # type: ignore[attr-defined]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_handles_in_child)


class VariantFile:
    """What the .pgen, BGEN and VCF sources share: the file's variants, of
    which the testable ones (biallelic, diploid) are the source's SNPs, and
    the counts of the others by reason (``skipped``).

    A subclass sets ``path`` (the genotype file, for messages), calls
    ``_set_variants`` and implements ``_decode(file_index, rows)``: the
    dosages of the file's variants ``file_index`` for the sample indices
    ``rows`` (ascending; None: all) as a (variants x samples) C-order float64
    array, NaN missing.  Reads are serialised by a lock: a reader object is
    not shared between threads.
    """

    path: str
    dosages_only = True  # --hwe refused (see cli.common.check_hwe)
    # the file's variants read as missing, by reason: each counted once,
    # however many passes (kinship, --info, scan) read it
    _missing_at_read: dict[str, set[int]]

    def _read_as_missing(self, reason: str, file_index: int) -> None:
        """Note that the file's variant ``file_index`` was read as missing."""
        self._missing_at_read.setdefault(reason, set()).add(file_index)

    @property
    def skipped_at_read(self) -> dict[str, int]:
        """How many of the file's variants were read as missing, by reason."""
        with self._lock:
            return {reason: len(index) for reason, index in self._missing_at_read.items()}

    def read_as_missing(self) -> dict[str, list[list[int]]]:
        """The file's variants read as missing so far, by reason, as
        [start, stop) runs of file indices (a chromosome's haploid calls are
        one run): what a scan's checkpoint keeps, so that a resumed scan that
        reads only the later variants still counts the earlier ones."""
        with self._lock:
            found = {r: np.fromiter(s, np.int64, len(s)) for r, s in self._missing_at_read.items()}
        out = {}
        for reason, index in found.items():
            if index.size == 0:
                continue
            index.sort()
            breaks = np.flatnonzero(np.diff(index) != 1) + 1
            starts, ends = index[np.r_[0, breaks]], index[np.r_[breaks - 1, index.size - 1]] + 1
            out[reason] = np.column_stack([starts, ends]).tolist()
        return out

    def add_read_as_missing(self, runs: dict[str, list[list[int]]]) -> None:
        """Count the variants of :meth:`read_as_missing`'s runs (a
        checkpoint's) as read as missing; each variant still counts once."""
        end = int(self._file_index[-1]) + 1 if self._file_index.size else 0
        checked = []
        for reason, pairs in runs.items():
            for start, stop in pairs:
                if not 0 <= int(start) < int(stop) <= end:  # a hand edit
                    raise ValueError(f"read_as_missing run {[start, stop]} is not of the file's")
                checked.append((str(reason), int(start), int(stop)))
        with self._lock:
            for reason, start, stop in checked:
                found = self._missing_at_read.setdefault(reason, set())
                found.update(range(start, stop))

    def _set_path(self, path: object, what: str, needs_file: str) -> None:
        """The genotype file: it must exist and be a regular file (read at offsets)."""
        from pathlib import Path

        from .textio import input_stat

        self.path = str(path)
        if not Path(self.path).exists():
            raise InputError(f"{what} not found", path=self.path)
        input_stat(Path(self.path), needs_file=needs_file)
        try:  # the readers' own messages for this say "error reading" or "Error opening"
            with open(self.path, "rb"):
                pass
        except OSError as exc:
            raise InputError(f"cannot read ({exc.strerror or exc})", path=self.path) from None

    def _phenotype_columns(self, columns: list[int], where: str, which: str) -> np.ndarray:
        """Phenotype columns (1-based) of the sample file as (samples,
        len(columns)), NaN for NA (in any case, as plink2 reads a .psam: "na"
        was refused as no number, helper 67) or -9; ``which`` says what the
        columns are in a message."""
        from .textio import INFINITE_NOTE, BadToken, parse_phenotype

        text = self._sample_text
        out = np.empty((self.n_samples, len(columns)))
        for i, col in enumerate(columns):
            if not 1 <= col <= self.n_pheno_columns:
                raise InputError(
                    f"phenotype column {col} is out of range: {self.n_pheno_columns} {which}",
                    path=where,
                )
            try:
                tokens = ["NA" if t.upper() == "NA" else t for t in text.pheno[col - 1]]
                out[:, i] = parse_phenotype(tokens, minus9_missing=True, finite=True)
            except BadToken as exc:
                from .textio import data_line

                raise InputError(
                    f"phenotype {exc}{INFINITE_NOTE if exc.infinite else ''}",
                    path=where,
                    line=data_line(where, exc.index, text.first_line),
                ) from None
        return out

    @property
    def n_pheno_columns(self) -> int:
        return len(self._sample_text.pheno)

    def _set_variants(
        self,
        samples: SampleText,
        table: pd.DataFrame | VariantTable,
        untestable: dict[str, np.ndarray],
    ) -> None:
        """The samples, the file's variants ``table`` (a DataFrame with
        SNP_COLUMNS, or a variant table) and the masks of those that cannot be
        tested, by reason."""
        import threading

        from .variants import VariantTable

        self._sample_text = samples
        self._samples: pd.DataFrame | None = None  # the DataFrame view, made when asked for
        bad = np.zeros(len(table), dtype=bool)
        self.skipped: dict[str, int] = {}
        for reason, mask in untestable.items():
            mask = mask & ~bad
            if mask.any():
                self.skipped[reason] = int(mask.sum())
            bad |= mask
        if bad.all():
            reasons = ", ".join(f"{k} {v}" for k, v in self.skipped.items())
            why = f" ({reasons})" if reasons else ": the variant list is empty"
            raise InputError(f"no variant lmmscan can test{why}", path=self.path)
        self._file_index = np.flatnonzero(~bad).astype(np.int64)
        self._snps: pd.DataFrame | None = None
        self._variants: VariantTable | None = None
        if isinstance(table, VariantTable):
            self._variants = table.take(self._file_index)  # the DataFrame when asked for
        else:
            self._snps = table.loc[~bad, SNP_COLUMNS].reset_index(drop=True)
        self._lock = threading.Lock()
        self._missing_at_read = {}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_lock"] = None
        for key in getattr(self, "_handles", ()):
            state[key] = None
        return state

    def _drop_handles(self) -> None:
        """Forget the open files ``_handles`` names (see :func:`watch_fork`)."""
        for key in getattr(self, "_handles", ()):
            setattr(self, key, None)

    def __setstate__(self, state: dict) -> None:
        import threading

        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def n_samples(self) -> int:
        return len(self._sample_text.iid)

    @property
    def n_snps(self) -> int:
        return int(self._file_index.size)

    @property
    def snps(self) -> pd.DataFrame:
        if self._snps is None:
            assert self._variants is not None
            self._snps = self._variants.frame()
        return self._snps

    @property
    def variants(self) -> VariantTable:
        """The testable variants as arrays (:mod:`lmmscan.variants`)."""
        if self._variants is None:
            from .variants import VariantTable

            self._variants = VariantTable.from_frame(self.snps)
        return self._variants

    @property
    def samples(self) -> pd.DataFrame:
        """fid and iid of every sample."""
        if self._samples is None:
            self._samples = self._sample_text.frame()
        return self._samples

    def _decode(self, file_index: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def read(self, start: int, stop: int, samples: np.ndarray | None = None) -> np.ndarray:
        """Dosages of SNPs start..stop-1 (samples x SNPs, NaN missing), in
        Fortran order (one SNP contiguous)."""
        rows, order = sample_rows(samples, self.n_samples)
        with self._lock:
            out = self._decode(self._file_index[start:stop], rows)
        block = out.T
        if order is not None:
            block = np.asfortranarray(block[order])
        return block
