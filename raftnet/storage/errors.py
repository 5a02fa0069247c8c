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
