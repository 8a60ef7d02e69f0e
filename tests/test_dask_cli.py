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


def test_workers_that_would_read_another_file_are_refused(tmp_path, capsys, monkeypatch):
    """A relative --bfile resolves in each worker's working directory: a file
    of the same name there was read instead, without a word."""
    import os
    import shutil

    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    for ext in (".bed", ".bim", ".fam", ".pheno.txt"):
        shutil.copy(f"{DEMO}{ext}", here / f"demo{ext}")
        shutil.copy(f"{DEMO}{ext}", there / f"demo{ext}")
    # another file of the same name and size (its first SNPs changed); a copy
    # with the same bytes and another modification time is the same file
    data = bytearray((there / "demo.bed").read_bytes())
    data[3:103] = bytes(100)
    (there / "demo.bed").write_bytes(bytes(data))
    st = os.stat(here / "demo.bed")
    os.utime(here / "demo.bed", ns=(st.st_atime_ns, st.st_mtime_ns - 10**10))
    monkeypatch.chdir(there)  # the workers start here
    with distributed.LocalCluster(
        n_workers=1, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as cluster:
        monkeypatch.chdir(here)
        argv = ["scan", "--bfile", "demo", "--pheno", "demo.pheno.txt", "--quiet",
                "--dask-scheduler", cluster.scheduler_address, "--out", "r"]  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "demo.bed: Dask worker" in err and "sees another file there" in err, err
        assert "give the genotype files by absolute path" in err
        assert not list(here.glob("r.*"))
        # by absolute path the workers read this file: the local table
        argv[2] = str(here / "demo")
        assert main([*argv[:-1], "dask"]) == 0
        # BLAS on one thread, as on the workers, so the rows agree bit for bit
        assert main([*argv[:6], "--threads", "1", "--out", "local"]) == 0
        assert (here / "dask.assoc.txt").read_bytes() == (here / "local.assoc.txt").read_bytes()


def test_a_cluster_that_fails_or_is_no_dask_scheduler_says_so_in_one_line(tmp_path, capsys):
    """A scheduler lost mid-scan printed Dask's 50-line traceback, exit 1; a
    service that is no Dask scheduler said "Unable to allocate 3.07 EiB";
    --dask-scheduler "" scanned locally, exit 0."""
    import asyncio
    import socket
    import threading

    from lmmscan import InputError
    from lmmscan import distributed as dist

    with pytest.raises(OSError, match=r"^the Dask cluster failed during the scan \(CancelledError"):
        with dist.cluster_failures():
            raise asyncio.CancelledError("scheduler-connection-lost")
    with pytest.raises(InputError, match="bad block"):  # a task's own error passes
        with dist.cluster_failures():
            raise InputError("bad block")

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer():
        with server:
            conn, _ = server.accept()
            with conn:
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 64)

    threading.Thread(target=answer, daemon=True).start()
    base = ["scan", "--bfile", str(DEMO), "--pheno", f"{DEMO}.pheno.txt", "--quiet",
            "--out", str(tmp_path / "x")]  # fmt: skip
    assert main([*base, "--dask-scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "cannot reach the Dask scheduler" in err and "EiB" not in err, err
    assert main([*base, "--dask-scheduler", ""]) == 2
    assert "--dask-scheduler needs the scheduler's address" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
