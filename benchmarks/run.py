"""GEMMA, JAMMA, FaST-LMM and lmmscan side by side on the same inputs, runs alternated.

    python benchmarks/run.py                      # mouse_hs1940 + simulated 5,000 x 100,000
    python benchmarks/run.py --study mouse        # GEMMA's example only (~2 min)
    python benchmarks/run.py --study many --repeats 2 --no-e2e --skip FaST-LMM
                                                  # the many-SNP study, 500 x 400,000 (~20 min)
    python benchmarks/run.py --quick              # 1 round, simulated study 2,000 x 20,000
    python benchmarks/run.py --study sim --repeats 1 --sim-n 5000 --sim-snps 100000
    python benchmarks/run.py --loco               # also LOCO: FaST-LMM, JAMMA and lmmscan
    python benchmarks/run.py --commit HEAD        # lmmscan built from a clean `git archive`
    python benchmarks/run.py --study mouse --vs b0beec6 --skip gemma,FaST-LMM --repeats 7
                                                  # lmmscan against an older lmmscan

``--vs REV`` also builds REV that way and runs each lmmscan program a second
time with it, next to the first in every round (the --vs build first in
every other round: the second of two runs in a row tends to be faster), and
prints the ratio of the two builds' wall times round by round: a change's
speed against its base, side by side in one run.

By default the installed lmmscan is timed.  ``--commit REV`` builds REV from
``git archive`` (no uncommitted files) into WORKDIR/site_SHA once
(``pip install --no-build-isolation --no-deps --target``) and times that
build, so a shared work tree or another engineer's install cannot change
what is measured.

Every program runs as its own process; wall time, CPU time (user + sys) and
peak RSS come from os.wait4 on that process (its waited-for children
included).  Within a round the programs run one after another, and the order
rotates from round to round, so a burst of load from other users of the
machine falls on different programs; medians over rounds are printed, and
ratios are of those medians.  The load average is printed before and after.

Programs (each on the same PLINK fileset, phenotype and covariates):

- ``gemma -lmm 4``: kinship given (GEMMA's own -gk 1 .cXX.txt); GEMMA's log
  gives its phase times (eigendecomposition, UtX, optimization).
- ``gemma -gk 1``: GEMMA's kinship; GEMMA end to end = -gk 1 + -lmm 4 (the
  sum of the two medians: GEMMA runs them as two commands anyway).
- ``lmmscan exact (API)``: the Python API with the same .cXX.txt, as a user
  calls it (lmmscan.read_plink, read_kinship, fit_null, scan; per-SNP lambda,
  all three tests), then lmmscan.write_table of the table (pandas to_csv for
  a build before it).  Its wall time includes
  the interpreter's start-up and imports; its ``api`` phase is the same work
  timed inside the interpreter (inputs, null fit, scan: what a second scan in
  a running Python session costs), the time issue 2's ratio is about.  ``lmmscan exact
  (CLI)`` the same through ``lmmscan scan --test all`` when the command
  exists (its phases from PREFIX.null.json).  ``lmmscan e2e`` computes the
  kinship itself (GEMMA -gk 1): the CLI without --kinship when it exists,
  else the API.
- ``lmmscan fixed-λ``: as ``lmmscan exact`` with lambda_mode="null" and
  test="wald", the test FaST-LMM's single_snp reports (Wald at the null
  REML lambda; tests/test_fastlmm.py matches its p-values): one lambda, so
  the SNPs are whitened by the Cholesky factor of lambda K + I (half the
  flops of U'G) instead of rotated.
- ``FaST-LMM``: ``single_snp`` with the same .cXX.txt (K0), no LOCO;
  ``FaST-LMM own K``: its default kinship from the test SNPs, no LOCO;
  ``FaST-LMM LOCO`` (--loco): its default leave-one-chromosome-out.  Run
  by ``jobs.py`` in the interpreter that imports FaST-LMM: this one when it
  does, else WORKDIR/venv-fastlmm, which this script makes from PyPI
  (``fastlmm`` at the version of RESULTS.md's figures, and ``six``, which
  pysnptools imports without declaring it).
- ``JAMMA``: JAMMA (PyPI ``jamma``, a GEMMA reimplementation) installed by
  this script into WORKDIR/venv-jamma (``--jamma-version``, default the one
  measured in RESULTS.md), ``-lmm 4`` with the same kinship given as text
  (GEMMA's .cXX.txt) and as ``.npy``; with ``--loco`` its ``-lmm 1 -loco``
  (own kinships) beside ``lmmscan scan --loco --test wald``.
- ``machine limit``: reading every SNP block as lmmscan does (bed-reader,
  float64, analysed samples) plus numpy's U'G for the tested SNPs, with a
  dense n x n U: the floor for any exact scan that rotates genotypes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))


JOBS = [sys.executable, str(HERE / "jobs.py")]
ENV: dict[str, str] = dict(os.environ)  # PYTHONPATH set by --commit
LMMSCAN_EXE: list[str] = []  # the CLI, when it exists


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float
    inner: dict = field(default_factory=dict)


@dataclass
class Program:
    name: str
    cmd: list[str]
    kind: str  # gemma | lmmscan | fastlmm | jamma | limit | cli
    runs: list[Run] = field(default_factory=list)
    log: Path | None = None  # GEMMA's log of the -lmm run
    env: dict[str, str] | None = None  # another lmmscan build's (--vs); default ENV
    twin_of: str | None = None  # the program this one repeats with the --vs build

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)

    def inner_median(self, key: str, minus: str | None = None) -> float | None:
        """Median of a phase (less the phase ``minus`` inside it, per run)."""
        vals = []
        for r in self.runs:
            sec = r.inner.get("seconds", {})
            if sec.get(key) is not None:
                vals.append(sec[key] - (sec.get(minus) or 0.0 if minus else 0.0))
        return statistics.median(vals) if vals else None


def measure_wait4(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    """Run cmd with os.wait4 on its pid: exact rusage of that process tree."""
    out_f = tempfile.TemporaryFile()
    err_f = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=out_f, stderr=err_f, env=env or ENV)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    out_f.seek(0)
    err_f.seek(0)
    out, err = out_f.read().decode(errors="replace"), err_f.read().decode(errors="replace")
    if p.returncode != 0:
        sys.stderr.write(out[-2000:] + err[-3000:])
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited with {p.returncode}")
    inner = {}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            inner = json.loads(line[7:])
    return Run(wall=wall, cpu=ru.ru_utime + ru.ru_stime, rss_mb=ru.ru_maxrss / 1024.0, inner=inner)


def gemma_log_times(log: Path) -> dict:
    """Phase times (seconds) from a GEMMA .log.txt (which prints minutes of clock(),
    i.e. CPU time of the process, not wall time)."""
    keys = {
        "total computation time": "total",
        "time on eigen-decomposition": "eigen",
        "time on calculating UtX": "rotate",
        "time on optimization": "optimization",
        "time elapsed on calculating relatedness matrix": "kinship",
    }
    out: dict[str, float] = {}
    if not log.exists():
        return out
    for line in log.read_text().splitlines():
        for k, v in keys.items():
            if k in line and "=" in line:
                try:
                    out[v] = 60.0 * float(line.split("=")[1].split()[0])
                except ValueError:
                    pass
    return out


def cli_available() -> bool:
    if not LMMSCAN_EXE:
        # this interpreter's lmmscan (a `lmmscan` found on PATH may be another install)
        LMMSCAN_EXE.extend(CLI_FROM_PATH)
    r = subprocess.run([*LMMSCAN_EXE, "scan", "--help"], capture_output=True, env=ENV)
    return r.returncode == 0


def build_commit(rev: str, work: Path) -> tuple[Path, str]:
    """lmmscan at git revision rev, built once into work/site_SHA; (site dir, sha)."""
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    site = work / f"site_{sha}"
    if not (site / "COMMIT").exists():
        src = work / f"src_{sha}"
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        print(f"  [prep] building lmmscan {sha} from git archive into {site}", flush=True)
        archive = subprocess.run(
            ["git", "archive", sha], cwd=REPO, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        pip = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-build-isolation",
            "--no-deps",
            "--target",
            str(site),
            str(src),
        ]
        r = subprocess.run(pip, capture_output=True, text=True)
        if r.returncode != 0:  # one retry: a build under heavy load has failed once here
            r = subprocess.run(pip, capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stdout[-3000:] + r.stderr[-3000:])
            raise RuntimeError(f"building lmmscan {sha} failed")
        (site / "COMMIT").write_text(sha + "\n")
    return site, sha


# -- studies -----------------------------------------------------------------


@dataclass
class Study:
    name: str
    dir: Path
    bfile: str
    pheno: str | None
    covar: str | None
    kinship: str
    n_snps: int


def prepare_mouse(work: Path) -> Study:
    d = work / "mouse"
    d.mkdir(parents=True, exist_ok=True)
    src = REPO / "tests" / "data" / "mouse_hs1940"
    import gzip

    for ext in ("bed", "bim", "fam"):
        dst = d / f"mouse_hs1940.{ext}"
        if not dst.exists():
            with gzip.open(src / f"mouse_hs1940.{ext}.gz", "rb") as fin, open(dst, "wb") as fo:
                shutil.copyfileobj(fin, fo)
    K = d / "gk" / "mouse.cXX.txt"
    if not K.exists():
        subprocess.run(
            ["gemma", "-bfile", "mouse_hs1940", "-gk", "1", "-o", "mouse", "-outdir", "gk"],
            cwd=d,
            check=True,
            capture_output=True,
        )
    n_snps = sum(1 for _ in open(d / "mouse_hs1940.bim"))
    return Study("mouse_hs1940", d, str(d / "mouse_hs1940"), None, None, str(K), n_snps)


# The many-SNP study: ~500 related samples x 400,000 SNPs, as array or
# sequencing studies of a few hundred individuals are (a quarter of the SNPs
# rare, so GEMMA's MAF filter removes ~12%; a fifth of the samples in full-sib
# pairs; 20 chromosomes).  Its lmmscan phases are dominated by per-SNP work:
# tests, filter, table, not by the n x n rotation.
MANY = {"n": 500, "snps": 400_000, "chromosomes": 20, "rare": 0.25, "sib_pairs": 0.2,
        "h2": 0.3, "seed": 20261205}  # fmt: skip


def prepare_sim(work: Path, n: int, snps: int, **extra: object) -> Study:
    d = work / (f"sim_{n}x{snps}" if not extra else f"many_{n}x{snps}")
    d.mkdir(parents=True, exist_ok=True)
    prefix = d / "study"
    # in a child process: wait4's ru_maxrss of every program started later
    # includes this process's high-water mark (Linux keeps it across fork and
    # exec), so simulating 5,000 x 100,000 here would floor every peak RSS
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); "
            "import json; from simulate_study import ensure_study; "
            "ensure_study(sys.argv[2], n=int(sys.argv[3]), snps=int(sys.argv[4]), "
            "**json.loads(sys.argv[5]))",
            str(HERE),
            str(prefix),
            str(n),
            str(snps),
            json.dumps(extra),
        ],
        check=True,
    )
    K = d / "gk" / "study.cXX.txt"
    if not K.exists() or K.stat().st_mtime < (d / "study.bed").stat().st_mtime:
        print(f"  [prep] gemma -gk 1 for {d.name} (once, cached)", flush=True)
        subprocess.run(
            [
                "gemma",
                "-bfile",
                "study",
                "-p",
                "study.pheno.txt",
                "-c",
                "study.covar.txt",
                "-gk",
                "1",
                "-o",
                "study",
                "-outdir",
                "gk",
            ],
            cwd=d,
            check=True,
            capture_output=True,
        )
    return Study(
        f"simulated {n:,} x {snps:,}" + (" (many-SNP study)" if extra else ""),
        d,
        str(prefix),
        str(d / "study.pheno.txt"),
        str(d / "study.covar.txt"),
        str(K),
        snps,
    )


def programs(study: Study, args: argparse.Namespace) -> list[Program]:
    b, out = study.bfile, study.dir / "out"
    out.mkdir(exist_ok=True)
    fastlmm = None if _skipped("FaST-LMM", args) else fastlmm_python(study.dir.parent)
    fl_jobs = [fastlmm or sys.executable, str(HERE / "jobs.py")]
    pc = []
    if study.pheno:
        pc += ["-p", study.pheno]
    if study.covar:
        pc += ["-c", study.covar]
    jpc = []
    if study.pheno:
        jpc += ["--pheno", study.pheno]
    if study.covar:
        jpc += ["--covar", study.covar]
    gemma_lmm = [
        "gemma",
        "-bfile",
        b,
        *pc,
        "-k",
        study.kinship,
        "-lmm",
        "4",
        "-o",
        "g_lmm4",
        "-outdir",
        str(out),
    ]
    progs = [
        Program(
            "lmmscan exact (API)",
            [
                *JOBS,
                "lmmscan",
                "--bfile",
                b,
                "--kinship",
                study.kinship,
                *jpc,
                "--out",
                str(out / "ls_exact"),
            ],
            "lmmscan",
        ),
        Program("gemma -lmm 4", gemma_lmm, "gemma", log=out / "g_lmm4.log.txt"),
        Program(
            "lmmscan fixed-λ (API)",
            [
                *JOBS,
                "lmmscan",
                "--bfile",
                b,
                "--kinship",
                study.kinship,
                *jpc,
                "--mode",
                "null",
                "--test",
                "wald",
                "--out",
                str(out / "ls_null"),
            ],
            "lmmscan",
        ),
        Program(
            "FaST-LMM (K given)",
            [
                *fl_jobs,
                "fastlmm",
                "--bfile",
                b,
                "--kinship",
                study.kinship,
                *jpc,
                "--out",
                str(out / "fl_k"),
            ],
            "fastlmm",
        ),
    ]
    cli = cli_available()
    if cli:
        progs.append(
            Program(
                "lmmscan exact (CLI)",
                [
                    *LMMSCAN_EXE,
                    "scan",
                    "--bfile",
                    b,
                    "--kinship",
                    study.kinship,
                    *pc_cli(study),
                    "--test",
                    "all",
                    "--quiet",
                    "--out",
                    str(out / "ls_cli"),
                ],
                "cli",
                log=out / "ls_cli.null.json",
            )
        )
    if not args.no_e2e:
        gk = ["gemma", "-bfile", b, *pc, "-gk", "1", "-o", "g_gk", "-outdir", str(out)]
        progs += [
            Program("gemma -gk 1", gk, "gemma", log=out / "g_gk.log.txt"),
            Program(
                "lmmscan e2e (kinship + exact)",
                [
                    *LMMSCAN_EXE,
                    "scan",
                    "--bfile",
                    b,
                    *pc_cli(study),
                    "--test",
                    "all",
                    "--quiet",
                    "--out",
                    str(out / "ls_e2e"),
                ],
                "cli",
                log=out / "ls_e2e.null.json",
            )
            if cli
            else Program(
                "lmmscan e2e (kinship + exact)",
                [
                    *JOBS,
                    "lmmscan",
                    "--bfile",
                    b,
                    "--kinship",
                    "compute",
                    *jpc,
                    "--out",
                    str(out / "ls_e2e"),
                ],
                "lmmscan",
            ),
            Program(
                "FaST-LMM own K",
                [*fl_jobs, "fastlmm", "--bfile", b, *jpc, "--out", str(out / "fl_own")],
                "fastlmm",
            ),
        ]
    jamma = jamma_exe(study.dir.parent, args.jamma_version) if not _skipped("JAMMA", args) else None
    if jamma is not None:
        npy = study.dir / "K.npy"
        if not npy.exists():
            import numpy as np

            np.save(npy, np.loadtxt(study.kinship))
        for label, K in (("text", study.kinship), (".npy", str(npy))):
            progs.append(
                Program(
                    f"JAMMA -lmm 4 (K {label})",
                    [
                        jamma,
                        "-bfile",
                        b,
                        *pc,
                        "-k",
                        K,
                        "-lmm",
                        "4",
                        "-o",
                        "j_lmm4",
                        "-outdir",
                        str(out),
                    ],  # fmt: skip
                    "jamma",
                )
            )
    if args.loco:
        progs.append(
            Program(
                "FaST-LMM own K, LOCO",
                [*fl_jobs, "fastlmm", "--bfile", b, *jpc, "--loco", "--out", str(out / "fl_loco")],
                "fastlmm",
            )
        )
        if cli:
            # the same test without LOCO, its kinship computed as LOCO's are:
            # LOCO's yardstick, this scan plus its extra decompositions
            progs.append(
                Program(
                    "lmmscan plain (CLI, wald)",
                    [
                        *LMMSCAN_EXE,
                        "scan",
                        "--bfile",
                        b,
                        *pc_cli(study),
                        "--test",
                        "wald",
                        "--quiet",
                        "--out",
                        str(out / "ls_plain"),
                    ],  # fmt: skip
                    "cli",
                    log=out / "ls_plain.null.json",
                )
            )
            progs.append(
                Program(
                    "lmmscan LOCO (CLI, wald)",
                    [
                        *LMMSCAN_EXE,
                        "scan",
                        "--bfile",
                        b,
                        *pc_cli(study),
                        "--loco",
                        "--test",
                        "wald",
                        "--quiet",
                        "--out",
                        str(out / "ls_loco"),
                    ],  # fmt: skip
                    "cli",
                    log=out / "ls_loco.null.json",
                )
            )
        if jamma is not None:
            progs.append(
                Program(
                    "JAMMA -lmm 1 -loco",
                    [
                        jamma,
                        "-bfile",
                        b,
                        *pc,
                        "-lmm",
                        "1",
                        "-loco",
                        "-o",
                        "j_loco",
                        "-outdir",
                        str(out),
                    ],  # fmt: skip
                    "jamma",
                )
            )
    progs.append(
        Program("machine limit (read + U'G)", [*JOBS, "limit", "--bfile", b, *jpc], "limit")
    )
    if fastlmm is None:
        progs = [p for p in progs if p.kind != "fastlmm"]
    return with_twins(progs)


JAMMA_VERSION = "8.2.4"  # the version of RESULTS.md's figures


def _skipped(name: str, args: argparse.Namespace) -> bool:
    return any(t.strip() and t.strip() in name for t in (args.skip or "").split(","))


FASTLMM_VERSION = "0.6.13"  # the version of RESULTS.md's figures
FASTLMM_PYTHON: list[str] = []  # the interpreter the FaST-LMM jobs ran in, once chosen


def fastlmm_versions(ver: Callable[[str], str]) -> str:
    """FaST-LMM's and pysnptools' versions where the FaST-LMM jobs ran."""
    python = FASTLMM_PYTHON[0] if FASTLMM_PYTHON else sys.executable
    if python == sys.executable:
        return f"FaST-LMM {ver('fastlmm')}, pysnptools {ver('pysnptools')}"
    code = "import importlib.metadata as m; print(m.version('fastlmm'), m.version('pysnptools'))"
    r = subprocess.run([python, "-c", code], capture_output=True, text=True)
    fl, pst = (r.stdout.split() + ["?", "?"])[:2]
    return f"FaST-LMM {fl}, pysnptools {pst} (in {Path(python).parent.parent.name})"


def fastlmm_python(work: Path) -> str | None:
    """An interpreter that imports FaST-LMM: this one when it does, else a
    venv under ``work`` (installed from PyPI once); None, with a note, when
    it cannot be installed."""
    import importlib.util

    # (pysnptools imports six without declaring it: both must be there)
    if all(importlib.util.find_spec(m) is not None for m in ("fastlmm", "six")):
        FASTLMM_PYTHON[:] = [sys.executable]
        return sys.executable
    venv = work / f"venv-fastlmm-{FASTLMM_VERSION}"
    python = venv / "bin" / "python"
    done = venv / "installed"
    if not done.exists():
        try:
            # the venv's pip must not see this process's PYTHONPATH (a build's site)
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
            subprocess.run([str(python), "-m", "pip", "install", "--quiet",
                            f"fastlmm=={FASTLMM_VERSION}", "six", "pandas"],
                           check=True, env=env)  # fmt: skip
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"- FaST-LMM {FASTLMM_VERSION} left out: it did not install ({exc})", flush=True)
            return None
        done.touch()
    FASTLMM_PYTHON[:] = [str(python)]
    return str(python)


def jamma_exe(work: Path, version: str) -> str | None:
    """JAMMA in its own venv under ``work`` (installed from PyPI once); None,
    with a note, when it cannot be installed."""
    venv = work / f"venv-jamma-{version}"
    exe = venv / "bin" / "jamma"
    if not exe.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet",
                            f"jamma=={version}"], check=True)  # fmt: skip
        except (OSError, subprocess.CalledProcessError) as exc:
            print(f"- JAMMA {version} left out: it did not install ({exc})", flush=True)
            return None
    return str(exe)


# the --vs build: (its commit, the environment that imports it)
VS: list[tuple[str, dict[str, str]]] = []
# the console script's function from whichever lmmscan PYTHONPATH gives: cli.run
# where it exists (main, then a fast exit)
CLI_FROM_PATH = [
    sys.executable,
    "-c",
    "import sys; import lmmscan.cli as c; "
    "sys.argv[0] = 'lmmscan'; "
    "(getattr(c, 'run', None) or (lambda: sys.exit(c.main())))()",
]


def with_twins(progs: list[Program]) -> list[Program]:
    """Each lmmscan program followed by its twin on the --vs build (if any):
    the same command, its outputs under other names."""
    if not VS:
        return progs
    sha, env = VS[0]
    out: list[Program] = []
    for p in progs:
        out.append(p)
        if p.kind not in ("lmmscan", "cli"):
            continue
        cmd = list(p.cmd)
        if p.kind == "cli":
            cmd = CLI_FROM_PATH + cmd[len(LMMSCAN_EXE) :]
        i = cmd.index("--out") + 1
        cmd[i] += "_vs"
        log = None if p.log is None else p.log.with_name(Path(cmd[i]).name + ".null.json")
        out.append(Program(f"{p.name} @ {sha}", cmd, p.kind, log=log, env=env, twin_of=p.name))
    return out


def swap_twins(order: list[Program]) -> list[Program]:
    """``order`` with each program and its --vs twin next to it swapped: every
    other round runs the --vs build first, since the second of two runs in a
    row was measured 5-8% faster on mouse_hs1940 whichever build it was."""
    out = list(order)
    i = 0
    while i + 1 < len(out):
        if out[i + 1].twin_of == out[i].name:
            out[i], out[i + 1] = out[i + 1], out[i]
            i += 2
        else:
            i += 1
    return out


def pc_cli(study: Study) -> list[str]:
    out = []
    if study.pheno:
        out += ["--pheno", study.pheno]
    if study.covar:
        out += ["--covar", study.covar]
    return out


def _q(cmd: list[str]) -> str:
    import shlex

    return " ".join(shlex.quote(c) for c in cmd)


def run_study(study: Study, args: argparse.Namespace) -> list[Program]:
    progs = programs(study, args)
    skip = [t.strip() for t in (args.skip or "").split(",") if t.strip()]
    first = progs[0]
    progs = [p for p in progs if not any(t in p.name for t in skip)]
    if first not in progs and any(p.kind == "limit" for p in progs):
        # the machine limit is given the tested-SNP count this program reports
        print(f"  [skip] kept {first.name!r}: the machine limit needs its tested-SNP count")
        progs.insert(0, first)
    if not progs:
        raise SystemExit(f"--skip {args.skip!r} leaves no program to run")
    tested = None
    print(
        f"\n== {study.name}: {len(progs)} programs x {args.repeats} rounds, load average {load()}",
        flush=True,
    )
    for r in range(args.repeats):
        order = progs[r % len(progs) :] + progs[: r % len(progs)]
        # the limit needs the tested-SNP count: first round puts lmmscan first
        if tested is None:
            order = [progs[0]] + [p for p in order if p is not progs[0]]
        if r % 2:
            order = swap_twins(order)
        for p in order:
            cmd = list(p.cmd)
            if p.kind == "limit":
                cmd += ["--tested", str(tested)]
            run = measure_wait4(cmd, study.dir, p.env)
            if p.kind == "gemma" and p.log is not None:
                run.inner = {"seconds": gemma_log_times(p.log)}
            if p.kind == "cli" and p.log is not None and p.log.exists():
                meta = json.loads(p.log.read_text())
                run.inner = {
                    "seconds": meta.get("seconds", {}),
                    "snps_tested": meta.get("n_snps_analyzed"),
                }
            p.runs.append(run)
            if p.kind == "lmmscan" and tested is None:
                tested = run.inner["snps_tested"]
            print(
                f"  round {r + 1}: {p.name:32s} {run.wall:8.2f} s wall {run.cpu:8.2f} s CPU "
                f"{run.rss_mb:8.0f} MB  (load {load()})",
                flush=True,
            )
            if run.inner.get("seconds"):  # phases now, so a cut-short run keeps them
                print(
                    "      phases: "
                    + ", ".join(f"{k} {v:.2f}" for k, v in run.inner["seconds"].items()),
                    flush=True,
                )
    return progs


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    # two decimals below 10x: a target such as 3x or 1.5x is read off the table
    return f"{r:.1f}×" if r >= 10 else f"{r:.2f}×"


def twins_table(progs: list[Program]) -> list[str]:
    """This build against the --vs build, program by program: the ratio of
    wall times within each round (the two ran one after the other)."""
    twins = [p for p in progs if p.twin_of]
    if not twins:
        return []
    by = {p.name: p for p in progs}
    lines = [
        f"This build against lmmscan {VS[0][0]} (--vs), each pair run one after the other in "
        "every round, the --vs build first in every other round:",
        "",
        "| program | this build, wall s (median) | --vs build | ratio this / --vs: median "
        "(min-max over rounds) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for t in twins:
        p = by[t.twin_of or ""]
        per_round = sorted(a.wall / b.wall for a, b in zip(p.runs, t.runs, strict=True))
        lines.append(
            f"| {p.name} | {p.median('wall'):.3f} | {t.median('wall'):.3f} | "
            f"{statistics.median(per_round):.3f} ({per_round[0]:.3f}-{per_round[-1]:.3f}) |"
        )
    return [*lines, ""]


def added(a: float | None, b: float | None) -> float | None:
    """a + b, or None when either program did not run (--skip)."""
    return a + b if a is not None and b is not None else None


def loco_chromosomes(bim: Path) -> int:
    """The chromosomes a LOCO scan decomposes a kinship for: the .bim's
    chromosome names but GEMMA's "-9" (unknown)."""
    with open(bim) as fh:
        return len({line.split(None, 1)[0] for line in fh if line.strip()} - {"-9"})


