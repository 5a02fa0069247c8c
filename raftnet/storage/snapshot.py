"""Snapshots: the state machine as of a log index, in one self-verifying file.

``snap-<index:020d>-<term:020d>.snap`` holds ``b"RAFTSNAP" | u32 version``
(12 bytes), then records framed as in the WAL, ``u32 length | u64
xxh3_64(payload, seed) | payload`` (big endian), each payload starting with
its kind byte:

* record 0, the header: kind 1, CBOR ``{"format": 1, "index", "term",
  "voters", "learners", "seed"}``, checksummed with seed 0;
* records 1..n, the blobs: kind 2, then the blob's bytes verbatim;
* the trailer: kind 3, CBOR ``{"blobs": n, "bytes": total blob bytes,
  "xxh3": xxh3_64 of every byte before the trailer}``; the file ends there.

Records after the header are checksummed with its random ``seed``: blobs
hold client data, and with the seed no blob can carry bytes that read as a
valid record. A zero length is always damage (even an empty blob's payload
holds its kind byte), and a length is bounded by what is left of the file.

Reading checks the magic, version and header at once (and that they agree
with a snapshot file's name), each record's checksum before its blob is
returned, and, at the trailer, the count, the total, the whole-file
checksum and that nothing follows. Anything wrong is ``Corruption``.

Crash safety: ``write_snapshot`` writes ``<name>.tmp``, fsyncs it, renames
it to ``<name>``, fsyncs the directory: after a crash the name holds a
complete snapshot or nothing, and no other snapshot is touched. One
received from the leader goes to ``<name>.partial`` (``PartialSnapshot``)
and is renamed the same way once it verifies whole. The leader streams its
file's raw bytes (``read_chunk``), so the follower's copy is byte-identical
and verifies on its own. ``remove_partials`` deletes the leftovers, but
may spare the newest ``.partial``: a restarted follower resumes it.

All of it blocks (run it in a worker thread under trio), moves data in
bounded pieces, and goes through ``fs`` (fs.py), so tests can crash it on
the recording file system (memfs.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cbor2
import xxhash

from . import fs as fsmod
from .errors import Corruption, StorageError
from .records import HEADER, HEADER_SIZE, MAX_RECORD, checksum

log = logging.getLogger("raftnet.storage")

SNAPSHOT_RE = re.compile(r"^snap-(\d{20})-(\d{20})\.snap$")
PREAMBLE = struct.Struct(">8sI")
MAGIC, VERSION = b"RAFTSNAP", 1
KIND_HEADER, KIND_BLOB, KIND_TRAILER = 1, 2, 3
MAX_META = 1 << 20  # bound on the header and trailer payloads
MAX_BLOB = MAX_RECORD - 1
CHUNK = 1 << 20  # bytes read, or buffered for writing, at a time
LEFTOVER_SUFFIXES = (".snap.tmp", ".snap.partial")


def snapshot_name(index: int, term: int) -> str:
    if index < 0 or term < 0:
        raise ValueError(f"snapshot index and term must be >= 0 (got {index}, {term})")
    return f"snap-{index:020d}-{term:020d}.snap"


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int  # last_included_index
    term: int  # last_included_term
    voters: tuple[int, ...]  # the configuration in force at `index`
    learners: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "voters", tuple(self.voters))
        object.__setattr__(self, "learners", tuple(self.learners))


# -- writing ----------------------------------------------------------------------------------


def write_snapshot(data_dir: str, meta: SnapshotMeta, blobs: Iterable[bytes], *, fs=fsmod.OS,
                   fsync: bool = True) -> str:
    """Write the snapshot; returns its path. On failure the temporary file is
    removed (a failed directory fsync leaves the whole file under its name)."""
    path = os.path.join(data_dir, snapshot_name(meta.index, meta.term))
    tmp = path + ".tmp"
    seed = secrets.randbits(64)
    header = _encode_header(meta, seed)
    f = fs.open(tmp, create=True)
    try:
        try:
            _write_records(_Writer(f), header, blobs, seed)
            if fsync:
                f.sync()
        finally:
            f.close()
        fs.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            _discard(fs, tmp)
        raise
    if fsync:
        fs.sync_dir(data_dir)
    return path


def _encode_header(meta: SnapshotMeta, seed: int) -> bytes:
    if not (_count(meta.index) and _count(meta.term) and _ids(list(meta.voters)) and _ids(list(meta.learners))):
        raise ValueError(f"invalid snapshot meta {meta!r}")
    header = cbor2.dumps({"format": 1, "index": meta.index, "term": meta.term, "voters": list(meta.voters),
                          "learners": list(meta.learners), "seed": seed})
    if len(header) >= MAX_META:
        raise ValueError(f"a snapshot header of {len(header)} bytes is too large")
    return header


def _write_records(w: _Writer, header: bytes, blobs: Iterable[bytes], seed: int) -> None:
    w.write(PREAMBLE.pack(MAGIC, VERSION))
    w.record(KIND_HEADER, header, 0)
    count = total = 0
    for blob in blobs:
        if not isinstance(blob, (bytes, bytearray)) or len(blob) > MAX_BLOB:
            raise ValueError(f"a snapshot blob must be bytes of at most {MAX_BLOB} bytes")
        w.record(KIND_BLOB, blob, seed)
        count += 1
        total += len(blob)
    w.record(KIND_TRAILER, cbor2.dumps({"blobs": count, "bytes": total, "xxh3": w.digest.intdigest()}), seed)
    w.flush()


class _Writer:
    """Appends to a new file through a bounded buffer, hashing every byte."""

    def __init__(self, f):
        self._f, self._buf, self._offset = f, bytearray(), 0
        self.digest = xxhash.xxh3_64()

    def record(self, kind: int, body: bytes, seed: int) -> None:
        h = xxhash.xxh3_64(bytes((kind,)), seed=seed)
        h.update(body)
        self.write(HEADER.pack(1 + len(body), h.intdigest()) + bytes((kind,)))
        self.write(body)

    def write(self, data: bytes) -> None:
        self.digest.update(data)
        if len(self._buf) + len(data) > CHUNK:
            self.flush()
        if len(data) < CHUNK:
            self._buf += data
        else:  # a big blob goes straight to the file
            self._f.pwrite(data, self._offset)
            self._offset += len(data)

    def flush(self) -> None:
        if self._buf:
            self._f.pwrite(bytes(self._buf), self._offset)
            self._offset += len(self._buf)
            self._buf.clear()


# -- reading ----------------------------------------------------------------------------------


def read_snapshot(path: str, *, fs=fsmod.OS) -> tuple[SnapshotMeta, Iterator[bytes]]:
    """The header, checked now, and an iterator over the blobs that raises
    Corruption, at the latest before it ends, if anything in the file is
    wrong: a consumer that installs what it built only once the iterator is
    exhausted never installs a damaged snapshot."""
    r = _Reader(path, fs)
    if r.size < PREAMBLE.size:
        raise r.damage(0, f"{r.size} bytes is too short for a snapshot")
    magic, version = PREAMBLE.unpack(r.take(PREAMBLE.size, hashed=True))
    if magic != MAGIC:
        raise r.damage(0, "not a snapshot file (bad magic)")
    if version != VERSION:
        raise r.damage(len(MAGIC), f"unknown snapshot version {version}")
    at = r.pos
    payload = r.record(0, MAX_META, "record 0 (the header)")
    if payload[0] != KIND_HEADER:
        raise r.damage(at, f"the first record is of kind {payload[0]}, not a header")
    h = _cbor(r, at, payload, "the header")
    if not isinstance(h, dict) or h.get("format") != 1:
        raise r.damage(at, "the header is not a format-1 snapshot header")
    index, term, seed, voters, learners = (h.get(k) for k in ("index", "term", "seed", "voters", "learners"))
    if not (_count(index) and _count(term) and _count(seed) and seed < 1 << 64 and _ids(voters) and _ids(learners)):
        raise r.damage(at, "malformed header (index, term, voters, learners or seed)")
    named = SNAPSHOT_RE.match(os.path.basename(path))
    if named and (int(named[1]), int(named[2])) != (index, term):
        raise r.damage(at, f"the header says index {index} term {term}, unlike the file name")
    return SnapshotMeta(index, term, tuple(voters), tuple(learners)), _blobs(r, seed)


def verify_snapshot(path: str, *, fs=fsmod.OS) -> SnapshotMeta:
    """Read the whole file, checking everything. Raises Corruption."""
    meta, blobs = read_snapshot(path, fs=fs)
    for _ in blobs:
        pass
    return meta


def _blobs(r: _Reader, seed: int) -> Iterator[bytes]:
    count = total = 0
    while True:
        at = r.pos
        payload = r.record(seed, MAX_RECORD, f"record {count + 1}")
        if payload[0] == KIND_TRAILER:
            _check_trailer(r, at, payload, count, total)
            return
        if payload[0] != KIND_BLOB:
            raise r.damage(at, f"record {count + 1}: unknown record kind {payload[0]}")
        count += 1
        total += len(payload) - 1
        yield payload[1:]


def _check_trailer(r: _Reader, at: int, payload: bytes, count: int, total: int) -> None:
    t = _cbor(r, at, payload, "the trailer")
    if not isinstance(t, dict) or not all(_count(t.get(k)) for k in ("blobs", "bytes", "xxh3")):
        raise r.damage(at, "malformed trailer")
    if t["blobs"] != count or t["bytes"] != total:
        raise r.damage(at, f"the trailer counts {t['blobs']} blobs of {t['bytes']} bytes, "
                           f"the file holds {count} of {total}")
    if t["xxh3"] != r.digest.intdigest():
        raise r.damage(at, "whole-file checksum mismatch")
    if r.left:
        raise r.damage(r.pos, f"{r.left} bytes follow the trailer")


class _Reader:
    """Reads a file front to back in bounded chunks, hashing what it is told
    to; ``pos`` is the offset of the next byte."""

    def __init__(self, path: str, fs):
        self.path, self.fs, self.size = path, fs, fs.size(path)
        self.pos, self._buf, self._at = 0, b"", 0
        self.digest = xxhash.xxh3_64()

    @property
    def left(self) -> int:
        return self.size - self.pos

    def take(self, n: int, hashed: bool) -> bytes:
        """The next ``n`` bytes; the caller has checked ``n <= left``."""
        have = len(self._buf) - self._at
        if have < n:
            more = self.fs.read_range(self.path, self.pos + have, max(CHUNK, n - have))
            self._buf, self._at = self._buf[self._at :] + more, 0
            if len(self._buf) < n:
                raise self.damage(self.pos, "the file shrank while it was being read")
        out = self._buf[self._at : self._at + n]
        self._at += n
        self.pos += n
        if hashed:
            self.digest.update(out)
        return out

    def record(self, seed: int, limit: int, what: str) -> bytes:
        """The payload of the next record, its checksum good. Everything but
        a trailer goes into the whole-file checksum."""
        at = self.pos
        if self.left < HEADER_SIZE:
            raise self.damage(at, f"{what}: the file ends inside its frame header (truncated)")
        head = self.take(HEADER_SIZE, hashed=False)
        length, expected = HEADER.unpack(head)
        if length == 0:
            raise self.damage(at, f"{what}: zero length (zeroed or never written)")
        if length > min(limit, self.left):
            raise self.damage(at, f"{what}: length {length} runs past the end of the file or the limit "
                                  f"({self.left} bytes left, limit {limit})")
        payload = self.take(length, hashed=False)
        if checksum(payload, seed) != expected:
            raise self.damage(at, f"{what}: checksum mismatch")
        if payload[0] != KIND_TRAILER:
            self.digest.update(head)
            self.digest.update(payload)
        return payload

    def damage(self, offset: int, reason: str) -> Corruption:
        return Corruption(self.path, offset, None, reason)


def _cbor(r: _Reader, at: int, payload: bytes, what: str) -> object:
    try:
        return cbor2.loads(payload[1:])
    except Exception:  # noqa: BLE001 - any decoding failure is damage
        raise r.damage(at, f"{what} is not valid CBOR") from None


def _count(v: object) -> bool:
    return type(v) is int and v >= 0


def _ids(v: object) -> bool:
    return isinstance(v, list) and all(_count(x) for x in v)


# -- the snapshots of a data directory ----------------------------------------------------------


def list_snapshots(data_dir: str, *, fs=fsmod.OS) -> list[tuple[int, int, str]]:
    """(index, term, path) of every file named like a snapshot, oldest first."""
    named = (SNAPSHOT_RE.match(n) for n in fs.listdir(data_dir))
    return sorted((int(m[1]), int(m[2]), os.path.join(data_dir, m[0])) for m in named if m)


def latest_snapshot(data_dir: str, *, fs=fsmod.OS) -> tuple[SnapshotMeta, str] | None:
    """The newest snapshot that verifies (read whole); damaged newer ones are
    logged and skipped, not deleted."""
    for _, _, path in reversed(list_snapshots(data_dir, fs=fs)):
        try:
            return verify_snapshot(path, fs=fs), path
        except Corruption as exc:
            log.warning("skipping a damaged snapshot: %s", exc)
    return None


def prune_snapshots(data_dir: str, keep: int = 2, *, fs=fsmod.OS) -> list[str]:
    """Delete all but the newest ``keep`` (>= 1) snapshots, never the newest
    one that verifies (finding it reads it whole); returns what was deleted."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (got {keep})")
    doomed = [path for _, _, path in list_snapshots(data_dir, fs=fs)[:-keep]]
    if doomed:
        latest = latest_snapshot(data_dir, fs=fs)
        doomed = [path for path in doomed if latest is None or path != latest[1]]
    return _unlink_all(fs, data_dir, doomed)


