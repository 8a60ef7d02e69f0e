"""The errors lmmscan raises on purpose, by cause.

``InputError``: an argument or an input file is wrong (the user's to fix;
the command line exits with status 2).  ``NumericalError``: valid input on
which the arithmetic failed, e.g. lambda K + I that is not positive definite
in floating point, or a value that overflows (the command line exits with
status 3).  The C++ core's errors arrive as these two types too: its
argument checks as ``InputError``, its numerical failures as
``NumericalError`` (the binding translates them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np


class LmmscanError(Exception):
    """Base class of every error lmmscan raises on purpose."""


class InputError(LmmscanError, ValueError):
    """An argument or an input file is wrong; the message names it.

    ``path``, ``line`` and ``column`` are set when the fault is in a file.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        where = ""
        if path is not None:
            where = printable(path)
            if line is not None:
                where += f", line {line}"
            if column is not None:
                where += f", column {column}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.line = line
        self.column = column


def plural(n: int, noun: str) -> str:
    """ "1 SNP", "2 SNPs": messages count things."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def number(value: object, whole: bool = False) -> float | None:
    """``value`` as a float when it is a real number (an integer, with
    ``whole``), Python's or numpy's, not a bool; else None."""
    import numpy as np

    kinds = (int, np.integer) if whole else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds):
        return None
    return float(value)  # type: ignore[arg-type]


def real_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 array; an InputError naming ``name`` for complex
    numbers, which the conversion would cut to their real parts with only a
    ComplexWarning."""
    import numpy as np

    if hasattr(value, "toarray") and hasattr(value, "nnz"):  # scipy.sparse
        raise InputError(f"{name} is a sparse matrix: give a dense array ({name}.toarray())")
    if np.iscomplexobj(value):
        raise InputError(f"{name} holds complex numbers; lmmscan takes real ones")
    try:
        if type(value).__module__.partition(".")[0] == "pandas" and hasattr(value, "to_numpy"):
            # nullable columns (Int64, Float64, boolean): pd.NA is NaN, as a
            # single column's already was (a frame of two was refused)
            return value.to_numpy(dtype=np.float64, na_value=np.nan)
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:  # text, ragged lists, objects
        raise InputError(f"{name} must hold numbers: {exc}") from None


class NumericalError(LmmscanError, ArithmeticError):
    """The computation failed on input that is valid as such (not the user's
    mistake in the file or the arguments); the message says what failed."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (its name when it has none): its
    lines joined by a space, the spaces within a line kept (a file name's
    two spaces were one; helper 61)."""
    lines = [part.strip() for part in str(exc).splitlines()]
    return " ".join(part for part in lines if part) or type(exc).__name__


def printable(path: object) -> str:
    """A file name as a one-line message shows it: a line break or another
    control character as ``\\n`` or ``\\x1b``, a byte that is not UTF-8 as
    ``\\xff`` (a name with a newline split the message in two)."""
    import os

    try:
        text = os.fsencode(path).decode("utf-8", "backslashreplace")  # type: ignore[arg-type]
    except TypeError:
        text = str(path)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


@contextlib.contextmanager
def naming(path: str | os.PathLike[str]) -> Iterator[None]:
    """An OSError inside without a file name (a write on a full disk, a read
    error) names ``path``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
