"""Genome-wide scans from Python: every SNP tested as an extra fixed effect,
as GEMMA -lmm does.

:func:`scan` and :func:`loco_scan` take arrays or genotype sources, fit the
null models (:func:`fit_phenotypes`: one kinship, restriction and
eigendecomposition per set of analysed individuals) and run the scan
engine (:class:`lmmscan.engine.Engine`), whose tested blocks they gather
into GEMMA's table.  The command line uses :func:`fit_phenotypes` and the
engine the same way, writing the blocks to files instead.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._errors import InputError, real_array
from .engine import Collector, Engine, ScanOptions, ScanReport, Test
from .genotypes import GenotypeSource, as_source
from .kinship import accumulate, accumulators, check_method
from .model import LambdaBounds, NullModel, as_bounds, check_basis_arguments, fit_null
from .pvalues import TEST_COLUMNS
from .samples import (
    Analysed,
    analyse,
    check_labels_follow_samples,
    check_same_rows,
    groups_by_samples,
)
from .spectral import SpectralBasis, check_kinship, decompose_kinship

if TYPE_CHECKING:
    import pandas as pd


def _time(seconds: dict[str, float] | None, key: str, t0: float) -> None:
    if seconds is not None:
        seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t0


def _computed_kinships(
    source: GenotypeSource,
    groups: list[list[Analysed]],
    method: str,
    options: ScanOptions,
    progress: Callable[[int], None] | None,
) -> list[np.ndarray]:
    """GEMMA's kinship for each group of phenotypes (its analysed samples
    filter the SNPs), all in one pass over the genotypes."""
    accs = accumulators(
        source.n_samples,
        method,
        [members[0] for members in groups],
        maf=options.maf,
        miss=options.miss,
        r2=options.r2,
        hwe=options.hwe,
    )
    accumulate(source, accs, progress=progress)
    return [acc.result() for acc in accs]


def _saved_bases(
    source: GenotypeSource,
    members: list[list[Analysed]],
    eigen: Any,
    sample_ids: Any,
    path: str | None,
    seconds: dict[str, float] | None,
) -> Iterator[SpectralBasis]:
    """Each group's share of a saved eigendecomposition (refused unless it
    belongs to exactly the group's analysed samples)."""
    from .eigen import Eigendecomposition, load_eigen, sample_ids_of

    t0 = time.perf_counter()
    eig = eigen if isinstance(eigen, Eigendecomposition) else load_eigen(eigen)
    if sample_ids is None:
        ids = sample_ids_of(source)
    else:
        ids = np.asarray(sample_ids).astype(str)
        if ids.shape != (source.n_samples,):
            raise InputError(f"sample_ids must have {source.n_samples} entries, got {ids.shape}")
    for m in members:
        with _naming(m[0], path):
            yield eig.spectral_for(ids[m[0].mask])
    _time(seconds, "kinship", t0)


def _decompositions(
    members: list[list[Analysed]],
    kinships: list[np.ndarray],
    owned: bool,
    path: str | None,
    seconds: dict[str, float] | None,
) -> Iterator[SpectralBasis]:
    """Each group's kinship restricted, centred and decomposed; the last group
    using a kinship we own does it in the kinship's own buffer."""
    for i, (m, K) in enumerate(zip(members, kinships, strict=True)):
        last = owned and all(other is not K for other in kinships[i + 1 :])
        t0 = time.perf_counter()
        # (the phenotype named only where phenotypes have their own samples: with
        # one decomposition, "pheno.txt column 1:" in a kinship's error is noise)
        with _naming(m[0] if len(members) > 1 else None, path):
            yield decompose_kinship(K, m[0].mask, overwrite_kinship=last)
        _time(seconds, "eigen", t0)


