"""The API used re-entrantly: after a Ctrl-C, in a forked child, through
cloudpickle (joblib's loky, Dask).  Found by a concurrency run of the API
(helper 53); each test fails without its fix."""

from __future__ import annotations

import multiprocessing
import pickle
import signal
from pathlib import Path

import numpy as np
import pytest

import lmmscan
from lmmscan import _threads
from lmmscan.demo import copy_study

DOSAGE = Path(__file__).parent / "data" / "dosage"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return copy_study(tmp_path_factory.mktemp("demo"))


def _child_scan(prefix: str, out) -> None:
    geno = lmmscan.read_plink(prefix)
    y = np.genfromtxt(prefix + ".pheno.txt")[:, 0]
    table = lmmscan.scan(geno, y, kinship="centered", threads=2)
    out.put(float(table.p_wald.iloc[0]))


def test_a_forked_child_scans_after_its_parent_did(demo):
    """The helper thread pool is kept for the process; a child forked after a
    scan inherited it without its threads and waited for ever (a
    multiprocessing pool after a scan in a notebook)."""
    geno = lmmscan.read_plink(demo)
    y = np.genfromtxt(f"{demo}.pheno.txt")[:, 0]
    want = float(lmmscan.scan(geno, y, kinship="centered", threads=2).p_wald.iloc[0])
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child_scan, args=(str(demo), out))
    child.start()
    child.join(120)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child's scan hung")
    assert child.exitcode == 0
    assert out.get(timeout=10) == pytest.approx(want, rel=1e-9)


def test_the_package_pickles_by_name():
    """lmmscan is a ModuleType subclass: cloudpickle (joblib's loky, Dask),
    pickling a notebook function that uses it, refused it ("cannot pickle
    '_Package' object")."""
    assert pickle.loads(pickle.dumps(lmmscan)) is lmmscan
    cloudpickle = pytest.importorskip("cloudpickle")

    def uses_the_package() -> str:
        return lmmscan.__name__

    assert cloudpickle.loads(cloudpickle.dumps(uses_the_package))() == "lmmscan"


def test_a_thread_count_step_finishes_before_a_ctrl_c_lands():
    """A Ctrl-C inside threadpoolctl's library walk (setting or restoring
    BLAS's threads) left a limit in force for the rest of the process: the
    step now runs to its end, once, and the interrupt follows."""
    ran = []

    def step() -> None:
        signal.raise_signal(signal.SIGINT)  # arrives while the step runs
        ran.append(1)

    with pytest.raises(KeyboardInterrupt):
        _threads._uninterrupted(step)
    assert ran == [1]
    before = _threads.blas_counts()
    with pytest.raises(KeyboardInterrupt):
        with _threads.blas_threads(1):
            raise KeyboardInterrupt
    assert _threads.blas_counts() == before and not _threads._BLAS_ACTIVE


def test_two_overlapping_library_limits_put_the_first_count_back():
    """library_threads restored the count it found: two LOCO scans on two
    threads, overlapping, left scipy's BLAS on one thread for good."""
    path = next(iter(_threads.blas_counts()))
    before = _threads.blas_counts()[path]
    first = _threads.library_threads(path, 1)
    second = _threads.library_threads(path, 1)
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first out: the second still holds it
    assert _threads.blas_counts()[path] == 1
    second.__exit__(None, None, None)
    assert _threads.blas_counts()[path] == before


class _InterruptedOnce:
    """A cyvcf2 reader whose k-th record is read and then interrupted, as a
    Ctrl-C between next(reader) and the reader's count lands."""

    def __init__(self, reader, k: int) -> None:
        self.reader, self.k = reader, k

    def __getattr__(self, name):
        return getattr(self.reader, name)

    def __iter__(self):
        return self

    def __next__(self):
        rec = next(self.reader)
        self.k -= 1
        if self.k == 0:
            raise KeyboardInterrupt
        return rec


