"""``scan --resume``: the checkpoint of a block scan, so that an interrupted
scan continues from its last completed block and ends with the bytes of an
uninterrupted run."""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import signal
import sys
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from .._errors import InputError, LmmscanError, naming, plural
from .._threads import deferred_interrupts
from .._version import __version__
from ..filters import FilterCounts
from ..genotypes import GenotypeSource, root_source
from ..output import output_file
from ..samples import groups_by_samples
from .common import one_line

_CHECKPOINT_KIND = "lmmscan scan checkpoint"
_CHECKPOINT_VERSION = 1
_SIDECAR = np.dtype([("snp", "<i8"), ("log10p", "<f4")])  # one record per table row


_BUSY = (
    "another lmmscan run is writing this file (its --out gives the same table name); "
    "wait for it to end, or choose another --out"
)


class _Busy(InputError):
    """A partial file another run holds."""


def _lock(fd: int, path: Path) -> None:
    """Hold an exclusive lock on the open file ``fd`` (until it is closed), or
    refuse: two runs whose prefixes differ can name the same table (--out a
    with --pheno-col 1,2, and --out a.1), and the second truncated or removed
    the first's partial table; the first then lost its finished table."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
            return  # a file system without locks: as before
        raise _Busy(_BUSY, path=str(path)) from None


def _check_not_busy(path: Path) -> None:
    """Refuse to remove a partial file another run holds (see :func:`_lock`)."""
    fd = _hold(path)
    if fd >= 0:
        os.close(fd)


def _hold(path: Path) -> int:
    """A descriptor of ``path`` holding its lock (-1 when it cannot be
    opened), or _Busy when another run holds it (see :func:`_lock`)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1
    try:
        _lock(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_not_anothers(paths: list[Path], own: Path) -> None:
    """Refuse to remove a partial file of ``paths`` that another prefix's
    checkpoint names (one in the partial file's directory or in this run's
    checkpoint's, ``own``: a symlinked table's partial file sits beside the
    link's target): ``--out a --pheno-col 1,2`` and ``--out a.1`` both write
    ``a.1.assoc.txt``, and a fresh run of one removed the other's partial
    table (stopped, so no longer locked) without a word (helper 63)."""
    paths = [p for p in paths if p.exists()]
    if not paths:
        return
    directories = {p.parent for p in paths} | {own.parent}
    for other, named in _other_checkpoints(directories, own):
        for path in paths:
            if any(_names(name, other, path) for name in named):
                prefix = other.name[: -len(".resume.json")]
                raise InputError(
                    f"is the partial output of another scan, stopped with its checkpoint "
                    f"{other} (--out {other.parent / prefix}): finish it with --resume, or "
                    "remove its files, before a scan writes the same output name",
                    path=str(path),
                )


def _other_checkpoints(directories: set[Path], own: Path) -> Iterator[tuple[Path, list[Path]]]:
    """Each checkpoint in ``directories`` but ``own``, once, with the partial
    files it names; regular files only (a FIFO would be waited on), and
    what is no checkpoint names nothing."""
    import stat

    seen = set()
    for directory in directories:
        for other in directory.glob("*.resume.json"):
            try:
                st = other.stat()
                if (st.st_dev, st.st_ino) in seen or not stat.S_ISREG(st.st_mode):
                    continue
                seen.add((st.st_dev, st.st_ino))
                if other.name == own.name and os.path.samefile(other.parent, own.parent):
                    continue
                state = json.loads(other.read_text(encoding="utf-8"))
                named = [Path(p[key]) for p in state["phenotypes"] for key in ("table", "sidecar")]
            except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
                continue
            yield other, named


def _names(name: Path, checkpoint: Path, path: Path) -> bool:
    """Whether ``name``, as ``checkpoint`` records it, is the file ``path``:
    an absolute name (a symlinked table's, or --out given so) by its real
    path; a relative one, relative to that run's directory, by its name
    beside the checkpoint."""
    try:
        if name.is_absolute():
            return os.path.realpath(name) == os.path.realpath(path)
        return name.name == path.name and os.path.samefile(checkpoint.parent, path.parent)
    except (OSError, ValueError):  # (a NUL in a damaged file's names)
        return False


class Appender:
    """A file written at its end; ``offset`` (resuming) cuts it to that many bytes
    first, and ``crc`` is the CRC-32 its checkpoint recorded of those bytes
    (None: not recorded).  The file is locked while it is open (see
    :func:`_lock`).  :attr:`crc` is the CRC-32 of every byte written to it."""

    def __init__(self, path: Path, offset: int | None = None, crc: int | None = None) -> None:
        self.path = path
        self.crc = 0
        self._fh: BinaryIO
        if offset is None:
            # (0o666: the umask decides, as for every other output; helper 61)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            self._fh = open(fd, "r+b")
            try:
                _lock(fd, path)
            except BaseException:
                self._fh.close()
                raise
            self._fh.truncate(0)
            return
        try:
            self._fh = open(path, "r+b")
        except FileNotFoundError:
            raise InputError(
                "the checkpoint's partial file is missing; rerun without --resume to start over",
                path=str(path),
            ) from None
        try:
            _lock(self._fh.fileno(), path)
        except BaseException:
            self._fh.close()
            raise
        size = os.fstat(self._fh.fileno()).st_size
        if size < offset:
            self._fh.close()
            raise InputError(
                f"{size} bytes, but the checkpoint says {offset}: the file was cut "
                "short; rerun without --resume to start over",
                path=str(path),
            )
        self._start(offset)
        self._check(offset, crc)
        self._fh.truncate(offset)
        self._fh.seek(offset)

    def _start(self, offset: int) -> None:
        pass

    def _check(self, offset: int, crc: int | None) -> None:
        """The file's first ``offset`` bytes are the ones the checkpoint
        recorded: another scan whose table has the same name (``--out a
        --pheno-col 1,2`` and ``--out a.1`` both write ``a.1.assoc.txt``)
        replaces the partial file, and its rows, were they as wide, were
        taken as this run's (helper 63)."""
        self._fh.seek(0)
        left, running = offset, 0
        with naming(self.path):
            while left:
                chunk = self._fh.read(min(left, 1 << 24))
                if not chunk:
                    break
                running = zlib.crc32(chunk, running)
                left -= len(chunk)
        # (a checkpoint from before the CRCs were recorded: none to compare,
        # but the next save's must count these bytes too)
        if left or (crc is not None and running != crc):
            self._fh.close()
            raise InputError(
                "the partial file is not the one the checkpoint recorded (another scan's, "
                "whose output has the same name?); rerun without --resume to start over",
                path=str(self.path),
            )
        self.crc = running

    def write(self, data: bytes) -> None:
        self.crc = zlib.crc32(data, self.crc)
        with naming(self.path):
            self._fh.write(data)

    def flush(self) -> int:
        """Hand what was written to the system; returns the file's length."""
        with naming(self.path):
            self._fh.flush()
        return self._fh.tell()

    def fsync(self) -> None:
        """Have the system put what it was handed on the disk.  Safe on
        another thread while this one writes on: the bytes written by then
        are on the disk once it returns."""
        with naming(self.path):
            os.fsync(self._fh.fileno())

    def sync(self) -> int:
        """Flush to the disk; returns the file's length."""
        length = self.flush()
        self.fsync()
        return length

    def close(self, keep_lock: list[int] | None = None) -> None:
        """Close the file; ``keep_lock``: first add to it a descriptor that
        keeps the file's lock (the caller closes it)."""
        if keep_lock is not None and not self._fh.closed:
            keep_lock.append(os.dup(self._fh.fileno()))  # the same lock (flock)
        self._fh.close()


class TableFile(Appender):
    """A partial table as TableWriter's file: text in, UTF-8 bytes out.  When
    resuming, the header the writer writes first is checked against the one
    already in the file and dropped."""

    _skip = b""

    def _start(self, offset: int) -> None:
        self._skip = self._fh.readline(1 << 20)
        if not self._skip.endswith(b"\n") or len(self._skip) > offset:
            self._fh.close()
            raise InputError(
                "the partial table has no complete header line; rerun without "
                "--resume to start over",
                path=str(self.path),
            )
        # the checkpoint's length ends a row: a table edited since (a row made
        # longer or shorter) would be cut inside a row and joined to the next
        self._fh.seek(offset - 1)
        if self._fh.read(1) != b"\n":
            self._fh.close()
            raise InputError(
                f"byte {offset} of the partial table, where the checkpoint says its rows "
                "end, does not end a row: the table was changed since; rerun without "
                "--resume to start over",
                path=str(self.path),
            )

    def write(self, text: str) -> None:  # type: ignore[override]
        data = text.encode("utf-8")
        if self._skip:
            n = min(len(self._skip), len(data))
            if data[:n] != self._skip[:n]:
                raise InputError(
                    "the partial table's header is not this run's; rerun without "
                    "--resume to start over",
                    path=str(self.path),
                )
            self._skip, data = self._skip[n:], data[n:]
        super().write(data)


def test_stop() -> tuple[int, str] | None:
    """Private test hook, LMMSCAN_TEST_STOP_AFTER_BLOCKS: ``k`` raises
    KeyboardInterrupt once the checkpoint holds k blocks; ``k:kill`` writes the
    rows of block k + 1 and kills the process (SIGKILL) before its checkpoint;
    ``k:rename`` kills it after k of the finished run's renames, and
    ``k:rename-interrupt`` raises KeyboardInterrupt there, ``k:rename-signal``
    sends the process SIGINT there."""
    text = os.environ.get("LMMSCAN_TEST_STOP_AFTER_BLOCKS", "")
    k, _, mode = text.partition(":")
    if not k.strip().isdigit():
        return None
    return int(k), mode or "interrupt"


def fingerprint(args, source, phenos, block: int, sgemm: bool = False) -> dict:
    """What must be the same for --resume to continue a checkpoint; ``sgemm``:
    the scan rotates in single precision (the BLAS threads are recorded)."""
    files = {}
    if args.bfile is not None:
        for ext in ("bed", "bim", "fam"):
            files[ext] = f"{args.bfile}.{ext}"
    elif getattr(args, "pfile", None) is not None:
        from ..genotypes import root_source

        source_file: Any = root_source(source)  # under a --snps view
        files["pgen"] = source_file.path
        files["pvar"] = source_file.pvar_path
        files["psam"] = source_file.psam_path
    elif getattr(args, "bgen", None) is not None:
        files["bgen"] = args.bgen
        files["sample"] = args.sample
    elif getattr(args, "vcf", None) is not None:
        files["vcf"] = args.vcf
    else:
        files["bimbam-geno"] = args.bimbam_geno
        files["bimbam-anno"] = args.bimbam_anno
    for name in ("pheno", "covar", "kinship", "eigen"):
        files[name] = getattr(args, name)
    for name in ("snps", "ksnps"):  # recorded when given: older checkpoints stay valid
        if getattr(args, name, None) is not None:
            files[name] = getattr(args, name)

    def stamp(path):
        if path is None:
            return None
        st = os.stat(path)
        # (the real path: the same file through a symlinked directory, as
        # $HOME and /gpfs/home name it, resumes; helper 61)
        return {"path": _canonical(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}

    computed = args.kinship is None and args.eigen is None
    return {
        "lmmscan": __version__,
        "files": {name: stamp(path) for name, path in files.items()},
        "options": {
            "--pheno-col": list(args.pheno_col),
            "--test": args.test,
            "--lambda": args.lambda_mode,
            "--maf": args.maf,
            "--miss": args.miss,
            "--r2": args.r2,
            "--format": args.format,
            "--kinship-method": args.kinship_method if computed else None,
            "--block-size": block,
            "--eigh-driver": args.eigh_driver if args.eigen is None else None,
            # GEMMA's -hwe, -lmin, -lmax, -region: recorded when not the default
            **{
                flag: getattr(args, attr, default)
                for flag, (attr, default) in _RECORDED_IF_SET.items()
                if getattr(args, attr, default) != default
            },
        },
        "n_samples": source.n_samples,
        "n_snps": source.n_snps,
        "null_lambda": [float(ph.null.lambda_) for ph in phenos],
        # single precision's rotation (SGEMM) changes its last bits with the
        # number of BLAS threads, with no lambda to show it under --eigen
        **({"blas_threads": blas_thread_count()} if sgemm else {}),
    }


# what a command's options are compared by, for a run that had finished: not
# how it runs (threads, output on the terminal, memory), nor --plot (drawn after)
_NOT_COMPARED = frozenset({"resume", "quiet", "threads", "plot", "memory_limit", "dask_scheduler"})


# the options that name files, compared as real paths (_canonical)
_PATH_OPTIONS = frozenset(
    {"bfile", "pfile", "bgen", "sample", "vcf", "bimbam_geno", "bimbam_anno", "pheno",
     "covar", "kinship", "eigen", "snps", "ksnps", "out"}
)  # fmt: skip


def _canonical(path: str | os.PathLike[str]) -> str:
    """A file's name as a checkpoint records it: its real path (the same file
    through a symlinked directory, as $HOME and /gpfs/home name it, resumes;
    helper 61), but a /dev or /proc name as written (``<(...)``'s /dev/fd/63
    resolves to a pipe that differs in every run; helper 62)."""
    absolute = os.path.abspath(path)
    return absolute if absolute.startswith(("/dev/", "/proc/")) else os.path.realpath(absolute)


def _same_file_name(a: object, b: object) -> bool:
    """Whether two recorded names are one file's: equal, or equal once each
    is :func:`_canonical` (a checkpoint written before real paths were
    recorded named a symlinked directory's path)."""
    if a == b:
        return True
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    return _canonical(a) == _canonical(b)


def _identity(path: Path) -> list[int] | None:
    """[device, inode, size, mtime in ns] of ``path``, or None when it is not
    there: a rename keeps all four, and a file written since in its place
    does not (an inode number alone was reused for another run's file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns]


def command_options(args: argparse.Namespace) -> dict:
    """The command line's options as parsed (numbers, text, lists; files as
    real paths), for :func:`finish_commit` to compare: taken before the
    run adds its own."""
    plain = (str, int, float, bool, type(None))
    out: dict[str, Any] = {}
    for key, value in sorted(vars(args).items()):
        if key in _NOT_COMPARED:
            continue
        if key in _PATH_OPTIONS and isinstance(value, str):
            out[key] = _canonical(value)
        elif isinstance(value, plain):
            out[key] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, plain) for v in value):
            out[key] = list(value)
    return out


def finish_commit(out: str | os.PathLike[str], options: dict) -> bool:
    """--resume of a run that had finished and was putting its outputs in
    place when it was stopped (its checkpoint records the renames, see
    :meth:`Checkpoint.commit`): make the renames not yet made and remove the
    checkpoint.  True when there was such a run (nothing else to do), False
    otherwise (a damaged or ordinary checkpoint is left to
    :class:`Checkpoint`).  ``options`` (:func:`command_options`) must be the
    finished run's: that run's outputs are what is put in place."""
    path = Path(f"{out}.resume.json")
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        pairs = [(Path(entry[0]), Path(entry[1])) for entry in state["committing"]]
        sidecars = [Path(p) for p in state.get("sidecars", [])] or [
            Path(p["sidecar"]) for p in state.get("phenotypes", [])
        ]
        recorded = state.get("options")
    except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError):
        return False
    now = json.loads(json.dumps(options))  # as the record holds them (tuples as lists)

    def differs(k: str) -> bool:
        a, b = recorded.get(k), now.get(k)
        return not (_same_file_name(a, b) if k in _PATH_OPTIONS else a == b)

    if recorded is not None and (differ := sorted(k for k in {*recorded, *now} if differs(k))):
        raise InputError(
            "the checkpoint is of a finished run with other options ("
            + ", ".join(differ[:3])
            + (", ..." if len(differ) > 3 else "")
            + "), whose outputs were being put in place: rerun that command with --resume "
            "to finish it, or rerun without --resume to start over",
            path=str(path),
        )
    held: list[int] = []  # the files stay locked while they are renamed
    try:
        for entry in state["committing"]:
            src, dst = Path(entry[0]), Path(entry[1])
            if src.exists():
                held.append(_hold(src))  # refused when another run holds it
            elif len(entry) < 3 or _identity(dst) != entry[2]:
                raise InputError(
                    f"{src}, which the finished run was to put in place as {dst}, is gone "
                    f"and {dst} is not it (removed by another run naming the same file?): "
                    "rerun without --resume to start over",
                    path=str(path),
                )
        for src, dst in pairs:
            if src.exists():
                os.replace(src, dst)
        for leftover in (*sidecars, path):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    finally:
        for fd in held:
            if fd >= 0:
                os.close(fd)
    return True


def blas_thread_count() -> int:
    """The threads the BLAS libraries loaded use now (the most of them)."""
    from .._threads import blas_counts

    return max(blas_counts().values(), default=1)


def close_lambdas(a: Any, b: list[float], rtol: float = 1e-8) -> bool:
    """Null lambdas equal but for the last bits, as the eigendecomposition gives
    them with another number of BLAS threads or another BLAS."""
    try:
        return len(a) == len(b) and bool(np.allclose(a, b, rtol=rtol, atol=0.0))
    except (TypeError, ValueError):
        return False


# options a checkpoint records only when they are not at their default (so
# that checkpoints written before a flag existed stay valid): flag -> (args
# attribute, default)
_RECORDED_IF_SET: dict[str, tuple[str, Any]] = {
    "--hwe": ("hwe", 0.0),
    "--info": ("info", None),
    "--precision": ("precision", "double"),
    "--vcf-field": ("vcf_field", None),
    "--lmin": ("lmin", 1e-5),
    "--lmax": ("lmax", 1e5),
    "--region": ("region", 10),
}


def _is_pipe(path: str) -> bool:
    """A named input that is no regular file (a process substitution's
    /dev/fd/63): its size and time change at every run."""
    import stat

    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def differences(old: object, new: dict) -> list[str]:
    if not isinstance(old, dict):
        return ["it has no fingerprint"]
    out = []
    for key in new:
        a, b = old.get(key), new[key]
        if key in ("files", "options") and isinstance(a, dict):
            # the names of both: a flag recorded only when set (--precision,
            # --snps) and left off now is a difference too
            for name in [*b, *(n for n in a if n not in b)]:
                x, y = a.get(name), b.get(name)
                if x == y or (
                    key == "files"
                    and isinstance(x, dict)
                    and isinstance(y, dict)
                    and _same_file_name(x.get("path"), y.get("path"))
                    and {k: v for k, v in x.items() if k != "path"}
                    == {k: v for k, v in y.items() if k != "path"}
                ):
                    continue
                if key == "options":
                    # flags recorded only when not at their default
                    unset = (
                        f"the default ({_RECORDED_IF_SET[name][1]})"
                        if name in _RECORDED_IF_SET
                        else None
                    )
                    was = unset if x is None else x
                    now = unset if y is None else y
                    out.append(f"{name} was {was}, now {now}")
                elif x is None or y is None or x.get("path") != y.get("path"):
                    out.append(f"the {name} file was {x and x.get('path')}, now {y and y['path']}")
                elif _is_pipe(y["path"]):
                    out.append(
                        f"{y['path']} is a pipe, whose contents a resumed run cannot check "
                        "against the checkpoint's (a scan to be resumed needs its inputs as "
                        "files)"
                    )
                else:
                    out.append(f"{y['path']} has changed since (size or modification time)")
        elif key == "null_lambda":
            if not close_lambdas(a, b):
                out.append(f"the null model's lambda was {a}, now {b}")
        elif key == "blas_threads":  # a warning (Checkpoint.load), not a refusal
            continue
        elif a != b:
            out.append(f"{'the lmmscan version' if key == 'lmmscan' else key} was {a}, now {b}")
    return out


class Checkpoint:
    """The checkpoint of a block scan, so that an interrupted scan can continue.

    Files, while a scan runs: ``PREFIX.resume.json`` (rewritten atomically
    after every completed block), and per phenotype the partial table
    ``STEM.EXT.partial`` and ``STEM.EXT.partial.lp`` (each table row's SNP
    index and main -log10 p as float32, kept for lambda_GC and the plots).
    Both are flushed and fsync'ed before the checkpoint records their
    lengths, with the next SNP, the running state (rows, filter counts, top
    hits) and a fingerprint of the inputs and options (:func:`fingerprint`).
    The fsyncs and the checkpoint's write run on a thread of their own while
    the next block is scanned (on a cluster's file system an fsync can take
    longer than a block's numbers); a block's save waits for the one before,
    and the partial files are closed only after the last.

    ``--resume`` refuses a checkpoint with another fingerprint, cuts the
    partial files back to the recorded lengths (a killed run may have written
    rows after its last checkpoint) and continues at the next SNP.  A run
    without ``--resume`` removes any checkpoint of PREFIX first.  On success the
    partial tables are renamed to their final names and the rest removed; on
    an interruption (or an OSError / MemoryError) after at least one block
    everything is kept; on any other error, or before the first block, removed.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        source: GenotypeSource,
        phenos: list[Any],
        ext: str,
        block: int,
        make_writer: Callable[[Any, Any], Any],
        sgemm: bool = False,
    ) -> None:
        self.args, self.source, self.phenos = args, source, phenos
        self.groups = [
            [phenos[k] for k in members]
            for members in groups_by_samples([ph.analysed.mask for ph in phenos])
        ]
        self.make_writer = make_writer
        self.path = Path(f"{args.out}.resume.json")
        self.block = block
        self.fingerprint = fingerprint(args, source, phenos, self.block, sgemm)
        # a symlinked name is written through (its target replaced, not the link)
        self.finals = [output_file(ph.stem + ext) for ph in phenos]
        self.tables = [Path(f"{f}.partial") for f in self.finals]
        self.sidecars = [Path(f"{f}.partial.lp") for f in self.finals]
        self.next_snp = 0
        self.resumed_from = 0
        self._saved_snp = 0  # the next SNP of the last checkpoint on the disk
        self._saver: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None
        self._files: list[Appender] = []
        self._sides: list[Appender] = []
        self._index = {id(ph): k for k, ph in enumerate(phenos)}
        self._missing_cache: tuple[int, dict] | None = None
        self._recorded = False  # the final renames are recorded (commit)
        self._placed = False  # and made: the outputs are in place
        self._locks: list[int] = []  # the closed partial files' locks (see close)
        self._stop = test_stop()
        state = self._load() if args.resume else None
        if state is None:
            self._remove_stale()
        try:
            self._open(state)
            self._saved_snp = self.next_snp
            if state is None:
                self.save(wait=True)
        except BaseException as exc:
            self.close()
            self.release_locks()
            if state is None and not isinstance(exc, _Busy):  # another run's files stay
                self.remove()
            raise

    # -- starting

    def _load(self) -> dict | None:
        if not self.path.exists():
            if not self.args.quiet:
                print(
                    f"lmmscan scan: --resume: no checkpoint {self.path}; scanning from the "
                    "first SNP",
                    file=sys.stderr,
                )
            return None
        again = "rerun without --resume to start over"
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InputError(
                f"cannot read the checkpoint ({one_line(exc)}); {again}", path=str(self.path)
            ) from None
        if not isinstance(state, dict) or state.get("kind") != _CHECKPOINT_KIND:
            raise InputError(f"not an lmmscan scan checkpoint; {again}", path=str(self.path))
        if state.get("version") != _CHECKPOINT_VERSION:
            raise InputError(
                f"checkpoint version {state.get('version')}, this lmmscan reads "
                f"{_CHECKPOINT_VERSION}; {again}",
                path=str(self.path),
            )
        diffs = differences(state.get("fingerprint"), self.fingerprint)
        if diffs:
            raise InputError(
                f"the checkpoint is from another run: {'; '.join(diffs[:3])}; {again}",
                path=str(self.path),
            )
        if state["fingerprint"].get("null_lambda") != self.fingerprint["null_lambda"]:
            print(
                f"lmmscan scan: warning: the refitted null model's lambda "
                f"{self.fingerprint['null_lambda']} differs from the checkpoint's "
                f"{state['fingerprint']['null_lambda']} in its last bits (another number of "
                "BLAS threads or another machine?): the rows after the checkpoint may differ "
                "from an uninterrupted run's in their last printed digit",
                file=sys.stderr,
            )
        was, now = state["fingerprint"].get("blas_threads"), self.fingerprint.get("blas_threads")
        if was != now:
            then = plural(was, "BLAS thread") if was else "an unrecorded number of BLAS threads"
            print(
                f"lmmscan scan: warning: the checkpoint's rows were rotated in single precision "
                f"on {then}, this run uses {now}: the rows after the checkpoint may differ from "
                "an uninterrupted run's in their last printed digits (pass the same --threads)",
                file=sys.stderr,
            )
        return state

    def _open(self, state: dict | None) -> None:
        rows = None if state is None else self._rows(state)
        for k, ph in enumerate(self.phenos):
            table_bytes, side_bytes = (None, None) if rows is None else rows[k][:2]
            table_crc, side_crc = (None, None) if rows is None else rows[k][4:6]
            self._files.append(TableFile(self.tables[k], table_bytes, table_crc))
            self._sides.append(Appender(self.sidecars[k], side_bytes, side_crc))
            with self.args.clock.phase("write"):
                ph.writer = self.make_writer(ph, self._files[k])
        if state is not None and rows is not None:
            self._restore(state, rows)

    def _rows(self, state: dict) -> list[tuple]:
        try:
            out = [
                (
                    int(p["table_bytes"]),
                    int(p["sidecar_bytes"]),
                    int(p["n_rows"]),
                    p["best"],
                    *(  # (None: a checkpoint from before they were recorded)
                        int(p[key]) if key in p else None
                        for key in ("table_crc32", "sidecar_crc32")
                    ),
                )
                for p in state["phenotypes"]
            ]
            if len(out) != len(self.phenos):
                raise ValueError("wrong number of phenotypes")
            self.next_snp = int(state["next_snp"])
            if not 0 <= self.next_snp <= self.source.n_snps:
                raise ValueError(f"next_snp {self.next_snp}")
            if self.next_snp % self.block and self.next_snp != self.source.n_snps:
                raise ValueError(f"next_snp {self.next_snp} is not at a block boundary")
            if any(r[1] != r[2] * _SIDECAR.itemsize for r in out):
                raise ValueError("the row counts do not match")
            seen = {int(g["filters"]["total"]) for g in state["groups"]}
            if seen != {self.next_snp}:  # the filters saw every SNP before next_snp
                raise ValueError(f"next_snp {self.next_snp}, but the filters saw {sorted(seen)}")
            recorded = [
                Path(p.get("table", self.tables[k])) for k, p in enumerate(state["phenotypes"])
            ]
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise InputError(
                f"damaged checkpoint ({one_line(exc)}); rerun without --resume to start over",
                path=str(self.path),
            ) from None
        for was, now in zip(recorded, self.tables, strict=True):
            # a symlinked table's partial file sits beside the link's target:
            # one found only where the checkpoint says, not where this run
            # would write it (the paths may be relative to another directory)
            if was != now and not now.exists() and was.exists():
                raise InputError(
                    f"the checkpoint's partial table is {was}, this run's would be {now} (an "
                    "output symlink that changed?); rerun without --resume to start over",
                    path=str(self.path),
                )
        return out

    def _restore(self, state: dict, rows: list[tuple]) -> None:
        self.resumed_from = self.next_snp
        try:
            add = getattr(root_source(self.source), "add_read_as_missing", None)
            if callable(add):  # the variants before next_snp are not read again
                add(state.get("read_as_missing", {}))
            for g, saved in zip(self.groups, state["groups"], strict=True):
                f = saved["filters"]
                for ph in g:
                    ph.filters = FilterCounts(
                        total=int(f["total"]),
                        kept=int(f["kept"]),
                        removed={k: int(v) for k, v in f["removed"].items()},
                    )
            for k, ph in enumerate(self.phenos):
                n_rows, best = rows[k][2], rows[k][3]
                ph.n_rows = n_rows
                saved_counts = state["phenotypes"][k].get("untestable", {})
                ph.untestable = {str(r): int(c) for r, c in saved_counts.items()}
                ph.best = [
                    (float(lp), str(rs), str(c), int(ps), float(b), float(se))
                    for lp, rs, c, ps, b, se in best
                ]
                rec = np.fromfile(self.sidecars[k], dtype=_SIDECAR, count=n_rows)
                if rec.size != n_rows:
                    raise ValueError(f"{self.sidecars[k]} has {rec.size} rows, not {n_rows}")
                snp = rec["snp"]
                if snp.size and (
                    snp[0] < 0 or snp[-1] >= self.next_snp or (np.diff(snp) <= 0).any()
                ):
                    raise ValueError(f"{self.sidecars[k]}'s rows are not SNPs before next_snp")
                ph.log10p = [rec["log10p"].copy()]
                if getattr(self.args, "plot", False):
                    where = self.source.snps.iloc[rec["snp"]][["chr", "rs", "ps"]]
                    ph.where = [where.reset_index(drop=True)]
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise InputError(
                f"damaged checkpoint ({one_line(exc)}); rerun without --resume to start over",
                path=str(self.path),
            ) from None

    def _remove_stale(self) -> None:
        """A fresh scan: remove the checkpoint of PREFIX and the partial files it names."""
        stale = [*self.tables, *self.sidecars]
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
            old = json.loads(self.path.read_text(encoding="utf-8"))
            for p in old["phenotypes"]:
                stale += [
                    Path(p[key])
                    for key in ("table", "sidecar")
                    if str(p[key]).endswith((".partial", ".partial.lp")) and "\0" not in str(p[key])
                ]
        for path in stale:
            _check_not_busy(path)
        _check_not_anothers([*self.tables, *self.sidecars], self.path)
        for path in [*stale, self.path]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # -- scanning

    def record(self, ph, index: np.ndarray, log10p: dict) -> None:
        """A block's rows of ``ph`` were written: keep their SNPs and main -log10 p."""
        lp = np.asarray(log10p.get(ph.writer.main_p, []), dtype=np.float32)
        rec = np.empty(lp.size, dtype=_SIDECAR)
        rec["snp"] = index
        rec["log10p"] = lp
        self._sides[self._index[id(ph)]].write(rec.tobytes())

    def block_done(self, stop: int) -> None:
        blocks = -(-stop // self.block)
        if self._stop == (blocks - 1, "kill"):  # test hook: rows written, no checkpoint
            self._wait()  # the previous block's checkpoint is on the disk
            for f in (*self._files, *self._sides):
                f.sync()
            os.kill(os.getpid(), signal.SIGKILL)
        self.next_snp = stop
        self.save()
        if self._stop == (blocks, "interrupt"):
            raise KeyboardInterrupt

    def save(self, wait: bool = False) -> None:
        """Flush the partial files and note their lengths and the state; then,
        on the saving thread (here with ``wait``), fsync them and write the
        checkpoint, atomically.  Waits for the save before, and raises its
        error."""
        self._wait()
        phenos = []
        for k, ph in enumerate(self.phenos):
            phenos.append(
                {
                    "column": ph.col,
                    "table": str(self.tables[k]),
                    "sidecar": str(self.sidecars[k]),
                    "table_bytes": self._files[k].flush(),
                    "sidecar_bytes": self._sides[k].flush(),
                    "table_crc32": self._files[k].crc,
                    "sidecar_crc32": self._sides[k].crc,
                    "n_rows": ph.n_rows,
                    "best": [list(t) for t in ph.best],
                    "untestable": dict(ph.untestable),
                }
            )
        groups = [
            {
                "phenotypes": [ph.col for ph in g],
                "filters": {
                    "total": g[0].filters.total,
                    "kept": g[0].filters.kept,
                    "removed": dict(g[0].filters.removed),
                },
            }
            for g in self.groups
        ]
        state = {
            "kind": _CHECKPOINT_KIND,
            "version": _CHECKPOINT_VERSION,
            "fingerprint": self.fingerprint,
            "n_snps": self.source.n_snps,
            "next_snp": self.next_snp,
            "groups": groups,
            "phenotypes": phenos,
        }
        missing = getattr(root_source(self.source), "read_as_missing", None)
        if callable(missing):  # a VCF's or BGEN's variants read as missing (null.json)
            state["read_as_missing"] = self._missing_runs(missing)
        text = json.dumps(state, allow_nan=True) + "\n"
        files = [*self._files, *self._sides]
        if wait:
            self._write(files, text, self.next_snp)
            return
        if self._saver is None:
            self._saver = ThreadPoolExecutor(1, thread_name_prefix="lmmscan-checkpoint")
        self._pending = self._saver.submit(self._write, files, text, self.next_snp)

    def _missing_runs(self, missing: Callable[[], dict]) -> dict:
        """The reader's variants read as missing, as runs; computed again only
        when their number has changed since the last block."""
        count = sum(getattr(root_source(self.source), "skipped_at_read", {}).values())
        if self._missing_cache is None or self._missing_cache[0] != count:
            self._missing_cache = (count, missing())
        return self._missing_cache[1]

    def _write(self, files: list[Appender], text: str, next_snp: int) -> None:
        """The partial files to the disk, then the checkpoint naming them."""
        for f in files:
            f.fsync()
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        try:
            with naming(self.path), open(tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._saved_snp = next_snp

    def _wait(self) -> None:
        """The save in progress done; its error raised (once).  An interrupt
        while waiting leaves it pending, so that close() still waits for it
        before the files are closed under it."""
        job = self._pending
        if job is None:
            return
        try:
            job.result()
        except Exception:
            self._pending = None
            raise
        self._pending = None

    # -- ending

    def close(self) -> None:
        """Close the partial files, after the save in progress (its error raised)."""
        try:
            self._wait()
        finally:
            for f in (*self._files, *self._sides):
                f.close(self._locks)  # held until the tables are in place
            if self._saver is not None:
                self._saver.shutdown()
                self._saver = None

    def commit(self, outputs: Any) -> None:
        """Put the finished tables and ``outputs`` (an OutputSet: null.json)
        in place, then remove the checkpoint.  The renames are first recorded
        in the checkpoint (``committing``), so that a run killed among them
        is finished by ``--resume`` (:func:`finish_commit`): a kill there left
        the new table beside the last run's null.json, and a checkpoint that
        --resume refused (its partial table was gone)."""
        self.close()
        pairs = [(Path(a), Path(b)) for a, b in zip(self.tables, self.finals, strict=True)]
        pairs += [(tmp, final) for final, tmp in outputs.pending]
        for src, _ in pairs[len(self.tables) :]:  # the tables were fsync'ed at the last save
            with open(src, "rb") as fh:
                os.fsync(fh.fileno())
        state = json.loads(self.path.read_text(encoding="utf-8"))
        # each file with its inode: finish_commit tells a renamed one from a lost one
        state["committing"] = [  # absolute: --resume may run from another directory
            [os.path.abspath(a), os.path.abspath(b), _identity(a)] for a, b in pairs
        ]
        state["options"] = getattr(self.args, "command_options", None)
        state["sidecars"] = [os.path.abspath(p) for p in self.sidecars]
        # from here every file the record names is kept (abandon), whether or
        # not the record reaches the disk, for --resume to put in place
        self._recorded = True
        outputs.committed()
        self._write([], json.dumps(state, allow_nan=True) + "\n", self.next_snp)
        # a Ctrl-C or SIGTERM among the renames waits for their end: it left
        # the new tables beside the last run's null.json until a --resume
        # (helper 63); once delivered, abandon() says the outputs are complete
        with deferred_interrupts():
            for k, (src, dst) in enumerate(pairs):
                if self._stop == (k, "rename"):  # test hook: killed among the renames
                    os.kill(os.getpid(), signal.SIGKILL)
                if self._stop == (k, "rename-interrupt"):  # test hook: an error there
                    raise KeyboardInterrupt
                if self._stop == (k, "rename-signal"):  # test hook: SIGINT there
                    os.kill(os.getpid(), signal.SIGINT)
                os.replace(src, dst)
            self._placed = True
            self.remove()
            self.release_locks()

    def release_locks(self) -> None:
        """Close the descriptors that kept the partial files locked."""
        while self._locks:
            with contextlib.suppress(OSError):
                os.close(self._locks.pop())

    def remove(self) -> None:
        for path in (*self.tables, *self.sidecars, self.path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def abandon(self, exc: BaseException) -> None:
        """The run failed: keep what --resume needs, else remove.

        Kept when the scan stopped after a block and before its end: an
        interruption, an OSError or MemoryError, or bad input met while
        reading the genotypes (a .bed truncated while the scan read it); and
        after its end when one of the first three stopped a later step (a
        full disk for null.json); and everything once the final renames are
        recorded (:meth:`commit`), for --resume to finish them.
        """
        # a save that failed too leaves the checkpoint before it on the disk
        with contextlib.suppress(Exception):
            self.close()
        self.release_locks()
        if self._placed:  # stopped while the checkpoint was removed: the outputs stand
            with contextlib.suppress(OSError):
                self.remove()
            with contextlib.suppress(AttributeError, TypeError):
                exc.lmmscan_hint = "the tables and null.json are complete"  # type: ignore[attr-defined]
            return
        if self._recorded:  # stopped among the final renames: keep it all
            with contextlib.suppress(AttributeError, TypeError):
                exc.lmmscan_hint = (  # type: ignore[attr-defined]  # read by the entry point
                    "the scan had finished and was putting its outputs in place: rerun the "
                    "same command with --resume to finish that"
                )
            return
        done = self._saved_snp  # what the checkpoint on the disk says
        n = self.source.n_snps
        environment = isinstance(exc, (KeyboardInterrupt, OSError, MemoryError))
        stopped = environment or isinstance(exc, LmmscanError)
        # a finished scan whose later step failed (null.json on a full disk)
        # keeps its tables for --resume to finish; not after bad input, which
        # a rerun meets again
        keep = stopped and 0 < done and (done < n or environment)
        more = f" (and {len(self.tables) - 1} more)" if len(self.tables) > 1 else ""
        if not keep:
            self.remove()
            return
        if done == n:
            with contextlib.suppress(AttributeError, TypeError):
                exc.lmmscan_hint = (  # type: ignore[attr-defined]  # read by the entry point
                    f"all {n} SNPs were scanned: the tables are kept in {self.tables[0]}{more} "
                    f"and {self.path}; rerun the same command with --resume to write the rest"
                )
            return
        # --resume takes only the input files the scan began with: after bad
        # input, only once they are back as they were (a file being copied, a
        # disk that came back); a corrected file is another run
        when = (
            " once the input files are as they were when this scan began (a corrected "
            "file needs a new run, without --resume)"
            if isinstance(exc, LmmscanError)
            else ""
        )
        hint = (
            f"SNPs 1-{done} of {self.source.n_snps} are kept in "
            f"{self.tables[0]}{more} and {self.path}: rerun the same command with --resume "
            f"to continue{when}"
        )
        with contextlib.suppress(AttributeError, TypeError):
            exc.lmmscan_hint = hint  # type: ignore[attr-defined]  # read by the entry point
