"""A node's durable log: the data directory, WAL segments, recovery.

Layout of a data directory::

    lock          flock'd by the open Storage, holds its pid (lock.py)
    meta          CBOR {"cluster": name, "node_id": id, "format": 1}
    hardstate     term, vote, commit (hardstate.py)
    wal-00000000000000000001.log   segments, named by their first entry's index

Segments are preallocated to ``segment_size`` (zero-filled), so an append
never grows the file and ``fdatasync`` suffices. A new segment starts when a
batch does not fit the current one (a batch larger than a segment gets a
segment of its own size). Every ``save`` writes one batch with one
``pwrite`` and one ``fdatasync``.

Recovery reads every segment in order, verifying every checksum, and
replays the batches whose marker it read. A record that fails inside the
last batch of the last segment, with nothing but zeros after that batch, is
a torn write: the batch is dropped and its bytes zeroed. Anything else —
a bad record before the last batch, a gap in indexes, a broken hard state —
is ``Corruption``, and the node refuses to start.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence

import cbor2

from ..core.messages import Entry
from ..core.ready import HardState
from . import lock as dirlock, records as rec
from .errors import Corruption, StorageError
from .hardstate import NAME as HARDSTATE, HardStateFile

log = logging.getLogger("raftnet.storage")

META = "meta"
FORMAT = 1
SEGMENT_RE = re.compile(r"^wal-(\d{20})\.log$")
FSYNC_POLICIES = ("batch", "always", "never")
DEFAULT_SEGMENT_SIZE = 64 << 20


def segment_name(first_index: int) -> str:
    return f"wal-{first_index:020d}.log"


def list_segments(data_dir: str) -> list[tuple[int, str]]:
    out = []
    for name in os.listdir(data_dir):
        m = SEGMENT_RE.match(name)
        if m:
            out.append((int(m.group(1)), os.path.join(data_dir, name)))
    return sorted(out)


def read_meta(data_dir: str) -> dict:
    path = os.path.join(data_dir, META)
    try:
        with open(path, "rb") as f:
            meta = cbor2.loads(f.read())
    except FileNotFoundError:
        raise StorageError(f"{data_dir} is not a raftnet data directory (no {META} file)") from None
    except Exception as exc:  # noqa: BLE001
        raise Corruption(path, 0, None, f"unreadable metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise Corruption(path, 0, None, "unknown metadata format")
    return meta


class SegmentScan:
    """What recovery learnt from one segment."""

    __slots__ = ("path", "first_index", "end", "torn_at", "size", "seq", "last_index", "batches")

    def __init__(self, path: str, first_index: int, size: int):
        self.path = path
        self.first_index = first_index
        self.size = size
        self.end = 0  # offset just after the last complete batch
        self.torn_at: int | None = None  # offset of a torn last batch
        self.seq = -1
        self.last_index = 0  # the log's last index once this segment is replayed
        self.batches = 0


def scan(data_dir: str) -> tuple[list[Entry], list[SegmentScan], int]:
    """Replay every segment in the order written: (entries, per-segment
    scans in that order, batches read). Raises Corruption. Never writes."""
    entries: list[Entry] = []
    scans: list[SegmentScan] = []
    _walk(data_dir, entries, scans)
    return entries, scans, sum(s.batches for s in scans)


def scan_tolerant(data_dir: str) -> tuple[list[Entry], list[SegmentScan], int, Corruption | None]:
    """``scan`` that stops at the first damage instead of raising: the log
    replayed up to it, the segments walked (the damaged one last), the
    batches read, and the ``Corruption`` that ``scan`` (and so recovery)
    would have raised, or None. For tools; recovery uses ``scan``."""
    entries: list[Entry] = []
    scans: list[SegmentScan] = []
    try:
        _walk(data_dir, entries, scans)
    except Corruption as exc:
        if scans:
            scans[-1].last_index = _next_index(entries) - 1
        return entries, scans, sum(s.batches for s in scans), exc
    return entries, scans, sum(s.batches for s in scans), None


def _walk(data_dir: str, entries: list[Entry], scans: list[SegmentScan]) -> None:
    """Replay into ``entries`` and ``scans``, which hold what was read when
    Corruption is raised."""
    loaded = []
    for first, path in list_segments(data_dir):
        try:
            with open(path, "rb") as f:
                buf = f.read()
        except FileNotFoundError:
            continue  # deleted since listed (a live node rolled, under a reader)
        try:
            item, offset = rec.read_record(buf, 0)
        except rec.BadRecord as exc:
            item, offset, bad = None, 0, exc
        else:
            bad = None
        if item is not None and item[0] != rec.SEGMENT:
            raise Corruption(path, 0, None, "segment does not start with a segment header")
        seq = _number(item, path, 0, None) if item is not None else -1
        loaded.append((seq, first, path, buf, offset, bad))
    loaded.sort(key=lambda t: (t[0], t[1]))
    for k, (seq, first, path, buf, offset, bad) in enumerate(loaded):
        last_segment = k == len(loaded) - 1
        s = SegmentScan(path, first, len(buf))
        s.seq = seq
        scans.append(s)
        view = memoryview(buf)
        if seq < 0:
            # No header: a segment created by a crash-interrupted roll.
            if bad is not None or any(view):
                _torn_or_corrupt(s, view, 0, None, bad or rec.BadRecord("no segment header"), last_segment, entries)
            continue
        s.end = offset
        while True:
            batch_start = offset
            try:
                item, offset = rec.read_record(view, offset)
            except rec.BadRecord as exc:
                _torn_or_corrupt(s, view, batch_start, None, exc, last_segment, entries)
                break
            if item is None:
                break
            if item[0] != rec.BATCH:
                raise Corruption(path, batch_start, _next_index(entries), "expected a batch header")
            batch_end = batch_start + _number(item, path, batch_start, _next_index(entries))
            pending: list = []
            try:
                while True:
                    at = offset
                    item, offset = rec.read_record(view, offset)
                    if item is None:
                        raise rec.BadRecord("batch ends without its marker")
                    if item[0] == rec.MARKER:
                        break
                    if item[0] in (rec.BATCH, rec.SEGMENT):
                        raise rec.BadRecord("misplaced header inside a batch")
                    pending.append((at, item))
            except rec.BadRecord as exc:
                _torn_or_corrupt(s, view, batch_start, batch_end, exc, last_segment, entries)
                break
            if offset != batch_end:
                raise Corruption(path, batch_start, _next_index(entries), "batch length does not match its header")
            for at, item in pending:
                _replay(entries, item, path, at)
            s.batches += 1
            s.end = offset
        s.last_index = _next_index(entries) - 1


def _max_seq(data_dir: str) -> int:
    best = 0
    for _, path in list_segments(data_dir):
        with open(path, "rb") as f:
            head = f.read(64)
        try:
            item, _ = rec.read_record(head + b"\0" * 64, 0)
        except rec.BadRecord:
            continue
        if item is not None and item[0] == rec.SEGMENT:
            best = max(best, _number(item, path, 0, None))
    return best


def _next_index(entries: list[Entry]) -> int:
    return entries[-1].index + 1 if entries else 1


def _number(item: list, path: str, at: int, index: int | None) -> int:
    """The integer a header or truncate record carries (its checksum can be
    right and its shape still wrong)."""
    if len(item) != 2 or type(item[1]) is not int:
        raise Corruption(path, at, index, f"malformed record {item!r:.60}")
    return item[1]


def _replay(entries: list[Entry], item: list, path: str, at: int) -> None:
    if item[0] == rec.TRUNCATE:
        index = _number(item, path, at, None)
        if index < 1 or index > _next_index(entries):
            raise Corruption(path, at, index, f"truncate to {index} beyond the log's end {_next_index(entries) - 1}")
        first = entries[0].index if entries else 1
        del entries[max(0, index - first) :]
        return
    try:
        e = rec.decode_entry(item)
    except rec.BadRecord as exc:
        raise Corruption(path, at, None, str(exc)) from None
    expected = _next_index(entries)
    if e.index != expected:
        raise Corruption(path, at, e.index, f"gap in the log: entry {e.index} where {expected} belongs")
    if entries and e.term < entries[-1].term:
        raise Corruption(path, at, e.index, f"term {e.term} after term {entries[-1].term}")
    entries.append(e)


def _torn_or_corrupt(s: SegmentScan, view: memoryview, start: int, batch_end: int | None,
                     exc: rec.BadRecord, last_segment: bool, entries: list[Entry]) -> None:
    """A record failed in the batch starting at ``start``: a torn write (the
    process died while writing the last batch) or corruption?

    It is torn only in the last segment, and only if no later batch exists:
    with an intact batch header, nothing but zeros may follow the batch's
    extent; with a damaged header, no valid batch header may appear anywhere
    after it. (A flipped bit in the header of the very last batch looks like
    a torn write and drops that batch: no format can tell the two apart.)"""
    if last_segment:
        if batch_end is not None:
            if not any(view[min(batch_end, len(view)) :]):
                s.torn_at = start
                return
        elif not _later_batch(view, start):
            s.torn_at = start
            return
    raise Corruption(s.path, start, _next_index(entries), f"{exc} (followed by more data, so not a torn write)")


def _later_batch(view: memoryview, start: int) -> bool:
    raw = bytes(view[start:]).rstrip(b"\0")
    for k in range(1, max(0, len(raw) - rec.HEADER_SIZE) + 1):
        length = int.from_bytes(raw[k : k + 4], "big")
        if not 0 < length <= 64 or k + rec.HEADER_SIZE + length > len(raw) + 64:
            continue  # batch headers are a few bytes long
        try:
            item, _ = rec.read_record(raw + b"\0" * 64, k)
        except rec.BadRecord:
            continue
        if item is not None and item[0] == rec.BATCH:
            return True
    return False


class Storage:
    """A node's log and hard state on disk. Blocking: call it from a worker
    thread under trio (see ``LogWriter``)."""

    def __init__(self, data_dir: str, fsync: str, segment_size: int, fsync_warn_seconds: float):
        self.data_dir = data_dir
        self.fsync = fsync
        self.segment_size = segment_size
        self.fsync_warn_seconds = fsync_warn_seconds
        self._entries: list[Entry] = []
        self._hard: HardStateFile | None = None
        self._lock: dirlock.DirLock | None = None
        self._fd: int | None = None
        self._seg_first = 0
        self._seg_seq = 0
        self._seg_size = 0
        self._offset = 0
        self.fsyncs = 0
        self.last_fsync_seconds = 0.0

    # -- opening ---------------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: str, *, cluster: str, node_id: int, fsync: str = "batch",
             segment_size: int = DEFAULT_SEGMENT_SIZE, fsync_warn_seconds: float = 1.0) -> Storage:
        if fsync not in FSYNC_POLICIES:
            raise StorageError(f"unknown fsync policy {fsync!r}: expected one of {', '.join(FSYNC_POLICIES)}")
        if segment_size < 4096:
            raise StorageError(f"segment size {segment_size} is too small (minimum 4096 bytes)")
        data_dir = str(data_dir)
        st = cls(data_dir, fsync, segment_size, fsync_warn_seconds)
        if fsync == "never":
            log.warning("fsync = \"never\": acknowledged writes are NOT durable; a crash can lose data. "
                        "Use this for benchmarks only.")
        os.makedirs(data_dir, exist_ok=True)
        # Before anything else in the directory is read: another node may
        # be writing it (and recovery may repair a tail it is mid-way through).
        st._lock = dirlock.acquire(data_dir)
        try:
            st._open_locked(cluster, node_id)
        except BaseException:
            st.close()
            raise
        return st

    def _open_locked(self, cluster: str, node_id: int) -> None:
        data_dir = self.data_dir
        meta_path = os.path.join(data_dir, META)
        if not os.path.exists(meta_path):
            if any(SEGMENT_RE.match(n) or n == HARDSTATE for n in os.listdir(data_dir)):
                raise StorageError(f"{data_dir} holds WAL files but no {META} file; refusing to guess whose they are")
            self._create(meta_path, cluster, node_id)
            return
        meta = read_meta(data_dir)
        if meta.get("cluster") != cluster:
            raise StorageError(f"{data_dir} belongs to cluster {meta.get('cluster')!r}, not {cluster!r}")
        if meta.get("node_id") != node_id:
            raise StorageError(f"{data_dir} belongs to node {meta.get('node_id')}, not node {node_id}")
        self._recover()

    def _create(self, meta_path: str, cluster: str, node_id: int) -> None:
        self._hard = HardStateFile(os.path.join(self.data_dir, HARDSTATE), create=True)
        tmp = meta_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(cbor2.dumps({"cluster": cluster, "node_id": node_id, "format": FORMAT}))
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, meta_path)
        self._fsync_dir()

    def _recover(self) -> None:
        hs_path = os.path.join(self.data_dir, HARDSTATE)
        if not os.path.exists(hs_path):
            raise Corruption(hs_path, 0, None, "hard state file is missing")
        self._hard = HardStateFile(hs_path, create=False)
        t0 = time.perf_counter()
        entries, scans, _ = scan(self.data_dir)
        self._entries = entries
        hs = self._hard.hard_state
        if hs.commit > self.last_index:
            # Commit was written without fsync; never trust it past the log.
            self._hard.hard_state = HardState(hs.term, hs.vote, min(hs.commit, self.last_index))
        if scans:
            last = scans[-1]
            if last.torn_at is not None:
                log.warning("%s: dropping a torn last batch at offset %d (the process died mid-write)",
                            last.path, last.torn_at)
                with open(last.path, "r+b") as f:
                    f.seek(last.torn_at)
                    f.write(b"\0" * (last.size - last.torn_at))
                    f.flush()
                    os.fdatasync(f.fileno())
                last.end = last.torn_at
            self._fd = os.open(last.path, os.O_RDWR)
            self._seg_first, self._seg_size, self._offset = last.first_index, last.size, last.end
            self._seg_seq = len(scans) + max(0, _max_seq(self.data_dir))
            if last.end == 0:
                # A headerless segment (crash mid-roll): start it properly.
                os.close(self._fd)
                self._fd = None
        log.info("recovered %d entries (index %d..%d) from %d segment(s) in %.3fs",
                 len(entries), self.first_index, self.last_index, len(scans), time.perf_counter() - t0)

    # -- reading ---------------------------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        return self._hard.hard_state

    @property
    def first_index(self) -> int:
        return self._entries[0].index if self._entries else 1

    @property
    def last_index(self) -> int:
        return self._entries[-1].index if self._entries else 0

    def entries(self, lo: int, hi: int) -> list[Entry]:
        first = self.first_index
        return self._entries[max(lo, first) - first : max(hi, first) - first]

    # -- writing ---------------------------------------------------------------------

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Make ``entries`` (replacing any stored suffix from
        ``entries[0].index``) and ``hard_state`` durable, per the fsync
        policy, before returning."""
        if entries:
            self._append(entries)
        if hard_state is not None and self._hard.save(hard_state) and self.fsync != "never":
            self.fsyncs += 1

    def _append(self, entries: Sequence[Entry]) -> None:
        first = entries[0].index
        if first > self.last_index + 1:
            raise StorageError(f"gap: appending index {first} after last index {self.last_index}")
        records = []
        if first <= self.last_index:
            records.append(rec.truncate_record(first))
        for e in entries:
            records.append(rec.entry_record(e))
        data = rec.batch(records)
        if self._fd is None or self._offset + len(data) > self._seg_size or first < self._seg_first:
            # A truncation below this segment's first index also starts a new
            # segment, so segments stay named by the first index they hold.
            self._roll_with(first, data)
        else:
            os.pwrite(self._fd, data, self._offset)
            self._offset += len(data)
            self._sync()
        if first <= self.last_index:
            del self._entries[first - self.first_index :]
        self._entries.extend(entries)

    def _sync(self) -> None:
        if self.fsync == "never":
            return
        t0 = time.perf_counter()
        os.fdatasync(self._fd)
        elapsed = time.perf_counter() - t0
        self.fsyncs += 1
        self.last_fsync_seconds = elapsed
        if elapsed > self.fsync_warn_seconds:
            log.warning("slow fsync: %.3fs on %s (threshold %.1fs)", elapsed, self.data_dir, self.fsync_warn_seconds)

    def _roll_with(self, first_index: int, data: bytes) -> None:
        """Start a new segment holding ``data`` as its first batch.

        The segment is written under a temporary name, made durable, then
        renamed into place; only then are the segments it supersedes (those
        starting after ``first_index``) deleted. A crash at any point leaves
        either the old set of segments or the new one, and replaying in
        ``seq`` order gives the right log either way."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._seg_seq += 1
        header = rec.segment_record(self._seg_seq)
        size = max(self.segment_size, len(header) + len(data) + rec.HEADER_SIZE)
        path = os.path.join(self.data_dir, segment_name(first_index))
        tmp = path + ".new"
        fd = self._preallocate(tmp, size)
        os.pwrite(fd, header + data, 0)
        if self.fsync != "never":
            os.fdatasync(fd)
            self.fsyncs += 1
        os.rename(tmp, path)
        self._fsync_dir()
        self._fd, self._seg_first, self._seg_size, self._offset = fd, first_index, size, len(header) + len(data)
        for seg_first, seg_path in list_segments(self.data_dir):
            if seg_first > first_index:
                os.unlink(seg_path)

    def _preallocate(self, path: str, size: int) -> int:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.posix_fallocate(fd, 0, size)
        except (AttributeError, OSError):
            os.ftruncate(fd, size)
        os.fsync(fd)
        return fd

    def _fsync_dir(self) -> None:
        fd = os.open(self.data_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._hard is not None:
            self._hard.close()
            self._hard = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
