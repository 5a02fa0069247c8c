"""The simulated cluster: N real cores, a faulty network, disks, virtual time.

Everything happens as events on one timeline (a heap ordered by virtual time
and insertion order): a node's tick, a message's arrival, the end of a disk
write. Each node carries out its Ready batches with the node runtime's own
code (``raftnet/node/readyloop.py``), so the simulated order *is* the real
one. With a ``Disk`` model a write takes virtual time: while it is in flight
the node keeps stepping messages and ticks, exactly as the trio node does,
and a crash in the middle keeps a seeded prefix of it
(``raftnet/storage/memdisk.py``). Without one (the named scenarios) a write
completes at once. All randomness comes from one ``random.Random(seed)``, so
a seed replays a run exactly.

Snapshots (``snapshots=(every, keep)``): a node snapshots its state machine
every ``every`` applied entries and keeps ``keep`` entries behind it in its
log; a leader sends a follower that needs compacted entries its newest
snapshot, which travels as one message over the faulty network (chunking
is the node's business, outside the core, and not modelled here) and is
reported back to the leader as sent or failed.

A crash keeps only the node's disk; a restart builds a new core from it.
With ``crash_in_ready`` > 0 a node may also die at any point of carrying out
a Ready: with its write in flight, after the write, or mid-apply.

Promises are checked where they are made: every message whose promise rests
on durable state (a vote, a candidacy, an append or heartbeat
acknowledgement) is checked against the disk when it is sent, and a
leader's own match index is checked against its disk after every event.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import Any

from ..core import ProposalRefused, Raft, RaftConfig, Role
from ..core.messages import (
    AppendEntriesResponse,
    InstallSnapshot,
    Entry,
    EntryKind,
    HeartbeatResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
)
from ..core.ready import ReadState
from ..node.readyloop import carry_out
from ..storage.memdisk import MemoryDisk, StoredSnapshot
from .invariants import Checker, Violation
from .network import Faults, Network
from .timeline import Timeline

TICK = 10  # virtual time units between two ticks of a node whose clock runs true
TRACE_TAIL = 40

_TICK, _DELIVER, _WRITTEN, _CRASH, _REPORT = 0, 1, 2, 3, 4


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotStream(Message):
    """A snapshot on its way from a leader to a follower: the whole transfer
    as one message (lost, delayed or duplicated as one)."""

    snapshot: StoredSnapshot
    voters: tuple[int, ...]


@dataclass(slots=True)
class Disk:
    """How long a node's writes take, in virtual time: usually ``fast``
    (drawn uniformly from 0..fast), with probability ``slow_rate`` up to
    ``slow`` (a stalled fsync; longer than an election timeout if you like)."""

    fast: int = 2
    slow_rate: float = 0.0
    slow: int = 200

    def latency(self, rng: Random) -> int:
        if self.slow_rate and rng.random() < self.slow_rate:
            return rng.randint(self.fast, self.slow)
        return rng.randint(0, self.fast)


class _Crashed(Exception):
    """The node died while carrying out a Ready (raised out of an effect)."""


class SimNode:
    __slots__ = ("id", "disk", "raft", "generation", "applied", "led_term", "machine", "writing",
                 "tick_every", "cluster", "received")

    def __init__(self, node_id: int, cluster: Cluster):
        self.id = node_id
        self.cluster = cluster
        self.disk = MemoryDisk()
        self.raft: Raft | None = None
        self.generation = 0  # bumps on crash: events of a dead incarnation are void
        self.applied: list[Entry] = []  # what this incarnation applied
        self.machine: Any = None  # this incarnation's state machine, if the cluster has one
        self.led_term = 0
        self.writing = None  # (the Ready's carry_out generator, the disk write) while in flight
        self.tick_every = TICK  # clock-rate skew: some nodes tick faster or slower
        self.received: dict[tuple[int, int], StoredSnapshot] = {}  # snapshots streamed to us, by (index, term)

    @property
    def alive(self) -> bool:
        return self.raft is not None

    # -- readyloop.Effects ---------------------------------------------------------

    def send(self, m: Message) -> None:
        c = self.cluster
        if isinstance(m, InstallSnapshot):
            c.stream_snapshot(self, m)
            return
        c.promise_kept(self, m)
        if isinstance(m, AppendEntriesResponse):
            c.checker.acknowledged(m)
        c.send(m)

    def apply(self, e: Entry) -> None:
        c = self.cluster
        c.maybe_crash(self, f"before applying {e.index}")
        self.applied.append(e)
        c.checker.applied_entry(self.id, e)
        result = None
        if self.machine is not None and e.kind is EntryKind.NORMAL:
            result = self.machine.apply(e.index, e.data)
        if c.on_apply is not None:
            c.on_apply(self.id, e, result)

    def serve_read(self, rs: ReadState) -> None:
        c = self.cluster
        c.checker.read_served(self.id, rs)
        if c.on_read is not None:
            c.on_read(self.id, rs)

    def read_dropped(self, ctx: Any) -> None:
        c = self.cluster
        c.checker.read_dropped(ctx)
        if c.on_read_dropped is not None:
            c.on_read_dropped(self.id, ctx)


class Cluster:
    def __init__(
        self,
        nodes: int,
        seed: int,
        *,
        faults: Faults | None = None,
        raft_class: type[Raft] = Raft,
        crash_in_ready: float = 0.0,
        disk: Disk | None = None,
        machine: Callable[[], Any] | None = None,
        election_tick: int = 10,
        heartbeat_tick: int = 1,
        pre_vote: bool = True,
        check_quorum: bool = True,
        max_inflight_msgs: int = 16,
        max_size_per_msg: int = 4096,
        snapshots: tuple[int, int] | None = None,
        trace: Callable[[str], None] | None = None,
        timeline: bool = False,
    ):
        self.seed = seed
        self.rng = Random(seed)
        self.ids = list(range(1, nodes + 1))
        self.net = Network(self.rng, faults or Faults.reliable())
        self.raft_class = raft_class
        self.crash_in_ready = crash_in_ready
        self.disk_model = disk
        self.machine_factory = machine
        self.snapshots = snapshots
        self.snapshots_taken = 0
        self.snapshots_installed = 0
        self.config = dict(
            election_tick=election_tick,
            heartbeat_tick=heartbeat_tick,
            pre_vote=pre_vote,
            check_quorum=check_quorum,
            max_inflight_msgs=max_inflight_msgs,
            max_size_per_msg=max_size_per_msg,
        )
        self.nodes = {i: SimNode(i, self) for i in self.ids}
        self.checker = Checker()
        self.checker.logs = self._log_of
        self.now = 0
        self.steps = 0
        self._events: list[tuple[int, int, int, Any, int]] = []
        self._seq = 0
        self.tail: deque = deque(maxlen=TRACE_TAIL)
        self._trace = trace
        self.timeline = Timeline(seed, self.ids) if timeline else None
        # What a workload listens to (clients.py).
        self.on_apply: Callable[[int, Entry, Any], None] | None = None
        self.on_read: Callable[[int, ReadState], None] | None = None
        self.on_read_dropped: Callable[[int, Any], None] | None = None
        self.on_event: Callable[[], None] | None = None  # after every event
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
        if kind == _DELIVER:
            m: Message = payload
            node = self.nodes[m.dst]
            if not node.alive or not self.net.can_deliver(m):
                return True
            self.net.delivered += 1
            self._note("deliver", m)
            if isinstance(m, SnapshotStream):
                m = self._received_snapshot(node, m)
            self.checker.delivering(node.raft, m)
            node.raft.step(m)
            self.checker.delivered(node.raft, m)
        elif kind == _REPORT:
            leader, peer, ok = payload
            node = self.nodes[leader]
            if node.generation != generation:
                return True
            self._note("snapshot-report", leader, peer, ok)
            node.raft.report_snapshot(peer, ok)
        else:
            node = self.nodes[payload]
            if node.generation != generation:
                return True  # an event of an incarnation that crashed
            if kind == _TICK:
                self._push(at + node.tick_every, _TICK, payload, generation)
                node.raft.tick()
            elif kind == _WRITTEN:
                self._written(node)

            elif self.crash_in_ready:  # (crashes may have been switched off since)
                self.crash(node.id, "with a write in flight" if node.writing else "after a write")
        self._run(node)
        self.check(node)
        if self.on_event is not None:
            self.on_event()
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
        """Carry out the node's Readys until one waits on the disk."""
        while node.raft is not None and node.writing is None and node.raft.has_ready():
            raft = node.raft
            rd = raft.ready()
            self.checker.entries_written(raft, rd.entries)
            steps = carry_out(raft, rd, node)
            try:
                write = next(steps, None)
                if write is None:
                    self._advanced(node)
                    continue
                install = None
                if write.snapshot is not None:
                    install = node.received.pop((write.snapshot.snapshot_index, write.snapshot.snapshot_term))
                    node.received.clear()
                node.writing = (steps, node.disk.begin(write.hard_state, write.entries, install))
                model = self.disk_model
                if model is None:
                    self._written(node)  # no disk model: the write is instant
                    continue
                latency = model.latency(self.rng)
                self._push(self.now + latency, _WRITTEN, node.id, node.generation)
                if self.crash_in_ready and self.rng.random() < self.crash_in_ready:
                    self._push(self.now + self.rng.randint(0, latency), _CRASH, node.id, node.generation)
            except _Crashed:
                return

    def _written(self, node: SimNode) -> None:
        """The node's write is durable: finish carrying out its Ready."""
        steps, write = node.writing
        write.finish()
        if write.snapshot is not None:
            self._restore(node, write.snapshot)
            self.snapshots_installed += 1
            self._note("installed", node.id, write.snapshot.index)
        self.checker.saved(node.id, node.disk)
        try:
            self.maybe_crash(node, "after the write")
            for _ in steps:
                raise AssertionError("a Ready asked for a second write")
        except _Crashed:
            return
        node.writing = None
        self._advanced(node)

    def _advanced(self, node: SimNode) -> None:
        raft = node.raft
        if self.snapshots is not None:
            self.maybe_snapshot(node)
        if raft.role is Role.LEADER and node.led_term != raft.term:
            node.led_term = raft.term
            self._note("leader", node.id, raft.term)
            self.checker.became_leader(raft)

    def maybe_crash(self, node: SimNode, where: str) -> None:
        if self.crash_in_ready and self.rng.random() < self.crash_in_ready:
            self.crash(node.id, where)
            raise _Crashed

    def send(self, m: Message) -> None:
        for delay in self.net.delays(m):
            self._push(self.now + delay, _DELIVER, m, 0)

    # -- snapshots ---------------------------------------------------------------------

    def maybe_snapshot(self, node: SimNode) -> None:
        """Take a snapshot once ``every`` entries were applied since the last."""
        raft, disk = node.raft, node.disk
        every, keep = self.snapshots
        last = disk.snapshot.index if disk.snapshot is not None else 0
        index = raft.applied_index
        if index - last < every or raft.log.term_at(index) is None:
            return  # not yet, or an install is replacing the log (the old applied index is gone from it)
        blobs = list(node.machine.snapshot()) if node.machine is not None else None
        snap = StoredSnapshot(index, raft.log.term_at(index), (tuple(node.applied[:index]), blobs))
        compact_to = min(index - keep, raft.log.stable_index)
        disk.take_snapshot(snap, compact_to)
        raft.snapshot_taken(index, compact_to)
        self.snapshots_taken += 1
        self._note("snapshot", node.id, index, compact_to)

    def stream_snapshot(self, leader: SimNode, m: InstallSnapshot) -> None:
        """The leader's node streams its newest snapshot to ``m.dst``, and
        reports to its core how that went: sent once it arrived (and the
        acknowledgement came back), failed after a transfer timeout if it
        was lost."""
        snap = leader.disk.snapshot
        stream = SnapshotStream(term=m.term, src=m.src, dst=m.dst, snapshot=snap, voters=m.voters)
        delays = self.net.delays(stream)
        transfer = self.rng.randint(0, 5 * TICK)  # a snapshot takes a while to stream
        for delay in delays:
            self._push(self.now + delay + transfer, _DELIVER, stream, 0)
        if delays:
            report = (self.now + max(delays) + transfer + self.rng.randint(1, 2 * TICK), True)
        else:
            report = (self.now + self.rng.randint(5 * TICK, 20 * TICK), False)
        self._push(report[0], _REPORT, (leader.id, m.dst, report[1]), leader.generation)

    def _received_snapshot(self, node: SimNode, m: SnapshotStream) -> InstallSnapshot:
        """A whole snapshot arrived: keep it until the core installs it, and
        step the core's message."""
        snap = m.snapshot
        node.received[(snap.index, snap.term)] = snap
        return InstallSnapshot(term=m.term, src=m.src, dst=m.dst, snapshot_index=snap.index,
                               snapshot_term=snap.term, voters=m.voters)

    def _restore(self, node: SimNode, snap: StoredSnapshot | None) -> None:
        """Give a node's state machine and applied history the snapshot's."""
        if snap is None:
            return
        applied, blobs = snap.state
        node.applied = list(applied)
        if node.machine is not None:
            node.machine.restore(iter(blobs))

    def promise_kept(self, node: SimNode, m: Message) -> None:
        """A message that promises durable state may only leave once the
        disk holds it."""
        hs = node.disk.hard_state
        if isinstance(m, RequestVoteResponse):
            if m.granted and not m.pre_vote:
                if hs.term < m.term or (hs.term == m.term and hs.vote != m.dst):
                    self._broken(node, m, f"the disk has term {hs.term}, vote {hs.vote}")
                self.checker.voted(m.src, m.term, m.dst)
        elif isinstance(m, RequestVote):
            if not m.pre_vote and (hs.term < m.term or (hs.term == m.term and hs.vote != m.src)):
                self._broken(node, m, f"the disk has term {hs.term}, vote {hs.vote}")
        elif isinstance(m, AppendEntriesResponse | HeartbeatResponse):
            if hs.term < m.term:
                self._broken(node, m, f"the disk has term {hs.term}")
            # Within the term it was made in, an acknowledgement promises the
            # entries up to its match index (a node that has moved on to a
            # later term may since have replaced them, legitimately).
            if isinstance(m, AppendEntriesResponse) and m.success and node.raft.term == m.term:
                disk, index = node.disk, m.match_index
                expected = node.raft.log.term_at(index)
                if expected is None:
                    # The core has compacted it (or is installing a snapshot
                    # past it) since the acknowledgement was made: the disk
                    # must still hold it, in its log or its snapshot.
                    if disk.last_index < index and not disk.covers(index):
                        self._broken(node, m, f"the disk ends at {disk.last_index}")
                elif disk.last_index < index or disk.term_at(index) != expected:
                    self._broken(node, m, f"the disk ends at {disk.last_index}, term {disk.term_at(index)} "
                                          f"at {index}")

    def _broken(self, node: SimNode, m: Message, disk: str) -> None:
        raise Violation("promise before persist", f"node {node.id} sent {_describe_message(m)} but {disk}")

    # -- faults and clients ---------------------------------------------------------

    def crash(self, node_id: int, where: str = "") -> None:
        """The node dies: its in-memory state is gone, and a write in flight
        keeps what the disk's crash model draws."""
        node = self.nodes[node_id]
        if not node.alive:
            return
        self._note("crash", node_id, where)
        node.disk.crash(self.rng)
        node.raft = None
        node.writing = None
        node.machine = None
        node.generation += 1
        node.applied = []
        if self.timeline is not None:
            self.timeline.crash(self.now, node_id, where)

    def restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.alive:
            return
        cfg = RaftConfig(id=node_id, voters=tuple(self.ids), **self.config)
        rng = Random(self.rng.getrandbits(64))
        disk = node.disk
        snap = disk.snapshot
        node.raft = self.raft_class(cfg, rng, hard_state=disk.hard_state, entries=list(disk.entries),
                                    snapshot=(snap.index, snap.term) if snap is not None else (0, 0))
        node.machine = self.machine_factory() if self.machine_factory is not None else None
        node.received = {}
        self._restore(node, snap)
        node.led_term = 0
        self.checker.restarted(node_id, node.disk)
        self._note("start", node_id, disk.hard_state, disk.last_index)
        if self.timeline is not None:
            self.timeline.restart(self.now, node_id)
        self._push(self.now + self.rng.randint(1, node.tick_every), _TICK, node_id, node.generation)

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
        self.check(node)
        return entry

    def read(self, node_id: int, ctx: Any) -> bool:
        """A linearizable read at ``node_id`` (ReadIndex); False if refused.
        Its ``ReadState`` reaches ``on_read`` once it may be served."""
        node = self.nodes[node_id]
        if not node.alive:
            return False
        try:
            node.raft.read_index(ctx)
        except ProposalRefused:
            return False
        self.checker.read_started(ctx)
        self._run(node)
        self.check(node)
        return True

    def campaign(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.alive:
            node.raft.campaign()
            self._run(node)
            self.check()

    def partition(self, *groups: list[int]) -> None:
        self._note("partition", groups)
        self.net.partition(*groups)
        self._network_changed()

    def isolate(self, node_id: int) -> None:
        self._note("isolate", node_id)
        self.net.isolate(node_id, self.ids)
        self._network_changed()

    def cut_one_way(self, src: int, dst: int) -> None:
        self._note("cut", src, dst)
        self.net.cut_one_way(src, dst)
        self._network_changed()

    def reconnect(self, node_id: int) -> None:
        self._note("reconnect", node_id)
        self.net.reconnect(node_id)
        self._network_changed()

    def _network_changed(self) -> None:
        if self.timeline is not None:
            self.timeline.cut(self.now, self.net.cut)

    def only(self, group: list[int]) -> None:
        """Connect ``group`` among itself and cut every other link."""
        self._note("only", group)
        self.net.heal()
        for a in self.ids:
            for b in self.ids:
                if a != b and not (a in group and b in group):
                    self.net.cut_one_way(a, b)
        self._network_changed()

    def heal(self) -> None:
        self._note("heal")
        self.net.heal()
        self._network_changed()

    # -- invariants and views -----------------------------------------------------------

    def check(self, only: SimNode | None = None) -> None:
        """Check every invariant. After an event only the node it touched
        can have changed, so only that one is looked at (``only``)."""
        tl = self.timeline
        for node in (only,) if only is not None else self.nodes.values():
            raft = node.raft
            if raft is None:
                continue
            self.checker.node_state(raft)
            if raft.role is Role.LEADER:
                self.checker.own_match(raft, node.disk)
            if tl is not None:
                tl.role(self.now, node.id, raft.role.value, raft.term)
                tl.commit(self.now, node.id, raft.commit_index)
        if self.checker.fresh:
            leaders = [n.raft for n in self.nodes.values() if n.raft is not None and n.raft.role is Role.LEADER]
            self.checker.check_fresh_commits(leaders, self.nodes)

    def _log_of(self, node_id: int):
        node = self.nodes[node_id]
        return node.raft.log if node.raft is not None else node.disk

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
                             f"last {node.disk.last_index}")
            else:
                r = node.raft
                terms = [e.term for e in r.log.entries(r.log.last_index - 15, r.log.last_index + 1)]
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


__all__ = ["Cluster", "Disk", "Faults", "SimNode", "TICK", "Violation"]
