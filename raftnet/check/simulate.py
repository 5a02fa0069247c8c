"""Linearizable histories from a simulated key-value store, for tests and
the benchmark.

Clients (processes) run one op at a time against an atomic store. Each op
takes effect at one instant inside its interval (so the history is
linearizable by construction), except that some ops fail (no effect) and
some end unknown: the client gives up after a timeout, the op takes effect
at some point up to two timeouts after its call, or never, and the client
is replaced by a fresh process, as a Jepsen client would be. A history is
a pure function of its arguments.

``with_stale_read`` turns such a history into one with a known violation.
"""

from __future__ import annotations

import dataclasses
import heapq
import random

from .history import Op

LATENCY = 0.005  # mean seconds an ok op takes
THINK = 0.001  # mean seconds between a client's ops
TIMEOUT = 0.05  # when a client gives up on an op


def linearizable_history(seed: int, ops: int = 20_000, keys: int = 50, processes: int = 10,
                         unknown: float = 0.02, fail: float = 0.01, values: int | None = None) -> list[Op]:
    """``ops`` ops over ``keys`` keys from ``processes`` concurrent clients.

    ``unknown`` and ``fail`` are the fractions of ops with those outcomes.
    Every write writes a value never written before, or with ``values`` one
    of that many (so values repeat). Ops are ordered by invoke time.
    """
    rng = random.Random(seed)
    store: dict[str, str] = {}
    written = 0
    heap: list[tuple[float, int, str, object]] = []
    seq = 0
    made: list[dict] = []

    def at(t: float, action: str, what: object) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(heap, (t, seq, action, what))

    def new_value() -> str:
        nonlocal written
        written += 1
        return f"v{written if values is None else rng.randrange(values)}"

    def invoke(t: float, process: int) -> None:
        key = f"k{rng.randrange(keys)}"
        f = rng.choices(("get", "put", "cas", "delete"), (40, 30, 20, 10))[0]
        op = {"process": process, "f": f, "key": key, "value": None, "expected": None, "output": None,
              "invoke": t, "complete": None}
        if f in ("put", "cas"):
            op["value"] = new_value()
        if f == "cas":
            current = store.get(key)
            op["expected"] = current if rng.random() < 0.6 else rng.choice((None, f"v{rng.randrange(max(written, 1))}"))
        made.append(op)
        r = rng.random()
        if r < fail:
            op["outcome"] = "fail"
            at(t + rng.expovariate(1 / LATENCY), "complete", op)
        elif r < fail + unknown:
            op["outcome"] = "unknown"
            if rng.random() < 0.5:
                at(t + rng.uniform(0, 2 * TIMEOUT), "effect", op)
            if rng.random() < 0.5:
                op["complete"] = t + TIMEOUT
            at(t + TIMEOUT, "give up", op)
        else:
            op["outcome"] = "ok"
            latency = rng.expovariate(1 / LATENCY)
            at(t + rng.uniform(0, latency), "effect", op)
            at(t + latency, "complete", op)

    def effect(op: dict) -> None:
        key, f, present = op["key"], op["f"], op["key"] in store
        if f == "get":
            output = store.get(key)
        elif f == "put":
            store[key], output = op["value"], None
        elif f == "delete":
            store.pop(key, None)
            output = present
        else:
            output = store.get(key) == op["expected"]
            if output:
                store[key] = op["value"]
        if op["outcome"] == "ok":
            op["output"] = output

    for process in range(processes):
        at(rng.uniform(0, THINK), "invoke", process)
    next_process = processes
    while heap:
        t, _, action, what = heapq.heappop(heap)
        if action == "invoke":
            if len(made) < ops:
                invoke(t, what)
        elif action == "effect":
            effect(what)
        elif action == "complete":
            what["complete"] = t
            at(t + rng.expovariate(1 / THINK), "invoke", what["process"])
        else:  # give up: this client is gone, a fresh one takes its place
            at(t + rng.expovariate(1 / THINK), "invoke", next_process)
            next_process += 1
    # Rounding keeps every real-time order or turns it into concurrency,
    # never reverses one, so the history stays linearizable.
    return [Op(o["process"], o["f"], o["key"], o["value"], o["expected"], o["output"], o["outcome"],
               round(o["invoke"], 6), None if o["complete"] is None else round(o["complete"], 6), line)
            for line, o in enumerate(made, 1)]


def with_stale_read(ops: list[Op]) -> tuple[list[Op], str]:
    """The history with one ok get in its second half made to return the
    value of an ok put that another ok put overwrote, both before the get
    began; and that get's key. Needs unique values (the default of
    ``linearizable_history``): then nothing can have written it back, so the
    history is certainly not linearizable."""
    for get in ops[len(ops) // 2:]:
        if get.f != "get" or get.outcome != "ok":
            continue
        puts = [o for o in ops if o.key == get.key and o.f == "put" and o.outcome == "ok" and o.complete < get.invoke]
        for later in reversed(puts):
            older = [o for o in puts if o.complete < later.invoke and o.value != later.value]
            if older:
                stale = dataclasses.replace(get, output=older[-1].value)
                return [stale if o is get else o for o in ops], get.key
    raise ValueError("no get in the history can be made stale")