def fit_phenotypes(
    source: GenotypeSource,
    phenotypes: list[Analysed],
    *,
    kinship: Any = None,
    groups: Any = None,
    eigen: Any = None,
    sample_ids: Any = None,
    options: ScanOptions | None = None,
    bounds: LambdaBounds | None = None,
    owned: bool = False,
    path: str | None = None,
    seconds: dict[str, float] | None = None,
    progress: Callable[[int], None] | None = None,
    start_reading: Callable[[], None] | None = None,
    kinship_source: GenotypeSource | None = None,
) -> list[NullModel]:
    """Each phenotype's null model; phenotypes with the same analysed samples
    share one spectral basis (so the engine rotates each block once for them).

    The random effect, one of: ``kinship`` (an (n, n) array; a
    :class:`lmmscan.LowRankKinship`; or ``"centered"`` / ``"standardized"``,
    computed here from the genotypes with ``options``' filters, GEMMA
    ``-gk``), ``groups`` (labels), or ``eigen`` (a saved
    :class:`lmmscan.Eigendecomposition`, matched by ``sample_ids``).
    ``owned``: the kinship array may be overwritten (its last user
    decomposes in its buffer).  ``path``: the file an error in the kinship's
    use names.  ``seconds`` receives "kinship", "eigen" and "null_fit".
    ``progress``: SNPs read by the kinship pass.  ``start_reading()`` is
    called once the inputs are checked, before the decompositions and fits:
    the scan's first block is best read while LAPACK works (the checks are
    Python loops that a reading thread would slow).  ``kinship_source``: the
    SNPs a computed kinship comes from (GEMMA's -ksnps; default ``source``).
    """
    from .lowrank import DaskLowRankKinship, LowRankKinship

    given = [x is not None for x in (kinship, groups, eigen)]
    if sum(given) != 1:
        raise InputError("give one of kinship, groups or eigen")
    members = [[phenotypes[k] for k in g] for g in groups_by_samples([p.mask for p in phenotypes])]
    bases: list[SpectralBasis | None]
    if groups is not None:
        bases = [None] * len(members)
    elif eigen is not None:
        bases = list(_saved_bases(source, members, eigen, sample_ids, path, seconds))
    elif isinstance(kinship, (LowRankKinship, DaskLowRankKinship)):
        if kinship.n_samples != source.n_samples:
            raise InputError(
                f"the low-rank kinship has {kinship.n_samples} samples but genotypes have "
                f"{source.n_samples}"
            )
        bases = [kinship.spectral(m[0].mask) for m in members]
    else:
        if isinstance(kinship, str):
            t0 = time.perf_counter()
            kinships = _computed_kinships(
                kinship_source or source, members, kinship, options or ScanOptions(), progress
            )
            _time(seconds, "kinship", t0)
            owned = True
        else:
            K = kinship if owned else check_kinship(kinship, source.n_samples)
            kinships = [K] * len(members)
        if start_reading is not None:
            start_reading()
            start_reading = None
        bases = list(_decompositions(members, kinships, owned, path, seconds))
        del kinships
    if start_reading is not None:
        start_reading()
    nulls: dict[int, NullModel] = {}
    for m, basis in zip(members, bases, strict=True):
        for ph in m:
            t0 = time.perf_counter()
            with _naming(ph, None):  # the fit: about the phenotype, not the kinship file
                nulls[id(ph)] = fit_null(
                    ph.y, ph.covariates, groups=groups, spectral=basis, bounds=bounds
                )
            _time(seconds, "null_fit", t0)
    return [nulls[id(ph)] for ph in phenotypes]


@contextlib.contextmanager
def _naming(ph: Analysed | None, path: str | None) -> Iterator[None]:
    """An InputError inside names the phenotype (and the file)."""
    try:
        yield
    except InputError as exc:
        name = ph.name if ph is not None else ""
        if not name and path is None:
            raise
        text = f"{name}: {exc}" if name else str(exc)
        raise InputError(text, path=path) from None


