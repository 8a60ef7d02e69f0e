"""Type stubs for the private C++ extension lmmscan._core."""

from typing import Any

import numpy as np
import numpy.typing as npt

RESULT_COLUMNS: tuple[str, ...]

class NullFit:
    n: int
    c: int
    trace_G: float
    lambda_remle: float
    logl_remle: float
    vg: float
    ve: float
    pve: float
    pve_se: float
    beta: npt.NDArray[np.float64]
    beta_se: npt.NDArray[np.float64]
    lambda_mle: float
    logl_mle: float
    vg_mle: float
    ve_mle: float
    beta_mle: npt.NDArray[np.float64]
    beta_se_mle: npt.NDArray[np.float64]
    yPy_remle: float
    yPy_mle: float
    evaluations: int
    def __getstate__(self) -> tuple[object, ...]: ...
    def __setstate__(self, state: tuple[object, ...]) -> None: ...

def fit_null(
    d: npt.NDArray[np.float64],
    UtW: npt.NDArray[np.float64],
    Uty: npt.NDArray[np.float64],
    l_min: float = 1e-5,
    l_max: float = 1e5,
    n_region: int = 10,
    n_total: int = 0,
    complement: npt.NDArray[np.float64] | None = None,
) -> NullFit: ...
def null_loglik(
    d: npt.NDArray[np.float64],
    UtW: npt.NDArray[np.float64],
    Uty: npt.NDArray[np.float64],
    lambda_: float,
    n_total: int = 0,
    complement: npt.NDArray[np.float64] | None = None,
) -> dict[str, float]: ...

class Scanner:
    def __init__(
        self,
        d: npt.NDArray[np.float64],
        UtW: npt.NDArray[np.float64],
        Uty: npt.NDArray[np.float64],
        null: NullFit,
        wald: bool = True,
        lrt: bool = True,
        score: bool = True,
        l_min: float = 1e-5,
        l_max: float = 1e5,
        n_region: int = 10,
        n_total: int = 0,
        complement: npt.NDArray[np.float64] | None = None,
        fixed_lambda: bool = False,
        raw_W: npt.NDArray[np.float64] | None = None,
        raw_y: npt.NDArray[np.float64] | None = None,
        whitened_lambda: float = ...,
        _reuse_covariate_levels: bool = True,
    ) -> None: ...
    def scan(
        self,
        UtX: npt.NDArray[np.float64] | npt.NDArray[np.float32],
        comp: npt.NDArray[np.float64] | None = None,
        threads: int = 1,
        X: npt.NDArray[np.float64] | None = None,
    ) -> npt.NDArray[np.float64]: ...

def parse_numbers(
    buf: bytes | bytearray | memoryview,
    threads: int = 1,
    out: npt.NDArray[np.float64] | None = None,
    nan_words: bool = True,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], int]: ...
def format_rows(
    columns: list[tuple[str, object]], n: int, tiny: float, threads: int = 1
) -> bytes: ...
def split_fields(buf: bytes, kinds: str, int_limit: int) -> tuple[int, int, list[Any]] | None: ...
def filter_impute(
    X: npt.NDArray[np.float64],
    maf: float,
    miss: float,
    out: npt.NDArray[np.float64] | npt.NDArray[np.float32] | None = None,
    threads: int = 1,
    W: npt.NDArray[np.float64] | None = None,
    work: npt.NDArray[np.float64] | None = None,
) -> tuple[Any, ...]: ...
def distinct_columns(
    X: npt.NDArray[np.float64] | npt.NDArray[np.float32], min_duplicates: int, threads: int = 1
) -> tuple[int, npt.NDArray[np.int64]] | None: ...
def kinship_columns(
    X: npt.NDArray[np.float64],
    cols: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64] | None,
    out: npt.NDArray[np.float64],
    threads: int = 1,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def loco_difference(
    S: npt.NDArray[np.float64], S_c: npt.NDArray[np.float64], p: float
) -> npt.NDArray[np.float64]: ...
def _isa() -> str: ...
def _limit_isa(level: str) -> None: ...
def hwe_exact(
    hom1: npt.NDArray[np.int64],
    het: npt.NDArray[np.int64],
    hom2: npt.NDArray[np.int64],
) -> npt.NDArray[np.float64]: ...
