"""Sphinx configuration of lmmscan's documentation (docs/, built by .ci/run).

    pip install ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html

Pages are Markdown (MyST), so docs/edge-cases.md and
docs/mixed-vs-hierarchical.md are pages as they stand and the README's quick
tour is included, not copied.  The command-line reference is generated from
``lmmscan.cli.build_parser()`` (sphinx-argparse) and the API reference from
the docstrings of the public names, ``lmmscan.X`` (autodoc, numpy-style
sections through napoleon).  The walkthrough's figures are drawn by
examples/mixed_vs_hierarchical.py at build time into docs/_generated/.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import runpy
from pathlib import Path

import lmmscan

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent

project = "lmmscan"
author = "lmmscan developers"
copyright = "lmmscan developers, MIT licence"
release = lmmscan.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxarg.ext",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3
# flags are written --flag: no en dashes, no curly quotes in the CLI reference
smartquotes = False

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_numpy_docstring = True
napoleon_google_docstring = False

html_theme = "alabaster"
html_title = f"lmmscan {release}"
html_theme_options = {"description": "GEMMA-exact linear mixed model scans", "page_width": "1100px"}


def _walkthrough_figures() -> None:
    """The four PNGs of mixed-vs-hierarchical.md, drawn by the example itself."""
    out = DOCS / "_generated" / "walkthrough"
    os.environ.setdefault("MPLBACKEND", "Agg")
    example = runpy.run_path(str(ROOT / "examples" / "mixed_vs_hierarchical.py"))
    with contextlib.redirect_stdout(io.StringIO()):
        example["main"](["--out", str(out)])


_walkthrough_figures()


def _api_page_covers_all() -> None:
    """api.md must document every public name (and only those): the refactor
    moves the submodules, not ``lmmscan.__all__``."""
    from sphinx.util import logging

    text = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. auto\w+:: lmmscan\.(\w+)$", text, flags=re.MULTILINE))
    public = set(lmmscan.__all__)
    log = logging.getLogger(__name__)
    for name in sorted(public - documented):
        log.warning("api.md does not document lmmscan.%s (in lmmscan.__all__)", name)
    for name in sorted(documented - public):
        log.warning("api.md documents lmmscan.%s, which is not in lmmscan.__all__", name)


_api_page_covers_all()


_PARAM_NAME = re.compile(r"^\*{0,2}\w+(\s*,\s*\*{0,2}\w+)*(\s*:.*)?$")


def _end_parameters_at_prose(app, what, name, obj, options, lines) -> None:
    """A docstring may close its Parameters section with a paragraph of prose
    ("Returns a :class:`NullModel`, ..."), which numpy-style parsing would take
    for one more parameter; give that paragraph a Notes heading of its own."""
    in_params = False
    i = 0
    while i < len(lines):
        line = lines[i]
        header = i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"} and line.strip()
        if header:
            in_params = line.strip() in ("Parameters", "Other Parameters")
            i += 2
            continue
        prose = line and not line[0].isspace() and not _PARAM_NAME.match(line.strip())
        if in_params and prose and i > 0 and not lines[i - 1].strip():
            lines[i:i] = ["Notes", "-----"]
            in_params = False
            i += 2
        i += 1


def setup(app):
    # before napoleon (priority 500) turns the sections into field lists
    app.connect("autodoc-process-docstring", _end_parameters_at_prose, priority=400)
