"""The network between nodes, made of proxies the harness controls.

Each ordered pair of nodes (i, j) gets a ``Link``: a TCP proxy that node i
reaches node j through (node i's cluster.toml names the link's port as j's
address). A node's peer connection carries only its own messages towards
the peer, so cutting link (i, j) cuts exactly i → j: one-way partitions are
one link, a full partition both. Clients talk to nodes directly.

A link is ``open``, ``cut`` (live connections are closed, new ones are
closed as soon as they arrive) or ``flaky`` (every chunk is delayed a
little, and now and then the connection is dropped).
"""

from __future__ import annotations

import random

import trio


class Link:
    def __init__(self, src: int, dst: int, port: int, target: tuple[str, int], rng: random.Random):
        self.src, self.dst, self.port, self.target = src, dst, port, target
        self.state = "open"
        self._rng = rng
        self._scopes: set[trio.CancelScope] = set()

    def set(self, state: str) -> None:
        self.state = state
        if state == "cut":
            for scope in list(self._scopes):
                scope.cancel()

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        task_status.started()
        await trio.serve_listeners(self._carry, listeners)

    async def _carry(self, inbound: trio.SocketStream) -> None:
        try:
            if self.state == "cut":
                return
            try:
                outbound = await trio.open_tcp_stream(*self.target)
            except OSError:
                return  # the node is down: so is the connection
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, inbound, outbound, scope)
                        nursery.start_soon(self._pump, outbound, inbound, scope)
                except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
                finally:
                    self._scopes.discard(scope)
                    await trio.aclose_forcefully(outbound)
        finally:
            await trio.aclose_forcefully(inbound)

    async def _pump(self, a: trio.SocketStream, b: trio.SocketStream, scope: trio.CancelScope) -> None:
        while True:
            data = await a.receive_some(1 << 16)
            if not data or self.state == "cut":
                break
            if self.state == "flaky":
                await trio.sleep(self._rng.uniform(0, 0.03))
                if self._rng.random() < 0.01:
                    break
            await b.send_all(data)
        scope.cancel()  # one direction ended: so does the connection


class Network:
    """Every link of an n-node cluster, and partitions in terms of them."""

    def __init__(self, links: dict[tuple[int, int], Link]):
        self.links = links

    def heal(self) -> None:
        for link in self.links.values():
            link.set("open")

    def partition(self, *groups: set[int]) -> None:
        """Nodes talk only within their group (a node may be in several: a bridge)."""
        for (i, j), link in self.links.items():
            together = any(i in g and j in g for g in groups)
            link.set("open" if together else "cut")

    def cut(self, src: int, dst: int) -> None:
        self.links[(src, dst)].set("cut")

    def flaky(self, pairs: list[tuple[int, int]]) -> None:
        for pair in pairs:
            self.links[pair].set("flaky")
