"""The fast text paths against their slow references: %.10g cells, threaded
kinship writing, the core's number parser, chunked kinship reading, the
symmetry check, lazy imports."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmmscan import InputError, textio
from lmmscan.textio import _format_g10_python, format_g10, read_kinship, write_kinship_text


def tricky_values(rng: np.random.Generator) -> np.ndarray:
    """Values where %.10g is easy to get wrong: ties, powers of ten, trailing
    zeros (in the first and last five digits), every prefix length, e-notation."""
    n = 20000
    digits = rng.integers(1, 11, n)
    exps = rng.integers(-6, 2, n)
    short = np.floor(rng.random(n) * 10.0**digits) / 10.0**digits * 10.0**exps
    ties = (rng.integers(10**9, 10**10, n) + 0.5) / 10.0 ** rng.integers(10, 15, n)
    five_zeros = rng.integers(10**4, 10**5, n) * 1e5 / 10.0 ** rng.integers(10, 15, n)
    powers = 10.0 ** rng.integers(-8, 3, 2000)
    x = np.concatenate(
        [
            rng.standard_normal(n) * 0.02,
            rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n),
            short,
            ties,
            five_zeros,
            powers,
            [0.0, -0.0, 1.0, -1.0, 1e-4, -1e-4, 9.99999999995e-5, -9.99999999995e-5],
            [0.99999999995, -0.99999999995, 0.099999999995, 0.0001000000000499],
            [np.nan, -np.nan, np.inf, -np.inf, 5e-324, -5e-324, 1.7e308, -1.7e308],
        ]
    )
    x = np.concatenate([x, -x])
    return np.concatenate([x, np.nextafter(x, np.inf), np.nextafter(x, -np.inf)])


@pytest.mark.parametrize("seed", [0, 1])
def test_format_g10_tricky_values_and_separators(seed):
    rng = np.random.default_rng(seed)
    x = tricky_values(rng)
    choices = np.array([b"\t", b"\n", b" ", b","], dtype="S1")
    seps = rng.choice(choices, x.size, p=[0.7, 0.1, 0.1, 0.1])
    assert format_g10(x, seps) == _format_g10_python(x, seps)
    # one value at a time: no state carried between neighbours
    for i in range(0, x.size, max(1, x.size // 500)):
        assert format_g10(x[i : i + 1], seps[i : i + 1]) == _format_g10_python(
            x[i : i + 1], seps[i : i + 1]
        )


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("chunk_values", [1, 7, 1000, 1 << 16])
def test_write_kinship_text_threads_and_blocks(threads, chunk_values):
    rng = np.random.default_rng(7)
    A = rng.standard_normal((23, 23)) * 0.02
    K = A + A.T
    K[np.diag_indices(23)] = 1 + rng.random(23)
    K[3, 4] = K[4, 3] = 3e-7
    expect = "".join("\t".join(f"{v:.10g}" for v in row) + "\n" for row in K.tolist())
    fh = io.BytesIO()
    write_kinship_text(fh, K, chunk_values=chunk_values, threads=threads)
    assert fh.getvalue().decode() == expect


def test_ordered_map_keeps_order_and_raises():
    got = list(textio.ordered_map(lambda v: v * v, iter(range(50)), 3))
    assert got == [v * v for v in range(50)]

    def boom(v):
        if v == 13:
            raise ValueError("13")
        return v

    with pytest.raises(ValueError, match="13"):
        list(textio.ordered_map(boom, range(40), 2))


def test_read_kinship_chunks_agree_with_float(tmp_path, monkeypatch):
    """Chunks that cut the file anywhere (tiny chunk size) give the values and
    the error lines of one whole read; values are parsed correctly rounded."""
    rng = np.random.default_rng(11)
    n = 40
    A = rng.standard_normal((n, n)) * 10.0 ** rng.integers(-6, 3, (n, n))
    K = A + A.T
    for spec in ("%.10g", "%.17g"):
        text = "".join("\t".join(spec % v for v in row) + "\n" for row in K.tolist())
        f = tmp_path / "K.txt"
        f.write_text(text)
        expect = np.array([[float(t) for t in line.split("\t")] for line in text.splitlines()])
        np.testing.assert_array_equal(read_kinship(f, n), expect)
        monkeypatch.setattr(textio, "_CHUNK_BYTES", 97)
        np.testing.assert_array_equal(read_kinship(f, n), expect)
        monkeypatch.setattr(textio, "_CHUNK_BYTES", 8 << 20)
    lines = text.splitlines()
    lines[33] = lines[33].replace("\t", "\tzz\t", 1).rsplit("\t", 1)[0]
    f.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(textio, "_CHUNK_BYTES", 97)
    with pytest.raises(InputError, match=r"line 34.*column 2.*'zz'"):
        read_kinship(f, n)


def _bits(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).view(np.uint64)


EDGE_TOKENS = [
    # digit runs around the 8-byte and 16-byte steps and the 19-digit limit
    "12345678",
    "123456789",
    "123456789012345",
    "1234567890123456",
    "12345678901234567",
    "0.123456789012345",
    "0.1234567890123456",
    "1234.123456789012345",
    "1234.1234567890123456",
    ".1234567890123456789",
    "9007199254740992",
    "9007199.254740993",
    "0.0000000000000001",
    "99999999999999999999e-22",
    "18446744.073709551621",  # 2^64 + 5: 20 digits, which would wrap to 5
    "1e00022",
    "1e000022",
    "1e-00022",
    "0",
    "-0",
    "+0",
    "0.0",
    "-0.0",
    "00012",
    ".5",
    "5.",
    "-.5",
    "+.5e-3",
    "+1.5",
    "-5.",
    "1E5",
    "1e+05",
    "1e-05",
    "-2.568193762e-05",
    "0.0002160670804",
    "1e308",
    "-1e308",
    "1.7976931348623157e308",
    "1.7976931348623158e308",
    "1.7976931348623159e308",
    "1e309",
    "-1e999",
    "1e-400",
    "-1e-400",
    "5e-324",
    "4.9e-324",
    "2.4703282292062327e-324",
    "2.4703282292062328e-324",
    "2.2250738585072011e-308",
    "2.2250738585072014e-308",
    "9007199254740993",
    "9007199254740992.5",
    "123456789012345678901234567890",
    "0.1000000000000000055511151231257827",
    "1e22",
    "1e23",
    "8.5e-23",
    "3e-22",
    "12345e-27",
    "0.000000000000000000000000000001234",
    "100000000000000000000000e-4",
    "1" + "0" * 400 + "e-400",
    "0." + "0" * 400 + "1e400",
    "0e99999",
    "7e0000000000000000001",
]


def test_parse_numbers_is_correctly_rounded():
    """Bit for bit what Python's float (correctly rounded) gives: random %.10g,
    %.15g and %.17g values of every magnitude, and edge cases (exponents,
    signed zeros, denormals, overflow, leading '+', '.5', '5.', long mantissas)."""
    from lmmscan._core import parse_numbers

    rng = np.random.default_rng(5)
    with np.errstate(over="ignore", under="ignore"):
        x = rng.standard_normal(30000) * 10.0 ** rng.integers(-330, 309, 30000)
    x = np.concatenate([x, rng.standard_normal(30000) * 0.01, tricky_values(rng)[::7]])
    x = x[np.isfinite(x)]
    tokens = [f"{v:{spec}}" for v in x.tolist() for spec in (".10g", ".15g", ".17g")]
    tokens += EDGE_TOKENS + ["-" + t.lstrip("+-") for t in EDGE_TOKENS]
    seps = rng.choice(["\t", " ", ",", "\n", "\r\n", " ,\t"], len(tokens))
    text = "".join(t + s for t, s in zip(tokens, seps, strict=True)).encode() + b"\n"
    expect = _bits([float(t) for t in tokens])
    for threads in (1, 2, 3):
        values, counts, bad = parse_numbers(text, threads)
        assert bad == -1
        np.testing.assert_array_equal(values.view(np.uint64), expect)
        assert counts.sum() == len(tokens)
        assert counts.size == text.count(b"\n")


@pytest.mark.parametrize(
    "token, value",
    [
        ("inf", np.inf),
        ("-Inf", -np.inf),
        ("+INF", np.inf),
        ("Infinity", np.inf),
        ("-infinity", -np.inf),
        ("NA", np.nan),
        ("nan", np.nan),
        ("NaN", np.nan),
        ("-nan", np.nan),
        ("-NaN", np.nan),
    ],
)
def test_parse_numbers_inf_and_nan_spellings(token, value):
    from lmmscan._core import parse_numbers

    values, counts, bad = parse_numbers(f"1\t{token}\n".encode())
    assert bad == -1 and counts.tolist() == [2]
    np.testing.assert_array_equal(values, [1.0, value])


@pytest.mark.parametrize(
    "token",
    [
        "NAN",
        "+nan",
        "na",
        "nan(1)",
        "1_0",
        "0x10",
        "1e",
        "1e+",
        "e5",
        ".",
        "-",
        "+",
        "+-1",
        "-+1",
        "1.5.2",
        "1d5",
        "\x0b1",
        "1\x00",
        '"1"',
        "infinit",
        "\u22121",
        "--1",
        ".e5",
    ],
)
@pytest.mark.parametrize("after", [b"", b"5\t" * 40])
def test_parse_numbers_rejects_other_tokens(token, after):
    """Short buffers take the scalar path, tokens with 48 bytes or more after
    them the 16-byte one: each rejects the token."""
    from lmmscan._core import parse_numbers

    prefix = b"1 2\n3,"
    values, counts, bad = parse_numbers(prefix + token.encode() + b"\t4\n" + after)
    assert bad == len(prefix)
    assert values.size == 0 and counts.size == 0


def test_parse_numbers_lines_and_buffers():
    from lmmscan._core import parse_numbers

    text = b"1\t2\t\r\n\n \t\n3 , 4,5\n6"  # blank lines, CR, a last line without LF
    for threads in (1, 2, 4, 50):
        values, counts, bad = parse_numbers(memoryview(text), threads)
        assert bad == -1
        assert values.tolist() == [1, 2, 3, 4, 5, 6]
        assert counts.tolist() == [2, 0, 0, 3, 1]
    assert [a.tolist() for a in parse_numbers(b"")[:2]] == [[], []]
    # the first bad token of the buffer, whichever thread finds one
    assert parse_numbers(b"1\n2\nx\ny\n" * 1000, 3)[2] == 4
    with pytest.raises(ValueError, match="threads"):
        parse_numbers(b"1\n", 0)


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _reference_parse(text: bytes, nan_words: bool):
    """parse_numbers' grammar in Python: (values, counts, bad)."""
    values, counts = [], []
    nan = {"NA", "nan", "NaN", "-nan", "-NaN"} if nan_words else {"NA"}
    offset = 0
    lines = text.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    for line in lines:
        count = 0
        for m in re.finditer(rb"[^ ,\t\r]+", line):
            tok = m.group().decode("latin-1")
            if _NUMBER.fullmatch(tok):
                values.append(float(tok))
            elif re.fullmatch(r"[+-]?(inf|infinity)", tok, re.IGNORECASE):
                values.append(float(tok))
            elif tok in nan:
                values.append(float("nan"))
            else:
                return [], [], offset + m.start()
            count += 1
        counts.append(count)
        offset += len(line) + 1
    return values, counts, -1


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "0",
                "1",
                "9",
                "12",
                ".",
                "e",
                "E",
                "-",
                "+",
                "5e-3",
                "inf",
                "Infinity",
                "NA",
                "nan",
                "NaN",
                "-nan",
                "x",
                "_",
                " ",
                "\t",
                ",",
                "\r",
                "\n",
                "\n",
                "12345678901234567",
                "0.0001193073185",
                "2.568193762e-05",
                "1e400",
                "00000000",
            ]
        ),
        max_size=60,
    ),
    st.integers(1, 4),
    st.booleans(),
)
def test_parse_numbers_against_a_reference(pieces, threads, nan_words):
    from lmmscan._core import parse_numbers

    # alone (short: the scalar path near the end) and followed by 64 bytes
    # (every token on the 16-byte path)
    for text in ("".join(pieces).encode(), "".join(pieces).encode() + b"\n" + b"0 " * 32):
        values, counts, bad = parse_numbers(text, threads, nan_words=nan_words)
        ref_values, ref_counts, ref_bad = _reference_parse(text, nan_words)
        assert bad == ref_bad
        if bad < 0:
            assert counts.tolist() == ref_counts
            np.testing.assert_array_equal(values.view(np.uint64), _bits(ref_values))


