"""Errors lmmscan raises for bad input (as opposed to bugs)."""

from __future__ import annotations


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
            where = str(path)
            if line is not None:
                where += f", line {line}"
            if column is not None:
                where += f", column {column}"
            where += ": "
        super().__init__(where + message)
        self.path = path
        self.line = line
        self.column = column
