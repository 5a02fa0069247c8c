"""WAL records: ``u32 length | u64 xxh3 | CBOR payload``, big endian.

The checksum covers the payload. A length of zero marks the end of the
written part of a (preallocated, zero-filled) segment. Payloads are short
CBOR arrays tagged by their first element:

* ``[0, index, term, kind, data]``: a log entry; ``data`` is the command's
  bytes exactly as proposed (never re-encoded);
* ``[1, index]``: truncate: entries at or after ``index`` are discarded
  (a follower overwriting a conflicting suffix);
* ``[2, batch_bytes]``: batch header: the batch that starts here is
  ``batch_bytes`` long, marker included;
* ``[3, start]``: batch marker: the batch before it, which began at offset
  ``start`` of its segment, was written completely. The offset lets
  recovery tell, from a marker alone, that a batch began after a damaged
  one (``[3]`` in the first format);
* ``[4, seq, seed]``: segment header, the first record of every segment.
  ``seq`` grows with every new segment, so recovery replays segments in the
  order they were written. ``seed`` is drawn at random when the segment is
  made; every other record of the segment is checksummed with it (the
  header itself with seed 0). Command bytes are written verbatim and a
  client chooses them, so without the seed a command could carry bytes
  that read as a valid record; with it, a record's checksum cannot be
  forged, and recovery can trust "a valid batch header follows this
  damage" when it tells corruption from a torn write. (Segments written
  before the seed existed have ``[4, seq]`` and seed 0.)

A batch is ``header, records..., marker``. Recovery only believes batches
whose marker it read: a crash mid-write loses the unfinished batch, never
part of one.
"""

from __future__ import annotations

import struct

import cbor2
import xxhash

from ..core.messages import Entry, EntryKind

HEADER = struct.Struct(">IQ")
HEADER_SIZE = HEADER.size  # 12 bytes
MAX_RECORD = 1 << 30

ENTRY, TRUNCATE, BATCH, MARKER, SEGMENT = 0, 1, 2, 3, 4

checksum = _hash = xxhash.xxh3_64_intdigest  # (payload, seed=0) -> u64


def frame(payload: bytes, seed: int = 0) -> bytes:
    return HEADER.pack(len(payload), _hash(payload, seed)) + payload


def entry_record(e: Entry, seed: int = 0) -> bytes:
    return frame(cbor2.dumps([ENTRY, e.index, e.term, int(e.kind), e.data]), seed)


def truncate_record(index: int, seed: int = 0) -> bytes:
    return frame(cbor2.dumps([TRUNCATE, index]), seed)


def marker_record(seed: int = 0, start: int = 0) -> bytes:
    return frame(cbor2.dumps([MARKER, start]), seed)


def segment_record(seq: int, seed: int) -> bytes:
    return frame(cbor2.dumps([SEGMENT, seq, seed]))


def segment_seed(header: list) -> int:
    """The checksum seed a segment header carries (0 for the older ``[4, seq]``)."""
    return header[2] if len(header) == 3 and type(header[2]) is int and 0 <= header[2] < 1 << 64 else 0


def batch(records: list[bytes], seed: int = 0, start: int = 0) -> bytes:
    """``records`` wrapped in a header (carrying the batch length) and a
    marker (carrying ``start``, the offset the batch is written at)."""
    body = b"".join(records)
    marker = marker_record(seed, start)
    # The header's own size depends on the number it carries: settle it.
    size = len(body) + len(marker)
    header_len = 0
    while True:
        header = frame(cbor2.dumps([BATCH, size + header_len]), seed)
        if len(header) == header_len:
            return header + body + marker
        header_len = len(header)


class BadRecord(Exception):
    """The bytes at an offset are not a valid record."""


def read_record(buf: memoryview | bytes, offset: int, seed: int = 0) -> tuple[list | None, int]:
    """Decode the record at ``offset``: (payload, next offset). ``(None,
    offset)`` at a zero length (the end of written data, if only zeros
    follow: the caller checks). Raises BadRecord."""
    if offset + HEADER_SIZE > len(buf):
        if any(buf[offset:]):
            raise BadRecord("record header cut short by the end of the file")
        return None, offset
    length, checksum = HEADER.unpack_from(buf, offset)
    if length == 0:
        if checksum != 0:
            raise BadRecord("zero length with a nonzero checksum")
        return None, offset
    end = offset + HEADER_SIZE + length
    if length > MAX_RECORD or end > len(buf):
        raise BadRecord(f"length {length} runs past the end of the file")
    payload = bytes(buf[offset + HEADER_SIZE : end])
    if _hash(payload, seed) != checksum:
        raise BadRecord("checksum mismatch")
    try:
        item = cbor2.loads(payload)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a bad record
        raise BadRecord(f"undecodable payload ({exc})") from None
    if not isinstance(item, list) or not item or item[0] not in (ENTRY, TRUNCATE, BATCH, MARKER, SEGMENT):
        raise BadRecord("unknown record type")
    return item, end


_KINDS = {k.value: k for k in EntryKind}  # a dict lookup: EntryKind(x) costs a restart ~2 µs an entry


def decode_entry(item: list) -> Entry:
    if len(item) == 5:
        _, index, term, kind, data = item
        kind = _KINDS.get(kind) if type(kind) is int else None
        if type(index) is int and type(term) is int and kind is not None and type(data) is bytes:
            return Entry(index, term, data, kind)
    raise BadRecord(f"malformed entry record {item!r:.60}")