def test_parse_numbers_into_out():
    from lmmscan._core import parse_numbers

    text = b"1 2\n3 4\n5 6\n" * 100
    expect = np.tile(np.arange(1.0, 7.0), 100)
    for threads in (1, 2, 3):
        out = np.full(700, -1.0)
        values, counts, bad = parse_numbers(text, threads, out[50:])
        assert bad == -1 and counts.tolist() == [2] * 300
        assert np.shares_memory(values, out)
        np.testing.assert_array_equal(out[50:650], expect)
        assert (out[:50] == -1).all() and (out[650:] == -1).all()
        small = np.full(599, -1.0)  # too small: a new array, small untouched
        values, _, _ = parse_numbers(text, threads, small)
        assert not np.shares_memory(values, small) and (small == -1).all()
        np.testing.assert_array_equal(values, expect)
    for wrong in (np.zeros(600, np.float32), np.zeros(1200)[::2], np.zeros((600, 1))):
        with pytest.raises((TypeError, ValueError)):
            parse_numbers(text, 1, wrong)
    frozen = np.zeros(600)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        parse_numbers(text, 1, frozen)


@pytest.mark.parametrize("token", ["NAN", "+nan", "1_0", "0x1p3"])
def test_read_kinship_names_a_token_float_accepts(tmp_path, token):
    f = tmp_path / "K.txt"
    f.write_text(f"1\t0.5\n0.5\t{token}\n")
    message = rf"line 2.*column 2.*'{re.escape(token)}' is not a number"
    with pytest.raises(InputError, match=message):
        read_kinship(f, 2)


