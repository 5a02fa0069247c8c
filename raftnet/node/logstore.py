"""Where a node keeps its log and hard state: the WAL, behind an async interface.

``MemoryLogStore`` keeps the log in memory instead, on the crash-model disk
of ``raftnet.storage.memdisk`` (the one the simulator uses too): node tests
run real nodes on it, and a "crash" keeps what a real crash would.

The node's ready loop calls ``await store.save(hard_state, entries)`` once per
core ``Ready``: the Ready already gathers every proposal and message that
arrived since the last one, so this single call is the group commit (one
write, one fsync for many client requests). The disk store runs the blocking
write in a worker thread so heartbeats never wait on a slow disk.

Snapshot files live beside the log, on the store's ``fs`` in
``snapshot_dir`` (``raftnet/storage/snapshot.py`` writes and reads them):
the data directory for the disk store, a ``MemFS`` for the memory store.
``adopt_snapshot`` makes a written snapshot the newest and lets the log
before ``compact_to`` go; ``install_snapshot`` replaces the whole log with
a leader's. Both take turns with ``save`` (one lock): the WAL is never
written from two threads at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import trio

from ..core.messages import Entry
from ..core.ready import HardState
from ..storage.memdisk import MemoryDisk, StoredSnapshot
from ..storage.memfs import MemFS
from ..storage.snapshot import SnapshotMeta, read_snapshot


class LogStore(Protocol):
    hard_state: HardState
    fs: object  # where snapshot files live (raftnet.storage.fs.OS, or a MemFS)
    snapshot_dir: str

    def entries(self, lo: int, hi: int) -> list[Entry]: ...

    @property
    def first_index(self) -> int: ...

    @property
    def last_index(self) -> int: ...

    @property
    def snapshot(self) -> tuple[int, int] | None:
        """(index, term) of the newest snapshot, if any."""

    @property
    def snapshot_file(self) -> tuple[SnapshotMeta, str] | None:
        """The newest snapshot's metadata and path (on ``fs``)."""

    def snapshot_blobs(self) -> Iterator[bytes]:
        """The newest snapshot's state-machine blobs (blocking: iterate
        them in a worker thread)."""

    async def save(self, hard_state: HardState | None, entries: Sequence[Entry], *, on_loop: bool = False) -> None:
        """Make ``entries`` and ``hard_state`` durable. ``on_loop``: the
        caller prefers the write done on the event loop, blocking it, to a
        hand-off to a thread and back (see ``DiskLogStore.save``)."""

    def stats(self) -> dict[str, int]:
        """Counters since the node started: ``saves``, ``entries`` saved and
        ``fsyncs`` (what ``raftnet status`` and ``raftnet bench`` show)."""

    async def adopt_snapshot(self, meta: SnapshotMeta, path: str, compact_to: int) -> int:
        """``path`` (durable) is the newest snapshot unless a newer one is
        already held; drop the log up to ``compact_to`` (at most the
        newest snapshot's index). Returns how much of the log went, for the
        log line (segments on disk, entries in memory)."""

    async def install_snapshot(self, meta: SnapshotMeta, path: str) -> None:
        """A leader's snapshot (durable at ``path``) replaces the whole log."""

    def close(self) -> None: ...


