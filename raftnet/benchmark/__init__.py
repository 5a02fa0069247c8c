"""``raftnet bench``: drive a cluster with a workload and measure it.

One run: wait for a leader that serves, start the load (``load.py``), take
the CPU counters of this process and (for a local cluster) of every node,
and each node's WAL counters, when the warmup ends and again at the end;
then turn them into a record (``report.py``): throughput, latency
percentiles, errors by kind, CPU per operation, the leader's fsyncs per
second and entries per fsync, and a per-second series.
"""

from __future__ import annotations

import sys

import trio

from .cluster import LocalCluster, cluster_status, wait_for_leader
from .cpu import own_cpu
from .load import WORKLOADS, Load, LoadSpec
from .report import clean, result_record

__all__ = ["WORKLOADS", "LoadSpec", "LocalCluster", "measure"]


async def measure(spec: LoadSpec, addresses: list[str], *, secret: bytes | None = None,
                  local: LocalCluster | None = None, leader_only: bool = False,
                  progress: bool = False, wait_leader: float = 60.0) -> dict:
    """One run of ``spec`` against the cluster at ``addresses``; the record.
    TimeoutError if no leader serves within ``wait_leader`` seconds."""
    status = await wait_for_leader(addresses, secret, deadline=wait_leader)
    leader = next(i for i, s in status.items() if s.get("role") == "leader")
    lead_address = status[leader]["address"]
    targets = [lead_address] if leader_only else addresses
    load = Load(spec, targets, secret=secret)
    before: dict = {}

    async def on_start() -> None:
        before["generator"] = own_cpu()
        before["nodes"] = local.cpu() if local is not None else {}
        before["rss"] = local.rss_mib() if local is not None else {}
        before["status"] = await cluster_status(addresses, secret)

    async with trio.open_nursery() as nursery:
        if progress:
            nursery.start_soon(_progress, load)
        recorder = await load.run(on_start)
        nursery.cancel_scope.cancel()
    generator = own_cpu() - before["generator"]
    after_nodes = local.cpu() if local is not None else {}
    rss = {i: [before["rss"].get(i), mib] for i, mib in (local.rss_mib() if local is not None else {}).items()}
    after_status = await cluster_status(addresses, secret)
    if progress:
        print(file=sys.stderr)

    summary = recorder.summary()
    ops = max(1, summary["ops"])
    node_cpu = {i: after_nodes[i] - before["nodes"][i] for i in after_nodes
                if after_nodes[i] is not None and before["nodes"].get(i) is not None}
    cpu = {"leader": leader, "generator_seconds": generator, "generator_cores": generator / recorder.elapsed,
           "node_seconds": node_cpu, "node_rss_mib": rss,
           "per_op_us": {"generator": generator / ops * 1e6,
                         "nodes": {i: s / ops * 1e6 for i, s in node_cpu.items()},
                         "all_nodes": sum(node_cpu.values()) / ops * 1e6 if node_cpu else None}}
    target = {"addresses": addresses, "leader_only": leader_only, "leader": leader,
              "local": None if local is None else {"nodes": len(local.ids), "fsync": local.config.storage.fsync}}
    return clean(result_record(spec, target, summary, cpu,
                               _wal(before["status"].get(leader), after_status.get(leader), recorder.elapsed),
                               recorder.series()))


def _wal(before: dict | None, after: dict | None, seconds: float) -> dict | None:
    """The leader's WAL activity over the run, if it led throughout."""
    if not before or not after or "wal" not in before or "wal" not in after or after.get("role") != "leader":
        return None
    d = {k: after["wal"][k] - before["wal"][k] for k in ("saves", "entries", "fsyncs")}
    return {**d, "fsyncs_per_s": d["fsyncs"] / seconds, "entries_per_fsync": d["entries"] / max(1, d["fsyncs"]),
            "entries_per_save": d["entries"] / max(1, d["saves"])}


async def _progress(load: Load) -> None:
    """Once a second on a terminal: elapsed, operations, ops/s, the last second's p99."""
    rec = load.recorder
    while True:
        await trio.sleep(1.0)
        now = trio.current_time()
        if now < rec.started:
            print(f"\r  warming up ({load.spec.warmup:g} s)...", end="", file=sys.stderr, flush=True)
            continue
        k = int(now - rec.started) - 1
        last = rec.seconds[k] if 0 <= k < len(rec.seconds) else None
        p99 = ""
        if last is not None and last.latencies:
            ordered = sorted(last.latencies)
            p99 = f", p99 {ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000:.1f} ms"
        rate = len(last.latencies) if last is not None else 0
        print(f"\r  {now - rec.started:6.1f} s  {len(rec.latencies):>10,} ops  {rate:>8,} ops/s{p99}   ",
              end="", file=sys.stderr, flush=True)
