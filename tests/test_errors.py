"""Errors by their true cause: the core's argument errors as lmmscan.InputError,
a numerical failure as lmmscan.NumericalError, and the command line's exit
status telling the two apart (2 and 3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lmmscan
from lmmscan import _core
from lmmscan.cli import EXIT_INPUT, EXIT_NUMERICAL, main
from lmmscan.demo import copy_study
from lmmscan.spectral import Spectral, Whitening


def test_core_argument_errors_are_input_errors():
    """They reached Python as a bare ValueError, which the command line did not
    report as an lmmscan error."""
    d = np.array([1.0, np.inf, 1.0, 1.0])
    W = np.ones((4, 1), order="F")
    with pytest.raises(lmmscan.InputError, match="must be finite"):
        _core.fit_null(d, W, np.ones(4), 1e-5, 1e5, 10, 0, None)
    with pytest.raises(lmmscan.InputError, match="lambda bounds"):
        _core.fit_null(np.ones(4), W, np.ones(4), 1.0, 0.5, 10, 0, None)


def test_numerical_failure_is_not_an_input_error():
    """lambda K + I that is not positive definite used to be InputError."""
    spectral = Spectral(d=np.full(3, -2.0), U=np.eye(3, order="F"))
    with pytest.raises(lmmscan.NumericalError, match="not positive definite") as exc:
        Whitening.from_spectral(spectral, 1.0)
    assert not isinstance(exc.value, lmmscan.InputError)
    assert isinstance(exc.value, lmmscan.LmmscanError)


def test_command_exit_status_tells_numerical_failure_from_bad_input(
    tmp_path: Path, capsys, monkeypatch
):
    study = copy_study(tmp_path / "in")
    argv = ["scan", "--bfile", str(study), "--pheno", f"{study}.pheno.txt", "--lambda", "null",
            "--test", "wald", "--out", str(tmp_path / "r")]  # fmt: skip

    def fail(cls, spectral, lambda_, **kwargs):
        raise lmmscan.NumericalError("lambda K + I is not positive definite in floating point")

    monkeypatch.setattr(Whitening, "from_spectral", classmethod(fail))
    assert main(argv) == EXIT_NUMERICAL == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not positive definite" in err[0]
    assert not list(tmp_path.glob("r*"))
    argv[argv.index("--pheno") + 1] = str(tmp_path / "missing.txt")
    assert main(argv) == EXIT_INPUT == 2
