"""A running Raft node: the trio actors around one pure core.

``async with Node(cluster, node_id) as node:`` owns one nursery holding:

* the listener, and one task per accepted connection (peer or client);
* the ticker, calling ``core.tick()`` every tick;
* the ready loop, carrying out each core ``Ready`` in the documented order:
  send the leader's eager messages, persist (one write + one fsync for the
  whole batch: this is the group commit), send the messages that needed the
  persist, apply committed entries and wake the clients waiting on them,
  serve confirmed reads, then ``advance``;
* one outbound ``PeerLink`` per peer;
* the snapshot tasks of ``snapshots.py``: writing one off the loop,
  streaming one to a follower, verifying one received.

All actors share the core in one thread. No invariant is kept half-updated
across an ``await``: each actor mutates the core synchronously, then wakes the
ready loop, which picks up everything that accumulated.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterator
from typing import Any

import trio

from ..core import ProposalRefused, Raft, RaftConfig, Role
from ..core.errors import NotLeader
from ..core.messages import Entry, EntryKind, InstallSnapshot, Message
from ..core.ready import ReadState
from ..kv.store import KVStore
from ..storage import Storage
from .logstore import DiskLogStore, LogStore
from .peer import PeerLink
from . import wire
from .pending import Pending, RequestFailed, Waiter
from .readyloop import carry_out
from .server import serve_connection
from .snapshots import SnapshotAck, Snapshots, SnapshotChunk
from .transport import TcpTransport, Transport

log = logging.getLogger("raftnet.node")


class TickLag:
    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds = 0.0


class Node:
    """``async with Node(config, node_id) as node:`` runs one node of the
    cluster ``config`` (a ``raftnet.config.ClusterConfig``) until the block
    exits. Tests swap the transport, the log store, the state machine and
    the RNG."""

    def __init__(
        self,
        config: Any,
        node_id: int,
        *,
        data_dir: str | None = None,
        transport: Transport | None = None,
        log_store: LogStore | None = None,
        state_machine: Any = None,
        rng: random.Random | None = None,
        peer_queue_size: int = 4096,
    ):
        spec = config.node(node_id)
        self.config = config
        self.id = node_id
        self.address = spec.address
        self.peers = {n.id: n.address for n in config.nodes if n.id != node_id}
        self._raft_config = config.raft_config(node_id)
        self._data_dir = data_dir or config.data_dir(node_id)
        self._store = log_store
        self.state_machine = state_machine if state_machine is not None else KVStore()
        self._tick_seconds = config.timing.tick_ms / 1000
        self.cluster_name = config.name
        self.secret = config.secret.encode() if config.secret else None
        self.max_frame_bytes = config.limits.max_frame_bytes
        self.max_entry_bytes = config.limits.max_entry_bytes
        self.max_key_bytes = config.limits.max_key_bytes
        self.handshake_timeout = 5.0
        self._transport = transport or TcpTransport()
        self._rng = rng or random.Random()
        self._peer_queue_size = peer_queue_size
        self.raft: Raft | None = None
        self.pending = Pending()
        self._wake = trio.Event()
        self._links: dict[int, PeerLink] = {}
        self._nursery_manager = None
        self._nursery: trio.Nursery | None = None
        self._seen = (Role.FOLLOWER, 0, None)
        self.port = 0
        self.snapshots = Snapshots(self, config.snapshot, fsync=config.storage.fsync != "never")
        self._tick_watches: set[TickLag] = set()

    @property
    def store(self) -> LogStore:
        return self._store

    def address_of(self, node_id: int | None) -> str | None:
        if node_id is None:
            return None
        return self.address if node_id == self.id else self.peers.get(node_id)

    # -- lifetime ----------------------------------------------------------------

    async def __aenter__(self) -> Node:
        if self._store is None:
            s = self.config.storage
            storage = Storage.open(self._data_dir, cluster=self.config.name, node_id=self.id, fsync=s.fsync,
                                   segment_size=s.segment_size, fsync_warn_seconds=s.fsync_warn_ms / 1000)
            self._store = DiskLogStore(storage)
        store = self._store
        hs = store.hard_state
        snapshot = store.snapshot
        try:
            if snapshot is not None:
                # The newest snapshot, then the committed entries after it: a
                # restart costs the snapshot's size plus the tail, not the history.
                await trio.to_thread.run_sync(self.state_machine.restore, store.snapshot_blobs())
            entries = store.entries(store.first_index, store.last_index + 1)
            self.raft = Raft(self._raft_config, self._rng, hard_state=hs, entries=entries,
                             snapshot=snapshot or (0, 0))
        except BaseException:
            store.close()  # and with it the data directory's lock
            raise
        self._seen = (self.raft.role, self.raft.term, self.raft.leader_id)
        log.info(
            "node %d starting at %s: term %d, vote %s, commit %d, snapshot %s, log %d..%d",
            self.id, self.address, hs.term, hs.vote, hs.commit,
            f"{snapshot[0]} (term {snapshot[1]})" if snapshot else "none", store.first_index, store.last_index,
        )
        self._nursery_manager = trio.open_nursery()
        nursery = self._nursery = await self._nursery_manager.__aenter__()
        try:
            self.snapshots.start(nursery)
            self.port = await nursery.start(self._transport.serve, self.address, self._on_connection)
            for peer_id, address in sorted(self.peers.items()):
                link = PeerLink(
                    peer_id,
                    address,
                    connect=lambda a=address: self._connect_peer(a),
                    queue_size=self._peer_queue_size,
                    rng=self._rng,
                    max_frame_bytes=self.max_frame_bytes,
                )
                self._links[peer_id] = link
                nursery.start_soon(link.run)
            nursery.start_soon(self._ticker)
            nursery.start_soon(self._ready_loop)
        except BaseException as exc:
            nursery.cancel_scope.cancel()
            try:
                await self._nursery_manager.__aexit__(type(exc), exc, exc.__traceback__)
            finally:
                store.close()  # and with it the data directory's lock
            raise
        return self

    async def __aexit__(self, *exc_info) -> bool | None:
        assert self._nursery is not None and self._nursery_manager is not None
        self._nursery.cancel_scope.cancel()
        try:
            return await self._nursery_manager.__aexit__(*exc_info)
        finally:
            self.pending.fail_all(RequestFailed("unavailable", "node shutting down", maybe_applied=True))
            self._store.close()
            log.info("node %d stopped", self.id)

    # -- the actors -----------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    @contextlib.contextmanager
    def watching_ticks(self) -> Iterator[TickLag]:
        """Within the block, the watch holds the longest a tick came late:
        what heartbeats and election timers suffered meanwhile."""
        watch = TickLag()
        self._tick_watches.add(watch)
        try:
            yield watch
        finally:
            self._tick_watches.discard(watch)

    async def _ticker(self) -> None:
        due = trio.current_time()
        while True:
            due += self._tick_seconds
            await trio.sleep_until(due)
            now = trio.current_time()
            for watch in self._tick_watches:
                watch.seconds = max(watch.seconds, now - due)
            due = max(due, now)  # after a stall, tick on from now: no burst of ticks to catch up
            self.raft.tick()
            self._note_changes()
            self.wake()

    async def _ready_loop(self) -> None:
        raft = self.raft
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            self._confirm_reads()
            while raft.has_ready():
                # Ticks and peer messages keep stepping the core while the
                # write is in flight; they come out in the next Ready.
                for write in carry_out(raft, raft.ready(), self):
                    if write.snapshot is not None:
                        await self.snapshots.install(write.snapshot)
                    # A leader writes in a thread, replicating meanwhile; a
                    # follower only waits for its write (logstore.py).
                    await self._store.save(write.hard_state, write.entries, on_loop=raft.role is not Role.LEADER)
                self._note_changes()
                self.snapshots.maybe_take()

    # -- carrying out a Ready (readyloop.Effects) ----------------------------------

    def send(self, m: Message) -> None:
        if isinstance(m, InstallSnapshot):
            self.snapshots.send(m)  # a stream of chunks, not one message
            return
        link = self._links.get(m.dst)
        if link is not None:
            link.send(m)

    def apply(self, e: Entry) -> None:
        result = None
        if e.kind is EntryKind.NORMAL:
            result = self.state_machine.apply(e.index, e.data)
        self.snapshots.applied(len(e.data))
        self.pending.applied(e.index, e.term, result)

    def serve_read(self, rs: ReadState) -> None:
        for waiter in self.pending.read_ready(rs.ctx):
            waiter.resolve(None if waiter.query is None else self.state_machine.read(waiter.query))

    def read_dropped(self, ctx: Any) -> None:
        self.pending.read_dropped(ctx, self.raft.leader_id)

    def _note_changes(self) -> None:
        """Log role, term and leader changes; a leader that lost its role
        fails the writes it holds (their outcome is unknown: clients retry
        with the same sequence number, which the session table dedupes)."""
        raft = self.raft
        now = (raft.role, raft.term, raft.leader_id)
        if now == self._seen:
            return
        role, term, leader = self._seen
        self._seen = now
        if raft.term != term:
            log.info("node %d term %d -> %d", self.id, term, raft.term)
        if raft.role is not role:
            log.info("node %d role %s -> %s (term %d)", self.id, role.value, raft.role.value, raft.term)
            if raft.role is Role.LEADER:
                log.info("node %d won the election for term %d", self.id, raft.term)
        if raft.leader_id != leader:
            log.info("node %d leader is now %s (term %d)", self.id, raft.leader_id, raft.term)
        if role is Role.LEADER and raft.role is not Role.LEADER:
            self.pending.fail_all(RequestFailed("not_leader", "leadership lost", raft.leader_id, maybe_applied=True))

    # -- connections -------------------------------------------------------------

    async def _on_connection(self, stream: trio.abc.Stream) -> None:
        await serve_connection(self, stream)

    async def _connect_peer(self, address: str) -> trio.abc.Stream:
        stream = await self._transport.connect(address)
        try:
            with trio.fail_after(self.handshake_timeout):
                reader = wire.FrameReader(stream, self.max_frame_bytes)
                await wire.send_hello(stream, reader, cluster=self.cluster_name, secret=self.secret, role="peer", id=self.id)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return stream

    def deliver_batch(self, messages: list[Message]) -> None:
        """Messages arrived from an authenticated peer (server.py checked
        that each one is from that peer and addressed to us). If the core
        refuses one (``LogError``), the ones before it still count."""
        try:
            for m in messages:
                if isinstance(m, SnapshotChunk):
                    self.snapshots.on_chunk(m)
                elif isinstance(m, SnapshotAck):
                    self.snapshots.on_ack(m)
                else:
                    self.raft.step(m)
        finally:
            self._note_changes()
            self.wake()

    def client_limits(self) -> dict:
        """Sent in the welcome, so clients refuse what we would refuse."""
        return {"max_frame_bytes": self.max_frame_bytes, "max_entry_bytes": self.max_entry_bytes,
                "max_key_bytes": self.max_key_bytes}

    # -- what client requests call -------------------------------------------------------

    async def propose(self, command: bytes) -> tuple[int, Any]:
        """Append ``command`` and wait until it is applied; returns its index
        and the state machine's result. Raises RequestFailed."""
        waiter = self.propose_then(command)
        return waiter.key, await self._wait(waiter)

    async def read(self, query: Any) -> Any:
        """A linearizable read through ReadIndex (no log append)."""
        return await self._wait(self.read_then(query))

    def propose_then(self, command: bytes, callback: Callable[[Waiter], None] | None = None) -> Waiter:
        """``propose`` without waiting: the Waiter resolves (and calls
        ``callback``) once the entry is applied, with its index as ``key``.
        Raises RequestFailed at once if the core refuses the proposal."""
        try:
            entry = self.raft.propose(command)
        except ProposalRefused as exc:
            raise _refusal(exc) from None
        waiter = self.pending.add_write(entry.index, entry.term, callback)
        self.wake()
        return waiter

    def read_then(self, query: Any, callback: Callable[[Waiter], None] | None = None) -> Waiter:
        """``read`` without waiting (see ``propose_then``). The read joins
        the batch the ready loop confirms next (``_confirm_reads``)."""
        if self.raft.role is not Role.LEADER:
            raise _refusal(NotLeader(self.raft.leader_id))
        waiter = self.pending.queue_read(query, callback)
        self.wake()
        return waiter

    def _confirm_reads(self) -> None:
        """One ReadIndex for every read queued since the last turn."""
        ctx = self.pending.take_read_batch()
        if ctx is None:
            return
        try:
            self.raft.read_index(ctx)
        except ProposalRefused as exc:
            self.pending.fail_reads(self.pending.read_ready(ctx), _refusal(exc))

    async def barrier(self) -> None:
        """Return once this node, still the leader, has applied everything
        committed before the call (a ReadIndex round with nothing to read)."""
        await self.read(None)

    def read_stale(self, query: Any) -> Any:
        return self.state_machine.read(query)

    async def _wait(self, waiter: Waiter) -> Any:
        try:
            return await waiter.wait()
        finally:
            self.pending.forget(waiter)


def _refusal(exc: ProposalRefused) -> RequestFailed:
    leader = getattr(exc, "leader", None)
    return RequestFailed(exc.reason, str(exc), leader)
