"""Simulated clients: a steady key-value workload through the cluster, and
the history it leaves, checked for linearizability at the end of a seed.

Each client is one process of the history (``raftnet.check``'s format) with
one operation open at a time: a put, cas or delete through the log (with a
session, so a retry after a lost reply is applied once), a linearizable get
through ReadIndex, or a stale get from any node's state machine. A client
sends to the node it believes leads; a refusal names the leader (or it picks
another node), a try that hears nothing in ``RETRY_AFTER`` is sent again, and
an operation still open when the run ends is "unknown" if it may have been
applied, else "fail". Operations are function calls into the cluster, so
clients reach every node even across a network partition, as real clients on
both sides of one would. Invoke and complete times are virtual times.

Stale reads are checked only for being some committed prefix: the value
read must be the key's value after applying the committed log up to the
index that node had applied.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from random import Random
from typing import Any


from ..check import check
from ..core.messages import Entry, EntryKind
from ..kv.store import KVStore, encode_command
from .cluster import TICK, Cluster
from .invariants import Violation
from .timeline import ClientOp

RETRY_AFTER = 15 * TICK  # virtual time a try waits for an answer before going again
THINK = 2 * TICK  # at most this long between one answer and the next invoke
CHECK_SECONDS = 20.0  # wall-clock budget of the linearizability check per seed


@dataclass(slots=True)
class _Op:
    process: int
    f: str
    key: str
    value: str | None = None
    expected: str | None = None
    invoke: int = 0
    complete: int | None = None
    output: Any = None
    outcome: str = "open"
    maybe_applied: bool = False
    node: int = 0
    attempt: int = 0  # bumps per try: a stale timer or answer of an older try is ignored
    silent: int = 0  # tries that heard nothing: each one doubles the wait of the next, up to 4x
    index: int = 0  # writes: the log index of the current try
    term: int = 0
    applied_at: int = 0  # stale reads: the applied index of the node read

    def to_history(self) -> dict:
        d = {"process": self.process, "f": "get" if self.f == "stale-get" else self.f, "key": self.key,
             "output": self.output, "outcome": self.outcome, "invoke": self.invoke, "complete": self.complete}
        if self.f in ("put", "cas"):
            d["value"] = self.value
        if self.f == "cas":
            d["expected"] = self.expected
        return d


@dataclass(slots=True)
class _Client:
    process: int
    session: int | None = None
    seq: int = 0
    leader: int = 0
    op: _Op | None = None
    registers: int = 0  # register tries so far: each one waits longer for an answer, up to 4x


@dataclass(slots=True)
class Mix:
    """What the clients do, drawn per seed."""

    clients: int = 5
    keys: int = 5
    reads: float = 0.3  # linearizable gets
    stale: float = 0.1  # stale gets
    cas: float = 0.2
    delete: float = 0.1  # the rest are puts

    @classmethod
    def draw(cls, rng: Random) -> Mix:
        return cls(clients=rng.choice((4, 8, 16)), keys=rng.choice((2, 5, 10)), reads=rng.choice((0.2, 0.4, 0.6)),
                   stale=rng.choice((0.0, 0.1)), cas=rng.choice((0.1, 0.25)), delete=rng.choice((0.05, 0.15)))


@dataclass(slots=True)
class Workload:
    cluster: Cluster
    rng: Random
    mix: Mix = field(default_factory=Mix)
    clients: list[_Client] = field(default_factory=list)
    ops: list[_Op] = field(default_factory=list)
    _timers: list = field(default_factory=list)  # (time, seq, process, attempt or -1 for "invoke next")
    _writes: dict = field(default_factory=dict)  # (node, index) -> op, for the try in flight there
    _reads: dict = field(default_factory=dict)  # ctx -> op
    _registers: dict = field(default_factory=dict)  # (node, index) -> client
    _seq: int = 0
    _ctx: int = 0
    running: bool = True
    linearizability: str = ""  # the check's status once run: ok or undecided

    def __post_init__(self) -> None:
        c = self.cluster
        c.on_apply = self._applied
        c.on_read = self._read_ready
        c.on_read_dropped = self._read_dropped
        for p in range(1, self.mix.clients + 1):
            client = _Client(p, leader=self.rng.choice(c.ids))
            self.clients.append(client)
            self._timer(c.now + self.rng.randint(0, THINK), p, -1)

    # -- time ------------------------------------------------------------------------

    def _timer(self, at: int, process: int, attempt: int) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (at, self._seq, process, attempt))

    def poll(self) -> None:
        """Run the clients' timers that are due (call after each step)."""
        now = self.cluster.now
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, process, attempt = heapq.heappop(timers)
            client = self.clients[process - 1]
            if attempt == -1:
                if self.running and client.op is None:
                    self._next_op(client)
            elif client.op is not None and client.op.attempt == attempt:
                # That try heard nothing: again, maybe somewhere else.
                if self.rng.random() < 0.5:
                    client.leader = self.rng.choice(self.cluster.ids)
                client.op.silent += 1
                self._try(client)

    # -- issuing ---------------------------------------------------------------------

    def _next_op(self, client: _Client) -> None:
        if client.session is None:
            self._register(client)
            return
        rng, mix = self.rng, self.mix
        key = f"k{rng.randrange(mix.keys)}"
        r = rng.random()
        self._ctx += 1
        value = f"p{client.process}-{self._ctx}"
        if r < mix.reads:
            op = _Op(client.process, "get", key)
        elif r < mix.reads + mix.stale:
            op = _Op(client.process, "stale-get", key)
        elif r < mix.reads + mix.stale + mix.cas:
            expected = self._recent_value(key)
            op = _Op(client.process, "cas", key, value, expected)
        elif r < mix.reads + mix.stale + mix.cas + mix.delete:
            op = _Op(client.process, "delete", key)
        else:
            op = _Op(client.process, "put", key, value)
        op.invoke = self.cluster.now
        if op.f in ("put", "cas", "delete"):
            client.seq += 1
        client.op = op
        self.ops.append(op)
        self._try(client)

    def _recent_value(self, key: str) -> str | None:
        for op in reversed(self.ops[-20:]):
            if op.key == key and op.outcome == "ok":
                return op.output if op.f in ("get", "stale-get") else op.value if op.f in ("put", "cas") else None
        return None

    def _register(self, client: _Client) -> None:
        node = client.leader
        c = self.cluster
        entry = c.propose(node, encode_command("register")) if c.nodes[node].alive else None
        if entry is None:
            client.leader = self._hint(node)
            self._timer(c.now + TICK, client.process, -1)
            return
        self._registers[(node, entry.index)] = (client, entry.term)
        self._timer(c.now + (RETRY_AFTER << min(client.registers, 2)), client.process, -1)
        client.registers += 1

    def _try(self, client: _Client) -> None:
        op = client.op
        c = self.cluster
        op.attempt += 1
        wait = RETRY_AFTER << min(op.silent, 2)
        node = client.leader
        op.node = node
        if op.f == "stale-get":
            node = self.rng.choice(c.ids)
            sim = c.nodes[node]
            if sim.alive and sim.machine is not None:
                op.node = node
                op.applied_at = sim.raft.applied_index
                self._done(client, _value(sim.machine.read({"op": "get", "key": op.key})))
                return
        elif op.f == "get":
            self._ctx += 1
            if c.read(node, self._ctx):
                self._reads[self._ctx] = (op, op.attempt)
                self._timer(c.now + wait, client.process, op.attempt)
                return
        else:
            entry = c.propose(node, self._command(client, op)) if c.nodes[node].alive else None
            if entry is not None:
                op.maybe_applied = True
                op.index, op.term = entry.index, entry.term
                self._writes[(node, entry.index)] = (op, op.attempt)
                self._timer(c.now + wait, client.process, op.attempt)
                return
        # Refused (not the leader, or down): follow the hint, or try another node soon.
        client.leader = self._hint(node)
        self._timer(c.now + self.rng.randint(1, TICK), client.process, op.attempt)

    def _hint(self, node: int) -> int:
        sim = self.cluster.nodes[node]
        if sim.alive and sim.raft.leader_id is not None and sim.raft.leader_id != node:
            return sim.raft.leader_id
        return self.rng.choice(self.cluster.ids)

    def _command(self, client: _Client, op: _Op) -> bytes:
        fields: dict[str, Any] = {"key": op.key, "client": client.session, "seq": client.seq}
        if op.f == "put":
            fields["value"] = op.value.encode()
        elif op.f == "cas":
            fields["expected"] = None if op.expected is None else op.expected.encode()
            fields["new"] = op.value.encode()
        return encode_command(op.f, **fields)

    # -- answers ---------------------------------------------------------------------

    def _applied(self, node: int, e: Entry, result: Any) -> None:
        key = (node, e.index)
        reg = self._registers.pop(key, None)
        if reg is not None:
            client, term = reg
            if e.term == term and client.session is None:
                client.session = result["client"]
                client.leader = node
                self._timer(self.cluster.now + self.rng.randint(0, THINK), client.process, -1)
            return
        found = self._current(self._writes, key)
        if found is None:
            return
        client, op = found
        if e.term != op.term or e.kind is not EntryKind.NORMAL:
            return  # that try was overwritten by another leader's entry; its timer retries
        if not isinstance(result, dict) or "error" in result:
            raise Violation("client result", f"process {op.process} {op.f} {op.key!r} got {result!r}")
        client.leader = node
        self._done(client, result.get("existed") if op.f == "delete" else result.get("swapped")
                   if op.f == "cas" else None)

    def _current(self, table: dict, key: Any) -> tuple[_Client, _Op] | None:
        """The client and operation waiting on ``key`` in ``table`` (which
        forgets it), if that is still the client's current try."""
        found = table.pop(key, None)
        if found is None:
            return None
        op, attempt = found
        client = self.clients[op.process - 1]
        if client.op is not op or op.attempt != attempt:
            return None
        return client, op

    def _read_ready(self, node: int, rs) -> None:
        found = self._current(self._reads, rs.ctx)
        if found is None:
            return
        client, op = found
        client.leader = node
        self._done(client, _value(self.cluster.nodes[node].machine.read({"op": "get", "key": op.key})))

    def _read_dropped(self, node: int, ctx: Any) -> None:
        found = self._current(self._reads, ctx)
        if found is not None:
            client, op = found
            client.leader = self._hint(node)
            self._timer(self.cluster.now + self.rng.randint(1, TICK), client.process, op.attempt)

    def _done(self, client: _Client, output: Any) -> None:
        op = client.op
        op.output = output
        op.outcome = "ok"
        op.complete = self.cluster.now
        client.op = None
        self._timer(self.cluster.now + self.rng.randint(0, THINK), client.process, -1)

    # -- the end ---------------------------------------------------------------------

    def finish(self) -> None:
        """Stop issuing; every open operation gets its final outcome."""
        self.running = False
        for op in self.ops:
            if op.outcome == "open":
                op.outcome = "unknown" if op.maybe_applied else "fail"

    def check(self) -> None:
        """The history is linearizable, and stale reads saw committed prefixes."""
        self.finish()
        history = [op.to_history() for op in self.ops if op.f != "stale-get"]
        result = check(history, timeout=CHECK_SECONDS)
        if result.status == "violation":
            lines = [f"key {result.key!r}: no linearization places {result.op.describe()}",
                     "  after: " + "; ".join(o.describe() for o in result.prefix[-6:])]
            raise Violation("linearizability", "\n".join(lines))
        self.linearizability = result.status
        self._check_stale_reads()

    def _check_stale_reads(self) -> None:
        stale = [op for op in self.ops if op.f == "stale-get" and op.outcome == "ok"]
        if not stale:
            return
        applied = self.cluster.checker.applied  # index -> (term, data), everything applied anywhere
        store = KVStore()
        index = 0
        for op in sorted(stale, key=lambda op: op.applied_at):
            while index < op.applied_at:
                index += 1
                data = applied[index][1]
                if data:
                    store.apply(index, data)
            self._stale_matches(op, store)

    @staticmethod
    def _stale_matches(op: _Op, store: KVStore) -> None:
        want = _value(store.read({"op": "get", "key": op.key}))
        if op.output != want:
            raise Violation("stale read", f"process {op.process} read {op.key!r} = {op.output!r} at node {op.node}, "
                                          f"applied index {op.applied_at}; the committed log there gives {want!r}")

    # -- views -----------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        out = {"ok": 0, "fail": 0, "unknown": 0, "open": 0}
        for op in self.ops:
            out[op.outcome] += 1
        return out

    def timeline_ops(self) -> list[ClientOp]:
        return [ClientOp(op.process, op.node, op.f, op.key, op.invoke, op.complete, op.outcome) for op in self.ops]


def _value(answer: dict) -> str | None:
    v = answer.get("value")
    return None if v is None else v.decode()


__all__ = ["Mix", "Workload"]
