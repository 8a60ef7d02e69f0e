"""The memory plan: a command's peak memory estimated from the sizes and
options before any large allocation, against what the process may use.

Every large array of a run is samples-sized: the kinship (8 N^2 bytes for N
individuals in the genotype file), the eigenvectors (8 n^2 for n analysed
ones; 8 n k for a low-rank basis of k directions), the eigensolver's
workspace (``dsyevr``: O(n); ``dsyevd``: 8 (2 n^2 + 6 n + 1)), the whitening
factor (8 n^2), and the blocks of genotypes in flight (samples x block
float64 each).  A run goes through phases (the kinship, its decomposition,
the scan); the peak is the largest sum of what is alive in one phase, plus
the interpreter and its libraries (:data:`BASE`) and the variant table.

:func:`available` is the memory the process may still take: a cgroup's
limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``) less the group's
use, or else the kernel's MemAvailable, plus what the process holds already.
:func:`check` raises :class:`NotEnoughMemory` (an ``InputError``: exit 2 on
the command line) when the estimate does not fit, with the options that
would.  ``--memory-limit`` replaces the measured figure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ._errors import InputError

MiB = 1 << 20
GiB = 1 << 30

# interpreter, numpy, scipy, pandas, the .bed reader and lmmscan once a scan
# has run (BLAS and thread pools): the peak RSS of the low-rank, exact and
# whitened scans at n = 2,000-10,000 less their arrays as counted here
# (benchmarks/bench_memory_plan.py) is 84-128 MiB, growing with n; bed-reader
# instead of pgenlib adds 6-8 MiB
BASE = 100 * MiB
# the variant table (.bim in pandas: rs, alleles, chr as Python strings)
PER_VARIANT = 160
# a LOCO row held until the end (FileOrder): about 17 columns of 8 bytes,
# twice while they are sorted into file order
HELD_ROW = 2 * 17 * 8
# samples x block float64 arrays alive while a block is scanned (traced with
# tracemalloc): the block being read ahead, the one scanned and its imputed
# copy; a dense basis adds its rotated (or whitened) block, n x block, a
# low-rank one only k x block.
BLOCKS_IN_FLIGHT = 3


# glibc's malloc under the command (lmmscan.cli.keep_freed_blocks): blocks up
# to this size come from the heap, and up to this much freed memory at the
# heap's top is kept.  The kinship pass's blocks, freed before the
# decomposition's workspace (mapped afresh, larger), stay: 67 MB above the
# plan at n = 4,000 (helper 60: 572 MiB against 471).
MALLOC_KEEP = 64 << 20


def glibc_function(name: str, *argtypes: Any) -> Any:
    """The C library's function ``name`` (its arguments' ctypes types set),
    or None where the C library is not glibc (musl, macOS)."""
    import os

    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
        import ctypes

        function = getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError, ValueError):
        return None
    function.argtypes = list(argtypes)
    return function


def release_freed_heap() -> None:
    """Return the heap's free pages to the kernel (glibc's malloc_trim),
    between the command's phases: what the kinship pass and the
    decomposition freed stays in their threads' heaps (up to MALLOC_KEEP
    each, more between live chunks), unused by the scan's blocks.  A scan of
    2,000 samples in blocks of 5,000 SNPs peaked 93-134 MiB above its plan;
    mouse_hs1940's time is unchanged (6 runs alternated)."""
    import ctypes

    trim = glibc_function("malloc_trim", ctypes.c_size_t)
    if trim is not None:
        trim(0)


# LOCO keeps each chromosome's kinship sum while they fit in this (lmmscan.loco)
LOCO_SUMS = 2 << 30


class NotEnoughMemory(InputError):
    """The estimated peak memory exceeds what the process may use."""


