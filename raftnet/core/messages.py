"""The messages Raft nodes exchange, and the log entry.

Every message is a small frozen dataclass with explicit fields. Each carries
the sender's current ``term`` (§5.1: "if one server's current term is smaller
than the other's, it updates its current term"), its ``src`` and its ``dst``.

The core never encodes these; the node layer maps them to CBOR frames. Entry
payloads (``Entry.data``) are opaque bytes, encoded once by whoever proposed
them, and carried unchanged by AppendEntries and by the WAL.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class EntryKind(IntEnum):
    NORMAL = 0  # a command for the state machine
    NOOP = 1  # appended by a new leader so earlier-term entries commit (§5.4.2, §8)
    CONFIG = 2  # a membership change (not used yet)


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    data: bytes = b""
    kind: EntryKind = EntryKind.NORMAL

    @property
    def size(self) -> int:
        """Bytes this entry counts for in batching and flow-control limits."""
        return len(self.data)


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    term: int
    src: int
    dst: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVote(Message):
    """§5.2. With ``pre_vote`` set, ``term`` is the term the sender *would*
    campaign in; receivers answer without changing their own state (thesis §9.6).
    ``leader_transfer`` marks a campaign started by TimeoutNow: receivers drop
    their "I heard from a leader recently" objection (thesis §3.10)."""

    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    leader_transfer: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestVoteResponse(Message):
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntries(Message):
    """§5.3. ``entries`` follow ``prev_log_index``; an empty tuple is a probe."""

    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AppendEntriesResponse(Message):
    """On success, ``match_index`` is the last index known to match the
    leader's log. On rejection, ``rejected_index`` is the ``prev_log_index`` that
    failed, and the hint lets the leader skip a whole term per round trip:
    ``conflict_term`` is the follower's term at ``rejected_index`` (0 if its log
    is shorter) and ``conflict_index`` the first index the follower holds for
    that term (its last index + 1 if its log is shorter)."""

    success: bool
    match_index: int = 0
    rejected_index: int = 0
    conflict_term: int = 0
    conflict_index: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat(Message):
    """Leader liveness and commit propagation without the log check.

    ``commit`` is min(leader commit, the follower's match index), so it never
    points past what the follower is known to hold. ``seq`` increases with
    every heartbeat round; ReadIndex waits for a quorum to echo a round that
    started after the read arrived."""

    commit: int
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatResponse(Message):
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class InstallSnapshot(Message):
    """§7: the follower needs entries the leader has compacted away; it must
    take the leader's snapshot, which ends at ``snapshot_index`` (an entry of
    ``snapshot_term``) with ``voters`` the configuration in force there.

    The core says only *which* snapshot; the node streams the file itself in
    chunks (``raftnet/node/snapshots.py``) and, on the follower, steps this
    message into the core once the whole file has arrived and verified. The
    answer is an ``AppendEntriesResponse`` whose ``match_index`` is the
    snapshot's index."""

    snapshot_index: int
    snapshot_term: int
    voters: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeoutNow(Message):
    """Leader transfer (thesis §3.10): campaign at once, skipping PreVote."""


__all__ = [
    "AppendEntries",
    "AppendEntriesResponse",
    "Entry",
    "EntryKind",
    "Heartbeat",
    "HeartbeatResponse",
    "InstallSnapshot",
    "Message",
    "RequestVote",
    "RequestVoteResponse",
    "TimeoutNow",
]
