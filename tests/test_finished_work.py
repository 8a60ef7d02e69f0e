"""No finished work lost: an output prefix has one writer, optional parts are
checked before the work, a late failure keeps what is finished, and errors
keep what --resume needs (issue 14, "Finished work lost")."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lmmscan
from lmmscan.cli import main
from lmmscan.demo import copy_study

PYTHONPATH = str(Path(lmmscan.__file__).resolve().parents[1])


@pytest.fixture()
def study(tmp_path) -> Path:
    return copy_study(tmp_path / "in")


def scan_args(prefix: Path, out: Path, *extra) -> list[str]:
    return [str(a) for a in [
        "scan", "--bfile", prefix, "--pheno", f"{prefix}.pheno.txt", "--test", "all",
        "--block-size", 300, "--threads", 1, "--quiet", "--out", out, *extra,
    ]]  # fmt: skip


def files_in(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()}


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def start_scan(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    return subprocess.Popen(
        [sys.executable, "-m", "lmmscan", *argv], env=env, stderr=subprocess.PIPE, text=True
    )


def wait_for_lock(proc: subprocess.Popen, lock: Path) -> None:
    """Until ``proc`` holds the prefix lock (its PID is in the lock file)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if lock.exists() and lock.read_text().strip() == str(proc.pid):
            return
        if proc.poll() is not None:
            pytest.fail(f"the scan ended before it was seen holding the lock: {proc.stderr}")
        time.sleep(0.002)
    pytest.fail("the scan never took the lock")


def test_second_scan_on_a_locked_prefix_is_refused(study, tmp_path, capsys):
    """Two scans with one --out: the second deleted the first's partial table and
    the first then renamed the second's half-written one. Now the second is refused
    at once and the first's table is byte for byte a lone run's."""
    out = tmp_path / "r"
    first = start_scan(scan_args(study, out))
    try:
        wait_for_lock(first, Path(f"{out}.lock"))
        first.send_signal(signal.SIGSTOP)  # holds the lock while the second starts
        before = files_in(tmp_path)
        status = main(scan_args(study, out, "--format", "plink2"))
        line = one_line(capsys.readouterr().err)
        assert status == 2
        assert f"{out}.lock" in line and f"process {first.pid}" in line
        assert files_in(tmp_path) == before  # nothing of the first's touched
    finally:
        first.send_signal(signal.SIGCONT)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert main(scan_args(study, tmp_path / "lone")) == 0
    assert Path(f"{out}.assoc.txt").read_bytes() == (tmp_path / "lone.assoc.txt").read_bytes()
    assert not Path(f"{out}.lock").exists()


def test_stale_lock_of_a_killed_scan_is_taken_over(study, tmp_path):
    out = tmp_path / "r"
    Path(f"{out}.lock").write_text("999999\n")  # its process is gone: no one holds it
    assert main(scan_args(study, out)) == 0
    assert Path(f"{out}.assoc.txt").exists() and not Path(f"{out}.lock").exists()


def test_checkpoint_temporary_of_a_killed_write_is_removed(study, tmp_path):
    """kill -9 while the checkpoint was written left .r.resume.json.tmpPID for good.
    A running process's temporary is left: another run (on another prefix that
    names the same output) is writing it (fault injection, helper 48)."""
    done = subprocess.Popen(["true"])
    done.wait()
    dead, alive = done.pid, os.getppid()
    out = tmp_path / "r"
    for name in (".r.resume.json", ".r.assoc.txt", ".r.null.json"):
        (tmp_path / f"{name}.tmp{dead}").write_text("half")
    (tmp_path / f".r.null.json.tmp{alive}").write_text("another run's")
    assert main(scan_args(study, out)) == 0
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == [f".r.null.json.tmp{alive}"]


