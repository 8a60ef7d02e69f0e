"""``lmmscan scan``: null models and per-SNP tests (GEMMA -lmm) to tables.

The command parses, opens the inputs, and hands the scan to the engine
(:class:`lmmscan.engine.Engine`); it writes the rows the engine delivers,
keeps the ``--resume`` checkpoint (:mod:`lmmscan.cli.checkpoint`) and
prints the summary.  Bad input ends the run with one line on stderr and exit
status 2; every output is written under a temporary name and renamed when
the whole run has succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError, naming
from ..filters import FilterCounts, filters_to_relax
from ..kinship import KINSHIP_METHODS
from ..output import EXTENSIONS, FORMATS
from ..samples import Analysed
from .common import (
    Outputs,
    check_hwe,
    check_name_lengths,
    check_out_dir,
    check_spares_inputs,
    check_table_fields,
    check_writable,
    covariates,
    describe_skipped,
    describe_variant_lists,
    info_filter,
    listed_variants,
    memory_check_driver,
    memory_line,
    memory_report,
    named_inputs,
    one_line,
    open_genotypes,
    pheno_name,
    phenotypes,
    progress,
    read_as_missing,
    reader_warnings,
    require_matplotlib,
    run_threads,
    skipped_variants,
)
from .options import (
    add_filter_args,
    add_genotype_args,
    add_run_args,
    add_sample_args,
    command,
    positive_float,
    positive_int,
    region_count,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    s = command(
        sub,
        "scan",
        help="null model and per-SNP tests (GEMMA -lmm 1/2/3/4)",
        description="Fit the null linear mixed model and test each SNP, as GEMMA -lmm does.\n\n"
        "Writes PREFIX.assoc.txt (GEMMA's columns and number formats, or --format) and "
        "PREFIX.null.json (the null model, SNP counts per filter, seconds per phase).\n\n"
        "example: lmmscan scan --bfile data/study --covar covar.txt --test all --out study",
    )
    add_genotype_args(s)
    add_sample_args(s, multi=True)
    g = s.add_argument_group("model")
    g.add_argument(
        "--kinship",
        metavar="FILE",
        help="kinship matrix over every individual of the genotype file: GEMMA text or "
        ".npy (GEMMA -k). Default: computed from the same genotypes and filters, as "
        "'lmmscan kinship' would",
    )
    g.add_argument(
        "--kinship-method",
        choices=KINSHIP_METHODS,
        default=None,  # "centered" (set by _check_scan_flags): given, it needs no --kinship
        help="how to compute the kinship when --kinship is not given (GEMMA -gk 1 / -gk 2). "
        "Default: centered",
    )
    g.add_argument(
        "--loco",
        action="store_true",
        help="leave one chromosome out: each chromosome's SNPs are tested with a kinship of "
        "the other chromosomes (--kinship-method), one eigendecomposition each; needs "
        "chromosome names (.bim, or --bimbam-anno) (GEMMA -loco, every chromosome in one "
        "run). A chromosome named 0 or -9 is a chromosome like any other; a BIMBAM SNP the "
        "annotation does not list is in no kinship and not tested (counted as unplaced), as "
        "in GEMMA. PREFIX.null.json describes the first chromosome's null model. Default: off",
    )
    g.add_argument(
        "--eigen",
        metavar="FILE.npz",
        help="reuse a saved eigendecomposition ('lmmscan eigen') instead of a kinship; "
        "refused unless it was made for exactly the analysed individuals (GEMMA -d/-u). "
        "Default: none",
    )
    g.add_argument(
        "--test",
        choices=["wald", "lrt", "score", "all"],
        default="wald",
        help="wald (GEMMA -lmm 1), lrt (-lmm 2), score (-lmm 3) or all three (-lmm 4). "
        "Default: wald",
    )
    g.add_argument(
        "--lambda",
        dest="lambda_mode",
        choices=["per-snp", "null"],
        default="per-snp",
        help="per-snp: lambda re-optimised for every SNP, REML for the Wald test and ML for "
        "the LRT (GEMMA); null: every SNP tested at the null model's lambda (EMMAX, "
        "FaST-LMM, GCTA style: faster, slightly conservative for SNPs of large effect). Every "
        "scan path (--loco, --eigen, --dask-scheduler) honours it; PREFIX.null.json records "
        "it as lambda_mode. Default: per-snp",
    )
    g.add_argument(
        "--precision",
        choices=["double", "single"],
        default="double",
        help="single: the rotation of the genotypes by the kinship's eigenvectors in float32 "
        "(about twice as fast), the statistics and lambda search in double; p-values "
        "then differ from double's in their last digits (docs/performance.md gives the "
        "accuracy). The whitened path (--lambda null with one test) stays double. "
        "Default: double (GEMMA's numbers)",
    )
    g.add_argument(
        "--lmin",
        metavar="L",
        type=positive_float,
        default=1e-5,
        help="lower end of the lambda (vg/ve) search, null model and per SNP (GEMMA -lmin). "
        "Default: 1e-5",
    )
    g.add_argument(
        "--lmax",
        metavar="L",
        type=positive_float,
        default=1e5,
        help="upper end of the lambda search (GEMMA -lmax), at most 1e10 (beyond it the "
        "likelihood is rounding). Default: 1e5",
    )
    g.add_argument(
        "--region",
        metavar="N",
        type=region_count,
        default=10,
        help="intervals of the lambda search's log-spaced grid (GEMMA -region); a range "
        "wider than the default's 1e10 needs more of them to resolve the optimum (an "
        "interval may hold two sign changes of the derivative). Default: 10",
    )
    add_filter_args(s)
    o = s.add_argument_group("output")
    o.add_argument(
        "--format",
        choices=FORMATS,
        default="gemma",
        help="table format: gemma (PREFIX.assoc.txt, GEMMA's exact columns), plink2 "
        "(PREFIX.glm.linear), regenie (PREFIX.regenie) or gwas-ssf (PREFIX.ssf.tsv); all but "
        "gemma carry N, p and -log10 p. Default: gemma",
    )
    o.add_argument(
        "--out",
        metavar="PREFIX",
        required=True,
        help="output prefix, e.g. results/study (GEMMA -o with -outdir). Required",
    )
    o.add_argument(
        "--block-size",
        metavar="B",
        type=positive_int,
        default=None,
        help="SNPs read and tested per block (memory: individuals x B doubles). "
        "Default: about 32 MB worth, at most 8192",
    )
    o.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted scan (Ctrl-C, SIGTERM, kill -9, a crash) from its last "
        "completed block: while it runs, a scan keeps its table as PREFIX.assoc.txt.partial "
        "and a checkpoint PREFIX.resume.json; --resume with the same inputs and options "
        "finishes them, and the table is byte for byte that of an uninterrupted run. Refused "
        "(exit 2) when the checkpoint is from other inputs or options; with no checkpoint the "
        "scan starts from the first SNP (so a batch job can always pass --resume). Not with "
        "--loco, --dask-scheduler or a low-rank --eigen. Default: off (a fresh scan, which "
        "removes any checkpoint of PREFIX)",
    )
    o.add_argument(
        "--plot",
        action="store_true",
        help="also write PREFIX.manhattan.png and PREFIX.qq.png (needs matplotlib). Default: off",
    )
    add_run_args(s, eigh=True)
    s.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        help="scan on a Dask cluster (e.g. tcp://10.0.0.1:8786): the null model is sent to "
        "every worker once and each task reads its own SNPs from the genotype file, which "
        "the workers must see at the same path (pip install 'lmmscan[dask]'). Default: local",
    )
    s.set_defaults(func=run)


@dataclass
class Pheno:
    """One --pheno-col: its analysed individuals, model, output and running summary."""

    col: int
    analysed: Analysed
    stem: str = ""
    null: Any = None
    report: Any = None
    writer: Any = None
    filters: FilterCounts = field(default_factory=FilterCounts)
    best: list = field(default_factory=list)  # (log10p, rs, chr, ps, beta, se) of the top hits
    n_rows: int = 0
    untestable: dict[str, int] = field(default_factory=dict)  # SNPs without a test, by reason
    log10p: list = field(default_factory=list)  # main -log10 p per block (lambda_GC, plots)
    where: list = field(default_factory=list)  # chr, rs, ps per block (only with --plot)
    results: dict | None = None  # _results(), once the scan is done


def load_phenotypes(args: argparse.Namespace, source: Any) -> list[Pheno]:
    """Every --pheno-col with GEMMA's analysed individuals (errors name the column)."""
    from ..samples import analyse

    Y = phenotypes(args, source, args.pheno_col, required=True)
    assert Y is not None  # required: an InputError otherwise
    cov = covariates(args, source)
    names = [pheno_name(args, col) for col in args.pheno_col]
    analysed = analyse(Y, cov, names, covariate_name=getattr(args, "covar", None))
    return [Pheno(col, a) for col, a in zip(args.pheno_col, analysed, strict=True)]


