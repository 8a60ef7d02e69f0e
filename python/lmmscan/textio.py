"""GEMMA's text inputs: phenotype, covariate and kinship files (and writing kinships).

Phenotype and covariate files have one row per individual, in genotype-file
order, no header; fields are separated by spaces, tabs or commas (GEMMA
splits on any run of " ,\\t"); ``NA`` is missing.  Unlike GEMMA, which turns
any other non-numeric token into 0 with ``atof``, a token that is not a
number is an error naming its line and column.

Kinship matrices are GEMMA's tab-separated ``%.10g`` text or numpy ``.npy``.
Neither direction runs Python per value: the text is parsed by the core's
number parser (``_core.parse_numbers``, correctly rounded, on two threads)
from a mapped file, and written by vectorised ``%.10g`` formatting.  Kinship
values are C's decimal floats (a leading ``+`` allowed); ``NA``, ``nan``,
``NaN``, ``-nan``, ``-NaN`` and ``[+-]inf``/``infinity`` parse, then fail the
finiteness check; any other token is an error naming its line and column.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import math
import mmap
import os
import re
import stat
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from ._errors import InputError, naming, one_line, plural, printable
from ._threads import usable_cores

if TYPE_CHECKING:
    import pandas as pd

_SEPARATORS = b" ,\t\r"


def line_chunks(fh, size: int):
    """Yield the bytes of a binary file in chunks of whole lines (about ``size``
    bytes each); a last line without a newline gets one (dropped if blank).

    Each chunk is one ``read`` completed by one ``readline``: one copy of the
    chunk, where accumulating a tail and cutting at the last newline takes two.
    """
    while True:
        data = fh.read(size)
        if not data:
            return
        if not data.endswith(b"\n"):
            data += fh.readline()
        if data.endswith(b"\n"):
            yield data
            continue
        # end of file inside a line without a newline
        cut = data.rfind(b"\n") + 1
        data = data + b"\n" if data[cut:].strip() else data[:cut]
        if data:
            yield data
        return


def input_source(path: Path) -> Path | io.BytesIO:
    """``path``, or a named pipe's bytes (read once: a pipe cannot be reread)."""
    return read_pipe(path) if stat.S_ISFIFO(input_stat(path).st_mode) else path


def source_bytes(source: Path | io.BytesIO) -> bytes:
    """All of ``source``'s bytes (a file's, or a pipe's already read); a read
    error without a file name (EIO) names the file."""
    if isinstance(source, io.BytesIO):
        return source.getvalue()
    with naming(source):
        return source.read_bytes()


def check_utf8_path(path: str | os.PathLike[str], flag: str | None = None) -> None:
    """Refuse a path that is not UTF-8 where a reader needs a str path
    (bed-reader), before any work rather than at the first read."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        given = f"{flag}: " if flag else ""
        raise InputError(
            f"{given}the path has a byte that is not UTF-8 (0x{exc.object[exc.start]:02x}); "
            "rename the file or its directory",
            path=printable(path),
        ) from None


def input_stat(
    path: str | os.PathLike[str], *, needs_file: str | None = None, flag: str | None = None
) -> os.stat_result:
    """What ``path`` is, found without opening it (opening a FIFO blocks).

    A device or a socket is refused (``/dev/zero`` never ends); a pipe or
    FIFO is refused when ``needs_file`` says why the reader needs a regular
    file (it seeks, maps or reads twice), else it may be read once.
    """
    given = f"{flag} " if flag else ""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError("file not found", path=printable(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", path=printable(path)) from None
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise InputError("is a directory, not a file", path=printable(path))
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
        kind = "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise InputError(f"{given}names {kind}, not a file", path=printable(path))
    if stat.S_ISFIFO(mode) and needs_file is not None:
        raise InputError(
            f"{given}names a pipe or FIFO, but {needs_file}: give a regular file",
            path=printable(path),
        )
    return st


def _pipe_limit() -> int:
    """The most a pipe is read into memory: half of this machine's memory."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (OSError, ValueError, AttributeError):  # pragma: no cover - not POSIX
        return 8 << 30


def read_pipe(path: str | os.PathLike[str], limit: int | None = None) -> io.BytesIO:
    """The whole of a pipe or FIFO, read once into memory (at most ``limit``
    bytes: more is refused, never cut short).

    It is opened without blocking, so a FIFO that no process writes reads as
    empty instead of waiting for ever.
    """
    limit = _pipe_limit() if limit is None else limit
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    out = io.BytesIO()
    try:
        os.set_blocking(fd, True)
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            if out.tell() + len(data) > limit:
                raise InputError(
                    f"a pipe of more than {limit} bytes (half this machine's memory); "
                    "give a regular file",
                    path=printable(path),
                )
            out.write(data)
    finally:
        os.close(fd)
    if out.tell() == 0:
        raise InputError(
            "nothing to read from this pipe (no process writes to it, or it wrote nothing)",
            path=printable(path),
        )
    out.seek(0)
    return out


