"""Snapshots under the simulator: compaction bounds the log, lagging and
conflicting followers are brought up by a snapshot, installs survive crashes
on either side and an unreliable network. Every invariant of the simulator
is checked after every event throughout."""

from __future__ import annotations

import pytest

from raftnet.sim.bugs import BUGS
from raftnet.sim.cluster import TICK, Cluster, Disk
from raftnet.sim.invariants import Violation
from raftnet.sim.network import Faults
from raftnet.sim.scenarios import ELECTION, commit_one, wait_for_leader


def commit_many(c: Cluster, n: int, tag: str, expected: int) -> None:
    for k in range(n):
        commit_one(c, f"{tag}-{k}".encode(), expected)


def settle(c: Cluster) -> None:
    """Everyone applies everything the leader applied."""
    leader = wait_for_leader(c)
    goal = c.nodes[leader].raft.commit_index
    assert c.run_until(lambda: all(n.alive and n.raft.applied_index >= goal for n in c.nodes.values()),
                       40 * ELECTION), c.describe()


def same_history(c: Cluster) -> None:
    histories = {i: [(e.index, e.term, e.data) for e in n.applied] for i, n in c.nodes.items()}
    shortest = min(len(h) for h in histories.values())
    first = next(iter(histories.values()))[:shortest]
    assert all(h[:shortest] == first for h in histories.values())


def test_compaction_keeps_every_log_bounded():
    c = Cluster(3, seed=1, snapshots=(20, 5))
    wait_for_leader(c)
    commit_many(c, 200, "x", 3)
    settle(c)
    for node in c.nodes.values():
        held = node.raft.log.last_index - node.raft.log.compacted_index
        assert held <= 20 + 5 + 5, (node.id, held)
        assert len(node.disk.entries) <= 20 + 5 + 5
    assert c.snapshots_taken >= 3 * 9


def test_a_disconnected_follower_is_brought_up_by_a_snapshot():
    c = Cluster(3, seed=2, snapshots=(10, 0))
    leader = wait_for_leader(c)
    behind = next(i for i in c.ids if i != leader)
    c.isolate(behind)
    commit_many(c, 60, "away", 2)
    c.reconnect(behind)
    settle(c)
    assert c.snapshots_installed >= 1
    assert c.nodes[behind].disk.snapshot is not None
    same_history(c)


def conflicting_follower(raft_class=None, seed: int = 3) -> Cluster:
    """An old leader and its follower hold uncommitted entries of their
    term; the majority moves on, commits and compacts past them. Coming
    back, both must replace their logs with the majority's snapshot."""
    kw = {"raft_class": raft_class} if raft_class is not None else {}
    c = Cluster(5, seed=seed, snapshots=(10, 0), **kw)
    old = wait_for_leader(c)
    commit_one(c, b"base", 5)
    mate = next(i for i in c.ids if i != old)
    rest = [i for i in c.ids if i not in (old, mate)]
    c.partition([old, mate], rest)
    for k in range(80):  # more than the majority will commit: the old logs reach past its snapshot
        c.propose(old, f"lost-{k}".encode())
    c.run_for(4 * ELECTION)
    c.heal()
    c.partition(rest, [old], [mate])  # the majority elects a new leader
    commit_many(c, 40, "kept", 3)
    c.heal()
    settle(c)
    same_history(c)
    return c


def test_a_follower_whose_log_conflicts_with_the_snapshot_replaces_it():
    c = conflicting_follower()
    assert c.snapshots_installed >= 1


@pytest.mark.parametrize("seed", [3, 4, 5, 6])
def test_keeping_a_conflicting_log_on_install_is_caught(seed):
    """The checks can fail: a follower that keeps its log when it merely
    holds *an* entry at the snapshot's index applies the wrong entries."""
    with pytest.raises(Violation) as caught:
        conflicting_follower(BUGS["keep-log-on-snapshot"], seed)
    assert caught.value.invariant in ("state machine safety", "log matching")


@pytest.mark.parametrize("who", ["follower", "leader"])
def test_an_install_interrupted_by_a_crash_completes_after_restart(who):
    c = Cluster(3, seed=7, snapshots=(10, 0), disk=Disk(fast=5))
    leader = wait_for_leader(c)
    behind = next(i for i in c.ids if i != leader)
    c.isolate(behind)
    commit_many(c, 40, "away", 2)
    c.reconnect(behind)
    victim = behind if who == "follower" else leader
    crashed = []

    def crash_mid_install() -> None:
        node = c.nodes[behind]
        if not crashed and node.alive and (node.received or (node.writing and node.writing[1].snapshot)):
            crashed.append(c.now)
            c.crash(victim, "mid-install")

    c.on_event = crash_mid_install
    assert c.run_until(lambda: bool(crashed), 20 * ELECTION), "the install never started"
    c.on_event = None
    c.run_for(ELECTION)
    c.restart(victim)
    settle(c)
    same_history(c)


def test_crashing_everyone_after_snapshots_restarts_from_them_without_losing_commits():
    c = Cluster(3, seed=8, snapshots=(10, 3))
    wait_for_leader(c)
    commit_many(c, 50, "x", 3)
    settle(c)
    before = {i: n.raft.commit_index for i, n in c.nodes.items()}
    for i in c.ids:
        c.crash(i, "all")
    for i in c.ids:
        c.restart(i)
        node = c.nodes[i]
        assert node.raft.commit_index >= node.disk.snapshot.index
        assert node.raft.applied_index == node.disk.snapshot.index
        assert len(node.applied) == node.disk.snapshot.index
    settle(c)
    for i, n in c.nodes.items():
        assert n.raft.commit_index >= before[i]
    commit_one(c, b"after", 3)
    same_history(c)


def test_installs_over_an_unreliable_network():
    c = Cluster(5, seed=9, snapshots=(10, 0),
                faults=Faults(drop=0.2, duplicate=0.1, delay_min=1, delay_max=30, long_delay=0.02,
                              long_delay_max=300))
    leader = wait_for_leader(c)
    behind = [i for i in c.ids if i != leader][:2]
    for i in behind:
        c.isolate(i)
    commit_many(c, 40, "away", 3)
    for i in behind:
        c.reconnect(i)
    settle(c)
    assert c.snapshots_installed >= 2
    same_history(c)


def test_no_snapshot_is_taken_while_an_install_is_in_flight():
    """Regression: seed 26585 of the 5-node sweep took a snapshot of the old
    applied index while a leader's snapshot was being installed, and
    recorded it with term None (the checker then crashed on it)."""
    from raftnet.sim.randomized import run_seed

    outcome = run_seed(26585, 5)
    assert outcome.violation is None, outcome.report
    assert outcome.committed > 100