class _Rows:
    """The engine's sink: each phenotype's rows to its table (and checkpoint)."""

    def __init__(
        self, args: argparse.Namespace, source: Any, phenos: list[Pheno], checkpoint: Any = None
    ) -> None:
        from ..variants import variant_table

        # the variants as arrays: each block's rows are taken without a Python
        # object per row (lmmscan.variants)
        self.args, self.variants, self.phenos = args, variant_table(source), phenos
        self.checkpoint = checkpoint

    def tested(self, block: Any) -> None:
        ph = self.phenos[block.phenotype]
        snps = self.variants.take(block.index)
        with self.args.clock.phase("write"), naming(ph.stem + EXTENSIONS[self.args.format]):
            log10p = ph.writer.write(snps, block.columns, block.statistics)
            if self.checkpoint is not None:
                self.checkpoint.record(ph, block.index, log10p)
        ph.filters.add(block.filters)
        _track_best(ph, snps, log10p, block.columns, block.statistics)
        _collect(self.args, ph, snps, log10p)
        ph.n_rows += len(snps)

    def block_done(self, stop: int) -> None:
        if self.checkpoint is not None:
            with self.args.clock.phase("write"):
                self.checkpoint.block_done(stop)


def _table_writer(args: argparse.Namespace, ph: Pheno, fh: Any) -> Any:
    from ..output import TableWriter
    from ..pvalues import TEST_COLUMNS

    n, c = int(ph.analysed.mask.sum()), ph.analysed.W.shape[1]
    return TableWriter(
        fh,
        args.format,
        args.test,
        n_analyzed=n,
        df=n - c - 1,
        # only to recover statistics the scan did not give (it gives them all)
        loglik_mle_null=ph.null.loglik_ml if ph.null is not None else float("nan"),
        test_columns=TEST_COLUMNS[args.test],
    )