def parse_size(text: str, flag: str = "--memory-limit") -> int:
    """Bytes from "16G", "512M", "1.5T", "2000000000" (K, M, G, T: powers of 1024)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(i?[bB])?\s*", str(text))
    if not m:
        raise InputError(f"{flag}: {text!r} is not a size (e.g. 16G, 512M)")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    value = int(float(m.group(1)) * scale)
    if value <= 0:
        raise InputError(f"{flag}: {text!r} must be positive")
    return value


def fmt(nbytes: float) -> str:
    return f"{nbytes / GiB:.2f} GB" if nbytes >= GiB / 4 else f"{nbytes / MiB:.0f} MB"


@dataclass
class Plan:
    """A run's phases, each the arrays alive in it (name -> bytes)."""

    what: str
    phases: dict[str, dict[str, int]] = field(default_factory=dict)
    fixed: dict[str, int] = field(default_factory=dict)  # alive throughout

    def add(self, phase: str, item: str, nbytes: float) -> None:
        self.phases.setdefault(phase, {})[item] = int(nbytes)

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=lambda p: sum(self.phases[p].values()))

    @property
    def peak(self) -> int:
        top = max((sum(v.values()) for v in self.phases.values()), default=0)
        return BASE + sum(self.fixed.values()) + top

    def describe(self) -> str:
        phase = self.peak_phase
        items = ", ".join(f"{k} {fmt(v)}" for k, v in self.phases[phase].items() if v)
        return f"{fmt(self.peak)} at its peak ({phase}: {items})"

    def as_dict(self) -> dict:
        return {
            "estimate_bytes": self.peak,
            "peak_phase": self.peak_phase,
            "fixed": {k: v for k, v in self.fixed.items() if v},
            "phases": {p: dict(v) for p, v in self.phases.items()},
        }


def _cgroup_room() -> tuple[int, str] | None:
    """(limit - usage, source) of this process's cgroup, when it has a limit."""
    candidates = [
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current", "cgroup memory.max"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
            "cgroup memory.limit_in_bytes",
        ),
    ]
    try:
        with open("/proc/self/cgroup", encoding="ascii") as fh:
            for line in fh:  # cgroup v2: "0::/path"
                parts = line.strip().split(":", 2)
                if len(parts) == 3 and parts[0] == "0" and parts[2] not in ("", "/"):
                    base = "/sys/fs/cgroup" + parts[2]
                    candidates.insert(
                        0, (f"{base}/memory.max", f"{base}/memory.current", "cgroup memory.max")
                    )
    except OSError:
        pass
    for limit_path, usage_path, name in candidates:
        try:
            with open(limit_path, encoding="ascii") as fh:
                raw = fh.read().strip()
            if raw == "max" or not raw.isdigit() or int(raw) >= 1 << 60:
                continue
            with open(usage_path, encoding="ascii") as fh:
                usage = int(fh.read().strip())
            return max(0, int(raw) - usage), name
        except (OSError, ValueError):
            continue
    return None


def _kib_field(path: str, key: str) -> int | None:
    """The "key: N kB" line of a /proc file (meminfo, self/status) in bytes."""
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def current_rss() -> int:
    return _kib_field("/proc/self/status", "VmRSS") or 0


def peak_rss() -> int:
    """This process's peak resident memory so far (VmHWM), in bytes."""
    peak = _kib_field("/proc/self/status", "VmHWM")
    if peak is not None:
        return peak
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# address space a scan maps beyond its resident memory once it runs (glibc's
# per-thread arenas reserve 64 MiB each, thread stacks 8 MiB, OpenBLAS its
# buffers, the libraries loaded later): measured 530 MiB above the plan with
# 2 threads on the demo (VmPeak 711 MiB, RSS 100); per usable core and fixed
VIRTUAL_PER_THREAD = 96 * MiB
VIRTUAL_FIXED = 256 * MiB
DATA_PER_THREAD = 8 * MiB
DATA_FIXED = 64 * MiB
# what the command needs to load its libraries (start_refusal).  numpy alone
# (--help, --version): the demo's scan reached its memory plan with ulimit -v
# 101 MiB on 1 core and 141 on 2, with ulimit -d 54 and 94 MiB (OpenBLAS maps
# a buffer a core).  A command that runs also loads scipy, whose own OpenBLAS
# maps its buffers again: below what a run maps beside its data (the plan's
# VIRTUAL_* figures) it hung in that OpenBLAS's buffer allocation, aborted or
# said "interrupted" (helpers 65 and 66: ulimit -v up to 300 MiB and -d up to
# 200 MiB on 2 cores, -d 118 on 1)
START_VIRTUAL = 96 * MiB
START_DATA = 40 * MiB
START_PER_CORE = 48 * MiB
RUN_DATA = 96 * MiB
RUN_DATA_PER_CORE = 64 * MiB