def remove_partials(data_dir: str, *, fs=fsmod.OS, keep_received_after: int | None = None) -> list[str]:
    """Delete the files an interrupted write or transfer left behind. With
    ``keep_received_after``, the newest ``.partial`` (a transfer from a
    leader) of an index above it stays, so that the transfer resumes where
    it stopped (``received_partial``) instead of starting again from zero."""
    names = sorted(n for n in fs.listdir(data_dir) if n.endswith(LEFTOVER_SUFFIXES))
    spared = received_partial(data_dir, fs=fs) if keep_received_after is not None else None
    if spared is not None and spared[0] <= keep_received_after:
        spared = None
    return _unlink_all(fs, data_dir, [os.path.join(data_dir, n) for n in names
                                      if spared is None or os.path.join(data_dir, n) != spared[2]])


def received_partial(data_dir: str, *, fs=fsmod.OS) -> tuple[int, int, str] | None:
    """(index, term, path) of the newest ``.partial`` file in ``data_dir``."""
    named = (SNAPSHOT_RE.match(n[: -len(".partial")]) for n in fs.listdir(data_dir) if n.endswith(".snap.partial"))
    found = sorted((int(m[1]), int(m[2]), os.path.join(data_dir, m[0] + ".partial")) for m in named if m)
    return found[-1] if found else None


