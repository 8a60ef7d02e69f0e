"""Bad input found by an audit of the command line (2026-12-06): each gets one
line and exit status 2, or the answer the input asks for; never a silent
wrong answer, a traceback or a replaced file."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lmmscan import InputError
from lmmscan.cli import main
from lmmscan.demo import copy_study
from lmmscan.genotypes import require_extra
from lmmscan.textio import read_pheno

from .test_inputs_robust import refused, scan


@pytest.fixture()
def study(tmp_path) -> Path:
    return copy_study(tmp_path / "in")


def test_a_phenotype_row_with_a_field_too_few_is_refused_not_shifted(tmp_path):
    p = tmp_path / "y.csv"
    # an empty CSV field collapses: line 3 would give its second column's value
    p.write_text("1.5,2.5\n0.5,1.0\n,-1.65625\n2.0,NA\n")
    with pytest.raises(InputError, match=r"y\.csv, line 3: 1 column where line 1 has 2"):
        read_pheno(p, [1])
    p.write_text("1.5\t2.5\n0.5\t1.0\n1,5\t-1.6\n2.0\tNA\n")  # a decimal comma
    with pytest.raises(InputError, match=r"line 3: 3 columns where line 1 has 2"):
        read_pheno(p, [2])
    p.write_text("1.5\t2.5\n0.5\t1.0\n")
    np.testing.assert_array_equal(read_pheno(p, [2]), [[2.5], [1.0]])


@pytest.mark.parametrize("out", ["", "sub/", "sub/.", ".."])
def test_an_output_name_that_is_a_directory_is_refused(study, tmp_path, capsys, monkeypatch, out):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    monkeypatch.chdir(work)  # "" and "sub/" would write hidden files (".assoc.txt") here
    refused(capsys, scan(study, out), work, "--out", "give a file name")
    assert os.listdir(work / "sub") == []


def test_a_fifo_named_as_output_is_refused_and_left_alone(study, tmp_path, capsys):
    fifo = tmp_path / "K.txt"
    os.mkfifo(fifo)
    argv = ["kinship", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--out", fifo]
    refused(capsys, argv, tmp_path, "K.txt", "device, FIFO or socket")
    assert fifo.is_fifo()
    os.mkfifo(tmp_path / "r.assoc.txt")
    refused(capsys, scan(study, tmp_path / "r"), tmp_path, "r.assoc.txt", "FIFO")
    assert (tmp_path / "r.assoc.txt").is_fifo()


def test_an_output_symlink_is_written_through(study, tmp_path, capsys):
    target = tmp_path / "store" / "K.txt"
    target.parent.mkdir()
    link = tmp_path / "K.txt"
    link.symlink_to(target)
    argv = ["kinship", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--quiet"]
    assert main([str(a) for a in [*argv, "--out", link]]) == 0
    assert link.is_symlink() and target.is_file()
    assert main([str(a) for a in [*argv, "--out", tmp_path / "plain.txt"]]) == 0
    assert target.read_bytes() == (tmp_path / "plain.txt").read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["K.txt"]  # no temporary left
    dangling = tmp_path / "D.txt"
    dangling.symlink_to(tmp_path / "gone" / "K.txt")
    line = refused(capsys, [*argv, "--out", dangling], tmp_path, "D.txt", "does not exist")
    assert ".K.txt.tmp" not in line  # the name given, not the hidden temporary


def test_scan_tables_are_written_through_an_output_symlink(study, tmp_path, capsys):
    """A scan's tables (renamed from their .partial files when the scan ends)
    go where a symlinked output name points, as a shell redirection would:
    the link is kept, never replaced by a file beside a stale target."""
    store = tmp_path / "store"
    store.mkdir()
    for suffix in (".assoc.txt", ".null.json"):
        (store / f"r{suffix}").write_text("stale\n")
        (tmp_path / f"r{suffix}").symlink_to(store / f"r{suffix}")
    assert main([str(a) for a in scan(study, tmp_path / "r", "--quiet")]) == 0
    assert main([str(a) for a in scan(study, tmp_path / "plain", "--quiet")]) == 0
    for suffix in (".assoc.txt", ".null.json"):
        assert (tmp_path / f"r{suffix}").is_symlink(), suffix
    table = (store / "r.assoc.txt").read_bytes()
    assert table == (tmp_path / "plain.assoc.txt").read_bytes()
    assert "stale" not in (store / "r.null.json").read_text()
    assert sorted(p.name for p in store.iterdir()) == ["r.assoc.txt", "r.null.json"]
    assert not list(tmp_path.glob("*.partial*")) and not list(tmp_path.glob("*resume*"))
    dangling = tmp_path / "d.assoc.txt"
    dangling.symlink_to(tmp_path / "gone" / "d.assoc.txt")
    refused(capsys, scan(study, tmp_path / "d"), tmp_path, "d.assoc.txt", "does not exist")
    # the table's partial file goes beside the link's target: checked there, before any work
    (store / "r.assoc.txt.partial").mkdir()
    refused(capsys, scan(study, tmp_path / "r"), tmp_path, "r.assoc.txt.partial", "directory")


def test_region_is_bounded_before_any_work(study, tmp_path, capsys):
    try:
        status = main([str(a) for a in scan(study, tmp_path / "r", "--region", "1000000000")])
    except SystemExit as stop:  # argparse's usage error
        status = stop.code
    assert status == 2
    err = capsys.readouterr().err
    assert "--region" in err and "10,000" in err and "Traceback" not in err
    assert not list(tmp_path.glob("r*"))
    import lmmscan

    y = np.random.default_rng(0).normal(size=20)
    with pytest.raises(InputError, match="n_region must be between 1 and 10000"):
        lmmscan.fit_null(y, kinship=np.eye(20), bounds=lmmscan.LambdaBounds(n_region=10_001))


def test_a_truncated_or_corrupt_eigendecomposition_names_the_file(study, tmp_path, capsys):
    e = tmp_path / "e.npz"
    K = tmp_path / "K.txt"
    kin = ["kinship", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--out", K, "--quiet"]
    eig = ["eigen", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--kinship", K,
           "--out", e, "--quiet"]  # fmt: skip
    assert main([str(a) for a in kin]) == 0 and main([str(a) for a in eig]) == 0
    data = e.read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 3])
    refused(capsys, scan(study, tmp_path / "r", "--eigen", tmp_path / "t.npz"), tmp_path, "t.npz")
    bad = bytearray(data)
    middle = len(bad) // 2
    bad[middle : middle + 100] = bytes(100)
    (tmp_path / "c.npz").write_bytes(bytes(bad))
    refused(capsys, scan(study, tmp_path / "r", "--eigen", tmp_path / "c.npz"), tmp_path, "c.npz")


def test_an_installed_package_that_does_not_import_is_named_in_one_line(tmp_path, monkeypatch):
    pkg = tmp_path / "brokenreader_xyz"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        'raise ImportError("libhts.so.3: cannot open shared object file")\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InputError, match="installed but does not import .*libhts.so.3"):
        require_extra("brokenreader_xyz", "brokenreader", "vcf", "--vcf")
    sys.modules.pop("brokenreader_xyz", None)
    # any exception at import, not only ImportError (before: a traceback)
    (pkg / "__init__.py").write_text('raise AttributeError("module numpy has no attribute x")\n')
    with pytest.raises(InputError, match="does not import .AttributeError: module numpy has"):
        require_extra("brokenreader_xyz", "brokenreader", "vcf", "--vcf")
    sys.modules.pop("brokenreader_xyz", None)


VCF_HEADER = (
    "##fileformat=VCFv4.2\n"
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">\n'
    '##FORMAT=<ID=GP,Number=G,Type=Float,Description="Genotype probabilities">\n'
    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\ts1\ts2\ts3\n"
)


@pytest.mark.parametrize("with_gt", [True, False])
def test_vcf_gp_dosages_are_read_from_gp_with_or_without_gt(tmp_path, with_gt):
    pytest.importorskip("cyvcf2")
    from lmmscan.vcf import read_vcf

    gp = [(0.1, 0.7, 0.2), (0.0, 0.2, 0.8), (0.6, 0.3, 0.1)]
    gt = ["0/0", "0/0", "0/0"]  # the hard calls disagree with GP on purpose
    fmt = "GT:GP" if with_gt else "GP"
    cells = [
        (f"{g}:" if with_gt else "") + ",".join(f"{v:g}" for v in p)
        for g, p in zip(gt, gp, strict=True)
    ]
    path = tmp_path / "g.vcf"
    path.write_text(VCF_HEADER + f"1\t100\tv1\tA\tG\t.\t.\t.\t{fmt}\t" + "\t".join(cells) + "\n")
    X = read_vcf(path, field="GP").read(0, 1)
    np.testing.assert_allclose(X[:, 0], [p[1] + 2 * p[2] for p in gp], rtol=1e-6)


@pytest.mark.parametrize("flag, value", [("--maf", "nan"), ("--miss", "-1"), ("--miss", "nan")])
def test_filter_flags_that_would_silently_change_the_filter_are_refused(
    study, tmp_path, capsys, flag, value
):
    try:
        status = main([str(a) for a in scan(study, tmp_path / "r", flag, value)])
    except SystemExit as stop:  # argparse's usage error
        status = stop.code
    assert status == 2
    err = capsys.readouterr().err
    assert flag in err and "Traceback" not in err


def test_a_full_disk_when_taking_the_lock_names_it_and_leaves_no_lock(study, tmp_path, capsys):
    import errno

    from lmmscan.cli import prefix

    real = os.write

    def full(fd, data):
        if data.strip().isdigit():  # the lock's process number
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(prefix.os, "write", full)
        status = main([str(a) for a in scan(study, tmp_path / "r", "--quiet")])
    err = capsys.readouterr().err
    assert status == 2 and "r.lock: No space left on device" in err, err
    assert not list(tmp_path.glob("r*"))


def test_a_killed_run_s_temporary_file_is_removed_by_the_next(study, tmp_path):
    import subprocess

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = int(done.stdout)  # a process that has ended
    stale = tmp_path / f".K.txt.tmp{dead}"
    stale.write_text("half a kinship")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    recent = tmp_path / f".K.txt.tmp{dead + 1_000_000}"  # no such process, but written
    recent.write_text("being written on another machine")  # to a minute ago: kept
    alive = tmp_path / f".K.txt.tmp{os.getppid()}"  # a running process's: kept
    alive.write_text("being written")
    os.utime(alive, (old, old))
    argv = ["kinship", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--quiet"]
    assert main([str(a) for a in [*argv, "--out", tmp_path / "K.txt"]]) == 0
    assert not stale.exists() and alive.exists() and recent.exists()
    assert (tmp_path / "K.txt").is_file()


@pytest.mark.parametrize("bad", ["3.5", "-1", "inf"])
def test_vcf_dosages_outside_0_to_2_are_refused_naming_the_record(tmp_path, bad):
    pytest.importorskip("cyvcf2")
    from lmmscan.vcf import read_vcf

    header = VCF_HEADER.replace("GP,Number=G", "DS,Number=1").replace("probabilities", "dosage")
    rows = [
        "1\t100\tv1\tA\tG\t.\t.\t.\tDS\t0.5\t1\t2.0005",
        f"1\t200\tv2\tA\tG\t.\t.\t.\tDS\t0\t{bad}\t1",
    ]
    path = tmp_path / "d.vcf"
    path.write_text(header + "\n".join(rows) + "\n")
    g = read_vcf(path, field="DS")
    np.testing.assert_allclose(g.read(0, 1)[:, 0], [0.5, 1, 2.0005], rtol=1e-6)  # rounding: kept
    with pytest.raises(
        InputError, match=rf"d\.vcf: record 2 \(1:200 v2\): .* sample 's2' is {bad}"
    ):
        g.read(0, 2)


def test_collinear_covariates_name_the_covariate_file(study, tmp_path, capsys):
    rows = [line.split() for line in Path(f"{study}.covar.txt").read_text().splitlines()]
    bad = tmp_path / "c.txt"  # column 2 = 1 - column 1: collinear with the intercept
    lines = [f"{a}\t{'NA' if a == 'NA' else 1 - float(a):g}\t{b}" for a, b in rows]
    bad.write_text("\n".join(lines) + "\n")
    line = refused(capsys, scan(study, tmp_path / "r", "--covar", bad), tmp_path, "c.txt:")
    assert "collinear" in line and "pheno.txt column 1" in line  # whose analysed samples


def test_a_haploid_gp_record_is_skipped_as_other_ploidy_not_a_traceback(tmp_path):
    pytest.importorskip("cyvcf2")
    from lmmscan.vcf import read_vcf

    rows = [
        "1\t100\tv1\tA\tG\t.\t.\t.\tGT:GP\t0/1:0.1,0.8,0.1\t0/0:0.9,0.1,0\t1/1:0,0.2,0.8",
        "X\t200\tv2\tA\tG\t.\t.\t.\tGT:GP\t0:0.9,0.1\t1:0.2,0.8\t0:1,0",
    ]
    path = tmp_path / "h.vcf"
    path.write_text(VCF_HEADER + "\n".join(rows) + "\n")
    g = read_vcf(path, field="GP")
    X = g.read(0, 2)
    np.testing.assert_allclose(X[:, 0], [1.0, 0.1, 1.8], rtol=1e-6)
    assert np.isnan(X[:, 1]).all() and g.skipped_at_read == {"ploidy other than 2": 1}


def test_a_vcf_record_htslib_cannot_read_is_named_with_its_line(tmp_path):
    pytest.importorskip("cyvcf2")
    from lmmscan.vcf import read_vcf

    header = VCF_HEADER.replace("GP,Number=G", "DS,Number=1").replace("probabilities", "dosage")
    rows = [f"1\t{100 * k}\tv{k}\tA\tG\t.\t.\t.\tDS\t0.5\t1\t2" for k in range(1, 5)]
    rows[2] = "1\t300\tv3\tA\tG\t.\t.\t.\tDS\t0.5\t1"  # a sample short
    path = tmp_path / "r.vcf"
    path.write_text(header + "\n".join(rows) + "\n")
    g = read_vcf(path, field="DS")
    line = header.count("\n") + 3
    with pytest.raises(InputError, match=rf"r\.vcf: cannot read record 3 \(line {line}\)"):
        g.read(0, 4)


@pytest.mark.parametrize("gz", [False, True])
def test_a_vcf_header_htslib_refuses_is_named_with_its_fault(tmp_path, gz):
    """htslib says only "cannot parse VCF header"; a sample named twice and a
    missing #CHROM line are named with their line."""
    pytest.importorskip("cyvcf2")
    import gzip

    from lmmscan.vcf import read_vcf

    row = "1\t100\tv1\tA\tG\t.\t.\t.\tGT\t0/1\t1/1\t0/0\n"
    cases = {
        "dup": (VCF_HEADER.replace("s3", "s1") + row, r"line 4: sample name 's1' appears twice"
                r" \(columns 10 and 12\)"),
        "nochrom": (VCF_HEADER.replace("#CHROM\tPOS", "CHROM\tPOS"),
                    r"line 4: the header has no #CHROM line"),
    }  # fmt: skip
    for name, (text, message) in cases.items():
        path = tmp_path / f"{name}.vcf{'.gz' if gz else ''}"
        path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
        with pytest.raises(InputError, match=rf"{name}\.vcf(\.gz)?, {message}"):
            read_vcf(path)
    # neither fault: htslib's own words, and no traceback from the search
    good = gzip.compress((VCF_HEADER + row).encode() * 50)
    bad = tmp_path / "corrupt.vcf.gz"  # a corrupt deflate stream (zlib.error)
    bad.write_bytes(good[:20] + bytes(b ^ 0x55 for b in good[20:200]) + good[200:])
    with pytest.raises(InputError, match=r"corrupt\.vcf\.gz: not a readable VCF/BCF file"):
        read_vcf(bad)
    other = tmp_path / "other.vcf"
    other.write_text("this is not a VCF\n")
    with pytest.raises(InputError, match=r"other\.vcf: not a readable VCF/BCF file"):
        read_vcf(other)


