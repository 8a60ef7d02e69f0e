"""The command in unusual surroundings (helper 61): a file already named like
the scan's lock, closed or failing standard streams, an inherited ignored
SIGINT, names matplotlib would read as mathtext, a permissive umask, inputs
reached through a symlinked directory, an address-space limit."""

from __future__ import annotations

import io
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lmmscan
from lmmscan import memory
from lmmscan.cli import main
from lmmscan.demo import copy_study

PYTHONPATH = str(Path(lmmscan.__file__).resolve().parents[1])
ENV = {"PYTHONPATH": PYTHONPATH, "PATH": "/usr/bin:/bin"}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return copy_study(tmp_path_factory.mktemp("study"))


def _scan(study, out, *extra):
    argv = ["scan", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--threads", "1",
            "--quiet", "--out", out, *extra]  # fmt: skip
    return main([str(a) for a in argv])


def test_a_file_named_like_the_lock_is_left_as_it_is(study, tmp_path, capsys):
    """`--out poetry` deleted a project's poetry.lock, and a symlink named
    like the lock had its target truncated to the scan's PID."""
    lock = tmp_path / "poetry.lock"
    lock.write_text('{"hash": "abc"}\n')
    assert _scan(study, tmp_path / "poetry") == 2
    assert "poetry.lock: exists and is not an lmmscan lock" in capsys.readouterr().err
    assert lock.read_text() == '{"hash": "abc"}\n'
    notes = tmp_path / "notes.txt"
    notes.write_text("important\n")
    (tmp_path / "study.lock").symlink_to(notes)
    assert _scan(study, tmp_path / "study") == 2
    assert "study.lock: is a symbolic link" in capsys.readouterr().err
    assert notes.read_text() == "important\n"
    assert not list(tmp_path.glob("*.assoc.txt"))


def test_a_lock_left_by_a_killed_run_is_taken_over(study, tmp_path):
    (tmp_path / "r.lock").write_text("4242\n")
    assert _scan(study, tmp_path / "r") == 0
    assert (tmp_path / "r.assoc.txt").stat().st_size > 0
    assert not (tmp_path / "r.lock").exists()


def test_an_input_named_like_the_lock_is_refused(study, tmp_path, capsys):
    pheno = tmp_path / "s.lock"
    pheno.write_bytes(Path(f"{study}.pheno.txt").read_bytes())
    argv = ["scan", "--bfile", study, "--pheno", pheno, "--out", tmp_path / "s", "--quiet"]
    assert main([str(a) for a in argv]) == 2
    assert "is the --pheno input" in capsys.readouterr().err
    assert pheno.read_bytes() == Path(f"{study}.pheno.txt").read_bytes()


def _command(argv, preexec=None, env=None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "lmmscan", *map(str, argv)],
        env=env or ENV,
        preexec_fn=preexec,
        timeout=300,
        **kw,
    )


@pytest.mark.parametrize("quiet", [False, True])
def test_a_closed_stderr_loses_the_messages_not_the_run(study, tmp_path, quiet):
    """2>&-: sys.stderr is None; the progress bar's isatty() raised
    AttributeError (exit 1, nothing written), and with --quiet the final
    flush made a finished run exit 1."""
    out = tmp_path / "o"
    argv = ["scan", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--threads", "1",
            "--out", out, *(["--quiet"] if quiet else [])]  # fmt: skip
    proc = _command(argv, preexec=lambda: os.close(2), stdout=subprocess.DEVNULL)
    assert proc.returncode == 0
    assert Path(f"{out}.assoc.txt").stat().st_size > 0
    bad = _command([*argv, "--covar", tmp_path / "missing.txt"], preexec=lambda: os.close(2))
    assert bad.returncode == 2


def test_bad_input_with_stderr_on_a_full_device_exits_2(study, tmp_path):
    with open("/dev/full", "w") as full:
        proc = _command(
            [
                "scan",
                "--bfile",
                study,
                "--pheno",
                tmp_path / "missing.txt",
                "--out",
                tmp_path / "o",
            ],
            stderr=full,
        )
    assert proc.returncode == 2


