"""The covariates' projection, done once per fixed lambda for all SNPs
(CovariateLevels in likelihood.hpp), gives bit for bit what projecting them
again for each SNP gives (``_reuse_covariate_levels=False``)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import lmmscan
from lmmscan import _core

from .test_dense import random_problem


def _problem(seed: int, c: int, n: int = 140):
    K, W, y, _ = random_problem(seed, n=n, c=c)
    rng = np.random.default_rng(seed)
    X = rng.binomial(2, rng.uniform(0.05, 0.5, 60), size=(n, 60)).astype(float)
    X[:, 3] = 0.0  # a SNP whose pivot is zero: the recursion skips its level
    X[:, 4] = X[:, 5]
    sp = lmmscan.spectral.Spectral.from_kinship(K)
    UtW = sp.rotate(W)
    Uty = np.ascontiguousarray(sp.U.T @ y)
    UtX = np.ascontiguousarray((sp.U.T @ X).T)
    return sp.d, UtW, Uty, UtX, W, y, X


def _both(d, UtW, Uty, UtX, threads=2, comp=None, Xraw=None, **kwargs):
    fit = kwargs.pop("fit", None) or _core.fit_null(d, UtW, Uty, n_total=kwargs.get("n_total", 0))
    out = []
    for reuse in (True, False):
        s = _core.Scanner(d, UtW, Uty, fit, _reuse_covariate_levels=reuse, **kwargs)
        out.append(s.scan(UtX, comp, threads, Xraw))
    return out


def _same_bits(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert a.tobytes() == b.tobytes(), np.argwhere(~((a == b) | (np.isnan(a) & np.isnan(b))))[:5]


@pytest.mark.parametrize("c", [1, 2, 3, 4, 9])
@pytest.mark.parametrize(
    "tests",
    [
        dict(wald=True, lrt=True, score=True),
        dict(wald=False, lrt=False, score=True),
        dict(wald=True, lrt=False, score=False),
        dict(wald=True, lrt=True, score=True, fixed_lambda=True),
    ],
)
def test_reused_covariate_levels_give_the_same_bits(c, tests):
    d, UtW, Uty, UtX, *_ = _problem(10 + c, c)
    new, old = _both(d, UtW, Uty, UtX, **tests)
    _same_bits(new, old)
    # the tests ran: the score or Wald columns are filled
    assert np.isfinite(new[:, 0]).sum() + np.isfinite(new[:, 7]).sum() > 50


def test_reused_covariate_levels_with_a_complement():
    """Fewer rotated directions than samples: the complement's sums join both
    the covariates' levels and the SNP's entries."""
    d, UtW, Uty, UtX, *_ = _problem(31, 3)
    k = 100
    rng = np.random.default_rng(3)
    G = rng.normal(size=(4, 4))
    gram = G @ G.T
    comp = rng.normal(size=(UtX.shape[0], 5))
    dk = np.ascontiguousarray(d[-k:])
    Wk = np.asfortranarray(UtW[-k:])
    yk = np.ascontiguousarray(Uty[-k:])
    fit = _core.fit_null(dk, Wk, yk, n_total=140, complement=gram)
    new, old = _both(
        dk,
        Wk,
        yk,
        np.ascontiguousarray(UtX[:, -k:]),
        comp=comp,
        fit=fit,
        n_total=140,
        complement=gram,
    )
    _same_bits(new, old)
    assert np.isfinite(new[:, 0]).sum() > 50


def test_reused_covariate_levels_whitened():
    """The whitened fixed-lambda scan (weights 1, 0, 0 at its one lambda)."""
    d, UtW, Uty, UtX, W, y, X = _problem(41, 3)
    fit = _core.fit_null(d, UtW, Uty)
    lam = fit.lambda_remle
    # the whitened vectors: any invertible transform serves for the bit check
    L = np.linalg.cholesky(np.eye(len(y)) + 0.1 * np.ones((len(y), len(y))) / len(y))
    wW = np.asfortranarray(np.linalg.solve(L, W))
    wy = np.linalg.solve(L, y)
    wX = np.ascontiguousarray(np.linalg.solve(L, X).T)
    new, old = _both(
        d,
        wW,
        wy,
        wX,
        Xraw=np.ascontiguousarray(X.T),
        fit=fit,
        wald=True,
        lrt=False,
        score=False,
        fixed_lambda=True,
        raw_W=np.asfortranarray(W),
        raw_y=y,
        whitened_lambda=lam,
    )
    _same_bits(new, old)
    assert np.isfinite(new[:, 0]).sum() > 50


def _fusing_flags() -> list[str] | None:
    """Compiler flags that make multiply-add fusion possible on this CPU, or
    None where the test cannot run what they build."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return []  # fused multiply-adds are in the base instruction set
    if machine in ("x86_64", "amd64"):
        try:
            cpu = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
        return ["-mfma"] if " fma" in cpu else None
    return None


def test_the_two_projections_agree_when_multiply_adds_are_fused(tmp_path):
    """GCC fuses a * b + c across statements where it can (aarch64 wheels,
    any -mfma build); the recursion's two ways must still give the same bits.
    Without likelihood.hpp's guard, 176 of 54,000 values differed here."""
    root = Path(__file__).resolve().parents[1]
    source = root / "tests" / "cpp" / "projection_paths.cpp"
    include = root / "cpp" / "include"
    compiler = next(
        (shutil.which(c) for c in (os.environ.get("CXX"), "c++", "g++") if c and shutil.which(c)),
        None,
    )
    flags = _fusing_flags()
    if compiler is None or flags is None or not include.is_dir():
        pytest.skip("needs a C++ compiler, the source tree and a CPU with FMA")
    exe = tmp_path / "projection_paths"
    # the build's own settings (CMakeLists.txt: C++17, no extensions; the
    # compiler's default contraction, which for GCC fuses across statements)
    build = [compiler, "-std=c++17", "-O2", *flags]
    built = subprocess.run(
        [*build, "-I", str(include), str(source), "-o", str(exe)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    differ, compared = map(int, subprocess.run([str(exe)], capture_output=True, text=True,
                                               timeout=120, check=True).stdout.split())  # fmt: skip
    assert compared == 54_000
    assert differ == 0
