"""Classic Raft mistakes, each as a subclass overriding exactly one rule of
the core. They exist to prove the simulator's checks can fail; the core has
no switch for any of them.
"""

from __future__ import annotations

from typing import Any

from ..core import NotLeader, Raft, Role
from ..core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    HeartbeatResponse,
    Message,
    RequestVoteResponse,
)
from ..core.ready import HardState


class NoPrevLogCheck(Raft):
    """A follower appends without the §5.3 consistency check."""

    def _prev_log_matches(self, m: AppendEntries) -> bool:
        return self.log.last_index >= m.prev_log_index


class CommitPriorTerm(Raft):
    """A leader commits an entry of an earlier term by counting replicas
    (the figure 8 mistake, §5.4.2)."""

    def _can_commit(self, index: int) -> bool:
        return True


class VoteWithoutUpToDate(Raft):
    """Votes (and pre-votes) are granted without comparing logs (§5.4.1)."""

    def _log_up_to_date(self, last_log_index: int, last_log_term: int) -> bool:
        return True


class TruncateOnMatch(Raft):
    """A follower drops everything after prev_log_index on every append, even
    when the entries it holds match (so a stale or duplicated append shortens
    a log it already acknowledged)."""

    def _merge_entries(self, prev_log_index: int, entries: tuple[Entry, ...]) -> None:
        if prev_log_index < self.log.last_index:
            self.log.truncate_after(max(prev_log_index, self.commit_index))
            entries = tuple(e for e in entries if e.index > self.log.last_index)
        self.log.append(entries)


class OneStepBacktrack(Raft):
    """A rejected append moves ``next`` back by one entry: safe, but a
    follower far behind costs one round trip per entry."""

    def _next_after_reject(self, pr, m: AppendEntriesResponse) -> int:
        return max(pr.match + 1, pr.next - 1, 1)


class CountOwnUnpersisted(Raft):
    """A leader counts its own entries towards the commit quorum as soon as
    it appends them, before its write of them is durable."""

    def _maybe_commit(self) -> None:
        self.progress[self.id].acknowledged(self.log.last_index)
        super()._maybe_commit()


class AckBeforePersist(Raft):
    """Append and heartbeat acknowledgements go out with the eager messages,
    before the entries and term they promise are written."""

    def _send_after_persist(self, m: Message) -> None:
        if isinstance(m, AppendEntriesResponse | HeartbeatResponse):
            self._messages.append(m)
        else:
            super()._send_after_persist(m)


class VoteBeforePersist(Raft):
    """A vote is granted before the term and vote are written."""

    def _send(self, m: Message) -> None:
        if isinstance(m, RequestVoteResponse) and m.granted and not m.pre_vote:
            self._messages.append(m)
        else:
            super()._send(m)


class ReadIndexWithoutCurrentTermCommit(Raft):
    """A new leader serves ReadIndex reads before an entry of its own term
    has committed, so its commit index may lag the true one (§6.4 step 1)."""

    def read_index(self, ctx: Any) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        self._start_read(ctx)


class ReadIndexWithoutQuorum(Raft):
    """A leader serves ReadIndex reads without a heartbeat round confirming
    it still leads (§6.4 step 2): a deposed leader answers from old state."""

    def _start_read(self, ctx: Any) -> None:
        self._readonly.confirm_now(self.commit_index, ctx)
        self._read_states.extend(self._readonly.release(self.applied_index))


class ApplyUncommitted(Raft):
    """A new leader takes everything in its log for committed and applies it
    ("I won, so my log is the truth"): entries of earlier terms that never
    reached a quorum are applied, and may be lost to the next leader."""

    def _become_leader(self) -> None:
        self._commit_to(self.log.last_index)
        super()._become_leader()


class ForgetVoteOnRestart(Raft):
    """Term and vote are not restored on restart (the node starts in the
    term of its last log entry, with no vote): it can vote twice in a term."""

    def __init__(self, config, rng, hard_state: HardState = HardState(), entries=(), **kwargs):
        last_term = entries[-1].term if entries else 0
        super().__init__(config, rng, HardState(last_term, None, hard_state.commit), entries, **kwargs)


class KeepLogOnSnapshot(Raft):
    """A follower given a snapshot keeps its own log whenever it holds an
    entry at the snapshot's index, whatever that entry's term (§7 keeps the
    suffix only when index and term match)."""

    def _snapshot_matches_log(self, index: int, term: int) -> bool:
        return self.log.term_at(index) is not None


BUGS: dict[str, type[Raft]] = {
    "no-prev-log-check": NoPrevLogCheck,
    "commit-prior-term": CommitPriorTerm,
    "vote-without-up-to-date": VoteWithoutUpToDate,
    "truncate-on-match": TruncateOnMatch,
    "one-step-backtrack": OneStepBacktrack,
    "count-own-unpersisted": CountOwnUnpersisted,
    "ack-before-persist": AckBeforePersist,
    "vote-before-persist": VoteBeforePersist,
    "read-index-without-current-term-commit": ReadIndexWithoutCurrentTermCommit,
    "read-index-without-quorum": ReadIndexWithoutQuorum,
    "apply-uncommitted": ApplyUncommitted,
    "forget-vote-on-restart": ForgetVoteOnRestart,
    "keep-log-on-snapshot": KeepLogOnSnapshot,
}

# Defects that are not unsafe: caught by a cost check instead.
LIVENESS_BUGS = frozenset({"one-step-backtrack"})
