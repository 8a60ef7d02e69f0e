"""What the commands share when they run: opening the inputs their flags
name, the clock of their phases, progress bars and thread limits."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InputError, one_line, plural
from .._threads import blas_threads
from ..genotypes import GenotypeSource


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc, 10 ms resolution), else None."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):  # pragma: no cover - not Linux
        return None


PHASES = (
    "startup", "inputs", "kinship", "eigen", "null_fit", "read", "filter", "rotate", "tests",
    "write",
)  # fmt: skip


class Clock:
    """Wall seconds per phase of one command, for the summary and PREFIX.null.json.

    ``startup`` is the time from the process's start to ``main`` (the
    interpreter and the imports) when lmmscan runs as a command, 0 when
    ``main`` is called from Python.  ``scan`` collects the scan's own phases
    (read, filter, rotate, tests) over every phenotype.
    """

    def __init__(self, t_main: float, startup: float) -> None:
        self.t_main = t_main
        self.seconds = dict.fromkeys(
            ("startup", "inputs", "kinship", "eigen", "null_fit", "write"), 0.0
        )
        self.seconds["startup"] = startup
        self.scan: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def total(self) -> float:
        return self.seconds["startup"] + time.perf_counter() - self.t_main

    def phases(self, scan: dict[str, float]) -> dict[str, float]:
        """The run's phases and a scan's (``scan``), in pipeline order, and the total."""
        merged = dict(self.seconds)
        for key, value in scan.items():
            merged[key] = merged.get(key, 0.0) + value
        out = {key: merged.pop(key, 0.0) for key in PHASES}
        out.update(merged)  # anything else a scan path reports
        out["total"] = self.total()
        return out


class Outputs:
    """``with Outputs("the kinship is complete") as outputs:`` around a
    command; once it sets ``outputs.written``, an interrupt (a lock's removal,
    the summary's lines) ends with that hint, not "no output written"."""

    def __init__(self, hint: str) -> None:
        self.hint = hint
        self.written = False

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if self.written and isinstance(exc, KeyboardInterrupt):
            if not getattr(exc, "lmmscan_hint", ""):  # (the plots' own says more)
                exc.lmmscan_hint = self.hint  # type: ignore[attr-defined]


def require_matplotlib(what: str) -> None:
    """Optional parts are checked before any work: a missing one in one line."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        if getattr(exc, "name", None) == "matplotlib":
            raise InputError(f"{what} needs matplotlib: pip install 'lmmscan[plot]'") from None
        raise InputError(
            f"{what} needs matplotlib, which is installed but does not import ({one_line(exc)})"
        ) from None


def check_out_file(out: str) -> None:
    """:func:`check_out_dir`, and an output file name taken by a directory, a
    device, a FIFO or a socket refused before any work (not after it)."""
    from ..output import output_file

    check_out_dir(out)
    target = Path(output_file(out))
    check_writable(target.parent, target)


def check_name_lengths(paths: list[Path], written_as_is: tuple[str, ...] = ()) -> None:
    """Refuse, before any work, an output whose name, or the temporary name
    it is written under (``.NAME.tmpPID``, any process number), is longer
    than its file system allows; names ending in ``written_as_is`` are
    written under their own.  A scan's --out of 232-245 characters failed
    after the scan, at its checkpoint or its plots (helper 61)."""
    from ..output import output_file

    for path in paths:
        target = Path(output_file(path))
        try:
            limit = os.pathconf(target.parent, "PC_NAME_MAX")
        except (OSError, ValueError):  # the directory is checked elsewhere
            continue
        name = os.fsencode(target.name)
        extra = 0 if target.name.endswith(written_as_is) else len(".") + len(".tmp") + 7
        if len(name) + extra > limit:
            beyond = (
                f" once the {extra} characters of its temporary name are added" if extra else ""
            )
            raise InputError(
                f"the output's name is too long for this file system ({limit} bytes){beyond}: "
                "choose a shorter --out",
                path=str(path),
            )


def check_writable(directory: Path, target: Path | None = None) -> None:
    """Refuse, before any work, a directory the output cannot be written in
    (read-only, full, another user's): kinship and eigen wrote their file only
    at the end of their work, and then named a hidden temporary file.  With
    ``target`` (a file in ``directory``), the probe is its own temporary name,
    which a name near the file system's limit makes too long."""
    import errno
    import tempfile

    from ..output import temp_name

    try:
        if target is not None:
            probe = temp_name(target)
            try:
                os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                os.unlink(probe)
                return
            except FileExistsError:
                pass  # another run's: the directory is probed as below
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".lmmscan-probe-"):
            pass
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG and target is not None:
            extra = len(os.fsencode(probe.name)) - len(os.fsencode(target.name))
            raise InputError(
                f"the output's name is too long for this file system once the {extra} "
                "characters of its temporary name are added: choose a shorter --out",
                path=str(target),
            ) from None
        why = exc.strerror or one_line(exc)
        raise InputError(f"cannot write in the output directory ({why})", path=str(directory)) \
            from None  # fmt: skip


def check_out_dir(out: str) -> None:
    if os.path.basename(out) in ("", ".", ".."):
        # the outputs would be hidden files (".assoc.txt") or the directory itself
        raise InputError(f"--out {out!r}: give a file name (or prefix), not a directory")
    parent = Path(out).parent
    if not parent.is_dir():
        raise InputError("output directory does not exist", path=str(parent))


# the input flags, and why a pipe will not do for some (read once otherwise)
_INPUT_FLAGS = (
    ("bimbam_geno", "--bimbam-geno", "BIMBAM genotypes are read twice"),
    ("bgen", "--bgen", "a BGEN file is read at any variant's offset"),
    ("sample", "--sample", None),
    ("vcf", "--vcf", "a VCF is read twice (once to find the variants, then by blocks)"),
    ("snps", "--snps", None),
    ("ksnps", "--ksnps", None),
    ("bimbam_anno", "--bimbam-anno", None),
    ("pheno", "--pheno", None),
    ("covar", "--covar", None),
    ("kinship", "--kinship", None),
    ("eigen", "--eigen", "an eigendecomposition (.npz) is read at its members' offsets"),
)


def named_inputs(args: argparse.Namespace) -> list[tuple[str, str, str | None]]:
    """(path, flag, why it must be a regular file or None) of every input
    file the command line names."""
    named: list[tuple[str, str, str | None]] = []
    bfile = getattr(args, "bfile", None)
    if bfile is not None:
        prefix = str(bfile)
        for ext in (".bed", ".bim", ".fam"):
            prefix = prefix.removesuffix(ext)
        named.append((prefix + ".bed", "--bfile", "the .bed is read at any SNP's offset"))
        named += [(prefix + ".bim", "--bfile", None), (prefix + ".fam", "--bfile", None)]
    pfile = getattr(args, "pfile", None)
    if pfile is not None:
        prefix = str(pfile)
        for ext in (".pgen", ".pvar", ".psam"):
            prefix = prefix.removesuffix(ext)
        named.append((prefix + ".pgen", "--pfile", "the .pgen is read at any variant's offset"))
        named += [(prefix + ".pvar", "--pfile", None), (prefix + ".psam", "--pfile", None)]
        named.append((prefix + ".pvar.zst", "--pfile", None))
    for attr, flag, needs_file in _INPUT_FLAGS:
        path = getattr(args, attr, None)
        if isinstance(path, str | os.PathLike):
            named.append((str(path), flag, needs_file))
    return named


def check_input_flags(args: argparse.Namespace) -> None:
    """Refuse, before any work and without opening anything, an input flag
    that names a device, a socket, or a pipe where the reader needs a regular
    file; and a --bfile path that bed-reader cannot open (not UTF-8).  A
    missing file is left to its reader's message."""
    from ..textio import check_utf8_path, input_stat

    bfile = getattr(args, "bfile", None)
    if bfile is not None:
        check_utf8_path(bfile, "--bfile")
    for path, flag, needs_file in named_inputs(args):
        if os.path.lexists(path) and not os.path.isdir(path):
            input_stat(path, needs_file=needs_file, flag=flag)


def check_spares_inputs(
    outputs: Sequence[str | os.PathLike[str]], inputs: list[tuple[str, str, str | None]]
) -> None:
    """Refuse, before any work, an output that is one of the run's input
    files, by any name or link (the same device and inode): writing it would
    replace the input (a phenotype file given as the table's name)."""
    known: dict[tuple[int, int], tuple[str, str]] = {}
    for path, flag, _ in inputs:
        with contextlib.suppress(OSError, ValueError):
            st = os.stat(path)
            known.setdefault((st.st_dev, st.st_ino), (path, flag))
    for out in outputs:
        try:
            st = os.stat(out)  # through a symlink: the file that would be written
        except (OSError, ValueError):
            continue
        found = known.get((st.st_dev, st.st_ino))
        if found is not None:
            raise InputError(
                f"is the {found[1]} input {found[0]}: writing this run's output there would "
                "replace it; choose another --out",
                path=str(out),
            )


GENOTYPE_FLAGS = ("bfile", "pfile", "bgen", "vcf", "bimbam_geno")


def genotype_flag(args: argparse.Namespace) -> str:
    """The genotype flag given ("--pfile"), for messages."""
    for name in GENOTYPE_FLAGS:
        if getattr(args, name, None) is not None:
            return "--" + name.replace("_", "-")
    raise AssertionError("argparse requires one genotype flag")


def open_genotypes(args: argparse.Namespace) -> GenotypeSource:
    """The source the genotype flag names; an optional reader that is not
    installed is named (with its extra) before anything is read."""
    from ..genotypes import require_extra

    flag = genotype_flag(args)
    for name, extra_flag in (("sample", "--bgen"), ("vcf_field", "--vcf")):
        if getattr(args, name, None) is not None and flag != extra_flag:
            raise InputError(f"--{name.replace('_', '-')} goes with {extra_flag}, not {flag}")
    if args.bimbam_anno is not None and flag != "--bimbam-geno":
        raise InputError(f"--bimbam-anno goes with --bimbam-geno, not {flag}")
    if getattr(args, "info", None) is not None and flag not in ("--bgen", "--vcf"):
        raise InputError(
            f"--info needs genotype probabilities (--bgen, or --vcf with --vcf-field GP), "
            f"not {flag}"
        )
    for module, package, extra, needs in (
        ("pgenlib", "pgenlib", "pgen", "--pfile"),
        ("bgen", "bgen", "bgen", "--bgen"),
        ("cyvcf2", "cyvcf2", "vcf", "--vcf"),
    ):
        if flag == needs:
            require_extra(module, package, extra, flag)
    check_input_flags(args)
    if flag == "--bfile":
        from ..plink import read_plink

        return read_plink(args.bfile)
    if flag == "--pfile":
        from ..pgen import read_pgen

        return read_pgen(args.pfile)
    if flag == "--bgen":
        from ..bgenfile import read_bgen

        return read_bgen(args.bgen, args.sample)
    if flag == "--vcf":
        from ..vcf import read_vcf

        source = read_vcf(args.vcf, args.vcf_field)
        if getattr(args, "info", None) is not None and source.field != "GP":
            raise InputError(
                f"--info needs genotype probabilities: --vcf-field GP, not {source.field}"
            )
        return source
    from ..bimbam import read_bimbam

    return read_bimbam(args.bimbam_geno, args.bimbam_anno)


def info_filter(
    args: argparse.Namespace, source: GenotypeSource, mask: np.ndarray
) -> GenotypeSource:
    """--info: the variants whose IMPUTE info over the individuals ``mask``
    is at least the threshold (one pass over the file, before the scan);
    what it kept goes to ``args.info_filter`` for the summary and null.json."""
    from ..genotypes import SubsetGenotypes, default_block_size

    threshold = getattr(args, "info", None)
    if threshold is None:
        return source
    block = default_block_size(int(mask.sum()))
    keep = np.empty(source.n_snps, dtype=bool)
    for start in range(0, source.n_snps, block):
        stop = min(source.n_snps, start + block)
        keep[start:stop] = source.info(start, stop, mask) >= threshold  # type: ignore[attr-defined]
    args.info_filter = {
        "threshold": threshold,
        "individuals": int(mask.sum()),
        "variants": int(keep.sum()),
        "of": source.n_snps,
    }
    if not keep.any():
        raise InputError(f"--info {threshold}: no variant has an INFO score that high")
    return SubsetGenotypes(source, np.flatnonzero(keep))


def skipped_variants(source: GenotypeSource) -> dict[str, int]:
    """The variants a genotype file holds that lmmscan cannot test, by reason:
    those found on opening it and those found while reading it."""
    from ..genotypes import root_source

    root = root_source(source)  # under a --snps / --info view
    out = dict(getattr(root, "skipped", {}))
    for key, k in getattr(root, "skipped_at_read", {}).items():
        out[key] = out.get(key, 0) + k
    return out


def reader_warnings(source: GenotypeSource) -> list[str]:
    """What the genotype file's reader has to say about the values it read
    (BIMBAM dosages outside [0, 2])."""
    from ..genotypes import root_source

    say = getattr(root_source(source), "warnings", None)
    return list(say()) if callable(say) else []


def read_as_missing(source: GenotypeSource) -> str:
    """For a "no SNP left" error: the variants the genotype file gave as
    missing while it was read (a ploidy other than 2, no DS field), which no
    --maf or --miss brings back; "" when none."""
    from ..genotypes import root_source

    found = getattr(root_source(source), "skipped_at_read", {})
    if not found:
        return ""
    reasons = ", ".join(f"{k}: {v}" for k, v in found.items())
    total = sum(found.values())
    return (
        f"; {plural(total, 'variant')} of the genotype file read as missing ({reasons}), "
        "which no --maf or --miss changes"
    )


def describe_skipped(args: argparse.Namespace, source: GenotypeSource) -> list[str]:
    """Summary lines: untestable variants and the --info filter."""
    out = []
    skipped = skipped_variants(source)
    if skipped:
        reasons = ", ".join(f"{k} {v}" for k, v in skipped.items())
        out.append(f"variants skipped as untestable: {reasons}")
    info = getattr(args, "info_filter", None)
    if info:
        out.append(
            f"--info {info['threshold']}: {plural(info['variants'], 'variant')} of {info['of']} "
            f"(INFO over {plural(info['individuals'], 'individual')})"
        )
    return out


def listed_variants(
    args: argparse.Namespace, source: GenotypeSource, flags: tuple[str, ...]
) -> GenotypeSource:
    """``source`` restricted to the variants the files of ``flags`` ("snps",
    "ksnps") list, all of them (GEMMA's -snps / -ksnps); what each list
    matched goes to ``args.variant_lists`` for the summary and null.json."""
    from ..genotypes import select_snps
    from ..textio import read_snp_list

    lists = getattr(args, "variant_lists", None)
    if lists is None:
        lists = args.variant_lists = {}
    for name in flags:
        path = getattr(args, name, None)
        if path is None:
            continue
        ids = read_snp_list(path, f"--{name}")
        n_before = source.n_snps
        source, missing = select_snps(source, ids, f"--{name} {path}")
        lists[name] = {
            "file": str(path),
            "ids": len(set(ids)),
            "ids_not_found": missing,
            "variants": source.n_snps,
            "of": n_before,
        }
    return source


def check_table_fields(args: argparse.Namespace, source: GenotypeSource) -> None:
    """A tested variant whose ID, chromosome or allele holds a tab or a line
    break (a BGEN rsid, a VCF or .pvar ID may), or a space for regenie's
    space-separated rows, would print as two fields or two lines: refused
    before any work, naming the genotype file (kinship and eigen, which
    print no variant, read such files)."""
    from ..genotypes import VariantFile, root_source
    from ..output import FIELD_BREAKS
    from ..variants import unprintable_field, variant_table

    if not isinstance(root_source(source), VariantFile):
        return  # a .bim or BIMBAM line is split at whitespace: no field holds any
    wrong = unprintable_field(variant_table(source), FIELD_BREAKS[args.format], numbered=False)
    if wrong is not None:
        why = (
            " (--format regenie separates fields by spaces: choose gemma, plink2 or gwas-ssf)"
            if args.format == "regenie" and "a space" in wrong
            else ""
        )
        flag = genotype_flag(args)
        raise InputError(wrong + why, path=str(getattr(args, flag[2:].replace("-", "_"))))


def memory_check(args: argparse.Namespace, plan: Any, hints: list[str]) -> None:
    """The plan against --memory-limit or the memory available (exit 2 when
    it does not fit); kept on ``args`` for the summary and null.json."""
    from ..memory import check, parse_size

    limit = None if args.memory_limit is None else parse_size(args.memory_limit)
    args.memory_plan = plan
    # kinship has no --block-size to suggest
    flag = "--block-size" if hasattr(args, "block_size") else None
    args.memory_room = check(plan, limit, hints, flag)


def memory_check_driver(
    args: argparse.Namespace,
    plan: Callable[[str], Any],
    hints: Callable[[str], list[str]],
) -> str:
    """:func:`memory_check` of ``plan(driver)``, with ``--eigh-driver auto``
    resolved first: dsyevd when its plan fits, else dsyevr (whose plan is then
    checked).  The driver is put in effect (inside :func:`run_threads`) and
    returned; the plan kept for null.json names its workspace."""
    from ..memory import fits
    from ..spectral import set_eigh_driver

    driver = args.eigh_driver
    if driver == "auto":
        driver = "evd" if fits(plan("evd").peak, limit_of(args)) else "evr"
    set_eigh_driver(driver)
    chosen, advice = plan(driver), hints(driver)
    if driver == "evd" and not fits(plan("evr").peak, limit_of(args)):
        # suggested only where dsyevr's plan fits (helper 55: it was suggested
        # for a peak in the scan phase, and refused at the same limit)
        advice = [hint for hint in advice if not hint.startswith("--eigh-driver evr")]
    memory_check(args, chosen, advice)
    return str(driver)


def limit_of(args: argparse.Namespace) -> int | None:
    """--memory-limit in bytes (None: the memory available is the limit)."""
    from ..memory import parse_size

    return None if args.memory_limit is None else parse_size(args.memory_limit)


def memory_report(args: argparse.Namespace) -> dict | None:
    """The estimate beside the measured peak (for null.json)."""
    from ..memory import peak_rss

    plan = getattr(args, "memory_plan", None)
    if plan is None:
        return None
    out = plan.as_dict()
    out["peak_rss_bytes"] = peak_rss()
    room = getattr(args, "memory_room", None)
    if room is not None:
        out["available_bytes"], out["available_from"] = room
    return out


def memory_line(args: argparse.Namespace) -> str | None:
    from ..memory import fmt, peak_rss

    plan = getattr(args, "memory_plan", None)
    if plan is None:
        return None
    return f"memory: estimated {fmt(plan.peak)}, peak {fmt(peak_rss())}"


def check_hwe(args: argparse.Namespace, source: GenotypeSource) -> None:
    """--hwe counts genotype classes: refused for a source of dosages only
    (GEMMA bins BIMBAM dosages, and so does lmmscan for BIMBAM files)."""
    if getattr(args, "hwe", 0.0) and getattr(source, "dosages_only", False):
        raise InputError(
            "--hwe needs hard-call genotypes, but these genotypes are dosages: leave --hwe "
            "out, or filter on Hardy-Weinberg equilibrium with the hard calls (plink2 --hwe)"
        )


def describe_variant_lists(args: argparse.Namespace) -> list[str]:
    """One summary line per --snps / --ksnps file."""
    out = []
    for name, d in (getattr(args, "variant_lists", None) or {}).items():
        absent = d["ids_not_found"]
        not_found = f"; {absent} of them not in the genotypes" if absent else ""
        out.append(
            f"--{name} {d['file']}: {plural(d['variants'], 'variant')} of {d['of']} "
            f"({plural(d['ids'], 'ID')} listed{not_found})"
        )
    return out


def phenotypes(
    args: argparse.Namespace, source: GenotypeSource, columns: list[int], required: bool
) -> np.ndarray | None:
    """(samples, len(columns)) phenotypes, NaN missing; None when there is none to read."""
    if args.pheno is not None:
        from ..textio import read_pheno

        return read_pheno(args.pheno, columns, source.n_samples)
    fam = getattr(source, "fam_phenotypes", None)
    if fam is not None and (required or getattr(source, "n_pheno_columns", 1) > 0):
        Y = fam(columns)
        for k, col in enumerate(columns):
            if np.isnan(Y[:, k]).all():  # a .fam of -9s, as plink writes without phenotypes
                raise InputError(
                    f"{pheno_name(args, col)}: every value is missing: the genotype files "
                    "carry no phenotype; give one with --pheno"
                )
        return Y  # type: ignore[no-any-return]
    if required:
        flag = genotype_flag(args)
        raise InputError(f"{flag} needs --pheno ({flag} files carry no phenotype)")
    return None


def covariates(args: argparse.Namespace, source: GenotypeSource) -> np.ndarray | None:
    if args.covar is None:
        return None
    from ..textio import read_covar

    return read_covar(args.covar, source.n_samples)


def pheno_name(args: argparse.Namespace, col: int) -> str:
    """Where phenotype ``col`` comes from, as messages name it: the --pheno
    file, or the genotype files' sample file; for a VCF, a BGEN without
    --sample or BIMBAM (no phenotype there), the genotype file's samples."""
    if args.pheno is not None:
        return f"{args.pheno} column {col}"
    if getattr(args, "pfile", None) is not None:
        return f"{args.pfile}.psam phenotype {col}"
    if getattr(args, "bgen", None) is not None and getattr(args, "sample", None) is not None:
        return f"{args.sample} phenotype {col}"
    if getattr(args, "bfile", None) is not None:
        return f"{args.bfile}.fam phenotype {col} (column {5 + col})"
    for flag in ("bgen", "vcf", "bimbam_geno"):
        if getattr(args, flag, None) is not None:
            return f"the samples of {getattr(args, flag)}"
    return f"phenotype {col}"


def filter_samples(args: argparse.Namespace, source: GenotypeSource) -> Any:
    """The one phenotype (--pheno-col) of ``kinship`` and ``eigen``, analysed:
    its individuals filter the SNPs (all of them when there is no phenotype)."""
    from ..samples import analyse

    Y = phenotypes(args, source, [args.pheno_col], required=False)
    cov = covariates(args, source)
    y = np.zeros(source.n_samples) if Y is None else Y[:, 0]
    names = [pheno_name(args, args.pheno_col)]
    return analyse(y, cov, names, covariate_name=getattr(args, "covar", None))[0]


@contextlib.contextmanager
def run_threads(n: int | None, driver: str | None = None) -> Iterator[None]:
    """BLAS threads capped at n (None: BLAS's own), and the eigensolver."""
    with contextlib.ExitStack() as stack:
        if driver is not None:
            from ..spectral import eigh_driver

            stack.enter_context(eigh_driver(driver))
        if n is not None:
            from .._lapack64 import scipy_library

            scipy_library()  # scipy's OpenBLAS (the decompositions') loaded, so capped too
        stack.enter_context(blas_threads(n))
        yield


def progress(args: argparse.Namespace, total: int, desc: str) -> Any:
    """A progress bar on stderr when it is a terminal and the run is not --quiet."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="SNP",
        unit_scale=True,
        file=sys.stderr,
        disable=args.quiet or not sys.stderr.isatty(),
        leave=False,
        dynamic_ncols=True,
    )
