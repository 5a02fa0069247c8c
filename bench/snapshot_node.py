"""Snapshots through real nodes: what they cost a running cluster, and what
they buy a restart.

    python bench/snapshot_node.py stream [--mib 256] [--value-kib 64] [--keep DIR]
    python bench/snapshot_node.py restart [--entries 1000000] [--keys 100000] [--keep DIR]

``stream``: a 3-node local cluster (`raftnet serve` processes, fsync on) is
filled with about MIB MiB of values; then

1. ``raftnet snapshot trigger`` on the leader: the file's size, how long it
   took, and the longest delay of the leader's ticker while it was written
   (heartbeats and election timers run on those ticks);
2. a follower, stopped before the fill (so the leader's log is compacted
   past it), is restarted: the leader streams the snapshot to it. (Not a
   wiped data directory: a node that lost what it persisted is outside
   Raft's model and must be removed and re-added as a new member.) Printed: transfer and install times,
   the longest tick delays on both sides, and the time from restart to the
   follower serving the last key.

``restart``: a single node's data directory with ENTRIES committed put
entries (100-byte values over KEYS keys) in the WAL, timed from start to
everything applied; then the same history behind a snapshot at its end
(the segments it covers deleted; the last segment stays, as compaction
leaves it), timed again. The ratio is what snapshots buy a restart.

Figures come from the nodes' own log lines; this asserts nothing about time.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from cluster_harness import Cluster, raftnet  # noqa: E402 - the integration tests' process harness

from raftnet.client import Client  # noqa: E402


def _last(pattern: str, text: str, longest: bool = False) -> re.Match:
    """The last line matching; with ``longest``, the one whose group 2 (a
    duration) is largest: a follower still installing may be asked again,
    and answers at once that it has every byte."""
    found = list(re.finditer(pattern, text))
    if not found:
        raise SystemExit(f"no log line matches {pattern!r}")
    return max(found, key=lambda m: float(m[2])) if longest else found[-1]


def stream(args) -> None:
    base = Path(args.keep or tempfile.mkdtemp(prefix="raftnet-snapbench-"))
    base.mkdir(parents=True, exist_ok=True)
    value = b"v" * (args.value_kib << 10)
    count = (args.mib << 20) // len(value)
    c = Cluster(base, nodes=3, log_level="info",
                snapshot={"every_entries": 10**9, "every_bytes": 1 << 40, "trailing_entries": 100},
                limits={"max_frame_bytes": 16 << 20, "max_entry_bytes": max(1 << 20, 2 * len(value))})
    c.start_all()
    try:
        leader = c.wait_for_leader()
        follower = next(i for i in c.ids if i != leader)
        c.kill(follower)
        t0 = time.monotonic()

        async def fill():
            async with Client(c.addresses, timeout=60) as client:
                async with trio.open_nursery() as nursery:
                    for w in range(8):
                        async def put(w=w):
                            for i in range(w, count, 8):
                                await client.put(f"key-{i:08d}", value)
                        nursery.start_soon(put)

        trio.run(fill)
        print(f"filled {count} x {len(value)} B = {count * len(value) / 2**20:.0f} MiB in {time.monotonic() - t0:.1f}s")
        r = raftnet("snapshot", "trigger", "--config", str(c.config), "--timeout", "600", timeout=700)
        if r.returncode:
            raise SystemExit(r.stderr)
        print("trigger:", r.stdout.strip())
        m = _last(r"took snapshot (\d+) \(term \d+, (\d+) bytes\) in ([\d.]+)s.*longest tick delay meanwhile ([\d.]+) ms",
                  c.log_text(leader))
        print(f"snapshot_bytes={m[2]} snapshot_write_s={m[3]} leader_tick_delay_while_writing_ms={m[4]}")

        t1 = time.monotonic()
        c.start(follower)

        async def wait_served():
            async with Client([c.addresses[follower - 1]], timeout=600) as client:
                last = f"key-{count - 1:08d}"
                while await client.get(last, stale=True) != value:
                    await trio.sleep(0.05)

        trio.run(wait_served)
        caught_up = time.monotonic() - t1
        lead_log, fol_log = c.log_text(leader), c.log_text(follower)
        sent = _last(r"sent snapshot \d+ to peer \d+: (\d+) bytes in ([\d.]+)s", lead_log, longest=True)
        lag = max(re.findall(r"longest tick delay while streaming to peer \d+: ([\d.]+) ms", lead_log), key=float)
        inst = _last(r"installed snapshot \d+ \(term \d+\) in ([\d.]+)s; longest tick delay meanwhile ([\d.]+) ms",
                     fol_log)
        print(f"transfer_bytes={sent[1]} transfer_s={sent[2]} leader_tick_delay_while_streaming_ms={lag} "
              f"install_s={inst[1]} follower_tick_delay_while_installing_ms={inst[2]} "
              f"restart_to_serving_s={caught_up:.2f}")
        c.assert_alive()
    finally:
        c.stop_all()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


def restart(args) -> None:
    from raftnet.config import parse_config
    from raftnet.jepsen.cluster import free_ports
    from raftnet.core.messages import Entry
    from raftnet.core.ready import HardState
    from raftnet.kv.store import KVStore, encode_command
    from raftnet.node import Node
    from raftnet.storage import Storage
    from raftnet.storage.snapshot import SnapshotMeta, write_snapshot

    base = Path(args.keep or tempfile.mkdtemp(prefix="raftnet-restartbench-"))
    base.mkdir(parents=True, exist_ok=True)
    config = parse_config({"cluster": {"name": "bench"}, "nodes": [{"id": 1, "address": f"127.0.0.1:{free_ports(1)[0]}"}],
                           "storage": {"data_dir": str(base / "node-{id}"), "segment_size": args.segment_mib << 20},
                           "snapshot": {"every_entries": 10**9, "every_bytes": 1 << 40}})
    data_dir = config.data_dir(1)
    t0 = time.monotonic()
    storage = Storage.open(data_dir, cluster="bench", node_id=1, fsync="never", segment_size=args.segment_mib << 20)
    kv = KVStore()
    batch = [Entry(1, 1, encode_command("register"))]
    kv.apply(1, batch[0].data)
    value = b"x" * 100
    for index in range(2, args.entries + 1):
        e = Entry(index, 1, encode_command("put", key=f"key-{index % args.keys:08d}", value=value, client=1,
                                           seq=index - 1))
        kv.apply(index, e.data)
        batch.append(e)
        if len(batch) == 10_000:
            storage.save(None, batch)
            batch = []
    storage.save(HardState(1, 1, args.entries), batch)
    storage.close()
    print(f"wrote {args.entries} entries in {time.monotonic() - t0:.1f}s")

    async def start() -> float:
        t = time.monotonic()
        async with Node(config, 1) as node:
            while node.raft.applied_index < args.entries:
                await trio.sleep(0.01)
            return time.monotonic() - t

    def timed(what: str) -> float:
        runs = sorted(trio.run(start) for _ in range(args.runs))
        median = runs[len(runs) // 2]
        print(f"{what}: restart to all applied, median of {args.runs}: {median:.2f}s "
              f"[{runs[0]:.2f}..{runs[-1]:.2f}]")
        return median

    without = timed("log only")
    write_snapshot(data_dir, SnapshotMeta(args.entries, 1, (1,)), kv.snapshot())
    storage = Storage.open(data_dir, cluster="bench", node_id=1, segment_size=args.segment_mib << 20)
    removed = storage.compact(args.entries)
    storage.close()
    print(f"snapshot at {args.entries} taken; {removed} WAL segments deleted")
    with_snapshot = timed("snapshot")
    print(f"restart_log_only_s={without:.2f} restart_from_snapshot_s={with_snapshot:.2f} "
          f"ratio={without / with_snapshot:.1f}")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("stream")
    s.add_argument("--mib", type=int, default=256)
    s.add_argument("--value-kib", type=int, default=64)
    s.add_argument("--keep", help="keep the cluster's directory here")
    r = sub.add_parser("restart")
    r.add_argument("--entries", type=int, default=1_000_000)
    r.add_argument("--keys", type=int, default=100_000)
    r.add_argument("--runs", type=int, default=3)
    r.add_argument("--segment-mib", type=int, default=64, help="WAL segment size ([storage] segment_size)")
    r.add_argument("--keep", help="keep the data directory here")
    args = p.parse_args()
    stream(args) if args.what == "stream" else restart(args)


if __name__ == "__main__":
    main()
