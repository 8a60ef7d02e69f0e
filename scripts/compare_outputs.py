"""Check that the ``lmmscan`` command line writes the same outputs before and after a change.

``run`` executes a fixed matrix of ``PY -m lmmscan ...`` commands on the committed
mouse_hs1940 test data (kinship, scan in every format, with and without a kinship file,
--lambda null, --loco, two phenotypes, a covariate, BIMBAM input, a saved
eigendecomposition, an interrupted and a killed scan finished with --resume, and the
built-in demo) and keeps every output under one directory.  ``compare`` then checks two
such directories file by file:

* tables and other text (``*.assoc.txt``, ``*.glm.linear``, ``*.regenie``, ``*.ssf.tsv``,
  ``*.txt``, the commands' stdout/stderr under ``logs/``, ...): byte for byte;
* ``*.json`` (``*.null.json``, ``status.json``): equal, key order included, once every
  key named ``seconds`` (wall-clock timings) is removed at any depth;
* ``*.npz``: array by array, same names, dtypes, shapes and bits (a .npz's zip headers
  carry the time it was written, so its bytes are not compared);
* ``*.png``: skipped (drawn only where matplotlib is installed);
* ``env.json`` (Python and package versions of the run): differences are printed as NOTE
  lines, not failures: they are no output of lmmscan, but they explain differences (the
  last digits of a table depend on numpy/scipy/OpenBLAS, so compare runs made with the
  same versions).

Usage (from the repository root; PY is the Python that has the lmmscan to test)::

    python scripts/compare_outputs.py run --python /tmp/venv-base/bin/python --out /tmp/base
    python scripts/compare_outputs.py run --python python --out /tmp/new
    python scripts/compare_outputs.py compare /tmp/base /tmp/new

``run`` exits 1 when a command's exit status is not the expected one (0, or 130 / -9 for
the deliberately interrupted / killed scans) or when a resumed scan's outputs differ from
the uninterrupted scan's; ``compare`` exits 1 on any difference.  The demo runs with
matplotlib hidden, so that it writes no plots wherever it runs.  Both need only the
standard library and numpy; ``run`` needs an empty or missing output directory.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "mouse_hs1940"
STEM = "mouse_hs1940"
# the CLI's private interrupt hook (python/lmmscan/cli/checkpoint.py)
HOOK = "LMMSCAN_TEST_STOP_AFTER_BLOCKS"
COMMON = ["--threads", "2", "--quiet"]

# Paths below are relative to the output directory, which is every command's working
# directory: nothing the commands print or write then depends on where DIR is.
PATHS = {
    "bfile": f"data/{STEM}",
    "pheno": f"data/{STEM}.pheno.txt",
    "covar": f"data/{STEM}.covar.txt",
    "geno": f"data/{STEM}.geno.txt.gz",
    "anno": f"data/{STEM}.anno.txt",
    "kc": "kinship_centered/K.cXX.txt",
    "ks": "kinship_standardized/K.sXX.txt",
    "kb": "kinship_bimbam/K.cXX.txt",
    "eigen": "eigen/E.npz",
}
BIMBAM = "--bimbam-geno {geno} --bimbam-anno {anno} --pheno {pheno}"
RESUME = "scan --bfile {bfile} --kinship {kc} --test all --block-size 2000"

# ``lmmscan demo`` adds --plot (and writes PNGs and another command line to stdout) when
# matplotlib is importable; this runs ``-m lmmscan`` with matplotlib hidden so that the
# demo does the same work in every environment.
NO_MPL = (
    "import runpy, sys; sys.modules['matplotlib'] = None; "
    "runpy.run_module('lmmscan', run_name='__main__', alter_sys=True)"
)

# case: its commands, run in this order in the output directory (a later case may read an
# earlier one's output); a scan without --out writes {case}/out.*; COMMON is appended to
# every command but the demo's, which has no --threads.
CASES: dict[str, list[str]] = {
    "kinship_centered": ["kinship --bfile {bfile} --out {kc}"],
    "kinship_standardized": ["kinship --bfile {bfile} --method standardized --out {ks}"],
    "kinship_npy": ["kinship --bfile {bfile} --out kinship_npy/K.cXX.npy"],
    "kinship_bimbam": ["kinship " + BIMBAM + " --out {kb}"],
    "scan_wald": ["scan --bfile {bfile} --kinship {kc}"],
    "scan_gemma": ["scan --bfile {bfile} --kinship {kc} --test all --format gemma"],
    "scan_plink2": ["scan --bfile {bfile} --kinship {kc} --test all --format plink2"],
    "scan_regenie": ["scan --bfile {bfile} --kinship {kc} --test all --format regenie"],
    "scan_gwas_ssf": ["scan --bfile {bfile} --kinship {kc} --test all --format gwas-ssf"],
    "scan_lrt": ["scan --bfile {bfile} --kinship {kc} --test lrt"],
    "scan_score": ["scan --bfile {bfile} --kinship {kc} --test score"],
    "scan_kinship_sxx": ["scan --bfile {bfile} --kinship {ks} --test all"],
    "scan_kinship_inrun": ["scan --bfile {bfile} --test all"],
    "scan_kinship_inrun_std": ["scan --bfile {bfile} --kinship-method standardized"],
    "scan_lambda_null_wald": ["scan --bfile {bfile} --kinship {kc} --lambda null --test wald"],
    "scan_lambda_null_all": ["scan --bfile {bfile} --kinship {kc} --lambda null --test all"],
    "scan_loco_all": ["scan --bfile {bfile} --loco --test all"],
    "scan_loco_wald": ["scan --bfile {bfile} --loco --test wald"],
    "scan_loco_lambda_null": ["scan --bfile {bfile} --loco --lambda null"],
    "scan_two_pheno": [
        "scan --bfile {bfile} --kinship {kc} --pheno {pheno} --pheno-col 1,6 --test all"
    ],
    "scan_two_pheno_plink2": [
        "scan --bfile {bfile} --kinship {kc} --pheno {pheno} "
        "--pheno-col 1,6 --test all --format plink2"
    ],
    "scan_covar": [
        "scan --bfile {bfile} --kinship {kc} --pheno {pheno} --pheno-col 1 "
        "--covar {covar} --test all"
    ],
    "scan_bimbam": ["scan " + BIMBAM + " --test all"],
    "scan_bimbam_kinship": ["scan " + BIMBAM + " --kinship {kb}"],
    "eigen": ["eigen --bfile {bfile} --kinship {kc} --out {eigen}"],
    "scan_eigen": ["scan --bfile {bfile} --eigen {eigen} --test all"],
    "scan_eigen_lambda_null": ["scan --bfile {bfile} --eigen {eigen} --lambda null"],
    "resume_reference": [RESUME],
    # interrupted (KeyboardInterrupt, exit 130) once 2 blocks are checkpointed, then resumed
    "resume_interrupt": [RESUME, RESUME + " --resume"],
    # killed (SIGKILL) after writing block 3's rows but not its checkpoint, then resumed
    "resume_kill": [RESUME, RESUME + " --resume"],
    "demo": ["demo --out demo --quiet"],
}

# The first command of these cases runs with the hook set, and its expected status.
INTERRUPTS = {"resume_interrupt": ("2", 130), "resume_kill": ("2:kill", -9)}
# Resumed scans must end with the uninterrupted scan's outputs (same block size).
RESUMED = {"resume_interrupt": "resume_reference", "resume_kill": "resume_reference"}

ENV_PROBE = """
import importlib.metadata as md, json, platform, sys
import lmmscan  # fails here when PY has no lmmscan
out = {"python": platform.python_version(), "implementation": sys.implementation.name}
for name in ("lmmscan", "numpy", "scipy", "pandas", "bed-reader", "threadpoolctl",
             "matplotlib"):
    try:
        out[name] = md.version(name)
    except md.PackageNotFoundError:
        out[name] = None
