"""Put latency and throughput against a real local cluster (fsync on).

    python bench/cluster.py [--nodes 3] [--sequential 500] [--clients 32]
                            [--puts-per-client 100] [--size 100] [--runs 3]
                            [--fsync batch|always|never] [--keep DIR]

Starts NODES `raftnet serve` processes on loopback (fresh data dirs in a
temporary directory), then per run:

* sequential: one client, one put at a time: p50 / p99 latency;
* concurrent: CLIENTS tasks sharing one Client, each doing PUTS-PER-CLIENT
  puts: total puts per second.

Prints one line per run and, last, the medians over runs:
    sequential_p50_ms=<x> sequential_p99_ms=<y> concurrent_puts_per_s=<z>
This is a rough harness for notes, not a test: it asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

from raftnet.client import Client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from cluster_harness import Cluster  # noqa: E402 - the integration tests' process harness


async def wait_for_leader(client: Client, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            st = await client.status()
            if any(s.get("role") == "leader" for s in st.values()):
                return
        except Exception:  # noqa: BLE001 - the cluster is still starting
            pass
        await trio.sleep(0.1)
    raise SystemExit("no leader within the deadline")


async def one_run(addresses: list[str], args) -> tuple[float, float, float]:
    value = os.urandom(args.size)
    async with Client(addresses, timeout=30.0) as client:
        await wait_for_leader(client, time.monotonic() + 30)
        latencies = []
        for i in range(args.sequential):
            t0 = time.perf_counter()
            await client.put(f"seq-{i}", value)
            latencies.append(time.perf_counter() - t0)
        latencies.sort()
        p50 = latencies[len(latencies) // 2] * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000

        async def worker(w: int) -> None:
            for i in range(args.puts_per_client):
                await client.put(f"c{w}-{i}", value)

        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for w in range(args.clients):
                nursery.start_soon(worker, w)
        elapsed = time.perf_counter() - t0
        rate = args.clients * args.puts_per_client / elapsed
    return p50, p99, rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--sequential", type=int, default=500)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--puts-per-client", type=int, default=100)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--fsync", choices=["batch", "always", "never"], default="batch")
    p.add_argument("--keep", type=Path, help="Keep the cluster's data here instead of a temporary directory.")
    args = p.parse_args()

    directory = args.keep or Path(tempfile.mkdtemp(prefix="raftnet-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(directory, args.nodes, fsync=args.fsync, timing={}, log_level="warning", name="bench")
    try:
        cluster.start_all()
        addresses = cluster.addresses
        results = []
        for run in range(args.runs):
            p50, p99, rate = trio.run(one_run, addresses, args)
            print(f"run={run + 1} sequential_p50_ms={p50:.2f} sequential_p99_ms={p99:.2f} "
                  f"concurrent_puts_per_s={rate:.0f}", flush=True)
            results.append((p50, p99, rate))
        med = [statistics.median(r[i] for r in results) for i in range(3)]
        print(f"nodes={args.nodes} fsync={args.fsync} size={args.size} clients={args.clients} runs={args.runs}")
        print(f"sequential_p50_ms={med[0]:.2f} sequential_p99_ms={med[1]:.2f} concurrent_puts_per_s={med[2]:.0f}")
    finally:
        cluster.stop_all()


if __name__ == "__main__":
    main()
