"""The inbound side of a node: every accepted connection, peer or client.

A connection starts with the hello handshake (``wire.accept_hello``). A peer
connection then only carries frames of Raft messages towards us; a client
connection carries requests, each with its own request id, served
concurrently and answered in whatever order they finish.

Bad input never takes the node down: a malformed or oversized frame, an
unknown message type, a wrong cluster name or secret closes *that*
connection with one log line saying why.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ..core.log import LogError
from ..excgroups import leaf
from ..core.messages import AppendEntries, Message
from . import codec, service, wire
from .snapshots import SnapshotChunk

log = logging.getLogger("raftnet.node")

# Requests one client connection may have in flight; beyond it we stop
# reading from that socket, so TCP pushes back on the client.
MAX_REQUESTS_PER_CONNECTION = 1024


def _peer_name(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None)
    if sock is None:
        return "memory"
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return "unknown"
    return f"{host}:{port}"


async def serve_connection(node: Any, stream: trio.abc.Stream) -> None:
    """Serve one accepted connection until it ends. Whatever goes wrong on it
    ends *it*: nothing raised here reaches the node's nursery.

    The client side runs requests in a nursery of its own, so its failures
    arrive as exception groups; ``except*`` takes them apart."""
    who = _peer_name(stream)
    try:
        async with stream:
            await _serve(node, stream, who)
    except* wire.ProtocolError as group:
        log.warning("connection from %s closed: %s", who, leaf(group))
    except* (trio.BrokenResourceError, trio.ClosedResourceError):
        pass  # the other side went away (closed or reset); nothing to report
    except* trio.TooSlowError:
        log.warning("connection from %s closed: no hello within %.1fs", who, node.handshake_timeout)
    except* Exception as group:
        # A bug of ours, triggered by this connection: log it loudly, but
        # losing one connection is better than losing the node.
        log.error("connection from %s closed by an internal error: %s", who, leaf(group), exc_info=group)


async def _serve(node: Any, stream: trio.abc.Stream, who: str) -> None:
    reader = wire.FrameReader(stream, node.max_frame_bytes)
    with trio.fail_after(node.handshake_timeout):
        hello = await wire.accept_hello(
            stream,
            reader,
            cluster=node.cluster_name,
            secret=node.secret,
            node_id=node.id,
            peer_ids=set(node.peers),
            limits=node.client_limits(),
        )
    if hello.role == "peer":
        await _serve_peer(node, hello.id, reader, who)
    else:
        await _serve_client(node, stream, reader, who)


async def _serve_peer(node: Any, peer_id: int, reader: wire.FrameReader, who: str) -> None:
    while True:
        frame = await reader.read()
        if frame is None:
            return
        messages = codec.decode_batch(frame)
        for m in messages:
            check_message(m, peer_id, node.id)
        try:
            node.deliver_batch(messages)
        except LogError as exc:
            # The core refused a message before changing anything (an append
            # that contradicts our committed log): that peer is broken.
            raise wire.ProtocolError(f"peer {peer_id} sent a message the log refuses: {exc}") from None


def check_message(m: Message, peer_id: int, node_id: int) -> None:
    """Refuse a message the core must never see: the codec checked its types,
    this checks what the core takes for granted (indexes and terms are
    non-negative, appended entries are consecutive from prev_log_index + 1
    and no newer than the message's term). A peer that sends one is broken
    or hostile; we close its connection rather than feed the core."""
    if m.src != peer_id or m.dst != node_id:
        raise wire.ProtocolError(f"peer {peer_id} sent a message from {m.src} to {m.dst}; this is node {node_id}")
    if m.term < 0:
        raise wire.ProtocolError(f"peer {peer_id} sent a negative term")
    if isinstance(m, AppendEntries):
        if m.prev_log_index < 0 or m.prev_log_term < 0 or m.leader_commit < 0:
            raise wire.ProtocolError(f"peer {peer_id} sent an append with a negative index or term")
        expected = m.prev_log_index + 1
        for e in m.entries:
            if e.index != expected or not 0 < e.term <= m.term:
                raise wire.ProtocolError(
                    f"peer {peer_id} sent entry {e.index} (term {e.term}) where index {expected} "
                    f"with a term in 1..{m.term} belongs"
                )
            expected += 1
    elif isinstance(m, SnapshotChunk) and m.offset + len(m.data) > m.size:
        raise wire.ProtocolError(f"peer {peer_id} sent snapshot bytes {m.offset}..{m.offset + len(m.data)} "
                                 f"of a {m.size}-byte snapshot")


async def _serve_client(node: Any, stream: trio.abc.Stream, reader: wire.FrameReader, who: str) -> None:
    conn = _ClientConnection(node, stream, who)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.send_replies, nursery.cancel_scope)
        try:
            while (request := await reader.read()) is not None:
                await conn.room()
                slow = conn.start(request)
                if slow is not None:
                    nursery.start_soon(slow)
        finally:
            # The client is gone or misbehaved: stop its pending requests too.
            nursery.cancel_scope.cancel()
            conn.close()


class _ClientConnection:
    """The requests of one client connection. Each is started at once
    (``service.start_request``); most finish from the ready loop, which
    calls back with the reply. Replies queue here, and one task sends
    whatever has queued in a single write: under load, many replies per
    system call, and no task per request."""

    def __init__(self, node: Any, stream: trio.abc.Stream, who: str):
        self.node, self.stream, self.who = node, stream, who
        self._replies: list[bytes] = []
        self._queued = trio.Event()
        self._in_flight = 0  # requests started and not yet answered on the wire
        self._has_room = trio.Event()
        self._has_room.set()
        self._closed = False

    async def room(self) -> None:
        """Wait while MAX_REQUESTS_PER_CONNECTION are in flight: we stop
        reading, and TCP pushes back on the client."""
        if self._in_flight >= MAX_REQUESTS_PER_CONNECTION:
            self._has_room = trio.Event()
            await self._has_room.wait()

    def start(self, request: dict):
        self._in_flight += 1
        try:
            return service.start_request(self.node, request, self._reply)
        except Exception:  # noqa: BLE001 - one request's bug must not end the others
            log.exception("request from %s failed", self.who)
            self._reply({"t": "rep", "rid": request.get("rid"), "error": "internal",
                         "message": "internal error (see the node's log)"})
            return None

    def _reply(self, response: dict) -> None:
        if self._closed:
            return
        try:
            data = wire.encode_frame(response)
        except Exception:  # noqa: BLE001 - an unencodable reply is our bug, not the connection's end
            log.exception("cannot encode a reply to %s", self.who)
            data = wire.encode_frame({"t": "rep", "rid": response.get("rid"), "error": "internal",
                                      "message": "internal error (see the node's log)"})
        self._replies.append(data)
        self._queued.set()

    async def send_replies(self, connection: trio.CancelScope) -> None:
        """Send queued replies until the stream breaks; then end the whole
        connection (``connection``), reader included: a client that cannot
        hear its answers must not keep a reader parked on ``room()``."""
        try:
            while True:
                await self._queued.wait()
                self._queued = trio.Event()
                while self._replies:
                    batch, self._replies = self._replies, []
                    await self.stream.send_all(b"".join(batch) if len(batch) > 1 else batch[0])
                    self._in_flight -= len(batch)
                    self._has_room.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            connection.cancel()  # the client left; its writes may still have been applied

    def close(self) -> None:
        """Answers that come after this are dropped (the requests stay in
        the log: a write may still be applied)."""
        self._closed = True
        self._replies.clear()
