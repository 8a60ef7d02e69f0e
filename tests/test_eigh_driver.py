"""The LAPACK eigensolver (dsyevr or dsyevd, spectral.eigh_driver / --eigh-driver)
changes the eigenvectors' bases, not the fit or the tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmscan
from lmmscan import cli
from lmmscan.demo import copy_study
from lmmscan.spectral import eigh_driver

from .test_dense import random_problem


def test_evd_and_evr_give_the_same_fit_and_scan():
    # K from 60 SNPs over 120 samples: rank-deficient, a cluster of zero eigenvalues
    K, W, y, X = random_problem(4, n=120, p=60)
    fits, tables = {}, {}
    for driver in ("evr", "evd"):
        with eigh_driver(driver):
            fits[driver] = lmmscan.fit_null(y, W[:, :-1], kinship=K)
            tables[driver] = lmmscan.scan(X, null_model=fits[driver])
    a, b = fits["evr"], fits["evd"]
    assert not np.array_equal(a.spectral.U, b.spectral.U)  # really two solvers
    for name in ("lambda_", "lambda_mle", "vg", "ve", "pve", "pve_se", "loglik_reml", "loglik_ml"):
        assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-9), name
    np.testing.assert_allclose(b.beta, a.beta, rtol=1e-9)
    for col in tables["evr"].columns[7:]:
        np.testing.assert_allclose(
            tables["evd"][col], tables["evr"][col], rtol=1e-8, atol=1e-12, err_msg=col
        )


def test_unknown_driver_is_refused():
    with pytest.raises(lmmscan.InputError, match="eigh driver must be one of"), eigh_driver("evx"):
        pass


def test_cli_eigh_driver(tmp_path, capsys):
    prefix = copy_study(tmp_path / "in")
    tables = {}
    for driver in ("evr", "evd"):
        out = tmp_path / driver
        argv = [
            "scan",
            "--bfile",
            prefix,
            "--pheno",
            f"{prefix}.pheno.txt",
            "--covar",
            f"{prefix}.covar.txt",
            "--eigh-driver",
            driver,
            "--out",
            out,
            "--quiet",
        ]
        assert cli.main([str(a) for a in argv]) == 0
        tables[driver] = pd.read_csv(f"{out}.assoc.txt", sep="\t")
    for col in ("beta", "se", "logl_H1", "l_remle", "p_wald"):  # printed as %.6e
        np.testing.assert_allclose(tables["evd"][col], tables["evr"][col], rtol=2e-6, err_msg=col)
    with pytest.raises(SystemExit):
        cli.main(
            ["scan", "--bfile", str(prefix), "--eigh-driver", "evx", "--out", str(tmp_path / "x")]
        )
    assert "--eigh-driver" in capsys.readouterr().err


def test_auto_takes_dsyevd_where_it_fits(monkeypatch):
    from lmmscan import memory, spectral

    n = 3000
    evd = memory.Plan("")
    memory.decomposition(evd, n, n, "evd")
    evr = memory.Plan("")
    memory.decomposition(evr, n, n, "evr")
    assert evd.peak > evr.peak
    for room, expected in ((evd.peak, "evd"), (evd.peak - 1, "evr"), (None, "evd")):
        monkeypatch.setattr(
            memory, "available", lambda room=room: None if room is None else (room, "test")
        )
        assert spectral.resolve_eigh_driver(n, overwrite=False) == expected
    assert spectral.resolve_eigh_driver(n, False, "evd") == "evd"  # a forced driver stays


def test_auto_equals_the_driver_it_chose():
    K, W, y, X = random_problem(5, n=80, p=40)
    fits = {}
    for driver in ("auto", "evd"):
        with eigh_driver(driver):
            fits[driver] = lmmscan.fit_null(y, W[:, :-1], kinship=K)
    # 80 x 80 fits in any machine's memory: auto is dsyevd, the same bits
    np.testing.assert_array_equal(fits["auto"].spectral.U, fits["evd"].spectral.U)


def test_cli_auto_falls_back_to_dsyevr_under_a_memory_limit(tmp_path):
    import json

    prefix = copy_study(tmp_path / "in")
    # small blocks: the decomposition is the plan's peak
    common = ["scan", "--bfile", prefix, "--pheno", f"{prefix}.pheno.txt", "--quiet"]
    common += ["--block-size", "4"]
    plans = {}
    for name, extra in (("free", []), ("tight", None)):
        if extra is None:
            # a limit between the two drivers' estimates: dsyevd's does not fit
            free = plans["free"]["phases"]["decomposition"]
            n = int(round((free["kinship"] / 8) ** 0.5))
            extra = ["--memory-limit", str(plans["free"]["estimate_bytes"] - 8 * n * n // 2)]
        out = tmp_path / name
        assert cli.main([str(a) for a in [*common, *extra, "--out", out]]) == 0
        plans[name] = json.loads((tmp_path / f"{name}.null.json").read_text())["memory"]
    assert plans["free"]["peak_phase"] == "decomposition"
    assert "dsyevd workspace" in plans["free"]["phases"]["decomposition"]
    assert "dsyevr workspace" in plans["tight"]["phases"]["decomposition"]
    assert plans["tight"]["estimate_bytes"] < plans["free"]["estimate_bytes"]


def test_auto_counts_the_decompositions_side_by_side(monkeypatch):
    from lmmscan import memory, spectral

    n = 3000
    one = memory.Plan("")
    memory.decomposition(one, 0, n, "evd")
    monkeypatch.setattr(memory, "available", lambda: (one.peak, "test"))
    assert spectral.resolve_eigh_driver(n, overwrite=True) == "evd"
    assert spectral.resolve_eigh_driver(n, overwrite=True, concurrent=2) == "evr"