@contextlib.contextmanager
def open_input(path: Path):
    """A binary file object over ``path``, gunzipped if it is gzip: a regular
    file opened once, a pipe read once (bounded, :func:`read_pipe`); a device
    refused.  An OSError without a file name while it is read (EIO from the
    disk) names ``path``: "Input/output error" alone named no file."""
    st = input_stat(path)
    raw = read_pipe(path) if stat.S_ISFIFO(st.st_mode) else open(path, "rb")
    with naming(path), raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if gz:
            with gzip.GzipFile(fileobj=raw, mode="rb") as fh, gzip_errors(path):
                yield fh
        else:
            yield raw


# what a damaged gzip stream raises while it is read: a cut-off stream
# (EOFError), bad deflate data (zlib.error), a bad header or CRC (BadGzipFile)
GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


@contextlib.contextmanager
def gzip_errors(path: str | os.PathLike[str]):
    """A damaged gzip stream read inside: an InputError naming ``path``."""
    try:
        yield
    except GZIP_ERRORS as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"truncated or corrupt gzip file ({why})", path=printable(path)) from None


def not_utf8(raw: bytes, offset: int, what: str, path: str | os.PathLike[str]) -> InputError:
    """The error for the byte at ``offset`` of ``raw`` (a whole file) that is
    not UTF-8: its byte offset in the file, its line and its field."""
    start = raw.rfind(b"\n", 0, offset) + 1
    before = raw[start:offset].translate(_TO_NEWLINE).split()
    inside = offset > start and raw[offset - 1 : offset] not in b" ,\t\r"
    return InputError(
        f"{what} is not UTF-8 text: byte 0x{raw[offset]:02x} at byte offset {offset}",
        path=printable(path),
        line=raw.count(b"\n", 0, offset) + 1,
        column=len(before) + (0 if inside and before else 1),
    )


def read_text(path: Path, what: str) -> str:
    """A small text file, whole, as UTF-8 (a byte that is not names its line).
    A byte-order mark at its start is dropped: it was read as part of the
    first field (the first --snps ID unmatched, the first annotation's SNP
    placed at chr -9)."""
    with open_input(path) as fh:
        raw = fh.read()
    try:
        return str(raw.decode()).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise not_utf8(raw, exc.start, what, path) from None


_PLAIN_INTEGER = re.compile(r"[+-]?[0-9]+\Z")


def not_exact_integers(tokens: Sequence[str], values: np.ndarray) -> np.ndarray:
    """Which of ``tokens`` (numbers already parsed as the float64 ``values``,
    integral) do not write that integer exactly: "1e-400" (which parses as
    0) or "2565440.0000000001" (as 2565440) were taken as those positions.
    "1e3" and "12.0" write one.  Only tokens other than plain digits are
    looked at."""
    from decimal import Decimal, InvalidOperation

    out = np.zeros(len(tokens), dtype=bool)
    for i, token in enumerate(tokens):
        if _PLAIN_INTEGER.match(token):
            continue
        try:
            out[i] = Decimal(token) != int(values[i])
        except (InvalidOperation, ValueError, OverflowError):
            out[i] = True
    return out


def first_short_row(table: Any) -> tuple[int, int] | None:
    """(row, its fields) of the first row of a header-less table read by
    read_csv (every field as text, keep_default_na off) that is shorter than
    the widest, whose missing fields read_csv padded with "" (or NaN); None
    when every row is whole."""
    absent = table.isna() | (table == "")
    short = absent.any(axis=1).to_numpy()
    if not short.any():
        return None
    i = int(np.flatnonzero(short)[0])
    return i, int((~absent.iloc[i]).sum())


def data_line(path: str | os.PathLike[str], index: int, first_line: int = 1) -> int:
    """The file line of row ``index`` (from 0) of a table whose readers skip
    blank lines, its first row on or after line ``first_line``: an error
    named line first_line + index, short by the blank lines before it.
    Read again when asked (an error is being reported); a pipe, which
    cannot be, or a .zst file give first_line + index."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode) or str(path).endswith(".zst"):
            return first_line + index
        with open_input(Path(path)) as fh:
            raw = fh.read()
    except (OSError, ValueError, EOFError, zlib.error):
        return first_line + index
    row = -1
    for number, line in enumerate(raw.split(b"\n")[first_line - 1 :], start=first_line):
        if line.strip(b" \t\r"):  # a form feed alone is a field to read_csv
            row += 1
            if row == index:
                return number
    return first_line + index


def read_rows(path: str | os.PathLike[str], what: str) -> list[list[str]]:
    """Tokens of each line of a small text table (phenotypes, covariates).

    Blank lines at the end are ignored; a blank line before the end is an
    error, because rows are matched to individuals by position.
    """
    path = Path(path)
    lines = read_text(path, f"{what} file").replace(",", " ").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    rows = [line.split() for line in lines]
    for i, row in enumerate(rows):
        if not row:
            raise InputError(
                f"empty line in the {what} file (one row per individual expected)",
                path=str(path),
                line=i + 1,
            )
    if not rows:
        raise InputError(f"{what} file is empty", path=str(path))
    return rows


class BadToken(ValueError):
    """A token that is not a number (or, where numbers must be finite, an
    infinite one: ``infinite``); ``index`` is its 0-based position."""

    def __init__(self, index: int, token: str, infinite: bool = False) -> None:
        super().__init__(f"{token!r} is {'infinite' if infinite else 'not a number'}")
        self.index = index
        self.token = token
        self.infinite = infinite


def wider_row(exc: BaseException) -> tuple[int, int, int] | None:
    """(fields expected, file line, fields seen) from read_csv's "Expected 6
    fields in line 3, saw 7", or None for another parse error."""
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    return None if found is None else (int(found[1]), int(found[2]), int(found[3]))


