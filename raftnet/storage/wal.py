"""A node's durable log: the data directory, WAL segments, recovery.

Layout of a data directory::

    lock          flock'd by the open Storage, holds its pid (lock.py)
    meta          checksummed CBOR {"cluster": name, "node_id": id, "format": 2}
    hardstate     term, vote, commit (hardstate.py)
    wal-00000000000000000001.log   segments, named by their first entry's index
    snap-<index>-<term>.snap       snapshots (snapshot.py); the newest valid one counts

Compaction deletes the segments a snapshot wholly covers (``compact``), so
the log may start after index 1; installing a leader's snapshot replaces the
whole log (``reset``). Recovery reconciles the log with the newest valid
snapshot: a log that does not hold the snapshot's last entry (a crash
between a snapshot's install and the deletion of the old segments) is
dropped, as the install would have dropped it.

Segments are preallocated to ``segment_size`` (zero-filled), so an append
never grows the file and ``fdatasync`` suffices. A new segment starts when a
batch does not fit the current one (a batch larger than a segment gets a
segment of its own size). Every ``save`` writes one batch with one write and
one ``fdatasync``.

Recovery (scan.py) replays every segment in write order, verifying every
checksum; it drops a torn last batch and refuses anything else that does
not read. Every file operation goes through ``fs`` (fs.py), so the
crash-state explorer can run this code over its recording file system.
Any failed write or fsync stops the storage for good (``StorageFailed``).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Sequence

import cbor2

from ..core.messages import Entry
from ..core.ready import HardState
from . import fs as fsmod, records as rec
from .errors import Corruption, StorageError, StorageFailed
from .hardstate import NAME as HARDSTATE, HardStateFile, read_hard_state
from .replay import SEGMENT_RE, SegmentScan, check_commit, list_segments, scan, scan_tolerant, segment_name
from .snapshot import SnapshotMeta, latest_snapshot, remove_partials

__all__ = ["DEFAULT_SEGMENT_SIZE", "FSYNC_POLICIES", "MIN_SEGMENT_SIZE", "SegmentScan", "Storage",
           "list_segments", "read_meta", "scan", "scan_tolerant", "segment_name"]

log = logging.getLogger("raftnet.storage")

META = "meta"
FORMAT = 2  # 1: unchecksummed meta, two-slot hard state; read, and upgraded on open
FSYNC_POLICIES = ("batch", "always", "never")
DEFAULT_SEGMENT_SIZE = 64 << 20
MIN_SEGMENT_SIZE = 64 << 10
LEFTOVER_SUFFIXES = (".new", ".tmp")  # a crash between writing a file and renaming it into place


def read_meta(data_dir: str, fs=fsmod.OS) -> dict:
    path = os.path.join(data_dir, META)
    try:
        raw = fs.read(path)
    except FileNotFoundError:
        raise StorageError(f"{data_dir} is not a raftnet data directory (no {META} file)") from None
    meta = None
    if len(raw) > rec.HEADER_SIZE:
        length, checksum = rec.HEADER.unpack_from(raw, 0)
        payload = raw[rec.HEADER_SIZE :]
        if length == len(payload) and rec.checksum(payload) == checksum:
            meta = _loads(payload, path)
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise Corruption(path, 0, None, "unknown metadata format")
            return meta
    meta = _loads(raw, path)  # the first format: bare CBOR
    if not isinstance(meta, dict) or meta.get("format") != 1:
        raise Corruption(path, 0, None, "unreadable metadata (checksum mismatch or unknown format)")
    return meta


def _loads(raw: bytes, path: str) -> object:
    try:
        return cbor2.loads(raw)
    except Exception as exc:  # noqa: BLE001
        raise Corruption(path, 0, None, f"unreadable metadata ({exc})") from None


def _meta_bytes(cluster: str, node_id: int) -> bytes:
    payload = cbor2.dumps({"cluster": cluster, "node_id": node_id, "format": FORMAT})
    return rec.HEADER.pack(len(payload), rec.checksum(payload)) + payload


class Storage:
    """A node's log and hard state on disk. Blocking: call it from a worker
    thread under trio (see ``LogWriter``)."""

    def __init__(self, data_dir: str, fsync: str, segment_size: int, fsync_warn_seconds: float,
                 fs, rng: random.Random):
        self.data_dir = data_dir
        self.fsync = fsync
        self.segment_size = segment_size
        self.fsync_warn_seconds = fsync_warn_seconds
        self.fs = fs
        self._rng = rng
        self._entries: list[Entry] = []
        self._base = 0  # the index before the first entry on disk: what snapshots cover and compaction deleted
        # The index before self._entries[0]. Compaction releases the entries
        # a snapshot covers from memory at once, though their segment stays
        # on disk until all of it is covered: the core holds the entries a
        # node still needs, and a copy of a whole segment's worth here would
        # be memory, and work for the cycle collector, for nothing.
        self._released = 0
        self.snapshot: tuple[SnapshotMeta, str] | None = None  # the newest valid snapshot and its path
        self._hard: HardStateFile | None = None
        self._lock = None
        self._file = None  # the segment being appended to
        self._seg_path = ""
        self._seg_first = 0
        self._seg_seq = 0
        self._seg_size = 0
        self._seed = 0
        self._offset = 0
        self._roll_soon = False  # the next append starts a new segment (compaction asked for it)
        self._failed: StorageFailed | None = None
        self.fsyncs = 0
        self.last_fsync_seconds = 0.0

    # -- opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: str, *, cluster: str, node_id: int, fsync: str = "batch",
             segment_size: int = DEFAULT_SEGMENT_SIZE, fsync_warn_seconds: float = 1.0,
             fs=fsmod.OS, rng: random.Random | None = None) -> Storage:
        """Open (creating or recovering) ``data_dir``. ``fs`` and ``rng``
        (which draws the segments' checksum seeds) are for the crash-state
        explorer; the defaults are the real file system and the OS's
        randomness."""
        if fsync not in FSYNC_POLICIES:
            raise StorageError(f"unknown fsync policy {fsync!r}: expected one of {', '.join(FSYNC_POLICIES)}")
        if segment_size < MIN_SEGMENT_SIZE:
            raise StorageError(f"segment size {segment_size} is too small (minimum {MIN_SEGMENT_SIZE} bytes)")
        data_dir = str(data_dir)
        st = cls(data_dir, fsync, segment_size, fsync_warn_seconds, fs, rng or random.SystemRandom())
        if fsync == "never":
            log.warning("fsync = \"never\": acknowledged writes are NOT durable; a crash can lose data. "
                        "Use this for benchmarks only.")
        try:
            fs.makedirs(data_dir)
            # Before anything else in the directory is read: another node may
            # be writing it (and recovery may repair a tail it is mid-way through).
            st._lock = fs.lock(data_dir)
            st._open_locked(cluster, node_id)
        except OSError as exc:
            st.close()
            raise StorageError(f"cannot open {data_dir}: {exc}") from exc
        except BaseException:
            st.close()
            raise
        return st

    def _open_locked(self, cluster: str, node_id: int) -> None:
        if not self.fs.exists(self._path(META)):
            self._unfinished_creation()
            self._create(cluster, node_id)
            return
        meta = read_meta(self.data_dir, self.fs)
        if meta.get("cluster") != cluster:
            raise StorageError(f"{self.data_dir} belongs to cluster {meta.get('cluster')!r}, not {cluster!r}")
        if meta.get("node_id") != node_id:
            raise StorageError(f"{self.data_dir} belongs to node {meta.get('node_id')}, not node {node_id}")
        self._recover()
        if meta["format"] != FORMAT:
            self._hard.upgrade()
            self._write_meta(cluster, node_id)
            log.info("%s: upgraded the data directory to format %d", self.data_dir, FORMAT)

    def _unfinished_creation(self) -> None:
        """No meta: a new directory, or one whose creation a crash cut short
        (meta is written last). Anything more than that is refused."""
        names = self.fs.listdir(self.data_dir)
        if any(SEGMENT_RE.match(n) for n in names):
            raise StorageError(f"{self.data_dir} holds WAL files but no {META} file; refusing to guess whose they are")
        if HARDSTATE in names:
            try:
                _, hs = read_hard_state(self._path(HARDSTATE), self.fs)
            except Corruption:
                hs = HardState()  # torn while being created: it never held anything
            if hs != HardState():
                raise StorageError(f"{self.data_dir} holds a hard state (term {hs.term}) but no {META} file; "
                                   f"refusing to guess whose it is")
        for name in names:
            if name == HARDSTATE or name.endswith(LEFTOVER_SUFFIXES):
                self.fs.unlink(self._path(name))

    def _create(self, cluster: str, node_id: int) -> None:
        # The hard state first, meta last: a directory with meta is one recovery trusts.
        self._hard = HardStateFile(self.fs, self._path(HARDSTATE), create=True)
        self.fs.sync_dir(self.data_dir)
        self._write_meta(cluster, node_id)
        parent = os.path.dirname(os.path.abspath(self.data_dir))
        self.fs.sync_dir(parent)  # the data directory's own entry

    def _write_meta(self, cluster: str, node_id: int) -> None:
        tmp = self._path(META + ".tmp")
        f = self.fs.open(tmp, create=True)
        try:
            f.pwrite(_meta_bytes(cluster, node_id), 0)
            f.sync()
        finally:
            f.close()
        self.fs.rename(tmp, self._path(META))
        self.fs.sync_dir(self.data_dir)

    def _recover(self) -> None:
        hs_path = self._path(HARDSTATE)
        if not self.fs.exists(hs_path):
            raise Corruption(hs_path, 0, None, "hard state file is missing")
        self._hard = HardStateFile(self.fs, hs_path, create=False)
        t0 = time.perf_counter()
        self.snapshot = latest_snapshot(self.data_dir, fs=self.fs)
        covered = self.snapshot[0].index if self.snapshot else 0
        entries, scans, _ = scan(self.data_dir, self.fs)
        if entries and entries[0].index > covered + 1:
            raise Corruption(scans[0].path, 0, covered + 1,
                             f"the log starts at {entries[0].index} but the newest snapshot ends at {covered}: "
                             f"entries {covered + 1}..{entries[0].index - 1} are missing")
        self._entries = entries
        self._base = self._released = entries[0].index - 1 if entries else covered
        hs = self._hard.hard_state
        damage = check_commit(hs.commit, entries, scans, covered)
        if damage is not None:
            if self.fsync != "never":
                raise damage
            log.warning("%s (fsync = \"never\": lowering commit to the log's end)", damage)
            self._hard.hard_state = HardState(hs.term, hs.vote, self.last_index)
        # Nothing is written before the whole directory has been read and judged.
        self._repair(scans)
        remove_partials(self.data_dir, fs=self.fs, keep_received_after=covered)
        if self.snapshot is not None and self._log_contradicts(self.snapshot[0]):
            log.warning("%s: the log does not hold the snapshot's last entry %d (term %d): a crash cut its "
                        "install short; dropping the old log, as the install does",
                        self.data_dir, self.snapshot[0].index, self.snapshot[0].term)
            self._drop_segments()
            self._entries, self._base = [], self.snapshot[0].index
            self._released = self._base
            scans = []
        live = [s for s in scans if not (s.empty or s.superseded)]
        if live:
            last = live[-1]
            self._file = self.fs.open(last.path)
            self._seg_path, self._seg_first, self._seg_size = last.path, last.first_index, last.size
            self._seed, self._offset = last.seed, last.end
        self._seg_seq = max((s.seq for s in scans), default=0)
        log.info("recovered %d entries (index %d..%d) from %d segment(s) in %.3fs",
                 len(entries), self.first_index, self.last_index, len(live), time.perf_counter() - t0)

    def _repair(self, scans: list[SegmentScan]) -> None:
        """Zero a torn last batch, and remove files a crash left half made."""
        changed = False
        for name in self.fs.listdir(self.data_dir):
            if name.endswith(LEFTOVER_SUFFIXES):
                log.warning("%s: removing %s, left by a crash before it was renamed into place", self.data_dir, name)
                self.fs.unlink(self._path(name))
                changed = True
        for s in scans:
            if s.empty or s.superseded:
                why = "empty (a crash before its first write)" if s.empty else \
                    "wholly truncated by a later segment (a crash before it was deleted)"
                log.warning("%s: removing the segment: %s", s.path, why)
                self.fs.unlink(s.path)
                changed = True
        if changed:
            self.fs.sync_dir(self.data_dir)
        last = next((s for s in reversed(scans) if not (s.empty or s.superseded)), None)
        if last is not None and last.torn_at is not None:
            log.warning("%s: dropping a torn last batch at offset %d (the process died mid-write)",
                        last.path, last.torn_at)
            f = self.fs.open(last.path)
            try:
                # Every byte the torn write left, so nothing stale follows what is written next.
                f.pwrite(bytes(last.torn_end - last.torn_at), last.torn_at)
                f.datasync()
            finally:
                f.close()
            last.end = last.torn_at

    def _path(self, name: str) -> str:
        return os.path.join(self.data_dir, name)

    def _log_contradicts(self, meta: SnapshotMeta) -> bool:
        if not self._entries:
            return False
        if meta.index <= self._released:
            # The log starts right after the snapshot (an install, then
            # appends): its terms must not go back below the snapshot's.
            return self._entries[0].term < meta.term
        return meta.index > self.last_index or self.entries(meta.index, meta.index + 1)[0].term != meta.term

    def _drop_segments(self) -> None:
        """Delete every segment, newest first, each unlink made durable
        before the next: a crash on the way leaves a prefix of the old log,
        which still contradicts the snapshot and is dropped again on
        recovery. (Unlinks made durable together may land in any order: a
        crash could keep just the newest old segment, which reads as a log
        that follows the snapshot.)"""
        if self._file is not None:
            self._file.close()
            self._file = None
        self._unlink_one_by_one([p for _, p in reversed(list_segments(self.data_dir, self.fs))])

    def _unlink_one_by_one(self, paths: list[str]) -> None:
        for p in paths:
            self.fs.unlink(p)
            self.fs.sync_dir(self.data_dir)

    # -- reading ---------------------------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        return self._hard.hard_state

    @property
    def first_index(self) -> int:
        """The first index on disk (``entries`` holds those from the last
        compaction on: see ``compact``)."""
        return self._base + 1

    @property
    def last_index(self) -> int:
        return self._entries[-1].index if self._entries else self._released

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """The entries in [lo, hi) still held: all of them after recovery,
        none that a compaction covered."""
        first = self._released + 1
        return self._entries[max(lo, first) - first : max(hi, first) - first]

    # -- writing ---------------------------------------------------------------------

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Make ``entries`` (replacing any stored suffix from
        ``entries[0].index``) and ``hard_state`` durable, per the fsync
        policy, before returning. Raises ``StorageFailed`` if the disk
        refuses a write or an fsync, and on every call after that."""
        if self._failed is not None:
            raise self._failed
        if entries:
            try:
                self._append(entries)
            except OSError as exc:
                self._fail(exc.filename or self._seg_path, exc)
        if hard_state is not None:
            try:
                self.fsyncs += self._hard.save(hard_state)
            except OSError as exc:
                self._fail(exc.filename or self._hard.path, exc)

    def needs_no_sync(self, hard_state: HardState | None, entries: Sequence[Entry]) -> bool:
        """Whether ``save(hard_state, entries)`` would write nothing but a
        commit index (no entries, term and vote unchanged): no fsync, only a
        small write to the page cache."""
        hs = self._hard.hard_state
        return (not entries and self._failed is None and not self._hard.legacy
                and (hard_state is None or (hard_state.term, hard_state.vote) == (hs.term, hs.vote)))

    def compact(self, index: int) -> int:
        """Delete the segments whose entries all lie at or before ``index``
        (a snapshot covers them; the caller wrote it first), and release
        the entries up to ``index`` from memory. The segment being appended
        to always stays. Returns how many segments were deleted."""
        if self._failed is not None:
            raise self._failed
        segments = list_segments(self.data_dir, self.fs)
        doomed = [path for (first, path), (after, _) in zip(segments, segments[1:])
                  if after - 1 <= index and path != self._seg_path]
        try:
            # Oldest first, each unlink durable before the next, so a crash
            # leaves a contiguous log that starts at or before index + 1.
            self._unlink_one_by_one(doomed)
        except OSError as exc:
            self._fail(exc.filename or self.data_dir, exc)
        if doomed:
            self._base = list_segments(self.data_dir, self.fs)[0][0] - 1
        released = max(self._released, min(index, self.last_index))
        del self._entries[: released - self._released]
        self._released = released
        # The segment being appended to never goes, however much of it the
        # snapshot covers, and a restart replays all of it. Once the covered
        # part is an eighth of a segment, the next append starts a new one,
        # so that a later compaction can delete this one whole.
        held = self.last_index - self._seg_first + 1
        if self._file is not None and held > 0 and index >= self._seg_first:
            covered = self._offset * (min(index, self.last_index) - self._seg_first + 1) // held
            self._roll_soon = covered >= self.segment_size // 8
        return len(doomed)

    def reset(self, index: int) -> None:
        """The log is replaced by a snapshot ending at ``index`` (already
        durable): every segment goes, and the next entry is ``index + 1``."""
        if self._failed is not None:
            raise self._failed
        try:
            self._drop_segments()
        except OSError as exc:
            self._fail(exc.filename or self.data_dir, exc)
        self._entries, self._base = [], index
        self._released = index
        self._seg_path, self._seg_first, self._offset = "", 0, 0

    def _fail(self, path: str, exc: OSError) -> None:
        self._failed = StorageFailed(path, exc)
        log.error("%s", self._failed)
        raise self._failed from exc

    def _append(self, entries: Sequence[Entry]) -> None:
        first = entries[0].index
        if first > self.last_index + 1:
            raise StorageError(f"gap: appending index {first} after last index {self.last_index}")
        if first <= self._released:
            raise StorageError(f"cannot overwrite index {first}: a snapshot covers the log up to {self._released}")
        truncating = first <= self.last_index
        data = self._batch(entries, truncating, self._seed, self._offset)
        if (self._file is None or self._offset + len(data) > self._seg_size or first < self._seg_first
                or self._roll_soon):
            # A truncation below this segment's first index also starts a new
            # segment, so segments stay named by the first index they hold.
            self._roll(first, entries, truncating)
        else:
            self._file.pwrite(data, self._offset)
            self._offset += len(data)
            self._sync()
        if truncating:
            del self._entries[first - self._released - 1 :]
        self._entries.extend(entries)

    @staticmethod
    def _batch(entries: Sequence[Entry], truncating: bool, seed: int, start: int) -> bytes:
        records = [rec.truncate_record(entries[0].index, seed)] if truncating else []
        records.extend(rec.entry_record(e, seed) for e in entries)
        return rec.batch(records, seed, start)

    def _sync(self) -> None:
        if self.fsync == "never":
            return
        t0 = time.perf_counter()
        self._file.datasync()
        elapsed = time.perf_counter() - t0
        self.fsyncs += 1
        self.last_fsync_seconds = elapsed
        if elapsed > self.fsync_warn_seconds:
            log.warning("slow fsync: %.3fs on %s (threshold %.1fs)", elapsed, self.data_dir, self.fsync_warn_seconds)

    def _roll(self, first_index: int, entries: Sequence[Entry], truncating: bool) -> None:
        """Start a new segment holding ``entries`` as its first batch.

        The segment is written under a temporary name, made durable, and
        renamed into place (over a segment of the same name, when a
        truncation starts exactly where one did); the directory is fsynced.
        Only then are the segments it supersedes (those starting after
        ``first_index``: a truncation) deleted, and the directory fsynced
        again. A crash before the rename leaves the old log; after it,
        recovery skips any superseded segment still there (a segment
        written later that starts at or before another's first index
        supersedes all of it), so replaying in ``seq`` order gives the new
        log. Deleting first would be wrong: a superseded segment may hold
        the truncate record that hides entries of an earlier one."""
        if self._file is not None:
            self._file.close()
            self._file = None
        seq, seed = self._seg_seq + 1, self._rng.getrandbits(64)
        header = rec.segment_record(seq, seed)
        data = self._batch(entries, truncating, seed, len(header))
        size = max(self.segment_size, len(header) + len(data) + rec.HEADER_SIZE)
        path = self._path(segment_name(first_index))
        tmp = path + ".new"
        self._seg_path = path
        f = self.fs.open(tmp, create=True)
        try:
            f.allocate(size)
            f.pwrite(header + data, 0)
            if self.fsync != "never":
                f.sync()  # the data and the allocation
                self.fsyncs += 1
            self.fs.rename(tmp, path)
            self.fs.sync_dir(self.data_dir)
        except BaseException:
            f.close()
            raise
        # The new segment is in place, whatever happens next.
        self._file, self._seg_first, self._seg_size, self._offset = f, first_index, size, len(header) + len(data)
        self._seg_seq, self._seed, self._roll_soon = seq, seed, False
        superseded = [p for first, p in list_segments(self.data_dir, self.fs) if first > first_index]
        for seg_path in superseded:
            self.fs.unlink(seg_path)
        if superseded:
            self.fs.sync_dir(self.data_dir)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._hard is not None:
            self._hard.close()
            self._hard = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
