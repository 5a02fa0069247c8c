"""Randomized runs: one seed = one cluster, one fault mix, one schedule, one
client workload.

Each seed draws its cluster (PreVote, CheckQuorum, flow-control limits, how
long each node's disk writes take, each node's clock rate), its network
(drop, duplicate, delay and reordering rates) and its clients (how many,
how many keys, the mix of puts, cas, deletes and reads). Then for
``duration`` virtual time it runs the workload while a fault schedule
strikes every few ticks: partitions that cut the leader off with entries
it has not committed, crash-restart storms, crashes in the middle of a
write, periods of delays longer than an election timeout, one-way cuts,
forced elections, leader transfers, and (in some seeds) the figure-8
pattern. At the end everything heals and every node restarts; a leader
must then be elected and fresh proposals must commit everywhere within a
bound (liveness), the replicas must hold the same state, and the clients'
history must be linearizable.
"""

from __future__ import annotations

import heapq
import importlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from random import Random
from typing import Any

from ..core import Raft, Role
from ..core.log import LogError
from ..kv.store import KVStore
from .clients import Mix, Workload
from .cluster import TICK, Cluster, Disk
from .invariants import Violation
from .network import Faults

DEFAULT_DURATION = 800 * TICK  # virtual time of the faulty phase
# After healing: time for an election plus commits, in virtual time.
LIVENESS_BOUND = 200 * TICK
CATCH_UP_PER_ENTRY = 2 * TICK  # more time allowed per entry a follower must catch up
FIGURE8_EPISODES = 3  # in a seed that plays them


@dataclass(slots=True)
class Outcome:
    seed: int
    nodes: int
    steps: int
    violation: Violation | None = None
    report: str = ""  # seed, invariant, node states and trace tail when violated
    committed: int = 0  # the highest index committed anywhere
    leaders: int = 0  # terms that had a leader
    ops: dict = field(default_factory=dict)  # client operations by outcome
    cluster: Cluster | None = None  # kept only when asked for (timelines)


def fault_mix(rng: Random) -> Faults:
    return Faults(
        drop=rng.choice((0.0, 0.02, 0.1, 0.2)),
        duplicate=rng.choice((0.0, 0.05, 0.15)),
        delay_min=1,
        delay_max=rng.choice((3, 10, 30)),
        long_delay=rng.choice((0.0, 0.02, 0.05)),
        long_delay_max=rng.choice((100, 400)),
    )


def disk_model(rng: Random) -> Disk:
    return Disk(fast=rng.choice((0, 1, 3, 10)), slow_rate=rng.choice((0.0, 0.005, 0.02)),
                slow=rng.choice((50, 200)))


def snapshot_policy(rng: Random) -> tuple[int, int] | None:
    """Most seeds snapshot, often (every 10 to 200 applied entries), some
    keeping no log behind the snapshot, so followers that fall behind need
    one; a few never snapshot."""
    if rng.random() < 0.15:
        return None
    return rng.choice((10, 25, 50, 200)), rng.choice((0, 0, 5, 50))