# what a sample file's infinite phenotype is told (its missing codes)
INFINITE_NOTE = " (NA or -9 is missing)"

# a plain decimal number: pandas' to_numeric and float() give the same double
# for these (with a leading "+", to_numeric rounds some last digits otherwise,
# so such tokens keep going through pandas)
_PLAIN_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")


def parse_phenotype(
    tokens: pd.Series | np.ndarray | list[str], *, minus9_missing: bool, finite: bool = False
) -> np.ndarray:
    """Phenotype or covariate tokens to float64 with NaN for missing, as GEMMA reads them.

    ``NA`` is missing; so is -9 when ``minus9_missing`` (the .fam column).
    Raises :class:`BadToken` on a non-numeric token, and with ``finite`` on an
    infinite one (``inf``, or ``1e400``).
    """
    listed = tokens.tolist() if isinstance(tokens, np.ndarray) else list(tokens)
    if all(t == "NA" or (type(t) is str and _PLAIN_NUMBER.match(t)) for t in listed):
        # NA and plain decimals: float() rounds them correctly, as to_numeric
        # does (without the import of pandas the command line would pay)
        values = np.array([math.nan if t == "NA" else float(t) for t in listed], dtype=np.float64)
    else:
        values = _parse_with_pandas(tokens)
    if minus9_missing:
        values[values == -9] = np.nan
    if finite:
        infinite = np.flatnonzero(np.isinf(values))
        if infinite.size:
            i = int(infinite[0])
            raise BadToken(i, str(listed[i]), infinite=True)
    return values


def _parse_with_pandas(tokens: pd.Series | np.ndarray | list[str]) -> np.ndarray:
    """Any tokens by pandas' to_numeric: NA and nan spellings missing, else
    :class:`BadToken` for the first that is not a number."""
    import pandas as pd

    s = pd.Series(np.asarray(tokens, dtype=object))
    na = (s == "NA").to_numpy()
    values = np.array(pd.to_numeric(s.mask(na), errors="coerce"), dtype=np.float64)
    for i in np.flatnonzero(np.isnan(values) & ~na):
        tok = str(s.iloc[i])
        if tok.lower() not in ("nan", "+nan", "-nan"):
            raise BadToken(int(i), tok)
    return values


def _parse_column(tokens: list[str], path: Path, column: int, what: str) -> np.ndarray:
    try:
        values = parse_phenotype(
            np.asarray(tokens, dtype=object), minus9_missing=False, finite=True
        )
    except BadToken as exc:
        raise InputError(
            f"{what} {exc.token!r} is infinite"
            if exc.infinite
            else f"{what} {exc.token!r} is not a number (use NA for missing)",
            path=str(path),
            line=exc.index + 1,
            column=column,
        ) from None
    if what == "phenotype":  # rescaled by the fit: its units change no test
        return values
    from .samples import HUGE

    with np.errstate(invalid="ignore"):
        huge = np.flatnonzero(np.abs(values) > HUGE)
    if huge.size:
        raise InputError(
            f"{what} {tokens[huge[0]]!r} is too large: beyond ±{HUGE:.0e} its square "
            "overflows; rescale the column",
            path=printable(path),
            line=int(huge[0]) + 1,
            column=column,
        )
    return values


def _column_numbers(columns: object) -> list[int]:
    """``columns`` (an integer, or a list of them) as a list of ints; anything
    else refused by name ("1" was compared with numbers, a TypeError)."""
    from ._errors import number

    if isinstance(columns, np.ndarray) and columns.ndim == 0:
        columns = columns.item()
    items = [columns] if number(columns, whole=True) is not None else columns
    if not isinstance(items, list | tuple | np.ndarray) or len(items) == 0:
        items = [None]
    # each int as given: through a float, 12345678901234567891 was quoted
    # as 12345678901234567168 in the out-of-range error
    out = [int(c) for c in items if c is not None and number(c, whole=True) is not None]
    if len(out) != len(items):
        raise InputError(
            f"columns must be a column number or a list of them (from 1), got {columns!r}"
        )
    return out


