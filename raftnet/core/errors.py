"""Why the core refused a request. The caller turns these into client replies."""

from __future__ import annotations


class ProposalRefused(Exception):
    """The entry was not appended; nothing about it will ever commit."""

    reason = "refused"


class NotLeader(ProposalRefused):
    """Only the leader accepts proposals and reads (§8: clients are redirected)."""

    reason = "not_leader"

    def __init__(self, leader: int | None):
        super().__init__(f"not the leader (leader is {leader})")
        self.leader = leader


class TransferInProgress(ProposalRefused):
    """A leader transfer is pending; new entries would only delay it (thesis §3.10)."""

    reason = "leader_transfer"

    def __init__(self, target: int):
        super().__init__(f"leader transfer to node {target} in progress")
        self.target = target


class TooMuchUncommitted(ProposalRefused):
    """The leader's uncommitted backlog is over its byte limit: back off and retry."""

    reason = "backpressure"

    def __init__(self, pending_bytes: int, limit: int):
        super().__init__(f"{pending_bytes} uncommitted bytes pending (limit {limit})")
        self.pending_bytes = pending_bytes
        self.limit = limit
