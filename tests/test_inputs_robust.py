"""Inputs that are not plain files, or hold what the arithmetic cannot (issue 14).

Each test is named after what broke: a FIFO or a device read for ever, a pipe
read short, a path or a byte that is not UTF-8, too many or too large
covariates, a .fam whose lines do not match its individuals.  Through the
command line every refusal is one line on stderr, exit status 2, and nothing
written.  Runs on the demo study (400 individuals x 3,000 SNPs).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmmscan import InputError, textio
from lmmscan.bimbam import read_bimbam
from lmmscan.cli import main
from lmmscan.demo import copy_study
from lmmscan.plink import read_plink
from lmmscan.samples import analysed_samples
from lmmscan.textio import read_covar, read_kinship, read_pheno


@pytest.fixture()
def study(tmp_path) -> Path:
    return copy_study(tmp_path / "in")


def refused(capsys, argv, outdir: Path, *needles: str) -> str:
    """Run the command line; expect exit 2, one line naming ``needles``, no new file."""
    before = set(os.listdir(outdir))
    t0 = time.perf_counter()
    status = main([str(a) for a in argv])
    seconds = time.perf_counter() - t0
    _, err = capsys.readouterr()
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert set(os.listdir(outdir)) == before
    assert seconds < 30
    return lines[0]


def scan(prefix: Path, out: Path, *extra) -> list:
    return ["scan", "--bfile", prefix, "--pheno", f"{prefix}.pheno.txt", "--out", out, *extra]


def write_slowly(path: Path, data: bytes, pieces: int = 5) -> threading.Thread:
    """A thread that opens the FIFO ``path`` and writes ``data`` in pieces, with pauses."""

    def run() -> None:
        with contextlib.suppress(BrokenPipeError), open(path, "wb") as fh:
            step = -(-len(data) // pieces)
            for k in range(0, len(data), step):
                fh.write(data[k : k + step])
                fh.flush()
                time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def read_from(read, fifo: Path, writer: threading.Thread, holder: int):
    """read(fifo), read again while it finds no writer and ``writer`` is still
    to open the FIFO: a FIFO that no process has opened for writing reads as
    empty (by design), and a busy machine can run the reader first.
    ``holder``: a read end the test opened before the writer started (so the
    writer never waits for a reader, nor breaks when one came and went),
    closed here."""
    try:
        for _ in range(200):
            # a writer done before the read has all its data in the pipe (the
            # holder keeps it): reading nothing then is a real failure
            done = not writer.is_alive()
            try:
                return read(fifo)
            except InputError as exc:
                if "nothing to read from this pipe" not in str(exc) or done:
                    raise
                time.sleep(0.05)
        raise AssertionError(f"the writer of {fifo} never opened it")
    finally:
        os.close(holder)


def fifo_with_writer(fifo: Path, data: bytes) -> tuple[threading.Thread, int]:
    """A new FIFO, a read end held open on it, and a thread writing ``data``."""
    os.mkfifo(fifo)
    holder = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    return write_slowly(fifo, data), holder


# ------------------------------------------------------------ FIFOs and devices


def test_fifo_as_bed_is_refused_not_waited_on(study, tmp_path, capsys):
    d = tmp_path / "fifo"
    d.mkdir()
    for ext in (".bim", ".fam", ".pheno.txt"):
        shutil.copy(f"{study}{ext}", d / f"s{ext}")
    os.mkfifo(d / "s.bed")
    line = refused(capsys, scan(d / "s", tmp_path / "r"), tmp_path, "s.bed", "--bfile", "pipe")
    assert "regular file" in line
    with pytest.raises(InputError, match="pipe or FIFO"):
        read_plink(d / "s")


@pytest.mark.parametrize("flag", ["--kinship", "--pheno", "--covar", "--bimbam-geno"])
def test_dev_zero_as_an_input_is_refused_not_read_for_ever(study, tmp_path, capsys, flag):
    argv = scan(study, tmp_path / "r")
    if flag == "--bimbam-geno":
        argv[1:3] = ["--bimbam-geno", "/dev/zero"]
    elif flag == "--pheno":
        argv[argv.index("--pheno") + 1] = "/dev/zero"
    else:
        argv += [flag, "/dev/zero"]
    refused(capsys, argv, tmp_path, "/dev/zero", flag, "device")


def test_dev_zero_is_refused_by_the_readers_too():
    for read in (
        lambda: read_pheno("/dev/zero", [1]),
        lambda: read_covar("/dev/zero"),
        lambda: read_kinship("/dev/zero"),
        lambda: read_bimbam("/dev/zero"),
    ):
        with pytest.raises(InputError, match="/dev/zero: names a device"):
            read()


def test_fifo_without_a_writer_is_refused_not_waited_on(study, tmp_path, capsys):
    os.mkfifo(tmp_path / "p")
    argv = scan(study, tmp_path / "r")
    argv[argv.index("--pheno") + 1] = tmp_path / "p"
    refused(capsys, argv, tmp_path, "p:", "nothing to read from this pipe")


# ------------------------------------------------------------------------ pipes


def test_pipe_is_read_whole_not_short_after_the_gzip_check(study, tmp_path):
    """The gzip check used to read (and drop) the first chunk of a pipe; a
    slow writer then gave 'File or stream is not seekable.'"""
    rng = np.random.default_rng(0)
    n = 1940
    pheno = "".join(f"{v:.6g}\t{w:.6g}\n" for v, w in rng.normal(size=(n, 2)).tolist())
    A = rng.normal(size=(60, 60))
    K = A @ A.T
    f = tmp_path / "K.txt"
    textio.write_kinship(f, K)
    np.save(tmp_path / "K.npy", K)
    cases = [
        (pheno.encode(), lambda p: read_pheno(p, [1, 2], n), tmp_path / "y.txt"),
        (pheno.encode(), lambda p: read_covar(p, n), tmp_path / "y.txt"),
        (f.read_bytes(), lambda p: read_kinship(p, 60), f),
        ((tmp_path / "K.npy").read_bytes(), lambda p: read_kinship(p, 60), tmp_path / "K.npy"),
    ]
    (tmp_path / "y.txt").write_text(pheno)
    for k, (data, read, regular) in enumerate(cases):
        fifo = tmp_path / f"fifo{k}{regular.suffix}"
        writer, holder = fifo_with_writer(fifo, data)
        np.testing.assert_array_equal(read_from(read, fifo, writer, holder), read(regular))
        writer.join()


def test_pheno_through_process_substitution(study, tmp_path):
    """``--pheno <(cat f)`` and ``--covar <(cat f)``: the same table as the files."""
    out_file, out_pipe = tmp_path / "file", tmp_path / "pipe"
    common = f"--bfile {study} --out"
    cmd = (
        f"{sys.executable} -m lmmscan scan {common} {out_file} --pheno {study}.pheno.txt "
        f"--covar {study}.covar.txt --quiet && "
        f"{sys.executable} -m lmmscan scan {common} {out_pipe} --pheno <(cat {study}.pheno.txt) "
        f"--covar <(cat {study}.covar.txt) --quiet"
    )
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pipe.assoc.txt").read_bytes() == (tmp_path / "file.assoc.txt").read_bytes()


def test_bimbam_geno_from_a_pipe_is_refused_naming_the_flag(study, tmp_path, capsys):
    argv = scan(study, tmp_path / "r")
    argv[1:3] = ["--bimbam-geno", "/dev/stdin"]
    r, w = os.pipe()
    saved = os.dup(0)
    try:
        os.dup2(r, 0)
        refused(capsys, argv, tmp_path, "--bimbam-geno", "pipe", "read twice")
    finally:
        os.dup2(saved, 0)
        for fd in (r, w, saved):
            os.close(fd)


def test_pipe_longer_than_memory_allows_is_refused_not_cut(tmp_path, monkeypatch):
    monkeypatch.setattr(textio, "_pipe_limit", lambda: 1000)
    fifo = tmp_path / "p"
    writer, holder = fifo_with_writer(fifo, b"1\n" * 2000)
    with pytest.raises(InputError, match="a pipe of more than 1000 bytes"):
        read_from(lambda p: read_pheno(p, [1]), fifo, writer, holder)
    writer.join(timeout=5)


# --------------------------------------------------------------- bytes and paths


def test_non_utf8_path_is_refused_when_the_inputs_open(study, tmp_path, capsys):
    """bed-reader needs a str path: the UnicodeEncodeError came after the null fit."""
    d = Path(os.fsdecode(bytes(tmp_path) + b"/d\xff"))
    try:
        d.mkdir()
    except (OSError, UnicodeEncodeError):  # pragma: no cover - a file system that refuses it
        pytest.skip("the file system refuses a non-UTF-8 name")
    for ext in (".bed", ".bim", ".fam", ".pheno.txt"):
        shutil.copy(f"{study}{ext}", d / f"s{ext}")
    line = refused(capsys, scan(d / "s", tmp_path / "r"), tmp_path, "--bfile", "not UTF-8")
    assert "d\\xff" in line
    with pytest.raises(InputError, match="not UTF-8"):
        read_plink(d / "s")


def test_non_utf8_byte_in_bim_names_its_true_offset_line_and_column(study, tmp_path, capsys):
    """It said "at byte 2" (pandas' buffer) for a byte at offset 99,862, line 3,000."""
    bim = Path(f"{study}.bim")
    data = bytearray(bim.read_bytes())
    offset = data.rfind(b"\n", 0, len(data) - 1) + 1  # the last line: line 3,000
    offset = data.index(b"\t", offset) + 4  # inside its second field, the rs
    data[offset] = 0xFF
    bim.write_bytes(bytes(data))
    refused(
        capsys,
        scan(study, tmp_path / "r"),
        tmp_path,
        f"line 3000, column 2: .bim file is not UTF-8 text: byte 0xff at byte offset {offset}",
    )


# ------------------------------------------------------------------- covariates


def test_more_covariates_than_samples_is_refused_at_once(tmp_path, capsys, study):
    """1,500 columns on 1,410 samples ran the rank check for minutes."""
    rng = np.random.default_rng(1)
    n, c = 1410, 1500
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="1410 analysed samples but 1501 covariate columns"):
        analysed_samples(rng.normal(size=n), rng.normal(size=(n, c)))
    assert time.perf_counter() - t0 < 2
    covar = tmp_path / "wide.txt"
    np.savetxt(covar, rng.normal(size=(400, 500)), fmt="%.6g")
    argv = [*scan(study, tmp_path / "r"), "--covar", covar]
    refused(capsys, argv, tmp_path, "analysed samples but 501 covariate columns")


