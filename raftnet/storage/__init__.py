"""Durable storage: the segmented, checksummed WAL and the hard state file."""

from .errors import Corruption, DataDirLocked, StorageError, StorageFailed
from .wal import DEFAULT_SEGMENT_SIZE, FSYNC_POLICIES, Storage, list_segments, read_meta, scan, scan_tolerant
from .writer import LogWriter

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "FSYNC_POLICIES",
    "Corruption",
    "DataDirLocked",
    "LogWriter",
    "Storage",
    "StorageError",
    "StorageFailed",
    "list_segments",
    "read_meta",
    "scan",
    "scan_tolerant",
]
