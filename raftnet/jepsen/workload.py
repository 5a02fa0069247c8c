"""Client workers, and the history they record.

Each worker is one client session (a ``raftnet.client.Client``) doing
put, get (linearizable), cas and delete on a small key set that rotates
every few seconds (so each key's history stays small enough to check),
with unique values. A fifth of the gets are sent to one named node
(``target``): a correct node that is not the leader refuses them, so a node
that serves reads it cannot vouch for shows up as a stale read.

Every operation is recorded in the history format of ``raftnet check``
(docs/check.md): invoke and complete on the harness's monotonic clock;
``ok`` with its output, ``fail`` when it certainly had no effect, and
``unknown`` when it may have (a client ``Timeout``, or a write whose reply
was lost: ``maybe_applied``).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import trio

from ..client import Client, ClientError

OP_TIMEOUT = 2.0


@dataclass
class History:
    ops: list[dict] = field(default_factory=list)
    _processes: int = 0

    def new_process(self) -> int:
        self._processes += 1
        return self._processes

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for op in self.ops:
            out[op["outcome"]] = out.get(op["outcome"], 0) + 1
        return out


class Keys:
    """The rotating key set: ``per_generation`` keys, a new set every ``seconds``."""

    def __init__(self, per_generation: int = 3, seconds: float = 4.0):
        self.per_generation, self.seconds = per_generation, seconds
        self.start = time.monotonic()
        self.used: set[str] = set()

    def pick(self, rng: random.Random) -> str:
        gen = int((time.monotonic() - self.start) / self.seconds)
        key = f"k{gen}-{rng.randrange(self.per_generation)}"
        self.used.add(key)
        return key


class Worker:
    def __init__(self, n: int, addresses: list[str], node_ids: list[int], history: History, keys: Keys,
                 rng: random.Random):
        self.n, self.addresses, self.node_ids = n, addresses, node_ids
        self.history, self.keys, self.rng = history, keys, rng
        self.op_scope: trio.CancelScope | None = None  # the nemesis's handle to kill a request mid-flight
        self.seen: dict[str, str | None] = {}
        self._count = 0

    async def run(self, until: float) -> None:
        while time.monotonic() < until:
            process = self.history.new_process()
            async with Client(self.addresses, timeout=OP_TIMEOUT) as client:
                killed = await self._session(client, process, until)
            if not killed:
                return

    async def _session(self, client: Client, process: int, until: float) -> bool:
        """Operations until ``until``; True if the nemesis killed the client mid-request."""
        while time.monotonic() < until:
            op = self._next_op()
            with trio.CancelScope() as scope:
                self.op_scope = scope
                await self._do(client, process, op)
            self.op_scope = None
            if scope.cancelled_caught:
                return True
            await trio.sleep(self.rng.uniform(0, 0.02))
        return False

    def _next_op(self) -> dict:
        key = self.keys.pick(self.rng)
        self._count += 1
        value = f"w{self.n}-{self._count}"
        r = self.rng.random()
        if r < 0.4:
            target = self.rng.choice(self.node_ids) if self.rng.random() < 0.2 else None
            return {"f": "get", "key": key, "target": target}
        if r < 0.7:
            return {"f": "put", "key": key, "value": value}
        if r < 0.9:
            expected = self.seen.get(key) if self.rng.random() < 0.8 else None
            return {"f": "cas", "key": key, "value": value, "expected": expected}
        return {"f": "delete", "key": key}

    async def _do(self, client: Client, process: int, op: dict) -> None:
        f, key = op["f"], op["key"]
        rec = {"process": process, "f": f, "key": key, "value": op.get("value"), "expected": op.get("expected"),
               "output": None, "outcome": "unknown", "invoke": time.monotonic(), "complete": None}
        self.history.ops.append(rec)  # an op cut short by the nemesis stays unknown, with no completion
        try:
            if f == "get":
                if op["target"] is not None:
                    async with Client(self.addresses, timeout=OP_TIMEOUT / 2, target=op["target"]) as pinned:
                        out = await pinned.get(key)
                else:
                    out = await client.get(key)
                rec["output"] = None if out is None else out.decode()
                self.seen[key] = rec["output"]
            elif f == "put":
                await client.put(key, op["value"].encode())
            elif f == "cas":
                expected = None if op["expected"] is None else op["expected"].encode()
                rec["output"] = await client.cas(key, expected, op["value"].encode())
            else:
                rec["output"] = await client.delete(key)
            rec["outcome"] = "ok"
        except ClientError as exc:
            # A read never has an effect; a write whose fate is unknown may have.
            rec["outcome"] = "unknown" if f != "get" and exc.maybe_applied else "fail"
            rec["output"] = None
        if rec["outcome"] != "unknown":
            rec["complete"] = time.monotonic()
