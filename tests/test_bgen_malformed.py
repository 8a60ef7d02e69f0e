"""A BGEN whose stored probabilities sum past the bit depth: the bgen package
warns on the root logger and goes on with an inferred negative or clamped
probability (the scan used the dosage, exit 0).  The read now refuses the
variant in one line, and the package's warning is not printed."""

from __future__ import annotations

import logging
import struct
import zlib

import numpy as np
import pytest

pytest.importorskip("bgen")

from lmmscan import InputError, read_bgen  # noqa: E402

CALLS = [[0, 1, 2, 1, 0, 2], [0, 1, 2, 2, 1, 0], [1, 1, 0, 2, 0, 1]]  # ALT counts


def _field(b: bytes) -> bytes:
    return struct.pack("<H", len(b)) + b


def write_bgen(path, bad_variant: int | None = None) -> None:
    """BGEN v1.2, layout 2, zlib, 8 bits, 6 diploid samples with embedded IDs;
    ``bad_variant`` stores P11 = P12 = 1 (a sum of 2) for its first sample."""
    ids = [b"a", b"b", b"c", b"d", b"e", b"f"]
    n = len(ids)
    body = b""
    for j, calls in enumerate(CALLS):
        probs = b""
        for i, x in enumerate(calls):
            p11, p12 = (255 if x == 0 else 0), (255 if x == 1 else 0)
            if j == bad_variant and i == 0:
                p11 = p12 = 255
            probs += bytes([p11, p12])
        block = struct.pack("<IHBB", n, 2, 2, 2) + bytes([2] * n) + bytes([0, 8]) + probs
        packed = zlib.compress(block)
        name = b"v%d" % j
        body += _field(name) + _field(name) + _field(b"1") + struct.pack("<IH", 100 * (j + 1), 2)
        body += struct.pack("<I", 1) + b"A" + struct.pack("<I", 1) + b"G"
        body += struct.pack("<II", len(packed) + 4, len(block)) + packed
    samples = b"".join(_field(i) for i in ids)
    samples = struct.pack("<II", 8 + len(samples), n) + samples
    flags = 1 | (2 << 2) | (1 << 31)  # zlib, layout 2, sample IDs
    header = struct.pack("<III", 20, len(CALLS), n) + b"bgen" + struct.pack("<I", flags)
    path.write_bytes(struct.pack("<I", len(header) + len(samples)) + header + samples + body)


def test_a_well_formed_file_reads_its_calls(tmp_path):
    path = tmp_path / "ok.bgen"
    write_bgen(path)
    np.testing.assert_array_equal(read_bgen(path).read(0, 3).T, CALLS)


def test_probabilities_past_the_bit_depth_are_refused(tmp_path, capsys):
    path = tmp_path / "bad.bgen"
    write_bgen(path, bad_variant=1)
    geno = read_bgen(path)
    np.testing.assert_array_equal(geno.read(0, 1).T, CALLS[:1])
    with pytest.raises(InputError, match=r"bad.bgen: variant 2 \(v1\) stores genotype "
                       "probabilities that sum to more than its bit depth allows"):  # fmt: skip
        geno.read(0, 3)
    assert "WARNING" not in capsys.readouterr().err
    assert not logging.getLogger().filters  # the filter is gone after the read


def test_two_readers_on_two_threads_each_judge_their_own_file(tmp_path, monkeypatch):
    """The filter is held on the root logger, which every thread shares: the
    first reader's filter took the second reader's warning (the valid file
    refused, the malformed one read)."""
    import threading

    from lmmscan import bgenfile

    write_bgen(tmp_path / "good.bgen")
    write_bgen(tmp_path / "bad.bgen", bad_variant=1)
    good, bad = read_bgen(tmp_path / "good.bgen"), read_bgen(tmp_path / "bad.bgen")
    inside, go_on = threading.Event(), threading.Event()
    moments = bgenfile.BgenGenotypes._moments_of

    def paused(v, rows, j, e, f):
        moments(v, rows, j, e, f)
        if threading.current_thread().name == "first" and j == 0:
            inside.set()  # mid-block, its filter on the root logger
            go_on.wait(30)

    monkeypatch.setattr(bgenfile.BgenGenotypes, "_moments_of", staticmethod(paused))
    result = {}

    def first():
        try:
            result["good"] = good.read(0, 3)
        except Exception as exc:  # noqa: BLE001 - reported below
            result["good"] = exc

    thread = threading.Thread(target=first, name="first")
    thread.start()
    assert inside.wait(30)
    try:
        with pytest.raises(InputError, match="bad.bgen: variant 2"):
            bad.read(0, 3)
    finally:
        go_on.set()
        thread.join(30)
    np.testing.assert_array_equal(result["good"].T, CALLS)


