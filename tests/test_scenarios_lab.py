"""The classic Raft lab scenarios, ported by scenario onto the simulator
(virtual time: one tick = 10 units, election timeout 10-20 ticks)."""

from __future__ import annotations

import pytest

from raftnet.core import Role
from raftnet.sim.cluster import TICK, Cluster
from raftnet.sim.network import Faults
from raftnet.sim.scenarios import ELECTION, commit_one, wait_for_leader


def terms(c: Cluster) -> set[int]:
    return {c.nodes[i].raft.term for i in c.alive()}


def test_initial_election():
    c = Cluster(3, seed=11)
    leader = wait_for_leader(c)
    term = c.nodes[leader].raft.term
    assert terms(c) == {term}
    # With no failures the leader and term stay put.
    c.run_for(5 * ELECTION)
    assert c.leader() == leader and terms(c) == {term}


def test_re_election():
    c = Cluster(3, seed=12)
    first = wait_for_leader(c)
    c.isolate(first)
    second = wait_for_leader_other_than(c, first)
    # The old leader rejoins: it must not disturb the new one.
    c.reconnect(first)
    c.run_for(2 * ELECTION)
    assert c.leader() == second
    # No quorum: no leader among the remaining one.
    others = [i for i in c.ids if i != second]
    c.isolate(second)
    c.isolate(others[0])
    c.run_for(3 * ELECTION)
    assert c.nodes[others[1]].raft.role is not Role.LEADER
    c.heal()
    wait_for_leader(c)


def wait_for_leader_other_than(c: Cluster, old: int) -> int:
    assert c.run_until(lambda: c.leader_among([i for i in c.ids if i != old]) is not None, 10 * ELECTION)
    return c.leader_among([i for i in c.ids if i != old])


def test_many_elections_seven_nodes():
    c = Cluster(7, seed=13)
    wait_for_leader(c)
    for round_ in range(10):
        cut = c.rng.sample(c.ids, 3)
        for i in cut:
            c.isolate(i)
        wait_for_leader(c)  # four connected nodes still elect
        c.heal()
    wait_for_leader(c)


def test_basic_agree():
    c = Cluster(3, seed=14)
    for k in range(1, 4):
        commit_one(c, b"agree-%d" % k, 3)
    assert c.applied_commands(1) == [b"agree-1", b"agree-2", b"agree-3"]


def test_fail_agree_then_rejoin():
    c = Cluster(3, seed=15)
    commit_one(c, b"101", 3)
    leader = c.leader()
    follower = next(i for i in c.ids if i != leader)
    c.isolate(follower)
    for data in (b"102", b"103", b"104"):
        commit_one(c, data, 2)
    c.reconnect(follower)
    commit_one(c, b"106", 3)
    assert c.applied_commands(follower)[-1] == b"106"


def test_fail_no_agree_five_nodes():
    c = Cluster(5, seed=16)
    commit_one(c, b"10", 5)
    leader = c.leader()
    others = [i for i in c.ids if i != leader]
    for i in others[:3]:
        c.isolate(i)
    entry = c.propose(leader, b"20")
    c.run_for(2 * ELECTION)
    assert c.committed_count(entry.index, b"20") == 0, "committed without a majority"
    c.heal()
    commit_one(c, b"30", 5)


def test_concurrent_proposals_all_commit_in_one_order():
    c = Cluster(3, seed=17)
    leader = wait_for_leader(c)
    entries = [c.propose(leader, b"conc-%d" % k) for k in range(50)]
    assert all(e is not None for e in entries)
    assert c.run_until(lambda: all(len(c.applied_commands(i)) >= 50 for i in c.ids), 10 * ELECTION)
    orders = {tuple(c.applied_commands(i)) for i in c.ids}
    assert len(orders) == 1 and set(next(iter(orders))) == {b"conc-%d" % k for k in range(50)}