def _stems(args: argparse.Namespace) -> list[str]:
    if len(args.pheno_col) == 1:
        return [args.out]
    return [f"{args.out}.{col}" for col in args.pheno_col]


def _output_paths(args: argparse.Namespace) -> list[Path]:
    """Every file a scan may write under its prefix, temporary ones included
    (a table's partial files beside its symlink's target: where they go)."""
    from ..output import EXTENSIONS, output_file

    ext = EXTENSIONS[args.format]
    paths = [Path(f"{args.out}.resume.json"), Path(f"{args.out}.lock")]
    for stem in _stems(args):
        table = Path(stem + ext)
        final = output_file(table)
        paths += [table, Path(f"{final}.partial"), Path(f"{final}.partial.lp")]
        paths += [Path(f"{stem}.null.json"), Path(f"{stem}.manhattan.png"), Path(f"{stem}.qq.png")]
    return paths


def run(args: argparse.Namespace) -> int:
    from ..output import output_file
    from .checkpoint import command_options, finish_commit
    from .prefix import PrefixLock, check_outputs, remove_stale_temporaries

    check_out_dir(args.out)
    _check_scan_flags(args)
    if args.plot:
        require_matplotlib("--plot")
    paths = _output_paths(args)
    check_outputs(paths)
    check_spares_inputs(paths, named_inputs(args))
    written = [p for p in paths if args.plot or p.suffix != ".png"]
    check_name_lengths(written, written_as_is=(".partial", ".partial.lp", ".lock"))
    for directory in sorted({Path(output_file(p)).parent for p in paths}):
        check_writable(directory)
    with Outputs("the tables and null.json are complete") as outputs, PrefixLock(args.out):
        args.command_options = command_options(args)
        if args.resume and finish_commit(args.out, args.command_options):
            # (before remove_stale_temporaries: the record names temporaries)
            outputs.written = True
            if not args.quiet:
                print(
                    f"lmmscan scan: --resume: the run had finished and was putting its "
                    f"outputs in place; they are now ({args.out}.*)",
                    file=sys.stderr,
                )
            if args.plot:
                print(
                    "lmmscan scan: warning: --plot: the plots were not drawn (the scan had "
                    "finished before); lmmscan plot draws them from the tables",
                    file=sys.stderr,
                )
            return 0
        remove_stale_temporaries(paths)
        source, phenos, checkpoint = _run(args)
        outputs.written = True
    with outputs:
        if args.plot:
            _plots(args, phenos)
        if not args.quiet:
            _print_summary(args, source, phenos, checkpoint)
    return 0


