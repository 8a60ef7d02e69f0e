"""GEMMA's table formatted by the core (``_core.format_rows``) is the bytes of
the Python formatting it replaces (``TableWriter._rows_gemma``), on every
kind of value: rounding ties, tiny and zero p-values, NaN, infinities."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmmscan.output import TableWriter
from lmmscan.pvalues import TEST_COLUMNS
from lmmscan.variants import VariantTable

COLS = TEST_COLUMNS["all"]

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
anything = st.floats(allow_nan=True, allow_infinity=True, width=64)
# values on printing ties and near them: k / 2^m at 3 and 6 decimals
ties = st.builds(lambda k, m, s: s * k / 2.0**m, st.integers(0, 2**20), st.integers(0, 20),
                 st.sampled_from([1.0, -1.0]))  # fmt: skip
pvals = st.one_of(st.floats(0, 1), st.just(0.0), st.floats(1e-320, 1e-290), st.just(float("nan")))


def writer() -> TableWriter:
    return TableWriter(io.StringIO(), "gemma", "all", n_analyzed=100, df=1,
                       loglik_mle_null=-10.0, test_columns=COLS)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_core_rows_equal_python_rows(data):
    n = data.draw(st.integers(1, 12))
    nums = st.one_of(finite, anything, ties)
    frame = pd.DataFrame(
        {
            "chr": data.draw(
                st.lists(st.sampled_from(["1", "X", "-9", "chr22"]), min_size=n, max_size=n)
            ),  # fmt: skip
            "rs": [f"rs{i}é" for i in range(n)],
            "ps": np.array(data.draw(st.lists(st.integers(-9, 2**62), min_size=n, max_size=n))),
            "allele1": ["A"] * n,
            "allele0": ["-9"] * n,
        }
    )
    cols = {"n_miss": np.array(data.draw(st.lists(st.integers(0, 10**6), min_size=n,
                                                  max_size=n)))}  # fmt: skip
    cols["af"] = np.array(data.draw(st.lists(st.one_of(ties, st.floats(0, 1)), min_size=n,
                                             max_size=n)))  # fmt: skip
    log10p = {}
    for name in COLS:
        if name.startswith("p_"):
            p = np.array(data.draw(st.lists(pvals, min_size=n, max_size=n)))
            tiny = p < 1e-300
            lp = np.where(tiny, data.draw(st.floats(300, 1e6)), -np.log10(np.where(p > 0, p, 1)))
            lp[p == 0] = data.draw(st.sampled_from([np.inf, 400.5]))
            cols[name], log10p[name] = p, lp
        else:
            cols[name] = np.array(data.draw(st.lists(nums, min_size=n, max_size=n)))
    snps = VariantTable.from_frame(frame)
    w = writer()
    core = w._text_gemma(snps, cols, log10p)
    python = "".join(line + "\n" for line in w._rows_gemma(snps, cols, log10p, {}))
    assert core == python


def test_tokens_with_a_tab_or_newline_are_refused():
    """Once printed through the Python rows, as two fields (tests/test_unprintable_ids.py)."""
    from lmmscan import InputError

    w = writer()
    frame = pd.DataFrame({"chr": ["1"], "rs": ["a\tb"], "ps": np.array([5]), "allele1": ["A"],
                          "allele0": ["C"]})  # fmt: skip
    cols = {name: np.array([0.5]) for name in COLS}
    cols["n_miss"], cols["af"] = np.array([0]), np.array([0.25])
    with pytest.raises(InputError, match=r"^row 1 \(chromosome 1, position 5\): its ID"):
        w.write(VariantTable.from_frame(frame), cols)


def test_threads_give_the_same_bytes():
    """Rows cut into ranges formatted on several threads: the bytes of one thread,
    with tokens of different lengths so every cut falls mid-column."""
    from lmmscan import _core

    rng = np.random.default_rng(3)
    n = 5_011
    tokens = [f"rs{i * 7919 % 100003}{'x' * (i % 5)}" for i in range(n)]
    text = ("\n".join(tokens) + "\n").encode()
    p = rng.random(n) ** 40
    columns = [
        ("s", text),
        ("i", rng.integers(-9, 10**9, n)),
        ("f", rng.random(n)),
        ("e", rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, n)),
        ("p", (p, -np.log10(p))),
        ("s", text),
    ]
    one = _core.format_rows(columns, n, 1e-300, 1)
    assert one.count(b"\n") == n
    for threads in (2, 3, 8):
        assert _core.format_rows(columns, n, 1e-300, threads) == one
    short = [("s", b"a\nb\n")]
    with pytest.raises(ValueError, match="too few tokens"):
        _core.format_rows(short, 9000, 1e-300, 2)


def sample_doubles(rng: np.random.Generator, size: int) -> np.ndarray:
    """Doubles of every exponent (random bit patterns), printing ties and
    values a few ulps from the 3- and 7-significant-digit boundaries."""
    bits = rng.integers(0, 2**63, size, dtype=np.uint64) | (
        rng.integers(0, 2, size, dtype=np.uint64) << np.uint64(63)
    )
    every = bits.view(np.float64)
    every = every[np.isfinite(every)]
    ties = rng.integers(0, 2**20, size) / 2.0 ** rng.integers(0, 24, size)
    digits = rng.integers(10**6, 10**7, size) + 0.5
    scale = 10.0 ** rng.integers(-320, 300, size).astype(np.float64)
    with np.errstate(over="ignore", under="ignore"):
        near = digits * scale
        near = np.nextafter(near, near * rng.choice([-np.inf, np.inf], size))
    edge = np.array([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                     -1.7976931348623157e308, 0.0005, 0.0015, 0.9995, 9.9999995e-5])  # fmt: skip
    out = np.concatenate([every, ties, -ties, near, edge])
    return out[np.isfinite(out)]


@pytest.mark.parametrize("threads", [1, 2])
def test_scientific_and_fixed_digits_are_pythons_on_every_kind_of_double(threads):
    """The core prints '%.6e' and '%.3f' (std::to_chars where the platform has
    it, printf on macOS) with the digits of Python's format(): 200,000 doubles
    of every exponent, ties and near-ties."""
    from lmmscan import _core

    rng = np.random.default_rng(20261206)
    values = sample_doubles(rng, 40_000)
    n = values.size
    text = _core.format_rows([("e", values), ("f", values)], n, 1e-300, threads).decode()
    expected = "".join(f"{format(v, '.6e')}\t{format(v, '.3f')}\n" for v in values.tolist())
    assert text == expected
