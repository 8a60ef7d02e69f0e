"""``lmmscan eigen``: a kinship's eigendecomposition over the analysed
individuals, saved with their IDs for ``scan --eigen`` (GEMMA -eigen, -d/-u)."""

from __future__ import annotations

import argparse
import time

import numpy as np

from .._errors import InputError, naming
from .common import (
    Outputs,
    check_out_file,
    check_spares_inputs,
    filter_samples,
    memory_check_driver,
    memory_line,
    named_inputs,
    open_genotypes,
    plural,
    run_threads,
)
from .options import add_genotype_args, add_run_args, add_sample_args, command


def add_parser(sub: argparse._SubParsersAction) -> None:
    e = command(
        sub,
        "eigen",
        help="eigendecomposition of a kinship, saved for reuse (GEMMA -eigen)",
        description="Restrict a kinship to the analysed individuals (those with the phenotype "
        "and covariates), double-centre it and decompose it, as GEMMA does before -lmm; save "
        "U, the eigenvalues and the individuals' IDs to FILE.npz for 'lmmscan scan --eigen'.\n\n"
        "example: lmmscan eigen --bfile data/study --kinship study.cXX.txt --out study.eig.npz",
    )
    add_genotype_args(e)
    add_sample_args(e, multi=False)
    e.add_argument(
        "--kinship",
        metavar="FILE",
        required=True,
        help="kinship over every individual of the genotype file: GEMMA text or .npy. Required",
    )
    e.add_argument("--out", metavar="FILE.npz", required=True, help="output file. Required")
    add_run_args(e, eigh=True)
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..eigen import eigendecompose, sample_ids_of, save_eigen
    from ..memory import eigen_plan, hints_dense
    from ..output import atomic_path
    from ..textio import read_kinship

    t0 = time.perf_counter()
    check_out_file(args.out)
    check_spares_inputs([args.out], named_inputs(args))
    if not str(args.out).endswith(".npz"):
        raise InputError("--out must end in .npz", path=str(args.out))
    with Outputs(f"{args.out} is complete") as outputs, run_threads(args.threads, args.eigh_driver):
        source = open_genotypes(args)
        mask = filter_samples(args, source).mask
        n = int(mask.sum())
        memory_check_driver(
            args,
            lambda driver: eigen_plan(source.n_samples, n, driver),
            lambda driver: hints_dense(n, driver, whitened=False),
        )
        K = read_kinship(args.kinship, source.n_samples)
        ids = sample_ids_of(source)
        if not mask.all():  # the analysed samples' kinship; the whole one is let go
            idx = np.flatnonzero(mask)
            K, ids = K[np.ix_(idx, idx)], ids[idx]
        try:
            # in the kinship's own memory: a copy beside it had put the peak 8n^2
            # bytes above the plan (helper 55: 875 MiB, 676 planned, n = 5,000)
            eig = eigendecompose(
                K, ids, meta={"kinship": str(args.kinship)}, overwrite_kinship=True
            )
        except InputError as exc:  # the kinship's values (not positive semi-definite)
            if exc.path is not None:
                raise
            raise InputError(str(exc), path=str(args.kinship)) from None
        del K
        with naming(args.out), atomic_path(args.out) as tmp, open(tmp, "wb") as fh:
            save_eigen(fh, eig)
        outputs.written = True
    with outputs:
        if not args.quiet:
            print(
                f"eigendecomposition of {args.kinship} over {eig.n_samples} of "
                f"{plural(source.n_samples, 'individual')} "
                f"({plural(int((eig.d == 0).sum()), 'eigenvalue')} zeroed)"
            )
            print(f"wrote {args.out} ({time.perf_counter() - t0:.1f} s)")
            memory = memory_line(args)
            if memory:
                print(memory)
    return 0