def _run(args: argparse.Namespace) -> tuple[Any, list[Pheno], Any]:
    """The scan, its tables and null.json, in place when it returns."""
    from ..engine import Engine, ScanOptions
    from ..output import EXTENSIONS, OutputSet

    clock = args.clock
    outputs = OutputSet()
    checkpoint = None
    client = None
    try:
        with run_threads(args.threads, args.eigh_driver):
            with clock.phase("inputs"):
                source = open_genotypes(args)
                check_hwe(args, source)
                phenos = load_phenotypes(args, source)
                source = info_filter(
                    args, source, np.logical_or.reduce([ph.analysed.mask for ph in phenos])
                )
                # GEMMA's -ksnps: the kinship's variants; -snps: the tested ones
                args.kinship_source = listed_variants(args, source, ("ksnps",))
                source = listed_variants(args, source, ("snps",))
                check_table_fields(args, source)
                _memory_plan(args, source, phenos)
            options = ScanOptions(
                args.test, args.maf, args.miss, args.r2, args.lambda_mode, args.hwe,
                args.precision,
            )  # fmt: skip
            if args.dask_scheduler:
                from ..distributed import connect

                client = connect(args.dask_scheduler)
            with Engine(
                source, options, threads=args.threads, block_size=args.block_size, client=client
            ) as engine:
                _fit(args, source, phenos, engine)
                for ph, stem in zip(phenos, _stems(args), strict=True):
                    ph.stem = stem
                ext = EXTENSIONS[args.format]
                if _block_path(args, phenos):
                    union = np.logical_or.reduce([ph.analysed.mask for ph in phenos])
                    checkpoint = _checkpoint(args, source, phenos, ext, engine, union)
                    try:
                        _scan(args, source, phenos, engine, checkpoint)
                    except BaseException:
                        # the scan's own error stands (abandon() says what the
                        # checkpoint on the disk holds, a failed save included)
                        with contextlib.suppress(Exception):
                            checkpoint.close()
                        raise
                    checkpoint.close()
                else:
                    if args.resume:
                        raise InputError(
                            "--resume works for the block scan only, not with a "
                            "low-rank --eigen: rerun without --resume"
                        )
                    _scan_to_files(args, source, phenos, engine, outputs, ext)
            _write_nulls(args, source, phenos, outputs)
        if checkpoint is not None:
            checkpoint.commit(outputs)
        else:
            outputs.commit()
    except BaseException as exc:
        if checkpoint is not None:
            checkpoint.abandon(exc)
        raise
    finally:
        outputs.discard()
        if client is not None:
            client.close()
    return source, phenos, checkpoint


def _memory_plan(args: argparse.Namespace, source: Any, phenos: list[Pheno]) -> None:
    """The scan's peak memory from the sizes, checked before the kinship is
    read or computed (see :mod:`lmmscan.memory`)."""
    from .._threads import usable_cores
    from ..genotypes import default_block_size
    from ..memory import (
        LOCO_SUMS,
        eigen_file_shape,
        fits,
        hints_dense,
        parse_size,
        read_overhead,
        scan_plan,
    )
    from ..samples import groups_by_samples

    groups = groups_by_samples([ph.analysed.mask for ph in phenos])
    analysed = [int(phenos[g[0]].analysed.mask.sum()) for g in groups]
    kinship = (
        "loco" if args.loco else "eigen" if args.eigen else "given" if args.kinship else "computed"
    )
    eigen_shape = eigen_file_shape(args.eigen) if args.eigen else None
    # a scan at a fixed lambda whitens with a dense basis of all n eigenvectors:
    # a kinship, or a saved full decomposition (not a low-rank one)
    dense = kinship in ("given", "computed") or (
        kinship == "eigen" and eigen_shape is not None and eigen_shape[1] >= eigen_shape[0]
    )
    whitened = 0
    if args.lambda_mode == "null" and args.test != "all" and dense:
        whitened = sum(1 for g in groups if len(g) == 1)
    n = max(analysed)
    chromosomes, wanted, held = 0, False, 0
    if args.loco:
        from ..loco import UNKNOWN_CHROMOSOME, chromosome_names
        from ..spectral import tridiagonal_pays

        # a chromosome with few tested SNPs may keep its decomposition's two
        # factors (lmmscan.engine's scan_loco; not in single precision); the
        # names once, counted in one pass (no sort of millions of strings)
        kinship_names = chromosome_names(args.kinship_source)
        same = source is args.kinship_source
        tested = kinship_names if same else chromosome_names(source)
        counts = Counter(tested.tolist())
        counts.pop(UNKNOWN_CHROMOSOME, None)
        chromosomes = (
            len(counts) if same else len(set(kinship_names.tolist()) - {UNKNOWN_CHROMOSOME})
        )
        wanted = getattr(args, "precision", "double") == "double" and any(
            tridiagonal_pays(n, c) for c in counts.values()
        )
        # chromosomes that interleave in the file (scattered -9s of an annotation's
        # NA) hold every tested row until the end, to print them in file order
        placed = tested[tested != UNKNOWN_CHROMOSOME]
        runs = int(np.count_nonzero(placed[1:] != placed[:-1])) + bool(placed.size)
        held = placed.size if runs > len(counts) else 0
    workers = args.threads or usable_cores()
    block = args.block_size or default_block_size(n)
    # what a block's read holds beside the block (a text file's lines), in the
    # scan or in the kinship's pass (the samples read: every group's)
    subset = bool(
        np.logical_or.reduce([ph.analysed.mask for ph in phenos]).sum() < source.n_samples
    )
    reading = max(read_overhead(s, block, subset) for s in (source, args.kinship_source))
    limit = None if args.memory_limit is None else parse_size(args.memory_limit)
    # LOCO keeps each chromosome's kinship sum while they fit in --memory-limit
    # (without it, in LOCO_SUMS, as the API's loco_scan), and the whole plan
    # with them fits in --memory-limit or the memory available; else each
    # chromosome's sum is rebuilt from its SNPs (a third read of them)
    sums = chromosomes * 8 * n * n
    budget = LOCO_SUMS if limit is None else limit

    def plan(driver: str, loco_sums: int = budget, factors: bool = wanted) -> Any:
        return scan_plan(
            n_file=source.n_samples,
            analysed=analysed,
            n_variants=source.n_snps,
            block=block,
            kinship=kinship,
            driver=driver,
            whitened=whitened,
            eigen_shape=eigen_shape,
            chromosomes=chromosomes,
            workers=workers,
            single=getattr(args, "precision", "double") == "single",
            loco_sums=loco_sums,
            phenotypes=len(args.pheno_col),
            n_region=args.region,
            tridiagonal=factors,
            held_rows=held,
            read_overhead=reading,
        )

    def keeps_sums(kept: Any) -> bool:  # kept: the plan with the sums kept
        return sums <= budget and fits(kept.peak, limit)

    def with_sums(driver: str, factors: bool) -> Any:  # the sums kept where they fit
        kept = plan(driver, factors=factors)
        return kept if keeps_sums(kept) else plan(driver, 0, factors)

    def plan_loco(driver: str) -> Any:
        # the factors where their plan fits, else the eigenvectors formed
        # (rather than dsyevr for want of the factors' room); the engine is
        # told which (args.loco_factors)
        chosen = with_sums(driver, True) if wanted else None
        args.loco_factors = chosen is not None and fits(chosen.peak, limit)
        return chosen if args.loco_factors else with_sums(driver, False)

    def hints(driver: str) -> list[str]:
        return hints_dense(n, driver, bool(whitened))

    if not args.loco:
        memory_check_driver(args, plan, hints)
        return
    driver = memory_check_driver(args, plan_loco, hints)
    # the engine's budget for the sums, as the plan chose (it keeps them when
    # its own chromosomes x n^2 x 8 fit in it; None: LOCO_SUMS)
    if not keeps_sums(plan(driver, factors=args.loco_factors)):
        args.loco_sums = 0
    elif limit is not None:
        args.loco_sums = sums