def test_an_inherited_ignored_sigint_stays_ignored(monkeypatch, study, tmp_path):
    """A shell's background job starts with SIGINT ignored; the command set
    its own handler and a Ctrl-C meant for the shell stopped it."""
    import lmmscan.__main__ as entry
    import lmmscan.cli.plot as plot_command

    seen = []

    def record(args):
        seen.append(signal.getsignal(signal.SIGINT))
        return 0

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        monkeypatch.setattr(plot_command, "run", record)
        assert main(["plot", str(tmp_path / "t.assoc.txt"), "--out", str(tmp_path / "t.png")]) == 0
        monkeypatch.setattr("lmmscan.cli.run", lambda: seen.append(signal.getsignal(signal.SIGINT)))
        entry.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert seen == [signal.SIG_IGN, signal.SIG_IGN]


def test_names_with_dollars_and_undecodable_bytes_are_drawn_as_written():
    """`run$1_$2` was parsed as mathtext (ParseException) and a file name's
    byte that is not UTF-8 (a surrogate) failed in the font renderer."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt
    import pandas as pd

    from lmmscan.plot import _literal, results_figure

    assert _literal("run$1_$2") == r"run\$1_\$2"
    assert _literal(os.fsdecode(b"p\xff.assoc.txt")) == r"p\xff.assoc.txt"
    rng = np.random.default_rng(1)
    table = pd.DataFrame(
        {
            "chr": ["1"] * 50,
            "rs": [f"rs${k}$x" for k in range(50)],
            "ps": np.arange(50) * 1000,
            "p_wald": np.r_[1e-12, rng.uniform(size=49)],
        }  # fmt: skip
    )
    fig = results_figure(table, "p_wald", title=os.fsdecode(b"run$1_$2\xff"))
    try:
        fig.savefig(io.BytesIO(), format="png")
    finally:
        plt.close(fig)


def test_a_plot_that_fails_in_any_way_keeps_the_tables(monkeypatch, study, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    import lmmscan.cli.scan as scan_command

    def fail(*args):
        raise TypeError("the font renderer refused a name")

    monkeypatch.setattr(scan_command, "_write_plots", fail)
    assert _scan(study, tmp_path / "o", "--plot") == 0
    assert "the plots were not written (the font renderer" in capsys.readouterr().err
    assert (tmp_path / "o.assoc.txt").stat().st_size > 0


def test_the_table_takes_the_umask_as_every_output_does(study, tmp_path):
    old = os.umask(0o002)
    try:
        assert _scan(study, tmp_path / "o") == 0
    finally:
        os.umask(old)
    for name in ("o.assoc.txt", "o.null.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o664, name


def test_inputs_through_a_symlinked_directory_are_the_same_inputs(study, tmp_path):
    """--resume compared the paths' spellings: the same files reached through
    a symlinked directory ($HOME and /gpfs/home) were 'another run's'."""
    import argparse

    from lmmscan.cli.checkpoint import command_options

    alias = tmp_path / "alias"
    alias.symlink_to(Path(study).parent)
    real = argparse.Namespace(bfile=str(study), pheno=f"{study}.pheno.txt", test="all")
    linked = argparse.Namespace(
        bfile=str(alias / Path(study).name), pheno=str(alias / f"{Path(study).name}.pheno.txt"),
        test="all",
    )  # fmt: skip
    assert command_options(real) == command_options(linked)


