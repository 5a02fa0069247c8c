"""Randomized runs: one seed = one cluster, one fault mix, one schedule.

Each seed draws its own fault mix (drop, duplicate and long-delay rates),
then interleaves events with client proposals at random nodes, crashes
(including mid-Ready), restarts, symmetric and one-way partitions and heals.
At the end everything heals and every node restarts; a leader must then be
elected and fresh proposals must commit everywhere within a bounded virtual
time (liveness).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from random import Random

from ..core import Raft, Role
from ..core.log import LogError
from .cluster import TICK, Cluster
from .invariants import Violation
from .network import Faults

DEFAULT_STEPS = 600
# After healing: time for an election plus commits, in virtual time.
LIVENESS_BOUND = 200 * TICK


@dataclass(slots=True)
class Outcome:
    seed: int
    nodes: int
    steps: int
    violation: Violation | None = None
    report: str = ""  # seed, invariant, node states and trace tail when violated


def fault_mix(cluster: Cluster) -> Faults:
    rng = cluster.rng
    return Faults(
        drop=rng.choice((0.0, 0.02, 0.1, 0.25)),
        duplicate=rng.choice((0.0, 0.05, 0.15)),
        delay_min=1,
        delay_max=rng.choice((3, 10, 30)),
        long_delay=rng.choice((0.0, 0.02, 0.1)),
        long_delay_max=rng.choice((100, 400)),
    )


def run_seed(
    seed: int,
    nodes: int,
    steps: int = DEFAULT_STEPS,
    raft_class: type[Raft] = Raft,
    trace: Callable[[str], None] | None = None,
) -> Outcome:
    # Flow-control limits vary per seed too: one-entry appends make followers
    # acknowledge old entries separately from a new leader's no-op.
    knobs = Random(seed * 7919 + nodes)
    figure8 = knobs.random() < 0.15  # this seed also plays a figure-8 episode
    cluster = Cluster(
        nodes,
        seed,
        raft_class=raft_class,
        trace=trace,
        max_size_per_msg=1 if figure8 else knobs.choice((1, 64, 4096)),
        max_inflight_msgs=1 if figure8 else knobs.choice((1, 4, 16)),
        pre_vote=False if figure8 else knobs.random() < 0.7,
        check_quorum=knobs.random() < 0.7,
    )
    cluster.net.faults = fault_mix(cluster)
    cluster.crash_in_ready = cluster.rng.choice((0.0, 0.002, 0.01))
    outcome = Outcome(seed, nodes, 0)
    try:
        if figure8:
            _faulty_phase(cluster, steps // 2)
            figure8_episode(cluster, cluster.rng)
            cluster.heal()
        _faulty_phase(cluster, steps)
        _liveness_phase(cluster)
    except (Violation, LogError, AssertionError) as exc:
        v = exc if isinstance(exc, Violation) else Violation("core error", f"{type(exc).__name__}: {exc}")
        outcome.violation = v
        outcome.report = report(cluster, v, nodes)
    outcome.steps = cluster.steps
    return outcome


def _faulty_phase(cluster: Cluster, steps: int) -> None:
    rng = cluster.rng
    ids = cluster.ids
    proposals = 0
    # Some seeds churn leaders the figure 8 way: crash whoever leads, often.
    leader_crash = rng.choice((0.0, 0.0, 0.005, 0.02))
    while cluster.steps < steps:
        r = rng.random()
        if leader_crash and rng.random() < leader_crash:
            leader = cluster.leader()
            if leader is not None:
                cluster.crash(leader, "leader churn")
        if r < 0.04:
            proposals += 1
            node = rng.choice(ids)
            entry = cluster.propose(node, b"c%d" % proposals)
            if entry is not None and leader_crash and rng.random() < 0.25:
                # The leader dies with the entry in its log only (figure 8's S5).
                cluster.crash(node, "right after a proposal")
        elif r < 0.046:
            alive = cluster.alive()
            if alive:
                cluster.crash(rng.choice(alive), "at random")
        elif r < 0.056:
            down = [i for i in ids if i not in cluster.alive()]
            if down:
                cluster.restart(rng.choice(down))
        elif r < 0.060:
            shuffled = ids[:]
            rng.shuffle(shuffled)
            k = rng.randint(1, len(ids) // 2)
            cluster.partition(shuffled[:k], shuffled[k:])
        elif r < 0.062:
            a, b = rng.sample(ids, 2)
            cluster.cut_one_way(a, b)
        elif r < 0.070:
            cluster.heal()
        elif r < 0.078:
            # A node times out early and campaigns (the forced elections of figure 8).
            cluster.campaign(rng.choice(ids))
        elif r < 0.080:
            leader = cluster.leader()
            if leader is not None:
                cluster.nodes[leader].raft.transfer_leader(rng.choice([i for i in ids if i != leader]))
        if not cluster.step():
            cluster.restart(rng.choice(ids))  # everyone is down: bring one back


def figure8_episode(c: Cluster, rng: Random) -> None:
    """The figure 8 interleaving (§5.4.2) with randomly chosen nodes, steered
    by partitions and forced elections: ``a`` writes entry N to a minority
    and dies; ``b`` wins the next term with the others and writes its own N,
    alone, and dies; ``a`` returns, wins with a majority, gets N
    acknowledged by one more node, and dies before its no-op lands there;
    ``b`` returns and wins with that node. Every step is bounded; if one
    does not happen (the cluster is in no shape for it) the episode stops
    and the run goes on."""
    ids = c.ids[:]
    rng.shuffle(ids)
    quorum = len(ids) // 2 + 1
    a, b = ids[0], ids[1]
    holders = ids[2 : 2 + quorum - 2]  # get N from a in step (a)
    rest = [i for i in ids if i not in (a, b) and i not in holders]  # b's voters
    swing = rest[0]  # acknowledges N in step (c), then votes for b
    wait = 20 * TICK

    def leads(node: int) -> bool:
        return c.nodes[node].alive and c.nodes[node].raft.role is Role.LEADER

    def elect(node: int, group: list[int]) -> bool:
        c.restart(node)
        c.only(group)
        for _ in range(3):
            c.campaign(node)
            if c.run_until(lambda: leads(node), wait):
                return True
        return False

    for i in ids:
        c.restart(i)
    if not elect(a, [a] + holders):
        return
    entry = c.propose(a, b"f8-a")
    if entry is None:
        return
    c.run_for(wait)
    c.crash(a, "figure 8 (a)")
    if not elect(b, [b] + rest):
        return
    c.only([b])
    c.propose(b, b"f8-b")
    c.run_for(wait)
    c.crash(b, "figure 8 (b)")
    if not elect(a, [a] + holders + [swing]):
        return
    c.run_until(lambda: not leads(a) or c.nodes[a].raft.progress[swing].match >= entry.index, wait)
    c.crash(a, "figure 8 (c)")
    elect(b, [b] + rest)
    c.run_for(wait)


def _liveness_phase(cluster: Cluster) -> None:
    """Heal, restart everyone, and require progress within a bound."""
    cluster.heal()
    cluster.net.faults = Faults.reliable()
    cluster.crash_in_ready = 0.0
    for i in cluster.ids:
        cluster.restart(i)

    def settled() -> bool:
        leader = cluster.leader()
        if leader is None:
            return False
        lraft = cluster.nodes[leader].raft
        return lraft.log.term_at(lraft.commit_index) == lraft.term and all(
            n.raft.term == lraft.term and n.raft.leader_id == leader for n in cluster.nodes.values()
        )

    start = cluster.now
    if not cluster.run_until(settled, LIVENESS_BOUND):
        raise Violation("liveness", f"no stable leader {LIVENESS_BOUND} time units after healing")
    # Fresh proposals must now commit everywhere. A proposal may be refused
    # (a leader transfer started before the heal is still pending) or lost (a
    # delayed TimeoutNow from before the heal moves leadership): a client
    # would retry, and so do we, within the same bound.
    for k in range(3):
        data = b"after-heal-%d" % k
        while not _committed_everywhere(cluster, data):
            if cluster.now - start > LIVENESS_BOUND:
                raise Violation("liveness", f"proposal {data!r} not committed everywhere {LIVENESS_BOUND} "
                                            "time units after healing")
            leader = cluster.leader()
            entry = cluster.propose(leader, data) if leader else None
            if entry is None:
                cluster.run_for(TICK)
                continue
            cluster.run_until(
                lambda e=entry: _committed_everywhere(cluster, data) or _lost(cluster, e),
                LIVENESS_BOUND,
            )


def _committed_everywhere(cluster: Cluster, data: bytes) -> bool:
    return all(data in cluster.applied_commands(i) for i in cluster.ids)


def _lost(cluster: Cluster, entry) -> bool:
    """A leader of a later term that does not hold ``entry`` will overwrite it."""
    return any(
        n.raft.role is Role.LEADER and n.raft.term > entry.term and n.raft.log.term_at(entry.index) != entry.term
        for n in cluster.nodes.values()
    )


def report(cluster: Cluster, v: Violation, nodes: int) -> str:
    return "\n".join([
        f"VIOLATION seed={cluster.seed} nodes={nodes} invariant={v.invariant!r} at step {cluster.steps}, "
        f"t={cluster.now}",
        f"  {v.detail}",
        "node states:",
        cluster.describe(),
        f"trace (last {len(cluster.tail)} events):",
        cluster.trace_tail(),
    ])