def _plots(args: argparse.Namespace, phenos: list[Pheno]) -> None:
    """--plot, once the tables are in place: a failure here keeps them."""
    from ..output import OutputSet

    outputs = OutputSet()
    try:
        with args.clock.phase("write"):
            _write_plots(args, phenos, outputs)
        outputs.commit()
    except Exception as exc:  # whatever stops them: the tables stay (helper 61)
        print(
            f"lmmscan scan: warning: the plots were not written ({one_line(exc)}); "
            "the tables and null.json are complete",
            file=sys.stderr,
        )
    except KeyboardInterrupt as exc:
        exc.lmmscan_hint = (  # type: ignore[attr-defined]  # read by the entry point
            "the tables and null.json are complete, the plots not written"
        )
        raise
    finally:
        outputs.discard()


def _fit(args: argparse.Namespace, source: Any, phenos: list[Pheno], engine: Any) -> None:
    """Each phenotype's null model (LOCO fits its own, per chromosome, in the
    scan).  With --kinship, the first block is read meanwhile."""
    from ..memory import release_freed_heap
    from ..scan import fit_phenotypes

    if args.loco:
        # the null models are fitted per chromosome inside the scan, after the
        # kinship pass: a phenotype with nothing to fit is refused now, by name
        from ..model import check_varies

        for ph in phenos:
            check_varies(ph.analysed.y[ph.analysed.mask], ph.analysed.name, ph.analysed.W)
        return
    clock = args.clock
    analysed = [ph.analysed for ph in phenos]
    if args.kinship is not None and not args.resume and not args.dask_scheduler:
        engine.prefetch(np.flatnonzero(np.logical_or.reduce([a.mask for a in analysed])))
    K: Any = None
    with clock.phase("kinship"):
        if args.kinship is not None:
            from ..textio import read_kinship

            K = read_kinship(args.kinship, source.n_samples)
    computed = args.kinship is None and args.eigen is None
    seconds: dict[str, float] = {}
    with (
        progress(args, args.kinship_source.n_snps, "kinship")
        if computed
        else contextlib.nullcontext()
    ) as bar:
        nulls = fit_phenotypes(
            source,
            analysed,
            kinship=args.kinship_method if computed else K,
            eigen=args.eigen,
            options=engine.options,
            owned=True,
            path=args.kinship if args.kinship is not None else args.eigen,
            seconds=seconds,
            progress=None if bar is None else bar.update,
            bounds=lambda_bounds(args),
            kinship_source=args.kinship_source,
        )
    del K  # before the scanners: a whitening one adds an n x n factor
    release_freed_heap()
    for key, value in seconds.items():
        clock.seconds[key] = clock.seconds.get(key, 0.0) + value
    for ph, null in zip(phenos, nulls, strict=True):
        ph.null = null