def test_read_kinship_gzip_and_no_newline_at_end(tmp_path, monkeypatch):
    import gzip

    rng = np.random.default_rng(2)
    A = rng.standard_normal((30, 30))
    K = A + A.T
    text = "".join("\t".join(f"{v:.10g}" for v in row) + "\n" for row in K.tolist())
    expect = np.array([[float(t) for t in line.split("\t")] for line in text.splitlines()])
    (tmp_path / "K.txt").write_text(text.rstrip("\n"))
    (tmp_path / "K.txt.gz").write_bytes(gzip.compress(text.encode()))
    for chunk in (1 << 20, 61):
        monkeypatch.setattr(textio, "_CHUNK_BYTES", chunk)
        for name in ("K.txt", "K.txt.gz"):
            np.testing.assert_array_equal(read_kinship(tmp_path / name, 30), expect)


def test_symmetry_error_names_the_first_entry_across_blocks(tmp_path):
    n = 1500  # the check works in blocks of (1 << 20) // n = 699 rows
    K = np.eye(n)
    K[1200, 1300] = 0.5  # (1301, 1201) is 0
    K[1400, 100] = 0.25  # earlier in row-major order: (101, 1401) is the first
    path = tmp_path / "K.npy"
    np.save(path, K)
    with pytest.raises(InputError) as exc:
        read_kinship(path, n)
    assert "entry (101, 1401) is 0 but (1401, 101) is 0.25" in str(exc.value)
    K[1400, 100] = 0.0
    np.save(path, K)
    with pytest.raises(InputError) as exc:
        read_kinship(path, n)
    assert "entry (1201, 1301) is 0.5 but (1301, 1201) is 0" in str(exc.value)


