"""lmmscan scan --resume: an interrupted or killed scan continues from its last
completed block and ends with the bytes of an uninterrupted run.

The scans stop at a chosen block through the private hook
LMMSCAN_TEST_STOP_AFTER_BLOCKS ("k": KeyboardInterrupt, as Ctrl-C, once the
checkpoint holds k blocks; "k:kill": SIGKILL after the rows of block k + 1
are written but before its checkpoint; "k:rename" and "k:rename-interrupt":
SIGKILL or KeyboardInterrupt after k of the finished run's final renames),
and, once each, through real SIGINT and SIGTERM signals.  The study is the
demo's (400 individuals x 3,000 SNPs).
"""

from __future__ import annotations

import json
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

HOOK = "LMMSCAN_TEST_STOP_AFTER_BLOCKS"
# the subprocesses import the lmmscan this test runs against (installed or not)
PYTHONPATH = str(Path(lmmscan.__file__).resolve().parents[1])


@pytest.fixture()
def study(tmp_path) -> Path:
    return copy_study(tmp_path / "in")


def scan_args(prefix: Path, out: Path, *extra) -> list[str]:
    return [str(a) for a in [
        "scan", "--bfile", prefix, "--pheno", f"{prefix}.pheno.txt",
        "--covar", f"{prefix}.covar.txt", "--block-size", 400, "--threads", 1, "--quiet",
        "--out", out, *extra,
    ]]  # fmt: skip


# --threads 1 everywhere: BLAS on one thread, so the eigendecomposition (and the null
# lambda) is the same bits in the pytest process and in the subprocesses


def run(argv, capsys, monkeypatch, stop: str | None = None) -> tuple[int, str]:
    if stop is None:
        monkeypatch.delenv(HOOK, raising=False)
    else:
        monkeypatch.setenv(HOOK, stop)
    status = main(argv)
    monkeypatch.delenv(HOOK, raising=False)
    return status, capsys.readouterr().err


def null_json(path: Path) -> dict:
    data = json.loads(path.read_text())
    data.pop("seconds")
    data.pop("memory")  # the run's own estimate and measured peak
    return data


def checkpoint(out: Path) -> dict:
    return json.loads(Path(f"{out}.resume.json").read_text())


def outputs(d: Path, name: str) -> set[str]:
    return {p.name for p in d.iterdir() if p.name.startswith(name + ".")}


def assert_same_run(ref: Path, got: Path, stems=("",)) -> None:
    for stem in stems:
        a, b = Path(f"{ref}{stem}"), Path(f"{got}{stem}")
        assert Path(f"{b}.assoc.txt").read_bytes() == Path(f"{a}.assoc.txt").read_bytes()
        assert null_json(Path(f"{b}.null.json")) == null_json(Path(f"{a}.null.json"))


@pytest.mark.parametrize("extra, stems", [
    ((), ("",)),
    (("--pheno-col", "1,2", "--test", "all"), (".1", ".2")),
])  # fmt: skip
def test_interrupt_then_resume_equals_one_run(study, tmp_path, capsys, monkeypatch, extra, stems):
    ref, out = tmp_path / "ref", tmp_path / "r"
    assert run(scan_args(study, ref, *extra), capsys, monkeypatch)[0] == 0
    status, err = run(scan_args(study, out, *extra), capsys, monkeypatch, stop="3")
    assert status == 130
    assert "--resume" in err and "SNPs 1-1200 of 3000" in err, err
    left = outputs(tmp_path, "r")
    assert not any(n.endswith((".assoc.txt", ".null.json")) for n in left), left
    assert "r.resume.json" in left
    for stem in stems:
        assert f"r{stem}.assoc.txt.partial" in left
    state = checkpoint(out)
    assert state["next_snp"] == 1200
    # a second interruption of the resumed run, then the rest
    status, err = run([*scan_args(study, out, *extra), "--resume"], capsys, monkeypatch, stop="5")
    assert status == 130 and "SNPs 1-2000 of 3000" in err, err
    status, err = run([*scan_args(study, out, *extra), "--resume"], capsys, monkeypatch)
    assert status == 0 and err == ""
    assert_same_run(ref, out, stems)
    expected = {f"r{stem}.{ext}" for stem in stems for ext in ("assoc.txt", "null.json")}
    assert outputs(tmp_path, "r") == expected  # the checkpoint and partial files are gone


def test_a_symlinked_table_resumes_beside_its_target(study, tmp_path, capsys, monkeypatch):
    """The partial table goes beside the link's target and is renamed over it;
    a link retargeted between the runs is refused, naming both places."""
    ref, out = tmp_path / "ref", tmp_path / "r"
    assert run(scan_args(study, ref), capsys, monkeypatch)[0] == 0
    store, other = tmp_path / "store", tmp_path / "other"
    store.mkdir()
    other.mkdir()
    link = Path(f"{out}.assoc.txt")
    link.symlink_to(store / "r.assoc.txt")
    assert run(scan_args(study, out), capsys, monkeypatch, stop="3")[0] == 130
    assert (store / "r.assoc.txt.partial").is_file()
    link.unlink()
    link.symlink_to(other / "r.assoc.txt")
    expect_refusal([*scan_args(study, out), "--resume"], capsys, monkeypatch,
                   "r.resume.json", str(store / "r.assoc.txt.partial"), "symlink")  # fmt: skip
    link.unlink()
    link.symlink_to(store / "r.assoc.txt")
    assert run([*scan_args(study, out), "--resume"], capsys, monkeypatch)[0] == 0
    assert link.is_symlink() and sorted(q.name for q in store.iterdir()) == ["r.assoc.txt"]
    assert_same_run(ref, out)


