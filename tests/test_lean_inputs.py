"""The command line's PLINK path without pandas and scipy.linalg: the same
values and messages as the pandas readers and scipy's eigh they stand in for.

A plain .fam is split by the core, plain phenotype tokens are parsed by
float(), the kinship is decomposed by scipy's own LAPACK through ctypes, and
scipy.special is imported on a thread beside the decomposition.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lmmscan import pgen, plink
from lmmscan._errors import InputError
from lmmscan.genotypes import check_unique_ids
from lmmscan.textio import BadToken, parse_phenotype

from .conftest import copy_converted


def _pandas_phenotype(tokens: list[str], minus9_missing: bool) -> np.ndarray:
    """parse_phenotype as it was: pandas' to_numeric for every token."""
    s = pd.Series(np.asarray(tokens, dtype=object))
    na = (s == "NA").to_numpy()
    values = np.array(pd.to_numeric(s.mask(na), errors="coerce"), dtype=np.float64)
    for i in np.flatnonzero(np.isnan(values) & ~na):
        if str(s.iloc[i]).lower() not in ("nan", "+nan", "-nan"):
            raise BadToken(int(i), str(s.iloc[i]))
    if minus9_missing:
        values[values == -9] = np.nan
    return values


def _tokens(seed: int, n: int, plus: bool) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 22)))
        k = rng.randint(0, len(digits))
        tok = digits[:k] + "." + digits[k:] if rng.random() < 0.7 else digits
        if rng.random() < 0.3:
            tok += rng.choice("eE") + rng.choice(["", "+", "-"]) + str(rng.randint(0, 330))
        if rng.random() < 0.3:
            tok = rng.choice("+-" if plus else "-") + tok
        out.append(tok)
    return out + ["NA", "-9", "-9.0", "-0", "1e400", "-1e400", "1e-400", ".5", "5.", "0012"]


@pytest.mark.parametrize("plus", [False, True])
def test_phenotype_tokens_parse_as_pandas_parses_them(plus):
    """float() on plain decimals, pandas for the rest ("+" signs among them:
    to_numeric rounds some of those differently): the same doubles, bit for bit."""
    tokens = _tokens(5 if plus else 4, 20_000, plus)
    for minus9 in (True, False):
        got = parse_phenotype(tokens, minus9_missing=minus9)
        want = _pandas_phenotype(tokens, minus9)
        assert np.array_equal(got.view(np.int64), want.view(np.int64))


@pytest.mark.parametrize(
    "token", ["abc", "1,5", "1_0", "0x10", " 1", "--1", "1e", "", "nan", "-NaN", "inf", "+5"]
)
def test_other_tokens_are_read_or_refused_as_before(token):
    def outcome(fn):
        try:
            return "ok", fn(["1", token, "2"], minus9_missing=True).view(np.int64).tolist()
        except BadToken as exc:
            return "bad", exc.index, exc.token

    assert outcome(parse_phenotype) == outcome(_pandas_phenotype)


def _outcome(fn):
    """What a reader gives: its value, or the message of its InputError."""
    try:
        return "ok", fn()
    except InputError as exc:
        return "error", str(exc)


FAM = "f1 i1 0 0 1 1.5\nf1 i2 0 0 2 -9\nf2 i3 p m 1 NA\n"


@pytest.mark.parametrize(
    "text",
    [
        FAM,
        FAM.replace("\n", " 7 x\n"),  # more columns, every line alike
        FAM.replace(" ", "\t"),
        FAM + "f3 i4 0 0 1\n",  # a short line
        FAM + "f3 i4 0 0 1 2 3\n",  # a long line
        FAM.replace("\n", "\r\n"),
        FAM.replace("i2", "i\u00e92"),
        FAM.replace("i2", '"i 2"'),
        FAM + "\nf3 i4 0 0 1 2\n",  # a blank line
        "f1 i1 0 0 1\n",  # five columns
        "",
    ],
)
def test_fam_fields_are_pandas_fields(tmp_path, text):
    path = tmp_path / "s.fam"
    path.write_bytes(text.encode())

    def with_pandas():
        table = plink._read_table(path, 6, ".fam")
        return [table[c].tolist() for c in table.columns]

    assert _outcome(lambda: plink._read_fam(path)) == _outcome(with_pandas)


