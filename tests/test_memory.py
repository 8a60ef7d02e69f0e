"""The memory plan (lmmscan.memory): estimates from the sizes, checked before
any large allocation; refusals in one line with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lmmscan
from lmmscan import memory
from lmmscan.cli import main

DEMO = Path(__file__).resolve().parents[1] / "python" / "lmmscan" / "data" / "demo"


def run(argv, capsys):
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize(
    "text, value",
    [("16G", 16 << 30), ("512M", 512 << 20), ("1.5T", int(1.5 * (1 << 40))), ("2000", 2000),
     ("8GiB", 8 << 30), ("64k", 64 << 10)],
)  # fmt: skip
def test_parse_size(text, value):
    assert memory.parse_size(text) == value


@pytest.mark.parametrize("text", ["", "lots", "-1G", "0", "1X"])
def test_parse_size_refuses(text):
    with pytest.raises(lmmscan.InputError, match="--memory-limit"):
        memory.parse_size(text)


def test_available_is_positive():
    room = memory.available()
    assert room is not None and room[0] > 0 and room[1]


def test_dense_plan_terms():
    """The terms of the exact path at n = 10,000 (dsyevr and dsyevd)."""
    n = 10_000
    evr = memory.scan_plan(n_file=n, analysed=[n], n_variants=0, block=100, kinship="given",
                           driver="evr")  # fmt: skip
    assert evr.phases["decomposition"]["kinship"] == 8 * n * n
    assert evr.phases["decomposition"]["eigenvectors"] == 8 * n * n
    evd = memory.scan_plan(n_file=n, analysed=[n], n_variants=0, block=100, kinship="given",
                           driver="evd")  # fmt: skip
    assert evd.peak - evr.peak == pytest.approx(8 * n * n, rel=0.01)  # 2 n^2 workspace, no U
    white = memory.scan_plan(n_file=n, analysed=[n], n_variants=0, block=100, kinship="given",
                             driver="evr", whitened=1)  # fmt: skip
    assert white.phases["scan"]["whitening factor"] == 8 * n * n


@pytest.mark.parametrize("command", ["scan", "kinship", "eigen"])
def test_limit_below_the_estimate_refuses(tmp_path, capsys, command):
    out = tmp_path / ("o.npz" if command == "eigen" else "o")
    args = [command, "--bfile", DEMO, "--pheno", f"{DEMO}.pheno.txt", "--memory-limit", "20M"]
    if command == "eigen":
        K = tmp_path / "K.npy"
        assert run(["kinship", "--bfile", DEMO, "--pheno", f"{DEMO}.pheno.txt", "--out", K,
                    "--quiet"], capsys)[0] == 0  # fmt: skip
        args += ["--kinship", K]
    status, _, err = run([*args, "--out", out], capsys)
    assert status == 2
    line = err.strip()
    assert len(line.splitlines()) == 1 and "--memory-limit" in line and "needs about" in line
    assert not list(tmp_path.glob("o*"))


def test_scan_reports_estimate_and_peak(tmp_path, capsys):
    out = tmp_path / "r"
    status, text, _ = run(
        ["scan", "--bfile", DEMO, "--pheno", f"{DEMO}.pheno.txt", "--memory-limit", "8G",
         "--out", out], capsys,
    )  # fmt: skip
    assert status == 0 and "memory: estimated" in text
    got = json.loads(Path(f"{out}.null.json").read_text())["memory"]
    assert got["estimate_bytes"] > 0 and got["peak_rss_bytes"] > 0
    assert got["available_from"] == "--memory-limit" and got["available_bytes"] == 8 << 30


def test_api_decomposition_refuses_what_cannot_fit(monkeypatch):
    """A decomposition larger than the memory available raises NotEnoughMemory
    before LAPACK allocates."""
    monkeypatch.setattr(memory, "available", lambda: (50 << 20, "MemAvailable"))
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(2500, 50))
    K = Z @ Z.T / 50
    with pytest.raises(lmmscan.NotEnoughMemory, match="eigendecomposition of a 2500 x 2500"):
        lmmscan.fit_null(rng.normal(size=2500), kinship=K)


@pytest.mark.parametrize("interleaved", [False, True])
def test_loco_rows_held_for_file_order_are_planned(tmp_path, interleaved):
    """Chromosomes that interleave in the file (an annotation's NA, read as
    chromosome -9, scattered through chromosome 2) make LOCO hold every
    tested row until the end: ~17 columns, twice, per SNP and phenotype,
    which the plan did not count (1.5 GB more at 10M SNPs)."""
    rng = np.random.default_rng(4)
    n, m = 80, 60
    G = rng.binomial(2, 0.3, (m, n))
    geno = tmp_path / "g.txt"
    geno.write_text("".join(f"s{j}, A, T, " + ", ".join(map(str, G[j])) + "\n" for j in range(m)))
    chrom = ["1"] * 20 + ["2"] * 40
    if interleaved:
        chrom[21::3] = ["NA"] * len(chrom[21::3])
    (tmp_path / "a.txt").write_text("".join(f"s{j} {j + 1} {c}\n" for j, c in enumerate(chrom)))
    np.savetxt(tmp_path / "y.txt", rng.normal(size=(n, 2)))
    argv = ["scan", "--bimbam-geno", geno, "--bimbam-anno", tmp_path / "a.txt", "--pheno",
            tmp_path / "y.txt", "--pheno-col", "1", "--pheno-col", "2", "--loco", "--quiet",
            "--out", tmp_path / "o"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    fixed = json.loads((tmp_path / "o.1.null.json").read_text())["memory"]["fixed"]
    held = fixed.get("rows held for file order", 0)
    assert held == (memory.HELD_ROW * m * 2 if interleaved else 0)


def test_plan_counts_what_helper_55_measured_beyond_it():
    """Measured against /usr/bin/time (helper 55): a whitened scan of a saved
    full decomposition held an n x n factor the plan left out (643 MiB, 423
    planned at n = 5,000); each further group of phenotypes copies and
    imputes its rows of the block (463 MiB, 326 planned, n = 2,000)."""
    base = dict(n_file=2000, n_variants=20000, block=4000, driver="evr")
    eig = dict(base, analysed=[2000], kinship="eigen", eigen_shape=(2000, 2000))
    plain, white = memory.scan_plan(**eig), memory.scan_plan(**eig, whitened=1)
    assert white.phases["scan"]["whitening factor"] == 8 * 2000 * 2000
    assert white.peak - plain.peak == 8 * 2000 * 2000
    one = memory.scan_plan(**base, analysed=[2000], kinship="given")
    three = memory.scan_plan(**base, analysed=[2000, 1900, 1950], kinship="given")
    copies = three.phases["scan"]["other groups' block copies"]
    assert copies == memory.block_bytes(2000, 4000, 2) * 2
    assert "other groups' block copies" not in one.phases["scan"]


def test_eigendecompose_in_the_kinships_memory_gives_the_same_decomposition():
    """lmmscan eigen decomposes the kinship in its own memory (a copy beside
    it put the peak 8n^2 bytes above the plan): the same eigenvalues and
    vectors, bit for bit."""
    rng = np.random.default_rng(3)
    Z = rng.normal(size=(60, 40))
    K = Z @ Z.T / 40
    want = lmmscan.eigendecompose(K)
    mine = K.copy()
    got = lmmscan.eigendecompose(mine, overwrite_kinship=True)
    np.testing.assert_array_equal(got.d, want.d)
    np.testing.assert_array_equal(got.U, want.U)


@pytest.mark.parametrize("evr_mb, suggested", [(90, True), (130, False)])
def test_dsyevr_is_suggested_only_where_its_plan_fits(evr_mb, suggested):
    """Helper 55: `--eigh-driver evd` over the limit suggested evr "needs 8n^2
    bytes less" for a peak in the scan phase, where evr's plan is as large
    and was refused at the same limit."""
    import argparse

    from lmmscan.cli.common import memory_check_driver

    def plan(driver: str) -> memory.Plan:
        p = memory.Plan("the scan")
        size = 140 if driver == "evd" else evr_mb
        p.add("scan", "genotype blocks", (size << 20) - memory.BASE)
        return p

    from lmmscan.spectral import eigh_driver

    args = argparse.Namespace(eigh_driver="evd", memory_limit="100M", block_size=None)
    with eigh_driver("auto"), pytest.raises(lmmscan.InputError) as err:  # (restored after)
        memory_check_driver(args, plan, lambda driver: memory.hints_dense(400, driver, False))
    assert ("--eigh-driver evr" in str(err.value)) == suggested, str(err.value)


def _traced_peak(fn):
    """fn()'s result and the most memory it held at once beyond what was
    allocated before it (numpy and Python allocations, traced)."""
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = fn()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return out, peak


def _write_bimbam(path, G, gz=False):
    """A BIMBAM file of G (SNPs x samples), rs names of several lengths and a
    blank line now and then."""
    import gzip

    lines = []
    for j, row in enumerate(G):
        lines.append(f"rs{j * 7919}, A, TT, " + ", ".join(f"{v:.3f}" for v in row) + "\n")
        if j % 5 == 2:
            lines.append("\n")
    text = "".join(lines).encode()
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(text)
    else:
        path.write_bytes(text)


@pytest.mark.parametrize("gz", [False, True])
def test_a_bimbam_block_read_holds_its_text_once(tmp_path, gz):
    """Helper 55: a BIMBAM block's read sliced each line's genotypes from the
    text and joined them, three copies of the text beside the block (the
    scan's peak 1.4-1.7 times its plan).  Now the text is read into one
    buffer and parsed there, and a read of every sample takes no copy."""
    rng = np.random.default_rng(5)
    n, m = 300, 500
    G = np.round(rng.uniform(0, 2, (m, n)), 3)
    path = tmp_path / ("g.txt.gz" if gz else "g.txt")
    _write_bimbam(path, G, gz)
    src = lmmscan.read_bimbam(path)
    text = src.read_overhead(m, False)
    assert text >= m * n * 6  # "0.123, "
    for samples in (None, np.arange(n)):
        X, peak = _traced_peak(lambda samples=samples: src.read(0, m, samples))
        np.testing.assert_array_equal(X, G.T)
        assert peak <= X.nbytes + 1.05 * text + (1 << 20)  # (gzip's pieces: 1 MiB)
    rows = np.arange(0, n, 2)
    X, peak = _traced_peak(lambda: src.read(0, m, rows))
    np.testing.assert_array_equal(X, G.T[rows])
    assert peak <= X.nbytes + src.read_overhead(m, True) + (1 << 20)
    assert src.read_overhead(m, True) == max(text, 8 * n * m)


def test_a_bimbam_file_shortened_during_the_run_is_named(tmp_path):
    rng = np.random.default_rng(6)
    G = np.round(rng.uniform(0, 2, (40, 20)), 3)
    path = tmp_path / "g.txt"
    _write_bimbam(path, G)
    src = lmmscan.read_bimbam(path)
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(lmmscan.InputError, match="shorter than when it was first read") as err:
        src.read(30, 40)
    assert str(path) in str(err.value)


def test_counting_a_chunks_tokens_takes_no_copy_of_it_in_int64():
    """The first pass over a BIMBAM file counted each line's tokens with an
    int64 sum that converted every byte of the 16 MiB chunk to int64 (a
    134 MB peak at n = 2,000, above the scan's plan)."""
    from lmmscan.textio import _tokens_per_line

    line = b"rs1, A, T, " + b", ".join([b"0.123", b"NA", b"2"] * 2000) + b"\n"
    chunk = line * 300
    counts, peak = _traced_peak(lambda: _tokens_per_line(chunk))
    assert counts.tolist() == [6003] * 300
    # 3.7 here (numpy's temporaries; the int64 sum alone was 8)
    assert peak <= 5 * len(chunk)


def test_a_kinship_of_every_sample_filters_its_block_without_a_copy():
    from lmmscan.kinship import KinshipAccumulator

    rng = np.random.default_rng(7)
    X = np.asfortranarray(np.round(rng.uniform(0, 2, (400, 300)), 2))  # as files give them
    acc = KinshipAccumulator(400)
    acc.add(X)  # the block's buffer for the kinship columns, kept
    _, peak = _traced_peak(lambda: acc.add(X))
    assert peak < 0.5 * X.nbytes
    assert acc.used == 600


def test_a_scattered_snp_list_reads_into_one_block():
    """Helper 55: --snps/--ksnps lists read each run of SNPs, copied the
    selected columns, joined them and reordered the join: about four blocks
    at once.  Now each run's SNPs go straight into the block returned, in the
    memory order the source's blocks had (the same values and order)."""
    from lmmscan.genotypes import _GATHER, SubsetGenotypes

    rng = np.random.default_rng(8)
    G = rng.uniform(0, 2, (200, 3000))
    index = np.sort(rng.choice(3000, 900, replace=False))
    for src in (lmmscan.ArrayGenotypes(G), _FortranSource(G)):
        sub = SubsetGenotypes(src, index)
        X, peak = _traced_peak(lambda sub=sub: sub.read(0, 900))
        np.testing.assert_array_equal(X, G[:, index])
        fortran = isinstance(src, _FortranSource)
        assert X.flags.f_contiguous == fortran and X.flags.c_contiguous != fortran
        assert peak <= X.nbytes + sub.read_overhead(900, False)
        assert sub.read_overhead(900, False) == 8 * 200 * 900 + _GATHER
        one = SubsetGenotypes(src, np.arange(100, 400))  # one run: the source's block
        np.testing.assert_array_equal(one.read(0, 300), G[:, 100:400])


class _FortranSource:
    """An array as a source whose blocks are column-major (as a file's)."""

    def __init__(self, G):
        self.G = G
        self.n_samples, self.n_snps = G.shape

    def read(self, start, stop, samples=None):
        X = self.G[:, start:stop] if samples is None else self.G[samples, start:stop]
        return np.asfortranarray(X)


def test_the_plan_counts_a_text_files_read(tmp_path, capsys):
    rng = np.random.default_rng(9)
    n, m = 200, 300
    _write_bimbam(tmp_path / "g.txt", np.round(rng.uniform(0, 2, (m, n)), 3))
    np.savetxt(tmp_path / "y.txt", rng.normal(size=n))
    argv = ["scan", "--bimbam-geno", tmp_path / "g.txt", "--pheno", tmp_path / "y.txt",
            "--out", tmp_path / "o", "--block-size", "100"]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    phases = json.loads((tmp_path / "o.null.json").read_text())["memory"]["phases"]
    want = lmmscan.read_bimbam(tmp_path / "g.txt").read_overhead(100, False)
    assert phases["scan"]["a block being read"] == want
    assert phases["kinship"]["a block being read"] == want
    plain = memory.scan_plan(
        n_file=n, analysed=[n], n_variants=m, block=100, kinship="given", driver="evr"
    )
    assert "a block being read" not in plain.phases["scan"]


def test_a_computed_kinships_freed_blocks_are_counted_beside_the_decomposition():
    """Helper 60: with a kinship computed, the pass's blocks are freed before
    the decomposition maps its workspace, and glibc keeps up to MALLOC_KEEP of
    them (the command's setting): 572 MiB against 471 planned at n = 4,000."""
    base = dict(n_file=4000, analysed=[4000], n_variants=20000, driver="evd")
    small = memory.scan_plan(**base, block=100, kinship="computed")
    large = memory.scan_plan(**base, block=2000, kinship="computed")
    item = "the kinship pass's blocks, freed and kept for reuse"
    assert small.phases["decomposition"][item] == memory.block_bytes(4000, 100)
    assert large.phases["decomposition"][item] == memory.MALLOC_KEEP
    given = memory.scan_plan(**base, block=2000, kinship="given")
    assert item not in given.phases["decomposition"]


@pytest.mark.parametrize("gz", [False, True])
def test_a_bimbam_file_whose_last_line_has_no_newline_is_read(tmp_path, gz):
    """Helper 62: the first pass gave the last line a newline the file does
    not have, and every read of the last SNP was refused as a file that had
    changed."""
    import gzip

    rng = np.random.default_rng(10)
    G = np.round(rng.uniform(0, 2, (7, 5)), 3)
    text = "\n".join(
        f"rs{j}, A, T, " + ", ".join(f"{v:.3f}" for v in row) for j, row in enumerate(G)
    )
    path = tmp_path / ("g.txt.gz" if gz else "g.txt")
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(text.encode())
    else:
        path.write_text(text)
    src = lmmscan.read_bimbam(path)
    np.testing.assert_array_equal(src.read(0, 7), G.T)
    np.testing.assert_array_equal(src.read(6, 7), G.T[:, 6:])


_FREED_HEAP = """
import numpy as np
from lmmscan import memory
from lmmscan.cli import keep_freed_blocks

def rss():
    return memory.current_rss() >> 20

if not keep_freed_blocks():
    raise SystemExit(3)
blocks = [np.ones(1 << 19) for _ in range(24)]  # 24 x 4 MiB from the heap
pin = np.ones(1 << 15)  # a live chunk above them: no trim at the top
before = rss()
del blocks
kept = rss()
memory.release_freed_heap()
print(before, kept, rss())
"""


def test_the_heap_freed_before_the_scan_is_returned_to_the_kernel():
    """Under the command's malloc settings (keep_freed_blocks), blocks freed
    below a live chunk stay resident: the kinship pass's and the
    decomposition's, 93-134 MiB above the plan through a scan of 2,000
    samples in blocks of 5,000 SNPs.  release_freed_heap returns them."""
    import os
    import subprocess
    import sys

    # (not the MALLOC_ variables of this process: a Dask test's set one)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.run(
        [sys.executable, "-c", _FREED_HEAP], capture_output=True, text=True, timeout=120, env=env
    )
    if proc.returncode == 3:
        pytest.skip("not glibc, or a MALLOC_ variable set: the command keeps no freed heap")
    assert proc.returncode == 0, proc.stderr
    before, kept, after = map(int, proc.stdout.split())
    # 126, 62 and 29 MiB here: glibc returned a part at the free, the rest
    # only at the trim
    assert kept - after > 24


def test_the_scan_returns_the_freed_heap_after_the_null_fits(tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "release_freed_heap", lambda: calls.append(1))
    argv = ["scan", "--bfile", DEMO, "--pheno", f"{DEMO}.pheno.txt", "--threads", "1",
            "--quiet", "--out", tmp_path / "o"]  # fmt: skip
    status, _, err = run(argv, capsys)
    assert status == 0, err
    assert calls == [1]
