#!/usr/bin/env bash
# The whole test suite against an installed wheel, not the source tree:
#
#     scripts/test_wheel.sh wheelhouse/lmmscan-*.whl [PYTEST ARGS...]
#
# A fresh venv gets the wheel with its "test" extra; the tests run from a
# copy of tests/ beside the few repository files they read (README.md,
# examples/, the demo data under python/lmmscan/data/) but without
# python/lmmscan's modules, so `import lmmscan` can only find the wheel (the
# script checks).  pyproject.toml is copied for pytest's settings (strict
# markers, warnings as errors).  PYTHON picks the interpreter (default python3).
set -euo pipefail
wheel=$(realpath "$1")
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d /tmp/lmmscan-wheeltest.XXXXXX)
trap 'rm -rf "$work"' EXIT

"$python" -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install --quiet --upgrade pip
"$py" -m pip install --quiet "$wheel[test]"

tree="$work/tree"
mkdir -p "$tree/python/lmmscan"
cp -r "$repo/tests" "$repo/examples" "$repo/README.md" "$repo/pyproject.toml" "$tree/"
cp -r "$repo/python/lmmscan/data" "$tree/python/lmmscan/"
cd "$tree"
"$py" - "$work/venv" <<'PY'
import sys
import lmmscan, lmmscan._core
assert lmmscan.__file__.startswith(sys.argv[1]), lmmscan.__file__
print("testing", lmmscan.__version__, "from", lmmscan._core.__file__)
PY
"$py" -m pytest -p no:cacheprovider "$@"