def read_pheno(
    path: str | os.PathLike[str], columns: list[int], n_samples: int | None = None
) -> np.ndarray:
    """Phenotype columns (1-based, GEMMA's ``-n``) as an (individuals, len(columns)) array.

    ``NA`` is missing (NaN); -9 is a real value here, as in GEMMA's ``-p``.
    ``n_samples``: the number of individuals of the genotype file; the file
    must have exactly that many rows.
    """
    columns = _column_numbers(columns)
    path = Path(path)
    rows = read_rows(path, "phenotype")
    if n_samples is not None and len(rows) != n_samples:
        raise InputError(
            f"phenotype file has {len(rows)} rows but the genotype file has {n_samples} "
            "individuals (one row per individual, in genotype-file order)",
            path=str(path),
        )
    # Every row as wide as the first, as for covariates: a row with a field
    # too few (an empty CSV field, a decimal comma) would otherwise give its
    # individual another column's value, silently
    width = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InputError(
                f"{plural(len(row), 'column')} where line 1 has {width} "
                "(every line needs the same columns; write NA for a missing value)",
                path=str(path),
                line=i + 1,
            )
    for col in columns:
        if col < 1:
            raise InputError(f"--pheno-col {col}: columns are numbered from 1", path=str(path))
        if col > width:
            raise InputError(
                f"--pheno-col {col} is out of range: the file has {plural(width, 'column')}",
                path=str(path),
            )
    out = np.empty((len(rows), len(columns)))
    for k, col in enumerate(columns):
        out[:, k] = _parse_column([r[col - 1] for r in rows], path, col, "phenotype")
    return out


def read_covar(path: str | os.PathLike[str], n_samples: int | None = None) -> np.ndarray:
    """A covariate file as an (individuals, c) array, NaN for ``NA``.

    Every row must have the same number of columns.  Whether an intercept is
    appended is decided later, on the analysed rows (GEMMA's rule, see
    :func:`lmmscan.model.analysed_samples`).
    """
    path = Path(path)
    rows = read_rows(path, "covariate")
    if n_samples is not None and len(rows) != n_samples:
        raise InputError(
            f"covariate file has {len(rows)} rows but the genotype file has {n_samples} "
            "individuals (one row per individual, in genotype-file order)",
            path=str(path),
        )
    c = len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != c:
            raise InputError(
                f"{plural(len(row), 'column')} where line 1 has {c}",
                path=str(path),
                line=i + 1,
            )
    out = np.empty((len(rows), c))
    for k in range(c):
        out[:, k] = _parse_column([r[k] for r in rows], path, k + 1, "covariate")
    return out


# --------------------------------------------------------------------------- kinship


def read_kinship(path: str | os.PathLike[str], n_samples: int | None = None) -> np.ndarray:
    """A kinship matrix from GEMMA text (any of " ,\\t" between values) or ``.npy``.

    Checks that it is square (and ``n_samples`` x ``n_samples`` when given),
    finite and symmetric; errors name the file (and the line and column of a
    NaN or a bad token).
    """
    path = Path(path)
    if path.suffix == ".npy":
        st = input_stat(path)
        try:
            with read_pipe(path) if stat.S_ISFIFO(st.st_mode) else open(path, "rb") as fh:
                if stat.S_ISREG(st.st_mode):
                    _check_npy_size(fh, path, st.st_size)
                K = np.load(fh, allow_pickle=False)
                if not isinstance(K, np.ndarray):  # an .npz archive under a .npy name
                    K.close()
                    raise InputError(
                        "an .npz archive, not a kinship (.npy); an eigendecomposition "
                        "goes to --eigen",
                        path=str(path),
                    )
        except (InputError, MemoryError):  # a real lack of memory is said as such
            raise
        except (ValueError, OSError, EOFError, SyntaxError) as exc:
            raise InputError(
                f"not a readable .npy file ({one_line(exc)})", path=str(path)
            ) from None
        except Exception as exc:  # numpy's header parser: tokenize.TokenError, ...
            raise InputError(
                f"not a readable .npy file ({type(exc).__name__}: {one_line(exc)})",
                path=str(path),
            ) from None
        if K.dtype.kind not in "fiu":
            raise InputError(f"kinship has dtype {K.dtype}, not numbers", path=str(path))
        with np.errstate(invalid="ignore"):  # a signalling NaN: refused below, by its place
            K = np.asarray(K, dtype=np.float64)
    else:
        K = _read_matrix_text(path, n_samples)
    check_kinship_file(K, path, n_samples)
    return K


