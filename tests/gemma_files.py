"""Readers for GEMMA's output files (the committed reference fixtures)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

_LOG_KEYS = {
    "number of analyzed individuals": "n_analyzed",
    "number of covariates": "n_covariates",
    "number of total SNPs/var": "n_snps_total",
    "number of analyzed SNPs/var": "n_snps_analyzed",
    "REMLE log-likelihood in the null model": "loglik_reml",
    "MLE log-likelihood in the null model": "loglik_ml",
    "pve estimate in the null model": "pve",
    "se(pve) in the null model": "pve_se",
    "vg estimate in the null model": "vg",
    "ve estimate in the null model": "ve",
    "beta estimate in the null model": "beta",
    "se(beta)": "beta_se",
}


def read_log(path: Path) -> dict:
    """The summary numbers of a GEMMA .log.txt."""
    out: dict = {}
    for line in Path(path).read_text().splitlines():
        m = re.match(r"## (.+?) = (.*)$", line)
        if m and m.group(1).strip() in _LOG_KEYS:
            key = _LOG_KEYS[m.group(1).strip()]
            values = [float(v) for v in m.group(2).split()]
            out[key] = np.array(values) if key in ("beta", "beta_se") else values[0]
    return out


def read_assoc(path: Path) -> pd.DataFrame:
    return pd.read_csv(
        path, sep="\t", dtype={"chr": str, "rs": str, "allele1": str, "allele0": str}
    )


def read_kinship_sample(stem: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """(entries i j value, row sums) stored for a GEMMA kinship."""
    entries = pd.read_csv(f"{stem}.sample.tsv.gz", sep="\t")
    rowsums = pd.read_csv(f"{stem}.rowsums.tsv.gz", sep="\t")
    return entries, rowsums["rowsum"].to_numpy()
