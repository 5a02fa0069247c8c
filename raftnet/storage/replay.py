"""Reading the WAL back: replay every segment in write order, and tell a
torn write (a crash while the last batch was being written: drop it) from
damage (refuse to start).

What a crash can leave, under the model in docs/storage.md: only the batch
being written when the process died is incomplete, it is in the last
segment, nothing follows it, and each 512-byte sector it covers holds either
its new bytes or the zeros the preallocated segment had. So damage in the
batch at ``start`` is a torn write only if all of these hold:

* it is in the last segment (a segment is fsynced whole before it is renamed
  into place, and segments are only ever appended to; segments a later
  truncation superseded are skipped: a crash may have kept them);
* no valid batch header follows it, nor a marker closing a batch that began
  after it (either proves a later save began, so this batch had been
  fsynced); records are checksummed with the segment's random seed, so a
  command's bytes cannot fake one;
* when the batch's own header is intact, only zeros follow its extent;
* the first record that fails shows how the write was cut: it overlaps a
  sector that is all zeros from the batch's start on (a sector that was
  never written: power loss persists whole sectors, in any order), or
  everything from inside it to the end of the segment is zero (the write
  stopped part-way: a killed process leaves a prefix). A record whose
  bytes were all written reads back intact, so a bad record with neither
  shape (a flipped bit, garbage) is damage, even in the last batch: the
  marker that follows every record shows the batch was written past it.

What no format can tell apart from a torn write, and is dropped as one: a
sector the disk lost (zeroed) after acknowledging it that holds part of the
newest batch and nothing of a later one (the batches it drops are exactly
those a torn write of the first of them would), and a flipped bit inside
the newest batch's marker. Recovery
catches these only when the hard state's commit index covers the dropped
entries (``check_commit``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from ..core.messages import Entry
from . import fs as fsmod, records as rec
from .errors import Corruption

SECTOR = 512
SEGMENT_RE = re.compile(r"^wal-(\d{20})\.log$")
# A batch header or marker record: a length of 3..11 bytes, the checksum, CBOR [2, n] or [3, n].
_HEADER_OR_MARKER = re.compile(rb"\x00\x00\x00[\x03-\x0b].{8}\x82[\x02\x03]", re.DOTALL)


def segment_name(first_index: int) -> str:
    return f"wal-{first_index:020d}.log"


def list_segments(data_dir: str, fs=fsmod.OS) -> list[tuple[int, str]]:
    out = []
    for name in fs.listdir(data_dir):
        m = SEGMENT_RE.match(name)
        if m:
            out.append((int(m.group(1)), os.path.join(data_dir, name)))
    return sorted(out)


class SegmentScan:
    """What recovery learnt from one segment."""

    __slots__ = ("path", "first_index", "end", "torn_at", "torn_end", "size", "seq", "seed", "last_index",
                 "batches", "last_batch", "empty",
                 "superseded")

    def __init__(self, path: str, first_index: int, size: int):
        self.path = path
        self.first_index = first_index
        self.size = size
        self.end = 0  # offset just after the last complete batch
        self.torn_at: int | None = None  # offset of a torn last batch
        self.torn_end = 0  # where the torn batch's last nonzero byte ends
        self.seq = -1
        self.seed = 0
        self.last_index = 0  # the log's last index once this segment is replayed
        self.batches = 0
        self.last_batch = 0  # offset of the last complete batch
        self.empty = False  # all zeros: a file a crash left before its first write
        self.superseded = False  # wholly truncated by a later segment; a crash kept it from being deleted


def scan(data_dir: str, fs=fsmod.OS) -> tuple[list[Entry], list[SegmentScan], int]:
    """Replay every segment in the order written: (entries, per-segment
    scans in that order, batches read). Raises Corruption. Never writes."""
    entries: list[Entry] = []
    scans: list[SegmentScan] = []
    _walk(data_dir, fs, entries, scans)
    return entries, scans, sum(s.batches for s in scans)


def scan_tolerant(data_dir: str, fs=fsmod.OS) -> tuple[list[Entry], list[SegmentScan], int, Corruption | None]:
    """``scan`` that stops at the first damage instead of raising: the log
    replayed up to it, the segments walked (the damaged one last), the
    batches read, and the ``Corruption`` that ``scan`` (and so recovery)
    would have raised, or None. For tools; recovery uses ``scan``."""
    entries: list[Entry] = []
    scans: list[SegmentScan] = []
    try:
        _walk(data_dir, fs, entries, scans)
    except Corruption as exc:
        if scans:
            scans[-1].last_index = _next_index(entries) - 1
        return entries, scans, sum(s.batches for s in scans), exc
    return entries, scans, sum(s.batches for s in scans), None


def check_commit(commit: int, entries: list[Entry], scans: list[SegmentScan], covered: int = 0) -> Corruption | None:
    """The hard state's commit index is written only after the entries it
    covers were fsynced, so a log that ends below it lost fsynced entries
    (unless a snapshot, ending at ``covered``, holds them)."""
    last = _next_index(entries) - 1
    if commit <= max(last, covered):
        return None
    where = next((s for s in reversed(scans) if not (s.empty or s.superseded)), None)
    path = where.path if where else "(no segment)"
    if where is not None and where.torn_at is not None:
        return Corruption(path, where.torn_at, last + 1,
                          f"the last batch looks torn, but the hard state records index {commit} as committed, "
                          f"so it had been fsynced: damage, not a torn write")
    return Corruption(path, where.end if where else 0, last + 1,
                      f"the hard state records index {commit} as committed but the log ends at {last}: "
                      f"fsynced entries are missing")


# -- segments, in write order ---------------------------------------------------------------


def _walk(data_dir: str, fs, entries: list[Entry], scans: list[SegmentScan]) -> None:
    """Replay into ``entries`` and ``scans``, which hold what was read when
    Corruption is raised."""
    order = list(_in_write_order(data_dir, fs))
    # Segments wholly covered by a snapshot are deleted (compaction): the log
    # then starts at the oldest segment's first index, not at 1.
    live = [t[0].first_index for t in order if not (t[0].empty or t[0].superseded)]
    base = min(live) - 1 if live else 0
    for k, (s, view, offset, bad) in enumerate(order):
        scans.append(s)
        if s.empty or s.superseded:
            continue
        if bad is not None:
            raise Corruption(s.path, 0, _next_index(entries, base), f"unreadable segment header ({bad})")
        last = all(t[0].empty or t[0].superseded for t in order[k + 1 :])
        _replay_segment(s, view, offset, last, entries, base)
        s.last_index = _next_index(entries, base) - 1


def _in_write_order(data_dir: str, fs) -> Iterator[tuple[SegmentScan, memoryview, int, str | None]]:
    """Each segment with its bytes and where its first batch starts, in the
    order written (``seq``). A segment whose header cannot be read is put
    where its first index places it, so the replay stops there."""
    known, unknown = [], []
    for first, path in list_segments(data_dir, fs):
        try:
            buf = fs.read(path)
        except FileNotFoundError:
            continue  # deleted since listed (a live node rolled, under a reader)
        s = SegmentScan(path, first, len(buf))
        view = memoryview(buf)
        try:
            item, offset = rec.read_record(view, 0)
            bad = None if item is not None and item[0] == rec.SEGMENT and len(item) in (2, 3) \
                and type(item[1]) is int else "not a segment header"
        except rec.BadRecord as exc:
            item, offset, bad = None, 0, str(exc)
        if item is None and bad is None:
            if _zero(view, 0):
                s.empty = True
            else:
                bad = "zero length at the start of the segment"
        if bad is None and not s.empty:
            s.seq, s.seed = item[1], rec.segment_seed(item)
            known.append((s, view, offset, None))
        else:
            unknown.append((s, view, offset, bad))
    known.sort(key=lambda t: (t[0].seq, t[0].first_index))
    # A segment written later that starts at or before this one's first
    # index was a truncation to that index: it supersedes all of this one.
    lowest = None
    for s, *_ in reversed(known):
        if lowest is not None and lowest <= s.first_index:
            s.superseded = True
        lowest = s.first_index if lowest is None else min(lowest, s.first_index)
    placed: list[tuple[float, int, tuple]] = [(float(k), 0, t) for k, t in enumerate(known)]
    for t in unknown:
        before = [k for k, u in enumerate(known) if u[0].first_index < t[0].first_index]
        placed.append(((max(before) if before else -1) + 0.5, t[0].first_index, t))
    for _, _, t in sorted(placed, key=lambda p: (p[0], p[1])):
        yield t


def _replay_segment(s: SegmentScan, view: memoryview, offset: int, last: bool, entries: list[Entry],
                    base: int = 0) -> None:
    s.end = offset
    while True:
        start = offset
        try:
            got = _read_batch(view, start, s.seed)
            if got is None:
                if _zero(view, start):
                    return  # the end of the written part
                raise _Bad(start, start + rec.HEADER_SIZE, "a zero batch header with data after it")
        except _Bad as bad:
            _torn_or_damaged(s, view, start, bad, last, entries)
            return
        records, offset = got
        for at, item in records:
            _replay(entries, item, s.path, at, base)
        s.batches += 1
        s.last_batch, s.end = start, offset


# -- one batch --------------------------------------------------------------------------------


class _Bad(Exception):
    """The batch at some offset does not read. ``at`` and ``hi``: the first
    bad record and the bytes it claims; ``batch_end`` from an intact batch
    header; ``certain``: a checksummed record in the wrong place, which no
    crash produces."""

    def __init__(self, at: int, hi: int, reason: str, batch_end: int | None = None, certain: bool = False):
        super().__init__(reason)
        self.at, self.hi, self.reason, self.batch_end, self.certain = at, hi, reason, batch_end, certain


def _read_batch(view: memoryview, start: int, seed: int) -> tuple[list, int] | None:
    """The records of the batch at ``start`` and the offset after it; None
    at a zero header. Raises _Bad."""
    try:
        item, offset = rec.read_record(view, start, seed)
    except rec.BadRecord as exc:
        raise _Bad(start, _claimed(view, start), str(exc)) from None
    if item is None:
        return None
    if item[0] != rec.BATCH or len(item) != 2 or type(item[1]) is not int or item[1] <= offset - start:
        raise _Bad(start, offset, f"expected a batch header, found {item!r:.60}", certain=True)
    batch_end = start + item[1]
    records = []
    while True:
        at = offset
        try:
            item, offset = rec.read_record(view, at, seed)
        except rec.BadRecord as exc:
            raise _Bad(at, _claimed(view, at), str(exc), batch_end) from None
        if item is None:
            raise _Bad(at, at + rec.HEADER_SIZE, "the batch ends without its marker", batch_end)
        if item[0] == rec.MARKER:
            if len(item) > 1 and item[1] != start:
                raise _Bad(at, offset, f"the marker closes a batch at offset {item[1]!r:.20}", batch_end, certain=True)
            break
        if item[0] in (rec.BATCH, rec.SEGMENT):
            raise _Bad(at, offset, "a header inside a batch", batch_end, certain=True)
        records.append((at, item))
    if offset != batch_end:
        raise _Bad(start, offset, "the batch's length does not match its header", certain=True)
    return records, offset


def _torn_or_damaged(s: SegmentScan, view: memoryview, start: int, bad: _Bad, last: bool,
                     entries: list[Entry]) -> None:
    """Mark the batch at ``start`` torn (``s.torn_at``), or raise Corruption
    saying why it cannot be a torn write (see the module docstring)."""
    why = None
    if bad.certain:
        why = "a well-formed record out of place"
    elif not last:
        why = "in a segment that was complete before the next one began"
    elif _later_batch(view, start, s.seed):
        why = "a later batch's header or marker follows it"
    elif bad.batch_end is not None and not _zero(view, min(bad.batch_end, len(view))):
        why = "data follows the batch"
    elif not _missing_sector(view, start, bad.at, bad.hi) and _data_end(view, start) > bad.hi:
        why = "no sector of it is missing, and data follows the bad record"
    if why is not None:
        raise Corruption(s.path, bad.at, _next_index(entries), f"{bad.reason} (not a torn write: {why})")
    s.torn_at = start
    s.torn_end = _data_end(view, start)


def _data_end(view: memoryview, start: int) -> int:
    """Where the last nonzero byte at or after ``start`` ends."""
    return start + len(bytes(view[start:]).rstrip(b"\0"))


def _claimed(view: memoryview, at: int) -> int:
    """The end of the bytes a (possibly damaged) record at ``at`` claims."""
    if at + rec.HEADER_SIZE > len(view):
        return len(view)
    length = int.from_bytes(view[at : at + 4], "big")
    end = at + rec.HEADER_SIZE + length
    return end if end <= len(view) else at + rec.HEADER_SIZE


def _missing_sector(view: memoryview, floor: int, lo: int, hi: int) -> bool:
    """Does [lo, hi) overlap a sector that is all zeros from ``floor`` on?"""
    hi = min(max(hi, lo + 1), len(view))
    for sector in range(lo - lo % SECTOR, hi, SECTOR):
        a, b = max(sector, floor), min(sector + SECTOR, len(view))
        if a < b and _zero(view, a, b):
            return True
    return False


def _later_batch(view: memoryview, start: int, seed: int) -> bool:
    """Is there a valid batch header after ``start``, or a marker closing a
    batch that began after it? Either proves a later save began, so the
    batch at ``start`` had been fsynced. (Seeded checksums: no command's
    bytes can pass for one.)"""
    for m in _HEADER_OR_MARKER.finditer(view, start + 1):
        try:
            item, _ = rec.read_record(view, m.start(), seed)
        except rec.BadRecord:
            continue
        if item is None:
            continue
        if item[0] == rec.BATCH or (item[0] == rec.MARKER and len(item) == 2 and type(item[1]) is int
                                    and item[1] > start):
            return True
    return False


def _zero(view: memoryview, start: int, end: int | None = None) -> bool:
    chunk = view[start:end]
    return chunk.nbytes == 0 or bytes(chunk).count(0) == chunk.nbytes


# -- entries ------------------------------------------------------------------------------------


def _next_index(entries: list[Entry], base: int = 0) -> int:
    return entries[-1].index + 1 if entries else base + 1


def _number(item: list, path: str, at: int, index: int | None) -> int:
    """The integer a header or truncate record carries (its checksum can be
    right and its shape still wrong)."""
    if len(item) != 2 or type(item[1]) is not int:
        raise Corruption(path, at, index, f"malformed record {item!r:.60}")
    return item[1]


def _replay(entries: list[Entry], item: list, path: str, at: int, base: int = 0) -> None:
    if item[0] == rec.TRUNCATE:
        index = _number(item, path, at, None)
        if index < base + 1 or index > _next_index(entries, base):
            raise Corruption(path, at, index,
                             f"truncate to {index} outside the log {base + 1}..{_next_index(entries, base) - 1}")
        first = entries[0].index if entries else base + 1
        del entries[max(0, index - first) :]
        return
    try:
        e = rec.decode_entry(item)
    except rec.BadRecord as exc:
        raise Corruption(path, at, None, str(exc)) from None
    expected = _next_index(entries, base)
    if e.index != expected:
        raise Corruption(path, at, e.index, f"gap in the log: entry {e.index} where {expected} belongs")
    if entries and e.term < entries[-1].term:
        raise Corruption(path, at, e.index, f"term {e.term} after term {entries[-1].term}")
    entries.append(e)