def test_an_unreadable_genotype_file_says_so(tmp_path, monkeypatch):
    pytest.importorskip("cyvcf2")
    import builtins

    from lmmscan import genotypes
    from lmmscan.vcf import read_vcf

    path = tmp_path / "u.vcf"
    path.write_text(VCF_HEADER)

    def denied(name, *args, **kwargs):  # as chmod 000 does for anyone but root
        if str(name) == str(path):
            raise PermissionError(13, "Permission denied", str(name))
        return builtins.open(name, *args, **kwargs)

    monkeypatch.setattr(genotypes, "open", denied, raising=False)
    with pytest.raises(InputError, match=r"u\.vcf: cannot read \(Permission denied\)"):
        read_vcf(path)


def test_a_sample_file_line_a_field_short_is_refused(tmp_path):
    from lmmscan.bgenfile import read_sample_file

    p = tmp_path / "s.sample"
    p.write_text("ID_1 ID_2 missing\n0 0 0\na a 0\nb b\nc c 0\n")
    with pytest.raises(InputError, match=r"s\.sample, line 4: 2 fields where line 1 has 3"):
        read_sample_file(p)
    p.write_text("ID_1 ID_2 missing\n0 0 0\na a 0\nb b 0\n")
    assert read_sample_file(p).iid == ["a", "b"]


