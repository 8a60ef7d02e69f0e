"""Direct n x n formulas for the LMM (no eigendecomposition): the yardstick
the spectral core is checked against."""

from __future__ import annotations

import numpy as np

LOG2PI = np.log(2 * np.pi)


def gls(K: np.ndarray, lam: float, V: np.ndarray, y: np.ndarray):
    """(H, Hinv, P y'Py) for H = lam K + I and fixed effects V."""
    n = K.shape[0]
    H = lam * K + np.eye(n)
    Hinv = np.linalg.inv(H)
    A = V.T @ Hinv @ V
    P = Hinv - Hinv @ V @ np.linalg.solve(A, V.T @ Hinv)
    return H, A, P


def ml_loglik(K, lam, V, y):
    n = len(y)
    H, _, P = gls(K, lam, V, y)
    return (
        0.5 * n * (np.log(n) - LOG2PI - 1)
        - 0.5 * np.linalg.slogdet(H)[1]
        - 0.5 * n * np.log(y @ P @ y)
    )


def reml_loglik(K, lam, V, y):
    n, c = V.shape
    df = n - c
    H, A, P = gls(K, lam, V, y)
    return (
        0.5 * df * (np.log(df) - LOG2PI - 1)
        - 0.5 * np.linalg.slogdet(H)[1]
        - 0.5 * np.linalg.slogdet(A)[1]
        + 0.5 * np.linalg.slogdet(V.T @ V)[1]
        - 0.5 * df * np.log(y @ P @ y)
    )


def wald(K, lam, W, x, y):
    """GEMMA's beta, se and Wald F for x given W at lam, from dense GLS."""
    n, c = W.shape
    V = np.column_stack([W, x])
    H, A, P1 = gls(K, lam, V, y)
    _, _, P0 = gls(K, lam, W, y)
    beta = np.linalg.solve(A, V.T @ np.linalg.solve(H, y))[-1]
    df = n - c - 1
    yPy1 = y @ P1 @ y
    se = np.sqrt(yPy1 / df * np.linalg.inv(A)[-1, -1])
    F = (y @ P0 @ y - yPy1) * df / yPy1
    return beta, se, F


def score(K, lam, W, x, y):
    n = len(y)
    _, _, P0 = gls(K, lam, W, y)
    return n * (x @ P0 @ y) ** 2 / ((y @ P0 @ y) * (x @ P0 @ x))