def _block_path(args: argparse.Namespace, phenos: list[Pheno]) -> bool:
    """True for the local lockstep scan, the one --resume continues."""
    return not (
        args.loco or args.dask_scheduler or any(ph.null.complement is not None for ph in phenos)
    )


def _checkpoint(
    args: argparse.Namespace,
    source: Any,
    phenos: list[Pheno],
    ext: str,
    engine: Any,
    union: np.ndarray,
) -> Any:
    from .checkpoint import Checkpoint

    block = engine.block_size_for(int(union.sum()))
    sgemm = engine.rotates_in_single_precision([ph.null for ph in phenos])
    return Checkpoint(
        args, source, phenos, ext, block, lambda ph, fh: _table_writer(args, ph, fh), sgemm
    )


def _scan(
    args: argparse.Namespace, source: Any, phenos: list[Pheno], engine: Any, checkpoint: Any
) -> None:
    """Every phenotype in one pass over the genotypes, block by block, from the
    checkpoint's next SNP; a checkpoint after each block."""
    with progress(args, source.n_snps, "scan") as bar:
        bar.update(checkpoint.next_snp)
        engine.progress = bar.update
        reports = engine.scan(
            [ph.null for ph in phenos], _Rows(args, source, phenos, checkpoint),
            first=checkpoint.next_snp,
        )  # fmt: skip
    _finish(args, source, phenos, reports, engine, resumed=checkpoint.resumed_from > 0)


def _scan_to_files(
    args: argparse.Namespace, source: Any, phenos: list[Pheno], engine: Any, outputs: Any, ext: str
) -> None:
    """LOCO, a Dask cluster or a low-rank complement: the rows straight to
    the tables (no checkpoint)."""
    handles = []
    try:
        for ph in phenos:
            fh = open(outputs.add(ph.stem + ext), "w", encoding="utf-8", newline="\n")
            handles.append(fh)
            with args.clock.phase("write"):
                ph.writer = _table_writer(args, ph, fh)
        sink = _Rows(args, source, phenos)
        with progress(args, source.n_snps, "scan") as bar:
            engine.progress = bar.update
            if args.loco:
                data = [(ph.analysed.y, ph.analysed.covariates) for ph in phenos]
                reports = engine.scan_loco(
                    data,
                    sink,
                    method=args.kinship_method,
                    bounds=lambda_bounds(args),
                    kinship_source=args.kinship_source,
                    memory_limit=getattr(args, "loco_sums", None),
                    factors=getattr(args, "loco_factors", None),
                )
                for ph, report in zip(phenos, reports, strict=True):
                    ph.null = next(iter(report.null_models.values()))
            else:
                reports = engine.scan([ph.null for ph in phenos], sink)
    finally:
        for fh in handles:
            fh.close()
    _finish(args, source, phenos, reports, engine)


def _finish(
    args: argparse.Namespace,
    source: Any,
    phenos: list[Pheno],
    reports: list[Any],
    engine: Any,
    resumed: bool = False,
) -> None:
    """Each phenotype's report; a resumed scan's filter counts are those of
    every block, the ones before the checkpoint included.  The run's scan
    seconds."""
    for ph, report in zip(phenos, reports, strict=True):
        if resumed:
            report.filters = ph.filters
        ph.filters = report.filters
        ph.report = report
        _require_kept(ph.filters, source)
    args.clock.scan = dict(engine.seconds)


def _track_best(ph, block_snps, log10p, cols, stats, keep: int = 10) -> None:
    """The top ``keep`` SNPs by the main p, ties in file order whatever the
    blocks (ph.best stays sorted; blocks arrive in file order and both sorts
    are stable), and each untestable SNP counted by reason."""
    from ..pvalues import untestable_reasons

    for reason, count in untestable_reasons(cols, stats).items():
        ph.untestable[reason] = ph.untestable.get(reason, 0) + count
    main = ph.writer.main_p
    lp = np.asarray(log10p.get(main, []), dtype=np.float64)
    if lp.size == 0:
        return
    finite = np.flatnonzero(np.isfinite(lp))  # a NaN p is no hit (nor "p = inf")
    top = finite[np.argsort(-lp[finite], kind="stable")[:keep]]
    beta = np.asarray(cols.get("beta", np.full(lp.size, np.nan)))
    se = np.asarray(cols.get("se", np.full(lp.size, np.nan)))
    for i in top.tolist():
        row = block_snps.row(i)
        ph.best.append(
            (
                float(lp[i]),
                str(row["rs"]),
                str(row["chr"]),
                int(row["ps"]),
                float(beta[i]),
                float(se[i]),
            )
        )
    ph.best.sort(key=lambda t: -t[0])
    del ph.best[keep:]


