"""One process per data directory: a ``flock`` on ``DATA_DIR/lock``.

The node holds an exclusive lock for the life of its ``Storage`` and writes
its pid into the file; ``raftnet inspect`` holds a shared one while it
reads, and never creates or writes the file. ``flock`` (not POSIX record
locks) belongs to the open file, so two opens within one process conflict
too, and the kernel drops it when the holder dies: a lock file left behind
by a crashed node locks nothing.

An opener that finds only readers (``LOCK_EX`` fails, ``LOCK_SH`` succeeds)
waits for them, polling, for at most ``READER_WAIT_SECONDS``.
"""

from __future__ import annotations

import fcntl
import os
import time

from .errors import DataDirLocked

NAME = "lock"
POLL_SECONDS = 0.05
READER_WAIT_SECONDS = 5.0

# Seams for the tests (a fake clock instead of real waiting).
_sleep = time.sleep
_clock = time.monotonic


class DirLock:
    """A held ``flock`` on a data directory's lock file."""

    def __init__(self, fd: int):
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


def acquire(data_dir: str) -> DirLock:
    """Take the exclusive lock and record our pid in the file. Raises
    DataDirLocked if another process (or another ``Storage`` in this one)
    holds it, or if readers still hold it after ``READER_WAIT_SECONDS``."""
    fd = os.open(os.path.join(data_dir, NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = _clock() + READER_WAIT_SECONDS
        while not _try(fd, fcntl.LOCK_EX):
            if not _try(fd, fcntl.LOCK_SH):
                raise DataDirLocked(data_dir, read_pid(fd))
            fcntl.flock(fd, fcntl.LOCK_UN)  # only readers hold it: wait for them
            if _clock() >= deadline:
                raise DataDirLocked(data_dir, None, readers=True)
            _sleep(POLL_SECONDS)
        # Only now, holding the lock, may the file change.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    return DirLock(fd)


class ReadLock:
    """What ``read_lock`` found: a held shared lock, or the node that holds
    the exclusive one (``running``, with its ``pid`` if the file names it)."""

    def __init__(self, lock: DirLock | None, running: bool, pid: int | None):
        self._lock = lock
        self.running = running
        self.pid = pid

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def read_lock(data_dir: str) -> ReadLock:
    """A shared lock for a reader, without creating or writing anything. A
    missing or unopenable lock file means no node holds the directory."""
    try:
        fd = os.open(os.path.join(data_dir, NAME), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return ReadLock(None, False, None)
    if _try(fd, fcntl.LOCK_SH):
        return ReadLock(DirLock(fd), False, None)
    pid = read_pid(fd)
    os.close(fd)
    return ReadLock(None, True, pid)


def read_pid(fd: int) -> int | None:
    """The pid written in the lock file, or None if it names none."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def _try(fd: int, how: int) -> bool:
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
