"""The command line's shared options: the parser class, value types, and the
option groups several commands take (genotypes, individuals, filters, run)."""

from __future__ import annotations

import argparse
from typing import Any

EXIT_INPUT = 2


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (exit status 2, like every bad input)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30, width=100)


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return v


# each interval of the lambda grid is one more likelihood evaluation per SNP
# and three more rows of n weights held per phenotype (the memory plan
# counts them)
MAX_REGION = 10_000


def region_count(text: str) -> int:
    """GEMMA's -region: a positive integer, at most MAX_REGION."""
    v = positive_int(text)
    if v > MAX_REGION:
        raise argparse.ArgumentTypeError(
            f"{text!r} is more than {MAX_REGION:,} intervals (GEMMA's default is 10; each "
            "is one more likelihood evaluation per SNP)"
        )
    return v


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def fraction(text: str) -> float:
    v = _number(text)
    if not (0.0 <= v <= 1.0):  # a negative one would drop every SNP; NaN none
        raise argparse.ArgumentTypeError(f"{text!r} must be a number from 0 to 1")
    return v


def maf_value(text: str) -> float:
    """GEMMA's -maf: any number but NaN, which would turn the filter off
    silently (a negative one turns it off, as GEMMA's -notsnp)."""
    v = _number(text)
    if v != v:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number (a negative one turns the filter off)"
        )
    return v


def columns(text: str) -> list[int]:
    try:
        # an empty field ("1,,3": 1,2,3 meant?) was skipped (helper 68)
        cols = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give column numbers separated by commas, e.g. 1,3,5"
        ) from None
    if not cols or min(cols) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: columns are numbered from 1")
    if len(set(cols)) != len(cols):
        raise argparse.ArgumentTypeError(f"{text!r}: a column is named twice")
    return cols


