"""What storage raises. The CLI maps ``Corruption`` to exit code 4."""

from __future__ import annotations


class StorageError(Exception):
    """The data directory cannot be used (wrong cluster or node, not a data
    directory, I/O failure)."""


class Corruption(StorageError):
    """Stored data fails verification. One line naming the file, the byte
    offset and, where known, the log index."""

    def __init__(self, path: str, offset: int, index: int | None, reason: str):
        self.path = path
        self.offset = offset
        self.index = index
        self.reason = reason
        where = f"{path} offset {offset}"
        if index is not None:
            where += f" (index {index})"
        super().__init__(f"corruption: {where}: {reason}")


class DataDirLocked(StorageError):
    """Another process (or another ``Storage`` in this one) has the data
    directory open. ``pid`` is the holder's, when its lock file names it."""

    def __init__(self, data_dir: str, pid: int | None, *, readers: bool = False):
        self.data_dir = data_dir
        self.pid = pid
        self.readers = readers
        if readers:
            msg = (f"{data_dir} is being read by `raftnet inspect` and was not released in time; "
                   f"refusing to open it until it finishes")
        else:
            holder = f"pid {pid}" if pid is not None else "pid unknown"
            msg = f"{data_dir} is in use by another process ({holder}): one data directory, one node"
        super().__init__(msg)


class StorageFailed(StorageError):
    """The disk refused a write or an fsync (full, read-only, I/O error).
    The storage accepts no more writes: after a failed fsync the file's
    state is unknown, and retrying could acknowledge what the disk lost."""

    def __init__(self, path: str, error: OSError):
        self.path = path
        self.error = error
        detail = f"[Errno {error.errno}] {error.strerror}" if error.strerror else str(error)
        super().__init__(f"writing {path} failed: {detail}; this storage accepts no more writes "
                         f"(nothing was acknowledged that is not on disk)")