try:
    import numpy, threadpoolctl
    out["blas"] = sorted({f"{i.get('internal_api')} {i.get('version')}"
                          for i in threadpoolctl.threadpool_info()})
except Exception as exc:
    out["blas"] = repr(exc)
print(json.dumps(out))
"""


# ----------------------------------------------------------------- run


def _prepare_data(out: Path) -> None:
    data = out / "data"
    data.mkdir(parents=True)
    for suffix in ("bed", "bim", "fam", "pheno.txt", "anno.txt"):
        with gzip.open(DATA / f"{STEM}.{suffix}.gz", "rb") as src:
            with open(data / f"{STEM}.{suffix}", "wb") as dst:
                shutil.copyfileobj(src, dst)
    shutil.copyfile(DATA / f"{STEM}.geno.txt.gz", data / f"{STEM}.geno.txt.gz")
    # One covariate: pheno column 4 (0/1, NA for 1183 of the 1940 mice; lmmscan drops
    # those individuals and appends the intercept).
    with open(data / f"{STEM}.pheno.txt", encoding="ascii") as src:
        rows = [line.split() for line in src if line.strip()]
    with open(data / f"{STEM}.covar.txt", "w", encoding="ascii") as dst:
        dst.writelines(f"{row[3]}\n" for row in rows)


def _env_info(python: str) -> dict:
    proc = subprocess.run([python, "-c", ENV_PROBE], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"cannot run {python}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def _same_outputs(out: Path, case: str, ref: str) -> list[str]:
    """Problems with a resumed case's files against its reference case's."""
    a, b = out / ref, out / case
    names_a = sorted(p.name for p in a.iterdir())
    names_b = sorted(p.name for p in b.iterdir())
    if names_a != names_b:
        return [f"files {names_b} != {ref}'s {names_a}"]
    problems = []
    for name in names_a:
        status, detail = _compare_file(a / name, b / name)
        if status != "OK":
            problems.append(f"{name}: {detail}")
    return problems


def cmd_run(args: argparse.Namespace) -> int:
    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()):
        sys.exit(f"{out} exists and is not empty; remove it or name another directory")
    t0 = time.perf_counter()
    env_info = _env_info(args.python)
    out.mkdir(parents=True, exist_ok=True)
    (out / "env.json").write_text(json.dumps(env_info, indent=2) + "\n", encoding="utf-8")
    _prepare_data(out)
    (out / "logs").mkdir()
    base_env = {k: v for k, v in os.environ.items() if k != HOOK}
    status: dict = {"cases": {}, "resume_checks": {}}
    failures = []
    for case, commands in CASES.items():
        if case != "demo":
            (out / case).mkdir()
        steps = []
        for i, command in enumerate(commands, 1):
            argv = command.format(**PATHS).split()
            if argv[0] == "scan" and "--out" not in argv:
                argv += ["--out", f"{case}/out"]
            env, expected = dict(base_env), 0
            if i == 1 and case in INTERRUPTS:
                env[HOOK], expected = INTERRUPTS[case]
            argv = [*argv, *COMMON] if argv[0] != "demo" else argv
            launcher = ["-c", NO_MPL] if argv[0] == "demo" else ["-m", "lmmscan"]
            t = time.perf_counter()
            proc = subprocess.run(
                [args.python, *launcher, *argv], cwd=out, env=env, capture_output=True
            )
            seconds = time.perf_counter() - t
            for stream, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
                if text:  # only non-empty logs are kept
                    (out / "logs" / f"{case}.{i}.{stream}").write_bytes(text)
            ok = proc.returncode == expected
            steps.append(
                {
                    "argv": ["lmmscan", *argv],
                    "env": {HOOK: env[HOOK]} if HOOK in env else {},
                    "expected": expected,
                    "status": proc.returncode,
                    "seconds": round(seconds, 2),
                }
            )
            print(
                f"{'ok  ' if ok else 'FAIL'} {case}.{i}: exit {proc.returncode} "
                f"({seconds:.1f} s) lmmscan {' '.join(argv)}",
                flush=True,
            )
            if not ok:
                failures.append(f"{case}.{i}: exit {proc.returncode}, expected {expected}")
                err = proc.stderr.decode(errors="replace").strip().splitlines()
                for line in err[-5:]:
                    print(f"       {line}")
        status["cases"][case] = steps
        if case in RESUMED and all(s["status"] == s["expected"] for s in steps):
            problems = _same_outputs(out, case, RESUMED[case])
            status["resume_checks"][case] = problems or f"same outputs as {RESUMED[case]}"
            for p in problems:
                failures.append(f"{case} differs from {RESUMED[case]}: {p}")
                print(f"FAIL {case} differs from {RESUMED[case]}: {p}")
    (out / "status.json").write_text(json.dumps(status, indent=2) + "\n", encoding="utf-8")
    total = time.perf_counter() - t0
    if failures:
        print(f"run FAILED ({len(failures)} problems, {total:.0f} s): outputs in {out}")
        return 1
    n = sum(len(c) for c in CASES.values())
    print(f"run ok: {n} commands in {len(CASES)} cases, {total:.0f} s; outputs in {out}")
    return 0


# ----------------------------------------------------------------- compare


def _first_diff_line(a: bytes, b: bytes) -> str:
    la, lb = a.split(b"\n"), b.split(b"\n")
    for i, (x, y) in enumerate(zip(la, lb, strict=False), 1):
        if x != y:
            short = min(len(x), len(y))
            col = next((j for j in range(short) if x[j] != y[j]), short)
            return f"line {i} col {col + 1}: A {_show(x, col)} B {_show(y, col)}"
    return f"A has {len(la) - 1} newlines, B {len(lb) - 1}; the shorter is a prefix of the other"


def _show(line: bytes, col: int, before: int = 30, after: int = 50) -> str:
    """The text of ``line`` around byte ``col``, where it differs."""
    start = max(0, col - before)
    text = line[start : col + after].decode("utf-8", errors="backslashreplace")
    return repr(("..." if start else "") + text + ("..." if col + after < len(line) else ""))


def _drop_seconds(obj):
    """``obj`` without keys named ``seconds`` (wall-clock timings) or ``memory``
    (the peak resident memory measured) at any depth."""
    if isinstance(obj, dict):
        # "memory": the process's measured peak (and the estimate, new in issue 17)
        return {k: _drop_seconds(v) for k, v in obj.items() if k not in ("seconds", "memory")}
    if isinstance(obj, list):
        return [_drop_seconds(v) for v in obj]
    return obj


def _compare_json(a: Path, b: Path) -> tuple[str, str]:
    texts = []
    for path in (a, b):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            return "DIFF", f"{path} is not JSON: {exc}"
        # Dumped again in the file's key order: a change of key order is a difference.
        texts.append(json.dumps(_drop_seconds(data), indent=2, allow_nan=True).encode())
    if texts[0] == texts[1]:
        return "OK", "equal without 'seconds'"
    return "DIFF", "without 'seconds', " + _first_diff_line(*texts)


def _compare_npz(a: Path, b: Path) -> tuple[str, str]:
    with np.load(a, allow_pickle=False) as za, np.load(b, allow_pickle=False) as zb:
        if sorted(za.files) != sorted(zb.files):
            return "DIFF", f"arrays {sorted(za.files)} != {sorted(zb.files)}"
        for name in sorted(za.files):
            x, y = za[name], zb[name]
            if x.dtype != y.dtype or x.shape != y.shape:
                return "DIFF", f"{name}: {x.dtype}{x.shape} != {y.dtype}{y.shape}"
            if x.dtype.kind in "biufc":  # bit for bit (NaN == NaN, -0.0 != 0.0)
                fx = np.ascontiguousarray(x).reshape(-1).view(np.uint8).reshape(x.size, -1)
                fy = np.ascontiguousarray(y).reshape(-1).view(np.uint8).reshape(y.size, -1)
                bad = np.flatnonzero((fx != fy).any(axis=1))
            else:
                bad = np.flatnonzero(x.reshape(-1) != y.reshape(-1))
            if len(bad):
                i = bad[0]
                where = tuple(int(j) for j in np.unravel_index(i, x.shape))
                return "DIFF", (
                    f"{name}{list(where)}: {x.reshape(-1)[i]!r} != "
                    f"{y.reshape(-1)[i]!r} ({len(bad)} of {x.size} elements differ)"
                )
        return "OK", f"{len(za.files)} arrays equal"


def _compare_file(a: Path, b: Path) -> tuple[str, str]:
    if a.suffix == ".json":
        return _compare_json(a, b)
    if a.suffix == ".npz":
        return _compare_npz(a, b)
    da, db = a.read_bytes(), b.read_bytes()
    if da == db:
        return "OK", f"{len(da)} bytes identical"
    return "DIFF", _first_diff_line(da, db)


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def cmd_compare(args: argparse.Namespace) -> int:
    a, b = Path(args.a), Path(args.b)
    for root in (a, b):
        if not (root / "status.json").is_file():
            sys.exit(f"{root} holds no status.json: not the output of 'run'")
    fa, fb = _files(a), _files(b)
    counts = {"OK": 0, "DIFF": 0, "SKIP": 0, "NOTE": 0}
    for name in sorted(fa | fb):
        if name.endswith(".png"):
            where = "" if name in fa and name in fb else f", only in {'A' if name in fa else 'B'}"
            status, detail = "SKIP", f"image, not compared{where}"
        elif name not in fb:
            status, detail = "DIFF", "only in A"
        elif name not in fa:
            status, detail = "DIFF", "only in B"
        elif name == "env.json":
            ea = json.loads((a / name).read_text(encoding="utf-8"))
            eb = json.loads((b / name).read_text(encoding="utf-8"))
            changed = [
                f"{k} {ea.get(k)} -> {eb.get(k)}"
                for k in sorted(set(ea) | set(eb))
                if ea.get(k) != eb.get(k)
            ]
            status = "NOTE" if changed else "OK"
            detail = "environment: " + ("; ".join(changed) if changed else "same versions")
        else:
            status, detail = _compare_file(a / name, b / name)
        counts[status] += 1
        print(f"{status:<4} {name}: {detail}")
    verdict = "SAME" if counts["DIFF"] == 0 else "DIFFERENT"
    print(
        f"{verdict}: {len(fa | fb)} files, {counts['OK']} identical, {counts['DIFF']} "
        f"differ, {counts['SKIP']} skipped (png), {counts['NOTE']} environment notes"
    )
    return 0 if counts["DIFF"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the command matrix with one Python")
    r.add_argument("--python", required=True, metavar="PY", help="Python with lmmscan installed")
    r.add_argument("--out", required=True, metavar="DIR", help="output directory (new or empty)")
    r.set_defaults(func=cmd_run)
    c = sub.add_parser("compare", help="compare two output directories of 'run'")
    c.add_argument("a", metavar="A", help="baseline output directory")
    c.add_argument("b", metavar="B", help="output directory to check against A")
    c.set_defaults(func=cmd_compare)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
