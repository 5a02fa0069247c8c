"""The outbound half of one peer link: a persistent stream carrying our Raft
messages to one other node.

Each node dials each peer and only *writes* on that connection; the peer's
messages to us arrive on the connection it dialled. One queue per peer means a
dead or slow peer never blocks the others. The queue is bounded: when it is
full the message is dropped, which Raft tolerates by design (the leader's
flow control and heartbeats resend what matters), and which keeps memory flat
however long a peer is away.
"""

from __future__ import annotations

import logging
import random

import trio

from ..core.messages import Message

log = logging.getLogger("raftnet.node")

# Reconnect backoff: capped exponential with jitter.
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
# Messages written to the stream in one send_all at most.
MAX_BATCH = 256


class PeerLink:
    def __init__(self, peer_id: int, address: str, connect, encode, queue_size: int, rng: random.Random):
        """``connect()`` opens and handshakes a stream to the peer;
        ``encode(messages)`` turns a batch into the bytes of its frames."""
        self.peer_id = peer_id
        self.address = address
        self._connect = connect
        self._encode = encode
        self._rng = rng
        self._send_channel, self._receive_channel = trio.open_memory_channel[Message](queue_size)
        self.dropped = 0
        self.connected = False

    def send(self, m: Message) -> None:
        try:
            self._send_channel.send_nowait(m)
        except trio.WouldBlock:
            self.dropped += 1

    async def run(self) -> None:
        backoff = BACKOFF_MIN
        failures = 0
        while True:
            try:
                stream = await self._connect()
            except Exception as exc:  # noqa: BLE001 - any failure to connect means "retry later"
                failures += 1
                if failures == 1:
                    log.info("peer %d at %s unreachable: %s", self.peer_id, self.address, _reason(exc))
            else:
                if failures:
                    log.info("peer %d at %s connected", self.peer_id, self.address)
                failures = 0
                backoff = BACKOFF_MIN
                self.connected = True
                try:
                    await self._pump(stream)
                except Exception as exc:  # noqa: BLE001 - a broken stream is an ordinary event
                    log.info("peer %d link lost: %s", self.peer_id, _reason(exc))
                finally:
                    self.connected = False
                    with trio.CancelScope(shield=True):
                        await trio.aclose_forcefully(stream)
            await trio.sleep(backoff * (0.5 + self._rng.random()))
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _pump(self, stream: trio.abc.Stream) -> None:
        async for first in self._receive_channel:
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._receive_channel.receive_nowait())
                except trio.WouldBlock:
                    break
            await stream.send_all(self._encode(batch))


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
