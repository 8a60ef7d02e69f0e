"""Shared fixtures: the committed example data, decompressed once per session."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
GEMMA = DATA / "gemma"


@pytest.fixture(scope="session")
def mouse_dir(tmp_path_factory) -> Path:
    """mouse_hs1940 (GEMMA's example) as plain files: PLINK, BIMBAM, pheno, anno."""
    out = tmp_path_factory.mktemp("mouse_hs1940")
    for src in (DATA / "mouse_hs1940").glob("*.gz"):
        name = src.name[:-3]
        if name.endswith(".geno.txt"):
            shutil.copy(src, out / src.name)  # BIMBAM is read gzipped
            continue
        with gzip.open(src, "rb") as fin, open(out / name, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    return out


@pytest.fixture(scope="session")
def mouse_plink(mouse_dir):
    import lmmscan

    return lmmscan.read_plink(mouse_dir / "mouse_hs1940")


def round_sig10(a: np.ndarray) -> np.ndarray:
    """Values as GEMMA writes and reads them back (%.10g text)."""
    a = np.asarray(a, dtype=np.float64)
    out = np.zeros_like(a)
    nz = a != 0
    exp = np.floor(np.log10(np.abs(a[nz])))
    scale = 10.0 ** (9 - exp)
    out[nz] = np.round(a[nz] * scale) / scale
    return out


@pytest.fixture(scope="session")
def mouse_gk(mouse_plink):
    """lmmscan's -gk 1 and -gk 2 for mouse PLINK, phenotype column 1 (cached)."""
    import lmmscan

    return {method: lmmscan.kinship(mouse_plink, method) for method in ("centered", "standardized")}


def copy_converted(out: Path) -> Path:
    """tests/data/converted (mouse_hs1940 in every genotype format) into
    ``out``, the .pgen decompressed."""
    for src in (DATA / "converted").iterdir():
        if src.name.endswith(".pgen.gz"):
            with gzip.open(src, "rb") as fin, open(out / src.name[:-3], "wb") as fout:
                shutil.copyfileobj(fin, fout)
        elif not src.name.endswith(".sh"):
            shutil.copy(src, out / src.name)
    return out