def test_a_vcf_read_after_a_ctrl_c_reads_the_right_variants(monkeypatch):
    """The count of records read fell one behind the reader: the next read
    returned each variant's successor, exit 0."""
    from lmmscan import vcf

    geno = lmmscan.read_vcf(DOSAGE / "study.vcf.gz")
    rows = np.arange(0, 400, 3)
    want = geno.read(0, 40, rows)
    fresh = lmmscan.read_vcf(DOSAGE / "study.vcf.gz")
    real = vcf.VcfGenotypes._seek

    def seek_then_interrupt(self, target, rows):
        reader = real(self, target, rows)
        self._reader = _InterruptedOnce(reader, 5)
        monkeypatch.setattr(vcf.VcfGenotypes, "_seek", real)
        return self._reader

    monkeypatch.setattr(vcf.VcfGenotypes, "_seek", seek_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        fresh.read(0, 20, rows)
    np.testing.assert_array_equal(fresh.read(20, 40, rows), want[:, 20:40])


def test_a_bimbam_read_after_a_ctrl_c_reads_the_right_bytes(tmp_path):
    """A read cut short inside gzip left the stream and the reader's offset
    apart: the next read blamed a good file ("genotype 'C0' is not a
    number")."""
    import gzip

    G = np.random.default_rng(1).integers(0, 3, size=(30, 12)).astype(float)
    text = "".join(
        f"rs{j},A,C," + ",".join(f"{v:g}" for v in G[j]) + "\n" for j in range(G.shape[0])
    )
    path = tmp_path / "g.txt.gz"
    path.write_bytes(gzip.compress(text.encode()))
    geno = lmmscan.read_bimbam(path)
    geno.read(0, 10)  # the stream open, positioned after SNP 10
    fh = geno._fh
    real = fh.read

    def read_then_interrupt(size=-1):
        real(size)  # the stream moves on ...
        raise KeyboardInterrupt  # ... and the reader's offset does not

    fh.read = read_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        geno.read(10, 20)
    # a stream whose state the interrupt may have left half way (inside gzip's
    # decompression, which this cannot reach) is dropped, to be reopened
    assert geno._fh is None
    np.testing.assert_array_equal(geno.read(10, 30), G[10:30].T)


def test_signal_handlers_are_left_as_they_were(monkeypatch):
    """Review (helper 57): the hold was put in place even for a handler that
    is not a Python function: SIG_DFL (a SIGTERM landing then was swallowed)
    or a host program's, which an embedded interpreter sees as None
    (signal.signal(sig, None) then raised TypeError in every blas_threads
    block).  Such handlers are never replaced."""
    import _signal

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    real_get, real_set = _signal.getsignal, _signal.signal
    replaced = []

    def get(sig):  # SIGINT owned by a host program; SIGTERM at its default
        return None if sig == signal.SIGINT else signal.SIG_DFL

    def set_(sig, handler):
        replaced.append(sig)
        return real_set(sig, handler)

    monkeypatch.setattr(_signal, "getsignal", get)
    monkeypatch.setattr(_signal, "signal", set_)
    _threads._uninterrupted(lambda: None)
    monkeypatch.setattr(_signal, "getsignal", real_get)
    monkeypatch.setattr(_signal, "signal", real_set)
    assert replaced == []
    with _threads.blas_threads(1):
        pass
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_a_step_runs_whatever_a_signal_handler_raises_before_it(monkeypatch):
    """Review (helper 58): a SIGTERM handler raising SystemExit as the hold
    was put in place skipped the restore (only KeyboardInterrupt re-ran the
    step): BLAS stayed capped for good."""
    import contextlib

    @contextlib.contextmanager
    def exits_first():
        raise SystemExit(143)
        yield  # pragma: no cover

    monkeypatch.setattr(_threads, "deferred_interrupts", exits_first)
    ran = []
    with pytest.raises(SystemExit):
        _threads._uninterrupted(lambda: ran.append(1))
    assert ran == [1]


def _child_reads(source, out) -> None:
    """Every block of ``source`` read in this (forked) process: a digest."""
    blocks = [
        source.read(start, min(start + 40, source.n_snps)) for start in range(0, source.n_snps, 40)
    ]
    out.put(float(np.nansum(np.concatenate(blocks, axis=1) * np.arange(1, source.n_snps + 1))))


@pytest.mark.parametrize("fmt", ["bed", "pgen", "bgen", "vcf", "bimbam"])
def test_forked_children_read_a_source_their_parent_opened(demo, fmt):
    """A reader the parent had opened (pgenlib's for a .bed or a .pgen, the
    bgen package's) was inherited by forked children with its file offset,
    which they then moved under each other: "read_dosages_range() error 4",
    and some children's tables took other SNPs' genotypes, exit 0 (helper
    70).  A child now opens its own; cyvcf2's and a BIMBAM file's handles,
    which happened to survive this, get the same check."""
    opened = {
        "bed": lambda: lmmscan.read_plink(demo),
        "pgen": lambda: lmmscan.read_pgen(DOSAGE / "study"),
        "bgen": lambda: lmmscan.read_bgen(DOSAGE / "study.bgen", DOSAGE / "study.sample"),
        "vcf": lambda: lmmscan.read_vcf(DOSAGE / "study.vcf.gz"),
        "bimbam": lambda: lmmscan.read_bimbam(DOSAGE / "study.geno.txt.gz"),
    }
    source = opened[fmt]()
    source.read(0, 3)  # the parent's reader open, and not at the start
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    children = [ctx.Process(target=_child_reads, args=(source, out)) for _ in range(3)]
    for child in children:
        child.start()
    got = [out.get(timeout=120) for _ in children]
    for child in children:
        child.join(60)
    want = ctx.Queue()
    _child_reads(source, want)  # the parent's own reader, after the children's reads
    assert got == [want.get(timeout=10)] * 3


def test_ctrl_c_stops_a_long_block_of_tests_at_once():
    """The core tested a block with the main thread inside it, where Python
    cannot run a signal's handler: Ctrl-C waited for the block's end (55 s
    with 150 covariates, helper 68).  It now asks every 50 ms, and the
    KeyboardInterrupt comes at once; the next scan runs as before."""
    import os
    import threading
    import time

    rng = np.random.default_rng(5)
    n, c = 300, 150
    G = rng.integers(0, 3, size=(n, 4000)).astype(float)
    W = np.column_stack([np.ones(n), rng.standard_normal((n, c))])
    y = rng.standard_normal(n)
    Z = rng.standard_normal((n, 200))
    null = lmmscan.fit_null(y, W, kinship=Z @ Z.T / 200)
    sent: list[float] = []

    def interrupt() -> None:
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Timer(1.0, interrupt)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        lmmscan.scan(G, null_model=null, test="wald", threads=1, block_size=4000)
    assert time.monotonic() - sent[0] < 1.0, "Ctrl-C waited for the block's tests"
    small = lmmscan.scan(G[:, :50], null_model=null, test="wald", threads=1)
    assert len(small) == 50