def test_duplicated_individuals_are_named_as_before():
    fid = ["a", "b", "c", "b", "c", "a"]
    iid = ["1", "2", "3", "2", "3", "9"]
    with pytest.raises(InputError, match=r"x.fam, line 4: individual 'b' '2' is on lines 2 and 4"):
        check_unique_ids(fid, iid, "x.fam")
    check_unique_ids(["a", "a"], ["1", "2"], "x.fam")
    # a .psam's first sample is on line 2 (after its header)
    with pytest.raises(InputError, match=r"s.psam, line 5: .* is on lines 3 and 5 \(sample IDs"):
        check_unique_ids(fid, iid, "s.psam", first_line=2, ids="sample IDs")


PSAM = "#FID\tIID\tSEX\tPHENO1\tPHENO2\nf1\ti1\t1\t1.5\tNA\nf1\ti2\t2\t-9\t3\nf2\ti3\tNA\tx\t4\n"


def _psam_with_pandas(path):
    """read_psam as it was: pandas' read_csv of every .psam."""
    text = pgen._read_psam_table(path)
    return [list(text.fid), list(text.iid), [list(c) for c in text.pheno], text.first_line]


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        (PSAM, True),
        ("##comment\n##another\n" + PSAM, True),
        (PSAM.replace("#FID\tIID", "#IID\tFID"), True),  # the columns in another order
        (  # no FID: the IID stands for it
            "\n".join(line.split("\t", 1)[1] for line in PSAM.splitlines()).replace("IID", "#IID")
            + "\n",
            True,
        ),
        (
            PSAM.replace("SEX", "SID\tPAT\tMAT\tSEX")
            .replace("\t1\t", "\ts\t0\t0\t1\t")
            .replace("\t2\t", "\ts\t0\t0\t2\t")
            .replace("\tNA\tx", "\ts\tp\tm\tNA\tx"),
            True,
        ),
        (PSAM[:-1], True),  # no newline at the end
        (PSAM + "f1\ti2\t1\t2\t3\n", True),  # a sample twice
        (PSAM.replace("\n", "\r\n"), False),
        (PSAM.replace("i2", "i 2"), False),  # a space: inside one field to read_csv
        (PSAM.replace("\t-9", "\t\t-9"), False),  # an empty field
        (PSAM.replace("i2", '"i2"'), False),
        (PSAM.replace("i2", "i\u00e92"), False),
        (PSAM + "f3\ti4\t1\n", False),  # a short line
        (PSAM + "f3\ti4\t1\t2\t3\t4\n", False),  # a long line
        (PSAM.split("\n", 1)[0] + "\n", False),  # a header only
        ("#FID\tID\tSEX\nf1\ti1\t1\n", False),  # no IID column
        (PSAM.replace("PHENO2", "PHENO1"), False),  # a column name twice
        ("f1 i1 0 0 1 1.5\nf1 i2 0 0 2 -9\n", False),  # no header: a .fam
    ],
)
def test_psam_fields_are_pandas_fields(tmp_path, text, plain):
    """A plain .psam split by the core gives read_csv's tokens, and every
    other .psam still goes to read_csv: the same samples, phenotype tokens
    and messages either way."""
    path = tmp_path / "s.psam"
    path.write_bytes(text.encode())

    def with_core():
        text = pgen.read_psam(path)
        return [list(text.fid), list(text.iid), [list(c) for c in text.pheno], text.first_line]

    def with_pandas():
        got = _psam_with_pandas(path)
        check_unique_ids(got[0], got[1], str(path), first_line=got[3], ids="sample IDs")
        return got

    assert _outcome(with_core) == _outcome(with_pandas)
    assert (pgen._read_psam_plain(path) is not None) == plain


