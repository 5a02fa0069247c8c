"""Quorum math: which index a quorum has replicated, and who won a vote.

Raft's safety rests on one fact: any two quorums intersect (§5.2, §5.4.3).
Callers only ask two questions, "what is the largest index a quorum holds?"
and "did this vote win?", so a joint configuration (thesis §4.3: a decision
needs a majority of the old voters AND a majority of the new) answers the same
two questions and drops in without touching them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum


class VoteResult(Enum):
    PENDING = "pending"  # not decided yet: more answers could go either way
    LOST = "lost"  # cannot win any more, whatever the missing voters say
    WON = "won"


@dataclass(frozen=True, slots=True)
class MajorityConfig:
    voters: frozenset[int]

    @classmethod
    def of(cls, voters: Iterable[int]) -> MajorityConfig:
        return cls(frozenset(voters))

    @property
    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def committed_index(self, match: Mapping[int, int]) -> int:
        """The largest index that at least a quorum of voters hold.

        Sort the voters' match indexes in descending order; the quorum-th one
        is held by a quorum (it and all larger ones). A voter missing from
        ``match`` counts as holding nothing. An empty config has no voters to
        disagree, so everything counts as committed (the neutral element for
        ``min`` in a joint config).
        """
        if not self.voters:
            return _NO_LIMIT
        acked = sorted((match.get(v, 0) for v in self.voters), reverse=True)
        return acked[self.quorum - 1]

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        """Tally ``votes`` (voter -> granted); voters not in the map have not answered."""
        if not self.voters:
            return VoteResult.WON
        granted = rejected = 0
        for v in self.voters:
            answer = votes.get(v)
            if answer is True:
                granted += 1
            elif answer is False:
                rejected += 1
        if granted >= self.quorum:
            return VoteResult.WON
        if len(self.voters) - rejected < self.quorum:
            return VoteResult.LOST
        return VoteResult.PENDING

    def has_quorum(self, members: Iterable[int]) -> bool:
        """Whether ``members`` include a quorum of voters (CheckQuorum, ReadIndex)."""
        present = set(members)
        return self.vote_result({v: v in present for v in self.voters}) is VoteResult.WON


@dataclass(frozen=True, slots=True)
class JointConfig:
    """Two majorities that must both agree (thesis §4.3). With ``outgoing``
    empty it behaves exactly like ``incoming`` alone."""

    incoming: MajorityConfig
    outgoing: MajorityConfig = MajorityConfig(frozenset())

    @classmethod
    def simple(cls, voters: Iterable[int]) -> JointConfig:
        return cls(MajorityConfig.of(voters))

    @property
    def voters(self) -> frozenset[int]:
        return self.incoming.voters | self.outgoing.voters

    @property
    def is_joint(self) -> bool:
        return bool(self.outgoing.voters)

    def committed_index(self, match: Mapping[int, int]) -> int:
        index = min(self.incoming.committed_index(match), self.outgoing.committed_index(match))
        return 0 if index == _NO_LIMIT else index

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        a = self.incoming.vote_result(votes)
        b = self.outgoing.vote_result(votes)
        if a is b:
            return a
        if VoteResult.LOST in (a, b):
            return VoteResult.LOST
        return VoteResult.PENDING

    def has_quorum(self, members: Iterable[int]) -> bool:
        present = set(members)
        return self.incoming.has_quorum(present) and self.outgoing.has_quorum(present)


# Larger than any log index; what an empty majority "commits".
_NO_LIMIT = 1 << 63
