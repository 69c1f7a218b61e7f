"""What keeps an output folder consistent: one writer at a time (``flock``), Ctrl-C held while a batch is stored,
and file-system errors turned into one line (exit 2)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
from pathlib import Path

from gpmcli.errors import UsageError


@contextlib.contextmanager
def deferred_sigint():
    """Hold a Ctrl-C (SIGINT) or a SIGTERM that arrives inside the block until the block has ended, so a batch's
    files are all written or not started (main thread only; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM)
    old = {s: signal.signal(s, lambda signum, frame: got.append(signum)) for s in sigs}
    try:
        yield
    finally:
        for s in sigs:
            signal.signal(s, old[s])
        if got:
            first, prev = got[0], old[got[0]]
            if callable(prev):
                prev(first, None)  # Python's SIGINT handler (and gpm's SIGTERM one) raise KeyboardInterrupt
            elif prev == signal.SIG_DFL:
                signal.raise_signal(first)


class OutputError(UsageError):
    """The output folder cannot be created or written, or another run is writing it (exit 2)."""


def _os_error(e: OSError, what: str | Path) -> OutputError:
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError(f"no space left writing {what}; free some space and run the same command with --resume "
                           "(written samples are kept)")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OutputError(f"cannot write {what}: permission denied")
    return OutputError(f"cannot write {what}: {e.strerror or e}")


class FolderLock:
    """One writer per output folder: an exclusive ``flock`` on ``DIR/.gpm-parts/lock``, which records the pid.

    The kernel drops the lock when its process ends, however it ends, so a killed run's lock never blocks the next
    run; the pid in the file only names the holder in the message. (Where ``fcntl`` is missing, the recorded pid is
    checked for liveness instead.)"""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None
        self.took_over: int | None = None  # pid of a dead run whose lock file was left behind

    def _holder(self) -> int | None:
        try:
            return int(json.loads(self.path.read_text() or "{}").get("pid"))
        except (OSError, ValueError, TypeError):
            return None

    def acquire(self) -> None:
        import socket

        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock here: pid liveness
            fcntl = None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        locked = False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                os.close(fd)
                pid = self._holder()
                raise OutputError(f"-o {self.path.parent.parent}: folder in use by pid {pid if pid else '?'} (another "
                                  "gpm run writes there); wait for it to end or use another -o") from None
            except OSError:  # a file system without flock: fall back to the recorded pid
                pass
        if not locked:  # pragma: no cover
            pid = self._holder()
            if pid and pid != os.getpid() and _pid_alive(pid):
                os.close(fd)
                raise OutputError(f"-o {self.path.parent.parent}: folder in use by pid {pid}; wait for it to end or "
                                  "use another -o")
        old = self._holder()
        if old and old != os.getpid():
            self.took_over = old
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:  # the file stays: removing it would let two runs lock two different files
            os.close(self.fd)
            self.fd = None


def _pid_alive(pid: int) -> bool:  # pragma: no cover - used only without fcntl
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
