"""An output prefix has one writer: ``scan`` locks ``PREFIX.lock`` before any
work, so that a second scan on the same prefix is refused at once instead of
deleting, renaming or truncating the first one's files.

The lock is ``fcntl.flock`` on the lock file: the kernel releases it when
its process ends, however it ends, so the lock of a killed run is taken over
by the next one (its stale temporary files are then removed: nobody else
writes under the prefix).  The lock file holds the owner's PID for the
message; it is removed by its owner at the end.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from .._errors import InputError

NOT_A_LOCK = "move it, or choose another --out"


def _lock_file(fd: int) -> bool:
    """Whether the file open at ``fd`` may be taken as this prefix's lock:
    a regular file that is empty (made now, or by a run killed before it
    wrote) or holds a process ID, as a lock left by a killed run does."""
    import re
    import stat

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        return False
    head = os.pread(fd, 64, 0)
    return head == b"" or re.fullmatch(rb"[0-9]+\n?", head) is not None


class PrefixLock:
    """``PREFIX.lock``, held from :meth:`acquire` to :meth:`release`."""

    def __init__(self, prefix: str) -> None:
        self.path = Path(f"{prefix}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise InputError naming the run that holds it, or
        the file of that name that is no lock (which is left as it is)."""
        while True:
            try:  # never through a symlink: its target would be truncated
                fd = os.open(
                    self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644
                )
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                raise InputError(
                    f"is a symbolic link, where this scan keeps its lock: {NOT_A_LOCK}",
                    path=str(self.path),
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                raise InputError(
                    f"another lmmscan scan{self._owner()} is writing this output prefix; "
                    "wait for it to end, or choose another --out",
                    path=str(self.path),
                ) from None
            # the owner before us may have removed the file between our open
            # and our lock: then we hold a lock on a name nobody else sees
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        if not _lock_file(fd):
            os.close(fd)  # (not removed: not ours)
            raise InputError(
                f"exists and is not an lmmscan lock (a scan keeps its lock there): {NOT_A_LOCK}",
                path=str(self.path),
            )
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:  # a full disk: no lock file left, the file named
            self.release()
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None

    def _owner(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            return f" (process {int(self.path.read_text().strip())})"
        return ""

    def release(self) -> None:
        """Remove the lock file (while still holding it), then unlock."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> PrefixLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temporaries(paths: list[Path]) -> None:
    """Remove the temporary files a killed run left for these outputs
    (``.NAME.tmpPID``, see :mod:`lmmscan.output`); only the prefix's lock
    holder may call this.  A temporary of a process still running here is
    left: a run on another prefix can write the same output name (--out a
    with --pheno-col 1,2, and --out a.1), and its finished null.json was
    removed under it."""
    from ..output import temporaries

    for path in paths:
        for stale, pid in temporaries(path):
            if pid.isdigit() and int(pid) != os.getpid() and _running(int(pid)):
                continue
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # not ours to signal: it runs
        return True
    return True


def check_outputs(paths: list[Path]) -> None:
    """Refuse, before any work, an output name taken by a directory, a
    device, a FIFO or a socket, or a symlink into a missing directory
    (:func:`lmmscan.output.output_file`)."""
    from ..output import output_file

    for path in paths:
        output_file(path)
