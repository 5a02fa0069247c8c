"""Snapshots in a running node: taking them, streaming them, installing them.

The core only says *which* snapshot a follower needs (``InstallSnapshot``);
this module does the rest around the files of ``raftnet/storage/snapshot.py``:

Taking (every node). Once ``every_entries`` entries (or ``every_bytes``
bytes of them) were applied since the last snapshot, the ready loop takes a
point-in-time view of the state machine (``snapshot()``: a copy-on-write
freeze, cheap on the loop) and a task writes it to a file in a worker
thread while the loop goes on applying and heartbeating. Once the file is
durable, the store adopts it and drops the log segments it covers (keeping
``trailing_entries`` behind it, so a briefly lagging follower still catches
up from the log), the core compacts its log the same way, and old snapshot
files beyond ``keep`` are deleted.

Streaming (leader to follower). An ``InstallSnapshot`` from the core starts
one transfer per follower (at most ``max_transfers`` at once, under an
optional ``max_bytes_per_second`` cap), in ``chunk_bytes`` chunks over the
ordinary peer links, one chunk in flight: the follower writes each chunk
into a ``.partial`` file and acknowledges how many bytes it holds. A chunk
lost with a connection is sent again after a short wait, and a transfer
with no acknowledged progress for ``transfer_timeout_ms`` is abandoned
(the core is told, and asks again later); the next attempt starts from the
last acknowledged offset, never from zero, while the follower keeps its
partial file; a follower that restarts keeps it too (the newest one) and
answers the next chunk with how much of it it holds. Heartbeats and
appends share the link with at most one chunk.

Installing (follower). With every byte in, the follower verifies the file
(checksums, in a worker thread: not counted against the transfer), names it
and steps ``InstallSnapshot`` into the core. If the core takes it (it is
newer than our log), the ready loop's write replaces the log with it and
restores the state machine from it before anything else of that Ready.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections import deque
from dataclasses import dataclass
from typing import Any

import trio

from ..core.log import LogError
from ..core.messages import InstallSnapshot, Message
from ..storage.errors import Corruption, StorageError
from ..storage.snapshot import (
    SNAPSHOT_RE,
    PartialSnapshot,
    SnapshotMeta,
    list_snapshots,
    read_chunk,
    read_snapshot,
    received_partial,
    remove_partials,
    snapshot_name,
    write_snapshot,
)

log = logging.getLogger("raftnet.node")

# A chunk not acknowledged within this long is sent again (at most).
RESEND_SECONDS = 2.0
# A transfer logs its progress this often.
PROGRESS_SECONDS = 5.0
# A snapshot file a client is downloading stays on disk this long after its last chunk was read.
DOWNLOAD_PIN_SECONDS = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotChunk(Message):
    """Leader to follower: bytes ``[offset, offset + len(data))`` of the
    snapshot file ending at entry ``index`` of term ``snap_term``, which is
    ``size`` bytes in all. An empty chunk asks how much the follower holds."""

    index: int
    snap_term: int
    size: int
    offset: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotAck(Message):
    """Follower to leader: the answer to the chunk at ``offset``; the
    follower holds bytes ``[0, have)`` of that snapshot."""

    index: int
    snap_term: int
    offset: int
    have: int


class _Transfer:
    """One snapshot on its way to one follower."""

    def __init__(self, peer: int, term: int, meta: SnapshotMeta, path: str):
        self.peer, self.term, self.meta, self.path = peer, term, meta, path
        self.cancel_scope = trio.CancelScope()
        self.offset = 0  # of the chunk in flight
        self.ack: SnapshotAck | None = None  # its answer
        self.acked = trio.Event()


class Snapshots:
    """The snapshot side of one ``Node`` (see the module docstring)."""

    def __init__(self, node: Any, spec: Any, fsync: bool = True):
        self.node = node
        self.spec = spec
        self.fsync = fsync
        self._nursery: trio.Nursery | None = None
        self._since_entries = 0
        self._since_bytes = 0
        self._taking: trio.Event | None = None  # set once the snapshot being taken is written (or failed)
        self._transfers: dict[int, _Transfer] = {}  # follower -> its transfer
        self._limiter = trio.CapacityLimiter(spec.max_transfers)
        self._next_send = 0.0  # the bandwidth cap: when the next chunk may go
        self._resume: dict[tuple[int, int, int], int] = {}  # (follower, index, term) -> bytes it acknowledged
        self._sending: dict[str, int] = {}  # path -> transfers reading it (not pruned meanwhile)
        self._downloads: dict[str, float] = {}  # path -> when its pin ends
        self._partial: PartialSnapshot | None = None
        self._leftover: tuple[int, int, str] | None = None  # a partial file from before a restart, to resume
        self._complete: set[tuple[int, int]] = set()  # snapshots we hold every byte of (finishing or named)
        self._received: tuple[SnapshotMeta, str] | None = None  # the newest verified one from a leader
        self._installing = False  # the ready loop is replacing the log and state machine with one
        self.taken = 0
        self.installed = 0
        self.failed = 0
        self.bytes_sent = 0
        self.starts: deque[tuple[int, int, int]] = deque(maxlen=64)  # (follower, index, first byte) per transfer
        self.resumes: deque[tuple[int, int]] = deque(maxlen=64)  # (index, byte) per partial file kept over a restart

    def start(self, nursery: trio.Nursery) -> None:
        store = self.node.store
        held = store.snapshot_file
        covered = max(held[0].index if held is not None else 0, self.node.raft.commit_index)
        for path in remove_partials(store.snapshot_dir, fs=store.fs, keep_received_after=covered):
            log.info("node %d removed %s, left by an interrupted snapshot write or transfer", self.node.id, path)
        self._leftover = received_partial(store.snapshot_dir, fs=store.fs)
        self._nursery = nursery

    # -- taking ------------------------------------------------------------------------

    def applied(self, size: int) -> None:
        self._since_entries += 1
        self._since_bytes += size

    def maybe_take(self) -> None:
        """After each Ready: time for a snapshot?"""
        spec = self.spec
        if self._taking is None and (self._since_entries >= spec.every_entries or self._since_bytes >= spec.every_bytes):
            self._begin()

    async def take_now(self) -> tuple[SnapshotMeta, str] | None:
        """Take a snapshot of everything applied now (operators: ``raftnet
        snapshot trigger``) and return the newest one, once written."""
        if self._taking is not None:
            await self._taking.wait()  # it began before this call: it may miss entries applied since
        if self._taking is None:
            self._begin()
        if self._taking is not None:
            await self._taking.wait()
        return self.node.store.snapshot_file

    def _begin(self) -> None:
        raft, store = self.node.raft, self.node.store
        index = raft.applied_index
        term = raft.log.term_at(index)
        held = store.snapshot_file
        if self._installing or term is None:
            return  # the state machine is being replaced by a leader's snapshot: later
        if index == 0 or (held is not None and held[0].index >= index):
            self._since_entries = self._since_bytes = 0
            return
        meta = SnapshotMeta(index, term, tuple(sorted(raft.quorum.voters)))
        # The view holds the state machine as of `index`: the ready loop
        # applies nothing between the last Ready's advance and here.
        view = self.node.state_machine.snapshot()
        self._since_entries = self._since_bytes = 0
        self._taking = trio.Event()
        self._nursery.start_soon(self._take, meta, view)

    async def _take(self, meta: SnapshotMeta, view: Any) -> None:
        node, store = self.node, self.node.store
        started = trio.current_time()
        try:
            with contextlib.closing(view), node.watching_ticks() as lag:
                path = await trio.to_thread.run_sync(
                    lambda: write_snapshot(store.snapshot_dir, meta, view, fs=store.fs, fsync=self.fsync))
            written = trio.current_time()
            compact_to = max(0, meta.index - self.spec.trailing_entries)
            segments = await store.adopt_snapshot(meta, path, compact_to)
            node.raft.snapshot_taken(meta.index, compact_to)
            self.taken += 1
            log.info("node %d took snapshot %d (term %d, %d bytes) in %.3fs; log compacted to %d "
                     "(%d segments deleted); longest tick delay meanwhile %.1f ms",
                     node.id, meta.index, meta.term, store.fs.size(path), written - started,
                     min(compact_to, store.snapshot_file[0].index), segments, lag.seconds * 1000)
            await trio.to_thread.run_sync(self._prune, self._spared())
        except (StorageError, OSError) as exc:
            self.failed += 1
            log.error("node %d could not take snapshot %d: %s", node.id, meta.index, exc)
        except Exception:  # noqa: BLE001 - e.g. a state machine's snapshot() failing: the node carries on without
            self.failed += 1
            log.exception("node %d could not take snapshot %d", node.id, meta.index)
        finally:
            done, self._taking = self._taking, None
            done.set()
            node.wake()

    def _spared(self) -> set[str]:
        """On the loop: the files pruning must leave, the one in force and
        those being streamed or downloaded."""
        held = self.node.store.snapshot_file
        now = trio.current_time()
        self._downloads = {p: until for p, until in self._downloads.items() if until > now}
        return ({held[1]} if held is not None else set()) | set(self._sending) | set(self._downloads)

    def _prune(self, spared: set[str]) -> None:
        """In a worker thread: delete snapshot files beyond the newest ``keep``
        except the ``spared`` ones."""
        store = self.node.store
        doomed = [p for _, _, p in list_snapshots(store.snapshot_dir, fs=store.fs)[: -self.spec.keep]]
        doomed = [p for p in doomed if p not in spared]
        for path in doomed:
            store.fs.unlink(path)
        if doomed:
            store.fs.sync_dir(store.snapshot_dir)
            log.debug("node %d deleted %d old snapshot file(s)", self.node.id, len(doomed))

    # -- streaming, on the leader ------------------------------------------------------------

    def send(self, m: InstallSnapshot) -> None:
        """The core wants follower ``m.dst`` to have our newest snapshot."""
        peer = m.dst
        current = self._transfers.get(peer)
        if current is not None:
            if current.term == m.term:
                return  # already on its way
            current.cancel_scope.cancel()  # left over from an older term of ours
        held = self.node.store.snapshot_file
        if held is None:
            log.error("node %d has no snapshot file to send to peer %d", self.node.id, peer)
            self.node.raft.report_snapshot(peer, False)
            return
        t = self._transfers[peer] = _Transfer(peer, m.term, held[0], held[1])
        self._sending[t.path] = self._sending.get(t.path, 0) + 1
        self._nursery.start_soon(self._stream, t)

    async def _stream(self, t: _Transfer) -> None:
        ok = False
        try:
            with t.cancel_scope:
                async with self._limiter:
                    with self.node.watching_ticks() as lag:
                        ok = await self._pump(t)
                    log.info("node %d: longest tick delay while streaming to peer %d: %.1f ms",
                             self.node.id, t.peer, lag.seconds * 1000)
        except (OSError, StorageError) as exc:
            log.error("node %d cannot read snapshot %s for peer %d: %s", self.node.id, t.path, t.peer, exc)
        finally:
            if self._transfers.get(t.peer) is t:
                del self._transfers[t.peer]
            self._sending[t.path] -= 1
            if not self._sending[t.path]:
                del self._sending[t.path]
        raft = self.node.raft
        if raft.term == t.term:
            raft.report_snapshot(t.peer, ok)
            self.node.wake()

    async def _pump(self, t: _Transfer) -> bool:
        node, fs, spec = self.node, self.node.store.fs, self.spec
        key = (t.peer, t.meta.index, t.meta.term)
        size = await trio.to_thread.run_sync(fs.size, t.path)
        offset = min(self._resume.get(key, 0), size)
        timeout = spec.transfer_timeout_ms / 1000
        resend = min(RESEND_SECONDS, timeout / 3)
        log.info("node %d sending snapshot %d (term %d, %d bytes) to peer %d from byte %d",
                 node.id, t.meta.index, t.meta.term, size, t.peer, offset)
        self.starts.append((t.peer, t.meta.index, offset))
        started = last_progress = trio.current_time()
        report_at = started + PROGRESS_SECONDS
        have = first = offset
        while True:
            data = b""
            if offset < size:
                n = min(spec.chunk_bytes, size - offset)
                data = await trio.to_thread.run_sync(lambda o=offset, n=n: read_chunk(t.path, o, n, fs=fs))
                await self._pace(len(data))
                self.bytes_sent += len(data)
            t.offset, t.ack, t.acked = offset, None, trio.Event()
            node.send(SnapshotChunk(term=t.term, src=node.id, dst=t.peer, index=t.meta.index,
                                    snap_term=t.meta.term, size=size, offset=offset, data=data))
            with trio.move_on_after(resend):
                await t.acked.wait()
            now = trio.current_time()
            if t.ack is not None:
                stuck = t.ack.have <= have and offset == have and data
                if t.ack.have > have:
                    last_progress = now
                have = t.ack.have
                self._resume[key] = have
                if have >= size:
                    log.info("node %d sent snapshot %d to peer %d: %d bytes in %.2fs",
                             node.id, t.meta.index, t.peer, size, now - started)
                    del self._resume[key]
                    return True
                offset = have
                if now >= report_at:
                    report_at = now + PROGRESS_SECONDS
                    log.info("node %d: snapshot %d to peer %d: %d of %d bytes (%.0f%%), %.1f MiB/s",
                             node.id, t.meta.index, t.peer, have, size, 100 * have / max(size, 1),
                             max(0, have - first) / (now - started) / 2**20)
                if stuck:
                    await trio.sleep(resend)  # the follower would not take the chunk: no busy loop
            if now - last_progress > timeout:
                log.warning("node %d: snapshot %d to peer %d made no progress for %.1fs; abandoned at byte "
                            "%d of %d (the next attempt resumes there)", node.id, t.meta.index, t.peer,
                            timeout, have, size)
                return False
            if t.ack is None:
                offset = have  # the chunk or its answer was lost: send it again

    async def _pace(self, n: int) -> None:
        rate = self.spec.max_bytes_per_second
        if not rate:
            return
        now = trio.current_time()
        at = max(now, self._next_send)
        self._next_send = at + n / rate
        await trio.sleep_until(at)

    def on_ack(self, m: SnapshotAck) -> None:
        t = self._transfers.get(m.src)
        if (t is not None and m.term == t.term and (m.index, m.snap_term) == (t.meta.index, t.meta.term)
                and m.offset == t.offset and t.ack is None):
            t.ack = m
            t.acked.set()

    # -- receiving, on a follower ---------------------------------------------------------

    def on_chunk(self, m: SnapshotChunk) -> None:
        node = self.node
        if m.term < node.raft.term:
            return  # from a deposed leader: its heartbeats will learn our term
        key = (m.index, m.snap_term)
        have = m.size if key in self._complete else self._write_chunk(m)
        node.send(SnapshotAck(term=m.term, src=node.id, dst=m.src, index=m.index, snap_term=m.snap_term,
                              offset=m.offset, have=have))

    def _write_chunk(self, m: SnapshotChunk) -> int:
        store = self.node.store
        p = self._partial
        if p is not None and (p.index, p.term, p.size) != (m.index, m.snap_term, m.size):
            log.info("node %d dropped its partial snapshot %d (term %d) for snapshot %d (term %d)",
                     self.node.id, p.index, p.term, m.index, m.snap_term)
            p.abort()
            p = self._partial = None
        try:
            if p is None:
                p = self._partial = self._open_partial(m)
            have = p.write(m.offset, m.data)
        except (OSError, StorageError) as exc:
            log.error("node %d cannot write snapshot %d: %s", self.node.id, m.index, exc)
            if p is not None:
                with contextlib.suppress(OSError):
                    p.abort()
            self._partial = None
            return 0
        if p.complete:
            self._partial = None
            self._complete.add((m.index, m.snap_term))
            self._nursery.start_soon(self._finish, p, m.term, m.src)
        return have

    def _open_partial(self, m: SnapshotChunk) -> PartialSnapshot:
        """A new partial file for the snapshot ``m`` is a chunk of, or the one
        a transfer of that same snapshot left before this node restarted."""
        store, leftover, self._leftover = self.node.store, self._leftover, None
        resume = leftover is not None and leftover[:2] == (m.index, m.snap_term)
        if leftover is not None and not resume:
            log.info("node %d dropped %s, left by a transfer before it restarted", self.node.id, leftover[2])
            store.fs.unlink(leftover[2])
        p = PartialSnapshot(store.snapshot_dir, m.index, m.snap_term, m.size, fs=store.fs, resume=resume)
        if p.have:
            self.resumes.append((m.index, p.have))
            log.info("node %d resuming snapshot %d (term %d, %d bytes) from node %d at byte %d, "
                     "kept from before it restarted", self.node.id, m.index, m.snap_term, m.size, m.src, p.have)
        else:
            log.info("node %d receiving snapshot %d (term %d, %d bytes) from node %d",
                     self.node.id, m.index, m.snap_term, m.size, m.src)
        return p

    async def _finish(self, p: PartialSnapshot, term: int, leader: int) -> None:
        node = self.node
        key = (p.index, p.term)
        try:
            meta, path = await trio.to_thread.run_sync(lambda: p.finish(self.fsync))
        except (Corruption, StorageError, OSError) as exc:
            self._complete.discard(key)
            log.error("node %d received a damaged snapshot %d (term %d) and dropped it: %s",
                      node.id, p.index, p.term, exc)
            return
        self._received = (meta, path)
        log.info("node %d received snapshot %d (term %d)", node.id, meta.index, meta.term)
        try:
            node.deliver_batch([InstallSnapshot(term=term, src=leader, dst=node.id, snapshot_index=meta.index,
                                                snapshot_term=meta.term, voters=meta.voters)])
        except LogError as exc:
            log.error("node %d cannot take snapshot %d: %s", node.id, meta.index, exc)
        finally:
            self._complete.discard(key)

    async def install(self, m: InstallSnapshot) -> None:
        """In the ready loop, before the Ready's entries: the core replaced its
        log with the snapshot ``m``; make the store and the state machine match."""
        node, store = self.node, self.node.store
        received = self._received
        if received is None or (received[0].index, received[0].term) != (m.snapshot_index, m.snapshot_term):
            raise StorageError(f"the core installs snapshot {m.snapshot_index} (term {m.snapshot_term}), "
                               "which this node has not received")
        meta, path = received
        started = trio.current_time()
        self._installing = True
        try:
            with node.watching_ticks() as lag:
                await store.install_snapshot(meta, path)
                machine = node.state_machine
                await trio.to_thread.run_sync(lambda: machine.restore(read_snapshot(path, fs=store.fs)[1]))
        finally:
            self._installing = False
        self._since_entries = self._since_bytes = 0
        self.installed += 1
        log.info("node %d installed snapshot %d (term %d) in %.3fs; longest tick delay meanwhile %.1f ms",
                 node.id, meta.index, meta.term, trio.current_time() - started, lag.seconds * 1000)

    # -- backups ---------------------------------------------------------------------------

    def open_download(self, name: Any) -> str | None:
        """The path of snapshot file ``name`` for a client to read, pinned
        against pruning for a while; None if there is no such file."""
        store = self.node.store
        if not isinstance(name, str) or not SNAPSHOT_RE.match(name):
            return None
        path = os.path.join(store.snapshot_dir, name)
        if not store.fs.exists(path):
            return None
        self._downloads[path] = trio.current_time() + DOWNLOAD_PIN_SECONDS
        return path


def snapshot_file_name(meta: SnapshotMeta) -> str:
    return snapshot_name(meta.index, meta.term)