def test_rank_check_of_many_covariates_is_one_decomposition():
    """400 covariates took 50 s (one SVD per column); the column named is the
    first that depends on those before it, as before."""
    rng = np.random.default_rng(2)
    n, c = 1410, 400
    W = rng.normal(size=(n, c))
    t0 = time.perf_counter()
    analysed_samples(rng.normal(size=n), W)
    assert time.perf_counter() - t0 < 5
    W[:, 250] = W[:, 3] - 2 * W[:, 100]
    W[:, 300] = W[:, 7]
    with pytest.raises(InputError, match="collinear: column 251 is"):
        analysed_samples(rng.normal(size=n), W)


def test_covariate_of_1e308_is_refused_not_called_collinear(study, tmp_path, capsys):
    covar = Path(f"{study}.covar.txt")
    lines = covar.read_text().splitlines()
    lines[6] = lines[6].split("\t")[0] + "\t1e308"
    covar.write_text("\n".join(lines) + "\n")
    argv = [*scan(study, tmp_path / "r"), "--covar", covar]
    refused(capsys, argv, tmp_path, "line 7, column 2", "'1e308' is too large")
    W = np.ones((50, 2))
    W[:, 1] = np.arange(50)
    W[9, 1] = -1e300
    with pytest.raises(InputError, match="covariate column 2 has a value of -1e.300 .sample 10."):
        analysed_samples(np.arange(50.0), W)