def run_seed(
    seed: int,
    nodes: int,
    duration: int = DEFAULT_DURATION,
    raft_class: type[Raft] = Raft,
    trace: Callable[[str], None] | None = None,
    machine: Any = None,
    timeline: bool = False,
    keep: bool = False,
    max_steps: int | None = None,
) -> Outcome:
    """One randomized run. ``machine`` is a state machine class to replicate
    instead of the key-value store (its replicas are compared, with no
    linearizability check); ``keep`` keeps the cluster in the outcome."""
    knobs = Random(seed * 7919 + nodes)
    figure8 = knobs.random() < 0.4  # this seed also plays figure-8 episodes
    cluster = Cluster(
        nodes,
        seed,
        raft_class=raft_class,
        trace=trace,
        disk=disk_model(knobs),
        machine=machine or KVStore,
        max_size_per_msg=1 if figure8 else knobs.choice((1, 1, 64, 4096)),
        max_inflight_msgs=1 if figure8 else knobs.choice((1, 4, 16)),
        heartbeat_tick=knobs.choice((1, 2, 3)),
        pre_vote=False if figure8 else knobs.random() < 0.7,
        check_quorum=knobs.random() < 0.5,
        # Its own stream, so the other knobs of a seed stay what they were before snapshots existed.
        snapshots=snapshot_policy(Random(seed * 104729 + nodes)),
        timeline=timeline,
    )
    skew = knobs.random() < 0.4
    for node in cluster.nodes.values():
        node.tick_every = knobs.choice((6, 8, 10, 12, 15)) if skew else TICK
    cluster.net.faults = fault_mix(knobs)
    cluster.crash_in_ready = knobs.choice((0.0, 0.002, 0.01))
    cluster.checker.check_cost = True
    workload = None if machine else Workload(cluster, Random(knobs.getrandbits(64)), Mix.draw(knobs))
    feed = _Feed(cluster, workload, Random(knobs.getrandbits(64)), machine)
    outcome = Outcome(seed, nodes, 0)
    try:
        if figure8:
            # Three episodes, each after a third of the faulty phase.
            for _ in range(FIGURE8_EPISODES):
                _faulty_phase(cluster, feed, duration // FIGURE8_EPISODES,
                              max_steps and cluster.steps + max_steps // FIGURE8_EPISODES)
                figure8_episode(cluster, cluster.rng)
                cluster.heal()
        else:
            _faulty_phase(cluster, feed, duration, max_steps and cluster.steps + max_steps)
        _liveness_phase(cluster, feed)
        _same_state(cluster)
        if workload is not None:
            workload.check()
    except (Violation, LogError, AssertionError) as exc:
        v = exc if isinstance(exc, Violation) else Violation("core error", f"{type(exc).__name__}: {exc}")
        outcome.violation = v
        outcome.report = report(cluster, v, nodes)
        if cluster.timeline is not None:
            cluster.timeline.violation = (cluster.now, f"{v.invariant}: {v.detail}")
    outcome.steps = cluster.steps
    outcome.committed = cluster.checker.max_commit
    outcome.leaders = len(cluster.checker.leaders)
    if workload is not None:
        outcome.ops = workload.counts()
        if cluster.timeline is not None:
            cluster.timeline.ops = workload.timeline_ops()
    if cluster.timeline is not None:
        cluster.timeline.end = cluster.now
    if keep or timeline:
        outcome.cluster = cluster
    return outcome


@dataclass(frozen=True, slots=True)
class Summary:
    """What a worker process sends back about one seed."""

    seed: int
    steps: int
    committed: int
    leaders: int
    invariant: str | None
    report: str


def run_many(seeds, nodes: int, duration: int = DEFAULT_DURATION, bug: str | None = None,
             machine: str | None = None, max_steps: int | None = None, workers: int = 1):
    """Run every seed (in ``workers`` processes); yields a ``Summary`` per
    seed, in seed order. ``bug`` names a ``bugs.BUGS`` variant and
    ``machine`` a ``module:Class`` state machine."""
    jobs = [(seed, nodes, duration, bug, machine, max_steps) for seed in seeds]
    if workers <= 1:
        yield from map(_summarize, jobs)
        return
    with ProcessPoolExecutor(workers) as pool:
        yield from pool.map(_summarize, jobs, chunksize=8)


def _summarize(job: tuple) -> Summary:
    from .bugs import BUGS

    seed, nodes, duration, bug, machine, max_steps = job
    o = run_seed(seed, nodes, duration, BUGS[bug] if bug else Raft, machine=load_machine(machine) if machine else None,
                 max_steps=max_steps)
    return Summary(o.seed, o.steps, o.committed, o.leaders, o.violation.invariant if o.violation else None, o.report)


def load_machine(spec: str) -> type:
    """``module:Class`` -> the class; ValueError naming what is wrong."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--state-machine wants module:Class, not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from None
    cls = getattr(module, attr, None)
    if cls is None or not all(callable(getattr(cls, m, None)) for m in ("apply", "read")):
        raise ValueError(f"{spec!r} is not a class with apply() and read()")
    return cls


class _Feed:
    """Keeps the cluster busy: the client workload, or plain proposals of
    commands for a user's state machine."""

    def __init__(self, cluster: Cluster, workload: Workload | None, rng: Random, machine: Any):
        self.cluster = cluster
        self.workload = workload
        self.rng = rng
        self.sample = getattr(machine, "sim_command", None)
        self.next_at = 0
        self.count = 0

    def poll(self) -> None:
        if self.workload is not None:
            self.workload.poll()
            return
        c = self.cluster
        if c.now < self.next_at:
            return
        self.next_at = c.now + self.rng.randint(1, 2 * TICK)
        leader = c.leader()
        node = leader if leader is not None and self.rng.random() < 0.9 else self.rng.choice(c.ids)
        self.count += 1
        data = self.sample(self.rng) if self.sample else b"cmd-%d-%d" % (self.count, self.rng.getrandbits(16))
        c.propose(node, data)


def _faulty_phase(cluster: Cluster, feed: _Feed, duration: int, max_steps: int | None = None) -> None:
    rng = cluster.rng
    end = cluster.now + duration
    schedule = _Schedule(cluster, rng)
    while cluster.now < end and (max_steps is None or cluster.steps < max_steps):
        if not cluster.step():
            cluster.restart(rng.choice(cluster.ids))  # everyone is down: bring one back
        feed.poll()
        schedule.poll()
    schedule.stop()


class _Schedule:
    """The faults of one seed. Every few ticks (drawn per seed) an action is
    drawn by weight; most are episodes that end by themselves: a crashed
    node comes back after a while, a partition heals (a new partition
    replaces the old one), a period of long delays passes. Storms crash and
    restart nodes every tick or so for a while."""

    def __init__(self, cluster: Cluster, rng: Random):
        self.c = cluster
        self.rng = rng
        self.gap = rng.choice((10, 25, 50)) * TICK  # mean time between two actions
        self.next_at = cluster.now + self._gap()
        self.storm_until = 0
        self.downtime = (1, 60)  # ticks a crashed node stays down
        self.coming_back: set[int] = set()
        self.next_scan = 0  # when to look for crashed nodes again (every tick)
        self.calm_faults = cluster.net.faults
        self.undo: list[tuple[int, int, Callable[[], None]]] = []  # (time, seq, how an episode ends)
        self.seq = 0
        self.actions: list[tuple[Callable[[], None], int]] = [
            (self.crash, 6), (self.crash_leader, 6), (self.isolate_leader, 20), (self.partition, 6),
            (self.cut, 3), (self.storm, 2), (self.slow_network, 2), (self.campaign, 5), (self.transfer, 2),
            (self.heal, 2),
        ]
        self.total = sum(w for _, w in self.actions)

    def _gap(self) -> int:
        return max(1, int(self.rng.expovariate(1 / self.gap)))

    def _later(self, ticks: tuple[int, int], action: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.undo, (self.c.now + self.rng.randint(*ticks) * TICK, self.seq, action))

    def poll(self) -> None:
        c = self.c
        while self.undo and self.undo[0][0] <= c.now:
            heapq.heappop(self.undo)[2]()
        if c.now >= self.next_scan:
            self.next_scan = c.now + TICK
            for node in c.nodes.values():
                # However it went down (a crash mid-Ready too), it comes back.
                if not node.alive and node.id not in self.coming_back:
                    self.coming_back.add(node.id)
                    self._later(self.downtime, lambda i=node.id: self._restart(i))
        if c.now < self.next_at:
            return
        if c.now < self.storm_until:
            self.next_at = c.now + self.rng.randint(1, 3 * TICK)
            self._crash(self.rng.choice(c.ids), "in a storm")
            return
        self.downtime = (1, 60)
        self.next_at = c.now + self._gap()
        r = self.rng.randrange(self.total)
        for action, weight in self.actions:
            r -= weight
            if r < 0:
                action()
                return

    def stop(self) -> None:
        self.c.net.faults = self.calm_faults
        self.storm_until = 0
        self.undo.clear()

    # -- actions ---------------------------------------------------------------------

    def _crash(self, node: int | None, why: str) -> None:
        if node is not None:
            self.c.crash(node, why)

    def _restart(self, node: int) -> None:
        self.coming_back.discard(node)
        self.c.restart(node)

    def crash(self) -> None:
        self._crash(self.rng.choice(self.c.ids), "at random")

    def crash_leader(self) -> None:
        self._crash(self.c.leader(), "leader churn")

    def _partition(self, *groups: list[int]) -> None:
        c = self.c
        c.heal()
        c.partition(*groups)
        cut = frozenset(c.net.cut)

        def heal() -> None:
            if frozenset(c.net.cut) == cut:  # not replaced by a later one meanwhile
                c.heal()

        self._later((10, 100), heal)

    def isolate_leader(self) -> None:
        """Cut the leader off with whatever it has not committed yet (the
        clients keep proposing to it); sometimes with one follower."""
        c = self.c
        leader = c.leader()
        if leader is None:
            return
        group = [leader]
        if len(c.ids) > 3 and self.rng.random() < 0.5:
            group.append(self.rng.choice([i for i in c.ids if i != leader]))
        self._partition(group, [i for i in c.ids if i not in group])

    def partition(self) -> None:
        ids = self.c.ids[:]
        self.rng.shuffle(ids)
        k = self.rng.randint(1, len(ids) // 2)
        self._partition(ids[:k], ids[k:])

    def cut(self) -> None:
        a, b = self.rng.sample(self.c.ids, 2)
        self.c.cut_one_way(a, b)
        self._later((5, 80), lambda: self.c.net.cut.discard((a, b)))

    def heal(self) -> None:
        self.c.heal()

    def storm(self) -> None:
        """Crash and restart nodes every tick or so, for a while."""
        self.storm_until = self.c.now + self.rng.randint(10, 40) * TICK
        self.downtime = (1, 5)

    def slow_network(self) -> None:
        """For a while, many messages arrive later than an election timeout."""
        f = self.calm_faults
        self.c.net.faults = Faults(f.drop, f.duplicate, f.delay_min, f.delay_max, long_delay=0.2,
                                   long_delay_max=self.rng.choice((300, 1000)))
        self._later((20, 60), lambda: setattr(self.c.net, "faults", self.calm_faults))

    def campaign(self) -> None:
        self.c.campaign(self.rng.choice(self.c.ids))

    def transfer(self) -> None:
        c = self.c
        leader = c.leader()
        if leader is not None:
            c.nodes[leader].raft.transfer_leader(self.rng.choice([i for i in c.ids if i != leader]))


def figure8_episode(c: Cluster, rng: Random) -> None:
    """The figure 8 interleaving (§5.4.2) with randomly chosen nodes, steered
    by partitions and forced elections: ``a`` writes entry N to a minority
    and dies; ``b`` wins the next term with the others and writes its own N,
    alone, and dies; ``a`` returns, wins with a majority, gets N
    acknowledged by one more node, and dies before its no-op lands there;
    ``b`` returns and wins with that node. Every step is bounded; if one
    does not happen (the cluster is in no shape for it) the episode stops
    and the run goes on. The episode runs on a reliable network without
    crashes of its own (the run's faults resume after it), and ``a`` is the
    node with the most up-to-date log, so that it can win step (a)."""
    for i in c.ids:
        c.restart(i)
    faults, crashes = c.net.faults, c.crash_in_ready
    c.net.faults, c.crash_in_ready = Faults.reliable(), 0.0
    try:
        _figure8_steps(c, rng)
    finally:
        c.net.faults, c.crash_in_ready = faults, crashes


def _figure8_steps(c: Cluster, rng: Random) -> None:
    ids = c.ids[:]
    rng.shuffle(ids)
    ids.sort(key=lambda i: (c.nodes[i].raft.log.last_term, c.nodes[i].raft.log.last_index), reverse=True)
    ids[1:] = rng.sample(ids[1:], len(ids) - 1)
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
    # The swing node may be far behind: give it time to reach N.
    c.run_until(lambda: not leads(a) or c.nodes[a].raft.progress[swing].match >= entry.index, 5 * wait)
    c.crash(a, "figure 8 (c)")
    elect(b, [b] + rest)
    c.run_for(wait)


def _liveness_phase(cluster: Cluster, feed: _Feed | None = None) -> None:
    """Heal, restart everyone, and require progress within a bound; the
    clients stop issuing and their open operations may still complete."""
    if feed is not None and feed.workload is not None:
        feed.workload.running = False
        cluster.on_event = feed.workload.poll
    cluster.heal()
    cluster.net.faults = Faults.reliable()
    cluster.crash_in_ready = 0.0
    if cluster.disk_model is not None:
        cluster.disk_model = Disk()
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
    # Followers far behind catch up one append window per round trip, and a
    # new leader commits nothing of its own until they hold what it holds:
    # allow for it (the backtracking cost check bounds the rejections).
    behind = max(n.raft.log.last_index for n in cluster.nodes.values()) - min(
        n.raft.commit_index for n in cluster.nodes.values())
    bound = LIVENESS_BOUND + CATCH_UP_PER_ENTRY * behind
    if not cluster.run_until(settled, bound):
        raise Violation("liveness", f"no stable leader {bound} time units after healing ({behind} entries "
                                    "to catch up)")
    # Fresh proposals must now commit everywhere. A proposal may be refused
    # (a leader transfer started before the heal is still pending) or lost (a
    # delayed TimeoutNow from before the heal moves leadership): a client
    # would retry, and so do we, within the same bound.
    for k in range(3):
        data = b"after-heal-%d" % k
        while not _committed_everywhere(cluster, data):
            if cluster.now - start > bound:
                raise Violation("liveness", f"proposal {data!r} not committed everywhere {bound} "
                                            f"time units after healing ({behind} entries to catch up)")
            leader = cluster.leader()
            entry = cluster.propose(leader, data) if leader else None
            if entry is None:
                cluster.run_for(TICK)
                continue
            cluster.run_until(
                lambda e=entry: _applied_everywhere(cluster, e) or _lost(cluster, e),
                bound,
            )


def _applied_everywhere(cluster: Cluster, e) -> bool:
    for node in cluster.nodes.values():
        if len(node.applied) < e.index or node.applied[e.index - 1].term != e.term:
            return False
    return True


def _committed_everywhere(cluster: Cluster, data: bytes) -> bool:
    return all(data in cluster.applied_commands(i) for i in cluster.ids)


def _lost(cluster: Cluster, entry) -> bool:
    """A leader of a later term that does not hold ``entry`` will overwrite it."""
    return any(
        n.raft.role is Role.LEADER and n.raft.term > entry.term and n.raft.log.term_at(entry.index) != entry.term
        for n in cluster.nodes.values()
    )


def _same_state(cluster: Cluster) -> None:
    """After the liveness phase every replica applied the same log: their
    state machines must be in the same state. A machine's ``state_digest()``
    says so if it has one; otherwise its snapshot's blobs, joined (a fresh
    view, consumed and closed here)."""
    states = {}
    for i, node in cluster.nodes.items():
        machine = node.machine
        if machine is None:
            continue
        if hasattr(machine, "state_digest"):
            states[i] = (node.raft.applied_index, machine.state_digest())
        elif hasattr(machine, "snapshot"):
            view = machine.snapshot()
            try:
                states[i] = (node.raft.applied_index, b"".join(view))
            finally:
                if hasattr(view, "close"):
                    view.close()
    by_index: dict[int, tuple[int, bytes]] = {}
    for i, (index, state) in states.items():
        seen = by_index.setdefault(index, (i, state))
        if seen[1] != state:
            raise Violation("replicas agree", f"nodes {seen[0]} and {i} applied up to {index} but their state "
                                              "machines differ")


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