def test_decomposition_is_scipys_eigh_bit_for_bit():
    """The ctypes call of scipy's own LAPACK against scipy.linalg.eigh, one
    BLAS thread each (the same routine, arguments and library)."""
    import scipy.linalg

    from lmmscan._threads import blas_threads
    from lmmscan.spectral import EIGEN_ZERO, Spectral, eigh_driver

    rng = np.random.default_rng(7)
    Z = rng.normal(size=(300, 500))
    K = Z @ Z.T / 500
    for driver in ("evd", "evr"):
        with blas_threads(1), eigh_driver(driver):
            got = Spectral.from_kinship(K.copy())
            d, U = scipy.linalg.eigh(K.copy(), driver=driver, check_finite=False)
        assert np.array_equal(got.U, U)
        assert np.array_equal(got.d, np.where(d < EIGEN_ZERO, 0.0, d))


def test_the_plink_command_imports_neither_pandas_nor_scipy_linalg(tmp_path):
    """Guards the start-up: pandas (~0.13 s) and scipy.linalg are not loaded
    by a PLINK scan with a kinship given, and scipy.special only on the
    engine's thread."""
    from lmmscan import _lapack64

    if not _lapack64._scipy_wheel_openblas():
        pytest.skip("scipy is not PyPI's wheel: its OpenBLAS is found by importing it")
    from lmmscan.cli import main
    from lmmscan.demo import copy_study

    prefix = copy_study(tmp_path / "demo")
    kin = tmp_path / "k.cXX.txt"
    pheno, covar = ["--pheno", f"{prefix}.pheno.txt"], ["--covar", f"{prefix}.covar.txt"]
    argv = ["kinship", "--bfile", str(prefix), *pheno, *covar, "--out", str(kin), "--quiet"]
    assert main(argv) == 0
    extra = [*pheno, "--pheno-col", "1,2", *covar]
    code = (
        "import sys, json; from lmmscan.cli import main; "
        f"s = main(['scan', '--bfile', {str(prefix)!r}, '--kinship', {str(kin)!r}, *{extra!r}, "
        f"'--test', 'all', '--out', {str(tmp_path / 'o')!r}, '--quiet']); "
        "print(json.dumps([s, 'pandas' in sys.modules, 'scipy.linalg' in sys.modules, "
        "'scipy.special' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    status, pandas, linalg, special = json.loads(out.stdout.strip().splitlines()[-1])
    assert status == 0 and not pandas and not linalg and special


def test_the_pfile_command_imports_no_pandas(tmp_path):
    """The same guard for a PLINK 2 fileset (plain .pvar and .psam), its
    kinship computed: pandas (~0.15-0.27 s of imports) is not loaded."""
    pytest.importorskip("pgenlib")
    conv = copy_converted(tmp_path)
    code = (
        "import sys, json; from lmmscan.cli import main; "
        f"s = main(['scan', '--pfile', {str(conv / 'mouse2k')!r}, '--test', 'wald', "
        f"'--out', {str(tmp_path / 'o')!r}, '--quiet']); "
        "print(json.dumps([s, 'pandas' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    status, pandas = json.loads(out.stdout.strip().splitlines()[-1])
    assert status == 0 and not pandas


def test_kinship_sums_are_scipys_dsyrk_bit_for_bit():
    """The kinship sums' syrk through ctypes against scipy.linalg.blas.dsyrk
    (the same routine, arguments and library), at one BLAS thread and at the
    default: upper and lower triangles, accumulated over two blocks."""
    from scipy.linalg.blas import dsyrk

    from lmmscan import _lapack64
    from lmmscan._threads import blas_threads
    from lmmscan.spectral import syrk_update

    if _lapack64.scipy_library() is None:
        pytest.skip("scipy's OpenBLAS not found")
    rng = np.random.default_rng(11)
    Z1, Z2 = rng.normal(size=(257, 300)), rng.normal(size=(257, 41))
    for threads in (1, None):
        for lower in (False, True):
            with blas_threads(threads):
                got = np.zeros((257, 257), order="F")
                want = np.zeros((257, 257), order="F")
                for Z in (Z1, Z2):
                    got = syrk_update(got, Z, lower=lower)
                    want = dsyrk(1.0, np.asfortranarray(Z), beta=1.0, c=want, trans=0,
                                 lower=int(lower), overwrite_c=1)  # fmt: skip
            assert np.array_equal(got, want)


def test_loco_and_kinship_commands_do_not_import_scipy_linalg(tmp_path):
    """The kinship sums call scipy's dsyrk without scipy.linalg, so neither
    the kinship command nor a LOCO scan loads it (LOCO imports scipy.special
    beside its kinship pass)."""
    from lmmscan import _lapack64

    if not _lapack64._scipy_wheel_openblas():
        pytest.skip("scipy is not PyPI's wheel: its OpenBLAS is found by importing it")
    from lmmscan.demo import copy_study

    prefix = copy_study(tmp_path / "demo")
    pheno = ["--pheno", f"{prefix}.pheno.txt"]
    runs = {
        "kinship": ["kinship", "--bfile", str(prefix), *pheno, "--out", str(tmp_path / "k.txt")],
        "loco": ["scan", "--bfile", str(prefix), *pheno, "--loco", "--out", str(tmp_path / "l")],
    }
    for name, argv in runs.items():
        code = (
            "import sys, json; from lmmscan.cli import main; "
            f"s = main({[*argv, '--quiet']!r}); "
            "print(json.dumps([s, 'scipy.linalg' in sys.modules, 'scipy.special' in sys.modules]))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        status, linalg, special = json.loads(out.stdout.strip().splitlines()[-1])
        assert status == 0 and not linalg, name
        assert special == (name == "loco"), name


def test_threads_cap_scipys_library_loaded_without_scipy():
    """--threads N caps scipy's OpenBLAS too, though nothing imported scipy yet."""
    from lmmscan import _lapack64

    if not _lapack64._scipy_wheel_openblas():
        pytest.skip("scipy is not PyPI's wheel: its OpenBLAS is found by importing it")
    code = (
        "import json; from threadpoolctl import threadpool_info; "
        "from lmmscan.cli.common import run_threads\n"
        "with run_threads(1):\n"
        "    info = [(i['filepath'], i['num_threads']) for i in threadpool_info() "
        "if i['internal_api'] == 'openblas']\n"
        "print(json.dumps(info))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    scipys = [t for path, t in info if "scipy_openblas-" in path or "scipy_openblas." in path]
    assert scipys and all(t == 1 for _, t in info)


def test_serial_library_caps_scipys_openblas():
    """LOCO's one-thread decompositions select scipy's library by its path,
    which must be the resolved one threadpoolctl records (a venv reached
    through a symlink once left the cap on no library)."""
    import os

    from threadpoolctl import threadpool_info

    from lmmscan import _lapack64
    from lmmscan.spectral import serial_library

    lib = _lapack64.scipy_library()
    if lib is None:
        pytest.skip("scipy's OpenBLAS not found")
    assert lib.path == os.path.realpath(lib.path)
    with serial_library():
        threads = [i["num_threads"] for i in threadpool_info() if i["filepath"] == lib.path]
    assert threads == [1]


def test_a_blas_limit_leaves_a_serial_library_serial():
    """LOCO with --threads 2: each null fit's blas_threads(1), on leaving, set
    every BLAS library back to the run's 2, scipy's too while serial_library
    held it at 1 for the decompositions beside: they ran on two threads each
    (15.8 s of CPU against 11.1)."""
    import os

    from threadpoolctl import threadpool_info

    from lmmscan import _lapack64
    from lmmscan._threads import blas_threads
    from lmmscan.spectral import serial_library

    lib = _lapack64.scipy_library()
    if lib is None:
        pytest.skip("scipy's OpenBLAS not found")

    def scipy_threads():
        return [i["num_threads"] for i in threadpool_info() if i["filepath"] == lib.path]

    with blas_threads(2), serial_library():
        with blas_threads(1):
            pass
        assert scipy_threads() == [1]
    assert scipy_threads() != [1] or len(os.sched_getaffinity(0)) == 1