def write_layout1(path, bad: tuple[float, float, float] | None, n: int = 12, m: int = 5) -> None:
    """An uncompressed BGEN v1.1 (layout 1) file: each probability on 16 bits
    (x 32768), per sample; sample 2 of variant 3 stores ``bad``."""
    rng = np.random.default_rng(1)
    body = b""
    for j in range(m):
        probs = np.zeros((n, 3))
        probs[np.arange(n), rng.binomial(2, 0.3, n)] = 1.0
        if j == 2 and bad is not None:
            probs[1] = bad
        name = f"v{j}".encode()
        body += struct.pack("<I", n) + _field(name) + _field(name) + _field(b"1")
        body += struct.pack("<I", 100 * (j + 1)) + struct.pack("<I", 1) + b"A"
        body += struct.pack("<I", 1) + b"G" + np.round(probs * 32768).astype("<u2").tobytes()
    header = struct.pack("<III", 20, m, n) + b"bgen" + struct.pack("<I", 1 << 2)
    path.write_bytes(struct.pack("<I", len(header)) + header + body)
    (path.parent / "s.sample").write_text(
        "ID_1 ID_2 missing\n0 0 0\n" + "".join(f"s{i} s{i} 0\n" for i in range(n))
    )


@pytest.mark.parametrize("bad", [(1.99, 1.99, 1.99), (0.0, 1.9, 0.0), (0.5, 0.5, 0.5)])
def test_layout1_probabilities_out_of_range_are_refused(tmp_path, bad):
    """Mutation fuzzing (helper 43): a v1.1 file stores each probability on
    its own, and the package infers the dosage as if they summed to 1:
    (1.99, 1.99, 1.99) was read as dosage -3.97 and (0, 1.9, 0) as 0.1,
    tested with exit 0."""
    write_layout1(tmp_path / "ok.bgen", None)
    G = read_bgen(tmp_path / "ok.bgen", tmp_path / "s.sample").read(0, 5)
    assert set(np.unique(G)) <= {0.0, 1.0, 2.0}
    write_layout1(tmp_path / "rounded.bgen", (0.334, 0.334, 0.334))  # 3 decimals, 1/32768ths
    assert read_bgen(tmp_path / "rounded.bgen", tmp_path / "s.sample").read(2, 3)[1, 0] > 0.99
    write_layout1(tmp_path / "bad.bgen", bad)
    src = read_bgen(tmp_path / "bad.bgen", tmp_path / "s.sample")
    src.read(0, 2)
    with pytest.raises(InputError, match=r"bad.bgen: variant 3 \(v2\): the genotype probabilities "
                       r"of sample 's1' are .*; they run from 0 to 1 and sum to 1"):  # fmt: skip
        src.read(2, 3)


