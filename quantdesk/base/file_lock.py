"""An exclusive lock on a file that another process (or another thread here) cannot also take.

Two downloads of one model — the app and a CLI, or two CLIs — would append to the same partial
file and could move a mixed-up file into the library. The downloader holds this lock on the
model from the first byte until the verified files are in place; the operating system releases
it when the holder dies, so a killed download never leaves a stale lock behind.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import TracebackType

from quantdesk.base.errors import QuantDeskError


class LockBusy(QuantDeskError):
    """Someone else holds the lock."""


class FileLock:
    """``with FileLock(path, what):`` — non-blocking; raises :class:`LockBusy` naming ``what``."""

    def __init__(self, path: Path, what: str, next_step: str | None = None, wait: float = 0.0) -> None:
        self.path, self.what, self.next_step, self.wait = path, what, next_step, wait
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, trying for up to ``wait`` seconds (another process may be only peeking at it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                _lock(fd)
                break
            except OSError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                os.close(fd)
                raise LockBusy(f"{self.what} is already in progress (on the Downloads page, or in another QuantDesk "
                           "window or command)",
                           next_step=self.next_step) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                _unlock(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None

    def release_if_free(self) -> None:
        """Raise :class:`LockBusy` if someone holds the lock; otherwise take it and let go at once."""
        self.acquire()
        self.release()

    def __enter__(self) -> "FileLock":
        self.acquire(self.wait)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


if os.name == "nt":
    import msvcrt

    def _lock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock(fd: int) -> None:
        # flock belongs to the open file description: a second open() in this same process is refused too
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