def test_kinship_method_with_a_given_kinship_is_refused(study, tmp_path, capsys):
    argv = scan(
        study, tmp_path / "r", "--kinship", f"{study}.bed", "--kinship-method", "standardized"
    )
    refused(capsys, argv, tmp_path, "--kinship-method", "--kinship")


def test_no_snp_left_for_the_kinship_names_the_flags(study, tmp_path, capsys):
    argv = ["kinship", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--maf", "0.6",
            "--out", tmp_path / "K.txt"]  # fmt: skip
    refused(capsys, argv, tmp_path, "no SNP passed", "maf 3000", "relax --maf")


def test_no_snp_left_names_the_filter_that_removed_them(study, tmp_path, capsys):
    """--r2 (or --hwe, --info) emptied the list, and the message said to relax
    --maf and --miss."""
    argv = ["kinship", "--bfile", study, "--pheno", f"{study}.pheno.txt", "--covar",
            f"{study}.covar.txt", "--r2", "0", "--maf", "0",
            "--out", tmp_path / "K.txt"]  # fmt: skip
    refused(capsys, argv, tmp_path, "no SNP passed", "relax --r2")


def test_an_infinite_fam_phenotype_names_its_line(tmp_path, capsys):
    """Before: "y contains infinite values (use NaN for missing)", with no
    line, and NaN is not a .fam's missing code."""
    from lmmscan.demo import copy_study

    study = copy_study(tmp_path / "in")
    fam = Path(f"{study}.fam")
    lines = fam.read_text().splitlines()
    for i, line in enumerate(lines):
        fields = line.split()
        fields[5] = "inf" if i == 11 else str(0.1 * i)
        lines[i] = " ".join(fields)
    fam.write_text("\n".join(lines) + "\n")
    status = main(["kinship", "--bfile", str(study), "--out", str(tmp_path / "k.txt")])
    err = capsys.readouterr().err
    assert status == 2
    assert "demo.fam, line 12, column 6: phenotype 'inf' is infinite (NA or -9 is missing)" in err