def _fresh_python(code: str) -> str:
    """stdout of ``code`` run in a new interpreter (no module imported by the tests)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout


def test_import_cli_is_lazy():
    code = (
        "import sys, lmmscan.cli, lmmscan\n"
        "heavy = [m for m in ('pandas', 'scipy', 'scipy.linalg', 'lmmscan.model') "
        "if m in sys.modules]\n"
        "print(heavy)\n"
    )
    assert _fresh_python(code).strip() == "[]"


def test_read_kinship_does_not_import_pandas(tmp_path):
    path = tmp_path / "K.txt"
    path.write_text("1\t0.5\n0.5\t2\n")
    code = (
        "import sys\n"
        "from lmmscan.textio import read_kinship\n"
        f"K = read_kinship({str(path)!r}, 2)\n"
        "print(K.tolist(), 'pandas' in sys.modules)\n"
    )
    assert _fresh_python(code).strip() == "[[1.0, 0.5], [0.5, 2.0]] False"


def test_lazy_public_names():
    import lmmscan
    import lmmscan.kinship
    import lmmscan.scan
    from lmmscan import kinship, scan

    # importing the submodules does not replace the functions of the same name
    assert callable(lmmscan.kinship) and lmmscan.kinship is kinship
    assert callable(lmmscan.scan) and lmmscan.scan is scan
    for name in lmmscan.__all__:
        assert getattr(lmmscan, name) is not None
        assert name in dir(lmmscan)
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = lmmscan.no_such_name


def test_submodules_are_attributes_without_an_import():
    """``import lmmscan; lmmscan.model.fit_null`` works as when the package
    imported its submodules eagerly (a fresh interpreter: no test imported
    them before)."""
    code = (
        "import lmmscan\n"
        "print(lmmscan.model.fit_null.__name__, lmmscan.textio.read_kinship.__name__,\n"
        "      lmmscan.plink.read_plink.__name__, lmmscan.filters.__name__,\n"
        "      callable(lmmscan.kinship), callable(lmmscan.scan))\n"
    )
    assert _fresh_python(code).split() == [
        "fit_null",
        "read_kinship",
        "read_plink",
        "lmmscan.filters",
        "True",
        "True",
    ]
