"""The simulator's disk behind the node's async ``LogStore`` interface, so the
node simulation tests (real ``Node`` actors under trio's MockClock) run the
runtime over a disk that keeps exactly what was saved."""

from __future__ import annotations

from collections.abc import Sequence

import trio

from ..core.messages import Entry
from ..core.ready import HardState
from .disk import SimDisk


class MemoryLogStore:
    """The simulator's ``SimDisk`` behind the async interface: what was saved
    survives a node's "crash" (a test keeps the object and hands it to the
    restarted node), which is exactly what a real fsync guarantees."""

    def __init__(self, disk: SimDisk | None = None) -> None:
        self.disk = disk if disk is not None else SimDisk()

    @property
    def hard_state(self) -> HardState:
        return self.disk.hard_state

    @property
    def last_index(self) -> int:
        return len(self.disk.entries)

    def entries(self, lo: int, hi: int) -> list[Entry]:
        return self.disk.entries[max(lo, 1) - 1 : max(hi, 1) - 1]

    async def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        self.disk.save(hard_state, entries)
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        pass
