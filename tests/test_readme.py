"""The README's examples run as written, on the demo's files, so they cannot rot.

Its Python blocks run one after the other in one namespace, and its command
lines (the indented lines that start with ``lmmscan`` or ``mkdir``) in a
shell, in a directory where ``lmmscan demo`` would have left the study
(``lmmscan-demo/``).  The set-up commands (``pip install ...``) are not run:
CI runs them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import lmmscan
from lmmscan.demo import copy_study

README = Path(__file__).resolve().parents[1] / "README.md"
PYTHONPATH = str(Path(lmmscan.__file__).resolve().parents[1])


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def command_lines(text: str) -> list[str]:
    """Indented lmmscan / mkdir lines outside fenced blocks, comments dropped."""
    lines = []
    for line in text.splitlines():
        if re.match(r"^    (lmmscan|mkdir) ", line):
            lines.append(line.strip().split("  #")[0].strip())
    return lines


@pytest.fixture()
def demo_dir(tmp_path, monkeypatch) -> Path:
    copy_study(tmp_path / "lmmscan-demo")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_has_examples():
    text = README.read_text(encoding="utf-8")
    assert len(python_blocks(text)) >= 3
    assert any(c.startswith("lmmscan kinship") for c in command_lines(text))
    assert any(c.startswith("lmmscan scan") for c in command_lines(text))


def test_python_examples_run_as_written(demo_dir):
    namespace: dict = {}
    for block in python_blocks(README.read_text(encoding="utf-8")):
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    assert len(namespace["table"]) > 2000
    assert Path("K.npz").exists()


def test_command_examples_run_as_written(demo_dir):
    env = {**os.environ, "PYTHONPATH": PYTHONPATH}
    lmmscan_cmd = f"{sys.executable} -m lmmscan"
    for line in command_lines(README.read_text(encoding="utf-8")):
        cmd = re.sub(r"(^|&& )lmmscan ", rf"\g<1>{lmmscan_cmd} ", line)
        proc = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, (line, proc.stderr)
    assert Path("out/study.assoc.txt").exists() and Path("out/big.assoc.txt").exists()
