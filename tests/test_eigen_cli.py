"""lmmscan eigen and scan --eigen: a saved eigendecomposition reused by the
command line, and refused for other individuals."""

from __future__ import annotations

import numpy as np
import pytest

import lmmscan
from lmmscan.cli import main


@pytest.fixture(scope="module")
def saved(mouse_dir, mouse_gk, tmp_path_factory):
    out = tmp_path_factory.mktemp("eigen_cli")
    K = out / "K.npy"
    np.save(K, mouse_gk["centered"])
    prefix = str(mouse_dir / "mouse_hs1940")
    assert (
        main(
            [
                "eigen",
                "--bfile",
                prefix,
                "--kinship",
                str(K),
                "--out",
                str(out / "mouse.npz"),
                "--quiet",
            ]
        )
        == 0
    )
    return out, prefix, K


def test_scan_with_saved_eigen_equals_scan_with_kinship(saved):
    out, prefix, K = saved
    eig = lmmscan.load_eigen(out / "mouse.npz")
    assert eig.n_samples == 1410 and eig.meta["kinship"] == str(K)
    assert (
        main(
            [
                "scan",
                "--bfile",
                prefix,
                "--eigen",
                str(out / "mouse.npz"),
                "--out",
                str(out / "a"),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(["scan", "--bfile", prefix, "--kinship", str(K), "--out", str(out / "b"), "--quiet"])
        == 0
    )
    assert (out / "a.assoc.txt").read_bytes() == (out / "b.assoc.txt").read_bytes()


def test_other_individuals_are_refused(saved, capsys):
    out, prefix, _ = saved
    # .fam phenotype 6 has other missing individuals than phenotype 1
    code = main(
        [
            "scan",
            "--bfile",
            prefix,
            "--eigen",
            str(out / "mouse.npz"),
            "--pheno-col",
            "6",
            "--out",
            str(out / "c"),
            "--quiet",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "mouse.npz" in err and "not in it" in err and "decompose the kinship again" in err
    assert not (out / "c.assoc.txt").exists()


def test_bad_eigen_arguments(saved, capsys):
    out, prefix, K = saved
    assert (
        main(
            [
                "scan",
                "--bfile",
                prefix,
                "--eigen",
                str(out / "mouse.npz"),
                "--kinship",
                str(K),
                "--out",
                str(out / "d"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "at most one of --kinship, --eigen and --loco" in capsys.readouterr().err
    assert (
        main(
            [
                "eigen",
                "--bfile",
                prefix,
                "--kinship",
                str(K),
                "--out",
                str(out / "e.txt"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "must end in .npz" in capsys.readouterr().err
    assert (
        main(["scan", "--bfile", prefix, "--eigen", str(K), "--out", str(out / "f"), "--quiet"])
        == 2
    )
    assert "not an lmmscan eigendecomposition" in capsys.readouterr().err
