"""Text readers and writers: phenotype/covariate/kinship files, %.10g, p-value text."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
import scipy.special

from lmmscan import InputError
from lmmscan.output import _sci_from_log10, format_p
from lmmscan.pvalues import log_chi2_1_sf, log_f1_sf, neg_log10_p
from lmmscan.textio import (
    _format_g10_python,
    format_g10,
    read_covar,
    read_kinship,
    read_pheno,
    write_kinship,
)

from .conftest import round_sig10

# ------------------------------------------------------------------ phenotypes


def test_read_pheno_gemma_rules(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("1.5 NA 3\n-9,2.5,\t4\n\t0 1e-3 NA\n\n\n")
    got = read_pheno(f, [1, 2, 3], 3)
    np.testing.assert_array_equal(got[:, 0], [1.5, -9.0, 0.0])  # -9 is a value in -p files
    assert np.isnan(got[0, 1]) and got[1, 1] == 2.5 and got[2, 1] == 1e-3
    np.testing.assert_array_equal(got[:2, 2], [3, 4])
    assert np.isnan(got[2, 2])


@pytest.mark.parametrize(
    "text, cols, n, needles",
    [
        ("1\n2\n", [1], 3, ["2 rows", "3 individuals"]),
        ("1 2\n2 x\n3 4\n", [2], 3, ["line 2", "column 2", "'x'"]),
        ("1 2\n2 3\n3 4\n", [3], 3, ["--pheno-col 3", "out of range"]),
        # a row without column 2, and a row a field short of line 1 whatever the
        # column asked for (it would give its individual another column's value)
        ("1 2\n2\n3 4\n", [2], 3, ["line 2", "1 column where line 1 has 2"]),
        ("1 2\n2\n3 4\n", [1], 3, ["line 2", "1 column where line 1 has 2"]),
        ("1\n\n3\n", [1], 3, ["line 2", "empty"]),
        ("1\ninf\n3\n", [1], 3, ["line 2", "infinite"]),
    ],
)
def test_read_pheno_errors(tmp_path, text, cols, n, needles):
    f = tmp_path / "p.txt"
    f.write_text(text)
    with pytest.raises(InputError) as exc:
        read_pheno(f, cols, n)
    msg = str(exc.value)
    assert msg.startswith(str(f))
    for needle in needles:
        assert needle in msg


def test_read_covar(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("-1.0\t-1.0\t\n1\tNA\t\n")  # BXD's trailing tabs
    got = read_covar(f, 2)
    assert got.shape == (2, 2) and np.isnan(got[1, 1])
    f.write_text("1 2\n3\n")
    with pytest.raises(InputError, match="line 2"):
        read_covar(f, 2)


# ------------------------------------------------------------------ kinship files


def random_kinship(n, rng):
    A = rng.standard_normal((n, 3 * n))
    K = A @ A.T / (3 * n) - 0.4
    K[0, 1] = K[1, 0] = 0.0
    K[2, 3] = K[3, 2] = 12.5  # outside the vectorised range
    K[4, 5] = K[5, 4] = 3e-7  # scientific notation
    return K


@pytest.mark.parametrize("suffix", [".txt", ".npy", ".txt.gz"])
def test_kinship_round_trip(tmp_path, suffix):
    K = random_kinship(57, np.random.default_rng(3))
    path = tmp_path / f"K{suffix}"
    if suffix == ".txt.gz":
        write_kinship(tmp_path / "K.txt", K)
        path.write_bytes(gzip.compress((tmp_path / "K.txt").read_bytes()))
    else:
        write_kinship(path, K)
    got = read_kinship(path, 57)
    expect = K if suffix == ".npy" else round_sig10(K)
    np.testing.assert_array_equal(got, expect)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_kinship_named_gz_is_gzipped(tmp_path):
    """It was written as plain text under the .gz name."""
    K = random_kinship(9, np.random.default_rng(5))
    write_kinship(tmp_path / "K.txt", K)
    write_kinship(tmp_path / "K.txt.gz", K)
    assert gzip.decompress((tmp_path / "K.txt.gz").read_bytes()) == (
        (tmp_path / "K.txt").read_bytes()
    )
    np.testing.assert_array_equal(read_kinship(tmp_path / "K.txt.gz", 9), round_sig10(K))


def test_kinship_text_is_gemma_format(tmp_path):
    K = random_kinship(9, np.random.default_rng(4))
    write_kinship(tmp_path / "K.txt", K)
    expect = "".join("\t".join(f"{v:.10g}" for v in row) + "\n" for row in K.tolist())
    assert (tmp_path / "K.txt").read_text() == expect


def test_kinship_reader_tolerates_spaces_commas_trailing_tabs(tmp_path):
    f = tmp_path / "K.txt"
    f.write_text("1\t0.5\t\n0.5 , 2\t\n\n")
    np.testing.assert_array_equal(read_kinship(f, 2), [[1, 0.5], [0.5, 2]])


@pytest.mark.parametrize(
    "text, n, needles",
    [
        ("1\t0.5\n0.5\t2\n", 3, ["2 x 2", "3 individuals"]),
        ("1\t0.5\n0.4\t2\n", 2, ["not symmetric"]),
        ("1\t0.5\n0.5\tNA\n", 2, ["line 2", "column 2", "non-finite"]),
        ("1\t0.5\n0.5\tzz\n", 2, ["line 2", "column 2", "'zz'"]),
        ("1\t0.5\n0.5\n", 2, ["line 2", "1 values"]),
        ("1\t0.5\t0\n0.5\t1\t0\n", 3, ["square"]),
        # wider than the samples: refused before its square is allocated (a
        # matrix flattened on one line asked for 191 GiB, the file unnamed)
        ("1\t0.5\t0\n0.5\t1\t0\n", 2, ["line 1", "first row has 3 values", "2 individuals"]),
        # classic Mac line ends: one line of every value, the same 191 GiB
        ("1\t0.5\r0.5\t1\r", 2, ["line 1", "carriage return alone"]),
        ("\n1\t0.5\r0.5\t1\r", 2, ["line 2", "carriage return alone"]),
        ("\n1\t0.5\t0\n0.5\t1\t0\n", 2, ["line 2", "first row has 3 values"]),
        ("", 2, ["empty"]),
    ],
)
def test_kinship_errors(tmp_path, text, n, needles):
    f = tmp_path / "K.txt"
    f.write_text(text)
    with pytest.raises(InputError) as exc:
        read_kinship(f, n)
    msg = str(exc.value)
    assert msg.startswith(str(f))
    for needle in needles:
        assert needle in msg


def test_kinship_npy_not_numbers(tmp_path):
    np.save(tmp_path / "K.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(InputError, match="K.npy"):
        read_kinship(tmp_path / "K.npy", 2)


def test_kinship_npy_with_a_damaged_header_is_named(tmp_path):
    """Found by mutation fuzzing (helper 43): a header without its closing
    brace raised tokenize.TokenError (a traceback, exit 1); one promising
    99999 x 99999 values said "Unable to allocate 74.5 GiB" without the name."""
    np.save(tmp_path / "K.npy", np.eye(8))
    data = (tmp_path / "K.npy").read_bytes()
    cases = {
        "brace.npy": (data.replace(b"}", b" ", 1), "not a readable .npy file (TokenError"),
        "big.npy": (data.replace(b"(8, 8)", b"(99999, 99999)", 1), "99999 x 99999 values"),
        "cut.npy": (data[:-8], "holds 504 bytes of data (cut short"),
    }
    for name, (content, needle) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError) as exc:
            read_kinship(tmp_path / name, 8)
        assert str(exc.value).startswith(str(tmp_path / name)) and needle in str(exc.value)


def test_kinship_npy_with_a_signalling_nan_is_one_line(tmp_path):
    """A float32 signalling NaN printed numpy's RuntimeWarning (two more
    lines on stderr) before the error (helper 43)."""
    import warnings

    K = np.eye(4, dtype=np.float32)
    K.view(np.uint32)[1, 2] = K.view(np.uint32)[2, 1] = 0x7F800001
    np.save(tmp_path / "K.npy", K)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InputError, match=r"K\.npy, line 2, column 3: kinship has a non-finite"):
            read_kinship(tmp_path / "K.npy", 4)


def test_a_real_lack_of_memory_is_not_called_a_damaged_kinship(tmp_path, monkeypatch):
    """The catch-all for numpy's header errors also took MemoryError and
    called the file unreadable (review, helper 45): it goes to the CLI's
    memory message as before."""
    np.save(tmp_path / "K.npy", np.eye(3))

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 74.5 GiB")

    monkeypatch.setattr(np, "load", no_memory)
    with pytest.raises(MemoryError):
        read_kinship(tmp_path / "K.npy", 3)


def test_data_line_counts_a_form_feed_line_as_a_row(tmp_path):
    """read_csv reads a line holding only a form feed as a one-field row."""
    from lmmscan.textio import data_line

    (tmp_path / "t.txt").write_bytes(b"a\n\n \t\nb\n\x0c\nc\n")
    assert [data_line(tmp_path / "t.txt", i) for i in range(4)] == [1, 4, 5, 6]


def test_format_g10_matches_printf():
    rng = np.random.default_rng(5)
    x = np.concatenate(
        [
            rng.standard_normal(20000) * 10.0 ** rng.integers(-25, 25, 20000),
            rng.standard_normal(20000) * 0.05,
            np.round(rng.standard_normal(5000), 4),
            [0.0, -0.0, 1.0, 10.0, 9.9999999995, 0.99999999995, 1e-4, 9.99999999995e-5,
             1e-5, 5e-324, 1.7e308, 0.5, 123456789012.0, np.nan, np.inf, -np.inf],
        ]
    )  # fmt: skip
    seps = np.full(x.size, b"\t", dtype="S1")
    assert format_g10(x, seps) == _format_g10_python(x, seps)
    assert _format_g10_python(np.array([1.5e-7]), seps[:1]) == f"{1.5e-7:.10g}\t".encode()


# ------------------------------------------------------------------ p-values


def test_log_tails_match_scipy_where_it_does_not_underflow():
    F = np.array([0.0, 0.3, 4.0, 50.0, 400.0, 1500.0])
    for df in (3, 60, 1405):
        ref = np.log(scipy.special.fdtrc(1.0, df, F))
        np.testing.assert_allclose(log_f1_sf(F, df), ref, rtol=1e-9, atol=1e-12)
    stat = np.array([0.0, 0.5, 10.0, 300.0, 1300.0])
    ref = np.log(scipy.special.chdtrc(1.0, stat))
    np.testing.assert_allclose(log_chi2_1_sf(stat), ref, rtol=1e-9, atol=1e-12)


def test_log_tails_go_below_1e300():
    # chi-square(1): p = erfc(sqrt(s/2)) ~ exp(-s/2) sqrt(2/(pi s)) for large s
    s = 4000.0
    asym = -s / 2 + 0.5 * math.log(2 / (math.pi * s)) + math.log1p(-1 / s)
    assert log_chi2_1_sf(np.array([s]))[0] == pytest.approx(asym, rel=1e-7)
    # F(1, df) with huge F: p ~ c * F^(-df/2); log p decreases by df/2 * log 10 per decade
    lp = log_f1_sf(np.array([1e20, 1e21]), 1400)
    assert lp[0] < -300 * math.log(10)
    assert lp[0] - lp[1] == pytest.approx(700 * math.log(10), rel=1e-9)


def test_p_text_never_zero():
    p = np.array([0.5, 1e-5, 0.0, 5e-310, np.nan])
    log10p = np.array([math.log10(2), 5.0, 412.3, 309.30103, np.nan])
    assert format_p(p, log10p, "e") == [
        "5.000000e-01", "1.000000e-05", "5.011872e-413", "5.000000e-310", "nan",
    ]  # fmt: skip
    assert format_p(p, log10p, "g")[2] == "5.01187e-413"
    assert _sci_from_log10(299.99999999999, 6, "e") == "1.000000e-300"
    got = neg_log10_p(p, np.log(10.0) * -log10p)
    np.testing.assert_allclose(got[2:4], [412.3, 309.30103])


def test_tails_only_where_p_is_tiny_give_the_same_log10p():
    from lmmscan.pvalues import log_tails, neg_log10_ps

    rng = np.random.default_rng(5)
    df = 400
    F = np.concatenate([rng.random(500) * 20, [1e3, 2e3, 5e3, 1e5, np.inf, np.nan, 0.0]])
    chi = np.concatenate([rng.random(500) * 20, [1e3, 3e3, 1e4, 1e6, np.inf, np.nan, -1.0]])
    stats = {"p_wald": F, "p_lrt": chi, "p_score": F[::-1].copy()}
    cols = {
        "p_wald": scipy.special.fdtrc(1.0, df, F),
        "p_lrt": scipy.special.chdtrc(1.0, np.maximum(chi, 0.0)),
        "p_score": scipy.special.fdtrc(1.0, df, stats["p_score"]),
    }
    assert (cols["p_wald"] < 1e-300).sum() >= 2  # the tail is used
    tails = log_tails(stats, df)
    got = neg_log10_ps(cols, stats, df, list(cols))
    for name in cols:
        np.testing.assert_array_equal(got[name], neg_log10_p(cols[name], tails[name]))
    np.testing.assert_array_equal(neg_log10_ps(cols, {}, df, ["p_wald"])["p_wald"],
                                  neg_log10_p(cols["p_wald"], None))  # fmt: skip


def test_p_values_on_threads_are_the_same():
    from lmmscan import _core
    from lmmscan.pvalues import p_values

    rng = np.random.default_rng(9)
    b = 20_003
    raw = rng.normal(size=(b, len(_core.RESULT_COLUMNS))) ** 2 * 5
    one = p_values(raw, "all", 400, -3.0, threads=1)
    for threads in (2, 3):
        many = p_values(raw, "all", 400, -3.0, threads=threads)
        for name in one:
            np.testing.assert_array_equal(many[name], one[name])
