"""The ``lmmscan`` command: ``kinship``, ``scan`` and ``demo``.

Bad input ends the run with one line on stderr naming the file (and line and
column where they apply) and exit status 2; nothing is left under an output
name (every output is written under a temporary name beside it and renamed
when the whole run has succeeded).

``scan`` keeps its table, while it runs, as ``PREFIX.assoc.txt.partial``
(the format's extension + ``.partial``) and, after every completed block,
writes a checkpoint ``PREFIX.resume.json`` (see :class:`_Resume`): an
interrupted or killed scan continues with ``--resume`` and ends with the
same bytes as an uninterrupted one.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# OpenBLAS's idle threads spin for 2^28 cycles (~0.1 s) after each BLAS call
# before they sleep.  A scan alternates BLAS (the rotation) with its own
# threads (the tests), which the spinning threads then slow: ~25 ms per block
# at n = 4,852.  2^20 cycles (~0.4 ms) removes that and left the
# eigendecomposition's pace unchanged.  OpenBLAS reads the variable when it is
# loaded, so this holds for the command (numpy is not loaded yet), never for a
# user's own session, and a value the user set is kept.
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

import numpy as np  # noqa: E402

from ._errors import InputError, LmmscanError  # noqa: E402
from .output import FORMATS  # noqa: E402

KINSHIP_METHODS = ("centered", "standardized")  # GEMMA -gk 1, -gk 2 (lmmscan.kinship)

EXIT_INPUT = 2
EXIT_INTERRUPTED = 130

_T_IMPORT = time.perf_counter()  # start-up fallback where /proc is not available


# ----------------------------------------------------------------- argument parsing


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2, like every bad input)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=100)


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return v


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (v == v) or v > 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number <= 1")
    return v


def _columns(text: str) -> list[int]:
    try:
        cols = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give column numbers separated by commas, e.g. 1,3,5"
        ) from None
    if not cols or min(cols) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: columns are numbered from 1")
    if len(set(cols)) != len(cols):
        raise argparse.ArgumentTypeError(f"{text!r}: a column is named twice")
    return cols


def _add_genotype_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("genotypes (one of)")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--bfile",
        metavar="PREFIX",
        help="PLINK 1 binary fileset PREFIX.bed/.bim/.fam; the .bim column-5 allele is "
        "counted (GEMMA -bfile). Required: --bfile or --bimbam-geno",
    )
    src.add_argument(
        "--bimbam-geno",
        metavar="FILE",
        help="BIMBAM mean-genotype file, plain or gzipped: rs allele1 allele0 then one "
        "dosage of allele1 per individual, separated by spaces, tabs or commas, NA missing "
        "(GEMMA -g). Required: --bfile or --bimbam-geno",
    )
    g.add_argument(
        "--bimbam-anno",
        metavar="FILE",
        help="BIMBAM annotation file (rs pos chr [cM]) giving chr and ps; without it, or "
        "for SNPs it lacks, chr is -9 and ps -9 (GEMMA -a). Default: none",
    )


def _add_sample_args(p: argparse.ArgumentParser, multi: bool) -> None:
    g = p.add_argument_group("individuals")
    g.add_argument(
        "--pheno",
        metavar="FILE",
        help="phenotype file: one row per individual in genotype-file order, columns "
        "separated by spaces, tabs or commas, NA missing (-9 is a value) (GEMMA -p). "
        "Default: the .fam phenotypes (NA and -9 missing); required with --bimbam-geno "
        "for scan",
    )
    if multi:
        g.add_argument(
            "--pheno-col",
            metavar="N[,N...]",
            type=_columns,
            default=[1],
            help="phenotype column(s), 1-based; with --bfile and no --pheno, column N is "
            ".fam column 5+N (GEMMA -n). Several columns (1,3,5) give one output set per "
            "column, PREFIX.<N>.assoc.txt; columns with the same analysed individuals share "
            "one eigendecomposition and one rotation of the genotypes. Default: 1",
        )
    else:
        g.add_argument(
            "--pheno-col",
            metavar="N",
            type=_positive_int,
            default=1,
            help="phenotype column whose non-missing individuals the SNP filters use "
            "(GEMMA -n). Default: 1",
        )
    g.add_argument(
        "--covar",
        metavar="FILE",
        help="covariate file: one row per individual, NA missing; individuals with any NA "
        "are dropped, and a column of 1s is appended last unless a column is constant "
        "(GEMMA -c). Default: intercept only",
    )


def _add_filter_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("SNP filters (on the analysed individuals, as GEMMA)")
    g.add_argument(
        "--maf",
        metavar="X",
        type=float,
        default=0.01,
        help="drop SNPs with allele frequency < X or > 1-X; a negative X disables it "
        "(GEMMA -maf; -notsnp is --maf -1). Default: 0.01",
    )
    g.add_argument(
        "--miss",
        metavar="Y",
        type=_fraction,
        default=0.05,
        help="drop SNPs missing in more than a fraction Y of individuals (GEMMA -miss). "
        "Default: 0.05",
    )
    g.add_argument(
        "--r2",
        metavar="R",
        type=_fraction,
        default=0.9999,
        help="with covariates, drop SNPs whose R^2 on them exceeds R (GEMMA -r2). Default: 0.9999",
    )


def _add_run_args(p: argparse.ArgumentParser, eigh: bool = False) -> None:
    g = p.add_argument_group("run")
    g.add_argument(
        "--threads",
        metavar="N",
        type=_positive_int,
        default=None,
        help="threads for the per-SNP tests and for BLAS. Default: the usable cores",
    )
    if eigh:
        g.add_argument(
            "--eigh-driver",
            choices=["evr", "evd"],
            default="evr",
            help="LAPACK eigensolver of the kinship: evr (dsyevr, memory 2 x 8n^2 bytes) or "
            "evd (dsyevd, 2 x 8n^2 more; as fast on full-rank kinships, up to 7x faster on "
            "one from fewer SNPs than samples). Default: evr",
        )
    g.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar and no summary (errors are still printed). Default: a "
        "progress bar on stderr when it is a terminal, and a summary on stdout",
    )


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="lmmscan",
        formatter_class=_Formatter,
        description="Linear mixed model association scans that reproduce GEMMA 0.98.5.\n\n"
        "  lmmscan kinship   relatedness matrix (GEMMA -gk 1 / -gk 2)\n"
        "  lmmscan scan      null model and per-SNP tests (GEMMA -lmm 1/2/3/4)\n"
        "  lmmscan eigen     eigendecomposition of a kinship, saved for reuse (GEMMA -eigen)\n"
        "  lmmscan plot      Manhattan and QQ plots of an association table\n"
        "  lmmscan demo      the whole job on a small simulated study shipped with lmmscan\n\n"
        "Run 'lmmscan COMMAND --help' for each command's flags and defaults.",
        epilog="Bad input gives a one-line error naming the file and exit status 2.",
    )
    parser.add_argument("--version", action="version", version=f"lmmscan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    k = sub.add_parser(
        "kinship",
        formatter_class=_Formatter,
        help="compute a kinship matrix (GEMMA -gk)",
        description="GEMMA's relatedness matrix over every individual of the genotype file, "
        "from the SNPs that pass GEMMA's filters on the analysed individuals.\n\n"
        "example: lmmscan kinship --bfile data/study --out study.cXX.txt",
    )
    _add_genotype_args(k)
    _add_sample_args(k, multi=False)
    k.add_argument(
        "--method",
        choices=KINSHIP_METHODS,
        default="centered",
        help="centered: GEMMA -gk 1 (.cXX); standardized: GEMMA -gk 2 (.sXX). Default: centered",
    )
    _add_filter_args(k)
    _add_run_args(k)
    k.add_argument(
        "--out",
        metavar="FILE",
        required=True,
        help="output: FILE ending in .npy is written as numpy, anything else as GEMMA's "
        "tab-separated %%.10g text (GEMMA -o/-outdir); .npy is exact and much faster to "
        "write and read for thousands of individuals. Required",
    )
    k.set_defaults(func=run_kinship)

    s = sub.add_parser(
        "scan",
        formatter_class=_Formatter,
        help="fit the null model and test every SNP (GEMMA -lmm)",
        description="Fit the null linear mixed model and test each SNP, as GEMMA -lmm does.\n\n"
        "Writes PREFIX.assoc.txt (GEMMA's columns and number formats, or --format) and "
        "PREFIX.null.json (the null model, SNP counts per filter, seconds per phase).\n\n"
        "example: lmmscan scan --bfile data/study --covar covar.txt --test all --out study",
    )
    _add_genotype_args(s)
    _add_sample_args(s, multi=True)
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
        default="centered",
        help="how to compute the kinship when --kinship is not given (GEMMA -gk 1 / -gk 2). "
        "Default: centered",
    )
    g.add_argument(
        "--loco",
        action="store_true",
        help="leave one chromosome out: each chromosome's SNPs are tested with a kinship of "
        "the other chromosomes (--kinship-method), one eigendecomposition each; needs "
        "chromosome names (.bim, or --bimbam-anno) (GEMMA -loco, every chromosome in one "
        "run). PREFIX.null.json describes the first chromosome's null model. Default: off",
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
    _add_filter_args(s)
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
        type=_positive_int,
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
    _add_run_args(s, eigh=True)
    s.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        help="scan on a Dask cluster (e.g. tcp://10.0.0.1:8786): the null model is sent to "
        "every worker once and each task reads its own SNPs from the genotype file, which "
        "the workers must see at the same path (pip install 'lmmscan[dask]'). Default: local",
    )
    s.set_defaults(func=run_scan)

    e = sub.add_parser(
        "eigen",
        formatter_class=_Formatter,
        help="eigendecomposition of a kinship, saved with its individuals for reuse",
        description="Restrict a kinship to the analysed individuals (those with the phenotype "
        "and covariates), double-centre it and decompose it, as GEMMA does before -lmm; save "
        "U, the eigenvalues and the individuals' IDs to FILE.npz for 'lmmscan scan --eigen'.\n\n"
        "example: lmmscan eigen --bfile data/study --kinship study.cXX.txt --out study.eig.npz",
    )
    _add_genotype_args(e)
    _add_sample_args(e, multi=False)
    e.add_argument(
        "--kinship",
        metavar="FILE",
        required=True,
        help="kinship over every individual of the genotype file: GEMMA text or .npy. Required",
    )
    e.add_argument("--out", metavar="FILE.npz", required=True, help="output file. Required")
    _add_run_args(e, eigh=True)
    e.set_defaults(func=run_eigen)

    pl = sub.add_parser(
        "plot",
        formatter_class=_Formatter,
        help="Manhattan and QQ plots of an association table",
        description="Draw a Manhattan plot (chromosomes alternated, genome-wide 5e-8 and "
        "suggestive 1e-5 lines, top hits labelled) and a QQ plot (95%% band, lambda_GC) of "
        "a table written by 'lmmscan scan' or GEMMA (.assoc.txt), side by side in one PNG.\n\n"
        "example: lmmscan plot study.assoc.txt --out study.png",
    )
    pl.add_argument("table", metavar="TABLE", help="GEMMA-format association table (.assoc.txt)")
    pl.add_argument("--out", metavar="FIG", required=True, help="output image (.png). Required")
    pl.add_argument(
        "--p-column",
        metavar="NAME",
        default=None,
        help="p-value column to plot. Default: the first of p_wald, p_lrt, p_score",
    )
    pl.set_defaults(func=run_plot)

    d = sub.add_parser(
        "demo",
        formatter_class=_Formatter,
        help="run kinship, null model and scan on a small simulated study",
        description="The whole job end to end on a small simulated study shipped inside "
        "lmmscan (PLINK files, two phenotypes with missing values, covariates, three "
        "chromosomes): prints each command, then the summary.",
    )
    d.add_argument(
        "--out",
        metavar="DIR",
        default="lmmscan-demo",
        help="directory for the demo's inputs and outputs. Default: ./lmmscan-demo",
    )
    d.add_argument("--quiet", action="store_true", help="no progress bar. Default: off")
    d.set_defaults(func=run_demo)
    return parser


# ----------------------------------------------------------------- entry point


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _on_sigterm(signum, frame):  # pragma: no cover - signal timing
    raise KeyboardInterrupt


def _process_age() -> float | None:
    """Seconds since this process started (Linux /proc, 10 ms resolution), else None."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):  # pragma: no cover - not Linux
        return None


