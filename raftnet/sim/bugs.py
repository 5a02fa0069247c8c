"""Classic Raft mistakes, each as a subclass overriding exactly one rule of
the core. They exist to prove the simulator's checks can fail; the core has
no switch for any of them.
"""

from __future__ import annotations

from ..core import Raft
from ..core.messages import AppendEntries, AppendEntriesResponse, Entry


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


BUGS: dict[str, type[Raft]] = {
    "no-prev-log-check": NoPrevLogCheck,
    "commit-prior-term": CommitPriorTerm,
    "vote-without-up-to-date": VoteWithoutUpToDate,
    "truncate-on-match": TruncateOnMatch,
    "one-step-backtrack": OneStepBacktrack,
}