def test_rejoin_of_a_partitioned_leader():
    c = Cluster(3, seed=18)
    commit_one(c, b"101", 3)
    old = c.leader()
    c.isolate(old)
    for data in (b"102", b"103", b"104"):
        c.propose(old, data)  # can never commit
    commit_one(c, b"103-new", 2)
    new = c.leader_among([i for i in c.ids if i != old])
    c.isolate(new)
    c.reconnect(old)
    commit_one(c, b"104-new", 2)
    c.heal()
    commit_one(c, b"105", 3)
    for i in c.ids:
        assert b"102" not in c.applied_commands(i)
        assert c.applied_commands(i)[-1] == b"105"


def test_rpc_counts_are_bounded():
    c = Cluster(3, seed=19)
    wait_for_leader(c)
    # An election with PreVote: pre-votes, votes, and the first appends.
    assert c.net.sent <= 40, c.net.sent
    leader = c.leader()
    c.run_for(TICK // 2)
    before = c.net.sent
    for k in range(10):
        c.propose(leader, b"rpc-%d" % k)
        c.run_until(lambda: c.committed_count(c.nodes[leader].raft.log.last_index) == 3, ELECTION)
    appends = c.net.sent - before
    # Each entry costs one append per peer plus its acknowledgement, plus
    # the heartbeat traffic of the elapsed ticks.
    assert appends <= 10 * 2 * 2 + 4 * (c.now // TICK), appends
    # Idle: only heartbeats, one per peer per heartbeat tick (and replies).
    before = c.net.sent
    c.run_for(10 * TICK)
    assert c.net.sent - before <= 2 * 2 * 11


@pytest.mark.parametrize("crash_all", [False, True])
def test_persist_restart_keeps_committed_entries(crash_all):
    """Persist 1: crash and restart nodes (all, or the leader) between agreements."""
    c = Cluster(3, seed=20 + crash_all)
    commit_one(c, b"11", 3)
    for round_ in range(3):
        victims = c.ids if crash_all else [c.leader()]
        for i in victims:
            c.crash(i, "persist test")
        for i in victims:
            c.restart(i)
        commit_one(c, b"r%d" % round_, 3)
    for i in c.ids:
        assert c.applied_commands(i) == [b"11", b"r0", b"r1", b"r2"]


def test_persist_2_partial_failures_keep_agreement():
    c = Cluster(5, seed=22)
    for iters in range(5):
        commit_one(c, b"p2-%d-a" % iters, 5)
        leader = c.leader()
        down = [(leader % 5) + 1, ((leader + 1) % 5) + 1]
        for i in down:
            c.crash(i)
        commit_one(c, b"p2-%d-b" % iters, 3)
        c.crash(leader)
        for i in down:
            c.restart(i)
        commit_one(c, b"p2-%d-c" % iters, 4)
        c.restart(leader)
    commit_one(c, b"p2-end", 5)
    orders = {tuple(c.applied_commands(i)) for i in c.ids}
    assert len(orders) == 1


def test_persist_3_leader_crashes_with_an_uncommitted_entry():
    c = Cluster(3, seed=23)
    commit_one(c, b"101", 3)
    leader = c.leader()
    follower = next(i for i in c.ids if i != leader)
    c.isolate(follower)
    c.propose(leader, b"102")
    c.run_for(ELECTION)
    c.crash(leader)
    c.crash(follower)
    c.heal()
    c.restart(follower)
    c.restart(leader)
    commit_one(c, b"103", 3)
    for i in c.ids:
        assert c.applied_commands(i)[-1] == b"103"


@pytest.mark.parametrize("seed", [24, 25])
def test_unreliable_agree(seed):
    c = Cluster(5, seed=seed, faults=Faults.unreliable())
    for k in range(20):
        for j in range(4):
            c.propose(c.rng.choice(c.ids), b"u-%d-%d" % (k, j))
        commit_one(c, b"u-%d" % k, 1)
    c.net.faults = Faults.reliable()
    commit_one(c, b"u-end", 5)
    assert len({tuple(c.applied_commands(i)) for i in c.ids}) == 1
