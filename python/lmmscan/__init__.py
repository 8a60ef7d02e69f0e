"""lmmscan: linear mixed models and GEMMA-exact association scans.

Quick tour::

    import lmmscan
    geno = lmmscan.read_plink("data/study")           # lazy .bed/.bim/.fam
    K = lmmscan.kinship(geno)                          # GEMMA -gk 1
    null = lmmscan.fit_null(geno.phenotype, kinship=K)
    table = lmmscan.scan(geno, null_model=null)       # GEMMA -lmm 4 columns

The public names are imported on first use (PEP 562), so that ``import
lmmscan`` and the command line start without pandas and scipy; ``from
lmmscan import X`` and ``lmmscan.X`` work for every name in ``__all__``.
"""

from __future__ import annotations

import importlib as _importlib
import sys as _sys
import types as _types
from typing import TYPE_CHECKING

from ._errors import InputError, LmmscanError, NumericalError
from ._version import __version__ as __version__

if TYPE_CHECKING:
    from .bgenfile import BgenGenotypes, read_bgen
    from .bimbam import BimbamGenotypes, read_bimbam
    from .eigen import Eigendecomposition, eigendecompose, load_eigen, save_eigen
    from .engine import ScanReport
    from .genotypes import ArrayGenotypes, GenotypeSource
    from .kinship import kinship
    from .lowrank import LowRankKinship, low_rank_kinship
    from .memory import NotEnoughMemory
    from .model import LambdaBounds, NullModel, fit_null
    from .output import write_table
    from .pgen import PgenGenotypes, read_pgen
    from .plink import PlinkGenotypes, read_plink
    from .scan import loco_scan, scan
    from .spectral import LowRankSpectral
    from .textio import read_covar, read_kinship, read_pheno, write_kinship
    from .vcf import VcfGenotypes, read_vcf

__all__ = [
    "ArrayGenotypes",
    "BgenGenotypes",
    "BimbamGenotypes",
    "Eigendecomposition",
    "GenotypeSource",
    "InputError",
    "LambdaBounds",
    "LmmscanError",
    "LowRankKinship",
    "LowRankSpectral",
    "NotEnoughMemory",
    "NullModel",
    "NumericalError",
    "PgenGenotypes",
    "PlinkGenotypes",
    "ScanReport",
    "VcfGenotypes",
    "eigendecompose",
    "fit_null",
    "kinship",
    "load_eigen",
    "loco_scan",
    "read_bgen",
    "read_bimbam",
    "read_covar",
    "read_kinship",
    "read_pheno",
    "low_rank_kinship",
    "read_pgen",
    "read_plink",
    "read_vcf",
    "save_eigen",
    "scan",
    "write_kinship",
    "write_table",
]

# public name -> the submodule that defines it
_LAZY = {
    "BgenGenotypes": "bgenfile",
    "read_bgen": "bgenfile",
    "PgenGenotypes": "pgen",
    "read_pgen": "pgen",
    "VcfGenotypes": "vcf",
    "read_vcf": "vcf",
    "BimbamGenotypes": "bimbam",
    "read_bimbam": "bimbam",
    "Eigendecomposition": "eigen",
    "eigendecompose": "eigen",
    "load_eigen": "eigen",
    "save_eigen": "eigen",
    "ArrayGenotypes": "genotypes",
    "GenotypeSource": "genotypes",
    "kinship": "kinship",
    "loco_scan": "scan",
    "LowRankKinship": "lowrank",
    "LowRankSpectral": "spectral",
    "low_rank_kinship": "lowrank",
    "NotEnoughMemory": "memory",
    "LambdaBounds": "model",
    "NullModel": "model",
    "fit_null": "model",
    "PlinkGenotypes": "plink",
    "read_plink": "plink",
    "ScanReport": "engine",
    "scan": "scan",
    "read_covar": "textio",
    "read_kinship": "textio",
    "read_pheno": "textio",
    "write_kinship": "textio",
    "write_table": "output",
}


# submodules reachable as attributes (``import lmmscan; lmmscan.model.X``), as
# they were when this package imported them eagerly; ``kinship`` and ``scan``
# name the functions, as before
_SUBMODULES = {
    "bgenfile", "bimbam", "cli", "demo", "distributed", "engine", "eigen", "filters", "genotypes",
    "loco", "lowrank", "model", "output", "pgen", "plink", "plot", "pvalues", "samples",
    "spectral", "textio", "vcf",
}  # fmt: skip


def __getattr__(name: str):
    if name in _SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(_types.ModuleType):
    """The package module: importing the submodules ``lmmscan.kinship`` and
    ``lmmscan.scan`` must not replace the functions of the same names (the
    import system sets the parent's attribute to the submodule), as the eager
    ``from .kinship import kinship`` used to guarantee."""

    def __setattr__(self, name: str, value) -> None:
        if (
            _LAZY.get(name) == name
            and isinstance(value, _types.ModuleType)
            and value.__name__ == f"{__name__}.{name}"
        ):
            value = getattr(value, name)
        super().__setattr__(name, value)

    def __reduce__(self) -> tuple:
        # pickled by name, as a plain module is (cloudpickle, which joblib's
        # loky and Dask use for a function defined in __main__ or a notebook,
        # knows only types.ModuleType itself: "cannot pickle '_Package'")
        return (_importlib.import_module, (self.__name__,))


_sys.modules[__name__].__class__ = _Package