def test_scan_plot_without_matplotlib_is_refused_before_the_scan(
    study, tmp_path, capsys, monkeypatch
):
    """It ran the whole scan, then died with a traceback and deleted the tables."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    before = files_in(tmp_path)
    assert main([*scan_args(study, tmp_path / "r"), "--plot"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "--plot needs matplotlib" in line and "lmmscan[plot]" in line
    assert files_in(tmp_path) == before


def test_plot_command_without_matplotlib_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    table = tmp_path / "t.assoc.txt"
    table.write_text("chr\trs\tps\tp_wald\n1\ta\t1\t0.5\n")
    assert main(["plot", str(table), "--out", str(tmp_path / "f.png")]) == 2
    assert "needs matplotlib" in one_line(capsys.readouterr().err)


def test_failed_plot_keeps_the_finished_tables(study, tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    from lmmscan import plot

    def broken(*args, **kwargs):
        raise RuntimeError("no display")

    monkeypatch.setattr(plot, "manhattan", broken)
    out = tmp_path / "r"
    assert main([*scan_args(study, out), "--plot"]) == 0
    err = capsys.readouterr().err
    assert "the plots were not written (no display)" in one_line(err)
    assert Path(f"{out}.assoc.txt").exists() and Path(f"{out}.null.json").exists()
    assert not list(tmp_path.glob("r*.png")) and not list(tmp_path.glob(".r*"))


def test_an_interrupted_plot_says_the_tables_are_complete(study, tmp_path, capsys, monkeypatch):
    """Ctrl-C while --plot drew said "interrupted; no output written" though
    the tables and null.json were in place."""
    pytest.importorskip("matplotlib")
    from lmmscan import plot

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plot, "qq", interrupted)
    out = tmp_path / "r"
    assert main([*scan_args(study, out), "--plot"]) == 130
    err = one_line(capsys.readouterr().err)
    assert "interrupted; the tables and null.json are complete, the plots not written" in err
    assert Path(f"{out}.assoc.txt").exists() and Path(f"{out}.null.json").exists()
    assert not list(tmp_path.glob("r*.png")) and not list(tmp_path.glob(".r*"))


@pytest.mark.parametrize("where", ["lock", "checkpoint", "summary"])
def test_an_interrupt_after_the_outputs_are_in_place_says_so(
    where, study, tmp_path, capsys, monkeypatch
):
    """Ctrl-C once the tables and null.json were in place (the checkpoint's
    removal, the prefix lock's, the summary's lines) said "interrupted; no
    output written", or sent --resume to rescan (helper 48's leftovers)."""
    from lmmscan.cli import checkpoint, prefix
    from lmmscan.cli import scan as scan_cli

    owner, name = {
        "lock": (prefix.PrefixLock, "release"),
        "checkpoint": (checkpoint.Checkpoint, "remove"),
        "summary": (scan_cli, "_print_summary"),
    }[where]
    calls = []
    real = getattr(owner, name)

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # the cleanup's own call goes on

    monkeypatch.setattr(owner, name, interrupted)
    out = tmp_path / "r"
    argv = scan_args(study, out)
    if where == "summary":
        argv.remove("--quiet")
    assert main(argv) == 130
    err = one_line(capsys.readouterr().err)
    assert err == "lmmscan scan: interrupted; the tables and null.json are complete", err
    assert Path(f"{out}.assoc.txt").exists() and Path(f"{out}.null.json").exists()
    assert not Path(f"{out}.resume.json").exists()
    assert not list(tmp_path.glob("r.*partial*")) and not list(tmp_path.glob(".r*"))


@pytest.mark.parametrize("command", ["kinship", "eigen"])
def test_an_interrupt_in_the_summary_says_the_file_is_complete(
    command, study, tmp_path, capsys, monkeypatch
):
    from lmmscan.cli import eigen as eigen_cli
    from lmmscan.cli import kinship as kinship_cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    K = tmp_path / "K.txt"
    pheno = ["--pheno", f"{study}.pheno.txt"]
    if command == "kinship":
        monkeypatch.setattr(kinship_cli, "memory_line", interrupted)
        argv = ["kinship", "--bfile", str(study), *pheno, "--out", str(K)]
        out = K
    else:
        assert main(["kinship", "--bfile", str(study), *pheno, "--quiet", "--out", str(K)]) == 0
        monkeypatch.setattr(eigen_cli, "memory_line", interrupted)
        out = tmp_path / "e.npz"
        argv = ["eigen", "--bfile", str(study), *pheno, "--kinship", str(K), "--out", str(out)]
    capsys.readouterr()
    assert main(argv) == 130
    err = one_line(capsys.readouterr().err)
    assert err == f"lmmscan {command}: interrupted; {out} is complete", err
    assert out.exists()


def test_an_interrupt_swallowed_by_a_finaliser_still_stops_the_run(
    study, tmp_path, capsys, monkeypatch
):
    """Ctrl-C that lands while a ``__del__`` runs raises KeyboardInterrupt
    there, which Python swallows ("Exception ignored in ..."): the scan went on
    to the end with SIGINT and SIGTERM ignored, so nothing could stop it."""
    from lmmscan import output

    class Finaliser:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:  # the handler runs in here
                pass

    write = output.TableWriter.write
    calls = []

    def write_then_finalise(self, *args, **kwargs):
        result = write(self, *args, **kwargs)
        calls.append(1)
        if len(calls) <= 2:  # two in a row: the second before the first is raised again
            Finaliser()  # dropped at once: __del__ runs here
        return result

    monkeypatch.setattr(output.TableWriter, "write", write_then_finalise)
    out = tmp_path / "r"
    assert main(scan_args(study, out)) == 130
    time.sleep(0.1)  # none is raised again after main returned (pytest would stop)
    assert len(calls) < 5
    captured = capsys.readouterr().err
    assert "interrupted" in one_line(captured) and "Exception ignored" not in captured
    assert not Path(f"{out}.assoc.txt").exists()