def test_other_formats_and_plot_resume(study, tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    extra = ("--format", "plink2", "--plot")
    ref, out = tmp_path / "ref", tmp_path / "r"
    assert run(scan_args(study, ref, *extra), capsys, monkeypatch)[0] == 0
    assert run(scan_args(study, out, *extra), capsys, monkeypatch, stop="4")[0] == 130
    assert Path(f"{out}.glm.linear.partial").exists()
    assert run([*scan_args(study, out, *extra), "--resume"], capsys, monkeypatch)[0] == 0
    assert Path(f"{out}.glm.linear").read_bytes() == Path(f"{ref}.glm.linear").read_bytes()
    assert null_json(Path(f"{out}.null.json")) == null_json(Path(f"{ref}.null.json"))
    assert Path(f"{out}.manhattan.png").stat().st_size > 0


def test_kill_9_between_rows_and_checkpoint(study, tmp_path, capsys, monkeypatch):
    """SIGKILL after block 3's rows were written, before its checkpoint: the
    partial table is longer than the checkpoint says, and --resume cuts it."""
    ref, out = tmp_path / "ref", tmp_path / "k"
    assert run(scan_args(study, ref, "--test", "all"), capsys, monkeypatch)[0] == 0
    env = {**os.environ, HOOK: "2:kill", "PYTHONPATH": PYTHONPATH}
    argv = scan_args(study, out, "--test", "all")
    proc = subprocess.run([sys.executable, "-m", "lmmscan", *argv], env=env, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    state = checkpoint(out)
    assert state["next_snp"] == 800
    partial = Path(f"{out}.assoc.txt.partial")
    assert partial.stat().st_size > state["phenotypes"][0]["table_bytes"]  # block 3's rows
    assert not Path(f"{out}.assoc.txt").exists()
    status, err = run([*scan_args(study, out, "--test", "all"), "--resume"], capsys, monkeypatch)
    assert status == 0, err
    assert_same_run(ref, out)


def finished_by_resume(argv, ref: Path, out: Path, capsys, monkeypatch) -> None:
    """--resume of a two-phenotype run stopped among its final renames gives
    the uninterrupted run's outputs, and nothing else under the prefix."""
    status, err = run([*argv, "--resume"], capsys, monkeypatch)
    assert status == 0 and err == "", err
    assert_same_run(ref, out, (".1", ".2"))
    names = sorted(
        p.name for p in out.parent.iterdir() if p.name.startswith((out.name, "." + out.name))
    )
    assert names == [f"{out.name}.{k}.{ext}" for k in (1, 2) for ext in ("assoc.txt", "null.json")]


@pytest.mark.parametrize("renamed", [0, 1, 3])
def test_kill_9_among_the_final_renames(study, tmp_path, capsys, monkeypatch, renamed):
    """SIGKILL after ``renamed`` of the finished run's renames (two tables,
    then two null.json): it left a new table beside the last run's null.json,
    and --resume refused the checkpoint (its partial table was gone).  The
    renames are recorded before they start, and --resume finishes them."""
    ref, out = tmp_path / "ref", tmp_path / "k"
    extra = ("--pheno-col", "1,2", "--test", "all")
    assert run(scan_args(study, ref, *extra), capsys, monkeypatch)[0] == 0
    # an earlier run's outputs under the same names
    assert run(scan_args(study, out, *extra[:2], "--lambda", "null"), capsys, monkeypatch)[0] == 0
    env = {**os.environ, HOOK: f"{renamed}:rename", "PYTHONPATH": PYTHONPATH}
    proc = subprocess.run([sys.executable, "-m", "lmmscan", *scan_args(study, out, *extra)],
                          env=env, capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert checkpoint(out)["committing"]
    finished_by_resume(scan_args(study, out, *extra), ref, out, capsys, monkeypatch)


def test_an_interrupt_among_the_final_renames_keeps_what_resume_needs(
    study, tmp_path, capsys, monkeypatch
):
    """Ctrl-C among the final renames (review, helper 45): the run's cleanup
    removed the null.json temporaries the record names, and --resume then
    put the tables in place beside the last run's null.json, exit 0.  And a
    --resume with other options than the finished run's is refused."""
    ref, out = tmp_path / "ref", tmp_path / "k"
    extra = ("--pheno-col", "1,2", "--test", "all")
    assert run(scan_args(study, ref, *extra), capsys, monkeypatch)[0] == 0
    assert run(scan_args(study, out, *extra[:2], "--lambda", "null"), capsys, monkeypatch)[0] == 0
    status, err = run(scan_args(study, out, *extra), capsys, monkeypatch, stop="1:rename-interrupt")
    assert status == 130 and "rerun the same command with --resume" in err, err
    other = [*scan_args(study, out, *extra[:2], "--test", "wald"), "--resume"]
    status, err = run(other, capsys, monkeypatch)
    assert status == 2 and "a finished run with other options (test)" in err, err
    finished_by_resume(scan_args(study, out, *extra), ref, out, capsys, monkeypatch)


def test_finishing_a_finished_run_checks_what_it_renames(study, tmp_path, capsys, monkeypatch):
    """Review (helper 47): --resume of a run stopped among its final renames
    took a recorded file that was gone (another run on the prefix removes
    temporaries) as already renamed, exit 0 beside the last run's null.json;
    it renamed a partial table another run held; and it compared the paths
    as spelled (relative against absolute: refused)."""
    import fcntl

    monkeypatch.chdir(study.parent)
    out = tmp_path / "k"
    extra = ("--pheno-col", "1,2", "--test", "all")
    argv = scan_args(study, out, *extra)
    assert run(argv, capsys, monkeypatch, stop="0:rename-interrupt")[0] == 130
    # another run holding one of the recorded partial tables: refused, nothing moved
    with open(f"{out}.1.assoc.txt.partial", "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        status, err = run([*argv, "--resume"], capsys, monkeypatch)
        assert status == 2 and "another lmmscan run is writing this file" in err, err
    assert not Path(f"{out}.1.assoc.txt").exists()
    # a recorded temporary removed: refused, not finished beside old files
    temporaries = list(tmp_path.glob(".k.1.null.json.tmp*"))
    assert len(temporaries) == 1
    data = temporaries[0].read_bytes()
    temporaries[0].unlink()
    status, err = run([*argv, "--resume"], capsys, monkeypatch)
    assert status == 2 and "is gone" in err and "rerun without --resume" in err, err
    temporaries[0].write_bytes(data)
    # the same command with the study's files spelled relative to the working directory
    relative = [a.replace(f"{study.parent}/", "") for a in argv]
    assert relative != argv
    status, err = run([*relative, "--resume"], capsys, monkeypatch)
    assert status == 0 and err == "", err
    assert outputs(tmp_path, "k") == {
        "k.1.assoc.txt", "k.1.null.json", "k.2.assoc.txt", "k.2.null.json"
    }  # fmt: skip


def test_finishing_from_another_directory_and_after_a_rewrite(study, tmp_path, capsys, monkeypatch):
    """Fault injection (helper 48): a record made with relative paths was
    resolved against the resuming run's directory (refused for nothing);
    a destination rewritten in place keeps its inode, which alone was taken
    as the rename made (inode numbers are reused, too); and finish_commit
    held no lock on the partial tables it renamed."""
    import fcntl

    from lmmscan.cli import checkpoint as ckpt

    monkeypatch.chdir(tmp_path)
    relative = [a.replace(f"{tmp_path}/", "") for a in scan_args(study, tmp_path / "k")]
    relative = [*relative, "--pheno-col", "1,2"]
    absolute = [*scan_args(study, tmp_path / "k"), "--pheno-col", "1,2"]
    assert run(relative, capsys, monkeypatch, stop="0:rename-interrupt")[0] == 130
    real = os.replace

    def locked_replace(src, dst):
        if str(src).endswith(".assoc.txt.partial"):
            with open(src, "rb") as fh, pytest.raises(BlockingIOError):
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return real(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", locked_replace)
    monkeypatch.chdir(study.parent)  # elsewhere, the same command spelled absolute
    status, err = run([*absolute, "--resume"], capsys, monkeypatch)
    assert status == 0 and err == "", err
    assert outputs(tmp_path, "k") == {
        "k.1.assoc.txt", "k.1.null.json", "k.2.assoc.txt", "k.2.null.json"
    }  # fmt: skip

    monkeypatch.setattr(ckpt.os, "replace", real)
    assert run(absolute, capsys, monkeypatch, stop="0:rename-interrupt")[0] == 130
    real(f"{tmp_path}/k.1.assoc.txt.partial", f"{tmp_path}/k.1.assoc.txt")  # as if renamed
    with open(f"{tmp_path}/k.1.assoc.txt", "a") as fh:  # then rewritten in place
        fh.write("another run's row\n")
    status, err = run([*absolute, "--resume"], capsys, monkeypatch)
    assert status == 2 and "is gone" in err, err


def test_the_partial_tables_stay_locked_until_they_are_in_place(
    study, tmp_path, capsys, monkeypatch
):
    """Review (helper 47): the partial files were closed, so unlocked, when
    the scan ended, before null.json was written and the tables renamed:
    another run naming the same table could remove a finished one then."""
    import fcntl

    from lmmscan.cli import scan as scan_cli

    out = tmp_path / "r"
    real = scan_cli._write_nulls
    probed = []

    def probing(*args, **kwargs):
        fd = os.open(f"{out}.assoc.txt.partial", os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            probed.append(True)
        finally:
            os.close(fd)
        return real(*args, **kwargs)

    monkeypatch.setattr(scan_cli, "_write_nulls", probing)
    assert run(scan_args(study, out), capsys, monkeypatch)[0] == 0
    assert probed
    with open(f"{out}.assoc.txt", "rb") as fh:  # and released once in place
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_a_save_failing_on_the_saving_thread_keeps_the_checkpoint_before(
    study, tmp_path, capsys, monkeypatch
):
    """The fsyncs and the checkpoint's write run while the next block is
    scanned: a disk error there stops the run at the next save, exit 2 with
    the file named, and the checkpoint before it (not the block the scan had
    reached) is what is kept and said; --resume then ends as one run."""
    import errno
    import threading

    from lmmscan.cli import checkpoint as ckpt

    ref, out = tmp_path / "ref", tmp_path / "r"
    assert run(scan_args(study, ref), capsys, monkeypatch)[0] == 0
    fsync = ckpt.Appender.fsync
    calls = []

    def failing(self):
        calls.append(threading.current_thread().name)
        # the start's save (two files), blocks 1 and 2, then block 3's table
        if len(calls) == 7:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        fsync(self)

    monkeypatch.setattr(ckpt.Appender, "fsync", failing)
    status, err = run(scan_args(study, out), capsys, monkeypatch)
    assert status == 2, err
    assert "No space left on device" in err and f"{out}.assoc.txt.partial" in err
    assert "SNPs 1-800 of 3000 are kept" in err, err
    assert len(err.strip().splitlines()) == 1
    # every save after the first ran on the saving thread
    assert all(name.startswith("lmmscan-checkpoint") for name in calls[2:]), calls
    assert checkpoint(out)["next_snp"] == 800
    monkeypatch.setattr(ckpt.Appender, "fsync", fsync)
    assert run([*scan_args(study, out), "--resume"], capsys, monkeypatch)[0] == 0
    assert_same_run(ref, out)


def test_a_finished_scan_whose_null_json_fails_is_kept(study, tmp_path, capsys, monkeypatch):
    """Every SNP scanned, then null.json on a full disk: the tables were thrown
    away with the rest.  Now they are kept, and --resume writes what is left."""
    import errno

    from lmmscan.cli import scan as cli_scan

    ref, out = tmp_path / "ref", tmp_path / "r"
    assert run(scan_args(study, ref), capsys, monkeypatch)[0] == 0
    write_nulls = cli_scan._write_nulls

    def full(*a, **k):
        raise OSError(errno.EFBIG, "File too large", f"{out}.null.json")

    monkeypatch.setattr(cli_scan, "_write_nulls", full)
    status, err = run(scan_args(study, out), capsys, monkeypatch)
    assert status == 2, err
    assert "File too large" in err and "all 3000 SNPs were scanned" in err, err
    assert checkpoint(out)["next_snp"] == 3000
    assert not Path(f"{out}.assoc.txt").exists()
    monkeypatch.setattr(cli_scan, "_write_nulls", write_nulls)
    assert run([*scan_args(study, out), "--resume"], capsys, monkeypatch)[0] == 0
    assert_same_run(ref, out)
    assert outputs(tmp_path, "r") == {"r.assoc.txt", "r.null.json"}


def test_a_partial_table_edited_since_is_refused(study, tmp_path, capsys, monkeypatch):
    """A row before the checkpoint made longer: the cut at the recorded length
    fell inside a row, and --resume joined two rows into one of 29 fields."""
    out = tmp_path / "r"
    assert run(scan_args(study, out), capsys, monkeypatch, stop="2")[0] == 130
    partial = Path(f"{out}.assoc.txt.partial")
    lines = partial.read_text().splitlines(keepends=True)
    lines[5] = lines[5].replace("\t", "\tX", 1)
    partial.write_text("".join(lines))
    expect_refusal([*scan_args(study, out), "--resume"], capsys, monkeypatch,
                   "does not end a row", "the table was changed since")  # fmt: skip


def test_an_interrupt_while_waiting_for_a_save_leaves_it_pending():
    """Ctrl-C while the main thread waited for the previous block's save: the
    save was forgotten, and close() closed the files under its fsync."""
    from lmmscan.cli.checkpoint import Checkpoint

    class Job:
        calls = 0

        def result(self):
            Job.calls += 1
            if Job.calls == 1:
                raise KeyboardInterrupt

    ckpt = Checkpoint.__new__(Checkpoint)
    job = Job()
    ckpt._pending = job  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        ckpt._wait()
    assert ckpt._pending is job  # still to be waited for by close()
    ckpt._wait()
    assert ckpt._pending is None and Job.calls == 2


def test_a_failed_rename_of_a_second_table_keeps_it_and_says_so(
    study, tmp_path, capsys, monkeypatch
):
    """Two phenotypes; the second table's rename fails after the first's: the
    hint promised a --resume that could not work (the first partial was gone),
    and the second finished table was removed.  Now the renames are recorded
    first: everything is kept, and --resume finishes them."""
    import errno

    from lmmscan.cli import checkpoint as ckpt

    out = tmp_path / "r"
    real = os.replace

    def replace(a, b):
        if str(a).endswith("r.2.assoc.txt.partial"):
            raise OSError(errno.EIO, "Input/output error", str(a), None, str(b))
        return real(a, b)

    monkeypatch.setattr(ckpt.os, "replace", replace)
    argv = [*scan_args(study, out), "--pheno-col", "1,2"]
    status, err = run(argv, capsys, monkeypatch)
    assert status == 2, err
    assert err.strip().endswith(
        "r.2.assoc.txt: Input/output error; the scan had finished and was putting its outputs "
        "in place: rerun the same command with --resume to finish that"
    ), err
    assert outputs(tmp_path, "r") == {
        "r.1.assoc.txt", "r.2.assoc.txt.partial", "r.1.assoc.txt.partial.lp",
        "r.2.assoc.txt.partial.lp", "r.resume.json",
    }  # fmt: skip
    monkeypatch.setattr(ckpt.os, "replace", real)  # the disk is back
    assert run([*argv, "--resume"], capsys, monkeypatch)[0] == 0
    assert outputs(tmp_path, "r") == {
        "r.1.assoc.txt", "r.1.null.json", "r.2.assoc.txt", "r.2.null.json"
    }  # fmt: skip


def test_rows_after_the_checkpoint_are_cut(study, tmp_path, capsys, monkeypatch):
    ref, out = tmp_path / "ref", tmp_path / "r"
    assert run(scan_args(study, ref), capsys, monkeypatch)[0] == 0
    assert run(scan_args(study, out), capsys, monkeypatch, stop="2")[0] == 130
    partial = Path(f"{out}.assoc.txt.partial")
    with open(partial, "a") as fh:  # a half-written block, as a crash leaves it
        fh.write("1\tsnp9999\t1\t0\tA\tG\t0.5\t1.0e+00\t1.0e+00\t-1.0e+02\t1.0e+00\t1.0e+00\n1\ts")
    with open(f"{partial}.lp", "ab") as fh:
        fh.write(b"\x01" * 30)
    assert run([*scan_args(study, out), "--resume"], capsys, monkeypatch)[0] == 0
    assert_same_run(ref, out)


def expect_refusal(argv, capsys, monkeypatch, *needles) -> str:
    status, err = run(argv, capsys, monkeypatch)
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_a_checkpoint_of_another_run_is_refused(study, tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    assert run(scan_args(study, out), capsys, monkeypatch, stop="2")[0] == 130
    before = outputs(tmp_path, "r")
    state = Path(f"{out}.resume.json").read_bytes()
    resume = [*scan_args(study, out), "--resume"]
    expect_refusal([*resume, "--test", "all"], capsys, monkeypatch,
                   "r.resume.json", "another run", "--test was wald, now all",
                   "rerun without --resume")  # fmt: skip
    expect_refusal([*resume, "--block-size", "500"], capsys, monkeypatch,
                   "--block-size was 400, now 500")  # fmt: skip
    expect_refusal([*resume, "--lambda", "null"], capsys, monkeypatch, "--lambda was per-snp")
    # the same phenotype file, changed
    pheno = Path(f"{study}.pheno.txt")
    st = pheno.stat()
    os.utime(pheno, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    expect_refusal(resume, capsys, monkeypatch, "demo.pheno.txt has changed")
    os.utime(pheno, ns=(st.st_atime_ns, st.st_mtime_ns))
    # refusals keep the checkpoint; with everything as it was, it continues
    assert outputs(tmp_path, "r") == before
    assert Path(f"{out}.resume.json").read_bytes() == state
    assert run(resume, capsys, monkeypatch)[0] == 0


def test_a_flag_set_before_and_left_off_now_is_refused(study, tmp_path, capsys, monkeypatch):
    """Flags recorded only when set (--precision, --lmax, ...) were compared
    only when the new run gave them: a resume without --precision single
    wrote single-precision rows, then double ones, exit 0."""
    out = tmp_path / "r"
    argv = [*scan_args(study, out), "--precision", "single", "--lmax", "1e4"]
    assert run(argv, capsys, monkeypatch, stop="2")[0] == 130
    resume = [*scan_args(study, out), "--resume"]
    expect_refusal(resume, capsys, monkeypatch, "--precision was single, now the default "
                   "(double)", "--lmax was 10000.0, now the default (100000.0)")  # fmt: skip
    assert run([*argv, "--resume"], capsys, monkeypatch)[0] == 0


def test_a_null_lambda_off_in_its_last_bits_is_accepted_with_a_warning(
    study, tmp_path, capsys, monkeypatch
):
    """Another BLAS thread count moves the eigendecomposition's last bits: the
    scan continues and says so; a real difference in lambda is refused."""
    ref, out = tmp_path / "ref", tmp_path / "r"
    assert run(scan_args(study, ref), capsys, monkeypatch)[0] == 0
    assert run(scan_args(study, out), capsys, monkeypatch, stop="2")[0] == 130
    ckpt = Path(f"{out}.resume.json")
    good = json.loads(ckpt.read_text())
    for factor, ok in ((1 + 1e-3, False), (1 + 1e-13, True)):
        state = json.loads(json.dumps(good))
        lam = state["fingerprint"]["null_lambda"]
        state["fingerprint"]["null_lambda"] = [v * factor for v in lam]
        ckpt.write_text(json.dumps(state))
        if not ok:
            expect_refusal([*scan_args(study, out), "--resume"], capsys, monkeypatch,
                           "the null model's lambda was")  # fmt: skip
            continue
        status, err = run([*scan_args(study, out), "--resume"], capsys, monkeypatch)
        assert status == 0 and "warning" in err and "last bits" in err, err
    assert_same_run(ref, out)  # the same bits here: only the recorded lambda was changed


def test_single_precision_resumed_on_other_blas_threads_says_so(
    study, tmp_path, capsys, monkeypatch
):
    """Single precision's SGEMM changes its last bits with the number of BLAS
    threads; with a saved eigendecomposition the null lambda is the same bits,
    so a resume with other --threads changed every later row's digits
    unsaid.  The thread count is recorded, and a change is warned about."""
    from lmmscan.cli import checkpoint

    out = tmp_path / "r"
    args = [*scan_args(study, out), "--precision", "single"]
    assert run(args, capsys, monkeypatch, stop="2")[0] == 130
    assert json.loads(Path(f"{out}.resume.json").read_text())["fingerprint"]["blas_threads"] == 1
    monkeypatch.setattr(checkpoint, "blas_thread_count", lambda: 2)  # as --threads 2 would
    status, err = run([*args, "--resume"], capsys, monkeypatch)
    assert status == 0
    assert "rotated in single precision on 1 BLAS thread, this run uses 2" in err, err


def test_a_whitened_single_precision_scan_records_no_blas_threads(
    study, tmp_path, capsys, monkeypatch
):
    """--lambda null with one test whitens in double (no SGEMM): its resume on
    other threads warned for nothing.  --test all needs two lambdas: it rotates."""
    from lmmscan.cli import checkpoint

    for extra, recorded in (((), False), (("--test", "all"), True)):
        out = tmp_path / f"r{len(extra)}"
        args = [*scan_args(study, out, *extra), "--precision", "single", "--lambda", "null"]
        assert run(args, capsys, monkeypatch, stop="2")[0] == 130
        state = json.loads(Path(f"{out}.resume.json").read_text())
        assert ("blas_threads" in state["fingerprint"]) is recorded
        monkeypatch.setattr(checkpoint, "blas_thread_count", lambda: 2)
        status, err = run([*args, "--resume"], capsys, monkeypatch)
        monkeypatch.undo()
        assert status == 0
        assert ("BLAS thread" in err) is recorded, err


def test_damaged_or_foreign_checkpoint_is_refused(study, tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    assert run(scan_args(study, out), capsys, monkeypatch, stop="2")[0] == 130
    ckpt = Path(f"{out}.resume.json")
    good = ckpt.read_text()
    resume = [*scan_args(study, out), "--resume"]
    ckpt.write_text(good[:-40])
    expect_refusal(resume, capsys, monkeypatch, "r.resume.json", "cannot read the checkpoint")
    ckpt.write_text(json.dumps({"something": "else"}))
    expect_refusal(resume, capsys, monkeypatch, "not an lmmscan scan checkpoint")
    state = json.loads(good)
    state["phenotypes"][0]["table_bytes"] += 10**6
    ckpt.write_text(json.dumps(state))
    expect_refusal(resume, capsys, monkeypatch, "r.assoc.txt.partial", "cut short")
    ckpt.write_text(good)
    # hand edits (helpers 41 and 43): tracebacks, or rows lost or repeated, exit 0
    for edit in (
        lambda st: st["phenotypes"][0].update(untestable=[1]),
        lambda st: st["groups"][0]["filters"].update(removed=[1]),
        lambda st: st.update(next_snp=st["next_snp"] + 400),  # a block boundary, no rows
        lambda st: st.update(next_snp=st["next_snp"] - 400),
    ):
        state = json.loads(good)
        edit(state)
        ckpt.write_text(json.dumps(state))
        expect_refusal(resume, capsys, monkeypatch, "r.resume.json", "damaged checkpoint")
    ckpt.write_text("[" * 100_000 + "]" * 100_000)
    expect_refusal(resume, capsys, monkeypatch, "r.resume.json", "cannot read the checkpoint")
    ckpt.write_text(good)
    Path(f"{out}.assoc.txt.partial").unlink()
    expect_refusal(resume, capsys, monkeypatch, "r.assoc.txt.partial", "missing")


def test_resume_without_a_checkpoint_starts_from_the_first_snp(
    study, tmp_path, capsys, monkeypatch
):
    ref, out = tmp_path / "ref", tmp_path / "r"
    assert run(scan_args(study, ref), capsys, monkeypatch)[0] == 0
    argv = [a for a in scan_args(study, out) if a != "--quiet"]
    status, err = run([*argv, "--resume"], capsys, monkeypatch)
    assert status == 0 and "no checkpoint" in err and "first SNP" in err
    assert_same_run(ref, out)


def test_a_new_run_replaces_a_stale_checkpoint(study, tmp_path, capsys, monkeypatch):
    ref, out = tmp_path / "ref", tmp_path / "r"
    assert run(scan_args(study, ref), capsys, monkeypatch)[0] == 0
    # a killed two-phenotype run under the same prefix
    assert run(scan_args(study, out, "--pheno-col", "1,2"), capsys, monkeypatch, stop="1")[0] == 130
    assert "r.2.assoc.txt.partial" in outputs(tmp_path, "r")
    assert run(scan_args(study, out), capsys, monkeypatch)[0] == 0
    assert outputs(tmp_path, "r") == {"r.assoc.txt", "r.null.json"}
    assert_same_run(ref, out)


def test_errors_and_early_interrupts_leave_nothing(study, tmp_path, capsys, monkeypatch):
    from lmmscan.engine import BlockScanner

    out = tmp_path / "r"
    kin = tmp_path / "k.npy"
    assert (
        main(
            [
                "kinship",
                "--bfile",
                str(study),
                "--pheno",
                f"{study}.pheno.txt",
                "--out",
                str(kin),
                "--quiet",
            ]
        )
        == 0
    )
    # every SNP filtered: the error comes after the scan, and nothing is kept
    expect_refusal(scan_args(study, out, "--kinship", kin, "--maf", "0.6"), capsys, monkeypatch,
                   "no SNP left")  # fmt: skip
    assert outputs(tmp_path, "r") == set()

    def interrupt(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(BlockScanner, "test_rotated_with_statistics", interrupt)
    status, err = run(scan_args(study, out), capsys, monkeypatch)
    assert status == 130 and "no output written" in err  # nothing to resume before block 1
    assert outputs(tmp_path, "r") == set()


@pytest.mark.parametrize("flag", ["--loco", "--dask-scheduler=tcp://127.0.0.1:1"])
def test_resume_is_refused_where_it_is_not_supported(study, tmp_path, capsys, monkeypatch, flag):
    expect_refusal(
        [*scan_args(study, tmp_path / "r", flag), "--resume"],
        capsys,
        monkeypatch,
        "--resume works for the block scan only",
    )
    assert outputs(tmp_path, "r") == set()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, "both"])
def test_a_real_signal_keeps_a_resumable_scan(study, tmp_path, capsys, monkeypatch, sig):
    """The process gets SIGINT/SIGTERM once a checkpoint holds a block;
    "both": SIGINT and at once SIGTERM, whose handler the first had set to
    SIG_IGN: "OSError: Signal 15 ignored due to race condition" was raised
    in the cleanup, a traceback under the message (5 of 5 tries)."""
    ref, out = tmp_path / "ref", tmp_path / "s"
    argv = scan_args(study, out, "--block-size", "50", "--test", "all")
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    env.pop(HOOK, None)
    proc = subprocess.Popen([sys.executable, "-m", "lmmscan", *argv], env=env,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    ckpt = Path(f"{out}.resume.json")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(ckpt.read_text())["next_snp"] > 0:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    for each in [signal.SIGINT, signal.SIGTERM] if sig == "both" else [sig]:
        proc.send_signal(each)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err  # 60 blocks, each fsync'ed, outlast the polling
    assert "interrupted" in err and "--resume" in err and len(err.splitlines()) == 1, err
    assert not Path(f"{out}.assoc.txt").exists()
    assert Path(f"{out}.assoc.txt.partial").exists() and ckpt.exists()
    assert run([*argv, "--resume"], capsys, monkeypatch)[0] == 0
    assert run(scan_args(study, ref, "--block-size", "50", "--test", "all"), capsys,
               monkeypatch)[0] == 0  # fmt: skip
    assert_same_run(ref, out)


def test_variants_read_as_missing_before_the_checkpoint_still_count(tmp_path, capsys, monkeypatch):
    """With --kinship given, a resumed scan reads only the variants after its
    checkpoint: null.json's skipped_variants counted only the haploid VCF
    records among those (1 of 3 here)."""
    import numpy as np

    rng = np.random.default_rng(3)
    n = 40
    header = (
        "##fileformat=VCFv4.2\n##contig=<ID=1>\n"
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
        "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\t"
        + "\t".join(f"s{i}" for i in range(n)) + "\n"
    )  # fmt: skip
    rows = []
    for j in range(60):
        calls = [f"{a}/{b}" for a, b in rng.binomial(1, 0.4, size=(n, 2))]
        if j in (2, 3, 45):  # two records before the checkpoint (block 1), one after
            calls[5] = "1"
        rows.append(f"1\t{100 * (j + 1)}\tv{j}\tA\tG\t.\t.\t.\tGT\t" + "\t".join(calls))
    (tmp_path / "h.vcf").write_text(header + "\n".join(rows) + "\n")
    (tmp_path / "p.txt").write_text("\n".join(f"{v:.4f}" for v in rng.normal(size=n)) + "\n")
    G = rng.binomial(2, 0.3, size=(n, 200)).astype(float)
    np.savetxt(tmp_path / "k.txt", lmmscan.kinship(G))

    def argv(out):
        return [str(a) for a in [
            "scan", "--vcf", tmp_path / "h.vcf", "--pheno", tmp_path / "p.txt", "--kinship",
            tmp_path / "k.txt", "--block-size", 20, "--threads", 1, "--quiet", "--out", out,
        ]]  # fmt: skip

    ref, out = tmp_path / "ref", tmp_path / "r"
    assert run(argv(ref), capsys, monkeypatch)[0] == 0
    assert json.loads(Path(f"{ref}.null.json").read_text())["skipped_variants"] == {
        "ploidy other than 2": 3
    }
    assert run(argv(out), capsys, monkeypatch, stop="1")[0] == 130
    assert checkpoint(out)["read_as_missing"] == {"ploidy other than 2": [[2, 4]]}
    status, err = run([*argv(out), "--resume"], capsys, monkeypatch)
    assert status == 0, err
    assert_same_run(ref, out)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_command_starts_is_one_line(study, tmp_path, sig):
    """Ctrl-C while the command imported numpy (its first 0.1-0.3 s) printed
    a KeyboardInterrupt traceback, or numpy's "Importing the numpy
    C-extensions failed" (exit 1); SIGTERM ended it without a word (fault
    injection, helper 41).  The signal is sent here from inside that import."""
    code = (
        "import builtins, os, signal, sys\n"
        "real = builtins.__import__\n"
        "def hooked(name, *a, **k):\n"
        "    if name == 'numpy' and 'numpy' not in sys.modules:\n"
        f"        os.kill(os.getpid(), {int(sig)})\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = hooked\n"
        "from lmmscan.__main__ import run\n"
        "sys.argv = ['lmmscan', *sys.argv[1:]]\n"
        "run()\n"
    )
    argv = scan_args(study, tmp_path / "s")
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    proc = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "lmmscan: interrupted while starting; no output written\n", proc.stderr
    assert not list(tmp_path.glob("s*"))
    # a Python session that imported lmmscan.cli keeps its own handlers
    check = (
        "import signal\nbefore = signal.getsignal(signal.SIGINT)\nimport lmmscan.cli\n"
        "assert signal.getsignal(signal.SIGINT) is before\n"
    )
    subprocess.run([sys.executable, "-c", check], env=env, check=True, timeout=120)


def test_a_table_another_run_writes_is_not_touched(study, tmp_path, capsys, monkeypatch):
    """--out a with two phenotypes and --out a.1 both write a.1.assoc.txt: the
    prefix locks differ, and the second run truncated or removed the first's
    partial table, which then lost its finished table (fault injection,
    helper 41).  A partial table is locked while a run writes it."""
    import fcntl

    partial = tmp_path / "a.1.assoc.txt.partial"
    partial.write_bytes(b"the first run's rows\n")
    with open(partial, "rb") as held:  # the first run, mid-scan
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        status, err = run(scan_args(study, tmp_path / "a.1"), capsys, monkeypatch)
        assert status == 2, err
        assert err.strip().endswith(
            "a.1.assoc.txt.partial: another lmmscan run is writing this file (its --out gives "
            "the same table name); wait for it to end, or choose another --out"
        ), err
        assert partial.read_bytes() == b"the first run's rows\n"
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("a.")) == [
            "a.1.assoc.txt.partial"
        ]
    assert run(scan_args(study, tmp_path / "a.1"), capsys, monkeypatch)[0] == 0  # once it ends


def test_a_stopped_scans_partial_table_is_not_removed_by_another_prefix(
    study, tmp_path, capsys, monkeypatch
):
    """--out a with two phenotypes and --out a.1 both write a.1.assoc.txt.
    With the first stopped (its partial table no longer locked), a fresh run
    of the second removed that table and wrote its own; the first's --resume
    took the second's rows as its own when they were as wide, exit 0
    (helper 63).  The second run is now refused, naming the checkpoint."""
    two = ("--pheno-col", "1,2")
    ref, a = tmp_path / "ref", tmp_path / "a"
    assert run(scan_args(study, ref, *two), capsys, monkeypatch)[0] == 0
    assert run(scan_args(study, a, *two), capsys, monkeypatch, stop="2")[0] == 130
    before = (tmp_path / "a.1.assoc.txt.partial").read_bytes()
    err = expect_refusal(scan_args(study, tmp_path / "a.1"), capsys, monkeypatch,
                         "a.1.assoc.txt.partial: is the partial output of another scan",
                         "a.resume.json")  # fmt: skip
    assert "--resume" in err
    assert (tmp_path / "a.1.assoc.txt.partial").read_bytes() == before
    assert run([*scan_args(study, a, *two), "--resume"], capsys, monkeypatch)[0] == 0
    assert_same_run(ref, a, (".1", ".2"))
    assert run(scan_args(study, tmp_path / "a.1"), capsys, monkeypatch)[0] == 0  # once done


@pytest.mark.parametrize("which", ["table", "sidecar"])
def test_a_partial_file_changed_at_the_same_length_is_refused(
    study, tmp_path, capsys, monkeypatch, which
):
    """Another run's rows as wide as this run's, or any change that keeps the
    rows' ends, passed the checks of length, header and row end: --resume
    mixed them into the finished table (helper 63).  The checkpoint records
    each partial file's CRC-32."""
    out = tmp_path / "r"
    assert run(scan_args(study, out), capsys, monkeypatch, stop="2")[0] == 130
    if which == "table":
        partial = Path(f"{out}.assoc.txt.partial")
        data = bytearray(partial.read_bytes())
        at = data.index(b"\n", data.index(b"\n") + 1) - 1  # the last digit of row 1
        data[at] = ord("1") if data[at] != ord("1") else ord("2")
    else:
        partial = Path(f"{out}.assoc.txt.partial.lp")
        data = bytearray(partial.read_bytes())
        data[-1] ^= 0x01  # the last row's -log10 p
    partial.write_bytes(bytes(data))
    expect_refusal([*scan_args(study, out), "--resume"], capsys, monkeypatch,
                   f"{partial.name}: the partial file is not the one the checkpoint "
                   "recorded")  # fmt: skip


def test_a_checkpoint_recorded_without_crcs_still_resumes(study, tmp_path, capsys, monkeypatch):
    """A checkpoint written before the CRCs were recorded is resumed as before."""
    ref, out = tmp_path / "ref", tmp_path / "r"
    assert run(scan_args(study, ref), capsys, monkeypatch)[0] == 0
    assert run(scan_args(study, out), capsys, monkeypatch, stop="2")[0] == 130
    state = checkpoint(out)
    for p in state["phenotypes"]:
        assert p.pop("table_crc32") != p.pop("sidecar_crc32")
    Path(f"{out}.resume.json").write_text(json.dumps(state))
    # stopped again, then resumed: the second checkpoint's CRCs count every
    # byte, the first checkpoint's included (helper 65: only the new ones)
    assert run([*scan_args(study, out), "--resume"], capsys, monkeypatch, stop="4")[0] == 130
    assert run([*scan_args(study, out), "--resume"], capsys, monkeypatch)[0] == 0
    assert_same_run(ref, out)


def test_a_signal_among_the_final_renames_waits_for_their_end(study, tmp_path, capsys, monkeypatch):
    """SIGINT among the final renames left the new tables beside the last
    run's null.json until a --resume (helper 63); it now waits the
    microseconds the renames take, and says the outputs are complete."""
    ref, out = tmp_path / "ref", tmp_path / "k"
    extra = ("--pheno-col", "1,2", "--test", "all")
    assert run(scan_args(study, ref, *extra), capsys, monkeypatch)[0] == 0
    status, err = run(scan_args(study, out, *extra), capsys, monkeypatch, stop="1:rename-signal")
    assert status == 130, err
    assert err.strip() == ("lmmscan scan: interrupted; the tables and null.json are complete")
    assert_same_run(ref, out, (".1", ".2"))
    assert outputs(tmp_path, "k") == {
        f"k.{c}.{e}" for c in "12" for e in ("assoc.txt", "null.json")
    }


def test_a_symlinked_tables_partial_file_is_not_removed_by_another_prefix(
    study, tmp_path, capsys, monkeypatch
):
    """Helper 65: a symlinked table's partial file sits beside the link's
    target, away from the checkpoint that names it, which was not looked at."""
    (tmp_path / "S").mkdir()
    (tmp_path / "T").mkdir()
    (tmp_path / "S" / "a.1.assoc.txt").symlink_to(tmp_path / "T" / "a.1.assoc.txt")
    two = ("--pheno-col", "1,2")
    assert (
        run(scan_args(study, tmp_path / "S" / "a", *two), capsys, monkeypatch, stop="2")[0] == 130
    )
    partial = tmp_path / "T" / "a.1.assoc.txt.partial"
    before = partial.read_bytes()
    expect_refusal(scan_args(study, tmp_path / "S" / "a.1"), capsys, monkeypatch,
                   "is the partial output of another scan")  # fmt: skip
    assert partial.read_bytes() == before


def test_a_fifo_named_like_a_checkpoint_is_not_waited_on(study, tmp_path, capsys, monkeypatch):
    """Helper 65: the other checkpoints were read whatever they were, and a
    FIFO named *.resume.json blocked a fresh scan over a partial file."""
    import threading

    from lmmscan.cli.checkpoint import _check_not_anothers

    partial = tmp_path / "a.assoc.txt.partial"
    partial.write_bytes(b"rows\n")
    os.mkfifo(tmp_path / "zz.resume.json")
    done = []
    t = threading.Thread(
        target=lambda: done.append(_check_not_anothers([partial], tmp_path / "a.resume.json")),
        daemon=True,
    )
    t.start()
    t.join(30)
    assert done == [None]


def test_an_error_among_the_renames_is_not_replaced_by_the_signal_held_back():
    """Helper 65: a disk-full error among the renames, with a Ctrl-C held
    back, was reported as "interrupted"."""
    from lmmscan._threads import deferred_interrupts

    class Interrupted(Exception):  # (a KeyboardInterrupt would stop pytest itself)
        pass

    def interrupt(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        with pytest.raises(OSError, match="No space"), deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # (the handler would have run by now)
            raise OSError(28, "No space left on device")
        assert signal.getsignal(signal.SIGINT) is interrupt
        with pytest.raises(Interrupted), deferred_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_nul_in_a_checkpoints_names_is_no_traceback(study, tmp_path, capsys, monkeypatch):
    """Helper 66: a junk *.resume.json naming "/x\\0y" beside a stopped scan's
    partial file, or the scan's own stale checkpoint naming one, ended a
    fresh scan in a ValueError traceback (exit 1)."""
    out = tmp_path / "b"
    assert run(scan_args(study, out), capsys, monkeypatch, stop="1")[0] == 130
    junk = {"phenotypes": [{"table": "/x\0y", "sidecar": "s"}]}
    (tmp_path / "junk.resume.json").write_text(json.dumps(junk))
    own = checkpoint(out)
    own["phenotypes"][0]["table"] = "b\0.partial"
    Path(f"{out}.resume.json").write_text(json.dumps(own))
    assert run(scan_args(study, out), capsys, monkeypatch)[0] == 0