def beside_data(cores: int) -> dict[str, int]:
    """What a run maps beside its data on ``cores`` usable cores, by the
    ``ulimit`` flag that counts it (see :func:`_address_space_room`)."""
    return {
        "ulimit -v": VIRTUAL_FIXED + VIRTUAL_PER_THREAD * cores,
        # the data segment holds the stacks, not the arenas' reserved space
        # (helper 62: VmData 487 -> 496 MiB from 1 to 2 threads)
        "ulimit -d": DATA_FIXED + DATA_PER_THREAD * cores,
    }


def start_floor(cores: int, runs: bool = True) -> dict[str, int]:
    """The soft limits, by ``ulimit`` flag, below which the command cannot
    load its libraries on ``cores`` usable cores (``runs``: a command that
    does work, not only --help or --version; see :func:`start_refusal`)."""
    if runs:
        return {
            "ulimit -v": beside_data(cores)["ulimit -v"],
            "ulimit -d": RUN_DATA + RUN_DATA_PER_CORE * cores,
        }
    return {
        "ulimit -v": START_VIRTUAL + START_PER_CORE * cores,
        "ulimit -d": START_DATA + START_PER_CORE * cores,
    }


def start_refusal(argv: list[str]) -> str | None:
    """Why the command given ``argv`` (its arguments) cannot start under a
    soft ``ulimit -v`` or ``ulimit -d`` (None where it can): loading numpy,
    scipy and their OpenBLAS buffers a core failed in a traceback, an abort
    in OpenBLAS, a false "interrupted" or a hang (helpers 61, 65, 66).
    Above it, the memory plan's check says what a run needs."""
    import resource

    from ._threads import usable_cores

    cores = usable_cores()
    runs = not {"-h", "--help", "--version"}.intersection(argv)
    floor = start_floor(cores, runs)
    for limit, flag in ((resource.RLIMIT_AS, "ulimit -v"), (resource.RLIMIT_DATA, "ulimit -d")):
        soft = resource.getrlimit(limit)[0]
        if soft != resource.RLIM_INFINITY and 0 <= soft < floor[flag]:
            what = "run" if runs else "start"
            return (
                f"{flag} is {soft // MiB} MiB, below the {floor[flag] // MiB} MiB lmmscan needs "
                f"to {what} on {cores} usable core{'s' if cores > 1 else ''} (Python, numpy and "
                "scipy, and their BLAS buffers a core): raise it, or run on fewer cores (taskset)"
            )
    return None


def _address_space_room() -> tuple[int, str] | None:
    """(bytes of the plan's kind this process may use in all, source) under
    a soft ``ulimit -v`` (RLIMIT_AS; SGE's h_vmem) or ``ulimit -d``: the
    limit less what is mapped now beyond resident memory and what a run maps
    beside its data.  A scan past it failed in a thread's start or an
    allocation, or hung in OpenBLAS's buffer allocation (helper 61)."""
    import resource

    from ._threads import usable_cores

    best = None
    beside_by = beside_data(usable_cores())
    for limit, status_key, name in (
        (resource.RLIMIT_AS, "VmSize", "ulimit -v"),
        (resource.RLIMIT_DATA, "VmData", "ulimit -d"),
    ):
        beside = beside_by[name]
        soft = resource.getrlimit(limit)[0]
        mapped = _kib_field("/proc/self/status", status_key)
        if soft == resource.RLIM_INFINITY or soft < 0 or mapped is None:
            continue
        room = max(0, soft - mapped - beside) + current_rss()
        if best is None or room < best[0]:
            best = (room, f"{name}, less what the process maps beside its data")
    return best


def available() -> tuple[int, str] | None:
    """(bytes this process may use in all, where the figure comes from), or
    None where neither a cgroup, /proc/meminfo nor an address-space limit
    tells."""
    held = current_rss()
    rooms = []
    room = _cgroup_room()
    if room is not None:
        rooms.append((room[0] + held, room[1]))
    free = _kib_field("/proc/meminfo", "MemAvailable")
    if free is not None:
        rooms.append((free + held, "MemAvailable"))
    space = _address_space_room()
    if space is not None:
        rooms.append(space)
    # the smallest; a cgroup's before MemAvailable at a tie, as before
    return min(rooms, key=lambda r: r[0]) if rooms else None


