"""Faults, scheduled from the run's seed.

Each round: a quiet spell, then one fault for a while, then it is healed.
The faults:

* ``kill``: ``kill -9`` one node (the leader half the time), restart it after;
* ``pause``: SIGSTOP one node (the leader half the time) for longer than an
  election timeout, then SIGCONT;
* ``kill-majority``: ``kill -9`` a majority at once, restart them after;
* ``partition``: a random majority/minority split;
* ``isolate-leader``: the leader alone on one side (the case that gave
  etcd stale reads in 2014);
* ``bridge``: two halves that can only talk through one node;
* ``one-way``: one node's messages to another dropped, the reverse open;
* ``flaky``: random links delay and drop connections;
* ``client-kill``: a client dies mid-request (its connection is dropped;
  the op's outcome is unknown).
"""

from __future__ import annotations

import random
import time
from collections import Counter

import trio

from ..client import Client
from .cluster import Cluster
from .workload import Worker

NEMESES = ("kill", "pause", "kill-majority", "partition", "isolate-leader", "bridge", "one-way", "flaky",
           "client-kill")


async def leader_of(cluster: Cluster) -> int | None:
    """The leader of the highest term any reachable node reports."""
    async with Client(cluster.addresses, timeout=0.5) as c:
        status = await c.status()
    best = None
    for st in status.values():
        if st.get("role") == "leader" and (best is None or st["term"] > best["term"]):
            best = st
    return best["id"] if best else None


class Nemesis:
    def __init__(self, cluster: Cluster, workers: list[Worker], kinds: list[str], rng: random.Random):
        self.cluster, self.workers, self.kinds, self.rng = cluster, workers, kinds, rng
        self.counts: Counter[str] = Counter()
        self.log: list[str] = []

    async def run(self, until: float) -> None:
        while time.monotonic() + 2 < until:
            await trio.sleep(self.rng.uniform(0.5, 2.0))
            kind = self.rng.choice(self.kinds)
            hold = self.rng.uniform(1.0, 3.0)
            undo = await self._inflict(kind)
            self.counts[kind] += 1
            self.log.append(f"{time.monotonic():.3f} {kind}")
            await trio.sleep(min(hold, max(0.0, until - time.monotonic())))
            undo()
        self.heal()

    def heal(self) -> None:
        self.cluster.network.heal()
        self.cluster.heal_processes()

    async def _victim(self) -> int:
        if self.rng.random() < 0.5:
            leader = await leader_of(self.cluster)
            if leader is not None:
                return leader
        return self.rng.choice(self.cluster.ids)

    async def _inflict(self, kind: str):
        c, ids, rng = self.cluster, self.cluster.ids, self.rng
        net = c.network
        if kind == "kill":
            victim = await self._victim()
            c.kill(victim)
            return lambda: c.start(victim)
        if kind == "pause":
            victim = await self._victim()
            c.pause(victim)
            return lambda: c.resume(victim)
        if kind == "kill-majority":
            victims = rng.sample(ids, len(ids) // 2 + 1)
            for v in victims:
                c.kill(v)
            return lambda: [c.start(v) for v in victims]
        if kind == "partition":
            shuffled = rng.sample(ids, len(ids))
            cut = len(ids) // 2
            net.partition(set(shuffled[:cut]), set(shuffled[cut:]))
        elif kind == "isolate-leader":
            leader = await leader_of(c) or rng.choice(ids)
            net.partition({leader}, set(ids) - {leader})
        elif kind == "bridge":
            shuffled = rng.sample(ids, len(ids))
            bridge, half = shuffled[0], (len(ids) - 1) // 2
            net.partition({bridge, *shuffled[1 : 1 + half]}, {bridge, *shuffled[1 + half :]})
        elif kind == "one-way":
            i, j = rng.sample(ids, 2)
            net.cut(i, j)
        elif kind == "flaky":
            pairs = list(net.links)
            net.flaky(rng.sample(pairs, max(1, len(pairs) // 2)))
        elif kind == "client-kill":
            busy = [w for w in self.workers if w.op_scope is not None]
            for w in rng.sample(busy, min(len(busy), 2)):
                w.op_scope.cancel()
            return lambda: None
        return net.heal
