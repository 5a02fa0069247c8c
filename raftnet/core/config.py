"""Tunables of one Raft node, in ticks and bytes (the core has no clock)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RaftConfig:
    id: int
    voters: tuple[int, ...]
    # A follower campaigns after a random timeout in
    # [election_tick, election_tick_max) ticks without hearing from a leader
    # (election_tick_max defaults to 2 * election_tick).
    election_tick: int = 10
    election_tick_max: int = 0
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    # Flow control of one follower's replication stream (etcd's tracker).
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256
    max_inflight_bytes: int = 32 << 20
    # Uncommitted bytes a leader accepts before refusing proposals.
    max_uncommitted_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        if self.id not in self.voters:
            raise ValueError(f"node {self.id} is not among the voters {self.voters}")
        if len(set(self.voters)) != len(self.voters):
            raise ValueError(f"duplicate voter ids in {self.voters}")
        if self.heartbeat_tick < 1 or self.election_tick <= self.heartbeat_tick:
            raise ValueError("need 1 <= heartbeat_tick < election_tick")
        if self.election_tick_max and self.election_tick_max <= self.election_tick:
            raise ValueError("need election_tick < election_tick_max")
        if self.max_inflight_msgs < 1 or self.max_size_per_msg < 1:
            raise ValueError("flow-control limits must be positive")