def test_phenotype_of_1e308_in_a_file_gives_numbers(study, tmp_path, capsys):
    """y's units change no test: the fit rescales it (see test_numerics_honest),
    so a huge phenotype value is analysed, not refused or turned into nan."""
    pheno = Path(f"{study}.pheno.txt")
    lines = pheno.read_text().splitlines()
    lines[2] = "1e308\t" + lines[2].split("\t")[1]
    pheno.write_text("\n".join(lines) + "\n")
    assert main([str(a) for a in scan(study, tmp_path / "r", "--quiet")]) == 0
    table = pd.read_csv(tmp_path / "r.assoc.txt", sep="\t")
    assert np.isfinite(table["p_wald"]).all()


# -------------------------------------------------------------------------- .fam


def delete_fam_line(study: Path, i: int) -> None:
    fam = Path(f"{study}.fam")
    lines = fam.read_text().splitlines(keepends=True)
    del lines[i]
    fam.write_text("".join(lines))


def test_fam_with_a_line_deleted_is_caught_when_the_bed_size_changes(study, tmp_path, capsys):
    """400 -> 399 individuals: (n + 3) // 4 bytes per SNP changes from 100 to
    100: the deletion cannot be seen; from 400 to 396 it can be (99 bytes)."""
    delete_fam_line(study, 200)
    read_plink(study)  # 399 individuals: the same .bed size, undetectable
    for i in (10, 20, 30):
        delete_fam_line(study, i)
    refused(capsys, scan(study, tmp_path / "r"), tmp_path, "demo.bed", "396 samples")


