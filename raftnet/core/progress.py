"""What a leader knows about each follower's log, and how fast to feed it.

Modelled on etcd's tracker. A follower is in one of three states:

* PROBE: the leader does not know where the follower's log matches its own.
  It sends one AppendEntries at a time and waits for the answer (or the next
  heartbeat) before sending another, moving ``next`` back with each rejection.
* REPLICATE: the follower's log matches up to ``match``; the leader streams
  entries optimistically (``next`` advances as it sends, not as acks arrive),
  bounded by an inflight window counted in messages AND bytes, so a healthy
  follower gets a pipeline and a slow one gets backpressure.
* SNAPSHOT: the entries the follower needs are compacted away; the node is
  streaming it a snapshot. Nothing else is sent until the follower answers
  that it installed one, or the node reports the transfer failed.

Invariant: 0 <= match < next.
"""

from __future__ import annotations

from collections import deque
from enum import Enum


class ProgressState(Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """The appends sent to one follower and not acknowledged yet, oldest first.

    Each is remembered by the last index it carried and its payload size; an
    acknowledgement of index i releases every message that ended at or before i.
    """

    __slots__ = ("max_msgs", "max_bytes", "_sent", "bytes")

    def __init__(self, max_msgs: int, max_bytes: int):
        self.max_msgs = max_msgs
        self.max_bytes = max_bytes
        self._sent: deque[tuple[int, int]] = deque()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._sent)

    def full(self) -> bool:
        return len(self._sent) >= self.max_msgs or self.bytes >= self.max_bytes

    def add(self, last_index: int, size: int) -> None:
        self._sent.append((last_index, size))
        self.bytes += size

    def free_to(self, index: int) -> None:
        sent = self._sent
        while sent and sent[0][0] <= index:
            self.bytes -= sent.popleft()[1]

    def free_first(self) -> None:
        if self._sent:
            self.bytes -= self._sent.popleft()[1]

    def reset(self) -> None:
        self._sent.clear()
        self.bytes = 0


class Progress:
    __slots__ = ("match", "next", "state", "probe_sent", "inflights", "recent_active")

    def __init__(self, next_index: int, max_inflight_msgs: int, max_inflight_bytes: int):
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        # In PROBE: an append is out and unanswered; send nothing more until
        # its reply or the next heartbeat response.
        self.probe_sent = False
        self.inflights = Inflights(max_inflight_msgs, max_inflight_bytes)
        # Heard from since the last CheckQuorum round.
        self.recent_active = False

    def __repr__(self) -> str:
        return (
            f"Progress(match={self.match}, next={self.next}, state={self.state.value}, "
            f"inflight={len(self.inflights)})"
        )

    # -- state transitions ----------------------------------------------------

    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()

    def become_snapshot(self) -> None:
        self.state = ProgressState.SNAPSHOT
        self.probe_sent = False
        self.inflights.reset()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()

    # -- events -----------------------------------------------------------------

    def is_paused(self) -> bool:
        """Whether the leader must hold further appends to this follower."""
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True  # SNAPSHOT: wait for the snapshot to land

    def sent(self, last_index: int, size: int) -> None:
        """An append covering entries up to ``last_index`` went out."""
        if self.state is ProgressState.REPLICATE:
            if last_index >= self.next:
                self.next = last_index + 1
                self.inflights.add(last_index, size)
        else:
            self.probe_sent = True

    def acknowledged(self, index: int) -> bool:
        """The follower holds our log up to ``index``. Returns False for a
        stale acknowledgement that tells nothing new."""
        if index <= self.match:
            return False
        self.match = index
        self.next = max(self.next, index + 1)
        self.probe_sent = False
        if self.state is ProgressState.REPLICATE:
            self.inflights.free_to(index)
        return True