def room_for(limit: int | None) -> tuple[int, str] | None:
    """(bytes, source): ``limit`` when given (--memory-limit), else
    :func:`available`.  A soft ``ulimit -v``/``-d`` holds under a given
    limit too: past it an allocation fails whatever the limit says, and
    where it failed in a BLAS library's start (scipy's OpenBLAS, loaded at
    the decomposition) the command hung, deaf to SIGTERM (mouse_hs1940's
    kinship and scan under ``ulimit -v 470000`` with ``--memory-limit 300M``)."""
    if limit is None:
        return available()
    space = _address_space_room()
    return space if space is not None and space[0] < limit else (limit, "--memory-limit")


def fits(nbytes: int, limit: int | None = None) -> bool:
    """Whether ``nbytes`` fit in :func:`room_for` ``limit`` (True where
    nothing tells how much memory there is)."""
    room = room_for(limit)
    return room is None or nbytes <= room[0]


def check(
    plan: Plan, limit: int | None, hints: list[str], block_flag: str | None = None
) -> tuple[int, str] | None:
    """Raise :class:`NotEnoughMemory` when ``plan`` does not fit in ``limit``
    bytes (None: :func:`available`).  Returns (the figure, its source)."""
    room = room_for(limit)
    if room is None:
        return None
    if plan.peak > room[0]:
        # blocks of genotypes at the peak, which a smaller block size shrinks
        # (where the caller has a flag for it)
        blocks = sum(
            v
            for k, v in plan.phases.get(plan.peak_phase, {}).items()
            if k in ("genotype blocks", "rotated block", "first genotype block")
        )
        if block_flag and blocks and plan.peak - room[0] < blocks:
            hints = [f"a smaller {block_flag} (the blocks take {fmt(blocks)})", *hints]
        advice = "; ".join(hints) if hints else "run it on a machine with more memory"
        # an address-space limit is no estimate that --memory-limit could correct
        last = (
            "or raise that limit, or run on fewer cores (taskset)"
            if room[1].startswith("ulimit")
            else "or set --memory-limit if the figure is wrong"
        )
        raise NotEnoughMemory(
            f"{plan.what} needs about {plan.describe()}, but {fmt(room[0])} is available "
            f"({room[1]}): {advice}; {last}"
        )
    return room


def read_overhead(source: object, block: int, subset: bool) -> int:
    """The bytes ``source``'s read of ``block`` SNPs holds beside the block
    it returns (its ``read_overhead``, if it says; ``subset``: fewer samples
    than the file's are read)."""
    says = getattr(source, "read_overhead", None)
    return int(says(block, subset)) if callable(says) else 0


def _reading(plan: Plan, phase: str, nbytes: int) -> None:
    """A block's read beside the blocks: what a source's ``read_overhead``
    says it holds at its peak (a text file's lines), where it holds any."""
    if nbytes:
        plan.add(phase, "a block being read", nbytes)
        # freed on the reading thread, they stay in its heap (MALLOC_KEEP):
        # BIMBAM gzip 352 MiB against 292 planned, 309 with glibc's default
        plan.add(phase, "a read's freed buffers, kept for reuse", min(MALLOC_KEEP, nbytes))


def block_bytes(n_samples: int, block: int, count: int = BLOCKS_IN_FLIGHT) -> int:
    return count * 8 * n_samples * block


def eigh_workspace(n: int, driver: str) -> int:
    """Bytes of LAPACK workspace an n x n decomposition takes: ``dsyevd``'s
    1 + 6n + 2n^2 doubles and 3 + 5n integers, or ``dsyevr``'s 26n and 10n."""
    if driver == "evd":
        return 8 * (2 * n * n + 6 * n + 1) + 8 * (5 * n + 3)
    return 8 * 26 * n + 8 * 10 * n


def decomposition(plan: Plan, N: int, n: int, driver: str, *, groups: int = 1) -> None:
    """The kinship (N x N, decomposed in its own buffer) and the eigensolver:
    ``dsyevr`` writes the eigenvectors to a new n x n array, ``dsyevd`` into
    the kinship's buffer, with its 2 n^2 workspace beside it."""
    plan.add("decomposition", "kinship", 8 * N * N)
    if groups > 1:
        plan.add("decomposition", "other groups' eigenvectors", 8 * n * n * (groups - 1))
    if driver == "evd":
        plan.add("decomposition", "dsyevd workspace", eigh_workspace(n, "evd"))
    else:
        plan.add("decomposition", "eigenvectors", 8 * n * n)
        plan.add("decomposition", "dsyevr workspace", eigh_workspace(n, "evr"))