def test_a_summary_character_the_encoding_lacks_is_escaped(study, tmp_path):
    """PYTHONIOENCODING=ascii: the summary stopped at "pve = ... ±" and the
    top hits and the files written were not said."""
    argv = ["scan", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--threads", "1",
            "--out", tmp_path / "o"]  # fmt: skip
    proc = _command(argv, env={**ENV, "PYTHONIOENCODING": "ascii"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "cut short" not in proc.stderr
    assert "\\xb1" in proc.stdout and "wrote " in proc.stdout


def test_an_address_space_limit_is_room_the_plan_must_fit(monkeypatch):
    """ulimit -v (SGE's h_vmem) above the plan but below what the process
    maps: a scan failed to start a thread, or hung in OpenBLAS's buffer
    allocation.  The limit, less what is mapped and what a run maps beside
    its data, is the room."""
    import resource

    mapped = memory._kib_field("/proc/self/status", "VmSize")
    real = resource.getrlimit

    def limited(which):
        if which == resource.RLIMIT_AS:
            return (mapped + (100 << 20), resource.RLIM_INFINITY)
        return real(which)

    monkeypatch.setattr(resource, "getrlimit", limited)
    room, source = memory.available()
    assert source.startswith("ulimit -v")
    assert room <= memory.current_rss() + (100 << 20)
    n = int(np.sqrt(room / 8)) + 1  # a kinship alone past the room
    with pytest.raises(memory.NotEnoughMemory, match="ulimit -v") as refused:
        memory.check(memory.eigen_plan(n, n, "evd"), None, [])
    said = str(refused.value)
    assert "raise that limit" in said and "--memory-limit if" not in said
    # --memory-limit does not lift it: past the limit an allocation fails
    # whatever the figure given (a failure in scipy's OpenBLAS's start hung)
    with pytest.raises(memory.NotEnoughMemory, match="ulimit -v"):
        memory.check(memory.eigen_plan(n, n, "evd"), 1 << 40, [])
    assert not memory.fits(2 * room + (64 << 20), 1 << 40)
    assert memory.room_for(1 << 20) == (1 << 20, "--memory-limit")  # a smaller limit holds


def test_a_file_name_is_shown_on_one_line_as_it_is(capsys, tmp_path):
    """A newline in a name split the message; two spaces were shown as one."""
    from lmmscan._errors import InputError, one_line

    assert one_line(InputError("bad", path="my  pheno.txt")) == "my  pheno.txt: bad"
    assert one_line(InputError("bad", path="a\nb.txt")) == r"a\nb.txt: bad"
    assert one_line(ValueError("one\n  two ")) == "one two"
    argv = ["kinship", "--bfile", tmp_path / "x\ny", "--out", tmp_path / "k.txt"]
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "x\\ny" in err


def test_a_closed_stdin_is_not_taken_by_the_first_file_opened(study, tmp_path):
    """With stdin closed the lock took descriptor 0, and --pheno /dev/stdin
    read the lock as the phenotypes."""
    argv = ["scan", "--bfile", study, "--pheno", "/dev/stdin", "--out", tmp_path / "o"]
    proc = _command(argv, preexec=lambda: os.close(0), capture_output=True, text=True)
    assert proc.returncode == 2
    assert "/dev/stdin: --pheno names a device" in proc.stderr


def test_plots_leave_no_temporary_matplotlib_directory(study, tmp_path):
    """Where no config directory is writable, matplotlib makes one in TMPDIR
    and removes it at exit; the command's fast exit skipped that."""
    pytest.importorskip("matplotlib")
    assert _scan(study, tmp_path / "o") == 0
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**ENV, "TMPDIR": str(tmp), "MPLCONFIGDIR": "/proc/none", "HOME": "/proc/none"}
    proc = _command(["plot", tmp_path / "o.assoc.txt", "--out", tmp_path / "p.png"], env=env)
    assert proc.returncode == 0
    assert (tmp_path / "p.png").stat().st_size > 0
    assert not list(tmp.glob("matplotlib-*"))


def test_a_checkpoint_naming_a_symlinked_directory_still_resumes(tmp_path):
    """Helper 62: a checkpoint written before real paths were recorded names
    the symlinked directory's path; the same file must still match, and a
    /dev/fd name (a process substitution) is kept as written."""
    from lmmscan.cli.checkpoint import _canonical, differences

    real = tmp_path / "data"
    real.mkdir()
    (real / "m.bed").write_bytes(b"x")
    (tmp_path / "link").symlink_to(real)
    st = (real / "m.bed").stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    old = {"files": {"bed": {"path": str(tmp_path / "link" / "m.bed"), **stamp}}}
    new = {"files": {"bed": {"path": _canonical(tmp_path / "link" / "m.bed"), **stamp}}}
    assert new["files"]["bed"]["path"] == str(real / "m.bed")
    assert differences(old, new) == []
    moved = {"files": {"bed": {"path": str(tmp_path / "other.bed"), **stamp}}}
    assert differences(old, moved)
    assert _canonical("/dev/fd/63") == "/dev/fd/63"


def test_a_data_limit_leaves_room_for_a_run_that_fits(monkeypatch):
    """Helper 62: ulimit -d was charged the address space a thread reserves
    (arenas), which the data segment does not hold: runs that fit at 500 MiB
    were refused."""
    import resource

    data = memory._kib_field("/proc/self/status", "VmData")
    real = resource.getrlimit

    def limited(which):
        if which == resource.RLIMIT_DATA:
            return (data + (300 << 20), resource.RLIM_INFINITY)
        if which == resource.RLIMIT_AS:
            return (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        return real(which)

    monkeypatch.setattr(resource, "getrlimit", limited)
    monkeypatch.setattr("lmmscan._threads.usable_cores", lambda: 64)
    room, source = memory._address_space_room()
    assert source.startswith("ulimit -d")
    assert room >= memory.current_rss() + (300 << 20) - memory.DATA_FIXED - 64 * (8 << 20)


@pytest.mark.parametrize("which", ["RLIMIT_AS", "RLIMIT_DATA"])
@pytest.mark.parametrize("part", [0.5, 0.9])
def test_a_limit_too_small_to_start_is_said_in_one_line(study, tmp_path, which, part):
    """ulimit -v 60-140 MB or ulimit -d 30-95 MB on 2 cores: loading numpy
    and OpenBLAS ended in a traceback, OpenBLAS's abort ("Memory allocation
    still failed", exit 1) or a false "interrupted" (exit 130)."""
    import resource

    from lmmscan._threads import usable_cores

    flag = "ulimit -v" if which == "RLIMIT_AS" else "ulimit -d"
    mib = int(part * memory.start_floor(usable_cores())[flag]) >> 20

    def limit():
        resource.setrlimit(getattr(resource, which), (mib << 20, resource.RLIM_INFINITY))

    argv = ["scan", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--out", tmp_path / "o"]
    proc = _command(argv, preexec=limit, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"lmmscan: error: {flag} is {mib} MiB, below the ")
    assert len(proc.stderr.splitlines()) == 1
    assert not list(tmp_path.glob("o*"))


@pytest.mark.parametrize(("length", "plot"), [(232, False), (230, True)])
def test_an_out_name_too_long_for_a_temporary_is_refused_before_the_work(
    study, tmp_path, capsys, length, plot
):
    """A --out of 232-245 characters failed after the scan: at its
    checkpoint's temporary (.PREFIX.resume.json.tmpPID), or at the plots'
    once the tables were written (helper 61)."""
    if plot:
        pytest.importorskip("matplotlib")
    out = tmp_path / ("a" * length)
    assert _scan(study, out, *(["--plot"] if plot else [])) == 2
    err = capsys.readouterr().err
    assert "too long for this file system" in err and "choose a shorter --out" in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_pipe_named_as_an_input_is_said_to_be_one_on_resume(tmp_path):
    """--pheno <(cat f): its size and time change at every run, and --resume
    said it "has changed since (size or modification time)" (helper 63)."""
    from lmmscan.cli.checkpoint import differences

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    old = {"files": {"pheno": {"path": str(fifo), "size": 0, "mtime_ns": 1}}}
    new = {"files": {"pheno": {"path": str(fifo), "size": 0, "mtime_ns": 2}}}
    (diff,) = differences(old, new)
    assert diff == (
        f"{fifo} is a pipe, whose contents a resumed run cannot check against the "
        "checkpoint's (a scan to be resumed needs its inputs as files)"
    )


def test_an_out_name_whose_plots_are_not_drawn_is_not_held_to_their_length(study, tmp_path):
    """Helper 64: the plots' names (the longest) were checked without --plot,
    and a --out of 230-231 characters that fits was refused."""
    assert _scan(study, tmp_path / ("a" * 230)) == 0


def test_help_and_version_start_under_a_limit_a_run_is_refused_at(tmp_path):
    """Helper 64: the floor of a run (numpy's and scipy's BLAS buffers a
    core: 4,864 MiB on 48 cores) refused --version under a 4 GB h_vmem."""
    import resource

    from lmmscan._threads import usable_cores

    mib = int(0.9 * memory.start_floor(usable_cores())["ulimit -v"]) >> 20
    assert mib > memory.start_floor(usable_cores(), runs=False)["ulimit -v"] >> 20

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (mib << 20, resource.RLIM_INFINITY))

    proc = _command(["--version"], preexec=limit, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("lmmscan "), proc.stderr
    proc = _command(["kinship", "--bfile", tmp_path / "x", "--out", tmp_path / "k.txt"],
                    preexec=limit, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and "needs to run on" in proc.stderr, proc.stderr


def _sigterm_after(argv, wait: float) -> tuple[float, int, str]:
    """Start the command, send SIGTERM ``wait`` seconds on (it must still be
    running), and return the seconds it took to end, its status and stderr."""
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "lmmscan", *map(str, argv)],
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(wait)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    return time.monotonic() - sent, proc.returncode, err


def test_sigterm_acts_during_a_decomposition(tmp_path):
    """A signal's Python handler runs on the main thread between bytecodes:
    with the decomposition called there, SIGTERM and Ctrl-C waited for
    LAPACK to return (38 s at n = 6,000, hours at n = 50,000).  It now runs
    on a worker thread, and the command stops at once: nothing written."""
    from bed_reader import to_bed

    n = 4000  # dsyevd on one thread: several seconds past the wait below on any CPU
    rng = np.random.default_rng(3)
    Z = rng.standard_normal((n, 300))
    np.save(tmp_path / "K.npy", Z @ Z.T / 300)
    to_bed(str(tmp_path / "g.bed"), rng.integers(0, 3, size=(n, 8)).astype(np.int8))
    np.savetxt(tmp_path / "y.txt", rng.standard_normal(n))
    argv = ["eigen", "--bfile", tmp_path / "g", "--kinship", tmp_path / "K.npy",
            "--pheno", tmp_path / "y.txt", "--threads", "1", "--quiet",
            "--out", tmp_path / "e.npz"]  # fmt: skip
    # the start and the kinship's read take well under the wait
    took, status, err = _sigterm_after(argv, 2.0)
    assert took < 2.0, "SIGTERM waited for the decomposition"
    assert status == 130 and "interrupted" in err, err
    assert not (tmp_path / "e.npz").exists()


def test_sigterm_acts_during_a_long_block_of_tests(tmp_path):
    """A block's tests ran in the core on the main thread: with 150
    covariates one block of a few thousand SNPs took the whole scan, and
    SIGTERM waited 55 s for it, then kept nothing (helper 68; 10 minutes with
    397 covariates).  The core now asks for signals every 50 ms."""
    from bed_reader import to_bed

    n, c = 400, 150
    rng = np.random.default_rng(5)
    Z = rng.standard_normal((n, 200))
    np.save(tmp_path / "K.npy", Z @ Z.T / 200)
    # one block of 8,000 SNPs on one thread: tens of seconds of tests on any CPU
    to_bed(str(tmp_path / "g.bed"), rng.integers(0, 3, size=(n, 8000)).astype(np.int8))
    np.savetxt(tmp_path / "y.txt", rng.standard_normal(n))
    np.savetxt(tmp_path / "c.txt", np.column_stack([np.ones(n), rng.standard_normal((n, c))]))
    argv = ["scan", "--bfile", tmp_path / "g", "--kinship", tmp_path / "K.npy",
            "--pheno", tmp_path / "y.txt", "--covar", tmp_path / "c.txt", "--test", "wald",
            "--threads", "1", "--block-size", "8000", "--quiet",
            "--out", tmp_path / "o"]  # fmt: skip
    took, status, err = _sigterm_after(argv, 4.0)  # the start and the null fit: a fraction
    assert took < 2.0, "SIGTERM waited for the block's tests"
    assert status == 130 and "interrupted" in err, err
    assert not (tmp_path / "o.assoc.txt").exists()


def test_sigterm_acts_during_loco_decompositions(tmp_path):
    """LOCO decomposes on helper threads; a stopped command waited for the
    one running (16-20 s at n = 6,000, helper 69): its pool is now left."""
    from bed_reader import to_bed

    n, m = 4500, 300  # one thread: each decomposition seconds past the wait below
    rng = np.random.default_rng(7)
    G = rng.integers(0, 3, size=(n, m)).astype(np.int8)
    to_bed(str(tmp_path / "g.bed"), G, properties={"chromosome": np.repeat(["1", "2"], m // 2)})
    np.savetxt(tmp_path / "y.txt", rng.standard_normal(n))
    argv = ["scan", "--bfile", tmp_path / "g", "--pheno", tmp_path / "y.txt", "--loco",
            "--threads", "1", "--quiet", "--out", tmp_path / "o"]  # fmt: skip
    # the kinship pass takes a fraction of the wait; the first decomposition runs
    took, status, err = _sigterm_after(argv, 2.0)
    assert took < 1.5, "SIGTERM waited for a LOCO decomposition"
    assert status == 130 and "interrupted" in err, err
