"""A node's simulated disk: it keeps exactly what was saved.

``save`` is the fsync: what it completed survives a crash, and nothing else
does. The simulator crashes nodes at every point of the Ready order (after
sending the eager messages, after the save, in the middle of applying), so a
core that sent a promise before persisting it is caught.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.messages import Entry
from ..core.ready import HardState


class SimDisk:
    def __init__(self) -> None:
        self.hard_state = HardState()
        self.entries: list[Entry] = []
        self.saves = 0

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Durable on return. ``entries`` replace the stored suffix from
        ``entries[0].index``, as the WAL's crash-safe truncation does."""
        if entries:
            first = entries[0].index
            if first > len(self.entries) + 1:
                raise AssertionError(f"gap: saving index {first} after {len(self.entries)}")
            del self.entries[first - 1 :]
            self.entries.extend(entries)
        if hard_state is not None:
            self.hard_state = hard_state
        self.saves += 1
