"""The outbound half of one peer link: a persistent stream carrying our Raft
messages to one other node.

Each node dials each peer and only *writes* on that connection; the peer's
messages to us arrive on the connection it dialled. One queue per peer means a
dead or slow peer never blocks the others. The queue is bounded: when it is
full the message is dropped, which Raft tolerates by design (the leader's
flow control and heartbeats resend what matters), and which keeps memory flat
however long a peer is away.

Frames are bounded twice: at most ``MAX_BATCH`` messages, and at most
``max_frame_bytes`` (the same limit every node enforces on what it reads),
so a follower far behind is fed a stream of full frames instead of one
frame it must refuse. A message that alone exceeds the limit cannot be sent
at all; it is dropped and logged.
"""

from __future__ import annotations

import logging
import random

import trio

from ..core.messages import Message
from . import codec

log = logging.getLogger("raftnet.node")

# Reconnect backoff: capped exponential with jitter.
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
# Messages in one frame at most.
MAX_BATCH = 256


class PeerLink:
    def __init__(self, peer_id: int, address: str, connect, queue_size: int, rng: random.Random,
                 max_frame_bytes: int):
        """``connect()`` opens and handshakes a stream to the peer."""
        self.peer_id = peer_id
        self.address = address
        self._connect = connect
        self._rng = rng
        self._budget = max_frame_bytes - codec.FRAME_OVERHEAD  # for the messages of one frame
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
        async for m in self._receive_channel:
            frame: list[bytes] = []
            size = 0
            while True:
                data = codec.message_bytes(m)
                if len(data) > self._budget:
                    self.dropped += 1
                    log.error("message %s to peer %d is %d bytes, over the frame limit; dropped",
                              type(m).__name__, self.peer_id, len(data))
                else:
                    if frame and (size + len(data) > self._budget or len(frame) >= MAX_BATCH):
                        await stream.send_all(codec.batch_frame(frame))
                        frame, size = [], 0
                    frame.append(data)
                    size += len(data)
                try:
                    m = self._receive_channel.receive_nowait()
                except trio.WouldBlock:
                    break
            if frame:
                await stream.send_all(codec.batch_frame(frame))


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]