def test_output_name_taken_by_a_directory_is_refused_before_the_scan(study, tmp_path, capsys):
    """The whole scan ran, then the error named the .partial and advised --resume,
    which failed the same way."""
    (tmp_path / "r.assoc.txt").mkdir()
    before = files_in(tmp_path)
    assert main(scan_args(study, tmp_path / "r")) == 2
    line = one_line(capsys.readouterr().err)
    assert "r.assoc.txt" in line and "directory" in line and "--resume" not in line
    assert files_in(tmp_path) == before


def test_genotypes_cut_short_while_scanned_keep_the_checkpoint(
    study, tmp_path, capsys, monkeypatch
):
    """A .bed truncated while a scan read it: a traceback, and the checkpoint and the
    partial table deleted. Now one line naming the .bed, and what --resume needs kept."""
    from lmmscan.plink import PlinkGenotypes

    real = PlinkGenotypes.read
    calls = {"n": 0}

    def read(self, start, stop, samples=None):
        calls["n"] += 1
        if calls["n"] == 4:  # blocks 1-3 are done: the file is cut short now
            bed = Path(self.prefix + ".bed")
            bed.write_bytes(bed.read_bytes()[: bed.stat().st_size // 2])
            self._bed = None  # as a fresh open of the cut file would be
        return real(self, start, stop, samples)

    monkeypatch.setattr(PlinkGenotypes, "read", read)
    out = tmp_path / "r"
    assert main(scan_args(study, out)) == 2
    line = one_line(capsys.readouterr().err)
    assert f"{study}.bed" in line and "--resume" in line
    # --resume takes only the files the scan began with: a corrected one is a new run
    assert "once the input files are as they were" in line and "new run" in line
    assert Path(f"{out}.resume.json").exists() and Path(f"{out}.assoc.txt.partial").exists()
    assert not Path(f"{out}.assoc.txt").exists()


@pytest.mark.parametrize("command", ["scan", "kinship"])
def test_disk_full_names_the_file(study, tmp_path, capsys, monkeypatch, command):
    """ "No space left on device" without the file's name."""
    from lmmscan import output, textio

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if command == "scan":
        monkeypatch.setattr(output.TableWriter, "write", full)
        argv = scan_args(study, tmp_path / "r")
        name = "r.assoc.txt"
    else:
        monkeypatch.setattr(textio, "write_kinship_text", full)
        argv = ["kinship", "--bfile", str(study), "--pheno", f"{study}.pheno.txt", "--quiet",
                "--out", str(tmp_path / "K.txt")]  # fmt: skip
        name = "K.txt"
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert name in line and "No space left on device" in line


def test_two_interrupts_in_a_row_give_one_line(tmp_path, mouse_dir):
    """Two SIGINTs 2 ms apart printed "Exception ignored in open_bed.__del__ ...
    KeyboardInterrupt" under the interrupted line."""
    out = tmp_path / "r"
    bfile = str(mouse_dir / "mouse_hs1940")
    proc = start_scan(["scan", "--bfile", bfile, "--test", "all", "--block-size", "200",
                       "--threads", "1", "--quiet", "--out", str(out)])  # fmt: skip
    wait_for_lock(proc, Path(f"{out}.lock"))
    time.sleep(0.3)  # into the kinship pass or the scan
    proc.send_signal(signal.SIGINT)
    time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in one_line(err)


@pytest.mark.parametrize("command", ["kinship", "eigen", "plot"])
def test_a_name_too_long_once_made_temporary_is_refused_before_the_work(
    study, tmp_path, capsys, command
):
    """A name a few characters below the file system's limit is valid, but its
    temporary name (.NAME.tmpPID) is not: kinship, eigen and plot did all their
    work and then failed naming that temporary file."""
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    suffix = {"kinship": ".txt", "eigen": ".npz", "plot": ".png"}[command]
    out = tmp_path / ("k" * (limit - len(suffix) - 2) + suffix)
    out.touch()  # the name itself is valid
    out.unlink()
    n = len(Path(f"{study}.fam").read_text().splitlines())
    import numpy as np

    np.save(tmp_path / "in" / "K.npy", np.eye(n))
    inputs = {
        "kinship": ["--bfile", study, "--pheno", f"{study}.pheno.txt"],
        "eigen": ["--bfile", study, "--pheno", f"{study}.pheno.txt", "--kinship",
                  tmp_path / "in" / "K.npy"],
        "plot": [f"{study}.pheno.txt"],  # refused for its name before it is read as a table
    }[command]  # fmt: skip
    assert main([str(a) for a in [command, *inputs, "--out", out]]) == 2
    err = one_line(capsys.readouterr().err)
    assert "name is too long for this file system once the" in err and "shorter --out" in err
    assert files_in(tmp_path) == {"in"}
