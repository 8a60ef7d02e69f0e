"""GEMMA's relatedness matrices (-gk 1 centred, -gk 2 standardised), block by block."""

from __future__ import annotations

from typing import Literal

import numpy as np

from ._errors import InputError
from .filters import FilterCounts, gemma_filter
from .genotypes import as_source, default_block_size

KinshipMethod = Literal["centered", "standardized"]


def kinship(
    genotypes: object,
    method: KinshipMethod = "centered",
    *,
    maf: float | None = 0.01,
    miss: float = 0.05,
    filter_samples: np.ndarray | None = None,
    block_size: int | None = None,
    return_counts: bool = False,
) -> np.ndarray | tuple[np.ndarray, FilterCounts]:
    """GEMMA's kinship over all samples of ``genotypes``.

    Parameters
    ----------
    genotypes
        A (samples x SNPs) array with NaN for missing, or a source such as
        :func:`lmmscan.read_plink`.
    method
        ``"centered"`` (GEMMA ``-gk 1``: K = Z Z' / p with Z the SNPs centred
        by their mean) or ``"standardized"`` (``-gk 2``: each SNP also divided
        by its standard deviation).
    maf, miss
        GEMMA's SNP filters (see :func:`lmmscan.filters.gemma_filter`),
        computed over ``filter_samples`` only.
    filter_samples
        Boolean mask (or indices) of the samples GEMMA would analyse; the
        filters use only these, while K spans every sample.  Default: for a
        PLINK source the samples with a non-missing .fam phenotype (as
        ``gemma -bfile ... -gk``), otherwise all samples.
    return_counts
        Also return the :class:`~lmmscan.filters.FilterCounts`.

    Each SNP's mean and (population) variance are taken over all samples with
    missing calls set to the mean; p is the number of SNPs used.
    """
    if method not in ("centered", "standardized"):
        raise InputError(f"method must be 'centered' or 'standardized', got {method!r}")
    source = as_source(genotypes)
    n = source.n_samples
    if filter_samples is None:
        pheno = getattr(source, "phenotype", None)
        mask = ~np.isnan(pheno) if pheno is not None else np.ones(n, dtype=bool)
    else:
        mask = np.asarray(filter_samples)
        if mask.dtype != bool:
            m = np.zeros(n, dtype=bool)
            m[mask] = True
            mask = m
        if mask.shape != (n,):
            raise InputError(f"filter_samples must have length {n}, got {mask.shape}")
    if not mask.any():
        raise InputError("no sample to compute the SNP filters on (filter_samples is empty)")
    block_size = block_size or default_block_size(n)
    K = np.zeros((n, n))
    counts = FilterCounts()
    used = 0
    for start in range(0, source.n_snps, block_size):
        stop = min(source.n_snps, start + block_size)
        X = source.read(start, stop)
        keep, _, _, c = gemma_filter(X[mask], maf=maf, miss=miss)
        counts.add(c)
        if not keep.any():
            continue
        Z = X[:, keep]
        missing = np.isnan(Z)
        n_obs = n - missing.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(missing, 0.0, Z).sum(axis=0) / n_obs
        Z = np.where(missing, mean, Z) - mean
        if method == "standardized":
            var = np.einsum("ij,ij->j", Z, Z) / n
            scale = np.where(var != 0.0, 1.0 / np.sqrt(np.where(var != 0, var, 1.0)), 1.0)
            Z *= scale
        K += Z @ Z.T
        used += Z.shape[1]
    if used == 0:
        raise InputError("no SNP passed the filters: the kinship cannot be computed")
    K /= used
    if return_counts:
        return K, counts
    return K