class _Clock:
    """Wall seconds per phase of one command, for the summary and PREFIX.null.json.

    ``startup`` is the time from the process's start to :func:`main` (the
    interpreter and the imports) when lmmscan runs as a command, 0 when
    :func:`main` is called from Python.  ``scan`` collects the scan's own
    phases (read, filter, rotate, tests) over every phenotype.
    """

    def __init__(self, t_main: float, startup: float) -> None:
        self.t_main = t_main
        self.seconds = dict.fromkeys(
            ("startup", "inputs", "kinship", "eigen", "null_fit", "write"), 0.0
        )
        self.seconds["startup"] = startup
        self.scan: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def total(self) -> float:
        return self.seconds["startup"] + time.perf_counter() - self.t_main


def _hint(exc: BaseException) -> str:
    hint = getattr(exc, "lmmscan_hint", "")
    return f"; {hint}" if hint else ""


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, 2 for bad input, 130 interrupted)."""
    t_main = time.perf_counter()
    startup = 0.0
    if argv is None:  # run as a command: from the process's start
        age = _process_age()
        startup = age if age is not None else t_main - _T_IMPORT
    parser = build_parser()
    args = parser.parse_args(argv)
    args.clock = _Clock(t_main, startup)
    previous = None
    with contextlib.suppress(ValueError):  # not in the main thread
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return int(args.func(args) or 0)
    except LmmscanError as exc:
        print(f"lmmscan {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_INPUT
    except (OSError, MemoryError) as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        msg = exc.strerror if getattr(exc, "strerror", None) else _one_line(exc)
        print(f"lmmscan {args.command}: error: {where}{msg}{_hint(exc)}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt as exc:
        text = _hint(exc)[2:] or "no output written"
        print(f"lmmscan {args.command}: interrupted; {text}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run() -> None:
    """The ``lmmscan`` command (and ``python -m lmmscan``): :func:`main`, then a fast exit.

    When main() returns, every output file is closed and in place.  The
    interpreter's teardown after that (finalising pandas' and scipy's modules,
    stopping two OpenBLAS thread pools) took 0.15-0.2 s of a 1.9 s mouse_hs1940
    scan, so the process ends with os._exit once stdout, stderr and logging
    are flushed.  Python callers of main() are not affected.
    """
    status = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: nothing more can be said
        status = status or 1
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    os._exit(status)


# ----------------------------------------------------------------- shared steps


def _check_out_dir(out: str) -> None:
    parent = Path(out).parent
    if not parent.is_dir():
        raise InputError("output directory does not exist", path=str(parent))


def _open_genotypes(args):
    if args.bfile is not None:
        from .plink import read_plink

        if args.bimbam_anno is not None:
            raise InputError("--bimbam-anno goes with --bimbam-geno, not --bfile")
        return read_plink(args.bfile)
    from .bimbam import read_bimbam

    return read_bimbam(args.bimbam_geno, args.bimbam_anno)


def _phenotypes(args, source, columns: list[int], required: bool) -> np.ndarray | None:
    """(samples, len(columns)) phenotypes, NaN missing; None when there is none to read."""
    if args.pheno is not None:
        from .textio import read_pheno

        return read_pheno(args.pheno, columns, source.n_samples)
    if hasattr(source, "fam_phenotypes"):
        return source.fam_phenotypes(columns)
    if required:
        raise InputError("--bimbam-geno needs --pheno (BIMBAM files carry no phenotype)")
    return None


def _covariates(args, source) -> np.ndarray | None:
    if args.covar is None:
        return None
    from .textio import read_covar

    return read_covar(args.covar, source.n_samples)


def _pheno_name(args, col: int) -> str:
    if args.pheno is not None:
        return f"{args.pheno} column {col}"
    return f"{args.bfile}.fam phenotype {col} (column {5 + col})"


def _analysed(args, y, cov, col):
    """GEMMA's analysed individuals for one phenotype, errors naming the input."""
    from .model import analysed_samples

    try:
        return analysed_samples(y, cov)
    except InputError as exc:
        raise InputError(f"{_pheno_name(args, col)}: {exc}") from None


