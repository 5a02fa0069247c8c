"""The log as the core sees it: entries in memory, with what is already durable.

Indexes start at 1. Everything at or before ``compacted_index`` has been
dropped (§7: it is covered by a snapshot); only that entry's term is
remembered, which is all the consistency check needs. A node keeps a trailing
stretch of entries behind its newest snapshot, so ``compacted_index`` is at
or before the snapshot's index: a briefly lagging follower still catches up
from the log.

``stable_index`` is the last index the caller reported durable (through
``Raft.advance``); entries after it are *unstable*: handed out for writing but
not yet confirmed on disk.

Invariants: compacted_index < first_index <= last_index + 1;
            entries[k].index == first_index + k; stable_index <= last_index.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .messages import Entry


# What an entry costs on the wire and on disk beyond its payload: index,
# term and kind, generously. Counting it bounds an append of many tiny
# entries by bytes just like an append of one big one (etcd counts the
# encoded size for the same reason).
ENTRY_OVERHEAD_BYTES = 32


def entry_size(e: Entry) -> int:
    return len(e.data) + ENTRY_OVERHEAD_BYTES


class LogError(Exception):
    """A request that would break the log's invariants: a bug in the caller."""


class RaftLog:
    __slots__ = ("_entries", "compacted_index", "compacted_term", "stable_index")

    def __init__(self, entries: Sequence[Entry] = (), compacted_index: int = 0, compacted_term: int = 0):
        self.compacted_index = compacted_index
        self.compacted_term = compacted_term
        self._entries: list[Entry] = []
        for expected, e in enumerate(entries, start=compacted_index + 1):
            if e.index != expected:
                raise LogError(f"entries not contiguous: expected index {expected}, got {e.index}")
            self._entries.append(e)
        # Whatever the caller restores from was durable by definition.
        self.stable_index = self.last_index

    # -- views ------------------------------------------------------------------

    @property
    def first_index(self) -> int:
        return self.compacted_index + 1

    @property
    def last_index(self) -> int:
        return self.compacted_index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.compacted_term

    def term_at(self, index: int) -> int | None:
        """The term of the entry at ``index``; None if it is compacted or beyond the end."""
        if index == self.compacted_index:
            return self.compacted_term
        if index < self.compacted_index or index > self.last_index:
            return None
        return self._entries[index - self.first_index].term

    def matches(self, index: int, term: int) -> bool:
        return self.term_at(index) == term

    def entry(self, index: int) -> Entry:
        if not self.first_index <= index <= self.last_index:
            raise LogError(f"no entry {index} in [{self.first_index}, {self.last_index}]")
        return self._entries[index - self.first_index]

    def entries(self, lo: int, hi: int) -> list[Entry]:
        """Entries with lo <= index < hi (clipped to what the log holds)."""
        first = self.first_index
        lo = max(lo, first)
        hi = min(hi, self.last_index + 1)
        if lo >= hi:
            return []
        return self._entries[lo - first : hi - first]

    def entries_limited(self, lo: int, max_bytes: int) -> list[Entry]:
        """Entries from ``lo`` whose sizes (``entry_size``) total at most
        ``max_bytes``, but at least one entry if there is any, so progress
        never stalls on a single large entry."""
        first = self.first_index
        start = lo - first
        if start < 0:
            raise LogError(f"entry {lo} is compacted (first index {first})")
        taken = 0
        end = start
        entries = self._entries
        while end < len(entries):
            size = entry_size(entries[end])
            if end > start and taken + size > max_bytes:
                break
            taken += size
            end += 1
        return entries[start:end]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: a log is at least as up to date as ours if its last term is
        higher, or equal with an index at least as large."""
        return last_term > self.last_term or (last_term == self.last_term and last_index >= self.last_index)

    def conflict_hint(self, index: int) -> tuple[int, int]:
        """For a rejected append at ``index``: (our term there, the first index
        we hold with that term), or (0, last_index + 1) when our log is shorter."""
        term = self.term_at(index)
        if term is None or index > self.last_index:
            return 0, self.last_index + 1
        first = index
        while first - 1 > self.compacted_index and self.term_at(first - 1) == term:
            first -= 1
        return term, first

    def last_index_of_term(self, term: int) -> int | None:
        """The last index holding ``term``, scanning back from the end; None if absent."""
        for k in range(len(self._entries) - 1, -1, -1):
            t = self._entries[k].term
            if t == term:
                return self.first_index + k
            if t < term:
                return None
        return self.compacted_index if self.compacted_term == term else None

    # -- changes ------------------------------------------------------------------

    def append(self, entries: Iterable[Entry]) -> None:
        """Append entries that directly follow the last one (a leader's own entries)."""
        for e in entries:
            if e.index != self.last_index + 1:
                raise LogError(f"append at {e.index} does not follow last index {self.last_index}")
            self._entries.append(e)

    def truncate_after(self, index: int) -> None:
        """Drop every entry after ``index``. The caller guarantees none is committed."""
        if index < self.compacted_index:
            raise LogError(f"cannot truncate into the compacted log (index {index} < {self.compacted_index})")
        del self._entries[index - self.compacted_index :]
        self.stable_index = min(self.stable_index, index)

    def first_conflict(self, entries: Sequence[Entry]) -> int:
        """The index of the first entry in ``entries`` that we do not hold
        (a different term, or beyond our end); 0 if we already hold them all."""
        for e in entries:
            if e.index > self.last_index:
                return e.index
            if e.index >= self.first_index and self.term_at(e.index) != e.term:
                return e.index
        return 0

    def compact_to(self, index: int) -> None:
        """Drop the entries up to ``index``, keeping its term. Only durable
        entries that a snapshot covers may go (the caller guarantees it)."""
        if index <= self.compacted_index:
            return
        if index > self.stable_index:
            raise LogError(f"cannot compact to {index}: entries after {self.stable_index} are not durable")
        term = self.term_at(index)
        del self._entries[: index - self.compacted_index]
        self.compacted_index, self.compacted_term = index, term

    def restore(self, index: int, term: int) -> None:
        """Replace the whole log by a snapshot ending at ``index`` in ``term``
        (a follower installing what it was sent)."""
        self._entries.clear()
        self.compacted_index, self.compacted_term = index, term
        self.stable_index = index

    def unstable_entries(self) -> list[Entry]:
        return self.entries(self.stable_index + 1, self.last_index + 1)

    def stable_to(self, index: int, term: int) -> None:
        """The caller made entries up to ``index`` durable. Ignored if that entry
        was replaced meanwhile (a conflicting append truncated it while the
        write was in flight): the replacement is not durable yet."""
        if index > self.stable_index and self.term_at(index) == term:
            self.stable_index = index
