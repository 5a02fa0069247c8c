"""A client connection on the node (server._serve_client) whose replies can
no longer be delivered ends, even while the client keeps sending: the node
must not keep a task parked on a connection nobody can hear."""

from __future__ import annotations

import trio
import trio.testing

from raftnet.node import server, wire


class OneWayStream(trio.abc.Stream):
    """Delivers an endless run of requests; every send fails, as on a
    connection whose peer stopped reading and reset its side."""

    def __init__(self) -> None:
        # A get without a key: answered at once (bad_request), no Raft involved.
        self._frame = bytes(wire.encode_frame({"t": "req", "rid": 1, "op": "get"}))
        self.received = 0
        self.sends = 0
        self.closed = False

    async def receive_some(self, max_bytes=None) -> bytes:
        await trio.lowlevel.checkpoint()
        self.received += 64
        return self._frame * 64

    async def send_all(self, data) -> None:
        await trio.lowlevel.checkpoint()
        self.sends += 1
        raise trio.BrokenResourceError("connection reset by peer")

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        await trio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self.closed = True
        await trio.lowlevel.checkpoint()


class Node:
    max_key_bytes = 1024


async def test_a_connection_whose_replies_cannot_be_sent_ends_while_the_client_keeps_sending():
    stream = OneWayStream()
    with trio.fail_after(10):  # real seconds: the loop either ends at once or never
        await server._serve_client(Node(), stream, wire.FrameReader(stream), "test client")
    assert stream.sends == 1  # the first failed send ended the connection
    assert stream.received < 10 * server.MAX_REQUESTS_PER_CONNECTION