def _collect(args, ph, block_snps, log10p) -> None:
    """Keep what lambda_GC (and, with --plot, the figures) need of each block."""
    lp = np.asarray(log10p.get(ph.writer.main_p, []), dtype=np.float32)
    ph.log10p.append(lp)
    if getattr(args, "plot", False):
        ph.where.append(block_snps.frame(["chr", "rs", "ps"]))


def _results(ph) -> dict:
    """lambda_GC, genome-wide significant count and the top 10 hits of a phenotype."""
    from ..pvalues import GENOME_WIDE, lambda_gc

    lp = np.concatenate(ph.log10p) if ph.log10p else np.zeros(0, dtype=np.float32)
    finite = lp.astype(np.float64)
    finite = finite[np.isfinite(finite)]
    p = np.power(10.0, -finite)
    n_nan = int(np.isnan(lp).sum())
    return {
        "test": ph.writer.main_p,
        # rows without a main p (NaN); "untestable": every test's by reason
        # (pvalues.UNTESTABLE), counted over the rows this run wrote
        "n_without_p": n_nan,
        "untestable": dict(ph.untestable),
        "lambda_gc": lambda_gc(p) if p.size else float("nan"),
        "n_genome_wide_significant": int((finite > -np.log10(GENOME_WIDE)).sum()),
        "genome_wide_threshold": GENOME_WIDE,
        "top_hits": [
            {
                "chr": chr_,
                "rs": rs,
                "ps": ps,
                "beta": beta,
                "se": se,
                # below ~1e-323 p is no double: None (JSON null), log10p holds it
                "p": float(10.0**-lp) if 10.0**-lp > 0 else None,
                "log10p": lp,
            }
            for lp, rs, chr_, ps, beta, se in ph.best
        ],
    }


def _write_plots(args, phenos, outputs) -> None:
    """PREFIX.manhattan.png and PREFIX.qq.png (scan --plot)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from .. import plot

    for ph in phenos:
        if ph.where:
            table = pd.concat(ph.where, ignore_index=True)
        else:
            table = pd.DataFrame({"chr": [], "rs": [], "ps": []})
        lp = np.concatenate(ph.log10p).astype(np.float64) if ph.log10p else np.zeros(0)
        table[ph.writer.main_p] = np.power(10.0, -lp)  # 0 below 1e-308: lp drawn there
        for kind, draw in (("manhattan", plot.manhattan), ("qq", plot.qq)):
            fig = draw(table, ph.writer.main_p, title=ph.analysed.name, log10p=lp)
            name = f"{ph.stem}.{kind}.png"
            with naming(name), open(outputs.add(name), "wb") as fh:
                fig.savefig(fh, format="png", dpi=100)
            plt.close(fig)


def _check_scan_flags(args: argparse.Namespace) -> None:
    from ..model import MAX_L_MAX, too_large_l_max
    from ..output import no_beta_for_ssf

    given = [
        f
        for f, v in (("--kinship", args.kinship), ("--eigen", args.eigen), ("--loco", args.loco))
        if v
    ]
    if len(given) > 1:
        raise InputError(f"give at most one of --kinship, --eigen and --loco, not {given}")
    if args.dask_scheduler is not None and not args.dask_scheduler.strip():  # ran locally
        raise InputError("--dask-scheduler needs the scheduler's address (tcp://HOST:PORT)")
    if args.loco and args.dask_scheduler:
        raise InputError("--loco does not run on --dask-scheduler yet")
    if args.resume and (args.loco or args.dask_scheduler):
        flag = "--loco" if args.loco else "--dask-scheduler"
        raise InputError(
            f"--resume works for the block scan only, not with {flag}: rerun without --resume"
        )
    if args.format == "gwas-ssf" and args.test == "lrt":
        raise InputError(no_beta_for_ssf("--format gwas-ssf", "--test lrt"))
    if not args.lmin < args.lmax:
        raise InputError(f"--lmin ({args.lmin:g}) must be below --lmax ({args.lmax:g})")
    if args.lmax > MAX_L_MAX:
        raise InputError(too_large_l_max(args.lmax, "--lmax"))
    basis = (
        "--kinship" if args.kinship is not None else "--eigen" if args.eigen is not None else None
    )
    for flag, value, what in (
        ("--kinship-method", args.kinship_method, "how a kinship computed here is made"),
        ("--ksnps", args.ksnps, "the variants of a kinship computed here"),
    ):
        if value is not None and basis is not None:
            raise InputError(f"{flag} chooses {what}; with {basis} there is none: leave {flag} out")
    if args.kinship_method is None:
        args.kinship_method = "centered"


def lambda_bounds(args: argparse.Namespace) -> Any:
    """GEMMA's -lmin, -lmax and -region."""
    from ..model import LambdaBounds

    return LambdaBounds(args.lmin, args.lmax, args.region)


