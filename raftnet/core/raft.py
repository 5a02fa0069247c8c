"""One Raft node's protocol state, driven by calls and answering with Ready batches.

Everything that affects the protocol state lives in this file; the rules a
reader checks against the paper each sit in one small method whose docstring
cites the section. Roles are a dispatch: ``self._step`` is one of
``_step_follower``, ``_step_candidate`` or ``_step_leader``; rules shared by all
roles (the term rule, voting) run before it in ``step``.

References: "In Search of an Understandable Consensus Algorithm" (Ongaro and
Ousterhout, 2014; §N below) and Ongaro's thesis "Consensus: Bridging Theory and
Practice" (2014; "thesis §N").

The caller's side of the contract (what to persist, when to send) is in
``ready.py``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from .config import RaftConfig
from .errors import NotLeader, TooMuchUncommitted, TransferInProgress
from .log import LogError, RaftLog
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
from .progress import Progress, ProgressState
from .quorum import JointConfig, VoteResult
from .readonly import ReadOnly
from .ready import HardState, Ready, ReadState, Role

# Messages a leader may send before its own write of the same Ready is durable
# (ready.py, rule 1). Everything else waits for the write.
_LEADER_EAGER = (AppendEntries, Heartbeat, InstallSnapshot, TimeoutNow)


class Raft:
    def __init__(
        self,
        config: RaftConfig,
        rng: random.Random,
        hard_state: HardState = HardState(),
        entries: Sequence[Entry] = (),
        snapshot: tuple[int, int] = (0, 0),
    ):
        """Restart from what the node stored: its hard state, its newest
        snapshot's (index, term) (the state machine already holds it), and
        the log entries it kept, which start at or before the snapshot's
        index + 1 (a trailing stretch of the log may precede it)."""
        self.config = config
        self.id = config.id
        self._rng = rng
        snapshot_index, snapshot_term = snapshot
        if entries and entries[0].index <= snapshot_index:
            # Keep the trailing entries; the first one anchors the log (its term is known).
            self.log = RaftLog(entries[1:], entries[0].index, entries[0].term)
            if self.log.term_at(snapshot_index) != snapshot_term:
                raise LogError(f"the log does not hold the snapshot's entry {snapshot_index} of term {snapshot_term}")
        else:
            self.log = RaftLog(entries, snapshot_index, snapshot_term)
        self.snapshot_index, self.snapshot_term = snapshot_index, snapshot_term
        self.quorum = JointConfig.simple(config.voters)
        if hard_state.commit > self.log.last_index:
            raise LogError(f"hard state commit {hard_state.commit} is past the last log index {self.log.last_index}")

        # Persistent state (§5, figure 2), mirrored to disk through Ready.hard_state.
        self.term = hard_state.term
        self.vote: int | None = hard_state.vote
        # Invariant: applied_index <= commit_index <= log.last_index, and
        # commit_index never decreases (§5.3: committed entries are permanent).
        self.commit_index = max(hard_state.commit, snapshot_index)
        self.applied_index = snapshot_index
        self._persisted_hard_state = hard_state

        self.role = Role.FOLLOWER
        self.leader_id: int | None = None
        self._step = self._step_follower
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = 0
        self._reset_election_timeout()

        self._votes: dict[int, bool] = {}  # candidate: who answered, and how
        self.progress: dict[int, Progress] = {}  # leader: one per voter, self included
        self._readonly = ReadOnly()
        self._reads_before_commit: list[Any] = []  # leader: reads waiting for the no-op to commit
        self._heartbeat_seq = 0
        self._transfer_target: int | None = None
        self._uncommitted_bytes = 0
        self._broadcast_pending = False

        self._messages: list[Message] = []
        self._after_persist: list[Message] = []
        self._read_states: list[ReadState] = []
        self._dropped_reads: list[Any] = []
        self._installing: InstallSnapshot | None = None  # follower: a snapshot to persist and restore
        self._ready_outstanding = False

    def __repr__(self) -> str:
        return (
            f"Raft(id={self.id}, role={self.role.value}, term={self.term}, vote={self.vote}, "
            f"leader={self.leader_id}, commit={self.commit_index}, applied={self.applied_index}, "
            f"last={self.log.last_index})"
        )

    # ======================================================================
    # Driving the node: the whole public surface
    # ======================================================================

    def tick(self) -> None:
        """One unit of logical time. Followers and candidates count towards
        an election; leaders count towards heartbeats and CheckQuorum."""
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def step(self, m: Message) -> None:
        """Deliver a message addressed to this node."""
        if m.dst != self.id or m.src not in self.quorum.voters or m.src == self.id:
            return  # not for us, or from a stranger: never let it touch our state
        if not self._apply_term_rule(m):
            return
        if isinstance(m, RequestVote):
            self._handle_request_vote(m)
        else:
            self._step(m)

    def propose(self, data: bytes) -> Entry:
        """Append a command to the leader's log; returns the entry (its index
        and term identify it: if another entry is later applied at that index,
        this one was lost). Raises a ``ProposalRefused`` subclass otherwise."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        if self._transfer_target is not None:
            raise TransferInProgress(self._transfer_target)
        limit = self.config.max_uncommitted_bytes
        if self._uncommitted_bytes > 0 and self._uncommitted_bytes + len(data) > limit:
            raise TooMuchUncommitted(self._uncommitted_bytes, limit)
        entry = Entry(self.log.last_index + 1, self.term, data)
        self.log.append((entry,))
        self._uncommitted_bytes += len(data)
        # Replicate lazily: every proposal until the next Ready goes out in one
        # AppendEntries per follower.
        self._broadcast_pending = True
        return entry

    def campaign(self) -> None:
        """Start an election now (through PreVote when enabled)."""
        self._hup(transfer=False)

    def transfer_leader(self, to: int) -> None:
        """Hand leadership to ``to`` (thesis §3.10): bring it up to date, then
        tell it to campaign at once. Proposals are refused meanwhile; the
        transfer is abandoned if it has not happened within an election timeout."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        if to == self.id or to == self._transfer_target:
            return
        if to not in self.progress:
            raise ValueError(f"node {to} is not a voter")
        self._transfer_target = to
        self.election_elapsed = 0
        if self.progress[to].match == self.log.last_index:
            self._send(TimeoutNow(term=self.term, src=self.id, dst=to))
        else:
            self._send_append(to)

    def read_index(self, ctx: Any) -> None:
        """Ask for a linearizable read (thesis §6.4); a ``ReadState`` with this
        ``ctx`` appears in a later Ready once it is safe to serve."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader_id)
        if not self._committed_in_current_term():
            # Our commit index may lag the true one until our no-op commits.
            self._reads_before_commit.append(ctx)
            return
        self._start_read(ctx)

    def snapshot_taken(self, index: int, compact_to: int) -> None:
        """The caller durably saved a snapshot of the state machine as of
        ``index`` (an applied index). Followers that need entries before it
        will be sent this snapshot. Entries up to ``compact_to`` (at most
        ``index``: the log keeps a trailing stretch so briefly lagging
        followers catch up from the log) leave the in-memory log."""
        if not 0 < index <= self.applied_index:
            raise LogError(f"snapshot at {index}: only applied entries (up to {self.applied_index}) can be covered")
        if index > self.snapshot_index:
            self.snapshot_index, self.snapshot_term = index, self.log.term_at(index)
        self.log.compact_to(min(compact_to, self.snapshot_index, self.log.stable_index))

    def report_snapshot(self, peer: int, ok: bool) -> None:
        """The node finished streaming a snapshot to ``peer`` (``ok``) or gave
        up. Either way the leader waits for the follower's next answer
        (a heartbeat response) before it probes again."""
        pr = self.progress.get(peer) if self.role is Role.LEADER else None
        if pr is None or pr.state is not ProgressState.SNAPSHOT:
            return
        pr.become_probe()
        pr.probe_sent = True

    def has_ready(self) -> bool:
        if self._ready_outstanding:
            return False
        return bool(
            self._broadcast_pending
            or self._installing is not None
            or self._messages
            or self._after_persist
            or self.log.stable_index < self.log.last_index
            or self.commit_index > self.applied_index
            or self._read_states
            or self._dropped_reads
            or self._hard_state() != self._persisted_hard_state
        )

    def ready(self) -> Ready:
        """The work to do now. Carry it out as ``ready.py`` says, then ``advance``."""
        if self._ready_outstanding:
            raise RuntimeError("ready() called again before advance()")
        if self._broadcast_pending:
            self._broadcast_append()
        rd = Ready(
            snapshot=self._installing,
            entries=self.log.unstable_entries(),
            messages=self._messages,
            after_persist=self._after_persist,
            committed_entries=self.log.entries(self.applied_index + 1, self.commit_index + 1),
            read_states=self._read_states,
            dropped_reads=self._dropped_reads,
        )
        hs = self._hard_state()
        if hs != self._persisted_hard_state:
            rd.hard_state = hs
            self._persisted_hard_state = hs
        self._messages, self._after_persist = [], []
        self._read_states, self._dropped_reads = [], []
        self._installing = None
        self._ready_outstanding = True
        return rd

    def advance(self, rd: Ready) -> None:
        """The caller persisted, sent and applied everything in ``rd``."""
        self._ready_outstanding = False
        if rd.snapshot is not None:
            self.applied_index = max(self.applied_index, rd.snapshot.snapshot_index)
        if rd.entries:
            last = rd.entries[-1]
            self.log.stable_to(last.index, last.term)
        if rd.committed_entries:
            self.applied_index = rd.committed_entries[-1].index
        if self.role is Role.LEADER:
            # Only now does our own copy count towards the commit quorum.
            self.progress[self.id].acknowledged(self.log.stable_index)
            self._maybe_commit()
        if len(self._readonly):
            self._read_states.extend(self._readonly.release(self.applied_index))

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = {
            "id": self.id,
            "role": self.role.value,
            "term": self.term,
            "vote": self.vote,
            "leader": self.leader_id,
            "commit": self.commit_index,
            "applied": self.applied_index,
            "first_index": self.log.first_index,
            "last_index": self.log.last_index,
            "snapshot_index": self.snapshot_index,
        }
        if self.role is Role.LEADER:
            st["progress"] = {
                peer: {"match": pr.match, "next": pr.next, "state": pr.state.value}
                for peer, pr in self.progress.items()
                if peer != self.id
            }
            st["transfer_target"] = self._transfer_target
        return st

    # ======================================================================
    # Rules every role shares
    # ======================================================================

    def _apply_term_rule(self, m: Message) -> bool:
        """§5.1: a higher term makes us adopt it, clear our vote and follow; a
        lower one marks a stale message, which is dropped. Returns whether the
        message should be processed further.

        Exceptions, all for PreVote and CheckQuorum (thesis §9.6, §4.2.3):
        * A vote request arriving while we heard from a live leader within the
          minimum election timeout is ignored outright, term and all, so a
          node returning from a partition cannot depose a healthy leader. A
          leader transfer overrides this (the leader itself asked for it).
        * A pre-vote request, and a granted pre-vote, carry a term nobody has
          entered yet: they change nothing.
        """
        if m.term > self.term:
            if isinstance(m, RequestVote) and not m.leader_transfer and self._in_leader_lease():
                return False
            if isinstance(m, RequestVote) and m.pre_vote:
                return True
            if isinstance(m, RequestVoteResponse) and m.pre_vote and m.granted:
                return True
            leader = m.src if isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot)) else None
            elapsed = self.election_elapsed if self.role is not Role.LEADER else 0
            self._become_follower(m.term, leader)
            if isinstance(m, RequestVote):
                # Figure 2: only a leader's append or a vote we grant restarts
                # the election timer, not a higher term alone; else a stale
                # candidate with a fast clock keeps everyone from timing out.
                self.election_elapsed = elapsed
            return True
        if m.term < self.term:
            if isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot)):
                # A leader of an older term: answer so it learns our term and
                # steps down. Without this, a node whose term rose in isolation
                # (say, a lost election) could never be caught up again.
                self._send(AppendEntriesResponse(term=self.term, src=self.id, dst=m.src, success=False))
            elif isinstance(m, RequestVote) and m.pre_vote:
                # Tell a lagging pre-candidate our term so it catches up.
                self._send(RequestVoteResponse(term=self.term, src=self.id, dst=m.src, granted=False, pre_vote=True))
            return False
        return True

    def _in_leader_lease(self) -> bool:
        return (
            self.config.check_quorum
            and self.leader_id is not None
            and self.election_elapsed < self.config.election_tick
        )

    def _handle_request_vote(self, m: RequestVote) -> None:
        """§5.2: at most one vote per term, first come first served; §5.4.1:
        only for a candidate whose log is at least as up to date as ours.
        Granting a real vote resets our election timer, so we do not start a
        rival election while the candidate collects its votes."""
        can_vote = (
            self.vote == m.src
            or (self.vote is None and self.leader_id is None)
            # A pre-vote promises nothing: it asks "would you vote for me in
            # the next term?", where our vote is still free.
            or (m.pre_vote and m.term > self.term)
        )
        granted = can_vote and self._log_up_to_date(m.last_log_index, m.last_log_term)
        if granted and not m.pre_vote:
            self.vote = m.src
            self.election_elapsed = 0
        # A granted pre-vote is answered in the term it asked about; otherwise
        # in ours, so a lagging asker learns it.
        term = m.term if granted and m.pre_vote else self.term
        self._send(RequestVoteResponse(term=term, src=self.id, dst=m.src, granted=granted, pre_vote=m.pre_vote))

    def _log_up_to_date(self, last_log_index: int, last_log_term: int) -> bool:
        """§5.4.1 election restriction: a voter denies a candidate whose log is
        less up to date than its own, so a leader always holds every
        committed entry (Leader Completeness)."""
        return self.log.is_up_to_date(last_log_index, last_log_term)

    # ======================================================================
    # Time
    # ======================================================================

    def _reset_election_timeout(self) -> None:
        """§5.2: randomized in [T, 2T) (or the configured range) so that split votes are rare."""
        lo = self.config.election_tick
        hi = self.config.election_tick_max or 2 * lo
        self.randomized_election_timeout = lo + self._rng.randrange(hi - lo)

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self._hup(transfer=False)

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_tick:
            self.election_elapsed = 0
            if self.config.check_quorum and not self._check_quorum():
                return
            self._transfer_target = None  # not done within an election timeout: give up
        if self.heartbeat_elapsed >= self.config.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _check_quorum(self) -> bool:
        """CheckQuorum (thesis §6.2): a leader that has not heard from a
        quorum within an election timeout steps down, so clients stop
        waiting on a leader that can no longer commit anything."""
        active = [peer for peer, pr in self.progress.items() if pr.recent_active or peer == self.id]
        for pr in self.progress.values():
            pr.recent_active = False
        if self.quorum.has_quorum(active):
            return True
        self._become_follower(self.term, None)
        return False

    # ======================================================================
    # Role changes
    # ======================================================================

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader_id = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_election_timeout()
        self._votes = {}
        self.progress = {}
        self._transfer_target = None
        self._uncommitted_bytes = 0
        self._broadcast_pending = False
        self._dropped_reads.extend(self._readonly.drop_all())
        self._dropped_reads.extend(self._reads_before_commit)
        self._reads_before_commit = []

    def _become_follower(self, term: int, leader: int | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader_id = leader
        self._step = self._step_follower

    def _become_pre_candidate(self) -> None:
        """Thesis §9.6: campaign without touching term or vote, so a node that
        cannot win (cut off, or behind) never disturbs the cluster."""
        self._reset(self.term)
        self.role = Role.PRE_CANDIDATE
        self._step = self._step_candidate

    def _become_candidate(self) -> None:
        """§5.2: increment the term and vote for ourselves."""
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE
        self._step = self._step_candidate

    def _become_leader(self) -> None:
        """§5.3, §8: start every follower in probe at our last index + 1, and
        append a no-op of our term; committing it commits everything before it
        (§5.4.2) and tells us the true commit index, which reads need."""
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader_id = self.id
        self._step = self._step_leader
        next_index = self.log.last_index + 1
        for peer in self.quorum.voters:
            self.progress[peer] = Progress(next_index, self.config.max_inflight_msgs, self.config.max_inflight_bytes)
        me = self.progress[self.id]
        me.match = self.log.stable_index
        me.become_replicate()
        self.log.append((Entry(next_index, self.term, b"", EntryKind.NOOP),))
        self._broadcast_append()

    # ======================================================================
    # Elections
    # ======================================================================

    def _hup(self, transfer: bool) -> None:
        if self.role is Role.LEADER:
            return
        if self.config.pre_vote and not transfer:
            self._run_election(pre_vote=True, transfer=False)
        else:
            self._run_election(pre_vote=False, transfer=transfer)

    def _run_election(self, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self._become_pre_candidate()
            term = self.term + 1
        else:
            self._become_candidate()
            term = self.term
        if self._record_vote(self.id, True):
            return  # a single-voter cluster wins on its own vote
        for peer in sorted(self.quorum.voters):
            if peer != self.id:
                self._send(
                    RequestVote(
                        term=term,
                        src=self.id,
                        dst=peer,
                        last_log_index=self.log.last_index,
                        last_log_term=self.log.last_term,
                        pre_vote=pre_vote,
                        leader_transfer=transfer,
                    )
                )

    def _record_vote(self, voter: int, granted: bool) -> bool:
        """Count one answer; act on a decided election. Returns True once it is decided."""
        self._votes.setdefault(voter, granted)
        result = self.quorum.vote_result(self._votes)
        if result is VoteResult.WON:
            if self.role is Role.PRE_CANDIDATE:
                self._run_election(pre_vote=False, transfer=False)
            else:
                self._become_leader()
            return True
        if result is VoteResult.LOST:
            self._become_follower(self.term, None)
            return True
        return False

    # ======================================================================
    # Follower and candidate
    # ======================================================================

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, AppendEntries):
            self._heard_from_leader(m.src)
            self._handle_append_entries(m)
        elif isinstance(m, Heartbeat):
            self._heard_from_leader(m.src)
            self._handle_heartbeat(m)
        elif isinstance(m, InstallSnapshot):
            self._heard_from_leader(m.src)
            self._handle_install_snapshot(m)
        elif isinstance(m, TimeoutNow):
            # Thesis §3.10: the leader wants us to take over; skip PreVote,
            # whose "there is a live leader" objection would block us.
            self._hup(transfer=True)
        # Replies meant for a leader or candidate of this term are stale here.

    def _step_candidate(self, m: Message) -> None:
        if isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot)):
            # §5.2: a leader of our term exists; it won, we follow.
            self._become_follower(m.term, m.src)
            self._step_follower(m)
        elif isinstance(m, RequestVoteResponse):
            if m.pre_vote == (self.role is Role.PRE_CANDIDATE):
                self._record_vote(m.src, m.granted)

    def _heard_from_leader(self, leader: int) -> None:
        self.leader_id = leader
        self.election_elapsed = 0

    def _handle_append_entries(self, m: AppendEntries) -> None:
        """§5.3: accept entries only where our log matches the leader's at
        ``prev_log_index``; by induction (Log Matching) everything before it
        matches too."""
        if m.prev_log_index < self.commit_index:
            # Everything up to our commit index matches any current leader's
            # log already (Leader Completeness); this append is stale.
            self._reply_append(m.src, success=True, match_index=self.commit_index)
            return
        if not self._prev_log_matches(m):
            conflict_term, conflict_index = self.log.conflict_hint(m.prev_log_index)
            self._send_after_persist(
                AppendEntriesResponse(
                    term=self.term,
                    src=self.id,
                    dst=m.src,
                    success=False,
                    rejected_index=m.prev_log_index,
                    conflict_term=conflict_term,
                    conflict_index=conflict_index,
                )
            )
            return
        self._merge_entries(m.prev_log_index, m.entries)
        last_new = m.prev_log_index + len(m.entries)
        # §5.3: commit up to what the leader committed, but not past the last
        # entry this message vouched for: beyond it our log may still differ.
        self._commit_to(min(m.leader_commit, last_new))
        self._reply_append(m.src, success=True, match_index=last_new)

    def _prev_log_matches(self, m: AppendEntries) -> bool:
        """§5.3 consistency check: we hold an entry at ``prev_log_index`` with
        ``prev_log_term``."""
        return self.log.matches(m.prev_log_index, m.prev_log_term)

    def _merge_entries(self, prev_log_index: int, entries: tuple[Entry, ...]) -> None:
        """§5.3: "If an existing entry conflicts with a new one (same index but
        different terms), delete the existing entry and all that follow it."
        Only from the first *conflict*: an append that is stale, duplicated or
        reordered carries entries we already hold, and truncating those would
        drop entries we acknowledged (and the leader may count as committed)."""
        conflict = self.log.first_conflict(entries)
        if conflict == 0:
            return
        if conflict <= self.commit_index:
            raise LogError(f"entry {conflict} conflicts with committed index {self.commit_index}")
        if conflict <= self.log.last_index:
            self.log.truncate_after(conflict - 1)
        self.log.append(entries[conflict - (prev_log_index + 1) :])

    def _handle_install_snapshot(self, m: InstallSnapshot) -> None:
        """§7 (figure 13): a snapshot we already cover by commitment changes
        nothing. If our log holds the snapshot's last entry, the entries after
        it are kept and only the commit index moves (they are the leader's:
        Log Matching). Otherwise the snapshot replaces the whole log, and the
        state machine is restored from it (``Ready.snapshot``)."""
        index, term = m.snapshot_index, m.snapshot_term
        if index <= self.commit_index:
            self._reply_append(m.src, success=True, match_index=self.commit_index)
            return
        if self._snapshot_matches_log(index, term):
            self._commit_to(index)
        else:
            self.log.restore(index, term)
            self.commit_index = index
            self.snapshot_index, self.snapshot_term = index, term
            self._installing = m
        self._reply_append(m.src, success=True, match_index=index)

    def _snapshot_matches_log(self, index: int, term: int) -> bool:
        """§7: keep the log after the snapshot only if it holds the
        snapshot's last entry (index *and* term)."""
        return self.log.matches(index, term)

    def _handle_heartbeat(self, m: Heartbeat) -> None:
        # The leader sends min(its commit, our match), so this never commits
        # an entry we have not been shown to hold.
        self._commit_to(min(m.commit, self.log.last_index))
        self._send_after_persist(HeartbeatResponse(term=self.term, src=self.id, dst=m.src, seq=m.seq))

    def _reply_append(self, leader: int, success: bool, match_index: int) -> None:
        self._send_after_persist(
            AppendEntriesResponse(term=self.term, src=self.id, dst=leader, success=success, match_index=match_index)
        )

    def _commit_to(self, index: int) -> None:
        if index > self.commit_index:  # never decreases
            self.commit_index = index

    # ======================================================================
    # Leader
    # ======================================================================

    def _step_leader(self, m: Message) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        if isinstance(m, AppendEntriesResponse):
            pr.recent_active = True
            if m.success:
                self._handle_append_success(m.src, pr, m)
            else:
                self._handle_append_reject(m.src, pr, m)
        elif isinstance(m, HeartbeatResponse):
            pr.recent_active = True
            # The follower is alive: let a stalled probe or a full window move
            # again (the append it waits on may have been lost).
            pr.probe_sent = False
            if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first()
            if pr.match < self.log.last_index:
                self._send_append(m.src)
            self._readonly.acknowledge(m.src, m.seq, self.quorum.has_quorum, self.id)
            if len(self._readonly):
                self._read_states.extend(self._readonly.release(self.applied_index))

    def _handle_append_success(self, peer: int, pr: Progress, m: AppendEntriesResponse) -> None:
        if not pr.acknowledged(m.match_index):
            return  # stale or duplicate
        if pr.state is ProgressState.PROBE or (
            pr.state is ProgressState.SNAPSHOT and pr.match >= self.log.compacted_index
        ):
            pr.become_replicate()
        self._maybe_commit()
        if peer == self._transfer_target and pr.match == self.log.last_index:
            self._send(TimeoutNow(term=self.term, src=self.id, dst=peer))
        self._send_appends_while_open(peer)

    def _handle_append_reject(self, peer: int, pr: Progress, m: AppendEntriesResponse) -> None:
        if pr.state is ProgressState.SNAPSHOT:
            return  # an answer to an append sent before the snapshot: it tells nothing now
        if m.rejected_index <= pr.match:
            return  # stale: it rejected something at or before what it has since accepted
        if pr.state is ProgressState.PROBE and m.rejected_index != pr.next - 1:
            return  # the answer to an earlier probe; the current one is still out
        next_index = self._next_after_reject(pr, m)
        pr.become_probe()
        pr.next = max(pr.match + 1, min(next_index, m.rejected_index))
        self._send_append(peer)

    def _next_after_reject(self, pr: Progress, m: AppendEntriesResponse) -> int:
        """Fast backtracking (§5.3, last paragraphs; the 6.824 variant): skip a
        whole conflicting term per round trip instead of one entry.
        * Follower's log too short: resume right after its last entry.
        * We hold entries of the follower's conflicting term: resume after our
          last one of that term (our logs may agree up to there).
        * We hold none of that term: every entry of it on the follower is
          wrong; resume at the first of them."""
        if m.conflict_term == 0:
            return m.conflict_index
        ours = self.log.last_index_of_term(m.conflict_term)
        if ours is not None and ours >= 1:
            return ours + 1
        return m.conflict_index

    def _maybe_commit(self) -> None:
        """§5.3, §5.4.2: commit the largest index a quorum holds, but only if
        that entry is from our own term (figure 8: counting replicas of an
        older-term entry is not enough; it commits indirectly, with ours)."""
        index = self.quorum.committed_index({peer: pr.match for peer, pr in self.progress.items()})
        if index <= self.commit_index or not self._can_commit(index):
            return
        for e in self.log.entries(self.commit_index + 1, index + 1):
            if e.term == self.term:
                self._uncommitted_bytes = max(0, self._uncommitted_bytes - len(e.data))
        self.commit_index = index
        if self._reads_before_commit and self._committed_in_current_term():
            waiting, self._reads_before_commit = self._reads_before_commit, []
            for ctx in waiting:
                self._start_read(ctx)

    def _can_commit(self, index: int) -> bool:
        """§5.4.2: only entries of the current term commit by counting replicas."""
        return self.log.term_at(index) == self.term

    def _committed_in_current_term(self) -> bool:
        return self.log.term_at(self.commit_index) == self.term

    def _start_read(self, ctx: Any) -> None:
        if len(self.quorum.voters) == 1:
            self._readonly.confirm_now(self.commit_index, ctx)
            self._read_states.extend(self._readonly.release(self.applied_index))
            return
        # The next heartbeat round confirms the read; send it now rather than
        # waiting for the heartbeat tick.
        self._readonly.add(self._heartbeat_seq + 1, self.commit_index, ctx)
        self._broadcast_heartbeat()

    def _broadcast_heartbeat(self) -> None:
        self._heartbeat_seq += 1
        for peer, pr in self.progress.items():
            if peer != self.id:
                commit = min(pr.match, self.commit_index)
                self._send(Heartbeat(term=self.term, src=self.id, dst=peer, commit=commit, seq=self._heartbeat_seq))

    def _broadcast_append(self) -> None:
        self._broadcast_pending = False
        for peer in self.progress:
            if peer != self.id:
                self._send_appends_while_open(peer)

    def _send_appends_while_open(self, peer: int) -> None:
        """Fill the follower's window: one message in probe, a pipeline in replicate."""
        while self.progress[peer].next <= self.log.last_index and self._send_append(peer):
            pass

    def _send_append(self, peer: int) -> bool:
        """Send the next batch of entries to ``peer`` (possibly none: a probe).
        Returns False when flow control holds it back."""
        pr = self.progress[peer]
        if pr.is_paused():
            return False
        prev_log_index = pr.next - 1
        prev_log_term = self.log.term_at(prev_log_index)
        if prev_log_term is None:
            self._send_snapshot(peer, pr)
            return False
        entries: list[Entry] = []
        if pr.next <= self.log.last_index:
            entries = self.log.entries_limited(pr.next, self.config.max_size_per_msg)
        self._send(
            AppendEntries(
                term=self.term,
                src=self.id,
                dst=peer,
                prev_log_index=prev_log_index,
                prev_log_term=prev_log_term,
                entries=tuple(entries),
                leader_commit=self.commit_index,
            )
        )
        if entries:
            pr.sent(entries[-1].index, sum(len(e.data) for e in entries))
        elif pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        return True

    def _send_snapshot(self, peer: int, pr: Progress) -> None:
        """§7: the entries ``peer`` needs are compacted away; send it our
        newest snapshot. (Only an answer from the follower gets here, so it
        is alive: the leader never streams a snapshot into the void.)"""
        pr.become_snapshot()
        self._send(
            InstallSnapshot(
                term=self.term,
                src=self.id,
                dst=peer,
                snapshot_index=self.snapshot_index,
                snapshot_term=self.snapshot_term,
                voters=tuple(sorted(self.quorum.voters)),
            )
        )

    # ======================================================================
    # Output
    # ======================================================================

    def _send(self, m: Message) -> None:
        if self.role is Role.LEADER and isinstance(m, _LEADER_EAGER):
            self._messages.append(m)
        else:
            self._after_persist.append(m)

    def _send_after_persist(self, m: Message) -> None:
        self._after_persist.append(m)

    def _hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.commit_index)
