"""lmmscan plot, scan --plot and the results summary (lambda_GC, top hits)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmmscan.cli import main

from .conftest import GEMMA

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def demo_scan(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--out", str(out), "--quiet"]) == 0
    return out


def test_demo_writes_plots_and_results(demo_scan):
    for col in (1, 2):
        for kind in ("manhattan", "qq"):
            png = demo_scan / f"demo.{col}.{kind}.png"
            assert png.exists() and png.stat().st_size > 10_000
        data = json.loads((demo_scan / f"demo.{col}.null.json").read_text())
        res = data["results"]
        assert 0.5 < res["lambda_gc"] < 2.0
        assert len(res["top_hits"]) == 10
        ps = [h["p"] for h in res["top_hits"]]
        assert ps == sorted(ps)
    table = pd.read_csv(demo_scan / "demo.1.assoc.txt", sep="\t")
    res = json.loads((demo_scan / "demo.1.null.json").read_text())["results"]
    assert res["n_genome_wide_significant"] == int((table.p_wald < 5e-8).sum()) >= 1
    assert res["top_hits"][0]["rs"] == table.rs[table.p_wald.idxmin()]


def test_plot_command(tmp_path, capsys):
    out = tmp_path / "fig.png"
    assert main(["plot", str(GEMMA / "mouse_lmm4_n1.assoc.txt.gz"), "--out", str(out)]) == 0
    assert out.exists() and out.stat().st_size > 20_000
    assert "lambda_GC" in capsys.readouterr().out


def test_a_full_disk_names_the_plot(tmp_path, capsys, monkeypatch):
    """A full disk (fault injection on a 100 KB tmpfs, helper 41) said "No
    space left on device" without the file; an existing plot is kept."""
    import errno

    import matplotlib.figure

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "fig.png"
    out.write_bytes(b"earlier plot")
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    assert main(["plot", str(GEMMA / "mouse_lmm4_n1.assoc.txt.gz"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"lmmscan plot: error: {out}: No space left on device"
    assert out.read_bytes() == b"earlier plot" and [p.name for p in tmp_path.iterdir()] == [
        "fig.png"
    ]


HEAD = "chr\trs\tps\tp_wald\n"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "not found"),
        ("a\tb\n1\t2\n", "no column 'chr'"),
        ("chr\tps\n1\t2\n", "p-value"),
        # bad rows were dropped, or plotted from the wrong columns, with exit 0
        (HEAD + "1\trs1\t10\t0.5\n1\trs2\t20\tabc\n", "line 3: column 'p_wald' holds 'abc'"),
        (HEAD + "1\trs1\t10\t0.5\n1\trs2\t20\n", "line 3: 3 fields where the header has 4"),
        (HEAD + "1\trs1\t10\t0.5\n1\trs2", "line 3: 2 fields where the header has 4"),
        (HEAD, "no rows"),
        (HEAD + "1\trs1\t10\tNA\n1\trs2\t20\tnan\n", "holds no p-value (every row is NA)"),
    ],
)
def test_plot_bad_input(tmp_path, capsys, content, message):
    table = tmp_path / "t.assoc.txt"
    if content is not None:
        table.write_text(content)
    out = tmp_path / "fig.png"
    assert main(["plot", str(table), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not Path(out).exists()


def test_plot_format_follows_the_output_name(tmp_path, capsys):
    table = tmp_path / "t.assoc.txt"
    table.write_text(HEAD + "".join(f"1\trs{i}\t{i}\t{(i + 1) / 50}\n" for i in range(40)))
    assert main(["plot", str(table), "--out", str(tmp_path / "f.svg")]) == 0
    assert (tmp_path / "f.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    assert main(["plot", str(table), "--out", str(tmp_path / "f.txt")]) == 2
    err = capsys.readouterr().err
    assert ".png, .pdf or .svg" in err and not (tmp_path / "f.txt").exists()


def test_plot_reads_a_pipe_once_and_names_lines_past_blank_ones(tmp_path, capsys):
    import subprocess
    import sys

    table = tmp_path / "t.assoc.txt"
    table.write_text(HEAD + "".join(f"1\trs{i}\t{i}\t{(i + 1) / 50}\n" for i in range(40)))
    cmd = f"{sys.executable} -m lmmscan plot <(cat {table}) --out {tmp_path / 'p.png'}"
    done = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p.png").stat().st_size > 1000
    table.write_text(HEAD + "1\trs1\t10\t0.5\n\n\n1\trs2\t20\tabc\n")
    assert main(["plot", str(table), "--out", str(tmp_path / "q.png")]) == 2
    assert "line 5: column 'p_wald' holds 'abc'" in capsys.readouterr().err


def _drawn(monkeypatch, argv) -> dict:
    """What ``lmmscan plot`` hands to results_figure: the table, p column and -log10 p."""
    from lmmscan import plot

    seen: dict = {}
    real = plot.results_figure

    def spy(table, p=None, **kw):
        seen.update(
            table=table.copy(), p=p, y=plot.neg_log10(table[p].to_numpy(), kw.get("log10p"))
        )
        return real(table, p, **kw)

    monkeypatch.setattr(plot, "results_figure", spy)
    assert main([str(a) for a in argv]) == 0
    return seen


def test_rows_with_quotes_bytes_and_a_last_carriage_return_are_all_read(tmp_path, monkeypatch):
    """A quote in an rs ID joined four lines into one row (read_csv's quoting),
    exit 0; a CRLF table ending in a blank line, or a byte that is not UTF-8,
    was refused."""
    rows = [f"1\trs{i}\t{i + 1}\t{(i + 1) / 50}" for i in range(40)]
    rows[2], rows[5] = rows[2].replace("rs2", '"rs2'), rows[5].replace("rs5", 'rs5"')
    table = tmp_path / "t.assoc.txt"
    table.write_bytes(("\r\n".join([HEAD.strip(), *rows]) + "\r\n\r\n").encode() + b"")
    seen = _drawn(monkeypatch, ["plot", table, "--out", tmp_path / "a.png"])
    assert len(seen["table"]) == 40 and seen["table"]["rs"][2] == '"rs2'
    table.write_bytes((HEAD + "\n".join(rows)).encode() + b"\n1\trs\xe9\t99\t0.01\n")
    seen = _drawn(monkeypatch, ["plot", table, "--out", tmp_path / "b.png"])
    assert len(seen["table"]) == 41 and seen["table"]["rs"][40] == "rs\ufffd"


def test_p_values_below_1e308_are_drawn_at_their_height(tmp_path, monkeypatch):
    """The tables print such p from their logarithm (4.812563e-757); read as
    a float it is 0, which was drawn at 320."""
    rows = [f"1\trs{i}\t{i + 1}\t{(i + 1) / 50}" for i in range(40)] + ["1\tbig\t99\t4.812563e-757"]
    table = tmp_path / "t.assoc.txt"
    table.write_text(HEAD + "\n".join(rows) + "\n")
    seen = _drawn(monkeypatch, ["plot", table, "--out", tmp_path / "a.png"])
    assert seen["y"][-1] == pytest.approx(757 - np.log10(4.812563), rel=1e-12)


@pytest.mark.parametrize("fmt", ["gemma", "plink2", "regenie", "gwas-ssf"])
def test_every_table_format_of_scan_is_plotted(demo_scan, tmp_path, monkeypatch, fmt):
    """The help says plot reads scan's tables; the plink2, regenie and gwas-ssf
    ones were refused ("no column 'chr'")."""
    from lmmscan.output import EXTENSIONS

    prefix = demo_scan / "demo"
    y = {}
    for f in ("gemma", fmt):
        out = tmp_path / f
        argv = ["scan", "--bfile", prefix, "--pheno", f"{prefix}.pheno.txt", "--kinship",
                f"{prefix}.cXX.txt", "--format", f, "--out", out, "--quiet"]  # fmt: skip
        assert main([str(a) for a in argv]) == 0
        seen = _drawn(monkeypatch, ["plot", f"{out}{EXTENSIONS[f]}", "--out", tmp_path / "f.png"])
        y[f] = seen["y"]
        if f == "gemma":
            gemma = seen["table"]
    assert list(seen["table"]["ps"].astype(int)) == list(gemma["ps"])
    assert list(seen["table"]["chr"]) == list(gemma["chr"])
    # p printed to 6 digits (plink2, regenie): within 5e-6 of itself, 2.2e-6 in -log10 p
    np.testing.assert_allclose(y[fmt], y["gemma"], rtol=0, atol=3e-6)
