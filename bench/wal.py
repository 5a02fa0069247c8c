"""WAL append throughput through the real storage layer.

    python bench/wal.py --dir D --entries N --size BYTES --fsync batch|always|never [--writers K]

Writes N entries of BYTES bytes into a fresh WAL in D with K concurrent
proposers (default 64) feeding the group-commit writer, and leaves D as a
valid data directory (`raftnet inspect D` reads it). Before that it measures
the disk's raw fsync rate (a plain write + fdatasync loop in D) for
reference. The last line is:

    entries=<n> seconds=<s> appends_per_s=<x> mb_per_s=<y> fsyncs=<f>
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import trio

from raftnet.core.messages import Entry
from raftnet.storage import FSYNC_POLICIES, LogWriter, Storage


def raw_fsync_rate(directory: str, size: int, seconds: float = 1.0) -> float:
    path = os.path.join(directory, "raw-fsync-probe")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.posix_fallocate(fd, 0, (1 << 20) + size)
        os.fsync(fd)
        data = b"x" * size
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            os.pwrite(fd, data, (n * size) % ((1 << 20) - size))
            os.fdatasync(fd)
            n += 1
        return n / (time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)


async def run(st: Storage, entries: int, size: int, writers: int) -> None:
    payload = os.urandom(size)
    next_index = 0

    async def proposer() -> None:
        nonlocal next_index
        while next_index < entries:
            next_index += 1
            await writer.append([Entry(next_index, 1, payload)])

    async with LogWriter(st) as writer:
        async with trio.open_nursery() as nursery:
            for _ in range(writers):
                nursery.start_soon(proposer)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", required=True)
    p.add_argument("--entries", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--fsync", choices=FSYNC_POLICIES, required=True)
    p.add_argument("--writers", type=int, default=64)
    p.add_argument("--segment-size", type=int, default=64 << 20)
    args = p.parse_args()
    if args.entries < 1 or args.size < 0 or args.writers < 1:
        p.error("--entries and --writers must be positive, --size non-negative")
    if os.path.exists(args.dir) and os.listdir(args.dir):
        p.error(f"--dir {args.dir} is not empty; the benchmark needs a fresh directory")
    os.makedirs(args.dir, exist_ok=True)
    raw = raw_fsync_rate(args.dir, max(args.size, 1))
    print(f"raw_fsync_per_s={raw:.0f} (write {max(args.size, 1)} B + fdatasync loop in {args.dir})")
    st = Storage.open(args.dir, cluster="bench", node_id=1, fsync=args.fsync, segment_size=args.segment_size)
    t0 = time.perf_counter()
    trio.run(run, st, args.entries, args.size, args.writers)
    seconds = time.perf_counter() - t0
    fsyncs = st.fsyncs
    st.close()
    print(f"entries={args.entries} seconds={seconds:.3f} appends_per_s={args.entries / seconds:.0f} "
          f"mb_per_s={args.entries * args.size / seconds / 1e6:.2f} fsyncs={fsyncs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