def scan_phase(
    plan: Plan,
    N: int,
    n: int,
    driver: str,
    block: int,
    *,
    whitened: bool,
    groups: int,
    read_overhead: int = 0,
) -> None:
    # dsyevd's eigenvectors stay in the kinship's N x N buffer
    per_group = 8 * (N * N if driver == "evd" else n * n)
    plan.add("scan", "eigenvectors", per_group * groups)
    if whitened:
        plan.add("scan", "whitening factor", 8 * n * n)
    plan.add("scan", "genotype blocks", block_bytes(N, block))
    plan.add("scan", "rotated block", block_bytes(n, block, 1))
    _reading(plan, "scan", read_overhead)
    if groups > 1:
        # each further group of phenotypes (other missing samples) takes its
        # rows of the block (a copy) and imputes them into its own scanner's
        # buffer: helper 55 measured 463 MiB against 326 planned at n = 2,000
        plan.add("scan", "other groups' block copies", block_bytes(n, block, 2) * (groups - 1))


def eigen_file_shape(path: str) -> tuple[int, int] | None:
    """(n, k) of the eigenvectors in an ``lmmscan eigen`` .npz, read from the
    member's header (nothing loaded); None if the file is not readable so."""
    import zipfile

    import numpy as np

    try:
        with zipfile.ZipFile(path) as zf, zf.open("U.npy") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0
                if major == 1
                else np.lib.format.read_array_header_2_0
            )
            shape = read_header(fh)[0]
            return int(shape[0]), int(shape[1])
    except Exception:  # the reader names the problem later, with the file
        return None


