"""Where a node keeps its log and hard state: the WAL, behind an async interface.

``MemoryLogStore`` keeps the log in memory instead, on the crash-model disk
of ``raftnet.storage.memdisk`` (the one the simulator uses too): node tests
run real nodes on it, and a "crash" keeps what a real crash would.

The node's ready loop calls ``await store.save(hard_state, entries)`` once per
core ``Ready``: the Ready already gathers every proposal and message that
arrived since the last one, so this single call is the group commit (one
write, one fsync for many client requests). The disk store runs the blocking
write in a worker thread so heartbeats never wait on a slow disk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import trio

from ..core.messages import Entry
from ..core.ready import HardState
from ..storage.memdisk import MemoryDisk
from ..storage.snapshot import read_snapshot


class LogStore(Protocol):
    hard_state: HardState

    def entries(self, lo: int, hi: int) -> list[Entry]: ...

    @property
    def first_index(self) -> int: ...

    @property
    def last_index(self) -> int: ...

    @property
    def snapshot(self) -> tuple[int, int] | None:
        """(index, term) of the newest snapshot, if any."""

    def snapshot_blobs(self) -> Iterator[bytes]:
        """The newest snapshot's state-machine blobs (blocking: iterate
        them in a worker thread)."""

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
    def first_index(self) -> int:
        return self._storage.first_index

    @property
    def last_index(self) -> int:
        return self._storage.last_index

    def entries(self, lo: int, hi: int) -> list[Entry]:
        return self._storage.entries(lo, hi)

    @property
    def snapshot(self) -> tuple[int, int] | None:
        found = self._storage.snapshot
        return (found[0].index, found[0].term) if found is not None else None

    def snapshot_blobs(self) -> Iterator[bytes]:
        _, blobs = read_snapshot(self._storage.snapshot[1], fs=self._storage.fs)
        return blobs

    async def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        # Not cancellable mid-write: a half-done save must finish before the
        # node acts on (or abandons) what it wrote.
        await trio.to_thread.run_sync(self._storage.save, hard_state, list(entries))

    def close(self) -> None:
        self._storage.close()


class MemoryLogStore:
    """A ``MemoryDisk`` behind the async interface. What was saved survives a
    node's "crash" (a test keeps the object and hands it to the restarted
    node), as a real fsync guarantees. ``latency`` seconds (trio's clock)
    pass between the start of each write and its end, so a test can make
    the node step messages and ticks while a save is in flight."""

    def __init__(self, disk: MemoryDisk | None = None, latency: float = 0.0) -> None:
        self.disk = disk if disk is not None else MemoryDisk()
        self.latency = latency

    @property
    def hard_state(self) -> HardState:
        return self.disk.hard_state

    @property
    def first_index(self) -> int:
        return self.disk.first_index

    @property
    def last_index(self) -> int:
        return self.disk.last_index

    def entries(self, lo: int, hi: int) -> list[Entry]:
        return self.disk.entries_between(lo, hi)

    @property
    def snapshot(self) -> tuple[int, int] | None:
        snap = self.disk.snapshot
        return (snap.index, snap.term) if snap is not None else None

    def snapshot_blobs(self) -> Iterator[bytes]:
        return iter(self.disk.snapshot.state)

    async def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        write = self.disk.begin(hard_state, entries)
        try:
            if self.latency:
                await trio.sleep(self.latency)
            else:
                await trio.lowlevel.checkpoint()
        except BaseException:
            # Cancelled mid-write (the node is stopping): it completes, as a
            # worker thread's write would.
            write.finish()
            raise
        write.finish()

    def close(self) -> None:
        pass
