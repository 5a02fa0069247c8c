"""Byte streams between nodes: real TCP, or an in-memory network for simulation.

A transport does two things: accept connections at this node's address, and
open a connection to another node's address. Everything above it (framing,
handshake, Raft messages) is the same for both, so the node simulation tests
exercise the real runtime code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

import trio
import trio.testing

Handler = Callable[[trio.abc.Stream], Awaitable[None]]


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bad address {address!r}: expected host:port")
    return host.strip("[]"), int(port)


class Transport(Protocol):
    async def serve(self, address: str, handler: Handler, *, task_status=trio.TASK_STATUS_IGNORED) -> None: ...

    async def connect(self, address: str) -> trio.abc.Stream: ...


class TcpTransport:
    async def serve(self, address: str, handler: Handler, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        host, port = split_address(address)
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[1]
        task_status.started(bound)
        await trio.serve_listeners(handler, listeners)

    async def connect(self, address: str) -> trio.abc.Stream:
        host, port = split_address(address)
        return await trio.open_tcp_stream(host, port)  # trio sets TCP_NODELAY


class MemoryNetwork:
    """Addresses mapped to in-process listeners, with partitions.

    ``partition(a, b)`` cuts every link between the two groups: new
    connections are refused and open ones are broken, as a real network
    partition does to TCP once the peers notice.
    """

    def __init__(self) -> None:
        self._listeners: dict[str, trio.MemorySendChannel] = {}
        self._links: list[tuple[str, str, trio.abc.Stream, trio.abc.Stream]] = []
        self._cut: set[frozenset[str]] = set()

    def transport(self, own_address: str) -> MemoryTransport:
        return MemoryTransport(self, own_address)

    def partition(self, group_a: list[str], group_b: list[str]) -> None:
        for a in group_a:
            for b in group_b:
                self._cut.add(frozenset((a, b)))
        for src, dst, s1, s2 in list(self._links):
            if frozenset((src, dst)) in self._cut:
                self._break(s1, s2)

    def isolate(self, address: str) -> None:
        self.partition([address], [a for a in self._listeners if a != address])

    def heal(self) -> None:
        self._cut.clear()

    def _break(self, s1: trio.abc.Stream, s2: trio.abc.Stream) -> None:
        # Closing each side's sending half: the peer reads EOF, and any later
        # send on it fails, as on a reset TCP connection.
        for s in (s1, s2):
            s.send_stream.close()
        self._links = [link for link in self._links if link[2] is not s1]

    async def serve(self, address: str, handler: Handler, task_status) -> None:
        if address in self._listeners:
            raise OSError(f"address in use: {address}")
        send, receive = trio.open_memory_channel[trio.abc.Stream](16)
        self._listeners[address] = send
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(0)
                async for stream in receive:
                    nursery.start_soon(handler, stream)
        finally:
            del self._listeners[address]

    async def connect(self, src: str, dst: str) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        listener = self._listeners.get(dst)
        if listener is None or frozenset((src, dst)) in self._cut:
            raise OSError(f"connection refused: {dst}")
        ours, theirs = trio.testing.memory_stream_pair()
        self._links.append((src, dst, ours, theirs))
        try:
            listener.send_nowait(theirs)
        except (trio.WouldBlock, trio.ClosedResourceError):
            raise OSError(f"connection refused: {dst}") from None
        return ours


class MemoryTransport:
    def __init__(self, network: MemoryNetwork, own_address: str):
        self._network = network
        self._own = own_address

    async def serve(self, address: str, handler: Handler, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        await self._network.serve(address, handler, task_status)

    async def connect(self, address: str) -> trio.abc.Stream:
        return await self._network.connect(self._own, address)
