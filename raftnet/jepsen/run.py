"""One Jepsen-style run: a cluster, workers, a nemesis; then heal, wait
for the cluster to settle, check convergence and linearizability.

The verdict (``RunResult.problems`` empty when the run passed):

* the history (every client operation, plus a final linearizable read of
  every key used) is linearizable, per ``raftnet.check``; an undecided
  check (search budget spent) is a problem too;
* after the faults heal, every node reaches the same applied index, and
  every node's own copy of every key equals the final linearizable read
  (so every acknowledged write that the history says survives is on every
  node);
* no node exited by itself (a crash of ours).

On a problem the run directory keeps the history, each node's log and a
summary, and says where.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

from ..check import check
from ..client import Client, ClientError
from ..excgroups import leaf
from .cluster import Cluster
from .nemesis import NEMESES, Nemesis, leader_of
from .workload import History, Keys, Worker

SETTLE_SECONDS = 30.0


@dataclass
class RunResult:
    seed: int
    nodes: int
    duration: float
    directory: Path
    ops: int = 0
    outcomes: dict = field(default_factory=dict)
    faults: dict = field(default_factory=dict)
    check_status: str = ""
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())) or "none"
        verdict = "PASS" if not self.problems else "FAIL: " + "; ".join(self.problems)
        return (f"seed {self.seed} nodes {self.nodes} {self.duration:.0f}s: {self.ops} ops "
                f"({', '.join(f'{k} {v}' for k, v in sorted(self.outcomes.items()))}); faults: {faults}; "
                f"history {self.check_status}; {verdict}")


async def run(directory: Path, *, nodes: int = 3, duration: float = 20.0, nemeses: list[str] | None = None,
              seed: int | None = None, workers: int | None = None, broken: str | None = None,
              check_timeout: float = 60.0, keep: bool = False) -> RunResult:
    seed = random.randrange(1 << 30) if seed is None else seed
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    result = RunResult(seed, nodes, duration, directory)
    cluster = Cluster(directory, nodes, random.Random(rng.random()), broken=broken)
    history, keys = History(), Keys()
    crew = [Worker(n, cluster.addresses, cluster.ids, history, keys, random.Random(rng.random()))
            for n in range(workers or 2 * nodes)]
    nemesis = Nemesis(cluster, crew, nemeses or list(NEMESES), random.Random(rng.random()))
    crashed: list = []
    try:
        async with trio.open_nursery() as nursery:
            for link in cluster.network.links.values():
                await nursery.start(link.serve)
            for i in cluster.ids:
                cluster.start(i)
            await _wait_for_leader(cluster)
            until = time.monotonic() + duration
            async with trio.open_nursery() as load:
                for w in crew:
                    load.start_soon(w.run, until)
                load.start_soon(nemesis.run, until)
            nemesis.heal()
            await _settle(cluster, result)
            await _final_reads(cluster, keys, history, result)
            nursery.cancel_scope.cancel()
        crashed = cluster.exited()  # before we stop them ourselves
    except* Exception as group:  # the run cannot go on (no leader at all, say): a failed run, kept
        first = leaf(group)
        result.problems.append(f"the run stopped: {type(first).__name__}: {first}")
        crashed = cluster.exited()
    finally:
        cluster.stop()
    if crashed:
        result.problems.append(f"nodes exited by themselves (node, exit code): {crashed}")
    result.ops = len(history.ops)
    result.outcomes = history.counts()
    result.faults = dict(nemesis.counts)
    verdict = await trio.to_thread.run_sync(lambda: check(history.ops, timeout=check_timeout))
    result.check_status = verdict.status
    if verdict.status != "ok":
        result.problems.append(f"history {verdict.status}" + (f" on key {verdict.key}" if verdict.key else ""))
    _write(directory, history, result, nemesis)
    if not result.problems and not keep:
        for i in cluster.ids:
            shutil.rmtree(directory / f"node-{i}", ignore_errors=True)
    return result


async def _wait_for_leader(cluster: Cluster, seconds: float = SETTLE_SECONDS) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        leader = await leader_of(cluster)
        if leader is not None:
            return leader
        await trio.sleep(0.1)
    raise RuntimeError(f"no leader within {seconds:.0f}s")


async def _settle(cluster: Cluster, result: RunResult) -> None:
    """Wait until one leader and every node at the same applied index."""
    deadline = time.monotonic() + SETTLE_SECONDS
    applied: dict = {}
    while time.monotonic() < deadline:
        async with Client(cluster.addresses, timeout=1.0) as c:
            status = await c.status()
        applied = {i: st.get("applied") for i, st in status.items()}
        leaders = [i for i, st in status.items() if st.get("role") == "leader"]
        if len(leaders) == 1 and None not in applied.values() and len(set(applied.values())) == 1:
            return
        await trio.sleep(0.2)
    result.problems.append(f"the cluster did not converge within {SETTLE_SECONDS:.0f}s: applied {applied}")


async def _final_reads(cluster: Cluster, keys: Keys, history: History, result: RunResult) -> None:
    """A linearizable read of every key (into the history), then each
    node's own copy of it, which must agree."""
    process = history.new_process()
    final: dict[str, str | None] = {}
    async with Client(cluster.addresses, timeout=5.0) as c:
        for key in sorted(keys.used):
            invoke = time.monotonic()
            try:
                value = await c.get(key)
            except ClientError as exc:
                result.problems.append(f"final read of {key} failed: {exc}")
                continue
            final[key] = None if value is None else value.decode()
            history.ops.append({"process": process, "f": "get", "key": key, "value": None, "expected": None,
                                "output": final[key], "outcome": "ok", "invoke": invoke,
                                "complete": time.monotonic()})
    for i in cluster.ids:
        async with Client([cluster.address(i)], timeout=5.0) as c:
            for key, want in final.items():
                try:
                    value = await c.get(key, stale=True)
                except ClientError as exc:
                    result.problems.append(f"node {i}: reading its copy of {key} failed: {exc}")
                    break
                got = None if value is None else value.decode()
                if got != want:
                    result.problems.append(f"node {i} holds {key}={got!r}, the cluster says {want!r}")


def _write(directory: Path, history: History, result: RunResult, nemesis: Nemesis) -> None:
    with open(directory / "history.jsonl", "w") as f:
        for op in history.ops:
            f.write(json.dumps(op, separators=(",", ":")) + "\n")
    (directory / "nemesis.log").write_text("\n".join(nemesis.log) + "\n")
    (directory / "summary.json").write_text(json.dumps({
        "seed": result.seed, "nodes": result.nodes, "duration": result.duration, "ops": result.ops,
        "outcomes": result.outcomes, "faults": result.faults, "check": result.check_status,
        "problems": result.problems,
    }, indent=1) + "\n")
