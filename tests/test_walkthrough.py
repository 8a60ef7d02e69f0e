"""The mixed-vs-hierarchical walkthrough runs, draws its figures and agrees with lme4."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .conftest import DATA

EXAMPLE = Path(__file__).parents[1] / "examples" / "mixed_vs_hierarchical.py"


@pytest.fixture(scope="module")
def walkthrough():
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("walkthrough", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_walkthrough(walkthrough, tmp_path, capsys):
    result = walkthrough.main(["--out", str(tmp_path)])
    # the same draws as the lme4/statsmodels reference data
    ref_data = pd.read_csv(DATA / "mixed" / "walkthrough.csv")
    np.testing.assert_array_equal(result["data"].to_numpy(), ref_data.to_numpy())
    ref = json.loads((DATA / "mixed" / "lme4_walkthrough_reml.json").read_text())
    model = result["model"]
    assert model.beta[0] == pytest.approx(ref["fixef"]["x"], rel=1e-6)
    # pooled least squares gets the slope badly wrong; the mixed model does not
    assert abs(result["ols"][0][0] - 1.0) > 0.5
    assert abs(model.beta[0] - 1.0) < 3 * model.beta_se[0]
    for path in result["paths"]:
        assert path.exists() and path.stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "ordinary least squares" in out and "fixed effects" in out
