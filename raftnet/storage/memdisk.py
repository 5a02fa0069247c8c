"""A node's disk in memory, with the storage crash model: what the node
tests and the simulator run on instead of the WAL.

It keeps a log and a hard state exactly as ``Storage.save`` leaves them, and
it knows what a crash in the middle of a save may leave (docs/storage.md,
"The crash and fault model"): ``save`` writes the entries first — a
truncating batch drops the old suffix from its first index — and the hard
state after them; a term or vote change is fsynced, a commit-only change is
not. So a write cut short by a crash leaves

* a prefix of the entries (the WAL keeps a batch whole or drops it whole;
  keeping any prefix is the weaker promise, and the core must live with it);
* the new hard state only if every entry made it, and then maybe;
* a commit index that never reached an fsync may be lost by any crash, even
  one long after the save returned: it falls back to the commit of the last
  synced hard state.

``save`` is the simple path (durable on return). ``begin`` starts a write
that ``finish`` or ``crash`` ends, for callers that model the time a write
takes. All randomness comes from the ``Random`` a crash is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from random import Random

from ..core.messages import Entry
from ..core.ready import HardState


class MemoryDisk:
    __slots__ = ("hard_state", "entries", "saves", "synced_commit", "_writing")

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.entries: list[Entry] = []
        self.saves = 0
        self.synced_commit = 0  # the commit index in the last fsynced hard state
        self._writing: Write | None = None

    @property
    def last_index(self) -> int:
        return len(self.entries)

    def term_at(self, index: int) -> int | None:
        if index == 0:
            return 0
        if 1 <= index <= len(self.entries):
            return self.entries[index - 1].term
        return None

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Durable on return."""
        self.begin(hard_state, entries).finish()

    def begin(self, hard_state: HardState | None, entries: Sequence[Entry]) -> Write:
        if self._writing is not None:
            raise AssertionError("a second write began before the first one ended")
        if entries and entries[0].index > len(self.entries) + 1:
            raise AssertionError(f"gap: saving index {entries[0].index} after {len(self.entries)}")
        self._writing = Write(self, hard_state, list(entries))
        return self._writing

    def crash(self, rng: Random) -> None:
        """The machine dies: a write in flight keeps what ``Write.crash``
        draws, and an unsynced commit index may be lost."""
        if self._writing is not None:
            self._writing.crash(rng)
        if self.hard_state.commit > self.synced_commit and rng.random() < 0.5:
            hs = self.hard_state
            self.hard_state = HardState(hs.term, hs.vote, self.synced_commit)

    def _put_entries(self, entries: Sequence[Entry]) -> None:
        if entries:
            del self.entries[entries[0].index - 1 :]
            self.entries.extend(entries)

    def _put_hard_state(self, hs: HardState) -> None:
        old = self.hard_state
        if (hs.term, hs.vote) != (old.term, old.vote):
            self.synced_commit = hs.commit  # written to the fsynced slots
        self.hard_state = hs


class Write:
    """One save in flight."""

    __slots__ = ("disk", "hard_state", "entries")

    def __init__(self, disk: MemoryDisk, hard_state: HardState | None, entries: list[Entry]):
        self.disk = disk
        self.hard_state = hard_state
        self.entries = entries

    def finish(self) -> None:
        disk = self._end()
        disk._put_entries(self.entries)
        if self.hard_state is not None:
            disk._put_hard_state(self.hard_state)
        disk.saves += 1

    def crash(self, rng: Random) -> None:
        """Keep a prefix of the write, drawn from ``rng``."""
        disk = self._end()
        kept = rng.randint(0, len(self.entries)) if self.entries else 0
        disk._put_entries(self.entries[:kept])
        if kept == len(self.entries) and self.hard_state is not None and rng.random() < 0.5:
            disk._put_hard_state(self.hard_state)

    def _end(self) -> MemoryDisk:
        disk = self.disk
        if disk._writing is not self:
            raise AssertionError("this write already ended")
        disk._writing = None
        return disk
