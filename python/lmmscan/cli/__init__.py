"""The ``lmmscan`` command: ``kinship``, ``scan``, ``eigen``, ``plot`` and ``demo``.

One module per command (each with its ``add_parser`` and ``run``), the
options they share (:mod:`.options`), what their runs share
(:mod:`.common`) and the ``scan --resume`` checkpoint (:mod:`.checkpoint`).

Exit status: 0 success; 2 bad input (an argument or a file: one line on
stderr naming it); 3 a numerical failure on valid input (one line saying
what failed); 130 interrupted (Ctrl-C, SIGTERM).  Outputs are written under
temporary names and renamed when the whole run has succeeded.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

# OpenBLAS's idle threads spin for 2^28 cycles (~0.1 s) after each BLAS call
# before they sleep.  A scan alternates BLAS (the rotation) with its own
# threads (the tests), which the spinning threads then slow: ~25 ms per block
# at n = 4,852.  2^20 cycles (~0.4 ms) removes that and left the
# eigendecomposition's pace unchanged.  OpenBLAS reads the variable when it is
# loaded, so this holds for the command (numpy is not loaded yet), never for a
# user's own session, and a value the user set is kept.
if "numpy" not in sys.modules:
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import functools  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402

from .._errors import LmmscanError, NumericalError, printable  # noqa: E402
from .._threads import detached_long_calls  # noqa: E402
from .._version import __version__  # noqa: E402
from ..memory import MALLOC_KEEP, glibc_function  # noqa: E402
from . import demo, eigen, kinship, plot, scan  # noqa: E402
from .common import Clock, one_line, process_age  # noqa: E402
from .options import EXIT_INPUT, Formatter, Parser  # noqa: E402

EXIT_NUMERICAL = 3
EXIT_INTERRUPTED = 130

_T_IMPORT = time.perf_counter()  # start-up fallback where /proc is not available


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: every command and its flags."""
    parser = Parser(
        prog="lmmscan",
        formatter_class=Formatter,
        description="Linear mixed model association scans that reproduce GEMMA 0.98.5.\n\n"
        "Run 'lmmscan COMMAND --help' for every flag of a command, with its default.",
        epilog="Bad input gives a one-line error naming the file and exit status 2; a "
        "numerical failure on valid input, exit status 3.",
    )
    parser.add_argument("--version", action="version", version=f"lmmscan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in (kinship, scan, eigen, plot, demo):
        module.add_parser(sub)
    return parser


def _interrupt(signum: int, frame: object) -> None:  # pragma: no cover - signal timing
    """SIGINT and SIGTERM: stop the run; the next signals are ignored while it
    cleans up (a second Ctrl-C used to interrupt the cleanup itself and print
    "Exception ignored in ... KeyboardInterrupt")."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _ignore)
    _cancel_rearmed()  # this one is raised: no other is to come
    raise KeyboardInterrupt


def _ignore(signum: int, frame: object) -> None:  # pragma: no cover - signal timing
    """A signal that arrives while the run stops: nothing.  Not SIG_IGN: a
    SIGTERM already caught by Python's C handler when SIGINT's handler set
    SIG_IGN became "OSError: Signal 15 ignored due to race condition", raised
    anywhere in the cleanup (a traceback under the one-line message)."""


# the re-raises _reraise_swallowed has scheduled and not yet delivered
_rearmed: list[threading.Timer] = []


def _cancel_rearmed() -> None:
    while _rearmed:
        _rearmed.pop().cancel()


def _reraise_swallowed(hook: Callable[[Any], object], unraisable: Any) -> None:
    """``sys.unraisablehook`` while a command runs.  Python swallows an
    exception raised in a ``__del__``, a weakref callback or the garbage
    collector ("Exception ignored in ..."); when :func:`_interrupt`'s
    KeyboardInterrupt lands there, the run went on with SIGINT and SIGTERM
    ignored, so nothing could stop it.  The interrupt is raised again once
    that callback has returned: the handler is put back and another thread
    interrupts the main one 10 ms later (an interrupt from the main thread
    itself would be handled inside this hook, which cannot raise either).  If
    that one lands in a finaliser too, it comes back here.  One is pending
    at a time, and :func:`_interrupt` cancels it: two swallowed interrupts
    must not raise twice, the second after the command has returned."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        import _thread

        _cancel_rearmed()
        for sig in (signal.SIGINT, signal.SIGTERM):  # _interrupt ignored both
            signal.signal(sig, _interrupt)
        again = threading.Timer(0.01, _thread.interrupt_main, args=(signal.SIGINT,))
        again.daemon = True
        _rearmed.append(again)
        again.start()
        return
    hook(unraisable)


def _hint(exc: BaseException) -> str:
    hint = getattr(exc, "lmmscan_hint", "")
    return f"; {hint}" if hint else ""


def main(argv: list[str] | None = None, *, restore_signals: bool = True) -> int:
    """Run the command line; returns the exit status (0; 2 bad input; 3 a
    numerical failure; 130 interrupted).  ``restore_signals=False`` (the
    command itself) leaves SIGINT and SIGTERM ignored on the way out instead
    of restoring Python's handlers: a second Ctrl-C that lands after the
    run has ended would otherwise raise KeyboardInterrupt in the restoring
    code and print a traceback under the one-line message."""
    t_main = time.perf_counter()
    startup = 0.0
    if argv is None:  # run as a command: from the process's start
        age = process_age()
        startup = age if age is not None else t_main - _T_IMPORT
    parser = build_parser()
    args = parser.parse_args(argv)
    args.clock = Clock(t_main, startup)
    args.main = main  # the demo runs the other commands
    previous = {}
    with contextlib.suppress(ValueError):  # not in the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            # a signal the process was started with ignored (a shell's
            # background job: SIGINT) stays ignored, as other programs keep it
            if signal.getsignal(sig) != signal.SIG_IGN:
                previous[sig] = signal.signal(sig, _interrupt)
    unraisablehook = sys.unraisablehook
    if previous:
        sys.unraisablehook = functools.partial(_reraise_swallowed, unraisablehook)
    try:
        return int(args.func(args) or 0)
    except LmmscanError as exc:
        print(f"lmmscan {args.command}: error: {one_line(exc)}{_hint(exc)}", file=sys.stderr)
        return EXIT_NUMERICAL if isinstance(exc, NumericalError) else EXIT_INPUT
    except (OSError, MemoryError) as exc:
        filename = getattr(exc, "filename", None)
        target = getattr(exc, "filename2", None)  # a rename: the file it was to become
        name = target if target else filename
        if isinstance(name, bytes):  # a library that opens by bytes: b'...' was printed
            name = os.fsdecode(name)
        where = f"{printable(name)}: " if filename else ""
        msg = getattr(exc, "strerror", None) or one_line(exc)
        print(f"lmmscan {args.command}: error: {where}{msg}{_hint(exc)}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt as exc:
        text = _hint(exc)[2:] or "no output written"
        print(f"lmmscan {args.command}: interrupted; {text}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        _cancel_rearmed()
        for sig, handler in previous.items():
            signal.signal(sig, handler if restore_signals else _ignore)
        sys.unraisablehook = unraisablehook


# glibc's malloc: see keep_freed_blocks (lmmscan.memory counts what it keeps)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)


def keep_freed_blocks() -> bool:
    """Let glibc reuse a scan's freed blocks instead of returning them to the
    kernel; True when set.

    A scan frees and allocates blocks of tens of MB (the genotypes read, the
    rotated block, LAPACK's workspace).  glibc serves each from a fresh
    mapping until its adaptive threshold has seen one that size freed, and
    returns freed memory beyond twice that threshold, so the same block is
    faulted in again and again; on this project's VMs a first touch costs
    ~1.6 ms per MB, more when the kernel compacts memory for a huge page.
    Blocks up to 64 MiB now come from the heap and up to 64 MiB of free heap
    is kept: over 10 alternated mouse_hs1940 runs the system time fell from
    0.14-0.49 to 0.09-0.19 s and the wall time by 6% (paired); the peak
    memory of the memory-plan runs at n = 2,000 and 5,000 stayed within 2%,
    and is at most 64 MiB more where a scan frees that much (a mouse_hs1940
    LOCO scan: 534 MB against 488; benchmarks/RESULTS.md).  Not done when any
    MALLOC_ variable is set (the user's settings hold) or the C library is
    not glibc.
    """
    import ctypes

    if any(name.startswith("MALLOC_") for name in os.environ):
        return False
    mallopt = glibc_function("mallopt", ctypes.c_int, ctypes.c_int)
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_KEEP) and mallopt(_M_TRIM_THRESHOLD, MALLOC_KEEP))


class _Summary:
    """The command's standard output: what it prints there is a summary of
    files already written, so a reader that went away (``| head``), a full
    device or a closed descriptor ends the printing, not the run: the first
    OSError is kept (:attr:`lost`) and said once on stderr at the end, and
    the exit status stays the run's."""

    def __init__(self, out) -> None:
        self.lost: str | None = None
        self._closed = out is None  # said only if something is to be printed
        self._out = out if out is not None else open(os.devnull, "w")  # noqa: SIM115

    def write(self, text: str) -> int:
        if self._closed and text and self.lost is None:
            self.lost = "standard output is closed"
        if self.lost is None:
            try:
                self._out.write(text)
            except (OSError, ValueError) as exc:
                self.lost = getattr(exc, "strerror", None) or str(exc)
        return len(text)

    def flush(self) -> None:
        if self.lost is None:
            try:
                self._out.flush()
            except (OSError, ValueError) as exc:
                self.lost = getattr(exc, "strerror", None) or str(exc)

    def isatty(self) -> bool:
        return self.lost is None and bool(self._out.isatty())

    def __getattr__(self, name: str):
        return getattr(self._out, name)


def run() -> None:
    """The ``lmmscan`` command (and ``python -m lmmscan``): :func:`main`, then a fast exit.

    Freed blocks are kept for reuse (:func:`keep_freed_blocks`).  When main()
    returns, every output file is closed and in place.  The interpreter's
    teardown after that (finalising pandas' and scipy's modules, stopping two
    OpenBLAS thread pools) took 0.15-0.2 s of a 1.9 s mouse_hs1940 scan, so
    the process ends with os._exit once stdout, stderr and logging are
    flushed.  Python callers of main() are not affected.
    """
    keep_freed_blocks()
    for stream in (sys.stdout, sys.stderr):
        # a character the encoding lacks (PYTHONIOENCODING=ascii: the summary's
        # "±") is escaped, not the rest of the summary lost (helper 61)
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    summary = _Summary(sys.stdout)
    sys.stdout = summary  # type: ignore[assignment]
    # a closed stderr (2>&-: None), a closed pipe or a full device: the
    # messages are lost, not the run nor its exit status (helper 61)
    sys.stderr = _Summary(sys.stderr)  # type: ignore[assignment]
    # the command exits once interrupted: its long LAPACK calls run where the
    # signals act, and end with the process (a Python caller of main() keeps
    # them on its own thread, helper 71)
    with detached_long_calls():
        status = main(restore_signals=False)
    with contextlib.suppress(OSError, ValueError):  # a closed stderr: nothing can be said
        summary.flush()
        if summary.lost is not None:
            print(
                f"lmmscan: warning: the summary on standard output was cut short ({summary.lost})",
                file=sys.stderr,
            )
        sys.stderr.flush()
    if "logging" in sys.modules:
        sys.modules["logging"].shutdown()
    if "matplotlib" in sys.modules:
        # its exit functions remove the temporary config directory it made
        # where none was writable (one left in /tmp per plot; helper 61)
        import atexit

        with contextlib.suppress(Exception):
            atexit._run_exitfuncs()
    os._exit(status)


__all__ = [
    "EXIT_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_NUMERICAL",
    "build_parser",
    "keep_freed_blocks",
    "main",
    "run",
]
