"""lmmscan scan --dask-scheduler: the local command line's table, from a cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from lmmscan.cli import main

distributed = pytest.importorskip("distributed")

DEMO = Path(__file__).resolve().parents[1] / "python" / "lmmscan" / "data" / "demo"


def test_scheduler_flag_equals_local(tmp_path):
    args = [
        "scan",
        "--bfile",
        str(DEMO),
        "--pheno",
        f"{DEMO}.pheno.txt",
        "--pheno-col",
        "1,2",
        "--test",
        "all",
        "--block-size",
        "500",
        "--quiet",
    ]
    # --threads 1: BLAS on one thread, as on the workers, so the rows agree bit for bit
    assert main([*args, "--threads", "1", "--out", str(tmp_path / "local")]) == 0
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as cluster:
        assert (
            main(
                [
                    *args,
                    "--dask-scheduler",
                    cluster.scheduler_address,
                    "--out",
                    str(tmp_path / "dask"),
                ]
            )
            == 0
        )
    for col in (1, 2):
        local = (tmp_path / f"local.{col}.assoc.txt").read_text()
        remote = (tmp_path / f"dask.{col}.assoc.txt").read_text()
        assert local == remote
        assert len(local.splitlines()) > 2000


def test_unreachable_scheduler_is_an_input_error(tmp_path, capsys):
    code = main(
        [
            "scan",
            "--bfile",
            str(DEMO),
            "--pheno",
            f"{DEMO}.pheno.txt",
            "--dask-scheduler",
            "nosuchprotocol://127.0.0.1:9",
            "--out",
            str(tmp_path / "x"),
            "--quiet",
        ]
    )
    assert code == 2
    assert "Dask scheduler" in capsys.readouterr().err
