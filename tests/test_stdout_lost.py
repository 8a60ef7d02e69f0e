"""The command's summary on standard output is a courtesy: a reader that went
away, a full device or a closed descriptor ends the summary, not the run.
Before, a closed stdout ended a finished scan in an AttributeError traceback
(exit 1), and a broken pipe or a full device in "error: ..." with exit 2,
though every output file was written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import lmmscan
from lmmscan.demo import copy_study

PYTHONPATH = str(Path(lmmscan.__file__).resolve().parents[1])


@pytest.mark.parametrize("stdout", ["closed", "full"])
def test_a_lost_summary_leaves_the_run_and_its_status(tmp_path, stdout):
    study = copy_study(tmp_path / "in")
    out = tmp_path / "r"
    argv = [sys.executable, "-m", "lmmscan", "scan", "--bfile", str(study), "--pheno",
            f"{study}.pheno.txt", "--threads", "1", "--out", str(out)]  # fmt: skip
    redirect = ">&-" if stdout == "closed" else ">/dev/full"
    command = " ".join(f"'{a}'" for a in argv) + f" {redirect}"
    proc = subprocess.run(
        ["sh", "-c", command],
        env={"PYTHONPATH": PYTHONPATH, "PATH": "/usr/bin:/bin"},
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("lmmscan: warning: the summary on standard output was cut short")
    assert Path(f"{out}.assoc.txt").stat().st_size > 0
    assert Path(f"{out}.null.json").exists()


def test_a_closed_stdout_with_nothing_to_print_says_nothing(tmp_path):
    """--quiet prints nothing: a closed stdout is no loss (the first version
    warned anyway, and a failed run then printed two lines)."""
    study = copy_study(tmp_path / "in")
    argv = [sys.executable, "-m", "lmmscan", "kinship", "--bfile", str(study), "--pheno",
            f"{study}.pheno.txt", "--quiet", "--out", str(tmp_path / "k.txt")]  # fmt: skip
    proc = subprocess.run(
        ["sh", "-c", " ".join(f"'{a}'" for a in argv) + " >&-"],
        env={"PYTHONPATH": PYTHONPATH, "PATH": "/usr/bin:/bin"},
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