def _require_kept(filters, source: Any) -> None:
    if filters.kept == 0:
        raise InputError(
            f"no SNP left after filtering ({filters.removed_text()} of "
            f"{filters.total}); {filters_to_relax(filters.removed)}{read_as_missing(source)}"
        )


def _write_nulls(args, source, phenos, outputs) -> None:
    from ..output import null_summary, write_json

    for ph in phenos:
        with args.clock.phase("write"):
            path = outputs.add(ph.stem + ".null.json")
        data = null_summary(
            ph.null,
            ph.report,
            phenotype=ph.analysed.name,
            n_snps_total=source.n_snps,
            lambda_mode=args.lambda_mode,
            seconds=args.clock.phases(ph.report.seconds),
        )
        if getattr(args, "variant_lists", None):
            data["variant_lists"] = args.variant_lists
        if getattr(args, "precision", "double") != "double":
            data["precision"] = args.precision
        skipped = skipped_variants(source)
        if skipped:
            data["skipped_variants"] = skipped
        if getattr(args, "info_filter", None):
            data["info_filter"] = args.info_filter
        memory = memory_report(args)
        if memory is not None:
            data["memory"] = memory
        data["warnings"] += reader_warnings(source)
        ph.results = data["results"] = _results(ph)
        with naming(ph.stem + ".null.json"), open(path, "w", encoding="utf-8") as fh:
            write_json(fh, data)


def _print_summary(args, source, phenos, resume) -> None:
    from ..output import EXTENSIONS

    for line in describe_variant_lists(args) + describe_skipped(args, source):
        print(line)
    for warning in reader_warnings(source):
        print(f"warning: {warning}")
    for ph in phenos:
        null, c = ph.null, ph.filters
        print(f"phenotype: {ph.analysed.name}")
        print(
            f"  individuals analysed: {null.n_analyzed} of {source.n_samples}; covariates: "
            f"{null.n_covariates}{' (intercept added)' if null.intercept_added else ''}"
        )
        print(f"  SNPs tested: {c.kept} of {c.total} (removed: {c.removed_text()})")
        print(
            f"  pve = {null.pve:.4g} ± {null.pve_se:.2g}; lambda (REML) = {null.lambda_:.4g}; "
            f"vg = {null.vg:.4g}, ve = {null.ve:.4g}"
        )
        for warning in null.warnings:
            print(f"  warning: {warning}")
        res = ph.results
        untestable = ", ".join(f"{k} {v}" for k, v in res["untestable"].items())
        if untestable:
            print(f"  SNPs with a NaN p-value, by reason: {untestable} (see docs/edge-cases.md)")
        print(
            f"  lambda_GC = {res['lambda_gc']:.3f}; genome-wide significant "
            f"({ph.writer.main_p} < 5e-8): {res['n_genome_wide_significant']}"
        )
        if ph.best:
            print(f"  top {len(ph.best)} by {ph.writer.main_p}:")
            for lp, rs, chr_, ps, beta, se in ph.best:
                p = 10.0 ** (-lp) if lp < 300 else None
                ptext = f"{p:.3g}" if p is not None else f"1e-{lp:.1f}"
                effect = f"  beta {beta: .4g} se {se:.3g}" if np.isfinite(beta) else ""
                print(f"    {rs:<16} chr {chr_:<4} ps {ps:<11}{effect}  p = {ptext}")
        print(f"  wrote {ph.stem}{EXTENSIONS[args.format]} and {ph.stem}.null.json")
    if args.lambda_mode == "null":
        print("every SNP tested at the null model's lambda (--lambda null)")
    if resume is not None and resume.resumed_from:
        print(f"resumed at SNP {resume.resumed_from + 1} of {source.n_snps} from {resume.path}")
    seconds = args.clock.phases(args.clock.scan)
    total = seconds.pop("total")
    if not seconds["startup"]:
        del seconds["startup"]  # main() called from Python
    # the names of PREFIX.null.json's "seconds", so the two can be read side by side
    parts = ", ".join(f"{k} {v:.2f}" for k, v in seconds.items())
    print(f"seconds: {parts}; total {total:.2f}")
    memory = memory_line(args)
    if memory:
        print(memory)
    print(f"done in {total:.1f} s")