def _table(
    source: GenotypeSource, index: np.ndarray, cols: dict, test: str, meta: dict
) -> pd.DataFrame:
    """GEMMA's table of the tested SNPs (source positions ``index``), with
    ``meta`` (n_analyzed, df, loglik_mle_null) in ``attrs["lmmscan"]`` for
    :func:`lmmscan.write_table`."""
    import pandas as pd

    snps = source.snps.iloc[index].reset_index(drop=True)
    table = pd.DataFrame({name: snps[name] for name in ["chr", "rs", "ps"]})
    table["n_miss"] = cols["n_miss"].astype(np.int64)
    table["allele1"] = snps["allele1"]
    table["allele0"] = snps["allele0"]
    table["af"] = cols["af"]
    for name in TEST_COLUMNS[test]:
        table[name] = cols[name]
    table.attrs["lmmscan"] = meta
    return table


def _meta(null: NullModel) -> dict:
    """What :func:`lmmscan.write_table` needs of a table's null model."""
    n = int(null.n_analyzed)
    df = n - int(null.n_covariates) - 1
    return {"n_analyzed": n, "df": df, "loglik_mle_null": null.loglik_ml}


def _bar(progress: bool, total: int) -> Any:
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="SNP", unit_scale=True, leave=False)


def _check_report(report: object) -> None:
    """A ScanReport or None (an int gave an AttributeError at the end, helper 70)."""
    if report is not None and not isinstance(report, ScanReport):
        raise InputError(f"report must be an lmmscan.ScanReport or None, got {report!r:.60}")


def _fill(report: ScanReport | None, own: ScanReport, seconds: dict[str, float]) -> None:
    """The caller's report: one phenotype's counts and timings."""
    if report is None:
        return
    report.filters.add(own.filters)
    report.add_seconds(own.seconds)
    report.add_seconds(seconds)
    report.null_models.update(own.null_models)


