"""The file-system calls storage makes, behind one small interface.

``OS`` (the real one) is all the runtime uses. ``raftnet.storage.memfs``
implements the same interface in memory and records every call, so the
crash-state explorer can replay a workload's operations and open the
storage on each state a crash may leave behind.

Every write is whole or raises: ``pwrite`` loops over short writes, and a
write that makes no progress is an ``OSError``. Nothing here retries an
fsync (after a failed fsync the file's state is unknown: the caller must
stop writing).
"""

from __future__ import annotations

import errno
import os

from . import lock as dirlock


class OSFile:
    __slots__ = ("path", "fd")

    def __init__(self, path: str, fd: int):
        self.path = path
        self.fd = fd

    def pwrite(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, offset)
            if n <= 0:
                raise OSError(errno.EIO, f"write of {len(view)} bytes made no progress", self.path)
            view = view[n:]
            offset += n

    def allocate(self, size: int) -> None:
        """Reserve ``size`` bytes (zero-filled). No sparse fallback: a
        preallocation the disk cannot give is an error, so a later append
        cannot be acknowledged and then fail to find space."""
        os.posix_fallocate(self.fd, 0, size)

    def datasync(self) -> None:
        os.fdatasync(self.fd)

    def sync(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class OSFileSystem:
    def lock(self, data_dir: str) -> dirlock.DirLock:
        return dirlock.acquire(data_dir)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def size(self, path: str) -> int:
        return os.stat(path).st_size

    def read_range(self, path: str, offset: int, n: int) -> bytes:
        """Up to ``n`` bytes from ``offset`` (fewer at the end of the file):
        reading a large file piece by piece, never all of it at once."""
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(n)

    def open(self, path: str, *, create: bool = False, exclusive: bool = False) -> OSFile:
        """Open for reading and writing; ``create`` makes a new empty file
        (replacing any file of that name unless ``exclusive``)."""
        flags = os.O_RDWR
        if create:
            flags |= os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
        return OSFile(path, os.open(path, flags, 0o644))

    def rename(self, src: str, dst: str) -> None:
        os.rename(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)

    def sync_dir(self, path: str) -> None:
        """Make the directory's entries (creates, renames, unlinks) durable."""
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


OS = OSFileSystem()
