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

Snapshots: ``take_snapshot`` records one (a file written to a temporary
name and renamed: it is there whole or not at all, and a node that crashes
before the rename simply has not taken it) and drops the entries it lets
go. A write may install one (a follower taking its leader's): it lands
before the write's entries, whole or not at all, and replaces the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from random import Random
from typing import Any

from ..core.messages import Entry
from ..core.ready import HardState


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    """A snapshot on the memory disk: the state machine as of ``index`` (an
    entry of ``term``), in whatever form its owner restores it from."""

    index: int
    term: int
    state: Any = None


class MemoryDisk:
    __slots__ = ("hard_state", "entries", "compacted_index", "compacted_term", "snapshot", "saves",
                 "synced_commit", "_writing")

    def __init__(self) -> None:
        self.hard_state = HardState()
        # entries[k].index == compacted_index + 1 + k; what came before is in the snapshot.
        self.entries: list[Entry] = []
        self.compacted_index = 0
        self.compacted_term = 0
        self.snapshot: StoredSnapshot | None = None
        self.saves = 0
        self.synced_commit = 0  # the commit index in the last fsynced hard state
        self._writing: Write | None = None

    @property
    def first_index(self) -> int:
        return self.compacted_index + 1

    @property
    def last_index(self) -> int:
        return self.compacted_index + len(self.entries)

    def term_at(self, index: int) -> int | None:
        if index == self.compacted_index:
            return self.compacted_term
        if self.compacted_index < index <= self.last_index:
            return self.entries[index - self.first_index].term
        if self.snapshot is not None and index == self.snapshot.index:
            return self.snapshot.term
        return None

    def covers(self, index: int) -> bool:
        """Whether the snapshot holds entry ``index`` (applied into its state)."""
        return self.snapshot is not None and index <= self.snapshot.index

    def entries_between(self, lo: int, hi: int) -> list[Entry]:
        """Entries with lo <= index < hi that the disk still holds."""
        first = self.first_index
        return self.entries[max(lo, first) - first : max(hi, first) - first]

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Durable on return."""
        self.begin(hard_state, entries).finish()

    def begin(self, hard_state: HardState | None, entries: Sequence[Entry],
              snapshot: StoredSnapshot | None = None) -> Write:
        if self._writing is not None:
            raise AssertionError("a second write began before the first one ended")
        last = snapshot.index if snapshot is not None else self.last_index
        if entries and entries[0].index > last + 1:
            raise AssertionError(f"gap: saving index {entries[0].index} after {last}")
        if entries and snapshot is None and entries[0].index <= self.compacted_index:
            raise AssertionError(f"saving index {entries[0].index} into the compacted log (up to {self.compacted_index})")
        self._writing = Write(self, hard_state, list(entries), snapshot)
        return self._writing

    def take_snapshot(self, snapshot: StoredSnapshot, compact_to: int) -> None:
        """The node saved a snapshot (durably, at once) and lets the entries
        up to ``compact_to`` go."""
        if self.snapshot is None or snapshot.index > self.snapshot.index:
            self.snapshot = snapshot
        compact_to = min(compact_to, self.snapshot.index, self.last_index)
        if compact_to > self.compacted_index:
            term = self.term_at(compact_to)
            del self.entries[: compact_to - self.compacted_index]
            self.compacted_index, self.compacted_term = compact_to, term

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
            del self.entries[entries[0].index - self.first_index :]
            self.entries.extend(entries)

    def _install(self, snapshot: StoredSnapshot) -> None:
        self.snapshot = snapshot
        self.entries = []
        self.compacted_index, self.compacted_term = snapshot.index, snapshot.term

    def _put_hard_state(self, hs: HardState) -> None:
        old = self.hard_state
        if (hs.term, hs.vote) != (old.term, old.vote):
            self.synced_commit = hs.commit  # written to the fsynced slots
        self.hard_state = hs


class Write:
    """One save in flight."""

    __slots__ = ("disk", "hard_state", "entries", "snapshot")

    def __init__(self, disk: MemoryDisk, hard_state: HardState | None, entries: list[Entry],
                 snapshot: StoredSnapshot | None = None):
        self.disk = disk
        self.hard_state = hard_state
        self.entries = entries
        self.snapshot = snapshot

    def finish(self) -> None:
        disk = self._end()
        if self.snapshot is not None:
            disk._install(self.snapshot)
        disk._put_entries(self.entries)
        if self.hard_state is not None:
            disk._put_hard_state(self.hard_state)
        disk.saves += 1

    def crash(self, rng: Random) -> None:
        """Keep a prefix of the write, drawn from ``rng``."""
        disk = self._end()
        if self.snapshot is not None:
            if rng.random() < 0.5:
                return  # died before the snapshot was renamed into place: nothing of the write landed
            disk._install(self.snapshot)
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
