"""What a KVStore snapshot costs the event loop.

    python bench/snapshot_gap.py --mib 256 [--rate 3000] [--fill apply|restore] [--dir D]

Builds a KVStore holding about MIB MiB of keys and values (16-byte keys,
100-byte values), by applying put commands from a registered session
(``--fill apply``) or, faster, by restoring synthesized blobs (``--fill
restore``). Then, under trio, with a heartbeat task that sleeps 1 ms at a
time and records the longest gap between its wakes (what an election or
heartbeat timer would see) and a writer applying about RATE puts per
second (half to keys that exist at snapshot time, half to new ones):

1. calls ``snapshot()`` on the loop and times the call;
2. writes the view to a snapshot file in a worker thread
   (``raftnet.storage.snapshot.write_snapshot``, fsynced; framed blobs of
   its own if that module is missing); loop gaps are reported for the
   iteration (``gap_snapshot_ms``) and for the fsync and rename after it
   (``gap_sync_ms``) apart;
3. keeps going until the overlay is folded back (``fold_ms`` after the
   view's release; ``apply_max_fold_ms`` is the longest apply meanwhile,
   ``apply_max_baseline_ms`` the longest before the snapshot);
4. restores the file into a fresh store in a worker thread, and checks
   that it holds the values as of the snapshot and the live store every
   write.

The last line is ``key=value`` pairs of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import struct
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator

import cbor2
import trio

from raftnet.kv import KVStore, encode_command

KEY_BYTES, VALUE_BYTES = 16, 100
TICK = 0.001

try:
    from raftnet.storage.snapshot import SnapshotMeta, read_snapshot, write_snapshot
except ImportError:  # the storage layer's snapshots are not there yet: frame the blobs here
    SnapshotMeta = read_snapshot = write_snapshot = None

FRAME = struct.Struct(">I")


def key_of(i: int) -> str:
    return f"{i:016x}"


def value_of(i: int, salt: int = 0) -> bytes:
    return (b"%015d:%d:" % (i, salt)).ljust(VALUE_BYTES, b"v")


def build(n: int, fill: str) -> KVStore:
    kv = KVStore()
    if fill == "apply":
        kv.apply(1, encode_command("register"))
        for i in range(n):
            kv.apply(i + 2, encode_command("put", key=key_of(i), value=value_of(i), client=1, seq=i + 1))
    else:
        header = {"kind": "raftnet.kv", "version": 1, "applied": n + 1, "sessions": 1, "keys": n}
        blobs = [cbor2.dumps(header), cbor2.dumps([[1, n + 1, n + 1, []]])]
        for start in range(0, n, 4096):
            blobs.append(cbor2.dumps([x for i in range(start, min(n, start + 4096))
                                      for x in (key_of(i), value_of(i))]))
        kv.restore(blobs)
    return kv


def write_file(directory: str, index: int, blobs: Iterable[bytes]) -> str:
    if write_snapshot is not None:
        return write_snapshot(directory, SnapshotMeta(index=index, term=1, voters=(1,)), blobs)
    path = os.path.join(directory, f"kv-{index}.blobs")
    with open(path, "wb") as f:
        for blob in blobs:
            f.write(FRAME.pack(len(blob)))
            f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    return path


def read_file(path: str) -> Iterator[bytes]:
    if read_snapshot is not None:
        yield from read_snapshot(path)[1]
        return
    with open(path, "rb") as f:
        while head := f.read(FRAME.size):
            yield f.read(FRAME.unpack(head)[0])


class Heartbeat:
    """Wakes every TICK and keeps (wake time, gap since the previous wake)."""

    def __init__(self) -> None:
        self.wakes: list[tuple[float, float]] = []

    async def run(self) -> None:
        last = time.perf_counter()
        while True:
            await trio.sleep(TICK)
            now = time.perf_counter()
            self.wakes.append((now, now - last))
            last = now

    def longest(self, start: float, end: float) -> float:
        """The longest gap overlapping [start, end], in ms."""
        return max((gap for at, gap in self.wakes if at > start and at - gap < end), default=0.0) * 1e3


async def bench(kv: KVStore, n: int, rate: int, directory: str) -> dict[str, object]:
    heartbeat = Heartbeat()
    out: dict[str, object] = {}
    t: dict[str, float] = {}  # when each phase began or ended
    written: dict[str, bytes] = {}  # the last value the writer put, by key
    index, client = kv.applied_index, 1
    seq = kv.sessions[client].floor

    async def writer() -> None:
        nonlocal index, seq
        start, k = time.perf_counter(), 0
        while True:
            for _ in range(int(rate * (time.perf_counter() - start)) - k):  # keep up with the rate
                k += 1
                key = key_of(k * 7919 % n) if k % 2 else f"new-{k:012d}"
                index += 1
                seq += 1
                command = encode_command("put", key=key, value=value_of(k, salt=1), client=client, seq=seq)
                began = time.perf_counter()
                kv.apply(index, command)
                took = (time.perf_counter() - began) * 1e3
                window = "fold" if "released" in t and "folded" not in t else "baseline" if not t else None
                if window:
                    out[f"apply_max_{window}_ms"] = max(out.get(f"apply_max_{window}_ms", 0.0), took)
                written[key] = value_of(k, salt=1)
            if "released" in t and "folded" not in t and kv._s.overlay is None:  # a peek: no public signal
                t["folded"] = time.perf_counter()
            await trio.sleep(TICK)

    def blobs(view: Iterable[bytes]) -> Iterator[bytes]:
        yield from view
        t["released"] = time.perf_counter()  # in the worker thread: write_file goes on to fsync
        out["overlay_keys"] = len(kv._s.overlay or ())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(heartbeat.run)
        nursery.start_soon(writer)
        await trio.sleep(1.0)

        at_snapshot = dict(written)  # what the view must hold for the keys written so far
        puts_before = index
        t["snapshot"] = time.perf_counter()
        view = kv.snapshot()
        out["snapshot_call_ms"] = (time.perf_counter() - t["snapshot"]) * 1e3
        with contextlib.closing(view):
            path = await trio.to_thread.run_sync(write_file, directory, kv.applied_index, blobs(view))
        t["written"] = time.perf_counter()
        out["puts_during_snapshot"] = index - puts_before
        out["write_s"] = t["written"] - t["snapshot"]
        out["file_mib"] = os.path.getsize(path) / (1 << 20)
        while "folded" not in t:
            await trio.sleep(TICK)
        out["fold_ms"] = (t["folded"] - t["released"]) * 1e3

        fresh = KVStore()
        t["restore"] = time.perf_counter()
        await trio.to_thread.run_sync(fresh.restore, read_file(path))
        t["restored"] = time.perf_counter()
        out["restore_s"] = t["restored"] - t["restore"]
        nursery.cancel_scope.cancel()

    assert all(kv.read({"op": "get", "key": k})["value"] == v for k, v in written.items()), "live store"
    assert all(fresh.read({"op": "get", "key": k})["value"] == v for k, v in at_snapshot.items()), "restored"
    assert len(fresh.data) == n + sum(1 for k in at_snapshot if k.startswith("new-")), "restored key count"
    first = heartbeat.wakes[0][0]
    out["gap_baseline_ms"] = heartbeat.longest(first, t["snapshot"])
    out["gap_snapshot_ms"] = heartbeat.longest(t["snapshot"], t["released"])
    out["gap_sync_ms"] = heartbeat.longest(t["released"], t["written"])
    out["gap_fold_ms"] = heartbeat.longest(t["released"], t["folded"])
    out["gap_restore_ms"] = heartbeat.longest(t["restore"], t["restored"])
    os.unlink(path)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mib", type=int, default=64, help="MiB of keys and values to build")
    p.add_argument("--rate", type=int, default=3000, help="puts per second during the run")
    p.add_argument("--fill", choices=("apply", "restore"), default="apply")
    p.add_argument("--dir", default=None, help="where to write the snapshot file (default: a temp dir)")
    args = p.parse_args()

    n = args.mib * (1 << 20) // (KEY_BYTES + VALUE_BYTES)
    t = time.perf_counter()
    kv = build(n, args.fill)
    build_s = time.perf_counter() - t
    print(f"built {n} keys ({args.mib} MiB of keys and values) by {args.fill} in {build_s:.1f} s", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        out = trio.run(bench, kv, n, args.rate, directory)
    storage = "write_snapshot" if write_snapshot is not None else "framed-file"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures = {"mib": args.mib, "keys": n, "fill": args.fill, "build_s": build_s, "storage": storage}
    for k in ("snapshot_call_ms", "write_s", "file_mib", "restore_s", "puts_during_snapshot", "overlay_keys",
              "fold_ms", "gap_baseline_ms", "gap_snapshot_ms", "gap_sync_ms", "gap_fold_ms", "gap_restore_ms",
              "apply_max_baseline_ms", "apply_max_fold_ms"):
        figures[k] = out.get(k, 0.0)
    figures["peak_rss_mib"] = rss
    print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
