"""One test per safety claim of the Raft paper (figure 3), each checked over
many randomized simulator runs by the invariant the claim names. The
checker itself is exercised against broken cores in test_sim_randomized.py
and test_sim_scenarios.py, so a pass here means something."""

from __future__ import annotations

import pytest

from raftnet.sim.invariants import Checker, Violation
from raftnet.sim.randomized import run_seed
from raftnet.sim.cluster import Cluster
from raftnet.sim.scenarios import commit_one

SEEDS = range(9001, 9026)  # the randomized sweep runs thousands more


def _run_all(nodes: int) -> None:
    for seed in SEEDS:
        outcome = run_seed(seed, nodes)
        assert outcome.violation is None, outcome.report


def test_election_safety():
    """§5.2: at most one leader can be elected in a given term."""
    checker = Checker()
    c = Cluster(5, seed=1)
    c.checker = checker
    commit_one(c, b"x", 5)
    assert len(checker.leaders) >= 1
    _run_all(5)


def test_log_matching():
    """§5.3: if two logs contain an entry with the same index and term, the
    logs are identical in all entries up through that index."""
    _run_all(3)


def test_leader_completeness():
    """§5.4: a committed entry is present in the logs of the leaders of all
    higher-numbered terms (checked at every election and every new commit)."""
    _run_all(5)


def test_state_machine_safety():
    """§5.4.3: no two servers apply a different entry at the same index."""
    _run_all(3)


def test_leader_append_only():
    """§5.3: a leader never overwrites or deletes entries in its own log."""
    for seed in range(9200, 9230):
        c = Cluster(5, seed=seed)
        commit_one(c, b"first", 5)
        leader = c.leader()
        raft = c.nodes[leader].raft
        before = [(e.index, e.term) for e in raft.log.entries(1, raft.log.last_index + 1)]
        for k in range(20):
            c.propose(leader, b"k%d" % k)
            c.run_for(5)
            if c.nodes[leader].raft is not raft or c.leader() != leader:
                break
            now = [(e.index, e.term) for e in raft.log.entries(1, raft.log.last_index + 1)]
            assert now[: len(before)] == before
            before = now


def test_the_checker_rejects_a_second_leader_in_one_term():
    """The election safety check itself, fed a forged second leader."""
    checker = Checker()
    c = Cluster(3, seed=2)
    commit_one(c, b"x", 3)
    leader = c.leader()
    term = c.nodes[leader].raft.term
    checker.leaders[term] = leader % 3 + 1
    with pytest.raises(Violation, match="election safety"):
        checker.node_state(c.nodes[leader].raft)
