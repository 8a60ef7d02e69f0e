"""Mixed models are hierarchical models: the walkthrough.

Reproduces the simulation of the post lmmscan starts from ("Equivalence of
mixed models and hierarchical models"): J = 4 groups with means 2, 4, 8, 12,
30 samples each, x = -(group mean) + N(0, 1), y = alpha x + group mean +
N(0, 1) with alpha = 1.  Pooled, x and y look unrelated; once the group
effect is modelled, the slope appears.

lmmscan fits the random-intercept model y = a0 + alpha x + b_group + e,
b ~ N(0, vg), e ~ N(0, ve) (the mixed-model view), and reports the posterior
mean of each group effect given the variance components (the hierarchical
view).  The script prints that fit next to ordinary least squares and the
fixed-effects (one dummy per group) fit, and draws the post's four figures
with lmmscan's estimates in place of the true values.

    python examples/mixed_vs_hierarchical.py --out figures/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import gaussian_kde  # noqa: E402

import lmmscan  # noqa: E402

GROUP_MEANS = np.array([2.0, 4.0, 8.0, 12.0])


def simulate(seed: int = 2026, per_group: int = 30, alpha: float = 1.0) -> pd.DataFrame:
    """The post's data (same draws as tests/data/mixed/walkthrough.csv for seed 2026)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(len(GROUP_MEANS)), per_group)
    mu = GROUP_MEANS[g]
    x = -mu + rng.standard_normal(g.size)
    y = alpha * x + mu + rng.standard_normal(g.size)
    return pd.DataFrame({"group": g + 1, "x": x, "y": y})


def least_squares(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    s2 = resid @ resid / (len(y) - X.shape[1])
    return beta, np.sqrt(s2 * np.diag(np.linalg.inv(X.T @ X)))


def fits(data: pd.DataFrame) -> dict:
    x, y, g = data["x"].to_numpy(), data["y"].to_numpy(), data["group"].to_numpy()
    model = lmmscan.fit_null(y, x, groups=g, method="reml")
    ols, ols_se = least_squares(np.column_stack([x, np.ones_like(x)]), y)
    dummies = (g[:, None] == np.unique(g)[None, :]).astype(float)
    fe, fe_se = least_squares(np.column_stack([x, dummies]), y)
    return {"model": model, "ols": (ols, ols_se), "fe": (fe, fe_se)}


def report(data: pd.DataFrame, result: dict) -> str:
    model = result["model"]
    ols, ols_se = result["ols"]
    fe, fe_se = result["fe"]
    re = model.random_effects()
    lines = [
        "slope alpha (true 1.0):",
        f"  mixed model (lmmscan, REML)  {model.beta[0]: .4f} (se {model.beta_se[0]:.4f})",
        f"  ordinary least squares       {ols[0]: .4f} (se {ols_se[0]:.4f})",
        f"  fixed effects (group dummies){fe[0]: .4f} (se {fe_se[0]:.4f})",
        f"variance components: group vg = {model.vg:.4f}, residual ve = {model.ve:.4f}",
        f"log-likelihood (REML, lme4 convention) = {model.loglik:.6f}",
        "group levels: true mean | mixed model a0 + b_j | posterior of b_j: mean, sd "
        "(a integrated out), sd (given a-hat) | fixed effects",
    ]
    for j, label in enumerate(re.index):
        row = re.iloc[j]
        lines.append(
            f"  group {label}: {GROUP_MEANS[j]:5.1f} | {model.beta[1] + row['mean']:8.4f} | "
            f"{row['mean']:8.4f} {np.sqrt(row['var']):.4f} {np.sqrt(row['var_given_beta']):.4f}"
            f" | {fe[1 + j]:8.4f}"
        )
    return "\n".join(lines)


def _density(ax, values: np.ndarray, label: str) -> None:
    grid = np.linspace(values.min() - 3, values.max() + 3, 200)
    ax.plot(grid, gaussian_kde(values)(grid), label=label)


def draw(data: pd.DataFrame, result: dict, out: Path) -> list[Path]:
    """The post's four figures, with lmmscan's alpha-hat and group effects."""
    out.mkdir(parents=True, exist_ok=True)
    model = result["model"]
    alpha = model.beta[0]
    level = model.beta[1] + model.random_effects()["mean"]
    groups = sorted(data["group"].unique())
    paths = []

    fig, ax = plt.subplots(figsize=(7, 5))
    for gi in groups:
        _density(ax, data.loc[data.group == gi, "y"].to_numpy(), f"group {gi}")
    ax.set(xlabel="y", ylabel="density", title="y by group")
    ax.legend()
    paths.append(out / "group_densities.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    axes[0].scatter(data.x, data.y, s=12, color="grey")
    axes[0].set(xlabel="x", ylabel="y", title="pooled: x and y look unrelated")
    for gi in groups:
        sub = data[data.group == gi]
        axes[1].scatter(sub.x, sub.y, s=12, label=f"group {gi}")
    axes[1].set(xlabel="x", title="coloured by group: the slope within groups")
    axes[1].legend()
    paths.append(out / "xy_pooled_and_by_group.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 5))
    for gi in groups:
        sub = data[data.group == gi]
        _density(ax, (sub.y - alpha * sub.x).to_numpy(), f"group {gi}")
    ax.set(
        xlabel=r"$y - x\hat\alpha$",
        ylabel="density",
        title=rf"covariate-corrected y ($\hat\alpha$ = {alpha:.3f})",
    )
    ax.legend()
    paths.append(out / "group_densities_corrected.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 5))
    for j, gi in enumerate(groups):
        sub = data[data.group == gi]
        ax.scatter(sub.x, sub.y - level.iloc[j], s=12, label=f"group {gi}")
    xs = np.linspace(data.x.min(), data.x.max(), 2)
    ax.plot(xs, alpha * xs, color="black", lw=1, label=rf"slope $\hat\alpha$ = {alpha:.3f}")
    ax.set(xlabel="x", ylabel=r"$y - \hat\beta_j$", title="group effects removed")
    ax.legend()
    paths.append(out / "xy_group_corrected.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("mixed_vs_hierarchical"),
        help="folder for the PNGs (default: ./mixed_vs_hierarchical)",
    )
    parser.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
    args = parser.parse_args(argv)
    data = simulate(args.seed)
    result = fits(data)
    print(report(data, result))
    result["paths"] = draw(data, result, args.out)
    print("figures:", ", ".join(str(p) for p in result["paths"]))
    result["data"] = data
    return result


if __name__ == "__main__":
    main()