def _check_npy_size(fh: BinaryIO, path: Path, size: int) -> None:
    """Refuse a .npy file whose header promises more values than it holds,
    before numpy allocates them (a damaged header asked for 74.5 GiB, and the
    message did not name the file).  Leaves ``fh`` at its start."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(fh)
        else:  # numpy's own reader checks the rest
            return
        want = math.prod(shape) * dtype.itemsize
        held = size - fh.tell()
    except Exception:  # a damaged header: np.load says what it finds
        return
    finally:
        fh.seek(0)
    if want > held:
        raise InputError(
            f"its header says {' x '.join(map(str, shape))} values of {dtype}, but the file "
            f"holds {held} bytes of data (cut short or damaged)",
            path=str(path),
        )


def check_kinship_file(K: np.ndarray, path: Path, n_samples: int | None) -> None:
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise InputError(f"kinship must be a square matrix, got shape {K.shape}", path=str(path))
    if n_samples is not None and K.shape[0] != n_samples:
        raise InputError(
            f"kinship is {K.shape[0]} x {K.shape[1]} but the genotype file has {n_samples} "
            "individuals",
            path=str(path),
        )
    # non-finite values, in row blocks (no n x n mask)
    rows = max(1, (1 << 22) // max(1, K.shape[1]))
    for start in range(0, K.shape[0], rows):
        block = K[start : start + rows]
        if not np.isfinite(block).all():
            i, j = np.argwhere(~np.isfinite(block))[0]
            i = start + int(i)
            raise InputError(
                f"kinship has a non-finite value ({K[i, j]})",
                path=str(path),
                line=i + 1,
                column=int(j) + 1,
            )
    # max |K| without an n x n temporary (the values are finite here)
    scale = max(float(K.max()), -float(K.min())) if K.size else 0.0
    # the first asymmetric entry in row-major order is above the diagonal, so
    # the upper triangle K[i, i:] against K[i:, i].T is compared, in row blocks
    # small enough for the cache and one reused buffer
    tol = 1e-8 * max(scale, 1e-300)
    n = K.shape[0]
    step = max(1, (1 << 20) // max(1, n))
    buf = np.empty((min(step, n), n))
    for start in range(0, n, step):
        stop = min(start + step, n)
        diff = buf[: stop - start, : n - start]
        np.subtract(K[start:stop, start:], K[start:, start:stop].T, out=diff)
        np.abs(diff, out=diff)
        if diff.max() > tol:
            i, j = np.argwhere(diff > tol)[0]
            i, j = start + int(i), start + int(j)
            raise InputError(
                f"kinship is not symmetric: entry ({i + 1}, {j + 1}) is "
                f"{K[i, j]:.10g} but ({j + 1}, {i + 1}) is {K[j, i]:.10g}",
                path=str(path),
            )


# 32 MB: glibc serves allocations of at least its largest mmap threshold
# (32 MB) with mmap and gives them back; smaller chunk buffers stay in the
# heap after the read (+30-40 MB peak RSS in a mouse scan with 8 MB chunks)
_CHUNK_BYTES = 32 << 20
# chunks of at least this many bytes are parsed on two threads
_THREADED_BYTES = 1 << 20
_TO_NEWLINE = bytes.maketrans(_SEPARATORS, b"\n" * len(_SEPARATORS))
_TOKEN = re.compile(rb"[^ ,\t\r\n]+")


def _parse_threads(size: int) -> int:
    return min(2, usable_cores()) if size >= _THREADED_BYTES else 1


def _text_chunks(path: Path):
    """The bytes of a text file in chunks of whole lines (about ``_CHUNK_BYTES``
    each; the last line may lack its newline).

    A plain file is mapped (memoryviews of the mapping: no copy of the text,
    and each chunk's pages are unmapped once parsed); a gzip file or a pipe
    is read with :func:`line_chunks`.
    """
    with open_input(path) as fh:
        if not isinstance(fh, io.BufferedReader):  # gzip, or a pipe read into memory
            yield from line_chunks(fh, _CHUNK_BYTES)
            return
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            advise = getattr(mm, "madvise", None) if hasattr(mmap, "MADV_DONTNEED") else None
            if advise is not None:
                advise(mmap.MADV_SEQUENTIAL)
            view = memoryview(mm)
            try:
                start = released = 0
                while start < size:
                    newline = mm.find(b"\n", min(start + _CHUNK_BYTES, size) - 1)
                    stop = size if newline < 0 else newline + 1
                    with view[start:stop] as chunk:
                        yield chunk
                    start = stop
                    # the parsed pages: out of this process's memory (the
                    # file's pages stay in the page cache)
                    page_end = stop // mmap.PAGESIZE * mmap.PAGESIZE
                    if advise is not None and page_end > released:
                        advise(mmap.MADV_DONTNEED, released, page_end - released)
                        released = page_end
            finally:
                view.release()


def check_line_ends(chunk: bytes | memoryview, path: Path) -> None:
    """Refuse a text file whose lines end in a carriage return alone
    (classic Mac text), from its first chunk: read as one line holding every
    value, a BIMBAM file was one SNP (the error blamed the phenotype file)
    and a kinship's first row asked for 191 GiB.  Carriage returns before a
    line's newline (CRLF; CR CR LF, a CRLF written in Windows text mode) are
    whitespace."""
    lines = bytes(chunk[:_LINE_END_PROBE]).split(b"\n")
    at = next((k for k, line in enumerate(lines) if line.strip()), 0)  # past blank lines
    if b"\r" in lines[at].rstrip(b"\r"):
        raise InputError(
            "its lines end in a carriage return alone (classic Mac text): convert them to newlines",
            path=str(path),
            line=at + 1,
        )


_LINE_END_PROBE = 8 << 20  # bytes of the first chunk looked at (a first line of 10^5
# values in GEMMA's digits is about 2 MB)


def _read_matrix_text(path: Path, n_samples: int | None = None) -> np.ndarray:
    """A whitespace/comma separated numeric matrix, parsed a chunk of rows at a time.

    Each chunk's numbers are parsed by the core (``_core.parse_numbers``:
    C's decimal floats correctly rounded, ``[+-]inf``, NaN for ``NA``,
    ``nan``, ``NaN``, ``-nan``, ``-NaN``) with the GIL released, on two
    threads for large chunks, straight into the matrix; the shape checks and
    errors are made here.
    """
    from ._core import parse_numbers

    # a kinship is square: once the first row gives ncol, the values are
    # parsed into an ncol x ncol array in place (no list of chunks plus a
    # concatenated copy)
    out = None
    filled = 0
    ncol = None
    line_no = 0  # lines before the current chunk
    offset = 0  # bytes before the current chunk
    with contextlib.closing(_text_chunks(path)) as chunks:
        for chunk in chunks:
            if not offset:
                check_line_ends(chunk, path)
            if out is None:
                width = _first_line_width(chunk)
                if width:
                    out = _square(width, path, n_samples)
            dest = None if out is None else out[filled:]
            parsed, counts, bad = parse_numbers(chunk, _parse_threads(len(chunk)), dest)
            if bad >= 0:
                _raise_bad_token(chunk, bad, path, line_no, offset)
            nonblank = np.flatnonzero(counts)
            if nonblank.size:
                if ncol is None:
                    ncol = int(counts[nonblank[0]])
                wrong = nonblank[counts[nonblank] != ncol]
                if wrong.size:
                    raise InputError(
                        f"{counts[wrong[0]]} values where the first row has {ncol}",
                        path=str(path),
                        line=line_no + int(wrong[0]) + 1,
                    )
                if out is None:
                    out = _square(ncol, path, n_samples, line_no + int(nonblank[0]) + 1)
                if filled + parsed.size > out.size:
                    raise InputError(
                        f"more than {ncol} rows of {ncol} values: a kinship must be square",
                        path=str(path),
                        line=line_no + int(nonblank[-1]) + 1,
                    )
                if dest is None:  # parsed before the first row was known
                    out[filled : filled + parsed.size] = parsed
                filled += parsed.size
            line_no += counts.size
            offset += len(chunk)
    if ncol is None or out is None:
        raise InputError("kinship file is empty", path=str(path))
    return out[:filled].reshape(-1, ncol)


def _square(width: int, path: Path, n_samples: int | None, line: int = 1) -> np.ndarray:
    """The width x width matrix a text kinship's first row of ``width``
    values (file line ``line``) promises: refused before it is allocated
    when that is more than the genotype file's samples (a flattened matrix
    on one line asked for terabytes; a smaller one is read, and its shape
    refused with both sides), and a failed allocation names the file."""
    if n_samples is not None and width > n_samples:
        raise InputError(
            f"the kinship's first row has {width} values but the genotype file has "
            f"{n_samples} individuals",
            path=str(path),
            line=line,
        )
    try:
        return np.empty(width * width)
    except MemoryError:
        raise MemoryError(
            f"{path}: its first row has {width:,} values, and a {width:,} x {width:,} kinship "
            f"needs {8 * width * width / 2**30:,.1f} GiB"
        ) from None


def _first_line_width(chunk) -> int:
    """The number of values on the first line of ``chunk`` (0 if it is blank or
    holds a token that is not a number)."""
    from ._core import parse_numbers

    size = 1 << 16
    while True:
        head = bytes(chunk[:size])
        newline = head.find(b"\n")
        if newline >= 0 or size >= len(chunk):
            break
        size *= 8
    _, counts, bad = parse_numbers(head if newline < 0 else head[: newline + 1])
    return int(counts[0]) if bad < 0 and counts.size else 0


def _tokens_per_line(chunk: bytes) -> np.ndarray:
    """Number of separator-delimited tokens on each line of ``chunk`` (ends with a newline)."""
    b = np.frombuffer(chunk, dtype=np.uint8)
    newline = b == 10
    sep = newline | (b == 32) | (b == 9) | (b == 44) | (b == 13)
    del b
    start = ~sep
    start[1:] &= sep[:-1]
    del sep
    # the tokens' first bytes, counted between line starts (np.add.reduceat
    # with an int64 sum made an int64 copy of the chunk's every byte: 8 times
    # a 16 MiB chunk, the peak of a BIMBAM file's first pass)
    tokens = np.flatnonzero(start)
    del start
    bounds = np.concatenate([[0], np.flatnonzero(newline) + 1])
    return np.diff(np.searchsorted(tokens, bounds)).astype(np.int64, copy=False)


def token_at(text: bytes | bytearray, bad: int) -> tuple[str, int, int]:
    """The token starting at byte ``bad`` of ``text`` (as parse_numbers reports
    one), its line (0-based, within ``text``) and its column (1-based)."""
    start = text.rfind(b"\n", 0, bad) + 1
    column = len(text[start:bad].translate(_TO_NEWLINE).split()) + 1
    match = _TOKEN.match(text, bad)
    token = match.group().decode(errors="replace") if match else ""
    return token, text.count(b"\n", 0, bad), column


_BINARY = {b"PK\x03\x04": "a zip (.npz) file", b"\x93NUMPY": "a .npy file without the .npy suffix"}


def _raise_bad_token(chunk: bytes, bad: int, path: Path, line_no: int, offset: int) -> None:
    """The InputError for the token at byte ``bad`` of ``chunk`` (``offset``
    bytes into the file), with its line and column; a binary file is named as
    such instead of quoting its bytes."""
    text = bytes(chunk)
    for magic, kind in _BINARY.items():
        if offset == 0 and text.startswith(magic):
            raise InputError(
                f"is {kind}, not kinship text: a kinship is GEMMA text or .npy "
                "(an eigendecomposition goes to --eigen)",
                path=printable(path),
            )
    if offset == 0 and bad == 0 and text.startswith(b"\xef\xbb\xbf"):
        raise InputError(
            "the file starts with a UTF-8 byte-order mark: save it as plain text, without one",
            path=printable(path),
            line=1,
            column=1,
        )
    token, line, column = token_at(text, bad)
    match = _TOKEN.match(text, bad)
    raw = match.group() if match else b""
    odd = next((i for i, b in enumerate(raw) if b < 32 or b > 126), None)
    if odd is not None:  # a byte of no text: name it, not a quoted mess
        raise InputError(
            f"kinship file is not text: byte 0x{raw[odd]:02x} at byte offset {offset + bad + odd}",
            path=printable(path),
            line=line_no + line + 1,
            column=column,
        )
    raise InputError(
        f"{token!r} is not a number", path=printable(path), line=line_no + line + 1, column=column
    )


# ------------------------------------------------------------------ %.10g formatting

_P10 = 10.0 ** np.arange(23)
# "", "0.", "0.0", "0.00", "0.000" and the same with "-", at the end of 8 bytes
_PREFIX_WORDS = (
    np.array(
        [
            (sign + (b"" if z == 0 else b"0." + b"0" * (z - 1))).rjust(8, b"\0")
            for sign in (b"", b"-")
            for z in range(5)
        ],
        dtype="S8",
    )
    .view("<u8")
    .astype(np.uint64)
)

_WORDS: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def _digit_words() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tables for v < 100000: its 5 zero-padded ASCII digits as the low bytes
    of a uint64; the same with its trailing "0" digits dropped and a tab
    after the last kept digit; the number of kept digits (0 for 0)."""
    global _WORDS
    if _WORDS is None:
        v = np.arange(100000)
        digits = np.stack([(v // 10 ** (4 - k)) % 10 for k in range(5)], axis=1) + 48
        table = np.zeros((100000, 8), np.uint8)
        table[:, :5] = digits
        words = table.view("<u8").ravel().astype(np.uint64)
        # digit k is kept when some digit at or after k is not "0"
        keep = np.flip(np.cumsum(np.flip(digits != 48, axis=1), axis=1), axis=1) > 0
        kept = keep.sum(axis=1)
        table[:, :5] = np.where(keep, digits, 0)
        table[v, kept] = ord("\t")
        _WORDS = (words, table.view("<u8").ravel().astype(np.uint64), kept.astype(np.int64))
    return _WORDS


def format_g10(x: np.ndarray, seps: np.ndarray) -> bytes:
    """``"%.10g" % v + sep`` for each value, concatenated, byte-identical to C's printf.

    ``seps`` is an "S1" array, one separator per value.  Values in
    (-1, -1e-4] and [1e-4, 1), almost all of a kinship, are rounded to 10
    significant digits here: one correctly rounded product with an exact
    power of ten is within 1e-6 of the exact scaled value, so the rounding is
    exact unless the value is within 1e-5 of a tie.  Each value then gets a
    24-byte cell: its prefix ("-0.00"), its 10 digits with trailing zeros
    NUL-ed from a table, and its separator; dropping the NULs concatenates
    the strings.  Near-ties, the diagonal (>= 1), values below 1e-4 (printf's
    e-notation), zeros and non-finite values go through Python's formatting,
    which is exact.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    n = x.shape[0]
    a = np.abs(x)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # the decimal exponent, clipped to where the scaling below is exact
        # (fmax/fmin map the NaN of a NaN to -5)
        e = np.fmin(np.fmax(np.floor(np.log10(a)), -5.0), 0.0).astype(np.int64)
        s = a * _P10[9 - e]
        # log10 can be one off next to a power of ten
        off = np.flatnonzero((s < 1e9) | (s >= 1e10))
        if off.size:
            e[off] += (s[off] >= 1e10).astype(np.int64) - (s[off] < 1e9)
            s[off] = a[off] * _P10[9 - e[off]]
    # s in [1e9, 1e10) for the values handled here; others get a dummy
    # (and inf/NaN/huge values never reach the integer cast)
    cand = (s >= 1e9) & (s < 1e10)
    s = np.where(cand, s, 1e9)
    floor = np.floor(s)
    frac = s - floor
    m = floor.astype(np.int64) + (frac >= 0.5)
    top = m == 10**10
    if top.any():
        m[top] = 10**9
        e[top] += 1
    fast = cand & (e >= -4) & (e < 0) & (np.abs(frac - 0.5) >= 1e-5)
    words, tail_words, kept = _digit_words()
    hi = m // 100000
    lo = m - hi * 100000
    # each 24-byte cell: the prefix at the end of the first word, then the
    # digits without trailing zeros and a tab, then NULs, so that the text
    # of a value is one run of bytes (dropping the NULs copies one run each)
    cells = np.empty((n, 3), np.uint64)
    cells[:, 0] = _PREFIX_WORDS[np.signbit(x) * 5 + np.clip(-e, 0, 4)]
    w_hi = words[hi]
    w_lo = tail_words[lo]
    # trailing zeros reach into the first five digits when the last five are 0
    zero = np.flatnonzero(lo == 0)
    w_hi[zero] = tail_words[hi[zero]]
    w_lo[zero] = 0
    cells[:, 1] = w_hi | (w_lo << np.uint64(40))
    cells[:, 2] = w_lo >> np.uint64(24)
    # other separators than the tab: at byte 8 + the number of digits
    sep = seps.view(np.uint8)
    fix = np.flatnonzero(sep != 9)
    if fix.size:
        n_digits = 5 + kept[lo[fix]]
        n_digits[lo[fix] == 0] = kept[hi[fix[lo[fix] == 0]]]
        cells.view(np.uint8).reshape(n, 24)[fix, 8 + n_digits] = sep[fix]
    other = np.flatnonzero(~fast)
    if other.size:
        text = cells.view("S24").ravel()
        text[other] = _format_other(x[other], seps[other])
    raw = cells.view(np.uint8).ravel()
    return raw[raw != 0].tobytes()


def _format_other(x: np.ndarray, seps: np.ndarray) -> list[bytes]:
    return [
        (f"{v:.10g}" if np.isfinite(v) else _c_nonfinite(v)).encode() + sep
        for v, sep in zip(x.tolist(), seps.tolist(), strict=True)
    ]


def _c_nonfinite(v: float) -> str:
    if np.isnan(v):
        return "-nan" if np.signbit(v) else "nan"
    return "-inf" if v < 0 else "inf"


def _format_g10_python(x: np.ndarray, seps: np.ndarray) -> bytes:
    return b"".join(
        (f"{v:.10g}" if np.isfinite(v) else _c_nonfinite(v)).encode() + s
        for v, s in zip(x.tolist(), seps.tolist(), strict=True)
    )


if not hasattr(np, "strings") or sys.byteorder != "little":  # numpy < 2, or digit words
    format_g10 = _format_g10_python  # noqa: F811


def ordered_map(fn, items, threads: int | None):
    """``map(fn, items)`` on up to ``threads`` threads (None: the usable cores),
    results in order, at most two per thread computed ahead (bounded memory).

    For numpy work that releases the GIL, such as formatting the blocks of a
    kinship file.
    """
    threads = usable_cores() if threads is None else max(1, int(threads))
    if threads == 1:
        yield from map(fn, items)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) > 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def write_kinship_text(
    fh, K: np.ndarray, chunk_values: int = 1 << 16, threads: int | None = None
) -> None:
    """Write K as GEMMA does (``%.10g``, tab-separated, one row per line) to a binary file.

    Blocks of about ``chunk_values`` values are formatted on ``threads``
    threads (None: the usable cores) and written in order.
    """
    n_rows, n_cols = K.shape
    rows = max(1, chunk_values // max(1, n_cols))
    seps = np.full((rows, n_cols), b"\t", dtype="S1")
    seps[:, -1] = b"\n"

    def text(start: int) -> bytes:
        block = K[start : start + rows]
        return format_g10(block.ravel(), seps[: block.shape[0]].ravel())

    starts = range(0, n_rows, rows)
    for chunk in ordered_map(text, starts, threads if len(starts) > 1 else 1):
        fh.write(chunk)


def write_kinship(
    path: str | os.PathLike[str], K: np.ndarray, *, threads: int | None = None
) -> None:
    """Write K to ``path``: ``.npy`` as numpy, anything else as GEMMA text
    (formatted on ``threads`` threads; None: the usable cores), gzipped when
    the name ends in ``.gz`` (the readers take either).

    The file appears only when complete (written under a temporary name in
    the same directory, then renamed).
    """
    from .output import atomic_path
    from .spectral import check_kinship

    K = np.asarray(K)
    # what the readers would refuse is not written (a non-square or NaN
    # matrix was, and failed only when read back)
    K = check_kinship(K, K.shape[0] if K.ndim == 2 else -1)
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, np.ascontiguousarray(K, dtype=np.float64))
        elif path.suffix == ".gz":  # it was written as plain text under that name
            import gzip

            with (
                open(tmp, "wb") as raw,
                gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6, mtime=0) as fh,
            ):  # (no name in the header: it would be the temporary one)
                write_kinship_text(fh, np.asarray(K, dtype=np.float64), threads=threads)
        else:
            with open(tmp, "wb") as fh:
                write_kinship_text(fh, np.asarray(K, dtype=np.float64), threads=threads)


def read_snp_list(path: str | os.PathLike[str], flag: str) -> list[str]:
    """The variant IDs of a GEMMA -snps / -ksnps file: the first field of each
    non-blank line (GEMMA reads the first token of a line; more fields are
    allowed and ignored)."""
    path = Path(path)
    text = read_text(path, f"{flag} file")
    ids = [fields[0] for fields in (line.split() for line in text.splitlines()) if fields]
    if not ids:
        raise InputError(f"{flag}: the file lists no variant ID", path=str(path))
    return ids
