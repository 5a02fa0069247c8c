"""A running Raft node: the trio actors around one pure core.

``async with Node(cluster, node_id) as node:`` owns one nursery holding:

* the listener, and one task per accepted connection (peer or client);
* the ticker, calling ``core.tick()`` every tick;
* the ready loop, carrying out each core ``Ready`` in the documented order:
  send the leader's eager messages, persist (one write + one fsync for the
  whole batch: this is the group commit), send the messages that needed the
  persist, apply committed entries and wake the clients waiting on them,
  serve confirmed reads, then ``advance``;
* one outbound ``PeerLink`` per peer.

All actors share the core in one thread. No invariant is kept half-updated
across an ``await``: each actor mutates the core synchronously, then wakes the
ready loop, which picks up everything that accumulated.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import trio

from ..core import ProposalRefused, Raft, RaftConfig, Role
from ..core.messages import Entry, EntryKind, Message
from .logstore import LogStore
from .peer import PeerLink
from .pending import Pending, RequestFailed, Waiter
from .transport import TcpTransport, Transport

log = logging.getLogger("raftnet.node")


class Node:
    def __init__(
        self,
        node_id: int,
        address: str,
        peers: dict[int, str],
        raft_config: RaftConfig,
        log_store: LogStore,
        state_machine: Any,
        *,
        tick_seconds: float,
        transport: Transport | None = None,
        handshake: Any,
        codec: Any,
        rng: random.Random | None = None,
        peer_queue_size: int = 4096,
    ):
        self.id = node_id
        self.address = address
        self.peers = dict(peers)
        self._raft_config = raft_config
        self._store = log_store
        self.state_machine = state_machine
        self._tick_seconds = tick_seconds
        self._transport = transport or TcpTransport()
        self._handshake = handshake
        self._codec = codec
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

    # -- lifetime ----------------------------------------------------------------

    async def __aenter__(self) -> Node:
        store = self._store
        hs = store.hard_state
        entries = store.entries(1, store.last_index + 1)
        self.raft = Raft(self._raft_config, self._rng, hard_state=hs, entries=entries)
        self._seen = (self.raft.role, self.raft.term, self.raft.leader_id)
        log.info(
            "node %d starting at %s: term %d, vote %s, commit %d, last index %d",
            self.id, self.address, hs.term, hs.vote, hs.commit, store.last_index,
        )
        self._nursery_manager = trio.open_nursery()
        nursery = self._nursery = await self._nursery_manager.__aenter__()
        try:
            self.port = await nursery.start(self._transport.serve, self.address, self._on_connection)
            for peer_id, address in sorted(self.peers.items()):
                link = PeerLink(
                    peer_id,
                    address,
                    connect=lambda a=address: self._handshake.connect_peer(self._transport, a),
                    encode=self._codec.encode_batch,
                    queue_size=self._peer_queue_size,
                    rng=self._rng,
                )
                self._links[peer_id] = link
                nursery.start_soon(link.run)
            nursery.start_soon(self._ticker)
            nursery.start_soon(self._ready_loop)
        except BaseException as exc:
            nursery.cancel_scope.cancel()
            await self._nursery_manager.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, *exc_info) -> bool | None:
        assert self._nursery is not None and self._nursery_manager is not None
        self._nursery.cancel_scope.cancel()
        try:
            return await self._nursery_manager.__aexit__(*exc_info)
        finally:
            self.pending.fail_all(RequestFailed("unavailable", "node shutting down"))
            self._store.close()
            log.info("node %d stopped", self.id)

    # -- the actors -----------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(self._tick_seconds)
            self.raft.tick()
            self._note_changes()
            self.wake()

    async def _ready_loop(self) -> None:
        raft = self.raft
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while raft.has_ready():
                rd = raft.ready()
                for m in rd.messages:
                    self._send(m)
                if rd.entries or rd.hard_state is not None:
                    await self._store.save(rd.hard_state, rd.entries)
                for m in rd.after_persist:
                    self._send(m)
                for e in rd.committed_entries:
                    self._apply(e)
                for rs in rd.read_states:
                    self._serve_read(rs.ctx)
                for ctx in rd.dropped_reads:
                    self.pending.read_dropped(ctx, raft.leader_id)
                raft.advance(rd)
                self._note_changes()

    def _send(self, m: Message) -> None:
        link = self._links.get(m.dst)
        if link is not None:
            link.send(m)

    def _apply(self, e: Entry) -> None:
        result = None
        if e.kind is EntryKind.NORMAL:
            result = self.state_machine.apply(e.index, e.data)
        self.pending.applied(e.index, e.term, result)

    def _serve_read(self, ctx: int) -> None:
        waiter = self.pending.read_ready(ctx)
        if waiter is not None:
            waiter.resolve(self.state_machine.read(waiter.query))

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
            self.pending.fail_all(RequestFailed("not_leader", "leadership lost", raft.leader_id))

    # -- connections -------------------------------------------------------------

    async def _on_connection(self, stream: trio.abc.Stream) -> None:
        await self._handshake.serve_connection(self, stream)

    def deliver(self, peer_id: int, m: Message) -> None:
        """A message arrived from an authenticated peer."""
        if m.src != peer_id or m.dst != self.id:
            raise ValueError(f"message claims src={m.src} dst={m.dst} on the link from node {peer_id}")
        self.raft.step(m)
        self._note_changes()
        self.wake()

    # -- what client requests call -------------------------------------------------------

    async def propose(self, command: bytes) -> Any:
        """Append ``command`` and wait until it is applied; returns the state
        machine's result. Raises RequestFailed."""
        try:
            entry = self.raft.propose(command)
        except ProposalRefused as exc:
            raise _refusal(exc) from None
        waiter = self.pending.add_write(entry.index, entry.term)
        self.wake()
        return await self._wait(waiter)

    async def read(self, query: Any) -> Any:
        """A linearizable read through ReadIndex (no log append)."""
        ctx, waiter = self.pending.add_read(query)
        try:
            self.raft.read_index(ctx)
        except ProposalRefused as exc:
            self.pending.forget(waiter)
            raise _refusal(exc) from None
        self.wake()
        return await self._wait(waiter)

    def read_stale(self, query: Any) -> Any:
        return self.state_machine.read(query)

    async def _wait(self, waiter: Waiter) -> Any:
        try:
            return await waiter.wait()
        finally:
            self.pending.forget(waiter)

    def status(self) -> dict[str, Any]:
        st = self.raft.status()
        st["address"] = self.address
        st["peers_connected"] = {p: link.connected for p, link in self._links.items()}
        return st

    def leader_address(self) -> str | None:
        leader = self.raft.leader_id
        if leader == self.id:
            return self.address
        return self.peers.get(leader) if leader is not None else None


def _refusal(exc: ProposalRefused) -> RequestFailed:
    leader = getattr(exc, "leader", None)
    return RequestFailed(exc.reason, str(exc), leader)