def scan_plan(
    *,
    n_file: int,
    analysed: list[int],
    n_variants: int,
    block: int,
    kinship: str,
    driver: str,
    whitened: int = 0,
    eigen_shape: tuple[int, int] | None = None,
    chromosomes: int = 0,
    workers: int = 1,
    single: bool = False,
    loco_sums: int = LOCO_SUMS,
    phenotypes: int = 1,
    n_region: int = 10,
    tridiagonal: bool = False,
    held_rows: int = 0,
    read_overhead: int = 0,
) -> Plan:
    """``lmmscan scan``'s peak.  ``analysed``: the analysed individuals of
    each group of phenotypes (one decomposition each); ``kinship``: "given",
    "computed", "eigen" (a saved decomposition, ``eigen_shape`` (n, k)) or
    "loco"; ``whitened``: how many groups scan whitened (fixed lambda, one
    test, one phenotype); ``single``: --precision single (a float32 copy of
    the eigenvectors, and of each block, beside the double ones);
    ``loco_sums``: the bytes LOCO's per-chromosome kinship sums may take
    (``memory_limit`` of :func:`lmmscan.loco_scan`); ``phenotypes``: each
    has a scanner, which holds three weights per sample at each of the
    lambda grid's ``n_region`` + 1 points and the two null lambdas;
    ``tridiagonal``: LOCO may keep a chromosome's decomposition as its two
    factors (:class:`lmmscan.spectral.TridiagonalSpectral`, a chromosome
    with fewer SNPs than n / 2); ``held_rows``: LOCO's tested rows held to be
    printed in file order (chromosomes that interleave in the file);
    ``read_overhead``: the bytes a block's read holds beside the block at its
    peak (the source's ``read_overhead``, e.g. a text file's lines)."""
    N, groups = n_file, len(analysed)
    n = max(analysed)
    block = max(1, min(block, n_variants))
    plan = Plan("the scan")
    plan.fixed["variant table"] = PER_VARIANT * n_variants
    plan.fixed["lambda grid weights"] = 24 * (n + 8) * (n_region + 3) * phenotypes
    blocks = block_bytes(N, block)
    if single:
        rows, k = eigen_shape if kinship == "eigen" and eigen_shape else (n, n)
        plan.add("scan", "float32 eigenvectors and block", 4 * rows * k + 4 * n * block)
    if kinship == "eigen":
        rows, k = eigen_shape or (n, n)
        plan.add("scan", "eigenvectors", 8 * rows * k)
        plan.add("scan", "genotype blocks", blocks)
        plan.add("scan", "rotated block", block_bytes(k, block, 1))
        _reading(plan, "scan", read_overhead)
        if whitened:  # a full decomposition's factor (helper 55: 643 MiB, 423 planned)
            plan.add("scan", "whitening factor", 8 * n * n * whitened)
        # (one group: a saved decomposition serves exactly its own samples)
        return plan
    if kinship == "loco":
        # the kinship pass: the sum over every chromosome, and each one's own
        # sum while they fit in loco_sums (lmmscan.loco); then workers
        # decompositions at once, each with its workspace (kept by its thread),
        # beside the chromosome scanned, or, in its place, the next kinship
        # being formed (from a rebuilt sum when the sums were not kept)
        sq = 8 * n * n
        kept = chromosomes * sq if chromosomes * sq <= loco_sums else 0
        plan.add("kinship", "kinship sum", sq)
        plan.add("kinship", "per-chromosome sums", kept)
        plan.add("kinship", "genotype blocks", blocks)
        _reading(plan, "kinship", read_overhead)
        plan.add("decomposition", "kinship sums", sq + (kept if kept else sq))
        if not kept:
            # a rebuilt sum's blocks, read beside the decompositions: a column
            # selection, the filter's analysed rows and the centred columns
            plan.add("decomposition", "centring copies of a block", block_bytes(N, block, 3))
        if driver == "evd":  # the eigenvectors overwrite their kinship
            plan.add("decomposition", "leave-one-out kinships and eigenvectors", (workers + 1) * sq)
        else:
            plan.add("decomposition", "leave-one-out kinships", (workers + 1) * sq)
            plan.add("decomposition", "eigenvectors", (workers + 1) * sq)
        plan.add("decomposition", "eigensolver workspaces", workers * eigh_workspace(n, driver))
        if tridiagonal and driver == "evd":
            # each basis in memory may hold its tridiagonal's eigenvectors V
            # beside the reflectors (in its kinship's buffer); a worker's
            # dstedc reuses its dsyevd workspace
            beside = "tridiagonal eigenvectors beside the reflectors"
            plan.add("decomposition", beside, (workers + 1) * sq)
        plan.add("decomposition", "genotype blocks", blocks)
        _reading(plan, "decomposition", read_overhead)
        # held rows: each phenotype's columns and statistics, then their
        # file-order copy at the end (lmmscan.loco.FileOrder)
        plan.fixed["rows held for file order"] = HELD_ROW * held_rows * phenotypes
        return plan
    K = 8 * N * N
    plan.add("kinship", "kinship", K * (groups if kinship == "computed" else 1))
    if kinship == "computed":
        plan.add("kinship", "genotype blocks", blocks)
        _reading(plan, "kinship", read_overhead)
    decomposition(plan, N, n, driver, groups=groups)
    if kinship == "computed":
        freed = min(MALLOC_KEEP, blocks + read_overhead)
        plan.add("decomposition", "the kinship pass's blocks, freed and kept for reuse", freed)
    if kinship == "given":  # the first block is read while the kinship is decomposed
        plan.add("decomposition", "first genotype block", block_bytes(n, block, 1))
        _reading(plan, "decomposition", read_overhead)
    if kinship == "computed" and groups > 1:
        plan.add("decomposition", "other groups' kinships", K * (groups - 1))
    scan_phase(
        plan, N, n, driver, block, whitened=False, groups=groups, read_overhead=read_overhead
    )
    if whitened:
        # (dtrmm works in place on a Fortran-ordered copy of the block: that
        # copy is the rotated block already counted)
        plan.add("scan", "whitening factor", 8 * n * n * whitened)
    return plan


def kinship_plan(n_file: int, n_variants: int, block: int, read_overhead: int = 0) -> Plan:
    block = max(1, min(block, n_variants))
    plan = Plan("the kinship")
    plan.fixed["variant table"] = PER_VARIANT * n_variants
    plan.add("kinship", "kinship", 8 * n_file * n_file)
    plan.add("kinship", "genotype blocks", block_bytes(n_file, block))
    _reading(plan, "kinship", read_overhead)
    return plan


def eigen_plan(n_file: int, n: int, driver: str) -> Plan:
    plan = Plan("the eigendecomposition")
    decomposition(plan, n_file, n, driver)
    return plan


def hints_dense(n: int, driver: str, whitened: bool) -> list[str]:
    out = []
    if driver == "evd":
        out.append("--eigh-driver evr (or auto) needs 8n^2 bytes less")
    if whitened:
        out.append("--test all (rotated, not whitened) needs 8n^2 bytes less")
    out.append(
        "a low-rank kinship (lmmscan.low_rank_kinship, k < n SNPs: 8nk bytes) or a machine "
        "with more memory"
    )
    return out
