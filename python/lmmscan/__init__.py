"""lmmscan: linear mixed models and GEMMA-exact association scans.

Quick tour::

    import lmmscan
    geno = lmmscan.read_plink("data/study")           # lazy .bed/.bim/.fam
    K = lmmscan.kinship(geno)                          # GEMMA -gk 1
    null = lmmscan.fit_null(geno.phenotype, kinship=K)
    table = lmmscan.scan(geno, null_model=null)       # GEMMA -lmm 4 columns
"""

from ._errors import InputError, LmmscanError
from .genotypes import ArrayGenotypes, GenotypeSource
from .kinship import kinship
from .model import LambdaBounds, NullModel, fit_null
from .plink import PlinkGenotypes, read_plink
from .scan import ScanReport, scan

__version__ = "0.1.0"

__all__ = [
    "ArrayGenotypes",
    "GenotypeSource",
    "InputError",
    "LambdaBounds",
    "LmmscanError",
    "NullModel",
    "PlinkGenotypes",
    "ScanReport",
    "fit_null",
    "kinship",
    "read_plink",
    "scan",
]
