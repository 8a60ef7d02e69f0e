"""lmmscan scan: seconds per phase (summary and PREFIX.null.json) and --lambda.

The demo study (400 individuals x 3,000 SNPs, three chromosomes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lmmscan
from lmmscan.cli import main

DEMO = Path(__file__).resolve().parents[1] / "python" / "lmmscan" / "data" / "demo"
PHASES = (
    "startup",
    "inputs",
    "kinship",
    "eigen",
    "null_fit",
    "read",
    "filter",
    "rotate",
    "tests",
    "write",
)
BASE = ["scan", "--bfile", str(DEMO), "--pheno", f"{DEMO}.pheno.txt"]


def seconds_of(prefix: Path) -> dict:
    return json.loads(Path(f"{prefix}.null.json").read_text())["seconds"]


def check_phases(sec: dict) -> None:
    assert set(PHASES) | {"total"} <= set(sec), sec
    assert all(v >= 0 for v in sec.values()), sec
    # every phase is a disjoint stretch of the run (4-decimal rounding aside)
    assert sum(v for k, v in sec.items() if k != "total") <= sec["total"] + 1e-3, sec


@pytest.mark.parametrize("extra", [(), ("--kinship", "K"), ("--loco",)])
def test_every_phase_is_timed(tmp_path, capsys, extra):
    if extra and extra[0] == "--kinship":
        kin = tmp_path / "K.txt"
        assert main(["kinship", "--bfile", str(DEMO), "--pheno", f"{DEMO}.pheno.txt", "--out",
                     str(kin), "--quiet"]) == 0  # fmt: skip
        extra = ("--kinship", str(kin))
    capsys.readouterr()
    out = tmp_path / "r"
    assert main([*BASE, *extra, "--block-size", "500", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    sec = seconds_of(out)
    check_phases(sec)
    assert sec["startup"] == 0  # main() called from Python: no process start-up to count
    for key in ("kinship", "tests", "write"):
        assert sec[key] > 0, key
    # "read" is the time spent waiting for a block: the read-ahead can hide every
    # read of this small study (the first while the null model is fitted), and the
    # 4-decimal rounding then prints 0 (seen at b0beec6 too, one run in three)
    assert sec["read"] >= 0
    # LOCO decomposes on a thread while it reads: "eigen" is the time waited for it, maybe 0
    assert sec["eigen"] > 0 or "--loco" in extra
    line = next(ln for ln in text.splitlines() if ln.startswith("seconds: "))
    # the summary names the phases as null.json does (it said "lambda search and tests")
    for word in ("kinship", "eigen", "rotate", "null_fit", "tests", "write", "total"):
        assert word in line, (word, line)


def test_startup_and_total_of_the_command(tmp_path):
    """Run as a command: start-up counts from the process's start, and the
    total is close to the wall time seen from outside."""
    out = tmp_path / "r"
    env = {**os.environ, "PYTHONPATH": str(Path(lmmscan.__file__).parents[1])}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lmmscan", *BASE, "--out", str(out), "--quiet"],
                          env=env, capture_output=True, text=True)  # fmt: skip
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr
    sec = seconds_of(out)
    check_phases(sec)
    if sys.platform.startswith("linux"):
        assert sec["startup"] > 0.01  # the interpreter and numpy at least
    assert sec["total"] <= wall + 0.05
    assert sec["total"] >= 0.5 * wall - 0.5


def api_table(y_col: int, **kw) -> pd.DataFrame:
    source = lmmscan.read_plink(DEMO)
    y = pd.read_csv(f"{DEMO}.pheno.txt", sep="\t", header=None)[y_col - 1].to_numpy(dtype=float)
    if kw.pop("loco", False):
        return lmmscan.scan(source, y, loco=True, **kw)
    K = lmmscan.kinship(source, filter_samples=~np.isnan(y))
    return lmmscan.scan(source, y, kinship=K, **kw)


@pytest.mark.parametrize("loco", [False, True])
def test_lambda_null_equals_the_api(tmp_path, loco):
    extra = ["--loco"] if loco else []
    for mode in ("null", "per-snp"):
        assert main([*BASE, *extra, "--test", "all", "--lambda", mode, "--out",
                     str(tmp_path / mode), "--quiet"]) == 0  # fmt: skip
        assert json.loads((tmp_path / f"{mode}.null.json").read_text())["lambda_mode"] == mode
    got = pd.read_csv(tmp_path / "null.assoc.txt", sep="\t", dtype={"chr": str})
    ref = api_table(1, test="all", lambda_mode="null", loco=loco)
    assert (got["rs"].to_numpy() == ref["rs"].to_numpy()).all()
    for col in ("beta", "se", "p_wald", "p_lrt", "p_score"):
        np.testing.assert_allclose(got[col], ref[col], rtol=1e-6, err_msg=col)
    # every SNP at its null model's lambda (LOCO: one per chromosome), not the per-SNP table
    assert got["l_remle"].nunique() == (3 if loco else 1)
    per_snp = pd.read_csv(tmp_path / "per-snp.assoc.txt", sep="\t")
    assert per_snp["l_remle"].nunique() > 100
    assert not np.allclose(per_snp["p_wald"], got["p_wald"], rtol=1e-4)


def test_lambda_null_on_a_dask_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    args = [*BASE, "--test", "wald", "--lambda", "null", "--block-size", "1000", "--quiet"]
    assert main([*args, "--threads", "1", "--out", str(tmp_path / "local")]) == 0
    with distributed.LocalCluster(
        n_workers=1, processes=False, threads_per_worker=1, dashboard_address=":0"
    ) as cluster:
        assert main([*args, "--dask-scheduler", cluster.scheduler_address,
                     "--out", str(tmp_path / "dask")]) == 0  # fmt: skip
    local = (tmp_path / "local.assoc.txt").read_text()
    assert (tmp_path / "dask.assoc.txt").read_text() == local
    assert json.loads((tmp_path / "dask.null.json").read_text())["lambda_mode"] == "null"


def test_lambda_flag_is_checked(capsys):
    with pytest.raises(SystemExit) as exc:
        main([*BASE, "--lambda", "fixed", "--out", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--lambda" in err and "per-snp" in err and "null" in err


def test_lambda_null_with_a_low_rank_eigen(tmp_path, capsys):
    """--eigen of a low-rank kinship (the _scan_each path): the API's table; --resume refused."""
    from lmmscan.eigen import sample_ids_of

    source = lmmscan.read_plink(DEMO)
    y = pd.read_csv(f"{DEMO}.pheno.txt", sep="\t", header=None)[0].to_numpy(dtype=float)
    G = source.read(0, 100, None)
    G = np.where(np.isnan(G), np.nanmean(G, axis=0), G)
    lr = lmmscan.low_rank_kinship(G[:, :80])
    mask = ~np.isnan(y)
    ids = sample_ids_of(source)
    eig = lmmscan.Eigendecomposition.from_spectral(lr.spectral(mask), ids[mask])
    assert eig.low_rank
    path = eig.save(tmp_path / "lr.npz")
    argv = [*BASE, "--eigen", str(path), "--test", "wald", "--lambda", "null", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 0
    got = pd.read_csv(tmp_path / "r.assoc.txt", sep="\t")
    ref = lmmscan.scan(source, y, kinship=lr, test="wald", lambda_mode="null")
    assert (got["rs"].to_numpy() == ref["rs"].to_numpy()).all()
    np.testing.assert_allclose(got["p_wald"], ref["p_wald"], rtol=1e-6)
    assert got["l_remle"].nunique() == 1
    assert json.loads((tmp_path / "r.null.json").read_text())["lambda_mode"] == "null"
    capsys.readouterr()
    assert main([*argv, "--out", str(tmp_path / "s"), "--resume"]) == 2
    assert "--resume works for the block scan only" in capsys.readouterr().err
    assert not any(p.name.startswith("s.") for p in tmp_path.iterdir())


def test_the_command_keeps_freed_blocks_unless_malloc_is_configured(monkeypatch):
    """keep_freed_blocks (called by the command, not by main()) sets glibc's
    thresholds, and leaves them alone when the user set any MALLOC_ variable
    or the C library is another."""
    import os

    from lmmscan.cli import keep_freed_blocks

    for name in [k for k in os.environ if k.startswith("MALLOC_")]:
        monkeypatch.delenv(name)
    try:
        glibc = bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError):  # no confstr, or no such name: not glibc
        glibc = False
    assert keep_freed_blocks() is glibc
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert keep_freed_blocks() is False
