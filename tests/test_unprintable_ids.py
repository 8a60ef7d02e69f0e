"""Variant fields no table can hold in one field: a BGEN rsid (or a VCF or
.pvar ID) with a tab or a line break printed as two fields or two lines
(the table's other rows shifted, exit 0); with a space, regenie's
space-separated rows did the same.  A scan now refuses a tab or line
break (and with ``--format regenie`` a space) before any work, in one line
naming the file and the variant, and ``lmmscan.write_table`` either, writing
nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmscan
from lmmscan import InputError
from lmmscan.cli import main
from lmmscan.variants import TextColumn, VariantTable, unprintable_field

N, M = 40, 12


def write_bgen(path, rsids: dict[int, str]) -> None:
    """N diploid samples x M variants; variant j's rsid is ``rsids[j]`` or rs{j}."""
    from bgen import BgenWriter

    rng = np.random.default_rng(5)
    with BgenWriter(str(path), N, samples=[f"s{i}" for i in range(N)], layout=2,
                    compression="zlib") as w:  # fmt: skip
        for j in range(M):
            probs = np.zeros((N, 3))
            probs[np.arange(N), rng.binomial(2, 0.4, N)] = 1.0
            w.add_variant(f"v{j}", rsids.get(j, f"rs{j}"), "1", 100 + j, ["A", "G"], probs,
                          ploidy=2, phased=False, bit_depth=8)  # fmt: skip


@pytest.fixture
def pheno(tmp_path):
    path = tmp_path / "y.txt"
    y = np.random.default_rng(6).normal(size=N)
    path.write_text("".join(f"{v:.5f}\n" for v in y))
    return path


def run(argv, capsys) -> tuple[int, str]:
    status = main([str(a) for a in argv])
    return status, capsys.readouterr().err


@pytest.mark.parametrize(("rsid", "what"), [("rs\t3", "a tab"), ("rs\n3", "a line break"),
                                            ("rs3\r", "a carriage return")])  # fmt: skip
def test_a_tab_or_line_break_in_a_bgen_rsid_is_refused(tmp_path, pheno, capsys, rsid, what):
    pytest.importorskip("bgen")
    write_bgen(tmp_path / "g.bgen", {3: rsid})
    status, err = run(["scan", "--bgen", tmp_path / "g.bgen", "--pheno", pheno, "--out",
                       tmp_path / "o", "--quiet"], capsys)  # fmt: skip
    assert status == 2
    assert err.count("\n") == 1
    assert (
        f"g.bgen: the variant at chromosome 1, position 103: its ID {rsid!r} holds {what}, "
        "which the output table cannot hold in one field"
    ) in err
    assert not list(tmp_path.glob("o.*"))
    # kinship prints no variant: it reads the file (review)
    argv = ["kinship", "--bgen", tmp_path / "g.bgen", "--pheno", pheno, "--out", tmp_path / "k.txt"]
    assert run(argv, capsys)[0] == 0


def test_a_space_is_refused_for_regenie_only(tmp_path, pheno, capsys):
    pytest.importorskip("bgen")
    write_bgen(tmp_path / "g.bgen", {5: "rs 5"})
    base = ["scan", "--bgen", tmp_path / "g.bgen", "--pheno", pheno, "--quiet", "--out"]
    status, err = run([*base, tmp_path / "r", "--format", "regenie"], capsys)
    assert status == 2
    assert "g.bgen: the variant at chromosome 1, position 105: its ID 'rs 5' holds a space" in err
    assert "--format regenie separates fields by spaces" in err
    assert not list(tmp_path.glob("r.*"))
    assert run([*base, tmp_path / "g"], capsys)[0] == 0
    rows = (tmp_path / "g.assoc.txt").read_text().splitlines()
    assert {len(r.split("\t")) for r in rows} == {12}
    assert rows[6].split("\t")[1] == "rs 5"


def test_write_table_refuses_them_and_writes_nothing(tmp_path):
    rng = np.random.default_rng(7)
    G = rng.binomial(2, 0.3, (60, 8)).astype(float)
    snps = pd.DataFrame({"chr": ["1"] * 8, "rs": [f"rs{j}" for j in range(8)],
                         "ps": np.arange(8) + 1, "allele1": ["A"] * 8,
                         "allele0": ["G"] * 8})  # fmt: skip
    source = lmmscan.ArrayGenotypes(G, snps=snps)
    y = rng.normal(size=60)
    table = lmmscan.scan(source, y, kinship=np.eye(60) * 0.5 + 0.5, test="wald")
    bad = table.copy()
    bad.loc[6, "allele0"] = "G\tT"
    with pytest.raises(InputError, match=r"^row 7 \(chromosome 1, position 7\): its allele "
                       r"'G\\tT' holds a tab"):  # fmt: skip
        lmmscan.write_table(bad, tmp_path / "t.txt")
    spaced = table.copy()
    spaced.loc[2, "rs"] = "rs 2"
    with pytest.raises(InputError, match=r"^row 3 .* its ID 'rs 2' holds a space"):
        lmmscan.write_table(spaced, tmp_path / "t.regenie", "regenie")
    assert not list(tmp_path.iterdir())
    written = lmmscan.write_table(spaced, tmp_path / "t.txt").read_text().splitlines()
    assert written[3].split("\t")[1] == "rs 2"


@pytest.mark.parametrize("rows_at_a_time", [1, 2, 1 << 20])
def test_first_holding_finds_the_token_not_its_end(monkeypatch, rows_at_a_time):
    monkeypatch.setattr(TextColumn, "_SCAN_ROWS", rows_at_a_time)
    col = TextColumn.from_strings(["a", "b", "c\nd", "e\t"])
    assert col.first_holding(b"\n") == 2
    assert col.first_holding(b"\t") == 3
    assert col.first_holding(b" ") == -1
    assert TextColumn.from_strings(["a", "b"]).first_holding(b"\t\r\n") == -1
    assert TextColumn.from_strings([]).first_holding(b"\t") == -1
    part = TextColumn.from_strings(["x y", "a", "b c"]).take(slice(1, 3))
    assert part.first_holding(b" ") == 1


def test_the_first_field_in_row_then_column_order_is_named():
    frame = pd.DataFrame({"chr": ["1", "1", "2"], "rs": ["a", "b\tc", "d"], "ps": [1, 2, 3],
                          "allele1": ["A", "G", "T\tA"],
                          "allele0": ["C", "A\tx", "G"]})  # fmt: skip
    table = VariantTable.from_frame(frame)
    assert unprintable_field(table) == (
        "variant 2 (chromosome 1, position 2): its ID 'b\\tc' holds a tab, which the output "
        "table cannot hold in one field"
    )
    assert unprintable_field(table, rows=np.array([10, 20, 30])).startswith("variant 21 ")
    assert unprintable_field(table.take(slice(0, 1))) is None