@contextlib.contextmanager
def _blas_threads(n: int | None, driver: str | None = None):
    """BLAS threads capped at n (None: BLAS's own), and the eigensolver."""
    with contextlib.ExitStack() as stack:
        if driver is not None:
            from .model import eigh_driver

            stack.enter_context(eigh_driver(driver))
        if n is not None:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=n))
        yield


def _progress(args, total: int, desc: str):
    from tqdm import tqdm

    disable = args.quiet or not sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit="SNP",
        unit_scale=True,
        file=sys.stderr,
        disable=disable,
        leave=False,
        dynamic_ncols=True,
    )


def _iter_blocks(
    source,
    block_size: int,
    samples: np.ndarray | None,
    bar,
    seconds: dict,
    first: int = 0,
    reader=None,
):
    """(start, stop, block) from SNP ``first`` on, the next block read on a
    thread meanwhile; ``seconds["read"]`` gets the time spent waiting.
    ``reader``: a :class:`lmmscan.scan.ReadAhead` started earlier, used if it
    reads these blocks (else closed)."""
    from .scan import ReadAhead

    reader = ReadAhead.reuse(reader, source, block_size, samples, first)
    for start, stop, X in reader.blocks(seconds):
        yield start, stop, X
        bar.update(stop - start)


def _early_reader(args, source, groups):
    """The scan's reader, started before the kinship text is read and the null
    models are fitted, so that the first block is read meanwhile (a fresh
    block scan with --kinship; None otherwise)."""
    if args.kinship is None or args.resume or args.loco or args.dask_scheduler:
        return None
    from .scan import ReadAhead

    return ReadAhead(source, _block_size(args, source, groups), _union_samples(source, groups))


# ----------------------------------------------------------------- kinship


def run_kinship(args) -> int:
    from .genotypes import default_block_size
    from .kinship import KinshipAccumulator
    from .textio import write_kinship

    t0 = time.perf_counter()
    _check_out_dir(args.out)
    with _blas_threads(args.threads):
        source = _open_genotypes(args)
        Y = _phenotypes(args, source, [args.pheno_col], required=False)
        cov = _covariates(args, source)
        if Y is None:
            y = np.zeros(source.n_samples)
        else:
            y = Y[:, 0]
        mask, _, W, _, _ = _analysed(args, y, cov, args.pheno_col)
        acc = KinshipAccumulator(
            source.n_samples,
            args.method,
            mask=mask,
            W=W if W.shape[1] > 1 else None,
            maf=args.maf,
            miss=args.miss,
            r2=args.r2,
        )
        seconds = {"read": 0.0}
        block = default_block_size(source.n_samples)
        with _progress(args, source.n_snps, "kinship") as bar:
            for _, _, X in _iter_blocks(source, block, None, bar, seconds):
                acc.add(X)
        K = acc.result()
        write_kinship(args.out, K)
    if not args.quiet:
        c = acc.counts
        removed = ", ".join(f"{k} {v}" for k, v in c.removed.items())
        print(
            f"kinship ({args.method}): {source.n_samples} x {source.n_samples} from {c.kept} "
            f"of {c.total} SNPs (removed: {removed}); filters on {int(mask.sum())} "
            f"individuals"
        )
        print(f"wrote {args.out} ({time.perf_counter() - t0:.1f} s)")
    return 0


# ----------------------------------------------------------------- scan


@dataclass
class _Pheno:
    col: int
    y: np.ndarray
    mask: np.ndarray
    W: np.ndarray
    cov: np.ndarray | None = None
    null: object = None
    scanner: object = None
    writer: object = None
    report: object = None
    stem: str = ""
    best: list = field(default_factory=list)  # (log10p, rs, chr, ps, beta, se) of the top hits
    n_rows: int = 0
    log10p: list = field(default_factory=list)  # main -log10 p per block (lambda_GC, plots)
    where: list = field(default_factory=list)  # chr, rs, ps per block (only with --plot)
    results: dict | None = None  # _results(), once the scan is done


@dataclass
class _Group:
    mask: np.ndarray
    phenos: list
    rows: np.ndarray = None  # positions of this group's samples in the union read
    report: object = None


def run_scan(args) -> int:
    from .output import EXTENSIONS, OutputSet

    clock = args.clock
    _check_out_dir(args.out)
    outputs = OutputSet()
    resume = reader = None
    try:
        with _blas_threads(args.threads, args.eigh_driver):
            with clock.phase("inputs"):
                source = _open_genotypes(args)
                phenos, groups = _load_samples(args, source)
            reader = _early_reader(args, source, groups)
            K = None
            with clock.phase("kinship"):
                if args.kinship is not None:
                    from .textio import read_kinship

                    K = read_kinship(args.kinship, source.n_samples)
                kinships = _group_kinships(args, source, groups, K)
            _fit_nulls(args, groups, kinships, K)
            del kinships, K  # before the scanners: a whitening one adds an n x n factor
            _make_scanners(args, groups)
            single = len(phenos) == 1
            for ph in phenos:
                ph.stem = args.out if single else f"{args.out}.{ph.col}"
            ext = EXTENSIONS[args.format]
            if _block_path(args, groups):
                resume = _Resume(args, source, groups, phenos, ext)
                try:
                    _scan_blocks(args, source, groups, resume, reader)
                finally:
                    resume.close()
            else:
                if args.resume:
                    raise InputError(
                        "--resume works for the block scan only, not with a "
                        "low-rank --eigen: rerun without --resume"
                    )
                handles = _open_writers(args, phenos, outputs, ext)
                try:
                    _scan_each(args, source, groups)
                finally:
                    for fh in handles:
                        fh.close()
            _write_nulls(args, source, phenos, outputs)
            if args.plot:
                with clock.phase("write"):
                    _write_plots(args, phenos, outputs)
        if resume is not None:
            resume.commit_tables()
        outputs.commit()
        if resume is not None:
            resume.remove()
    except BaseException as exc:
        if resume is not None:
            resume.abandon(exc)
        raise
    finally:
        if reader is not None:
            reader.close()  # unused (not a block scan) or stopped by an error
        outputs.discard()
    if not args.quiet:
        _print_summary(args, source, phenos, resume)
    return 0


