"""Snapshots through real nodes: what they cost a running cluster, and what
they buy a restart.

    python bench/snapshot_node.py stream [--mib 256] [--value-kib 64] [--fill puts|restore] [--keep DIR]
    python bench/snapshot_node.py restart [--entries 1000000] [--keys 100000] [--keep DIR]

``stream``: a 3-node local cluster (`raftnet serve` processes, fsync on) is
filled with about MIB MiB of values: through the cluster in VALUE_KIB
values (``--fill puts``), or, for the many-small-keys case, as a backup of
16-byte keys and 100-byte values (2.3 M keys at 256 MiB) that ``raftnet
snapshot restore`` seeds every node with (``--fill restore``, followed by
a few hundred puts so the next snapshot is newer); then

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
everything applied; then the same history written as a node under the
default ``[snapshot]`` policy leaves it (compacted every ``every_entries``
entries, ``trailing_entries`` kept, a snapshot at the end), timed again.
The ratio is what snapshots buy a restart.

Figures come from the nodes' own log lines; this asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
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


def _puts(c: Cluster, keys: list[str], value: bytes) -> None:
    async def fill():
        async with Client(c.addresses, timeout=60) as client:
            async with trio.open_nursery() as nursery:
                for w in range(8):
                    async def put(w=w):
                        for key in keys[w::8]:
                            await client.put(key, value)
                    nursery.start_soon(put)

    trio.run(fill)


def _seed_from_backup(c: Cluster, base: Path, mib: int) -> None:
    """Every node's data directory seeded with a backup of ``mib`` MiB of small keys."""
    sys.path.insert(0, str(ROOT / "bench"))
    from snapshot_gap import KEY_BYTES, VALUE_BYTES, build

    from raftnet.storage.snapshot import SnapshotMeta, write_snapshot

    n = (mib << 20) // (KEY_BYTES + VALUE_BYTES)
    t0 = time.monotonic()
    kv = build(n, "restore")
    path = write_snapshot(str(base), SnapshotMeta(kv.applied_index, 1, tuple(c.ids)), kv.snapshot())
    del kv
    for i in c.ids:
        r = raftnet("snapshot", "restore", path, "--config", str(c.config), "--id", str(i), timeout=600)
        if r.returncode:
            raise SystemExit(r.stderr)
    print(f"seeded {n} keys of {KEY_BYTES}+{VALUE_BYTES} B ({n * (KEY_BYTES + VALUE_BYTES) / 2**20:.0f} MiB) "
          f"into {len(c.ids)} data directories in {time.monotonic() - t0:.1f}s")


def stream(args) -> None:
    base = Path(args.keep or tempfile.mkdtemp(prefix="raftnet-snapbench-"))
    base.mkdir(parents=True, exist_ok=True)
    value = b"v" * (args.value_kib << 10)
    count = (args.mib << 20) // len(value)
    trailing = 100
    c = Cluster(base, nodes=3, log_level="info",
                snapshot={"every_entries": 10**9, "every_bytes": 1 << 40, "trailing_entries": trailing},
                limits={"max_frame_bytes": 16 << 20, "max_entry_bytes": max(1 << 20, 2 * len(value))},
                timing={"heartbeat_ms": 100, "election_timeout_ms": [1000, 2000]})
    if args.fill == "restore":
        _seed_from_backup(c, base, args.mib)
    c.start_all()
    try:
        leader = c.wait_for_leader(deadline=600)
        follower = next(i for i in c.ids if i != leader)
        c.kill(follower)
        t0 = time.monotonic()
        if args.fill == "restore":
            # A tail of new entries, longer than the trailing log: the follower will need the new snapshot.
            tail = [f"tail-{i:04d}" for i in range(3 * trailing)]
            _puts(c, tail, b"t" * 100)
            last_key, last_value = tail[-1], b"t" * 100  # the follower holds the seeded keys already
            print(f"wrote {3 * trailing} entries after the seeded snapshot in {time.monotonic() - t0:.1f}s")
        else:
            keys = [f"key-{i:08d}" for i in range(count)]
            _puts(c, keys, value)
            last_key, last_value = keys[-1], value
            print(f"filled {count} x {len(value)} B = {count * len(value) / 2**20:.0f} MiB "
                  f"in {time.monotonic() - t0:.1f}s")
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
                while await client.get(last_key, stale=True) != last_value:
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
    from raftnet.config import SnapshotSpec, parse_config
    from raftnet.core.messages import Entry
    from raftnet.core.ready import HardState
    from raftnet.jepsen.cluster import free_ports
    from raftnet.kv.store import KVStore, encode_command
    from raftnet.node import Node
    from raftnet.storage import Storage
    from raftnet.storage.snapshot import SnapshotMeta, write_snapshot

    base = Path(args.keep or tempfile.mkdtemp(prefix="raftnet-restartbench-"))
    base.mkdir(parents=True, exist_ok=True)
    policy = SnapshotSpec()
    segment_size = args.segment_mib << 20

    def history(name: str, snapshots: bool):
        """A data directory holding ``args.entries`` committed puts; with
        ``snapshots``, compacted as the default policy does while they were
        written (every ``every_entries``, ``trailing_entries`` kept), and a
        snapshot of the state at the last entry."""
        config = parse_config({"cluster": {"name": "bench"},
                               "nodes": [{"id": 1, "address": f"127.0.0.1:{free_ports(1)[0]}"}],
                               "storage": {"data_dir": str(base / name), "segment_size": segment_size},
                               "snapshot": {"every_entries": 10**9, "every_bytes": 1 << 40}})
        t0 = time.monotonic()
        storage = Storage.open(config.data_dir(1), cluster="bench", node_id=1, fsync="never",
                               segment_size=segment_size)
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
            if snapshots and index % policy.every_entries == 0 and index > policy.trailing_entries:
                storage.save(None, batch)
                batch = []
                # (Snapshot files but the last are skipped: only the compaction shapes the log.)
                storage.compact(index - policy.trailing_entries)
        storage.save(HardState(1, 1, args.entries), batch)
        if snapshots:
            write_snapshot(config.data_dir(1), SnapshotMeta(args.entries, 1, (1,)), kv.snapshot())
            storage.compact(args.entries - policy.trailing_entries)
        segments = len([n for n in os.listdir(config.data_dir(1)) if n.startswith("wal-")])
        first = storage.first_index
        storage.close()
        print(f"{name}: wrote {args.entries} entries in {time.monotonic() - t0:.1f}s; the log holds "
              f"{first}..{args.entries} in {segments} segment(s)")
        return config

    def timed(what: str, config) -> float:
        async def start() -> float:
            t = time.monotonic()
            async with Node(config, 1) as node:
                while node.raft.applied_index < args.entries:
                    await trio.sleep(0.01)
                return time.monotonic() - t

        runs = sorted(trio.run(start) for _ in range(args.runs))
        median = runs[len(runs) // 2]
        print(f"{what}: restart to all applied, median of {args.runs}: {median:.2f}s "
              f"[{runs[0]:.2f}..{runs[-1]:.2f}]")
        return median

    without = timed("log only", history("log-only", snapshots=False))
    with_snapshot = timed("snapshot", history("snapshots", snapshots=True))
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
    s.add_argument("--fill", choices=("puts", "restore"), default="puts",
                   help="puts: VALUE_KIB values through the cluster; restore: a backup of small keys")
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
