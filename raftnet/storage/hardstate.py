"""The hard state file: term, vote and commit, in three sector-sized slots.

Each slot is ``u32 length | u64 xxh3 | CBOR [seq, term, vote, commit]``
padded to its own 512-byte sector, so writing one never touches another:

* slots A and B hold the newest term and vote, twice. A change of term or
  vote is written to A, fsynced, then to B, fsynced, before ``save``
  returns (a vote grant depends on it). A write torn by a crash damages
  only the copy being written, the other holds the old or the new state
  (the change was not acknowledged yet, so either is right); and once a
  change is done, a bit flip or a lost sector in either copy leaves the
  other: recovery never returns an older term or vote.
* slot C holds a newer commit index when only commit changed. It is written
  without an fsync (the commit index can be learnt again from the leader),
  and it never overwrites A or B. Recovery uses it only when it is valid,
  newer than A and B, and carries their term and vote.

A file with neither A nor B valid is corruption. The first format (two
64-byte slots in one sector, up to raftnet 0.1) is read and rewritten in
this layout on open (``upgrade``).
"""

from __future__ import annotations

import os

import cbor2

from ..core.ready import HardState
from . import fs as fsmod
from .errors import Corruption
from .records import HEADER, HEADER_SIZE, checksum

NAME = "hardstate"
SLOT = 512
SIZE = 3 * SLOT
A, B, C = 0, SLOT, 2 * SLOT
LEGACY_SLOT, LEGACY_SIZE = 64, 128


def _encode(seq: int, hs: HardState, size: int = SLOT) -> bytes:
    payload = cbor2.dumps([seq, hs.term, hs.vote, hs.commit])
    rec = HEADER.pack(len(payload), checksum(payload)) + payload
    if len(rec) > size:
        raise ValueError("hard state does not fit its slot")
    return rec.ljust(size, b"\0")


def _decode(raw: bytes) -> tuple[int, HardState] | None:
    length, expected = HEADER.unpack_from(raw, 0)
    if length == 0 or HEADER_SIZE + length > len(raw):
        return None
    payload = raw[HEADER_SIZE : HEADER_SIZE + length]
    if checksum(payload) != expected:
        return None
    try:
        seq, term, vote, commit = cbor2.loads(payload)
        return int(seq), HardState(int(term), None if vote is None else int(vote), int(commit))
    except Exception:  # noqa: BLE001 - a slot that does not decode is simply invalid
        return None


def decode(raw: bytes, path: str) -> tuple[int, HardState, bool]:
    """(highest seq, hard state, whether the file is in the first format).
    Raises Corruption."""
    if len(raw) == LEGACY_SIZE:
        slots = [s for s in (_decode(raw[:LEGACY_SLOT]), _decode(raw[LEGACY_SLOT:])) if s is not None]
        if not slots:
            raise Corruption(path, 0, None, "no valid hard state slot (both checksums fail)")
        seq, hs = max(slots, key=lambda s: s[0])
        return seq, hs, True
    if len(raw) < SIZE:
        raise Corruption(path, len(raw), None, f"hard state file is truncated ({len(raw)} of {SIZE} bytes)")
    a, b, c = (_decode(raw[k : k + SLOT]) for k in (A, B, C))
    copies = [s for s in (a, b) if s is not None]
    if not copies:
        raise Corruption(path, 0, None, "no valid copy of term and vote (both checksums fail)")
    seq, hs = max(copies, key=lambda s: s[0])
    if c is not None and c[0] > seq and (c[1].term, c[1].vote) == (hs.term, hs.vote):
        seq, hs = c[0], HardState(hs.term, hs.vote, c[1].commit)
    return max(s[0] for s in (a, b, c) if s is not None), hs, False


def read_hard_state(path: str, fs=fsmod.OS) -> tuple[int, HardState]:
    """(seq, hard state). Raises Corruption."""
    seq, hs, _ = decode(fs.read(path), path)
    return seq, hs


class HardStateFile:
    def __init__(self, fs, path: str, create: bool):
        self.fs = fs
        self.path = path
        if create:
            self.seq, self.hard_state, self.legacy = 1, HardState(), False
            self._file = fs.open(path, create=True, exclusive=True)
            self._file.pwrite(_encode(1, HardState()) * 3, 0)
            self._file.sync()
        else:
            self.seq, self.hard_state, self.legacy = decode(fs.read(path), path)
            self._file = fs.open(path)

    def save(self, hs: HardState) -> int:
        """Write ``hs``; returns the number of fsyncs it took (2 when term or
        vote changed, else 0)."""
        if hs == self.hard_state:
            return 0
        if self.legacy:
            self.upgrade()
        durable = hs.term != self.hard_state.term or hs.vote != self.hard_state.vote
        self.seq += 1
        slot = _encode(self.seq, hs)
        if durable:
            self._file.pwrite(slot, A)
            self._file.datasync()
            self._file.pwrite(slot, B)
            self._file.datasync()
        else:
            self._file.pwrite(slot, C)
        self.hard_state = hs
        return 2 if durable else 0

    def upgrade(self) -> None:
        """Rewrite a first-format file in this layout: a new file, fsynced,
        renamed over the old one, the directory fsynced."""
        tmp = self.path + ".tmp"
        f = self.fs.open(tmp, create=True)
        try:
            f.pwrite(_encode(self.seq, self.hard_state) * 3, 0)
            f.sync()
        finally:
            f.close()
        self.fs.rename(tmp, self.path)
        self.fs.sync_dir(os.path.dirname(self.path) or ".")
        self._file.close()
        self._file = self.fs.open(self.path)
        self.legacy = False

    def close(self) -> None:
        self._file.close()
