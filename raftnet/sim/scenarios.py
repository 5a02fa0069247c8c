"""Named scenarios, ported by scenario (not code) from the classic Raft lab
tests. Each returns its figures (at least ``messages`` and ``virtual_time``)
and raises ``Violation`` when a check fails.

They are the ones worth running from the command line (``--scenario``);
the full lab-style suite lives in ``tests/test_scenarios_lab.py`` on the
same ``Cluster`` API.
"""

from __future__ import annotations

from random import Random

from ..core import Raft
from .cluster import TICK, Cluster
from .invariants import Violation
from .network import Faults

ELECTION = 20 * TICK  # comfortably more than one randomized election timeout


def wait_for_leader(c: Cluster, limit: int = 10 * ELECTION) -> int:
    def one_leader() -> bool:
        leader = c.leader()
        return leader is not None and c.nodes[leader].raft.log.term_at(c.nodes[leader].raft.commit_index) == \
            c.nodes[leader].raft.term
    if not c.run_until(one_leader, limit):
        raise Violation("liveness", f"no leader within {limit} time units\n{c.describe()}")
    return c.leader()


def commit_one(c: Cluster, data: bytes, expected: int, limit: int = 10 * ELECTION) -> int:
    """Propose ``data`` at whoever leads (retrying, like a client) until at
    least ``expected`` live nodes applied it; returns its index."""
    end = c.now + limit
    while c.now < end:
        leader = c.leader()
        entry = c.propose(leader, data) if leader is not None else None
        if entry is None:
            c.run_for(TICK)
            continue
        if c.run_until(lambda: c.committed_count(entry.index, data) >= expected, 4 * ELECTION):
            return entry.index
    raise Violation("liveness", f"{data!r} not applied on {expected} nodes within {limit}\n{c.describe()}")


