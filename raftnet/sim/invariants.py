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
  term's leader, not even across a crash;
* one vote per term (§5.2), across crashes: a node never grants its vote
  in one term to two candidates;
* a committed entry is safe the moment it commits: no node that lacks it
  could win an election, even if every node crashed now and came back with
  only its disk (the condition behind Leader Completeness, §5.4.3; it
  catches figure 8 at the commit, not several elections later);
* a leader's own match index never runs ahead of its disk;
* linearizable reads (§6.4): a ReadIndex read is served at an index no lower
  than every index committed anywhere when the read arrived;
* fast backtracking (a cost check, not safety): a leader finds where a
  follower's log matches in about one rejection per term the follower's
  log holds past the match, not one per entry.

``cluster.py`` checks the promises of messages against the disk at send time.
"""

from __future__ import annotations

from ..core import Raft, Role
from ..core.messages import AppendEntriesResponse, Entry, Message
from ..core.ready import ReadState

# Rejections beyond one per term of the follower's log past the match: a
# follower that restarts with a shorter log mid-probe costs one more, and
# a slack of a few keeps the check about cost, not about exact counts.
BACKTRACK_SLACK = 3


class Violation(Exception):
    def __init__(self, invariant: str, detail: str):
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


class Checker:
    def __init__(self) -> None:
        self.votes: dict[tuple[int, int], int] = {}  # (voter, term) -> the candidate it voted for
        self.read_floors: dict[object, int] = {}  # read ctx -> highest commit anywhere when it arrived
        self.reads_served = 0
        self.rejections: dict[tuple[int, int, int], int] = {}  # (leader, term, follower) -> rejections this probe
        self.max_rejections = 0  # the most one probe took, over the run
        self._next_before: int | None = None
        # node -> its log as it stands (memory if alive, else disk): set by the cluster.
        self.logs = None
        self.check_cost = False
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

    def restarted(self, node: int, disk=None) -> None:
        """A restart legitimately forgets in-memory term and commit progress
        that never reached the disk, and a commit index that was never
        fsynced may have been lost with the crash."""
        self.terms.pop(node, None)
        self.commits.pop(node, None)
        if disk is not None:
            self.disk_commits[node] = disk.hard_state.commit

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

    def voted(self, voter: int, term: int, candidate: int) -> None:
        other = self.votes.setdefault((voter, term), candidate)
        if other != candidate:
            raise Violation("one vote per term", f"node {voter} voted for {other} and for {candidate} in term {term}")

    def own_match(self, raft: Raft, disk) -> None:
        """A leader counts its own log towards a quorum only as far as it is durable."""
        match = raft.progress[raft.id].match
        if match and (disk.last_index < match or disk.term_at(match) != raft.log.term_at(match)):
            raise Violation(
                "promise before persist",
                f"leader {raft.id} of term {raft.term} counts its own match {match}, but its disk ends at "
                f"{disk.last_index} (term {disk.term_at(disk.last_index)})",
            )

    # -- reads -------------------------------------------------------------------

    def read_started(self, ctx: object) -> None:
        self.read_floors[ctx] = self.max_commit

    def read_served(self, node: int, rs: ReadState) -> None:
        floor = self.read_floors.pop(rs.ctx, 0)
        self.reads_served += 1
        if rs.index < floor:
            raise Violation(
                "linearizable read",
                f"node {node} served read {rs.ctx!r} at index {rs.index}, but index {floor} was already "
                f"committed when it arrived",
            )

    def read_dropped(self, ctx: object) -> None:
        self.read_floors.pop(ctx, None)

    # -- backtracking cost ----------------------------------------------------------

    def delivering(self, raft: Raft, m: Message) -> None:
        self._next_before = None
        if self.check_cost and type(m) is AppendEntriesResponse and raft.role is Role.LEADER and m.term == raft.term:
            pr = raft.progress.get(m.src)
            if pr is not None:
                self._next_before = pr.next

    def delivered(self, raft: Raft, m: Message) -> None:
        before = self._next_before
        if before is None or raft.role is not Role.LEADER:
            return
        key = (raft.id, raft.term, m.src)
        if m.success:
            self.rejections.pop(key, None)
            return
        pr = raft.progress[m.src]
        if pr.next == before:
            return  # stale or duplicate: it moved nothing
        count = self.rejections.get(key, 0) + 1
        self.rejections[key] = count
        self.max_rejections = max(self.max_rejections, count)
        if count > BACKTRACK_SLACK:
            runs = _term_runs(self.logs(m.src), pr.match + 1)
            if count > runs + BACKTRACK_SLACK:
                raise Violation(
                    "backtracking cost",
                    f"leader {raft.id} of term {raft.term} took {count} rejections to probe node {m.src}, whose "
                    f"log holds only {runs} terms after index {pr.match}",
                )

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
        compacted = raft.log.compacted_index  # entries a snapshot holds: committed, applied
        for index, (term, commit_term) in self.committed.items():
            if commit_term < raft.term and index > compacted and raft.log.term_at(index) != term:
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

    def check_fresh_commits(self, leaders: list[Raft], nodes: dict | None = None) -> None:
        """Entries just committed must be in every leader of a later term,
        and no node lacking one may be able to win an election."""
        if nodes is not None:
            self._committed_is_safe(max(self.fresh), nodes)
        for index in self.fresh:
            term, commit_term = self.committed[index]
            for raft in leaders:
                if raft.term > commit_term and index > raft.log.compacted_index and raft.log.term_at(index) != term:
                    raise Violation(
                        "leader completeness",
                        f"entry {index} (term {term}) is committed but leader {raft.id} of term {raft.term} lacks it",
                    )
        self.fresh.clear()

    def _committed_is_safe(self, index: int, nodes: dict) -> None:
        """No node without committed entry ``index`` could collect a quorum of
        votes from the others' *disks* (the least any voter could come back
        with). Raft guarantees it: the quorum that holds the entry durably
        refuses every such candidate."""
        term, _ = self.committed[index]
        lacking = []
        voters = []
        for node in nodes.values():
            disk = node.disk
            disk_last = (disk.term_at(disk.last_index), disk.last_index)
            raft = node.raft
            holds = disk.term_at(index) == term or disk.covers(index)
            if raft is None:
                best = disk_last
            else:
                best = max(disk_last, (raft.log.last_term, raft.log.last_index))
                holds = holds or raft.log.term_at(index) == term or index <= raft.log.compacted_index
            voters.append((node.id, disk_last))
            if not holds:
                lacking.append((node.id, best))
        for candidate, best in lacking:
            granted = [v for v, last in voters if v == candidate or last <= best]
            if len(granted) > len(nodes) // 2:
                raise Violation(
                    "committed entry at risk",
                    f"entry {index} (term {term}) just committed, but node {candidate} lacks it and could be "
                    f"elected by {granted} (its last entry: term {best[0]}, index {best[1]})",
                )


def _term_runs(log, lo: int) -> int:
    """How many distinct terms ``log`` (a RaftLog, or a MemoryDisk for a node
    that is down) holds from index ``lo`` on."""
    if hasattr(log, "entries_between"):
        entries = log.entries_between(lo, log.last_index + 1)
    else:
        entries = log.entries(lo, log.last_index + 1)
    return len({e.term for e in entries})
