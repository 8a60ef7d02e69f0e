"""lmmscan: linear mixed models and GEMMA-exact association scans.

Quick tour::

    import lmmscan
    geno = lmmscan.read_plink("data/study")           # lazy .bed/.bim/.fam
    K = lmmscan.kinship(geno)                          # GEMMA -gk 1
    null = lmmscan.fit_null(geno.phenotype, kinship=K)
    table = lmmscan.scan(geno, null_model=null)       # GEMMA -lmm 4 columns
"""

from ._errors import InputError, LmmscanError
from .bimbam import BimbamGenotypes, read_bimbam
from .eigen import Eigendecomposition, eigendecompose, load_eigen, save_eigen
from .genotypes import ArrayGenotypes, GenotypeSource
from .kinship import kinship
from .loco import loco_scan
from .lowrank import LowRankKinship, LowRankSpectral, low_rank_kinship
from .model import LambdaBounds, NullModel, fit_null
from .plink import PlinkGenotypes, read_plink
from .scan import ScanReport, scan
from .textio import read_covar, read_kinship, read_pheno, write_kinship

__version__ = "0.1.0"

__all__ = [
    "ArrayGenotypes",
    "BimbamGenotypes",
    "Eigendecomposition",
    "GenotypeSource",
    "InputError",
    "LambdaBounds",
    "LmmscanError",
    "LowRankKinship",
    "LowRankSpectral",
    "NullModel",
    "PlinkGenotypes",
    "ScanReport",
    "eigendecompose",
    "fit_null",
    "kinship",
    "load_eigen",
    "loco_scan",
    "read_bimbam",
    "read_covar",
    "read_kinship",
    "read_pheno",
    "low_rank_kinship",
    "read_plink",
    "save_eigen",
    "scan",
    "write_kinship",
]