class _PhenoColumns(argparse.Action):
    """--pheno-col given again (argparse would keep the last value, silently):
    where the command takes several columns (a list), its columns are added
    (1 then 3: as 1,3), a column named twice refused as within one list;
    where it takes one, refused."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        again = getattr(namespace, f"_{self.dest}_given", False)
        setattr(namespace, f"_{self.dest}_given", True)
        if not isinstance(values, list):
            if again:
                parser.error(f"{option_string} is given twice: this command takes one")
            setattr(namespace, self.dest, values)
            return
        cols = [*getattr(namespace, self.dest), *values] if again else list(values)
        if len(set(cols)) != len(cols):
            parser.error(f"{option_string}: column(s) named twice across the flags: {cols}")
        setattr(namespace, self.dest, cols)


def add_genotype_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("genotypes (one of)")
    src = g.add_mutually_exclusive_group(required=True)
    one_of = "Required: one of --bfile, --pfile, --bgen, --vcf, --bimbam-geno"
    src.add_argument(
        "--bfile",
        metavar="PREFIX",
        help="PLINK 1 binary fileset PREFIX.bed/.bim/.fam; the .bim column-5 allele is "
        f"counted (GEMMA -bfile). {one_of}",
    )
    src.add_argument(
        "--pfile",
        metavar="PREFIX",
        help="PLINK 2 fileset PREFIX.pgen/.pvar (or .pvar.zst)/.psam, hard calls or "
        "dosages; ALT is counted; multi-allelic variants are skipped (plink2 --pfile; "
        f"extra pgen). {one_of}",
    )
    src.add_argument(
        "--bgen",
        metavar="FILE",
        help="BGEN v1.1-1.3 file (layouts 1 and 2, zlib or zstd); the second allele is counted, "
        f"as plink2 counts it (plink2 --bgen; REGENIE counts the first unless --ref-first; "
        f"extra bgen). {one_of}",
    )
    src.add_argument(
        "--vcf",
        metavar="FILE",
        help="VCF or BCF file, plain or bgzipped; ALT is counted; see --vcf-field "
        f"(plink2 --vcf; extra vcf). {one_of}",
    )
    src.add_argument(
        "--bimbam-geno",
        metavar="FILE",
        help="BIMBAM mean-genotype file, plain or gzipped: rs allele1 allele0 then one "
        "dosage of allele1 per individual, separated by spaces, tabs or commas, NA missing "
        f"(GEMMA -g). {one_of}",
    )
    g.add_argument(
        "--sample",
        metavar="FILE",
        help="the Oxford .sample file of --bgen (ID_1 ID_2 missing ...); optional when the "
        "BGEN file embeds sample IDs (plink2 --sample). Default: the embedded IDs",
    )
    g.add_argument(
        "--vcf-field",
        choices=("DS", "GP", "GT"),
        help="what --vcf reads: DS (ALT dosage; a sample without DS gets its GT), GP "
        "(P(het) + 2 P(hom ALT)) or GT (hard calls). Default: DS when the header declares "
        "it, else GT",
    )
    g.add_argument(
        "--bimbam-anno",
        metavar="FILE",
        help="BIMBAM annotation file (rs pos chr [cM]) giving chr and ps; without it, or "
        "for SNPs it lacks, chr is -9 and ps -9 (GEMMA -a). Default: none",
    )


def add_sample_args(p: argparse.ArgumentParser, multi: bool) -> None:
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
            type=columns,
            action=_PhenoColumns,
            default=[1],
            help="phenotype column(s), 1-based; with --bfile and no --pheno, column N is "
            ".fam column 5+N (GEMMA -n). Several columns (1,3,5) give one output set per "
            "column, PREFIX.<N>.assoc.txt; columns with the same analysed individuals share "
            "one eigendecomposition and one rotation of the genotypes. Given again, it adds "
            "its columns (--pheno-col 1 --pheno-col 3 is 1,3). Default: 1",
        )
    else:
        g.add_argument(
            "--pheno-col",
            metavar="N",
            type=positive_int,
            action=_PhenoColumns,
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


def probability(text: str) -> float:
    v = _number(text)
    if not (0.0 <= v <= 1.0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number from 0 to 1")
    return v


def positive_float(text: str) -> float:
    v = _number(text)
    if not (0.0 < v < float("inf")):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive finite number")
    return v


def add_filter_args(p: argparse.ArgumentParser, kinship_only: bool = False) -> None:
    g = p.add_argument_group("SNP filters (on the analysed individuals, as GEMMA)")
    g.add_argument(
        "--snps",
        metavar="FILE",
        help="use only the variants whose ID (rs) is listed in FILE, one per line (the first "
        "field of each line; IDs not in the genotype file are counted and ignored) "
        + (
            "(GEMMA -snps). Default: every variant"
            if kinship_only
            else "(GEMMA -snps): the variants tested; a kinship computed here comes from "
            "--ksnps or every variant. Default: every variant"
        ),
    )
    g.add_argument(
        "--ksnps",
        metavar="FILE",
        help="build the kinship from only the variants listed in FILE, as --snps"
        + (" (with --snps, those in both)" if kinship_only else "; with --loco as well")
        + " (GEMMA's help lists -ksnps, but 0.98.5 refuses it: the kinship is GEMMA's -snps "
        "FILE -gk). Default: every variant",
    )
    g.add_argument(
        "--maf",
        metavar="X",
        type=maf_value,
        default=0.01,
        help="drop SNPs with allele frequency < X or > 1-X; a negative X disables it "
        "(GEMMA -maf; -notsnp is --maf -1). Default: 0.01",
    )
    g.add_argument(
        "--miss",
        metavar="Y",
        type=fraction,
        default=0.05,
        help="drop SNPs missing in more than a fraction Y of individuals (GEMMA -miss). "
        "Default: 0.05",
    )
    g.add_argument(
        "--r2",
        metavar="R",
        type=fraction,
        default=0.9999,
        help="with covariates, drop SNPs whose R^2 on them exceeds R (GEMMA -r2). Default: 0.9999",
    )
    g.add_argument(
        "--hwe",
        metavar="P",
        type=probability,
        default=0.0,
        help="drop SNPs whose exact Hardy-Weinberg p-value (Wigginton et al. 2005) is below P, "
        "on the genotype classes (dosages binned as GEMMA bins BIMBAM's: <= 0.5, < 1.5, "
        "above); 0 turns it off, and so does --maf -1 (GEMMA -hwe). Refused for dosages "
        "(--bgen, --vcf with DS or GP). Default: 0",
    )
    g.add_argument(
        "--info",
        metavar="X",
        type=fraction,
        default=None,
        help="keep variants whose imputation INFO (IMPUTE's measure from the genotype "
        "probabilities, over the analysed individuals, as GCTA --info) is at least X; "
        "--bgen, or --vcf with --vcf-field GP. One extra pass over the file. Default: off",
    )


def add_run_args(p: argparse.ArgumentParser, eigh: bool = False) -> None:
    g = p.add_argument_group("run")
    g.add_argument(
        "--threads",
        metavar="N",
        type=positive_int,
        default=None,
        help="threads for the per-SNP tests and for BLAS. Default: the usable cores",
    )
    g.add_argument(
        "--memory-limit",
        metavar="SIZE",
        default=None,
        help="the memory the run may use (16G, 512M, ...): the command estimates its peak "
        "from the sizes before any large allocation and stops (exit 2) when it does not fit; "
        "--loco keeps every chromosome's kinship sum when they fit in it, else rebuilds each "
        "from its SNPs. A soft ulimit -v or -d holds under it too. Default: the cgroup's limit, "
        "else the kernel's MemAvailable",
    )
    if eigh:
        g.add_argument(
            "--eigh-driver",
            choices=["auto", "evr", "evd"],
            default="auto",
            help="LAPACK eigensolver of the kinship: evd (dsyevd, never slower: 6-8%% faster at "
            "n = 1,410, up to 7x on a kinship from fewer SNPs than samples), evr (dsyevr, "
            "8n^2 bytes less), or auto: evd where the memory plan fits, else evr. Default: auto",
        )
    g.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bar and no summary (errors are still printed). Default: a "
        "progress bar on stderr when it is a terminal, and a summary on stdout",
    )


def command(sub: argparse._SubParsersAction, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A sub-command's parser, formatted as every other's."""
    return sub.add_parser(name, formatter_class=Formatter, **kwargs)