def scan(
    genotypes: object,
    y: object = None,
    *,
    kinship: object = None,
    covariates: object = None,
    groups: object = None,
    null_model: NullModel | Sequence[NullModel] | None = None,
    test: Test = "all",
    maf: float | None = 0.01,
    miss: float = 0.05,
    r2: float = 0.9999,
    hwe: float = 0.0,
    lambda_mode: str = "per-snp",
    bounds: LambdaBounds | None = None,
    threads: int | None = None,
    block_size: int | None = None,
    report: ScanReport | None = None,
    progress: bool = False,
    loco: bool = False,
    eigen: object = None,
    sample_ids: object = None,
    client: object = None,
    precision: str = "double",
    statistics: dict | list | None = None,
) -> pd.DataFrame | list[pd.DataFrame]:
    """Test every SNP as an extra fixed effect in the linear mixed model.

    Parameters
    ----------
    genotypes
        (samples x SNPs) array with NaN for missing, or a source such as
        :func:`lmmscan.read_plink`.  Values are allele counts (GEMMA: the
        .bim column-5 allele); they are not centred.
    y
        Phenotype, one value per sample, NaN for missing; or several
        phenotypes as the columns of a (samples, p) array, which returns one
        table per column (phenotypes with the same analysed samples share one
        eigendecomposition and one rotation of each block).  Not with
        ``null_model``, which carries its own (refused: it used to be ignored).
    kinship, covariates, groups
        As for :func:`lmmscan.fit_null` (a kinship, or group labels for a
        random group intercept).
        ``kinship`` may also be a :class:`lmmscan.LowRankKinship` (k SNPs,
        k < n: no n x n matrix is formed, see :mod:`lmmscan.lowrank`), or
        a :class:`lmmscan.lowrank.DaskLowRankKinship` (its factor and
        eigenvectors stay on the cluster of ``client``, which must be given), or
        ``"centered"`` / ``"standardized"`` to compute GEMMA's kinship from
        ``genotypes`` with the same filters (``-gk 1`` / ``-gk 2``).  Not with
        ``null_model``, which carries its own.
    null_model
        A fitted :class:`NullModel` to reuse (its samples and eigenvectors),
        or a list of them (one table each).
    test
        ``"wald"`` (GEMMA -lmm 1), ``"lrt"`` (-lmm 2), ``"score"`` (-lmm 3)
        or ``"all"`` (-lmm 4).
    maf, miss, r2, hwe
        GEMMA's SNP filters on the analysed samples (``-maf``, ``-miss``,
        ``-r2``, ``-hwe``; see :func:`lmmscan.filters.gemma_filter`).
    bounds
        The lambda search range and grid of the null and per-SNP fits
        (GEMMA's ``-lmin``, ``-lmax``, ``-region``; default 1e-5, 1e5, 10).
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
        A :class:`ScanReport` to fill with filter counts and timings (of the
        first phenotype).
    loco
        Leave one chromosome out (:mod:`lmmscan.loco`): each chromosome's SNPs
        are tested with a kinship of the other chromosomes, built from
        ``genotypes`` (``kinship`` may name the method, ``"centered"`` by
        default, or ``"standardized"``).  The per-chromosome null models go to
        ``report.null_models``, with their kinship's eigenvalues but not its
        eigenvectors (:meth:`lmmscan.NullModel.without_eigenvectors`; to keep
        them, :func:`lmmscan.loco_scan` with ``null_models``).
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
        without it (in single precision, to float32 rounding: the rotation's
        last bits depend on BLAS's threads).  With a kinship from ``low_rank_kinship(...,
        client=client)`` the eigenvectors stay on the cluster, chunked by
        samples, and each chunk's products are computed where it is; the
        rows equal the local low-rank scan's to rounding.
    precision
        ``"double"`` (GEMMA's numbers) or ``"single"``: the genotype blocks
        and the eigenvectors in float32 for the rotation U'X (SGEMM, about
        twice DGEMM's speed), the statistics and the lambda search in
        double; p-values then differ from double's in their last digits
        (benchmarks/RESULTS.md gives the accuracy on the reference studies).
        A whitened scan (``lambda_mode="null"`` with one test) stays double.
    statistics
        A dict, for one phenotype (the first, if several): it receives the statistic behind each p
        column, row for row (:func:`lmmscan.pvalues.statistics`), which
        :func:`lmmscan.write_table` prints exactly (regenie's CHISQ, p below
        1e-300).  A list, for several: it receives one such dict each.

    Returns a DataFrame (a list of them for several phenotypes) with GEMMA's
    columns for ``test``: chr rs ps n_miss allele1 allele0 af, then beta se
    logl_H1 l_remle l_mle p_wald p_lrt p_score as the test has them; one row
    per analysed SNP, in file order.
    """
    check_same_rows(genotypes=genotypes, y=y, covariates=covariates, kinship=kinship, groups=groups)
    check_basis_arguments(kinship, None)  # an Eigendecomposition goes to eigen=
    source = as_source(genotypes)
    check_labels_follow_samples(source, y=y, covariates=covariates, kinship=kinship)
    options = ScanOptions(test, maf, miss, r2, lambda_mode, hwe, precision)
    bounds = as_bounds(bounds)
    _check_report(report)
    if sample_ids is not None and eigen is None:  # (it was ignored, helper 70)
        raise InputError("sample_ids goes with eigen= (it matches the samples to its IDs)")
    if statistics is not None and not isinstance(statistics, dict | list):
        raise InputError(f"statistics must be a dict or a list, got {type(statistics).__name__}")
    if loco:
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
        return loco_scan(
            source, y, covariates, method=kinship, test=test, maf=maf, miss=miss, r2=r2,
            hwe=hwe, bounds=bounds, lambda_mode=lambda_mode, threads=threads,
            block_size=block_size, report=report, progress=progress, precision=precision,
            statistics=statistics,
        )  # fmt: skip
    seconds: dict[str, float] = {}
    single = True
    nulls: list[NullModel]
    bar = _bar(progress, source.n_snps)
    with Engine(
        source,
        options,
        threads=threads,
        block_size=block_size,
        client=client,
        progress=None if bar is None else bar.update,
    ) as engine:
        try:
            if null_model is not None:
                if eigen is not None:
                    raise InputError("give either null_model or eigen, not both")
                alongside = {
                    "y": y,
                    "kinship": kinship,
                    "covariates": covariates,
                    "groups": groups,
                    "bounds": bounds,
                    "sample_ids": sample_ids,
                }
                given = [name for name, value in alongside.items() if value is not None]
                if given:
                    # they were ignored: another phenotype's y gave null_model's scan
                    raise InputError(
                        f"null_model carries its phenotype, kinship, covariates and lambda "
                        f"bounds: give "
                        f"null_model without {', '.join(given)} (or those without null_model)"
                    )
                single = isinstance(null_model, NullModel)
                nulls = (
                    [null_model]
                    if isinstance(null_model, NullModel)
                    else list(null_model)
                    if isinstance(null_model, list | tuple)
                    else []
                )
                if not nulls or not all(isinstance(m, NullModel) for m in nulls):
                    raise InputError(
                        "null_model must be a NullModel (lmmscan.fit_null) or a non-empty "
                        f"list of them, got {null_model!r:.80}"
                    )
            else:
                if y is None or (kinship is None and groups is None and eigen is None):
                    raise InputError(
                        "scan needs y and a kinship or groups (or a fitted null_model)"
                    )
                Y = real_array(y, "y")
                n_y = Y.shape[0] if Y.ndim else 0
                if n_y != source.n_samples:
                    raise InputError(
                        f"y has {n_y} values but genotypes have {source.n_samples} samples"
                    )
                single = Y.ndim == 1
                phenotypes = analyse(Y, covariates)
                union = np.logical_or.reduce([p.mask for p in phenotypes])
                engine.prefetch(np.flatnonzero(union))  # read while the null models are fitted
                nulls = fit_phenotypes(
                    source, phenotypes, kinship=kinship, groups=groups, eigen=eigen,
                    sample_ids=sample_ids, options=options, bounds=bounds, seconds=seconds,
                )  # fmt: skip
            sink = Collector(len(nulls))
            reports = engine.scan(nulls, sink)
        finally:
            if bar is not None:
                bar.close()
    # the null fit as a whole (kinship, decomposition and fit), as before the engine
    _fill(report, reports[0], {"null_fit": sum(seconds.values())} if seconds else {})
    tables = []
    for k in range(len(nulls)):
        index, cols, stats = sink.merged(k, options.columns)
        tables.append(_table(source, index, cols, test, _meta(nulls[k])))
        _hand_statistics(statistics, k, stats)
    return tables[0] if single else tables