def report(study: Study, progs: list[Program]) -> str:
    by = {p.name: p for p in progs}
    lines = [
        f"### {study.name}",
        "",
        "| program | wall s (median) | CPU s | peak RSS MB | runs |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for p in progs:
        lines.append(
            f"| {p.name} | {p.median('wall'):.2f} | {p.median('cpu'):.2f} | "
            f"{max(r.rss_mb for r in p.runs):.0f} | {len(p.runs)} |"
        )
    lines.append("")
    lines += twins_table(progs)

    def w(name: str) -> float | None:
        return by[name].median("wall") if name in by else None

    exact = "lmmscan exact (CLI)" if "lmmscan exact (CLI)" in by else "lmmscan exact (API)"
    rows = [
        (f"GEMMA -lmm 4 / {exact}", w("gemma -lmm 4"), w(exact)),
        ("FaST-LMM (K given) / " + exact, w("FaST-LMM (K given)"), w(exact)),
        (
            "FaST-LMM (K given) / lmmscan fixed-λ",
            w("FaST-LMM (K given)"),
            w("lmmscan fixed-λ (API)"),
        ),
        ("FaST-LMM own K / lmmscan fixed-λ", w("FaST-LMM own K"), w("lmmscan fixed-λ (API)")),
        (
            "GEMMA e2e (-gk 1 + -lmm 4) / lmmscan e2e",
            added(w("gemma -gk 1"), w("gemma -lmm 4")),
            w("lmmscan e2e (kinship + exact)"),
        ),
        ("FaST-LMM LOCO / " + exact, w("FaST-LMM own K, LOCO"), w(exact)),
        ("JAMMA -lmm 4 (K text) / " + exact, w("JAMMA -lmm 4 (K text)"), w(exact)),
        ("JAMMA -lmm 4 (K .npy) / " + exact, w("JAMMA -lmm 4 (K .npy)"), w(exact)),
        ("JAMMA -loco / lmmscan LOCO", w("JAMMA -lmm 1 -loco"), w("lmmscan LOCO (CLI, wald)")),
    ]

    def inner(name: str, key: str) -> float | None:  # programs left out by --skip: None
        return by[name].inner_median(key) if name in by else None

    g_opt = inner("gemma -lmm 4", "optimization")  # GEMMA's clock(): CPU s
    api = "lmmscan exact (API)"
    rows.insert(
        1,
        (
            "GEMMA -lmm 4 / lmmscan.scan in a running interpreter (API 'api' phase)",
            w("gemma -lmm 4"),
            inner(api, "api"),
        ),
    )
    ls_tests = inner(api, "scan.tests")
    rows.append(("λ search + tests: GEMMA 'optimization' / lmmscan scan.tests", g_opt, ls_tests))
    lim = inner("machine limit (read + U'G)", "limit")
    # the blocks' phase: lmmscan.scan less the null fit it runs first
    scan_exact = by[api].inner_median("scan", minus="scan.null_fit") if api in by else None
    scan_null = (
        by["lmmscan fixed-λ (API)"].inner_median("scan", minus="scan.null_fit")
        if "lmmscan fixed-λ (API)" in by
        else None
    )
    # LOCO's yardstick: the plain scan (same test, kinship computed) plus the
    # decompositions LOCO adds, one per chromosome beyond the plain scan's
    # one, each as long as the plain scan's eigen phase
    plain, plain_eigen = w("lmmscan plain (CLI, wald)"), inner("lmmscan plain (CLI, wald)", "eigen")
    if plain is not None and plain_eigen is not None:
        chroms = loco_chromosomes(Path(study.bfile + ".bim"))
        rows.append(
            (
                f"lmmscan LOCO / (plain + {chroms - 1} more decompositions of "
                f"{plain_eigen:.2f} s each)",
                w("lmmscan LOCO (CLI, wald)"),
                plain + (chroms - 1) * plain_eigen,
            )
        )
    rows.append(("lmmscan exact scan phase / machine limit", scan_exact, lim))
    rows.append(("lmmscan fixed-λ scan phase / machine limit", scan_null, lim))
    lines += [
        "| ratio of median wall times | value | numerator s | denominator s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, a, b in rows:
        if a is None or b is None:
            continue
        lines.append(f"| {label} | {ratio(a, b)} | {a:.2f} | {b:.2f} |")
    lines.append("")
    tested = by[exact].runs[-1].inner.get("snps_tested") if exact in by else None
    if tested:
        lines += [
            f"{exact}: {w(exact) / tested * 1e6:.1f} µs per tested SNP end to end "
            f"({tested:,} SNPs tested).",
            "",
        ]

    def c(name: str) -> float | None:
        return by[name].median("cpu") if name in by else None

    cpu_rows = [
        (f"GEMMA -lmm 4 / {exact}", c("gemma -lmm 4"), c(exact)),
        (
            "FaST-LMM (K given) / lmmscan fixed-λ",
            c("FaST-LMM (K given)"),
            c("lmmscan fixed-λ (API)"),
        ),
        (
            "GEMMA e2e / lmmscan e2e",
            added(c("gemma -gk 1"), c("gemma -lmm 4")),  # None when either was skipped
            c("lmmscan e2e (kinship + exact)"),
        ),
    ]
    lines += [
        "| ratio of median CPU times | value | numerator s | denominator s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, a, b in cpu_rows:
        if a is None or b is None:
            continue
        lines.append(f"| {label} | {ratio(a, b)} | {a:.2f} | {b:.2f} |")
    lines.append("")
    # phases
    lines.append("Phases (median seconds inside the process):")
    lines.append("")
    for p in progs:
        keys = sorted({k for r in p.runs for k in r.inner.get("seconds", {})})
        if keys:
            lines.append(f"- {p.name}: " + ", ".join(f"{k} {p.inner_median(k):.2f}" for k in keys))
    if "machine limit (read + U'G)" in by:
        lim_run = by["machine limit (read + U'G)"].runs[-1].inner
        lines.append(
            f"- machine limit: n = {lim_run.get('n')}, tested SNPs = "
            f"{lim_run.get('snps_tested')}, U'G at {lim_run.get('gflops_rotate')} "
            "GFLOP/s"
        )
    return "\n".join(lines)


LMMSCAN_COMMIT: list[str] = []


def versions() -> str:
    import importlib.metadata as md

    def ver(pkg: str) -> str:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return "not installed"

    try:
        gemma = subprocess.run(["gemma"], capture_output=True, text=True).stdout.splitlines()
    except FileNotFoundError:
        gemma = ["gemma not installed"]
    if LMMSCAN_COMMIT:
        commit = f"{LMMSCAN_COMMIT[0]} (clean build from git archive)"
    else:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        commit += " (installed package; work tree HEAD)"
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        import numpy  # noqa: F401  (load both OpenBLAS copies: numpy's and scipy's)
        import scipy.linalg  # noqa: F401
        from threadpoolctl import threadpool_info

        blas = "; ".join(
            f"{i['filepath'].split('/')[-2]}: {i['internal_api']} {i['version']} "
            f"{i['threading_layer']} {i['num_threads']} threads ({i['architecture']})"
            for i in threadpool_info()
        )
    except ImportError:
        blas = "threadpoolctl not installed"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return "\n".join(
        [
            f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            f"- machine: {os.cpu_count()} cores, {cpu}, {mem:.0f} GiB; {platform.platform()}",
            f"- GEMMA: {gemma[0] if gemma else '?'}",
            f"- {fastlmm_versions(ver)}",
            f"- lmmscan at commit {commit}; numpy {ver('numpy')}, "
            f"scipy {ver('scipy')}, bed-reader {ver('bed-reader')}, "
            f"Python {platform.python_version()}",
            f"- BLAS: {blas}",
            f"- lmmscan CLI: {'yes' if cli_available() else 'not available at this commit'}",
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", choices=["mouse", "sim", "many", "all"], default="all")
    ap.add_argument("--quick", action="store_true", help="1 round; simulated study 2,000 x 20,000")
    ap.add_argument("--repeats", type=int, default=None, help="rounds (default 3, quick 1)")
    ap.add_argument("--sim-n", type=int, default=None)
    ap.add_argument("--sim-snps", type=int, default=None)
    ap.add_argument("--loco", action="store_true", help="also FaST-LMM with LOCO (slow)")
    ap.add_argument("--no-e2e", action="store_true", help="skip the end-to-end programs")
    ap.add_argument(
        "--skip",
        default=None,
        help="comma-separated substrings: leave out the programs whose name has "
        "one (e.g. 'gemma -lmm' for the 50-minute GEMMA run of the sim study)",
    )
    ap.add_argument("--jamma-version", default=JAMMA_VERSION, help="JAMMA from PyPI")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "lmmscan-bench"))
    ap.add_argument("--markdown", default=None, help="also write the tables to this file")
    ap.add_argument(
        "--commit",
        default=None,
        help="time lmmscan built from this git revision (clean git archive)",
    )
    ap.add_argument(
        "--vs",
        default=None,
        metavar="REV",
        help="also time lmmscan built from git revision REV, each program right after "
        "its twin, and print the ratios",
    )
    args = ap.parse_args()
    args.repeats = args.repeats or (1 if args.quick else 3)
    sim_n = args.sim_n or (2000 if args.quick else 5000)
    sim_snps = args.sim_snps or (20_000 if args.quick else 100_000)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.commit:
        site, sha = build_commit(args.commit, work)
        ENV["PYTHONPATH"] = os.pathsep.join([str(site), ENV.get("PYTHONPATH", "")]).rstrip(":")
        LMMSCAN_COMMIT.append(sha)
        # the console script's function: cli.run where it exists (main, then a fast exit)
        LMMSCAN_EXE[:] = CLI_FROM_PATH
    if args.vs:
        site, sha = build_commit(args.vs, work)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(":")
        VS.append((sha, env))
    if not _skipped("FaST-LMM", args):
        fastlmm_python(work)  # installed first, so that the header names its version
    print(versions(), flush=True)
    print(f"- load average at start: {load()}")
    sections = []
    studies = []
    if args.study in ("mouse", "all"):
        studies.append(prepare_mouse(work))
    if args.study in ("sim", "all"):
        studies.append(prepare_sim(work, sim_n, sim_snps))
    if args.study == "many":
        many = {k: v for k, v in MANY.items() if k not in ("n", "snps")}
        studies.append(prepare_sim(work, int(MANY["n"]), int(MANY["snps"]), **many))
    for st in studies:
        progs = run_study(st, args)
        sections.append(report(st, progs))
        print("\n" + sections[-1], flush=True)
    text = versions() + f"\n- load average at end: {load()}\n\n" + "\n\n".join(sections) + "\n"
    if args.markdown:
        Path(args.markdown).write_text(text)
    print(f"\n- load average at end: {load()}")


if __name__ == "__main__":
    main()
