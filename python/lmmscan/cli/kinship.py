"""``lmmscan kinship``: GEMMA's relatedness matrix (-gk 1 / -gk 2) to a file."""

from __future__ import annotations

import argparse
import time

from .._errors import InputError, naming
from ..kinship import KINSHIP_METHODS
from .common import (
    Outputs,
    check_hwe,
    check_out_file,
    check_spares_inputs,
    describe_skipped,
    describe_variant_lists,
    filter_samples,
    info_filter,
    listed_variants,
    memory_check,
    memory_line,
    named_inputs,
    open_genotypes,
    plural,
    progress,
    read_as_missing,
    reader_warnings,
    run_threads,
)
from .options import add_filter_args, add_genotype_args, add_run_args, add_sample_args, command


def add_parser(sub: argparse._SubParsersAction) -> None:
    k = command(
        sub,
        "kinship",
        help="relatedness matrix (GEMMA -gk 1 / -gk 2)",
        description="GEMMA's relatedness matrix over every individual of the genotype file, "
        "from the SNPs that pass GEMMA's filters on the analysed individuals.\n\n"
        "example: lmmscan kinship --bfile data/study --out study.cXX.txt",
    )
    add_genotype_args(k)
    add_sample_args(k, multi=False)
    k.add_argument(
        "--method",
        choices=KINSHIP_METHODS,
        default="centered",
        help="centered: GEMMA -gk 1 (.cXX); standardized: GEMMA -gk 2 (.sXX). Default: centered",
    )
    add_filter_args(k, kinship_only=True)
    add_run_args(k)
    k.add_argument(
        "--out",
        metavar="FILE",
        required=True,
        help="output: FILE ending in .npy is written as numpy, anything else as GEMMA's "
        "tab-separated %%.10g text (GEMMA -o/-outdir), gzipped if FILE ends in .gz; .npy is "
        "exact and much faster to write and read for thousands of individuals. Required",
    )
    k.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..filters import no_snp_left
    from ..genotypes import default_block_size
    from ..kinship import accumulate, accumulators
    from ..memory import kinship_plan, read_overhead
    from ..textio import write_kinship

    t0 = time.perf_counter()
    check_out_file(args.out)
    check_spares_inputs([args.out], named_inputs(args))
    with Outputs(f"{args.out} is complete") as outputs, run_threads(args.threads):
        source = open_genotypes(args)
        check_hwe(args, source)
        ph = filter_samples(args, source)
        listed = listed_variants(args, source, ("snps", "ksnps"))
        listed = info_filter(args, listed, ph.mask)
        block = default_block_size(source.n_samples)
        subset = bool(ph.mask.sum() < source.n_samples)
        memory_check(
            args,
            kinship_plan(
                source.n_samples, source.n_snps, block, read_overhead(listed, block, subset)
            ),
            ["a low-rank kinship (lmmscan.low_rank_kinship) or a machine with more memory"],
        )
        (acc,) = accumulators(
            source.n_samples,
            args.method,
            [ph],
            maf=args.maf,
            miss=args.miss,
            r2=args.r2,
            hwe=args.hwe,
        )
        with progress(args, listed.n_snps, "kinship") as bar:
            accumulate(listed, [acc], progress=bar.update)
        if acc.used == 0:
            raise InputError(
                no_snp_left(acc.counts, "the kinship cannot be computed") + read_as_missing(source)
            )
        with naming(args.out):
            write_kinship(args.out, acc.result())
        outputs.written = True
    with outputs:
        if not args.quiet:
            for line in describe_variant_lists(args) + describe_skipped(args, source):
                print(line)
            for warning in reader_warnings(source):  # as scan's summary says them
                print(f"warning: {warning}")
            c = acc.counts
            removed = ", ".join(f"{k} {v}" for k, v in c.removed.items())
            print(
                f"kinship ({args.method}): {source.n_samples} x {source.n_samples} from {c.kept} "
                f"of {plural(c.total, 'SNP')} (removed: {removed}); filters on "
                f"{plural(int(ph.mask.sum()), 'individual')}"
            )
            print(f"wrote {args.out} ({time.perf_counter() - t0:.1f} s)")
            memory = memory_line(args)
            if memory:
                print(memory)
    return 0