def _hand_statistics(statistics: dict | list | None, k: int, stats: dict) -> None:
    """Phenotype ``k``'s statistics to the caller's ``statistics``: a list
    receives each phenotype's, a dict the first's (this scan's only)."""
    if isinstance(statistics, list):
        statistics.append(stats)
    elif statistics is not None and k == 0:
        statistics.clear()
        statistics.update(stats)


def loco_scan(
    genotypes: object,
    y: object,
    covariates: object = None,
    *,
    method: str = "centered",
    test: Test = "all",
    maf: float | None = 0.01,
    miss: float = 0.05,
    r2: float = 0.9999,
    hwe: float = 0.0,
    lambda_mode: str = "per-snp",
    bounds: LambdaBounds | None = None,
    threads: int | None = None,
    block_size: int | None = None,
    memory_limit: int | None = None,
    report: ScanReport | None = None,
    progress: bool = False,
    null_models: dict[str, NullModel] | list[dict[str, NullModel]] | None = None,
    chromosomes: list[str] | None = None,
    statistics: dict[str, np.ndarray] | list[dict[str, np.ndarray]] | None = None,
    precision: str = "double",
) -> pd.DataFrame | list[pd.DataFrame]:
    """Scan every SNP against a kinship of the other chromosomes (see
    :mod:`lmmscan.loco`).

    ``method`` is the kinship (``"centered"``: GEMMA -gk 1;
    ``"standardized"``: -gk 2); the other arguments are those of
    :func:`lmmscan.scan`.  ``null_models``, if a dict, receives each
    chromosome's fitted null model, whole: each holds its chromosome's n x n
    eigenvectors (8n^2 bytes), or for a chromosome with fewer SNPs than n / 2
    their two factors (16n^2 bytes, 24n^2 once U is asked for; see
    :class:`lmmscan.spectral.TridiagonalSpectral`), until the dict is dropped.  The models in
    ``report.null_models`` keep the eigenvalues only
    (:meth:`lmmscan.NullModel.without_eigenvectors`).  ``statistics``, if a
    dict, receives the statistic behind each p column, row for row
    (:func:`lmmscan.pvalues.statistics`; the LRT's uses its own chromosome's
    null model).  ``chromosomes`` restricts the tests to those chromosomes
    (GEMMA's ``-loco c`` for one); every kinship still uses all the others.
    ``memory_limit``: bytes the per-chromosome kinship sums may take
    (default 2 GiB; beyond it they are recomputed per chromosome).

    ``y`` may hold several phenotypes (samples x p), as in :func:`lmmscan.scan`:
    those with the same analysed samples share the kinship pass, the
    decompositions and each block's rotation.  ``null_models`` and
    ``statistics`` then take a dict (the first phenotype's) or a list (one
    dict appended per phenotype), and ``report`` describes the first.

    Returns one table (a list of them for several phenotypes), GEMMA's
    columns, the tested SNPs in file order.
    """
    check_method(method)
    check_same_rows(genotypes=genotypes, y=y, covariates=covariates)
    bounds = as_bounds(bounds)
    _check_report(report)
    if isinstance(chromosomes, str | int | np.integer):  # one name ("21": not 2 and 1)
        chromosomes = [str(chromosomes)]
    elif chromosomes is not None:
        chromosomes = [str(c) for c in chromosomes]
    if chromosomes is not None and len(chromosomes) == 0:
        raise InputError("chromosomes is empty: name at least one (or None for all)")
    for name, value in (("null_models", null_models), ("statistics", statistics)):
        if value is not None and not isinstance(value, dict | list):
            raise InputError(f"{name} must be a dict or a list, got {type(value).__name__}")
    source = as_source(genotypes)
    check_labels_follow_samples(source, y=y, covariates=covariates)
    y_arr = real_array(y, "y")
    if y_arr.ndim not in (1, 2) or y_arr.shape[0] != source.n_samples:
        raise InputError(
            f"y has shape {y_arr.shape}: give {source.n_samples} values (one per sample of "
            f"the genotypes), or {source.n_samples} rows of several phenotypes"
        )
    Y = y_arr[:, None] if y_arr.ndim == 1 else y_arr
    options = ScanOptions(test, maf, miss, r2, lambda_mode, hwe, precision)
    cov = None if covariates is None else np.asarray(covariates, dtype=np.float64)
    sink = Collector(Y.shape[1])
    bar = _bar(progress, source.n_snps)
    try:
        with Engine(
            source,
            options,
            threads=threads,
            block_size=block_size,
            progress=None if bar is None else bar.update,
        ) as engine:
            reports = engine.scan_loco(
                [(Y[:, k], cov) for k in range(Y.shape[1])], sink, method=method,
                bounds=bounds, chromosomes=chromosomes, memory_limit=memory_limit,
                keep_eigenvectors=null_models is not None,
            )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    tables = []
    for k, own in enumerate(reports):
        if null_models is not None:  # kept whole for the caller; the report's released
            whole = own.null_models
            own.null_models = {c: m.without_eigenvectors() for c, m in whole.items()}
            if isinstance(null_models, list):
                null_models.append(whole)
            elif k == 0:  # added to: calls over other chromosomes= collect in one dict
                null_models.update(whole)
        index, cols, stats = sink.merged(k, options.columns)
        _hand_statistics(statistics, k, stats)
        meta: dict = {}
        if own.null_models:  # every chromosome's model has the same samples and covariates
            meta = _meta(next(iter(own.null_models.values())))
            meta["loglik_mle_null"] = {str(c): m.loglik_ml for c, m in own.null_models.items()}
        tables.append(_table(source, index, cols, test, meta))
    _fill(report, reports[0], {})
    return tables[0] if y_arr.ndim == 1 else tables
