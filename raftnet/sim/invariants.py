"""The safety properties, checked after every step of a simulation.

Each check is incremental (it looks at what just changed), so checking after
every single event stays cheap. A failed check raises ``Violation`` naming
the property; the driver adds the seed, the node states and the trace tail.

* election safety (§5.2): at most one leader per term, over the whole run;
* log matching (§5.3): entries with the same index and term hold the same
  command and follow the same previous term; by induction the logs are then
  identical up to there;
* leader completeness (§5.4): every committed entry is in the log of every
  leader of a later term;
* state machine safety (§5.4.3): no two nodes apply different entries at one
  index;
* monotonic term and commit, per node and on its disk;
* applied <= committed;
* acknowledged entries stay (§5.3, what the leader's commit rule relies on):
  within one term, a follower never drops an entry it acknowledged to that
  term's leader, not even across a crash.
"""

from __future__ import annotations

from ..core import Raft, Role
from ..core.messages import AppendEntriesResponse, Entry


class Violation(Exception):
    def __init__(self, invariant: str, detail: str):
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


class Checker:
    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}  # term -> the node that led it
        self.entry_ids: dict[tuple[int, int], tuple[int | None, bytes]] = {}  # (index, term) -> (prev term, data)
        # index -> (entry term, term in which it was first seen committed)
        self.committed: dict[int, tuple[int, int]] = {}
        self.applied: dict[int, tuple[int, bytes]] = {}  # index -> (term, data) applied anywhere
        self.terms: dict[int, int] = {}  # node -> last term seen while alive
        self.commits: dict[int, int] = {}  # node -> last commit seen while alive
        self.disk_terms: dict[int, int] = {}
        self.disk_commits: dict[int, int] = {}
        self.acked: dict[int, tuple[int, int]] = {}  # node -> (term, index) acknowledged to that term's leader
        self.max_commit = 0
        self.fresh: list[int] = []  # indexes first seen committed during this event

    # -- per event ---------------------------------------------------------------

    def restarted(self, node: int) -> None:
        """A restart legitimately forgets in-memory term and commit progress
        that never reached the disk."""
        self.terms.pop(node, None)
        self.commits.pop(node, None)

    def entries_written(self, raft: Raft, entries: list[Entry]) -> None:
        """Log matching, checked on every entry a node puts in its log."""
        for e in entries:
            prev_term = raft.log.term_at(e.index - 1) if e.index > 1 else 0
            key = (e.index, e.term)
            seen = self.entry_ids.get(key)
            if seen is None:
                self.entry_ids[key] = (prev_term, e.data)
            elif seen != (prev_term, e.data):
                raise Violation(
                    "log matching",
                    f"node {raft.id} holds entry {e.index} of term {e.term} with previous term {prev_term} "
                    f"and data {e.data[:20]!r}; elsewhere it follows term {seen[0]} with data {seen[1][:20]!r}",
                )

    def saved(self, node: int, disk) -> None:
        hs = disk.hard_state
        if hs.term < self.disk_terms.get(node, 0):
            raise Violation("monotonic term", f"node {node} persisted term {hs.term} after {self.disk_terms[node]}")
        if hs.commit < self.disk_commits.get(node, 0):
            raise Violation("monotonic commit", f"node {node} persisted commit {hs.commit} after {self.disk_commits[node]}")
        self.disk_terms[node] = hs.term
        self.disk_commits[node] = hs.commit

    def acknowledged(self, m: AppendEntriesResponse) -> None:
        if m.success:
            term, index = self.acked.get(m.src, (0, 0))
            if m.term > term or (m.term == term and m.match_index > index):
                self.acked[m.src] = (m.term, m.match_index)

    def applied_entry(self, node: int, e: Entry) -> None:
        seen = self.applied.get(e.index)
        if seen is None:
            self.applied[e.index] = (e.term, e.data)
        elif seen != (e.term, e.data):
            raise Violation(
                "state machine safety",
                f"node {node} applied entry {e.index} of term {e.term}; another node applied term {seen[0]} there",
            )

    def node_state(self, raft: Raft) -> None:
        """After each event, for each live node."""
        nid = raft.id
        if raft.term < self.terms.get(nid, 0):
            raise Violation("monotonic term", f"node {nid} went from term {self.terms[nid]} to {raft.term}")
        self.terms[nid] = raft.term
        if raft.commit_index < self.commits.get(nid, 0):
            raise Violation("monotonic commit", f"node {nid} commit went from {self.commits[nid]} to {raft.commit_index}")
        old_commit = self.commits.get(nid, 0)
        self.commits[nid] = raft.commit_index
        if raft.applied_index > raft.commit_index:
            raise Violation("applied <= committed", f"node {nid} applied {raft.applied_index} > commit {raft.commit_index}")
        if raft.commit_index > raft.log.last_index:
            raise Violation("commit <= last index", f"node {nid} commit {raft.commit_index} > last {raft.log.last_index}")

        if raft.role is Role.LEADER:
            holder = self.leaders.setdefault(raft.term, nid)
            if holder != nid:
                raise Violation("election safety", f"nodes {holder} and {nid} both lead term {raft.term}")

        if raft.commit_index > old_commit:
            self._record_commits(raft, max(old_commit, raft.log.first_index - 1) + 1, raft.commit_index)

        term, index = self.acked.get(nid, (0, 0))
        if term == raft.term and raft.log.last_index < index:
            raise Violation(
                "acknowledged entries stay",
                f"node {nid} acknowledged index {index} to the leader of term {term} but now ends at {raft.log.last_index}",
            )

    def became_leader(self, raft: Raft) -> None:
        """Leader completeness, checked once per new leader against everything
        committed so far."""
        for index, (term, commit_term) in self.committed.items():
            if commit_term < raft.term and raft.log.term_at(index) != term:
                raise Violation(
                    "leader completeness",
                    f"node {raft.id} leads term {raft.term} without committed entry {index} (term {term})",
                )

    def _record_commits(self, raft: Raft, lo: int, hi: int) -> None:
        for index in range(lo, hi + 1):
            term = raft.log.term_at(index)
            seen, _ = self.committed.setdefault(index, (term, raft.term))
            if seen != term:
                raise Violation(
                    "state machine safety",
                    f"node {raft.id} committed entry {index} of term {term}; term {seen} was committed there before",
                )
            self.fresh.append(index)
        self.max_commit = max(self.max_commit, hi)

    def check_fresh_commits(self, leaders: list[Raft]) -> None:
        """Entries just committed must be in every leader of a later term."""
        for index in self.fresh:
            term, commit_term = self.committed[index]
            for raft in leaders:
                if raft.term > commit_term and raft.log.term_at(index) != term:
                    raise Violation(
                        "leader completeness",
                        f"entry {index} (term {term}) is committed but leader {raft.id} of term {raft.term} lacks it",
                    )
        self.fresh.clear()
