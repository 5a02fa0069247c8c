"""ReadIndex bookkeeping (Raft thesis §6.4): linearizable reads without log writes.

A read that arrives at the leader is answered in four steps:

1. The leader records its commit index as the read's index. A new leader does
   not know the full commit index until an entry of its own term has
   committed (§5.4.2), so until its no-op commits, reads wait (``Raft`` holds
   them back before calling ``add``).
2. It confirms it is still the leader: a heartbeat round that started after
   the read arrived must be answered by a quorum. A deposed leader cannot get
   that, so it can never serve a stale value as current.
3. It waits until its state machine has applied up to the read's index.
4. It serves the read from local state.

Heartbeat rounds are numbered (``seq``); a read registered when round ``s``
began is confirmed once a quorum has answered round ``s`` or a later one.
This module does steps 1–3's bookkeeping; ``Raft`` sends the heartbeats.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from .ready import ReadState


class ReadOnly:
    __slots__ = ("_waiting", "_confirmed", "_acked_seq")

    def __init__(self) -> None:
        # Reads waiting for their heartbeat round to reach a quorum: (seq, index, ctx).
        self._waiting: deque[tuple[int, int, Any]] = deque()
        # Reads confirmed by a quorum, waiting for apply to catch up: (index, ctx).
        self._confirmed: deque[tuple[int, Any]] = deque()
        # The highest heartbeat round each peer has answered.
        self._acked_seq: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._waiting) + len(self._confirmed)

    def add(self, seq: int, index: int, ctx: Any) -> None:
        self._waiting.append((seq, index, ctx))

    def confirm_now(self, index: int, ctx: Any) -> None:
        """A single-voter cluster is its own quorum: no round trip needed."""
        self._confirmed.append((index, ctx))

    def acknowledge(self, peer: int, seq: int, has_quorum: Callable[[Iterable[int]], bool], self_id: int) -> None:
        """``peer`` answered heartbeat round ``seq``; confirm every read whose
        round a quorum (the leader itself included) has now answered."""
        if seq <= self._acked_seq.get(peer, 0):
            return
        self._acked_seq[peer] = seq
        while self._waiting:
            read_seq, index, ctx = self._waiting[0]
            answered = [p for p, s in self._acked_seq.items() if s >= read_seq]
            answered.append(self_id)
            if not has_quorum(answered):
                break
            self._waiting.popleft()
            self._confirmed.append((index, ctx))

    def release(self, applied: int) -> list[ReadState]:
        """The confirmed reads whose index is applied, in arrival order."""
        out: list[ReadState] = []
        while self._confirmed and self._confirmed[0][0] <= applied:
            index, ctx = self._confirmed.popleft()
            out.append(ReadState(index, ctx))
        return out

    def drop_all(self) -> list[Any]:
        """Leadership is lost: forget every pending read and return their contexts
        so the caller can tell the waiting clients."""
        ctxs = [ctx for _, _, ctx in self._waiting] + [ctx for _, ctx in self._confirmed]
        self._waiting.clear()
        self._confirmed.clear()
        self._acked_seq.clear()
        return ctxs
