"""Snapshots in the core (§7): compaction, the leader's switch to sending a
snapshot, the follower's install, and restarting from a snapshot. One claim
per test, driven by hand; the simulator runs them under faults."""

from __future__ import annotations

import random

import pytest

from raftnet.core import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    HardState,
    HeartbeatResponse,
    InstallSnapshot,
    Raft,
    RaftConfig,
    Role,
)
from raftnet.core.log import LogError
from raftnet.core.progress import ProgressState


def make(id_=1, voters=(1, 2, 3), entries=(), hs=HardState(), snapshot=(0, 0), **cfg) -> Raft:
    return Raft(RaftConfig(id=id_, voters=voters, **cfg), random.Random(id_), hard_state=hs,
                entries=list(entries), snapshot=snapshot)


def drain(r: Raft):
    rd = r.ready()
    r.advance(rd)
    return rd


def leader_with_log(n: int) -> Raft:
    """Node 1 leads term 2 with entries 1..n (term 1) and its no-op, all applied."""
    r = make(entries=[Entry(i, 1, b"x") for i in range(1, n + 1)], hs=HardState(1, None, n), pre_vote=False)
    r.campaign()
    drain(r)
    for peer in (2, 3):
        r.step(_vote(peer, r.term))
    assert r.role is Role.LEADER
    drain(r)
    r.step(_ack(2, r.term, n + 1))
    drain(r)
    assert r.commit_index == n + 1 and r.applied_index == n + 1
    return r


def _vote(src, term):
    from raftnet.core import RequestVoteResponse
    return RequestVoteResponse(term=term, src=src, dst=1, granted=True)


def _ack(src, term, match):
    return AppendEntriesResponse(term=term, src=src, dst=1, success=True, match_index=match)


def install(term=3, index=10, snap_term=2, src=2, dst=1):
    return InstallSnapshot(term=term, src=src, dst=dst, snapshot_index=index, snapshot_term=snap_term,
                           voters=(1, 2, 3))


# -- compaction ---------------------------------------------------------------


def test_snapshot_taken_compacts_only_what_it_is_told_and_remembers_the_snapshot():
    r = leader_with_log(20)
    r.snapshot_taken(15, compact_to=10)
    assert (r.snapshot_index, r.snapshot_term) == (15, 1)
    assert r.log.first_index == 11 and r.log.term_at(10) == 1 and r.log.term_at(9) is None


def test_a_snapshot_cannot_cover_unapplied_entries():
    r = leader_with_log(5)
    r.propose(b"new")
    with pytest.raises(LogError):
        r.snapshot_taken(r.log.last_index, compact_to=0)


def test_compaction_never_drops_entries_that_are_not_durable():
    r = leader_with_log(5)
    assert r.log.stable_index == 6
    r.snapshot_taken(6, compact_to=6)
    assert r.log.compacted_index == 6  # durable: allowed
    r.propose(b"a")
    rd = r.ready()  # handed out for writing, not yet durable
    r.snapshot_taken(6, compact_to=7)
    assert r.log.compacted_index == 6
    r.advance(rd)


# -- the leader ----------------------------------------------------------------


def needing_a_snapshot() -> Raft:
    """A leader that compacted everything up to 21, and node 3, which
    answered (so it is active) with an empty log: its probe backs up to
    index 1, which is compacted."""
    r = leader_with_log(20)
    r.snapshot_taken(21, compact_to=21)
    r.step(HeartbeatResponse(term=r.term, src=3, dst=1, seq=1))
    r.step(AppendEntriesResponse(term=r.term, src=3, dst=1, success=False, rejected_index=21,
                                 conflict_term=0, conflict_index=1))
    return r


def snapshotting_to_3() -> Raft:
    r = needing_a_snapshot()
    drain(r)
    assert r.progress[3].state is ProgressState.SNAPSHOT
    return r


def test_a_follower_that_needs_compacted_entries_is_sent_the_snapshot():
    r = needing_a_snapshot()
    rd = drain(r)
    snaps = [m for m in rd.messages if isinstance(m, InstallSnapshot)]
    assert snaps == [InstallSnapshot(term=r.term, src=1, dst=3, snapshot_index=21, snapshot_term=2,
                                     voters=(1, 2, 3))]
    pr = r.progress[3]
    assert pr.state is ProgressState.SNAPSHOT
    # Nothing more goes to it while the snapshot is on its way.
    r.propose(b"more")
    rd = drain(r)
    assert not [m for m in rd.messages if isinstance(m, AppendEntries) and m.dst == 3]


def test_the_follower_leaves_snapshot_state_when_it_answers_that_it_installed_it():
    r = snapshotting_to_3()
    r.propose(b"after")
    drain(r)
    r.step(_ack(3, r.term, 21))
    assert r.progress[3].state is ProgressState.REPLICATE and r.progress[3].match == 21
    rd = drain(r)
    sent = [m for m in rd.messages if isinstance(m, AppendEntries) and m.dst == 3]
    assert sent and sent[0].prev_log_index == 21 and sent[0].entries[0].data == b"after"


