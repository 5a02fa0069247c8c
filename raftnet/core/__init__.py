"""The Raft protocol as a pure state machine: no I/O, no clock, no trio.

Everything that affects a node's protocol state lives in this package. The
caller feeds it ticks, messages and proposals, and carries out the ``Ready``
batches it hands back (see ``ready.py`` for the durability order).
"""

from .config import RaftConfig
from .errors import NotLeader, ProposalRefused, TooMuchUncommitted, TransferInProgress
from .messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from .raft import Raft
from .ready import HardState, Ready, ReadState, Role

__all__ = [
    "AppendEntries",
    "AppendEntriesResponse",
    "Entry",
    "EntryKind",
    "HardState",
    "Heartbeat",
    "HeartbeatResponse",
    "InstallSnapshot",
    "Message",
    "NotLeader",
    "ProposalRefused",
    "Raft",
    "RaftConfig",
    "ReadState",
    "Ready",
    "RequestVote",
    "RequestVoteResponse",
    "Role",
    "TimeoutNow",
    "TooMuchUncommitted",
    "TransferInProgress",
]
