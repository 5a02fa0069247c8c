"""The core's rules, one claim per test, driven by hand (no simulator).

Each test builds Raft objects, delivers exactly the messages it wants, and
checks the rule it names. The randomized and scenario checks live in the
simulator tests.
"""

from __future__ import annotations

import random

import pytest

from raftnet.core import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    NotLeader,
    Raft,
    RaftConfig,
    RequestVote,
    RequestVoteResponse,
    Role,
    TimeoutNow,
    TooMuchUncommitted,
    TransferInProgress,
)


def make(id_: int, voters=(1, 2, 3), entries=(), hs=HardState(), **cfg) -> Raft:
    return Raft(RaftConfig(id=id_, voters=voters, **cfg), random.Random(id_), hard_state=hs, entries=entries)


class Net:
    """Delivers Ready output between nodes; ``cut`` nodes receive nothing."""

    def __init__(self, nodes: dict[int, Raft]):
        self.nodes = nodes
        self.cut: set[int] = set()
        self.sent: list = []
        self.applied: dict[int, list[Entry]] = {i: [] for i in nodes}
        self.reads: dict[int, list] = {i: [] for i in nodes}

    def settle(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            busy = False
            for i, r in self.nodes.items():
                if i in self.cut or not r.has_ready():
                    continue
                busy = True
                rd = r.ready()
                self.applied[i].extend(rd.committed_entries)
                self.reads[i].extend((rs.ctx, rs.index) for rs in rd.read_states)
                out = rd.messages + rd.after_persist
                r.advance(rd)
                for m in out:
                    self.sent.append(m)
                    if m.dst not in self.cut and m.dst in self.nodes:
                        self.nodes[m.dst].step(m)
            if not busy:
                return

    def elect(self, i: int) -> Raft:
        self.nodes[i].campaign()
        self.settle()
        assert self.nodes[i].role is Role.LEADER
        return self.nodes[i]

    def tick_all(self, n: int) -> None:
        for _ in range(n):
            for i, r in self.nodes.items():
                if i not in self.cut:
                    r.tick()
            self.settle()


def cluster(n=3, **cfg) -> Net:
    ids = tuple(range(1, n + 1))
    return Net({i: make(i, ids, **cfg) for i in ids})


def drain(r: Raft):
    rd = r.ready()
    r.advance(rd)
    return rd


# -- terms ------------------------------------------------------------------------


def test_higher_term_makes_node_follower_and_clears_vote():
    """Reference: §5.1 — a server that sees a higher term adopts it and reverts to follower."""
    net = cluster()
    leader = net.elect(1)
    assert leader.vote == 1
    leader.step(AppendEntriesResponse(term=leader.term + 3, src=2, dst=1, success=False))
    assert leader.role is Role.FOLLOWER and leader.term == 4 and leader.vote is None


def test_stale_replies_are_ignored():
    """Reference: §5.1 — a message from an older term is rejected or ignored."""
    net = cluster()
    leader = net.elect(1)
    before = dict((p, (pr.match, pr.next)) for p, pr in leader.progress.items())
    leader.step(AppendEntriesResponse(term=leader.term - 1, src=2, dst=1, success=True, match_index=99))
    assert {p: (pr.match, pr.next) for p, pr in leader.progress.items()} == before


# -- voting -------------------------------------------------------------------------


def vote_request(term, src, last_index=0, last_term=0, **kw):
    return RequestVote(term=term, src=src, dst=1, last_log_index=last_index, last_log_term=last_term, **kw)


def grants(r: Raft) -> list[bool]:
    rd = drain(r)
    assert not [m for m in rd.messages if isinstance(m, RequestVoteResponse)], "votes wait for persistence"
    return [m.granted for m in rd.after_persist if isinstance(m, RequestVoteResponse)]


def test_one_vote_per_term():
    """Reference: §5.2 — each server votes for at most one candidate in a given term."""
    r = make(1, pre_vote=False)
    r.step(vote_request(5, 2))
    r.step(vote_request(5, 3))
    r.step(vote_request(5, 2))  # a retry by the same candidate is granted again
    assert grants(r) == [True, False, True]
    assert r.vote == 2


def test_vote_only_for_up_to_date_log():
    """Reference: §5.4.1 — deny a candidate whose log is less up to date."""
    r = make(1, entries=[Entry(1, 1), Entry(2, 3)], hs=HardState(term=3))
    r.step(vote_request(4, 2, last_index=5, last_term=2))  # longer but older last term
    r.step(vote_request(5, 3, last_index=1, last_term=3))  # same last term, shorter
    r.step(vote_request(6, 2, last_index=2, last_term=3))  # same: up to date
    assert grants(r) == [False, False, True]


def test_granting_a_vote_resets_election_timer():
    """Reference: §5.2 — a server that grants a vote does not time out meanwhile."""
    r = make(1)
    for _ in range(8):
        r.tick()
    r.step(vote_request(1, 2))
    assert r.election_elapsed == 0


def test_vote_grant_is_persisted_before_sent():
    """The durability order: the hard state carrying the vote is in the same
    Ready as the grant, and the grant is only in after_persist."""
    r = make(1)
    r.step(vote_request(2, 3))
    rd = r.ready()
    assert rd.hard_state == HardState(term=2, vote=3, commit=0)
    assert [type(m) for m in rd.after_persist] == [RequestVoteResponse]
    assert rd.messages == []


# -- PreVote and CheckQuorum ------------------------------------------------------------


def test_prevote_does_not_change_terms():
    """Reference: thesis §9.6 — a pre-candidate keeps its term until it could win."""
    net = cluster()
    net.cut = {2, 3}
    r = net.nodes[1]
    r.campaign()
    net.settle()
    assert r.role is Role.PRE_CANDIDATE and r.term == 0
    assert all(n.term == 0 for n in net.nodes.values())


def test_rejoining_node_cannot_depose_a_healthy_leader():
    """Reference: thesis §9.6 — a node back from a partition must not disrupt."""
    net = cluster()
    leader = net.elect(1)
    term = leader.term
    net.cut = {3}
    for _ in range(60):  # node 3 times out again and again while cut off
        net.nodes[3].tick()
        net.settle()
    net.cut = set()
    net.tick_all(3)
    assert leader.role is Role.LEADER and leader.term == term
    assert net.nodes[3].leader_id == 1


def test_peer_refuses_prevote_while_it_hears_from_leader():
    """Reference: thesis §9.6 — refuse if a live leader was heard within the election timeout."""
    net = cluster()
    net.elect(1)
    follower = net.nodes[2]
    follower.step(RequestVote(term=follower.term + 1, src=3, dst=2, last_log_index=100, last_log_term=100, pre_vote=True))
    rd = drain(follower)
    assert not [m for m in rd.after_persist if isinstance(m, RequestVoteResponse) and m.granted]


def test_check_quorum_leader_steps_down_when_isolated():
    """Reference: thesis §6.2 — a leader without a quorum of contact steps down."""
    net = cluster()
    leader = net.elect(1)
    net.cut = {2, 3}
    for _ in range(2 * leader.config.election_tick + 1):
        leader.tick()
        net.settle()
    assert leader.role is Role.FOLLOWER


# -- AppendEntries ---------------------------------------------------------------------


def append(term, prev_index, prev_term, entries, commit=0, src=2, dst=1):
    return AppendEntries(term=term, src=src, dst=dst, prev_log_index=prev_index, prev_log_term=prev_term,
                         entries=tuple(entries), leader_commit=commit)


def responses(r: Raft) -> list[AppendEntriesResponse]:
    rd = drain(r)
    assert not [m for m in rd.messages if isinstance(m, AppendEntriesResponse)], "acks wait for persistence"
    return [m for m in rd.after_persist if isinstance(m, AppendEntriesResponse)]


def test_consistency_check_rejects_with_a_hint():
    """Reference: §5.3 — reject when the log has no entry at prev_log_index with prev_log_term."""
    r = make(1, entries=[Entry(1, 1), Entry(2, 2), Entry(3, 2)], hs=HardState(term=3))
    r.step(append(3, 3, 3, [Entry(4, 3)]))
    r.step(append(3, 7, 3, [Entry(8, 3)]))
    a, b = responses(r)
    assert not a.success and (a.rejected_index, a.conflict_term, a.conflict_index) == (3, 2, 2)
    assert not b.success and (b.conflict_term, b.conflict_index) == (0, 4)
    assert r.log.last_index == 3


def test_truncate_only_at_first_conflict():
    """Reference: §5.3 — delete an existing entry and all that follow only if it conflicts."""
    r = make(1, entries=[Entry(1, 1), Entry(2, 1), Entry(3, 1)], hs=HardState(term=2))
    r.step(append(2, 1, 1, [Entry(2, 1), Entry(3, 2), Entry(4, 2)]))
    assert [(e.index, e.term) for e in r.log.entries(1, 10)] == [(1, 1), (2, 1), (3, 2), (4, 2)]


def test_stale_append_never_shortens_the_log():
    """Reference: §5.3 — a reordered, shorter append with matching entries keeps later ones."""
    r = make(1, hs=HardState(term=1))
    r.step(append(1, 0, 0, [Entry(1, 1), Entry(2, 1), Entry(3, 1)]))
    r.step(append(1, 0, 0, [Entry(1, 1)]))  # delayed duplicate of an earlier append
    assert r.log.last_index == 3
    acks = responses(r)
    assert [m.match_index for m in acks] == [3, 1]


def test_follower_commit_is_min_of_leader_commit_and_last_new_entry():
    """Reference: §5.3 — commitIndex = min(leaderCommit, index of last new entry)."""
    r = make(1, hs=HardState(term=1))
    r.step(append(1, 0, 0, [Entry(1, 1), Entry(2, 1)], commit=5))
    assert r.commit_index == 2
    r.step(append(1, 0, 0, [Entry(1, 1)], commit=5))
    assert r.commit_index == 2  # never decreases


def test_fast_backtracking_skips_a_term_per_round_trip():
    """Reference: §5.3 — with conflict hints the leader skips whole terms, not entries."""
    leader_log = [Entry(i, 1) for i in range(1, 4)] + [Entry(i, 3) for i in range(4, 30)]
    follower_log = [Entry(i, 1) for i in range(1, 4)] + [Entry(i, 2) for i in range(4, 60)]
    net = Net({1: make(1, (1, 2), entries=leader_log, hs=HardState(term=3)),
               2: make(2, (1, 2), entries=follower_log, hs=HardState(term=2))})
    net.elect(1)
    net.settle()
    appends = [m for m in net.sent if isinstance(m, AppendEntries) and m.dst == 2]
    assert net.nodes[2].log.entries(1, 100) == net.nodes[1].log.entries(1, 100)
    assert len(appends) <= 4, appends


def test_leader_commits_only_current_term_entries_by_counting():
    """Reference: §5.4.2 (figure 8) — an old-term entry on a majority is not committed."""
    old = [Entry(1, 1), Entry(2, 2)]
    net = Net({1: make(1, entries=old, hs=HardState(term=3)),
               2: make(2, entries=old, hs=HardState(term=3)),
               3: make(3, entries=old[:1], hs=HardState(term=3))})
    leader = net.nodes[1]
    leader.campaign()
    net.cut = {3}
    net.settle()
    assert leader.role is Role.LEADER
    # Replicas of entry 2 (term 2) on 1 and 2 do not count until the no-op of term 4 lands.
    assert leader._can_commit(2) is False
    assert leader.commit_index == 3 and leader.log.entry(3).kind is EntryKind.NOOP


def test_leader_counts_its_own_entries_only_once_persisted():
    """Durability order: a leader's own index counts for the quorum only after advance()."""
    net = cluster()
    leader = net.elect(1)
    entry = leader.propose(b"x")
    rd = leader.ready()  # not yet persisted
    for m in rd.messages:
        net.nodes[m.dst].step(m)
    for i in (2, 3):
        for m in drain(net.nodes[i]).after_persist:
            leader.step(m)
    # Both followers acknowledged: 2 of 3 is a quorum without the leader.
    assert leader.commit_index == entry.index
    net2 = cluster(n=3)
    l2 = net2.elect(1)
    e2 = l2.propose(b"y")
    rd2 = l2.ready()
    net2.nodes[2].step(rd2.messages[0] if rd2.messages[0].dst == 2 else rd2.messages[1])
    for m in drain(net2.nodes[2]).after_persist:
        l2.step(m)
    assert l2.commit_index < e2.index  # only one follower + an unpersisted leader
    l2.advance(rd2)
    assert l2.commit_index == e2.index


def test_single_node_elects_itself_and_commits_alone():
    net = Net({1: make(1, (1,))})
    r = net.nodes[1]
    net.tick_all(2 * r.config.election_tick)
    assert r.role is Role.LEADER
    e = r.propose(b"solo")
    net.settle()
    assert r.commit_index == e.index and net.applied[1][-1] == e


# -- proposals ---------------------------------------------------------------------------


def test_proposal_on_follower_names_the_leader():
    net = cluster()
    net.elect(2)
    with pytest.raises(NotLeader) as err:
        net.nodes[1].propose(b"x")
    assert err.value.leader == 2


def test_uncommitted_bytes_are_bounded():
    net = cluster(max_uncommitted_bytes=100)
    leader = net.elect(1)
    net.cut = {2, 3}
    leader.propose(b"a" * 60)
    with pytest.raises(TooMuchUncommitted):
        leader.propose(b"b" * 60)
    net.cut = set()
    net.tick_all(2)
    leader.propose(b"c" * 60)  # committed bytes free the budget


def test_pipelining_and_batching_in_steady_state():
    """Many proposals before one Ready go out as one append per follower."""
    net = cluster()
    leader = net.elect(1)
    net.sent.clear()
    for k in range(50):
        leader.propose(b"%d" % k)
    net.settle()
    appends = [m for m in net.sent if isinstance(m, AppendEntries) and m.entries]
    assert len(appends) == 2 and all(len(m.entries) == 50 for m in appends)


# -- leader transfer -----------------------------------------------------------------------


def test_leader_transfer_catches_up_target_then_hands_over():
    """Reference: thesis §3.10."""
    net = cluster()
    leader = net.elect(1)
    net.cut = {3}
    leader.propose(b"x")
    net.settle()
    net.cut = set()
    leader.transfer_leader(3)
    with pytest.raises(TransferInProgress):
        leader.propose(b"y")
    net.settle()
    assert net.nodes[3].role is Role.LEADER
    assert any(isinstance(m, TimeoutNow) and m.dst == 3 for m in net.sent)
    assert leader.role is Role.FOLLOWER


def test_transfer_is_abandoned_after_an_election_timeout():
    net = cluster()
    leader = net.elect(1)
    net.cut = {3}
    leader.transfer_leader(3)
    for _ in range(leader.config.election_tick):
        leader.tick()
        net.settle()
    leader.propose(b"accepted again")


# -- ReadIndex -------------------------------------------------------------------------------


def test_read_index_needs_a_quorum_heartbeat_round():
    """Reference: thesis §6.4 — confirm leadership before serving a read."""
    net = cluster()
    leader = net.elect(1)
    entry = leader.propose(b"v")
    net.settle()
    net.cut = {2, 3}
    leader.read_index("r1")
    net.settle()
    assert net.reads[1] == []  # no quorum has answered a round started after the read
    net.cut = {3}
    net.tick_all(1)  # the next heartbeat round reaches node 2: with us, a quorum
    assert net.reads[1] == [("r1", entry.index)]


def test_new_leader_serves_no_read_before_its_noop_commits():
    """Reference: thesis §6.4 step 1."""
    net = cluster()
    r = net.nodes[1]
    r.campaign()
    # Deliver only the votes, not the leader's first append.
    for _ in range(6):
        for i, n in net.nodes.items():
            if n.has_ready():
                rd = n.ready()
                n.advance(rd)
                for m in rd.messages + rd.after_persist:
                    if not isinstance(m, (AppendEntries, Heartbeat)):
                        net.nodes[m.dst].step(m)
    assert r.role is Role.LEADER and r.commit_index == 0
    r.read_index("early")
    rd = r.ready()
    r.advance(rd)
    assert rd.read_states == []
    net.tick_all(2)  # a heartbeat answer resumes the lost probe; the no-op commits
    assert r.commit_index >= 1
    assert net.reads[1] == [("early", r.commit_index)]


def test_read_on_follower_is_refused_with_leader():
    net = cluster()
    net.elect(1)
    with pytest.raises(NotLeader):
        net.nodes[2].read_index("x")


def test_reads_dropped_when_leadership_is_lost():
    net = cluster()
    leader = net.elect(1)
    net.cut = {2, 3}
    leader.read_index("lost")
    leader.step(Heartbeat(term=leader.term + 1, src=2, dst=1, commit=0, seq=1))
    rd = leader.ready()
    assert rd.dropped_reads == ["lost"]


def test_messages_from_strangers_are_ignored():
    r = make(1)
    r.step(RequestVote(term=9, src=42, dst=1, last_log_index=0, last_log_term=0))
    assert r.term == 0 and not r.has_ready()


def test_a_refused_vote_request_of_a_higher_term_does_not_restart_the_election_timer():
    """Figure 2: only a current leader's append or a vote we grant resets
    the election timer. Adopting a higher term from a candidate we refuse
    must not: a node with a stale log and a fast clock, campaigning without
    PreVote, would otherwise keep every up-to-date node from ever timing
    out (simulator seed 287 on 3 nodes, whose skewed clocks did exactly
    that until the liveness bound ran out)."""
    voter = make(1, entries=[Entry(1, 1), Entry(2, 2)], hs=HardState(term=2), pre_vote=False)
    for _ in range(5):
        voter.tick()
    assert voter.election_elapsed == 5
    stale = RequestVote(term=9, src=3, dst=1, last_log_index=1, last_log_term=1)
    voter.step(stale)
    assert voter.term == 9 and voter.vote is None
    assert voter.election_elapsed == 5  # still counting towards its own campaign

    fresh = RequestVote(term=9, src=2, dst=1, last_log_index=2, last_log_term=2)
    voter.step(fresh)
    assert voter.vote == 2 and voter.election_elapsed == 0  # a granted vote does reset it