@pytest.mark.parametrize(
    "stored, dosage",
    [((0.8, 0.0, 0.0), 0.0), ((0.0, 0.9, 0.0), 1.0), ((0.6, 0.3, 0.0), 1 / 3),
     ((0.0, 0.0, 0.8), 2.0), ((0.0, 0.0, 0.0), np.nan)],
)  # fmt: skip
def test_layout1_probabilities_summing_below_1_are_divided_by_their_sum(tmp_path, stored, dosage):
    """Helper 52: the package's dosage of a v1.1 file ignores the stored
    P(22) and gives what the others leave to it: (0.8, 0, 0) was read as 0.4
    and (0, 0.9, 0) as 1.1, where plink2 reads 0 and 1 (the --info path
    used the stored values).  All three 0 is missing."""
    from lmmscan.bgenfile import impute_info

    write_layout1(tmp_path / "low.bgen", stored)
    src = read_bgen(tmp_path / "low.bgen", tmp_path / "s.sample")
    x = src.read(2, 3)[:, 0]
    np.testing.assert_allclose(x[1], dosage, rtol=1e-4)  # 1/32768ths
    # the --info path reads the same probabilities, divided by their sums: the
    # other samples are certain calls, sample 1 stores ``stored``
    P = np.zeros((12, 3))
    calls = np.flatnonzero(np.arange(12) != 1)
    P[calls, x[calls].astype(int)] = 1.0
    P[1] = np.round(np.array(stored) * 32768) / 32768
    with np.errstate(invalid="ignore"):
        e = (P[:, 1] + 2 * P[:, 2]) / P.sum(axis=1)
        f = (P[:, 1] + 4 * P[:, 2]) / P.sum(axis=1)
    np.testing.assert_allclose(src.info(2, 3), impute_info(e[:, None], f[:, None]), rtol=1e-12)


@pytest.mark.parametrize(
    "text",
    [
        "ID_1 ID_2 missing\n0 0 0\na a 0\nb b 0\n",
        "ID_1 ID_2 missing sex y z y\n0 0 0 D P C P\nf1 a 0 1 1.5 2 NA\nf2 b 0.1 2 -9 3 4\n",
        "ID_1\tID_2  missing\tq\n0 0 0 B\na\ta 0 1\n",
        "ID_1 ID_2 missing\n0 0 0\n",
    ],
)
def test_a_plain_sample_file_is_read_as_pandas_reads_it(tmp_path, text):
    """The core splits a plain .sample file (pandas' import was 30 MiB a BGEN
    scan's memory plan did not count); pandas reads the others."""
    from lmmscan.bgenfile import _sample_columns
    from lmmscan.variants import text_columns

    path = tmp_path / "s.sample"
    path.write_text(text)
    raw = path.read_bytes()
    columns = text_columns(raw, 1, first_line=True)
    plain = None if columns is None else [c.tolist() for c in columns]
    general = _sample_columns(path, raw)
    assert plain is not None
    assert [c[1:] for c in plain] == [c[1:] for c in general]  # (pandas renames a repeated name)
    assert [c[0] for c in plain[:3]] == [c[0] for c in general[:3]]


def test_a_bgen_scan_does_not_load_pandas(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    write_bgen(tmp_path / "ok.bgen")
    (tmp_path / "s.sample").write_text("ID_1 ID_2 missing\n0 0 0\n" + "".join(
        f"{i} {i} 0\n" for i in "abcdef"
    ))  # fmt: skip
    code = (
        "import sys; from lmmscan import read_bgen; "
        f"g = read_bgen({str(tmp_path / 'ok.bgen')!r}, {str(tmp_path / 's.sample')!r}); "
        "g.read(0, 3); print(g.n_samples, 'pandas' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["6", "False"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ID_1 ID_2 missing\r\n0 0 0\r\na a 0\r\nb b 0\r\n", ["a", "b"]),  # not plain
        ("ID_1 ID_2 missing\n0 0 0\na a 0\nb b 0\n", ["a", "b"]),
        ("ID_1 ID_2 missing\n0 0 0\na a 0\nb b\n", "line 4: 2 fields where line 1 has 3"),
    ],
)
def test_a_sample_file_from_a_pipe_is_read_once(tmp_path, text, expected):
    """A .sample file that is no plain text went to pandas, which opened the
    path again: a pipe's (--sample <(...)) was then empty (helper 64)."""
    from lmmscan.bgenfile import read_sample_file

    from .test_inputs_robust import fifo_with_writer, read_from

    fifo = tmp_path / "s.sample"
    writer, holder = fifo_with_writer(fifo, text.encode())
    if isinstance(expected, list):
        assert read_from(read_sample_file, fifo, writer, holder).iid == expected
    else:
        with pytest.raises(InputError, match=expected):
            read_from(read_sample_file, fifo, writer, holder)
