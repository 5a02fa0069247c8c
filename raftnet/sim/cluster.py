"""The simulated cluster: N real cores, a faulty network, disks, virtual time.

Everything happens as events on one timeline (a heap ordered by virtual time
and insertion order): a node's tick, a message's arrival. ``step()`` runs one
event, carries out every Ready it produced exactly in the order
``core/ready.py`` documents, and checks every invariant. All randomness
comes from one ``random.Random(seed)``, so a seed replays a run exactly.

A crash keeps only the node's disk; a restart builds a new core from it.
With ``crash_in_ready`` > 0 a node may also die in the middle of carrying out
a Ready: after sending the eager messages, after the save, or mid-apply.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from random import Random
from typing import Any

from ..core import ProposalRefused, Raft, RaftConfig, Role
from ..core.messages import AppendEntriesResponse, Entry, EntryKind, Message
from .disk import SimDisk
from .invariants import Checker, Violation
from .network import Faults, Network

TICK = 10  # virtual time units between two ticks of one node
TRACE_TAIL = 40

_TICK, _DELIVER = 0, 1


class SimNode:
    __slots__ = ("id", "disk", "raft", "generation", "applied", "led_term")

    def __init__(self, node_id: int):
        self.id = node_id
        self.disk = SimDisk()
        self.raft: Raft | None = None
        self.generation = 0  # bumps on crash: events of a dead incarnation are void
        self.applied: list[Entry] = []  # this incarnation's state machine
        self.led_term = 0

    @property
    def alive(self) -> bool:
        return self.raft is not None


class Cluster:
    def __init__(
        self,
        nodes: int,
        seed: int,
        *,
        faults: Faults | None = None,
        raft_class: type[Raft] = Raft,
        crash_in_ready: float = 0.0,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        pre_vote: bool = True,
        check_quorum: bool = True,
        max_inflight_msgs: int = 16,
        max_size_per_msg: int = 4096,
        trace: Callable[[str], None] | None = None,
    ):
        self.seed = seed
        self.rng = Random(seed)
        self.ids = list(range(1, nodes + 1))
        self.net = Network(self.rng, faults or Faults.reliable())
        self.raft_class = raft_class
        self.crash_in_ready = crash_in_ready
        self.config = dict(
            election_tick=election_tick,
            heartbeat_tick=heartbeat_tick,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
            max_inflight_msgs=max_inflight_msgs,
            max_size_per_msg=max_size_per_msg,
        )
        self.nodes = {i: SimNode(i) for i in self.ids}
        self.checker = Checker()
        self.now = 0
        self.steps = 0
        self._events: list[tuple[int, int, int, Any, int]] = []
        self._seq = 0
        self.tail: deque = deque(maxlen=TRACE_TAIL)
        self._trace = trace
        for i in self.ids:
            self.restart(i)

    # -- the timeline ----------------------------------------------------------------

    def _push(self, at: int, kind: int, payload: Any, generation: int) -> None:
        self._seq += 1
        heapq.heappush(self._events, (at, self._seq, kind, payload, generation))

    def _note(self, *event: Any) -> None:
        self.tail.append((self.now, event))
        if self._trace is not None:
            self._trace(format_event(self.now, event))

    def step(self) -> bool:
        """Run the next event and check every invariant; False if nothing is
        scheduled (every node is down)."""
        if not self._events:
            return False
        at, _, kind, payload, generation = heapq.heappop(self._events)
        self.now = at
        self.steps += 1
        if kind == _TICK:
            node = self.nodes[payload]
            if node.generation != generation:
                return True  # a tick of an incarnation that crashed
            self._push(at + TICK, _TICK, payload, generation)
            node.raft.tick()
            self._run(node)
        else:
            m: Message = payload
            node = self.nodes[m.dst]
            if not node.alive or not self.net.can_deliver(m):
                return True
            self.net.delivered += 1
            self._note("deliver", m)
            node.raft.step(m)
            self._run(node)
        self.check()
        return True

    def run_for(self, duration: int) -> None:
        end = self.now + duration
        while self._events and self._events[0][0] <= end:
            self.step()
        self.now = max(self.now, end)

    def run_until(self, predicate: Callable[[], bool], limit: int) -> bool:
        """Step until ``predicate()`` holds (checked after each event) or
        ``limit`` virtual time passed; returns whether it held."""
        end = self.now + limit
        while not predicate():
            if not self._events or self._events[0][0] > end:
                return False
            self.step()
        return True

    # -- carrying out Ready ------------------------------------------------------------

    def _run(self, node: SimNode) -> None:
        raft = node.raft
        while raft is not None and raft.has_ready():
            rd = raft.ready()
            self.checker.entries_written(raft, rd.entries)
            for m in rd.messages:
                self.send(m)
            if self._crash_now(node, "after sending eager messages"):
                return
            if rd.entries or rd.hard_state is not None:
                node.disk.save(rd.hard_state, rd.entries)
                self.checker.saved(node.id, node.disk)
            if self._crash_now(node, "after the save"):
                return
            for m in rd.after_persist:
                if isinstance(m, AppendEntriesResponse):
                    self.checker.acknowledged(m)
                self.send(m)
            for e in rd.committed_entries:
                if self._crash_now(node, f"before applying {e.index}"):
                    return
                node.applied.append(e)
                self.checker.applied_entry(node.id, e)
            raft.advance(rd)
            if raft.role is Role.LEADER and node.led_term != raft.term:
                node.led_term = raft.term
                self._note("leader", node.id, raft.term)
                self.checker.became_leader(raft)

    def _crash_now(self, node: SimNode, where: str) -> bool:
        if self.crash_in_ready and self.rng.random() < self.crash_in_ready:
            self.crash(node.id, where)
            return True
        return False

    def send(self, m: Message) -> None:
        for delay in self.net.delays(m):
            self._push(self.now + delay, _DELIVER, m, 0)

    # -- faults and clients ---------------------------------------------------------

    def crash(self, node_id: int, where: str = "") -> None:
        node = self.nodes[node_id]
        if not node.alive:
            return
        self._note("crash", node_id, where)
        node.raft = None
        node.generation += 1
        node.applied = []

    def restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.alive:
            return
        cfg = RaftConfig(id=node_id, voters=tuple(self.ids), **self.config)
        rng = Random(self.rng.getrandbits(64))
        node.raft = self.raft_class(cfg, rng, hard_state=node.disk.hard_state, entries=list(node.disk.entries))
        node.led_term = 0
        self.checker.restarted(node_id)
        self._note("start", node_id, node.disk.hard_state, len(node.disk.entries))
        self._push(self.now + self.rng.randint(1, TICK), _TICK, node_id, node.generation)

    def propose(self, node_id: int, data: bytes) -> Entry | None:
        """A client proposal at ``node_id``; None if that node refused it."""
        node = self.nodes[node_id]
        if not node.alive:
            return None
        try:
            entry = node.raft.propose(data)
        except ProposalRefused:
            return None
        self._note("propose", node_id, entry.index, entry.term, data)
        self._run(node)
        self.check()
        return entry

    def campaign(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.alive:
            node.raft.campaign()
            self._run(node)
            self.check()

    def partition(self, *groups: list[int]) -> None:
        self._note("partition", groups)
        self.net.partition(*groups)

    def isolate(self, node_id: int) -> None:
        self._note("isolate", node_id)
        self.net.isolate(node_id, self.ids)

    def cut_one_way(self, src: int, dst: int) -> None:
        self._note("cut", src, dst)
        self.net.cut_one_way(src, dst)

    def reconnect(self, node_id: int) -> None:
        self._note("reconnect", node_id)
        self.net.reconnect(node_id)

    def only(self, group: list[int]) -> None:
        """Connect ``group`` among itself and cut every other link."""
        self._note("only", group)
        self.net.heal()
        for a in self.ids:
            for b in self.ids:
                if a != b and not (a in group and b in group):
                    self.net.cut_one_way(a, b)

    def heal(self) -> None:
        self._note("heal")
        self.net.heal()

    # -- invariants and views -----------------------------------------------------------

    def check(self) -> None:
        leaders = []
        for node in self.nodes.values():
            raft = node.raft
            if raft is None:
                continue
            self.checker.node_state(raft)
            if raft.role is Role.LEADER:
                leaders.append(raft)
        if self.checker.fresh:
            self.checker.check_fresh_commits(leaders)

    def alive(self) -> list[int]:
        return [i for i, n in self.nodes.items() if n.alive]

    def leaders(self) -> list[int]:
        return [i for i, n in self.nodes.items() if n.alive and n.raft.role is Role.LEADER]

    def leader_among(self, group: list[int]) -> int | None:
        best = None
        for i in self.leaders():
            if i in group and (best is None or self.nodes[i].raft.term > self.nodes[best].raft.term):
                best = i
        return best

    def leader(self) -> int | None:
        """The leader of the highest term among live, connected leaders."""
        best = None
        for i in self.leaders():
            if best is None or self.nodes[i].raft.term > self.nodes[best].raft.term:
                best = i
        return best

    def applied_commands(self, node_id: int) -> list[bytes]:
        return [e.data for e in self.nodes[node_id].applied if e.kind is EntryKind.NORMAL]

    def committed_count(self, index: int, data: bytes | None = None) -> int:
        """How many live nodes have applied ``index`` (with ``data`` if given)."""
        count = 0
        for node in self.nodes.values():
            if node.alive and len(node.applied) >= index:
                e = node.applied[index - 1]
                if data is None or e.data == data:
                    count += 1
        return count

    def describe(self) -> str:
        lines = []
        for i, node in self.nodes.items():
            if node.raft is None:
                hs = node.disk.hard_state
                lines.append(f"  node {i}: down; disk term {hs.term} vote {hs.vote} commit {hs.commit} "
                             f"last {len(node.disk.entries)}")
            else:
                r = node.raft
                terms = [e.term for e in r.log.entries(max(1, r.log.last_index - 15), r.log.last_index + 1)]
                lines.append(f"  node {i}: {r.role.value} term {r.term} vote {r.vote} leader {r.leader_id} "
                             f"commit {r.commit_index} applied {r.applied_index} last {r.log.last_index} "
                             f"tail terms {terms}")
        return "\n".join(lines)

    def trace_tail(self) -> str:
        return "\n".join(format_event(t, e) for t, e in self.tail)


def format_event(now: int, event: tuple) -> str:
    kind, *args = event
    if kind == "deliver":
        m = args[0]
        return f"t={now:<7} deliver {_describe_message(m)}"
    return f"t={now:<7} {kind} " + " ".join(str(a) for a in args)


def _describe_message(m: Message) -> str:
    body = repr(m)
    if len(body) > 200:
        body = body[:200] + "...)"
    return body


__all__ = ["Cluster", "Faults", "SimNode", "TICK", "Violation"]
