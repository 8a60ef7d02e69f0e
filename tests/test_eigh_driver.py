"""The LAPACK eigensolver (dsyevr or dsyevd, model.eigh_driver / --eigh-driver)
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
