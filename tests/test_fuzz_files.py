"""Fuzzing every file reader with mutated real files: each mutated input is
either read or refused with an lmmscan error (the command line's exit 2);
never another exception, a crash or a hang.  CI runs a bounded number of
examples; LMMSCAN_FUZZ_EXAMPLES runs more."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lmmscan
from lmmscan import bimbam, textio
from lmmscan._errors import LmmscanError

DATA = Path(lmmscan.__file__).parent / "data"
MOUSE = Path(__file__).parent / "data" / "mouse_hs1940"
EXAMPLES = int(os.environ.get("LMMSCAN_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def head(path: Path, lines: int) -> bytes:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        return b"".join(line for _, line in zip(range(lines), fh, strict=False))


@st.composite
def mutated(draw, original: bytes):
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "token", "line"]))
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(
                st.sampled_from(
                    [
                        b"NA",
                        b"\t",
                        b" ",
                        b"\n",
                        b"-9",
                        b"nan",
                        b"1e999",
                        b"x",
                        b",",
                        b"\x00",
                        b"\xff",
                    ]
                )
            )
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 20))]
        elif kind == "truncate":
            del data[pos:]
        elif kind == "token":
            data[pos : pos + 1] = draw(st.sampled_from([b"abc", b"-", b"1.5.2", b"inf", b""]))
        else:  # duplicate or drop a whole line
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, max(0, len(lines) - 1)))
            lines.insert(i, lines[i]) if draw(st.booleans()) else lines.pop(i)
            data = bytearray(b"\n".join(lines))
    return bytes(data)


def refused_or_read(fn) -> None:
    try:
        fn()
    except LmmscanError:
        pass


FAM = (DATA / "demo.fam").read_bytes()
BIM = (DATA / "demo.bim").read_bytes()
PHENO = (DATA / "demo.pheno.txt").read_bytes()
COVAR = (DATA / "demo.covar.txt").read_bytes()
GENO = head(MOUSE / "mouse_hs1940.geno.txt.gz", 30)
ANNO = head(MOUSE / "mouse_hs1940.anno.txt.gz", 30)
rng = np.random.default_rng(0)
_K = rng.normal(size=(12, 12))
KIN = textio.format_g10((_K + _K.T).ravel(), np.tile([b"\t"] * 11 + [b"\n"], 12))


@FUZZ
@given(
    fam=mutated(FAM),
    bim=mutated(BIM),
    which=st.sampled_from(["fam", "bim", "bed"]),
    cut=st.integers(0, 2000),
)
def test_plink_fileset(tmp_path_factory, fam, bim, which, cut):
    d = tmp_path_factory.mktemp("plink")
    shutil.copy(DATA / "demo.bed", d / "s.bed")
    (d / "s.fam").write_bytes(fam if which == "fam" else FAM)
    (d / "s.bim").write_bytes(bim if which == "bim" else BIM)
    if which == "bed":
        raw = (DATA / "demo.bed").read_bytes()
        (d / "s.bed").write_bytes(raw[: max(0, len(raw) - cut)] if cut else raw[:3] + raw[3:])

    def read():
        g = lmmscan.read_plink(d / "s")
        g.read(0, min(5, g.n_snps))

    refused_or_read(read)


@FUZZ
@given(pheno=mutated(PHENO), covar=mutated(COVAR))
def test_pheno_and_covar(tmp_path_factory, pheno, covar):
    d = tmp_path_factory.mktemp("pc")
    (d / "p.txt").write_bytes(pheno)
    (d / "c.txt").write_bytes(covar)
    refused_or_read(lambda: textio.read_pheno(d / "p.txt", [1], 400))
    refused_or_read(lambda: textio.read_covar(d / "c.txt", 400))


@FUZZ
@given(kin=mutated(KIN))
def test_kinship_text(tmp_path_factory, kin):
    d = tmp_path_factory.mktemp("k")
    (d / "k.txt").write_bytes(kin)
    refused_or_read(lambda: textio.read_kinship(d / "k.txt", 12))


@FUZZ
@given(geno=mutated(GENO), anno=mutated(ANNO), gz=st.booleans())
def test_bimbam(tmp_path_factory, geno, anno, gz):
    d = tmp_path_factory.mktemp("b")
    path = d / ("g.txt.gz" if gz else "g.txt")
    path.write_bytes(gzip.compress(geno) if gz else geno)
    (d / "a.txt").write_bytes(anno)

    def read():
        src = bimbam.read_bimbam(path, anno=d / "a.txt")
        src.read(0, src.n_snps)

    refused_or_read(read)


def test_fuzz_file_example_count():
    print(f"file-reader fuzzing: {EXAMPLES} examples per reader")
    assert EXAMPLES >= 1