def _block_path(args, groups) -> bool:
    """True for the block scan (_scan_blocks), the one --resume continues."""
    return not (
        args.loco
        or args.dask_scheduler
        or any(ph.null.complement is not None for g in groups for ph in g.phenos)
    )


# ----------------------------------------------------------------- scan --resume

_CHECKPOINT_KIND = "lmmscan scan checkpoint"
_CHECKPOINT_VERSION = 1
_SIDECAR = np.dtype([("snp", "<i8"), ("log10p", "<f4")])  # one record per table row


class _Appender:
    """A file written at its end; ``offset`` (resuming) cuts it to that many bytes first."""

    def __init__(self, path: Path, offset: int | None = None) -> None:
        self.path = path
        if offset is None:
            self._fh = open(path, "wb")
            return
        try:
            self._fh = open(path, "r+b")
        except FileNotFoundError:
            raise InputError(
                "the checkpoint's partial file is missing; rerun without --resume to start over",
                path=str(path),
            ) from None
        size = os.fstat(self._fh.fileno()).st_size
        if size < offset:
            self._fh.close()
            raise InputError(
                f"{size} bytes, but the checkpoint says {offset}: the file was cut "
                "short; rerun without --resume to start over",
                path=str(path),
            )
        self._start(offset)
        self._fh.truncate(offset)
        self._fh.seek(offset)

    def _start(self, offset: int) -> None:
        pass

    def write(self, data: bytes) -> None:
        self._fh.write(data)

    def sync(self) -> int:
        """Flush to the disk; returns the file's length."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        return self._fh.tell()

    def close(self) -> None:
        self._fh.close()


class _TableFile(_Appender):
    """A partial table as TableWriter's file: text in, UTF-8 bytes out.  When
    resuming, the header the writer writes first is checked against the one
    already in the file and dropped."""

    _skip = b""

    def _start(self, offset: int) -> None:
        self._skip = self._fh.readline(1 << 20)
        if not self._skip.endswith(b"\n") or len(self._skip) > offset:
            self._fh.close()
            raise InputError(
                "the partial table has no complete header line; rerun without "
                "--resume to start over",
                path=str(self.path),
            )

    def write(self, text: str) -> None:  # type: ignore[override]
        data = text.encode("utf-8")
        if self._skip:
            n = min(len(self._skip), len(data))
            if data[:n] != self._skip[:n]:
                raise InputError(
                    "the partial table's header is not this run's; rerun without "
                    "--resume to start over",
                    path=str(self.path),
                )
            self._skip, data = self._skip[n:], data[n:]
        self._fh.write(data)


def _test_stop() -> tuple[int, str] | None:
    """Private test hook, LMMSCAN_TEST_STOP_AFTER_BLOCKS: ``k`` raises
    KeyboardInterrupt once the checkpoint holds k blocks; ``k:kill`` writes the
    rows of block k + 1 and kills the process (SIGKILL) before its checkpoint."""
    text = os.environ.get("LMMSCAN_TEST_STOP_AFTER_BLOCKS", "")
    k, _, mode = text.partition(":")
    if not k.strip().isdigit():
        return None
    return int(k), mode or "interrupt"


def _fingerprint(args, source, phenos, block: int) -> dict:
    """What must be the same for --resume to continue a checkpoint."""
    from . import __version__

    files = {}
    if args.bfile is not None:
        for ext in ("bed", "bim", "fam"):
            files[ext] = f"{args.bfile}.{ext}"
    else:
        files["bimbam-geno"] = args.bimbam_geno
        files["bimbam-anno"] = args.bimbam_anno
    for name in ("pheno", "covar", "kinship", "eigen"):
        files[name] = getattr(args, name)

    def stamp(path):
        if path is None:
            return None
        st = os.stat(path)
        return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}

    computed = args.kinship is None and args.eigen is None
    return {
        "lmmscan": __version__,
        "files": {name: stamp(path) for name, path in files.items()},
        "options": {
            "--pheno-col": list(args.pheno_col),
            "--test": args.test,
            "--lambda": args.lambda_mode,
            "--maf": args.maf,
            "--miss": args.miss,
            "--r2": args.r2,
            "--format": args.format,
            "--kinship-method": args.kinship_method if computed else None,
            "--block-size": block,
            "--eigh-driver": args.eigh_driver if args.eigen is None else None,
        },
        "n_samples": source.n_samples,
        "n_snps": source.n_snps,
        "null_lambda": [float(ph.null.lambda_) for ph in phenos],
    }


def _close_lambdas(a: object, b: list[float], rtol: float = 1e-8) -> bool:
    """Null lambdas equal but for the last bits, as the eigendecomposition gives
    them with another number of BLAS threads or another BLAS."""
    try:
        return len(a) == len(b) and bool(np.allclose(a, b, rtol=rtol, atol=0.0))
    except (TypeError, ValueError):
        return False


def _differences(old: object, new: dict) -> list[str]:
    if not isinstance(old, dict):
        return ["it has no fingerprint"]
    out = []
    for key in new:
        a, b = old.get(key), new[key]
        if key in ("files", "options") and isinstance(a, dict):
            for name in b:
                x, y = a.get(name), b[name]
                if x == y:
                    continue
                if key == "options":
                    out.append(f"{name} was {x}, now {y}")
                elif x is None or y is None or x.get("path") != y.get("path"):
                    out.append(f"the {name} file was {x and x.get('path')}, now {y and y['path']}")
                else:
                    out.append(f"{y['path']} has changed since (size or modification time)")
        elif key == "null_lambda":
            if not _close_lambdas(a, b):
                out.append(f"the null model's lambda was {a}, now {b}")
        elif a != b:
            out.append(f"{'the lmmscan version' if key == 'lmmscan' else key} was {a}, now {b}")
    return out


class _Resume:
    """The checkpoint of a block scan, so that an interrupted scan can continue.

    Files, while a scan runs: ``PREFIX.resume.json`` (rewritten atomically
    after every completed block), and per phenotype the partial table
    ``STEM.EXT.partial`` and ``STEM.EXT.partial.lp`` (each table row's SNP
    index and main -log10 p as float32, kept for lambda_GC and the plots).
    Both are flushed and fsync'ed before the checkpoint records their
    lengths, with the next SNP, the running state (rows, filter counts, top
    hits) and a fingerprint of the inputs and options (:func:`_fingerprint`).

    ``--resume`` refuses a checkpoint with another fingerprint, cuts the
    partial files back to the recorded lengths (a killed run may have written
    rows after its last checkpoint) and continues at the next SNP.  A run
    without ``--resume`` removes any checkpoint of PREFIX first.  On success the
    partial tables are renamed to their final names and the rest removed; on
    an interruption (or an OSError / MemoryError) after at least one block
    everything is kept; on any other error, or before the first block, removed.
    """

    def __init__(self, args, source, groups, phenos, ext: str) -> None:
        self.args, self.source, self.groups, self.phenos = args, source, groups, phenos
        self.path = Path(f"{args.out}.resume.json")
        self.block = _block_size(args, source, groups)
        self.fingerprint = _fingerprint(args, source, phenos, self.block)
        self.finals = [Path(ph.stem + ext) for ph in phenos]
        self.tables = [Path(f"{f}.partial") for f in self.finals]
        self.sidecars = [Path(f"{f}.partial.lp") for f in self.finals]
        self.next_snp = 0
        self.resumed_from = 0
        self._files: list[_Appender] = []
        self._sides: list[_Appender] = []
        self._index = {id(ph): k for k, ph in enumerate(phenos)}
        self._stop = _test_stop()
        state = self._load() if args.resume else None
        if state is None:
            self._remove_stale()
        try:
            self._open(state)
            if state is None:
                self.save()
        except BaseException:
            self.close()
            if state is None:
                self.remove()
            raise

    # -- starting

    def _load(self) -> dict | None:
        if not self.path.exists():
            if not self.args.quiet:
                print(
                    f"lmmscan scan: --resume: no checkpoint {self.path}; scanning from the "
                    "first SNP",
                    file=sys.stderr,
                )
            return None
        again = "rerun without --resume to start over"
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(
                f"cannot read the checkpoint ({_one_line(exc)}); {again}", path=str(self.path)
            ) from None
        if not isinstance(state, dict) or state.get("kind") != _CHECKPOINT_KIND:
            raise InputError(f"not an lmmscan scan checkpoint; {again}", path=str(self.path))
        if state.get("version") != _CHECKPOINT_VERSION:
            raise InputError(
                f"checkpoint version {state.get('version')}, this lmmscan reads "
                f"{_CHECKPOINT_VERSION}; {again}",
                path=str(self.path),
            )
        diffs = _differences(state.get("fingerprint"), self.fingerprint)
        if diffs:
            raise InputError(
                f"the checkpoint is from another run: {'; '.join(diffs[:3])}; {again}",
                path=str(self.path),
            )
        if state["fingerprint"].get("null_lambda") != self.fingerprint["null_lambda"]:
            print(
                f"lmmscan scan: warning: the refitted null model's lambda "
                f"{self.fingerprint['null_lambda']} differs from the checkpoint's "
                f"{state['fingerprint']['null_lambda']} in its last bits (another number of "
                "BLAS threads or another machine?): the rows after the checkpoint may differ "
                "from an uninterrupted run's in their last printed digit",
                file=sys.stderr,
            )
        return state

    def _open(self, state: dict | None) -> None:
        rows = None if state is None else self._rows(state)
        for k, ph in enumerate(self.phenos):
            table_bytes, side_bytes = (None, None) if rows is None else rows[k][:2]
            self._files.append(_TableFile(self.tables[k], table_bytes))
            self._sides.append(_Appender(self.sidecars[k], side_bytes))
            with self.args.clock.phase("write"):
                ph.writer = _table_writer(self.args, ph, self._files[k])
        if state is not None:
            self._restore(state, rows)

    def _rows(self, state: dict) -> list[tuple]:
        try:
            out = [
                (int(p["table_bytes"]), int(p["sidecar_bytes"]), int(p["n_rows"]), p["best"])
                for p in state["phenotypes"]
            ]
            if len(out) != len(self.phenos):
                raise ValueError("wrong number of phenotypes")
            self.next_snp = int(state["next_snp"])
            if not 0 <= self.next_snp <= self.source.n_snps:
                raise ValueError(f"next_snp {self.next_snp}")
            if self.next_snp % self.block and self.next_snp != self.source.n_snps:
                raise ValueError(f"next_snp {self.next_snp} is not at a block boundary")
            if any(r[1] != r[2] * _SIDECAR.itemsize for r in out):
                raise ValueError("the row counts do not match")
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"damaged checkpoint ({_one_line(exc)}); rerun without --resume to start over",
                path=str(self.path),
            ) from None
        return out

    def _restore(self, state: dict, rows: list[tuple]) -> None:
        from .filters import FilterCounts

        self.resumed_from = self.next_snp
        try:
            for g, saved in zip(self.groups, state["groups"], strict=True):
                f = saved["filters"]
                g.report.filters = FilterCounts(
                    total=int(f["total"]),
                    kept=int(f["kept"]),
                    removed={k: int(v) for k, v in f["removed"].items()},
                )
            for k, ph in enumerate(self.phenos):
                n_rows, best = rows[k][2], rows[k][3]
                ph.n_rows = n_rows
                ph.best = [
                    (float(lp), str(rs), str(c), int(ps), float(b), float(se))
                    for lp, rs, c, ps, b, se in best
                ]
                rec = np.fromfile(self.sidecars[k], dtype=_SIDECAR, count=n_rows)
                if rec.size != n_rows:
                    raise ValueError(f"{self.sidecars[k]} has {rec.size} rows, not {n_rows}")
                ph.log10p = [rec["log10p"].copy()]
                if getattr(self.args, "plot", False):
                    where = self.source.snps.iloc[rec["snp"]][["chr", "rs", "ps"]]
                    ph.where = [where.reset_index(drop=True)]
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"damaged checkpoint ({_one_line(exc)}); rerun without --resume to start over",
                path=str(self.path),
            ) from None

    def _remove_stale(self) -> None:
        """A fresh scan: remove the checkpoint of PREFIX and the partial files it names."""
        stale = [*self.tables, *self.sidecars]
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
            old = json.loads(self.path.read_text(encoding="utf-8"))
            for p in old["phenotypes"]:
                stale += [
                    Path(p[key])
                    for key in ("table", "sidecar")
                    if str(p[key]).endswith((".partial", ".partial.lp"))
                ]
        for path in [*stale, self.path]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- scanning

    def record(self, ph, index: np.ndarray, log10p: dict) -> None:
        """A block's rows of ``ph`` were written: keep their SNPs and main -log10 p."""
        lp = np.asarray(log10p.get(ph.writer.main_p, []), dtype=np.float32)
        rec = np.empty(lp.size, dtype=_SIDECAR)
        rec["snp"] = index
        rec["log10p"] = lp
        self._sides[self._index[id(ph)]].write(rec.tobytes())

    def block_done(self, stop: int) -> None:
        blocks = -(-stop // self.block)
        if self._stop == (blocks - 1, "kill"):  # test hook: rows written, no checkpoint
            for f in (*self._files, *self._sides):
                f.sync()
            os.kill(os.getpid(), signal.SIGKILL)
        self.next_snp = stop
        self.save()
        if self._stop == (blocks, "interrupt"):
            raise KeyboardInterrupt

    def save(self) -> None:
        """Flush the partial files, then record their lengths and the state, atomically."""
        phenos = []
        for k, ph in enumerate(self.phenos):
            phenos.append(
                {
                    "column": ph.col,
                    "table": str(self.tables[k]),
                    "sidecar": str(self.sidecars[k]),
                    "table_bytes": self._files[k].sync(),
                    "sidecar_bytes": self._sides[k].sync(),
                    "n_rows": ph.n_rows,
                    "best": [list(t) for t in ph.best],
                }
            )
        groups = [
            {
                "phenotypes": [ph.col for ph in g.phenos],
                "filters": {
                    "total": g.report.filters.total,
                    "kept": g.report.filters.kept,
                    "removed": dict(g.report.filters.removed),
                },
            }
            for g in self.groups
        ]
        state = {
            "kind": _CHECKPOINT_KIND,
            "version": _CHECKPOINT_VERSION,
            "fingerprint": self.fingerprint,
            "n_snps": self.source.n_snps,
            "next_snp": self.next_snp,
            "groups": groups,
            "phenotypes": phenos,
        }
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(state, allow_nan=True) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    # -- ending

    def close(self) -> None:
        for f in (*self._files, *self._sides):
            f.close()

    def commit_tables(self) -> None:
        self.close()
        for partial, final in zip(self.tables, self.finals, strict=True):
            os.replace(partial, final)

    def remove(self) -> None:
        for path in (*self.tables, *self.sidecars, self.path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def abandon(self, exc: BaseException) -> None:
        """The run failed: keep what --resume needs (interrupted after a block), else remove."""
        self.close()
        keep = isinstance(exc, (KeyboardInterrupt, OSError, MemoryError)) and self.next_snp > 0
        if not keep:
            self.remove()
            return
        more = f" (and {len(self.tables) - 1} more)" if len(self.tables) > 1 else ""
        with contextlib.suppress(AttributeError, TypeError):
            exc.lmmscan_hint = (
                f"SNPs 1-{self.next_snp} of {self.source.n_snps} are kept in "
                f"{self.tables[0]}{more} and {self.path}: rerun the same command with --resume "
                "to continue"
            )


def _load_samples(args, source):
    _check_scan_flags(args)
    Y = _phenotypes(args, source, args.pheno_col, required=True)
    cov = _covariates(args, source)
    phenos = []
    for k, col in enumerate(args.pheno_col):
        mask, _, W, _, _ = _analysed(args, Y[:, k], cov, col)
        phenos.append(_Pheno(col=col, y=Y[:, k], mask=mask, W=W, cov=cov))
        phenos[-1].source = source  # LOCO reads its genotypes while fitting
    groups: dict[bytes, _Group] = {}
    for ph in phenos:
        key = np.packbits(ph.mask).tobytes()
        groups.setdefault(key, _Group(mask=ph.mask, phenos=[])).phenos.append(ph)
    return phenos, list(groups.values())


def _group_kinships(args, source, groups, K):
    """One kinship per group of analysed individuals (or the given one for all)."""
    if K is not None:
        return [K] * len(groups)
    if args.loco:
        return [None] * len(groups)
    if args.eigen is not None:
        return _group_spectra(args, source, groups)
    from .genotypes import default_block_size
    from .kinship import KinshipAccumulator

    accs = []
    for g in groups:
        W = g.phenos[0].W
        accs.append(
            KinshipAccumulator(
                source.n_samples,
                args.kinship_method,
                mask=g.mask,
                W=W if W.shape[1] > 1 else None,
                maf=args.maf,
                miss=args.miss,
                r2=args.r2,
            )
        )
    seconds = {"read": 0.0}
    block = default_block_size(source.n_samples)
    with _progress(args, source.n_snps, "kinship") as bar:
        for _, _, X in _iter_blocks(source, block, None, bar, seconds):
            for acc in accs:
                acc.add(X)
    return [acc.result() for acc in accs]


def _fit_nulls(args, groups, kinships, K_given) -> None:
    """Each phenotype's null model (the scanners: :func:`_make_scanners`).  A
    kinship is decomposed once per group of analysed individuals (timed as
    "eigen", the fit as "null_fit")."""
    from .model import decompose_kinship, fit_null
    from .scan import ScanReport

    clock = args.clock
    for i, (g, K) in enumerate(zip(groups, kinships, strict=True)):
        # the CLI owns the kinship it read or computed: the last group using
        # it may restrict, centre and decompose it in its own buffer
        owned = all(other is not K for other in kinships[i + 1 :])
        spectral = None
        g.report = ScanReport()
        for ph in g.phenos:
            try:
                if args.loco:
                    t0 = time.perf_counter()
                    _loco(args, ph)
                    inner = sum(ph.loco_report.seconds.values())  # kinship, eigen, scan
                    clock.seconds["null_fit"] += max(0.0, time.perf_counter() - t0 - inner)
                else:
                    if spectral is None and isinstance(K, np.ndarray):
                        # no check_kinship here: a file's K was checked as it was read
                        # (textio.read_kinship), a computed K is mirrored from its upper
                        # triangle; checking again cost one more pass per group
                        with clock.phase("eigen"):
                            spectral = decompose_kinship(K, g.mask, overwrite_kinship=owned)
                    elif spectral is None:
                        spectral = K  # a saved eigendecomposition (--eigen)
                    with clock.phase("null_fit"):
                        ph.null = fit_null(ph.y, ph.cov, spectral=spectral)
            except InputError as exc:
                where = args.kinship if K_given is not None else None
                raise InputError(f"{_pheno_name(args, ph.col)}: {exc}", path=where) from None


def _make_scanners(args, groups) -> None:
    """Each phenotype's scanner and report.  One phenotype per group: a
    fixed-lambda scan can whiten (L^-1 X, half the flops of U'X; its block is
    then its own), the factorisation timed as "eigen"."""
    from .scan import BlockScanner, ScanReport, whitening_lambda

    for g in groups:
        for ph in g.phenos:
            whiten = (
                not (args.loco or args.dask_scheduler)
                and len(g.phenos) == 1
                and whitening_lambda(ph.null, args.test, args.lambda_mode) is not None
            )
            with args.clock.phase("eigen") if whiten else contextlib.nullcontext():
                ph.scanner = BlockScanner(
                    ph.null,
                    args.test,
                    maf=args.maf,
                    miss=args.miss,
                    r2=args.r2,
                    threads=args.threads,
                    lambda_mode=args.lambda_mode,
                    whiten=whiten,
                )
            ph.report = ScanReport()


def _table_writer(args, ph, fh):
    from .output import TableWriter
    from .scan import TEST_COLUMNS

    return TableWriter(
        fh,
        args.format,
        args.test,
        n_analyzed=ph.null.n_analyzed,
        df=ph.null.n_analyzed - ph.null.n_covariates - 1,
        loglik_mle_null=ph.null.loglik_ml,
        test_columns=TEST_COLUMNS[args.test],
    )


def _open_writers(args, phenos, outputs, ext: str):
    handles = []
    for ph in phenos:
        tmp = outputs.add(ph.stem + ext)
        fh = open(tmp, "w", encoding="utf-8", newline="\n")
        handles.append(fh)
        with args.clock.phase("write"):
            ph.writer = _table_writer(args, ph, fh)
    return handles


def _union_samples(source, groups) -> np.ndarray:
    """The individuals read for the block scan: those of every group."""
    union = np.zeros(source.n_samples, dtype=bool)
    for g in groups:
        union |= g.mask
    return np.flatnonzero(union)


def _block_size(args, source, groups) -> int:
    from .genotypes import default_block_size

    return args.block_size or default_block_size(_union_samples(source, groups).size)


def _scan_blocks(args, source, groups, resume, reader=None) -> None:
    """Every group and phenotype in one pass over the genotypes, block by block,
    from ``resume.next_snp``; a checkpoint after each block.  ``reader``: see
    :func:`_early_reader`."""
    samples = _union_samples(source, groups)
    position = np.full(source.n_samples, -1)
    position[samples] = np.arange(samples.size)
    for g in groups:
        g.rows = position[g.mask]
    block = resume.block
    seconds = {"read": 0.0}
    snps = source.snps
    clock = args.clock
    with _progress(args, source.n_snps, "scan") as bar:
        bar.update(resume.next_snp)
        for start, stop, X in _iter_blocks(
            source, block, samples, bar, seconds, first=resume.next_snp, reader=reader
        ):
            for g in groups:
                Xg = X if len(groups) == 1 else X[g.rows]
                lead = g.phenos[0]
                # a whitening scanner (one phenotype) also needs the raw block Xk
                keep, n_miss, af, UtX, Xk = lead.scanner._prepare(Xg, g.report)
                block_snps = snps.iloc[start:stop].loc[keep]
                index = start + np.flatnonzero(keep)
                for ph in g.phenos:
                    cols = {"n_miss": n_miss, "af": af}
                    tested, stats = ph.scanner.test_rotated_with_statistics(UtX, ph.report, Xk=Xk)
                    cols.update(tested)
                    _write_rows(
                        args,
                        ph,
                        block_snps,
                        cols,
                        stats,
                        record=functools.partial(resume.record, ph, index),
                    )
            with clock.phase("write"):
                resume.block_done(stop)
    clock.scan["read"] = seconds["read"]
    for g in groups:
        _require_kept(g.report.filters)
        for key in ("filter", "rotate"):
            clock.scan[key] = clock.scan.get(key, 0.0) + g.report.seconds[key]
        for ph in g.phenos:
            ph.report.filters = g.report.filters
            for key in ("filter", "rotate"):
                ph.report.seconds[key] = g.report.seconds[key]
            ph.report.seconds["read"] = seconds["read"]
            clock.scan["tests"] = clock.scan.get("tests", 0.0) + ph.report.seconds["tests"]


def _track_best(ph, block_snps, log10p, cols, keep: int = 10) -> None:
    main = ph.writer.main_p
    lp = np.asarray(log10p.get(main, []))
    if lp.size == 0:
        return
    lp = np.where(np.isnan(lp), -np.inf, lp)
    top = np.argsort(-lp)[:keep]
    beta = np.asarray(cols.get("beta", np.full(lp.size, np.nan)))
    se = np.asarray(cols.get("se", np.full(lp.size, np.nan)))
    for i in top.tolist():
        row = block_snps.iloc[i]
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
        ph.where.append(block_snps[["chr", "rs", "ps"]].reset_index(drop=True))


def _results(ph) -> dict:
    """lambda_GC, genome-wide significant count and the top 10 hits of a phenotype."""
    from .plot import GENOME_WIDE, lambda_gc

    lp = np.concatenate(ph.log10p) if ph.log10p else np.zeros(0, dtype=np.float32)
    finite = lp.astype(np.float64)
    finite = finite[np.isfinite(finite)]
    p = np.power(10.0, -finite)
    return {
        "test": ph.writer.main_p,
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
                "p": float(10.0**-lp) if lp < 300 else 0.0,
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

    from . import plot

    for ph in phenos:
        if ph.where:
            table = pd.concat(ph.where, ignore_index=True)
        else:
            table = pd.DataFrame({"chr": [], "rs": [], "ps": []})
        lp = np.concatenate(ph.log10p).astype(np.float64) if ph.log10p else np.zeros(0)
        table[ph.writer.main_p] = np.power(10.0, -lp)
        for kind, draw in (("manhattan", plot.manhattan), ("qq", plot.qq)):
            fig = draw(table, ph.writer.main_p, title=_pheno_name(args, ph.col))
            with open(outputs.add(f"{ph.stem}.{kind}.png"), "wb") as fh:
                fig.savefig(fh, format="png", dpi=100)
            plt.close(fig)


def _check_scan_flags(args) -> None:
    given = [
        f
        for f, v in (("--kinship", args.kinship), ("--eigen", args.eigen), ("--loco", args.loco))
        if v
    ]
    if len(given) > 1:
        raise InputError(f"give at most one of --kinship, --eigen and --loco, not {given}")
    if args.loco and args.dask_scheduler:
        raise InputError("--loco does not run on --dask-scheduler yet")
    if args.resume and (args.loco or args.dask_scheduler):
        flag = "--loco" if args.loco else "--dask-scheduler"
        raise InputError(
            f"--resume works for the block scan only, not with {flag}: rerun without --resume"
        )


def _group_spectra(args, source, groups):
    """Each group's share of the saved eigendecomposition (refused unless it
    belongs to exactly the group's analysed individuals)."""
    from .eigen import load_eigen, sample_ids_of

    eig = load_eigen(args.eigen)
    ids = sample_ids_of(source)
    out = []
    for g in groups:
        try:
            out.append(eig.spectral_for(ids[g.mask]))
        except InputError as exc:
            raise InputError(
                f"{_pheno_name(args, g.phenos[0].col)}: {exc}", path=args.eigen
            ) from None
    return out


def _loco(args, ph) -> None:
    """LOCO for one phenotype: its table and statistics, kept until written."""
    from .loco import loco_scan
    from .scan import ScanReport

    report = ScanReport()
    ph.loco_stats = {}
    ph.loco_table = loco_scan(
        ph.source,
        ph.y,
        ph.cov,
        method=args.kinship_method,
        test=args.test,
        lambda_mode=args.lambda_mode,
        maf=args.maf,
        miss=args.miss,
        r2=args.r2,
        threads=args.threads,
        block_size=args.block_size,
        report=report,
        null_models=report.null_models,
        statistics=ph.loco_stats,
    )
    ph.loco_report = report  # _fit_nulls gives every phenotype a fresh report after this
    ph.null = next(iter(report.null_models.values()))


def _scan_each(args, source, groups) -> None:
    """Phenotype by phenotype through the scan paths that return whole blocks
    with their statistics: LOCO, a Dask cluster, or a low-rank complement."""
    from .genotypes import default_block_size

    client = None
    if args.dask_scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise InputError("--dask-scheduler needs dask: pip install 'lmmscan[dask]'") from None
        try:
            client = Client(args.dask_scheduler, timeout=10)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(
                f"cannot reach the Dask scheduler {args.dask_scheduler}: {_one_line(exc)}"
            ) from None
    snps = source.snps
    try:
        for g in groups:
            for ph in g.phenos:
                if args.loco:
                    ph.report = ph.loco_report
                    table = ph.loco_table
                    cols = {c: table[c].to_numpy() for c in table.columns}
                    _write_rows(args, ph, table, cols, ph.loco_stats)
                    continue
                block = args.block_size or default_block_size(int(ph.null.n_analyzed))
                for start, keep, cols, stats in _blocks(args, source, ph, block, client):
                    _write_rows(
                        args, ph, snps.iloc[start : start + keep.size].loc[keep], cols, stats
                    )
                _require_kept(ph.report.filters)
        for ph in (ph for g in groups for ph in g.phenos):
            for key, value in ph.report.seconds.items():
                args.clock.scan[key] = args.clock.scan.get(key, 0.0) + value
    finally:
        if client is not None:
            client.close()


def _require_kept(filters) -> None:
    if filters.kept == 0:
        raise InputError(
            f"no SNP left after filtering ({_removed_text(filters)} of "
            f"{filters.total}); relax --maf/--miss"
        )


def _blocks(args, source, ph, block: int, client):
    if client is not None:
        from .distributed import scan_blocks

        options = dict(
            test=args.test, maf=args.maf, miss=args.miss, r2=args.r2, lambda_mode=args.lambda_mode
        )
        start = 0
        for keep, cols, stats in scan_blocks(
            client, source, ph.null, block_size=block, options=options, report=ph.report
        ):
            yield start, keep, cols, stats
            start += keep.size
        return
    samples = np.flatnonzero(ph.null.analyzed)
    with _progress(args, source.n_snps, "scan") as bar:
        for start, _, X in _iter_blocks(source, block, samples, bar, ph.report.seconds):
            keep, cols, stats = ph.scanner.scan_with_statistics(X, ph.report)
            yield start, keep, cols, stats


def _write_rows(args, ph, block_snps, cols, stats, record=None) -> None:
    """Write a block's rows; ``record(log10p)`` (the --resume checkpoint's
    bookkeeping) is timed with the writing."""
    with args.clock.phase("write"):
        log10p = ph.writer.write(block_snps, cols, stats)
        if record is not None:
            record(log10p)
    _track_best(ph, block_snps, log10p, cols)
    _collect(args, ph, block_snps, log10p)
    ph.n_rows += len(block_snps)


_PHASES = (
    "startup",
    "inputs",
    "kinship",
    "eigen",
    "null_fit",
    "read",
    "filter",
    "rotate",
    "tests",
    "write",
)


def _phase_seconds(clock, scan: dict) -> dict:
    """The run's phases (``clock``) and a scan's (``scan``), in pipeline order, and the total."""
    merged = dict(clock.seconds)
    for key, value in scan.items():
        merged[key] = merged.get(key, 0.0) + value
    out = {key: merged.pop(key, 0.0) for key in _PHASES}
    out.update(merged)  # anything else a scan path reports
    out["total"] = clock.total()
    return out


def _write_nulls(args, source, phenos, outputs) -> None:
    from .output import null_summary, write_json

    for ph in phenos:
        with args.clock.phase("write"):
            path = outputs.add(ph.stem + ".null.json")
        data = null_summary(
            ph.null,
            ph.report,
            phenotype=_pheno_name(args, ph.col),
            n_snps_total=source.n_snps,
            lambda_mode=args.lambda_mode,
            seconds=_phase_seconds(args.clock, ph.report.seconds),
        )
        ph.results = data["results"] = _results(ph)
        with args.clock.phase("write"), open(path, "w", encoding="utf-8") as fh:
            write_json(fh, data)


def _removed_text(counts) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.removed.items())


_PHASE_NAMES = {"null_fit": "null fit", "tests": "lambda search and tests"}


def _print_summary(args, source, phenos, resume) -> None:
    from .output import EXTENSIONS

    for ph in phenos:
        null, rep = ph.null, ph.report
        c = rep.filters
        print(f"phenotype: {_pheno_name(args, ph.col)}")
        print(
            f"  individuals analysed: {null.n_analyzed} of {source.n_samples}; covariates: "
            f"{null.n_covariates}{' (intercept added)' if null.intercept_added else ''}"
        )
        print(f"  SNPs tested: {c.kept} of {c.total} (removed: {_removed_text(c)})")
        print(
            f"  pve = {null.pve:.4g} ± {null.pve_se:.2g}; lambda (REML) = {null.lambda_:.4g}; "
            f"vg = {null.vg:.4g}, ve = {null.ve:.4g}"
        )
        res = ph.results
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
    seconds = _phase_seconds(args.clock, args.clock.scan)
    total = seconds.pop("total")
    if not seconds["startup"]:
        del seconds["startup"]  # main() called from Python
    parts = ", ".join(f"{_PHASE_NAMES.get(k, k)} {v:.2f}" for k, v in seconds.items())
    print(f"seconds: {parts}; total {total:.2f}")
    print(f"done in {total:.1f} s")


# ----------------------------------------------------------------- plot


def run_plot(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from . import plot
    from .output import atomic_path

    path = Path(args.table)
    if not path.exists():
        raise InputError("association table not found", path=str(path))
    _check_out_dir(args.out)
    try:
        table = pd.read_csv(path, sep="\t", dtype={"chr": str, "rs": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the table: {_one_line(exc)}", path=str(path)) from None
    missing = [c for c in ("chr", "ps") if c not in table.columns]
    if missing:
        raise InputError(f"the table has no column {missing[0]!r}", path=str(path))
    try:
        col = plot.p_column(table, args.p_column)
    except KeyError as exc:
        raise InputError(str(exc.args[0]), path=str(path)) from None
    table[col] = pd.to_numeric(table[col], errors="coerce")
    fig = plot.results_figure(table, col, title=path.name)
    with atomic_path(args.out) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    print(
        f"wrote {args.out}: lambda_GC = {plot.lambda_gc(table[col].to_numpy()):.3f}, "
        f"{int((table[col] < plot.GENOME_WIDE).sum())} SNPs with {col} < 5e-8"
    )
    return 0


# ----------------------------------------------------------------- eigen


def run_eigen(args) -> int:
    from .eigen import eigendecompose, sample_ids_of, save_eigen
    from .output import atomic_path
    from .textio import read_kinship

    t0 = time.perf_counter()
    _check_out_dir(args.out)
    if not str(args.out).endswith(".npz"):
        raise InputError("--out must end in .npz", path=str(args.out))
    with _blas_threads(args.threads, args.eigh_driver):
        source = _open_genotypes(args)
        Y = _phenotypes(args, source, [args.pheno_col], required=False)
        cov = _covariates(args, source)
        y = np.zeros(source.n_samples) if Y is None else Y[:, 0]
        mask = _analysed(args, y, cov, args.pheno_col)[0]
        K = read_kinship(args.kinship, source.n_samples)
        eig = eigendecompose(
            K, sample_ids_of(source), samples=mask, meta={"kinship": str(args.kinship)}
        )
        del K
        with atomic_path(args.out) as tmp:
            with open(tmp, "wb") as fh:
                save_eigen(fh, eig)
    if not args.quiet:
        print(
            f"eigendecomposition of {args.kinship} over {eig.n_samples} of "
            f"{source.n_samples} individuals ({int((eig.d == 0).sum())} eigenvalues zeroed)"
        )
        print(f"wrote {args.out} ({time.perf_counter() - t0:.1f} s)")
    return 0


# ----------------------------------------------------------------- demo


def run_demo(args) -> int:
    from .demo import run

    return run(Path(args.out), quiet=args.quiet, main=main)