def backup(nodes: int = 5, raft_class: type[Raft] = Raft, seed: int = 1) -> dict:
    """A leader and one follower are cut off and take 50 proposals that can
    never commit; the other three commit 50; one of those three is cut off
    with the new leader holding 50 more uncommitted ones. Then the original
    pair and the third node (a majority with three disagreeing logs) must
    agree again, and finally everyone. ``messages`` counts the messages from
    that reunion on: fast backtracking skips a conflicting term per round
    trip, one-step backtracking pays one round trip per entry."""
    c = Cluster(nodes, seed, raft_class=raft_class)
    commit_one(c, b"first", nodes)
    leader1 = c.leader()
    others = [i for i in c.ids if i != leader1]
    pair = [leader1, others[0]]
    three = others[1:]
    c.only(pair)
    for k in range(50):
        c.propose(leader1, b"lost-%d" % k)
    c.run_for(ELECTION // 4)

    c.only(three)
    for k in range(50):
        commit_one(c, b"kept-%d" % k, len(three))
    leader2 = c.leader_among(three)
    other = next(i for i in three if i != leader2)
    c.only([i for i in three if i != other])
    for k in range(50):
        c.propose(leader2, b"stranded-%d" % k)
    c.run_for(ELECTION // 4)

    reunion = pair + [other]
    c.only(reunion)
    wait_for_leader_among(c, reunion)
    # Measure from the reunion's election to the moment all three agree.
    sent_before, t0 = c.net.sent, c.now
    commit_one(c, b"reunion", len(reunion))
    catch_up_messages, catch_up_time = c.net.sent - sent_before, c.now - t0
    for k in range(49):
        commit_one(c, b"reunion-%d" % k, len(reunion))
    c.heal()
    commit_one(c, b"last", nodes)
    return {"messages": catch_up_messages, "virtual_time": catch_up_time, "total_messages": c.net.sent,
            "total_virtual_time": c.now}


def wait_for_leader_among(c: Cluster, group: list[int], limit: int = 10 * ELECTION) -> int:
    if not c.run_until(lambda: c.leader_among(group) is not None, limit):
        raise Violation("liveness", f"no leader among {group} within {limit}\n{c.describe()}")
    return c.leader_among(group)


def figure8(nodes: int = 5, raft_class: type[Raft] = Raft, seed: int = 1, iterations: int = 1000,
            unreliable: bool = False) -> dict:
    """Figure 8 of the paper, the hard way: 1,000 times, propose at the
    leader, let a little (or sometimes a lot of) time pass, crash the leader,
    and keep a majority alive by restarting crashed nodes. Entries of earlier
    terms are left in every possible arrangement; a leader that commits one by
    counting replicas is caught by the safety checks."""
    c = Cluster(nodes, seed, raft_class=raft_class, max_size_per_msg=1, max_inflight_msgs=4,
                faults=Faults.unreliable() if unreliable else Faults.reliable())
    rng = Random(seed)
    for k in range(iterations):
        leader = c.leader()
        if leader is not None:
            c.propose(leader, b"f8-%d" % k)
        c.run_for(rng.randint(1, 13 * TICK // 10) if rng.random() < 0.9 else rng.randint(1, ELECTION))
        leader = c.leader()
        if leader is not None and rng.random() < (0.5 if unreliable else 1.0):
            c.crash(leader, "figure 8")
        if len(c.alive()) < nodes // 2 + 1:
            c.restart(rng.choice([i for i in c.ids if i not in c.alive()]))
    c.net.faults = Faults.reliable()
    c.heal()
    for i in c.ids:
        c.restart(i)
    commit_one(c, b"f8-final", nodes)
    return {"messages": c.net.sent, "virtual_time": c.now, "iterations": iterations}


def figure8_paper(nodes: int = 5, raft_class: type[Raft] = Raft, seed: int = 1) -> dict:
    """Figure 8 of the paper, step by step (§5.4.2), with elections forced by
    ``campaign`` and messages steered by partitions:

    (a) S1 leads and replicates entry N to S2 only; (b) S5 wins the next term
    with S3 and S4 and writes its own entry at N, alone; (c) S1 wins again
    with S2 and S3 and replicates its old entry N to S3, a majority, then
    crashes before its new no-op reaches S3; (d) S5 wins once more with S3
    and S4 and overwrites N everywhere. Correct Raft never counted N as
    committed in (c); a leader that commits older-term entries by counting
    replicas did, and the checks catch it."""
    if nodes != 5:
        raise ValueError("the figure 8 schedule needs exactly 5 nodes")
    c = Cluster(5, seed, raft_class=raft_class, election_tick=10_000, pre_vote=False, check_quorum=False,
                max_size_per_msg=1, max_inflight_msgs=1)
    settle = 5 * TICK

    def elect(node: int) -> None:
        # A candidate whose term was already used campaigns again, one term up.
        for _ in range(3):
            c.campaign(node)
            if c.run_until(lambda: c.nodes[node].raft.role.value == "leader", 10 * TICK):
                return
        raise Violation("liveness", f"node {node} did not win its election\n{c.describe()}")

    elect(1)
    c.run_for(settle)
    c.propose(1, b"first")
    c.run_for(settle)
    # (a) S1 replicates N to S2 only.
    c.only([1, 2])
    n = c.propose(1, b"from-S1").index
    c.run_for(settle)
    c.crash(1, "figure 8 (a)")
    # (b) S5 wins with S3, S4; its entry at N stays with it alone.
    c.only([3, 4, 5])
    elect(5)
    c.only([5])
    c.propose(5, b"from-S5")
    c.run_for(settle)
    c.crash(5, "figure 8 (b)")
    # (c) S1 returns and wins with S2, S3; S3 acknowledges N, then S1 dies.
    c.restart(1)
    c.only([1, 2, 3])
    elect(1)
    c.run_until(lambda: c.nodes[3].raft.log.term_at(n) == c.nodes[1].raft.log.term_at(n), 10 * TICK)
    c.run_until(lambda: c.nodes[1].raft.progress[3].match >= n, 10 * TICK)
    c.crash(1, "figure 8 (c)")
    # (d) S5 returns and wins with S3, S4.
    c.restart(5)
    c.only([3, 4, 5])
    elect(5)
    c.run_for(settle)
    c.heal()
    for i in c.ids:
        c.restart(i)
    c.run_for(10 * settle)
    return {"messages": c.net.sent, "virtual_time": c.now}


def churn(nodes: int = 5, raft_class: type[Raft] = Raft, seed: int = 1, unreliable: bool = False,
          rounds: int = 200) -> dict:
    """Clients propose at random nodes while nodes crash, restart, and get cut
    off and reconnected; at the end everything heals and every value a
    client saw committed must be applied everywhere, in the same order."""
    c = Cluster(nodes, seed, raft_class=raft_class,
                faults=Faults.unreliable() if unreliable else Faults.reliable())
    rng = Random(seed)
    proposed = 0
    for _ in range(rounds):
        for _ in range(3):
            proposed += 1
            c.propose(rng.choice(c.ids), b"churn-%d" % proposed)
        c.run_for(rng.randint(1, 5 * TICK))
        r = rng.random()
        if r < 0.2:
            c.crash(rng.choice(c.ids), "churn")
        elif r < 0.5:
            down = [i for i in c.ids if i not in c.alive()]
            if down:
                c.restart(rng.choice(down))
        elif r < 0.6:
            c.isolate(rng.choice(c.ids))
        elif r < 0.8:
            c.reconnect(rng.choice(c.ids))
    c.net.faults = Faults.reliable()
    c.heal()
    for i in c.ids:
        c.restart(i)
    final = commit_one(c, b"churn-final", nodes)
    orders = {tuple(c.applied_commands(i)) for i in c.ids}
    if len(orders) != 1:
        raise Violation("state machine safety", "nodes applied different command sequences after churn")
    return {"messages": c.net.sent, "virtual_time": c.now, "applied": final}


SCENARIOS = {
    "backup": backup,
    "figure8": figure8,
    "figure8-paper": figure8_paper,
    "figure8-unreliable": lambda **kw: figure8(unreliable=True, **kw),
    "churn": churn,
    "churn-unreliable": lambda **kw: churn(unreliable=True, **kw),
}
