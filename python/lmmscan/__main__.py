"""``python -m lmmscan`` and the ``lmmscan`` command's entry point (:func:`run`)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def _interrupted_starting(signum: int, frame: object) -> None:  # pragma: no cover - timing
    """SIGINT or SIGTERM while the command starts (0.1-0.3 s of imports of
    numpy and the rest, then its arguments): nothing is written yet, so the
    process ends at once with one line.  Python's KeyboardInterrupt there
    printed a traceback, or numpy's 50 lines on "Importing the numpy
    C-extensions failed" (exit 1), and SIGTERM ended it without a word."""
    with contextlib.suppress(OSError):
        os.write(2, b"lmmscan: interrupted while starting; no output written\n")
    os._exit(130)


def run() -> None:
    """The ``lmmscan`` command: :func:`lmmscan.cli.run`, with the signals
    handled from its first instruction (:func:`lmmscan.cli.main` installs
    its own once it has read its arguments).  Here, not in lmmscan.cli, so
    that a Python session importing lmmscan.cli keeps its handlers."""
    for fd in (0, 1, 2):
        # a standard descriptor closed (<&-): /dev/null in its place, or the
        # first file the command opens takes its number, and --pheno
        # /dev/stdin read the output's lock (helper 61)
        try:
            os.fstat(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.open(os.devnull, os.O_RDWR)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            # one the process was started with ignored stays ignored (a
            # shell's background job ignores SIGINT; so do gemma and sleep)
            if signal.getsignal(sig) != signal.SIG_IGN:
                signal.signal(sig, _interrupted_starting)
    from .memory import start_refusal

    refusal = start_refusal(sys.argv[1:])  # (--help too: the parser's module loads numpy)
    if refusal is not None:
        with contextlib.suppress(OSError):
            os.write(2, f"lmmscan: error: {refusal}\n".encode("utf-8", "backslashreplace"))
        os._exit(2)
    from .cli import run as command

    command()


if __name__ == "__main__":
    run()
