"""The hard state file: term, vote and commit, in two alternating slots.

Each save writes the slot *not* holding the newest state, so a write torn by
a crash leaves the other slot intact. A slot is ``u32 length | u64 xxh3 |
CBOR [seq, term, vote, commit]`` padded to 64 bytes; the valid slot with the
higher ``seq`` wins on recovery. A file shorter than two slots, or with no
valid slot, is corruption.

Term and vote are fsynced before ``save`` returns (a vote grant depends on
them). A change of commit alone is written without an fsync: the commit
index can always be learnt again from the leader, and recovery never lets it
exceed the recovered log.
"""

from __future__ import annotations

import os

import cbor2

from ..core.ready import HardState
from .errors import Corruption
from .records import HEADER, HEADER_SIZE, _hash

SLOT = 64
NAME = "hardstate"


def _encode(seq: int, hs: HardState) -> bytes:
    payload = cbor2.dumps([seq, hs.term, hs.vote, hs.commit])
    rec = HEADER.pack(len(payload), _hash(payload)) + payload
    if len(rec) > SLOT:
        raise ValueError("hard state does not fit its slot")
    return rec.ljust(SLOT, b"\0")


def _decode(raw: bytes) -> tuple[int, HardState] | None:
    length, checksum = HEADER.unpack_from(raw, 0)
    if length == 0 or HEADER_SIZE + length > SLOT:
        return None
    payload = raw[HEADER_SIZE : HEADER_SIZE + length]
    if _hash(payload) != checksum:
        return None
    try:
        seq, term, vote, commit = cbor2.loads(payload)
        return int(seq), HardState(int(term), None if vote is None else int(vote), int(commit))
    except Exception:  # noqa: BLE001 - a slot that does not decode is simply invalid
        return None


def read_hard_state(path: str) -> tuple[int, HardState]:
    """(seq, hard state) of the newest valid slot. Raises Corruption."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 2 * SLOT:
        raise Corruption(path, len(raw), None, f"hard state file is truncated ({len(raw)} of {2 * SLOT} bytes)")
    slots = [s for s in (_decode(raw[:SLOT]), _decode(raw[SLOT : 2 * SLOT])) if s is not None]
    if not slots:
        raise Corruption(path, 0, None, "no valid hard state slot (both checksums fail)")
    return max(slots, key=lambda s: s[0])


class HardStateFile:
    def __init__(self, path: str, create: bool):
        self.path = path
        if create:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, _encode(0, HardState()) + _encode(1, HardState()))  # slot = seq % 2
            os.fsync(fd)
            self.seq, self.hard_state = 1, HardState()
        else:
            self.seq, self.hard_state = read_hard_state(path)
            fd = os.open(path, os.O_RDWR)
        self._fd = fd

    def save(self, hs: HardState) -> bool:
        """Write ``hs``; returns whether it needed an fsync (term or vote changed)."""
        if hs == self.hard_state:
            return False
        durable = hs.term != self.hard_state.term or hs.vote != self.hard_state.vote
        self.seq += 1
        os.pwrite(self._fd, _encode(self.seq, hs), (self.seq % 2) * SLOT)
        if durable:
            os.fdatasync(self._fd)
        self.hard_state = hs
        return durable

    def close(self) -> None:
        os.close(self._fd)