@pytest.mark.parametrize("command", ["kinship", "eigen", "scan"])
def test_an_unwritable_output_directory_is_refused_before_any_work(
    tmp_path, capsys, monkeypatch, command
):
    """kinship and eigen wrote their file only after all their work, then named
    a hidden temporary file; scan named its lock file."""
    import errno
    import tempfile

    from lmmscan.demo import copy_study

    study = copy_study(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    real_open = os.open

    def open_here(path, *a, **k):  # the probe of the output's temporary name
        if Path(path).parent == out:
            read_only()
        return real_open(path, *a, **k)

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    monkeypatch.setattr(os, "open", open_here)
    name = {"kinship": "k.txt", "eigen": "e.npz", "scan": "r"}[command]
    argv = [command, "--bfile", str(study), "--pheno", f"{study}.pheno.txt",
            "--out", str(out / name)]  # fmt: skip
    if command == "eigen":
        argv += ["--kinship", str(study) + ".bim"]  # never read: refused before
    status = main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert f"{out}: cannot write in the output directory (Read-only file system)" in err
    assert list(out.iterdir()) == []


def test_a_plan_that_blocks_break_suggests_a_smaller_block_size(study, tmp_path, capsys):
    """The refusal suggested a low-rank kinship (an API function) and never
    --block-size, which was enough."""
    argv = ["scan", "--bfile", str(study), "--pheno", f"{study}.pheno.txt", "--test", "all",
            "--memory-limit", "120M", "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    assert "a smaller --block-size (the blocks take" in capsys.readouterr().err
    assert main([*argv, "--block-size", "100", "--quiet"]) == 0


def test_loco_and_kinship_refusals_name_what_helps(study, tmp_path, capsys):
    """LOCO still said "relax --maf, --miss" when --r2 removed every SNP; kinship
    was told to use --block-size, a flag it does not have."""
    argv = ["scan", "--bfile", str(study), "--pheno", f"{study}.pheno.txt", "--covar",
            f"{study}.covar.txt", "--loco", "--r2", "0", "--maf", "0",
            "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    assert "relax --r2" in capsys.readouterr().err
    argv = ["kinship", "--bfile", str(study), "--pheno", f"{study}.pheno.txt",
            "--memory-limit", "110M", "--out", str(tmp_path / "k.txt")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "needs about" in err and "--block-size" not in err