def test_fam_with_a_duplicated_individual_is_refused(study, tmp_path, capsys):
    fam = Path(f"{study}.fam")
    lines = fam.read_text().splitlines(keepends=True)
    lines[300] = lines[12]  # one line pasted over another: every count still matches
    fam.write_text("".join(lines))
    refused(
        capsys,
        scan(study, tmp_path / "r"),
        tmp_path,
        "demo.fam, line 301",
        "'ind013' is on lines 13 and 301",
    )


@pytest.mark.parametrize("change", ["shorter", "longer"])
def test_fam_line_with_other_fields_than_line_1_is_refused(study, tmp_path, capsys, change):
    """A .fam of 7 columns with a line of 6 gave NaN for that line's phenotype 2."""
    fam = Path(f"{study}.fam")
    lines = [line + " 1.5" for line in fam.read_text().splitlines()]
    lines[41] = lines[41].rsplit(" ", 1)[0] if change == "shorter" else lines[41] + " 7"
    fam.write_text("\n".join(lines) + "\n")
    have = 6 if change == "shorter" else 8
    refused(
        capsys,
        scan(study, tmp_path / "r"),
        tmp_path,
        f"demo.fam, line 42: {have} fields where line 1 has 7",
    )


def test_genotype_whose_square_overflows_is_refused_naming_it(tmp_path):
    from lmmscan.genotypes import ArrayGenotypes

    G = np.ones((5, 3))
    G[3, 2] = 1e200
    with pytest.raises(InputError, match=r"SNP 3, sample 4 is 1e\+200"):
        ArrayGenotypes(G)
    f = tmp_path / "g.txt"
    f.write_text("rs1 A C 0 1 2\nrs2 A C 1 -1e300 2\n")
    with pytest.raises(InputError, match=r"line 2, column 5: genotype b?'-1e300' is too large"):
        read_bimbam(f).read(0, 2)


def test_npz_or_binary_as_kinship_text_is_named_not_quoted(tmp_path):
    """An .npz as --kinship quoted its binary bytes as the bad token."""
    np.savez(tmp_path / "K.npz", K=np.eye(3))
    with pytest.raises(InputError, match=r"K.npz: is a zip \(.npz\) file, not kinship text"):
        read_kinship(tmp_path / "K.npz")
    (tmp_path / "K.txt").write_bytes(b"1\t0\n0\t1\x00\n")
    with pytest.raises(InputError, match="line 2, column 2: kinship file is not text: byte 0x00"):
        read_kinship(tmp_path / "K.txt")


def test_a_read_error_names_the_file(study, tmp_path, capsys, monkeypatch):
    """EIO while a text input or the .bim/.fam was read (fault injection,
    helper 41): "lmmscan scan: error: Input/output error", no file named."""
    import errno
    import io
    import pathlib

    failing = {f"{study}.pheno.txt", f"{study}.bim", f"{study}.fam"}
    real_open, real_read_bytes = open, pathlib.Path.read_bytes

    class Failing(io.BytesIO):
        def read(self, *args):
            raise OSError(errno.EIO, "Input/output error")

    def fake_open(path, *args, **kwargs):
        return Failing(b"") if str(path) in failing else real_open(path, *args, **kwargs)

    def fake_read_bytes(self):
        if str(self) in failing:
            raise OSError(errno.EIO, "Input/output error")
        return real_read_bytes(self)

    monkeypatch.setattr(textio, "open", fake_open, raising=False)
    monkeypatch.setattr(pathlib.Path, "read_bytes", fake_read_bytes)
    for name in sorted(failing):
        failing.clear()
        failing.add(name)
        assert main([str(a) for a in scan(study, tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert err == f"lmmscan scan: error: {name}: Input/output error", err
