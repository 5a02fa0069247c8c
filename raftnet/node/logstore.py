"""Where a node keeps its log and hard state: the WAL, behind an async interface.

The simulator's in-memory store (``raftnet.sim.memstore.MemoryLogStore``)
implements the same ``LogStore`` protocol; the runtime never imports it.

The node's ready loop calls ``await store.save(hard_state, entries)`` once per
core ``Ready``: the Ready already gathers every proposal and message that
arrived since the last one, so this single call is the group commit (one
write, one fsync for many client requests). The disk store runs the blocking
write in a worker thread so heartbeats never wait on a slow disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import trio

from ..core.messages import Entry
from ..core.ready import HardState


class LogStore(Protocol):
    hard_state: HardState

    def entries(self, lo: int, hi: int) -> list[Entry]: ...

    @property
    def last_index(self) -> int: ...

    async def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None: ...

    def close(self) -> None: ...


class DiskLogStore:
    """The WAL of ``raftnet.storage``, saved off the event loop."""

    def __init__(self, storage):
        self._storage = storage

    @property
    def hard_state(self) -> HardState:
        return self._storage.hard_state

    @property
    def last_index(self) -> int:
        return self._storage.last_index

    def entries(self, lo: int, hi: int) -> list[Entry]:
        return self._storage.entries(lo, hi)

    async def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        # Not cancellable mid-write: a half-done save must finish before the
        # node acts on (or abandons) what it wrote.
        await trio.to_thread.run_sync(self._storage.save, hard_state, list(entries))

    def close(self) -> None:
        self._storage.close()