def test_a_failed_transfer_falls_back_to_probing_after_the_next_heartbeat_answer():
    r = snapshotting_to_3()
    r.report_snapshot(3, ok=False)
    assert r.progress[3].state is ProgressState.PROBE
    assert not [m for m in drain(r).messages if m.dst == 3]  # waits for the follower first
    r.step(HeartbeatResponse(term=r.term, src=3, dst=1, seq=2))
    rd = drain(r)
    assert [m for m in rd.messages if isinstance(m, InstallSnapshot) and m.dst == 3]


# -- the follower -----------------------------------------------------------------


def test_a_snapshot_beyond_the_log_replaces_it_and_is_persisted_before_the_answer():
    r = make(entries=[Entry(1, 1), Entry(2, 1), Entry(3, 2)], hs=HardState(2, None, 1))
    r.step(install(term=3, index=10, snap_term=2))
    rd = r.ready()
    assert rd.snapshot is not None and rd.snapshot.snapshot_index == 10
    assert rd.committed_entries == []  # nothing to apply from the old log: the snapshot replaces it
    assert not [m for m in rd.messages if isinstance(m, AppendEntriesResponse)]
    (ack,) = [m for m in rd.after_persist if isinstance(m, AppendEntriesResponse)]
    assert ack.success and ack.match_index == 10
    r.advance(rd)
    assert (r.log.first_index, r.log.last_index, r.commit_index, r.applied_index) == (11, 10, 10, 10)
    assert r.log.term_at(10) == 2 and r.leader_id == 2 and r.term == 3


def test_a_snapshot_whose_last_entry_we_hold_keeps_the_entries_after_it():
    entries = [Entry(i, 1) for i in range(1, 13)]
    r = make(entries=entries, hs=HardState(1, None, 2))
    r.step(install(term=1, index=10, snap_term=1))
    rd = r.ready()
    assert rd.snapshot is None  # nothing to restore: the entries are here, they just commit
    assert [e.index for e in rd.committed_entries] == list(range(1, 11))
    r.advance(rd)
    assert r.log.last_index == 12 and r.commit_index == 10


def test_a_snapshot_whose_last_entry_conflicts_with_ours_replaces_the_log():
    entries = [Entry(i, 1) for i in range(1, 13)]
    r = make(entries=entries, hs=HardState(1, None, 2))
    r.step(install(term=3, index=10, snap_term=2))
    rd = drain(r)
    assert rd.snapshot is not None
    assert r.log.last_index == 10 and r.log.term_at(10) == 2


def test_a_snapshot_we_already_cover_changes_nothing():
    entries = [Entry(i, 1) for i in range(1, 13)]
    r = make(entries=entries, hs=HardState(1, None, 12))
    drain(r)
    r.step(install(term=1, index=10, snap_term=1))
    rd = drain(r)
    assert rd.snapshot is None and r.log.last_index == 12
    (ack,) = [m for m in rd.after_persist if isinstance(m, AppendEntriesResponse)]
    assert ack.success and ack.match_index == 12


def test_a_snapshot_from_a_stale_leader_is_refused_with_our_term():
    r = make(hs=HardState(5, None, 0))
    r.step(install(term=4, index=10, snap_term=2))
    rd = drain(r)
    assert rd.snapshot is None and r.log.last_index == 0
    (nack,) = [m for m in rd.after_persist if isinstance(m, AppendEntriesResponse)]
    assert not nack.success and nack.term == 5


def test_appends_after_an_install_continue_from_the_snapshot():
    r = make()
    r.step(install(term=3, index=10, snap_term=2))
    drain(r)
    r.step(AppendEntries(term=3, src=2, dst=1, prev_log_index=10, prev_log_term=2,
                         entries=(Entry(11, 3, b"a"),), leader_commit=11))
    rd = drain(r)
    assert [e.index for e in rd.entries] == [11] and [e.index for e in rd.committed_entries] == [11]


# -- restarting ---------------------------------------------------------------------


def test_restart_from_a_snapshot_and_the_log_after_it():
    r = make(entries=[Entry(11, 2), Entry(12, 3)], hs=HardState(3, 2, 11), snapshot=(10, 2))
    assert (r.log.first_index, r.log.last_index, r.applied_index, r.commit_index) == (11, 12, 10, 11)
    assert [e.index for e in drain(r).committed_entries] == [11]


def test_restart_keeps_a_trailing_log_before_the_snapshot():
    entries = [Entry(i, 1) for i in range(5, 16)]
    r = make(entries=entries, hs=HardState(1, None, 15), snapshot=(10, 1))
    assert r.log.compacted_index == 5 and r.log.last_index == 15 and r.applied_index == 10
    assert [e.index for e in drain(r).committed_entries] == list(range(11, 16))


def test_restart_refuses_a_log_that_contradicts_its_snapshot():
    with pytest.raises(LogError):
        make(entries=[Entry(i, 1) for i in range(5, 16)], hs=HardState(2, None, 10), snapshot=(10, 2))