class WalThread:
    """One thread, for the store's lifetime, that runs the WAL's blocking
    writes. ``trio.to_thread.run_sync`` does the same with a thread from a
    cache, but costs about 60 µs more CPU a call here (thread names,
    limiter, context copies): on every save, that is on every write's path.
    ``run`` cannot be cancelled: a write, once begun, ends before the node
    acts on (or abandons) what it wrote."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="raftnet-wal", daemon=True)
            self._thread.start()
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        box: list = [None, None]  # result, exception

        def job() -> None:
            try:
                box[0] = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed back to the caller below
                box[1] = exc
            token.run_sync_soon(done.set)

        self._jobs.put(job)
        with trio.CancelScope(shield=True):
            await done.wait()
        if box[1] is not None:
            raise box[1]
        return box[0]

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None


class DiskLogStore:
    """The WAL of ``raftnet.storage``, saved off the event loop."""

    def __init__(self, storage):
        self._storage = storage
        self._lock = trio.Lock()
        self._thread = WalThread()
        self.fs = storage.fs
        self.snapshot_dir = storage.data_dir
        self._saves = self._entries = 0

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

    @property
    def snapshot_file(self) -> tuple[SnapshotMeta, str] | None:
        return self._storage.snapshot

    def snapshot_blobs(self) -> Iterator[bytes]:
        _, blobs = read_snapshot(self._storage.snapshot[1], fs=self._storage.fs)
        return blobs

    async def save(self, hard_state: HardState | None, entries: Sequence[Entry], *, on_loop: bool = False) -> None:
        """A write with an fsync goes to the WAL thread, so that the event
        loop goes on meanwhile: a leader sends its appends and takes
        requests while its own write is in flight. Two kinds of write stay
        on the loop instead, where no thread is using the storage (every
        thread that does holds the lock):

        * one that only records a new commit index: a write of one sector
          to the page cache, no fsync; not worth a thread's round trip
          before the committed entries can be applied;
        * with ``on_loop`` (the node asks it of followers): a follower has
          nothing to do but wait for its write before it acknowledges, and
          on a small machine under load handing the write to a thread and
          back costs more than the fsync (measured: 200-350 µs to wake the
          thread, 150-250 µs to resume the loop, against a 200-400 µs
          fsync). Messages meanwhile wait in the socket, and ticks come
          late, never early (no election fires because of it)."""
        storage = self._storage
        if not self._lock.locked() and (on_loop or storage.needs_no_sync(hard_state, entries)):
            storage.save(hard_state, list(entries))
            await trio.lowlevel.checkpoint()
        else:
            # Not cancellable mid-write: a half-done save must finish before
            # the node acts on (or abandons) what it wrote.
            async with self._lock:
                await self._thread.run(storage.save, hard_state, list(entries))
        self._saves += 1
        self._entries += len(entries)

    def stats(self) -> dict[str, int]:
        return {"saves": self._saves, "entries": self._entries, "fsyncs": self._storage.fsyncs}

    async def adopt_snapshot(self, meta: SnapshotMeta, path: str, compact_to: int) -> int:
        storage = self._storage
        async with self._lock:
            if storage.snapshot is None or meta.index > storage.snapshot[0].index:
                storage.snapshot = (meta, path)
            compact_to = min(compact_to, storage.snapshot[0].index)
            return await trio.to_thread.run_sync(storage.compact, compact_to)

    async def install_snapshot(self, meta: SnapshotMeta, path: str) -> None:
        storage = self._storage
        async with self._lock:
            await trio.to_thread.run_sync(storage.reset, meta.index)
            storage.snapshot = (meta, path)

    def close(self) -> None:
        self._thread.close()
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
        self.fs = MemFS()
        self.snapshot_dir = "/snapshots"
        self.fs.makedirs(self.snapshot_dir)
        self._snapshot_file: tuple[SnapshotMeta, str] | None = None
        self._saves = self._entries = 0

    @property
    def hard_state(self) -> HardState:
        return self.disk.hard_state

    def stats(self) -> dict[str, int]:
        return {"saves": self._saves, "entries": self._entries, "fsyncs": self._saves}

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

    @property
    def snapshot_file(self) -> tuple[SnapshotMeta, str] | None:
        return self._snapshot_file

    def snapshot_blobs(self) -> Iterator[bytes]:
        return iter(self.disk.snapshot.state)

    def _stored(self, meta: SnapshotMeta, path: str) -> StoredSnapshot:
        _, blobs = read_snapshot(path, fs=self.fs)
        return StoredSnapshot(meta.index, meta.term, list(blobs))

    async def adopt_snapshot(self, meta: SnapshotMeta, path: str, compact_to: int) -> int:
        await trio.lowlevel.checkpoint()
        before = self.disk.first_index
        if self._snapshot_file is None or meta.index > self._snapshot_file[0].index:
            self._snapshot_file = (meta, path)
        self.disk.take_snapshot(self._stored(meta, path), compact_to)
        return self.disk.first_index - before

    async def install_snapshot(self, meta: SnapshotMeta, path: str) -> None:
        await trio.lowlevel.checkpoint()
        self.disk.begin(None, [], self._stored(meta, path)).finish()
        self._snapshot_file = (meta, path)

    async def save(self, hard_state: HardState | None, entries: Sequence[Entry], *, on_loop: bool = False) -> None:
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
        self._saves += 1
        self._entries += len(entries)

    def close(self) -> None:
        pass