def _unlink_all(fs, data_dir: str, paths: list[str]) -> list[str]:
    for path in paths:
        fs.unlink(path)
    if paths:
        fs.sync_dir(data_dir)
    return paths


def _discard(fs, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        fs.unlink(path)


# -- sending and receiving ----------------------------------------------------------------------


def snapshot_size(path: str, *, fs=fsmod.OS) -> int:
    return fs.size(path)


def read_chunk(path: str, offset: int, n: int, *, fs=fsmod.OS) -> bytes:
    """Up to ``n`` raw bytes of the file from ``offset`` (fewer at its end)."""
    if offset < 0 or n < 0:
        raise ValueError(f"bad chunk: offset {offset}, length {n}")
    return fs.read_range(path, offset, n)


class PartialSnapshot:
    """A snapshot received in chunks into ``<name>.partial``. ``write`` takes
    data only at ``have`` (a duplicate, a chunk from further on, or one that
    would run past ``size`` is ignored); ``finish`` verifies the whole file
    before it takes the snapshot's name.

    With ``resume``, a ``.partial`` file of the same name left by an earlier
    run (the node was killed mid-transfer) is kept and ``have`` starts at its
    length, unless it is longer than ``size``. Its bytes are not trusted
    for that: ``finish`` verifies every byte, so a file that a power loss
    left with holes is found out and the transfer starts over."""

    def __init__(self, data_dir: str, index: int, term: int, size: int, *, fs=fsmod.OS, resume: bool = False):
        if size < 0:
            raise ValueError(f"snapshot size must be >= 0 (got {size})")
        self.data_dir, self.index, self.term, self.size, self.fs = data_dir, index, term, size, fs
        self.have = 0  # Invariant: bytes [0, have) are written, and have <= size
        self.final_path = os.path.join(data_dir, snapshot_name(index, term))
        self.path = self.final_path + ".partial"
        kept = fs.size(self.path) if resume and fs.exists(self.path) else None
        if kept is not None and kept <= size:
            self._file = fs.open(self.path)
            self.have = kept
        else:
            self._file = fs.open(self.path, create=True)
        self._done = False  # finished or aborted

    @property
    def complete(self) -> bool:
        return self.have == self.size

    def write(self, offset: int, data: bytes) -> int:
        self._check_open()
        if offset == self.have and data and self.have + len(data) <= self.size:
            self._file.pwrite(data, offset)
            self.have += len(data)
        return self.have

    def finish(self, fsync: bool = True) -> tuple[SnapshotMeta, str]:
        """Verify, fsync, rename into place, fsync the directory; blocking.
        Corruption deletes the partial file; StorageError if incomplete."""
        self._check_open()
        if not self.complete:
            raise StorageError(f"{self.path}: incomplete snapshot ({self.have} of {self.size} bytes)")
        try:
            meta = verify_snapshot(self.path, fs=self.fs)
            if (meta.index, meta.term) != (self.index, self.term):
                raise Corruption(self.path, PREAMBLE.size, None, f"expected index {self.index} term {self.term}, "
                                 f"the snapshot is of index {meta.index} term {meta.term}")
            if fsync:
                self._file.sync()
            self._file.close()
            self._file = None
            self.fs.rename(self.path, self.final_path)
            self._done = True
        except BaseException:
            with contextlib.suppress(OSError):
                self.abort()
            raise
        if fsync:
            self.fs.sync_dir(self.data_dir)
        return meta, self.final_path

    def abort(self) -> None:
        """Close and delete the partial file (nothing, once finished)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if not self._done:
            self._done = True
            _discard(self.fs, self.path)

    def _check_open(self) -> None:
        if self._done:
            raise StorageError(f"{self.path}: this transfer was already finished or aborted")
