"""The boundary between the core and the outside world.

The core does no I/O. The caller drives it and, whenever ``Raft.has_ready()``
is true, takes a ``Ready`` batch, carries it out, and calls
``Raft.advance(ready)``. Only one Ready is outstanding at a time; proposals
and messages that arrive while the caller works on it accumulate in the core
and come out together in the next one, which is what makes group commit and
batched replication fall out naturally.

Durability order (the caller MUST follow it; the simulator and tests check it):

1. ``messages`` may be sent at once. They are the leader's AppendEntries,
   Heartbeat and TimeoutNow: a leader may ship entries to followers while it
   is still writing the same entries itself (Raft thesis §10.2.1), because its
   own index only counts towards the commit quorum once ``advance`` reports it
   persisted.
2. ``snapshot``, ``entries`` and ``hard_state`` are written durably, in that
   order (one fsync for entries and hard state). A ``snapshot`` (a follower
   installing the one its leader sent) replaces the whole log: the stored
   entries go, the snapshot's file becomes the node's newest, and the state
   machine is restored from it before any entry is applied.
   ``entries`` replace any stored entries at or after ``entries[0].index``:
   a follower that lost a conflict overwrites its uncommitted suffix.
3. Only then are ``after_persist`` sent: vote grants, append acknowledgements,
   and everything else whose promise rests on the term, vote or entries just
   written. Sending them earlier lets a crash break a promise (two votes in
   one term, or an acknowledged entry that vanished).
4. ``committed_entries`` are applied in order, after step 2.
5. ``read_states`` may be answered: each one's index is already applied.
   ``dropped_reads`` are the contexts of reads this node can no longer serve
   (it lost leadership): tell those clients to retry elsewhere.
6. ``advance(ready)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .messages import Entry, InstallSnapshot, Message


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class HardState:
    """What must survive a crash besides the log (§5, figure 2 "persistent state")."""

    term: int = 0
    vote: int | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served now: ``index`` is committed, confirmed
    by a quorum after the read arrived, and applied locally."""

    index: int
    ctx: Any


@dataclass(slots=True)
class Ready:
    hard_state: HardState | None = None
    snapshot: InstallSnapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    after_persist: list[Message] = field(default_factory=list)
    committed_entries: list[Entry] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    dropped_reads: list[Any] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.hard_state is not None
            or self.snapshot is not None
            or self.entries
            or self.messages
            or self.after_persist
            or self.committed_entries
            or self.read_states
            or self.dropped_reads
        )
