"""Snapshots through real `raftnet serve` processes killed with SIGKILL: a
follower killed mid-transfer resumes its partial file; a leader killed
while it writes a snapshot loses nothing; a backup saved under write load
is a consistent cut that seeds a new cluster."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import trio

from cluster_harness import Cluster, raftnet, restored_cluster
from raftnet.client import Client

# Many snapshots, each several chunks: a transfer takes seconds at 1 MiB/s.
SNAPSHOTS = {"every_entries": 100, "trailing_entries": 20, "chunk_bytes": 64 << 10,
             "max_bytes_per_second": 1 << 20, "transfer_timeout_ms": 3000}
VALUE = b"s" * (8 << 10)


def value_of(key: str) -> bytes:
    return VALUE + key.encode()


async def put_keys(c: Cluster, keys: list[str], writers: int = 8) -> None:
    async with Client(c.addresses, timeout=30.0) as client:
        async with trio.open_nursery() as nursery:
            for w in range(writers):
                async def put(w=w):
                    for key in keys[w::writers]:
                        await client.put(key, value_of(key))
                nursery.start_soon(put)


async def stale_state(address: str, keys: list[str]) -> dict[str, bytes | None]:
    """What the node at ``address`` holds for ``keys``, read from it alone."""
    async with Client([address], timeout=30.0) as client:
        return {key: await client.get(key, stale=True) for key in keys}


def wait_until(predicate, what: str, deadline: float):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        got = predicate()
        if got:
            return got
        time.sleep(0.005)
    raise AssertionError(f"timed out after {deadline}s waiting for {what}")


def files(directory: Path, suffix: str) -> list[Path]:
    try:
        return [directory / n for n in os.listdir(directory) if n.endswith(suffix)]
    except FileNotFoundError:
        return []


def partial_bytes(directory: Path) -> int:
    sizes = []
    for p in files(directory, ".snap.partial"):
        try:
            sizes.append(p.stat().st_size)
        except FileNotFoundError:
            pass
    return max(sizes, default=0)


def test_a_follower_killed_mid_transfer_resumes_from_its_partial_file_and_converges(tmp_path):
    c = Cluster(tmp_path, nodes=3, snapshot=SNAPSHOTS)
    c.start_all()
    try:
        leader = c.wait_for_leader()
        follower = next(i for i in c.ids if i != leader)
        c.kill(follower)
        keys = [f"k{i:04d}" for i in range(600)]  # about 5 MiB of state: five seconds of transfer
        trio.run(put_keys, c, keys)
        c.start(follower)
        directory = tmp_path / f"node-{follower}"
        kept = wait_until(lambda: partial_bytes(directory) >= 512 << 10 and partial_bytes(directory),
                          "the follower's partial snapshot to pass 512 KiB", 60)
        c.kill(follower)  # mid-transfer: no abort, no goodbye
        assert files(directory, ".snap.partial"), "the partial file should be there to resume"
        c.start(follower)
        c.wait_for(lambda st: st.get(follower, {}).get("applied", 0) >= st[leader]["commit"],
                   f"node {follower} catching up", deadline=60)

        text = c.log_text(follower)
        resumed = [int(b) for b in re.findall(r"resuming snapshot \d+ \(term \d+, \d+ bytes\) from node \d+ "
                                               r"at byte (\d+)", text)]
        assert resumed and resumed[0] >= kept, (kept, text[-3000:])
        assert f"node {follower} installed snapshot" in text
        # Converged: the follower holds exactly what the leader holds.
        assert trio.run(stale_state, c.addresses[follower - 1], keys) == \
            trio.run(stale_state, c.addresses[leader - 1], keys) == {k: value_of(k) for k in keys}
        c.assert_alive()
    finally:
        c.stop_all()


def test_a_leader_killed_while_it_writes_a_snapshot_loses_no_acknowledged_write(tmp_path):
    c = Cluster(tmp_path, nodes=3, snapshot={**SNAPSHOTS, "every_entries": 150})
    c.start_all()
    try:
        leader = c.wait_for_leader()
        directory = tmp_path / f"node-{leader}"
        acked: list[str] = []

        async def load_until_a_snapshot_is_being_written() -> None:
            async with Client(c.addresses, timeout=30.0) as client:
                async with trio.open_nursery() as nursery:
                    async def writer(w: int) -> None:
                        for i in range(100_000):
                            key = f"w{w}-{i:05d}"
                            await client.put(key, value_of(key))
                            acked.append(key)

                    for w in range(8):
                        nursery.start_soon(writer, w)
                    with trio.fail_after(120):
                        while not files(directory, ".snap.tmp"):
                            await trio.sleep(0.002)
                    # The leader is writing a snapshot: kill it there.
                    c.kill(leader)
                    nursery.cancel_scope.cancel()

        trio.run(load_until_a_snapshot_is_being_written)
        survivors = [i for i in c.ids if i != leader]
        c.wait_for_leader(among=survivors, deadline=30)

        async def read_back(keys: list[str]) -> list[str]:
            async with Client(c.addresses, timeout=30.0) as client:
                return [k for k in keys if await client.get(k) != value_of(k)]

        assert trio.run(read_back, acked) == []
        # What the kill left verifies: the older snapshot and the log are whole.
        verified = raftnet("inspect", str(directory), "--verify")
        assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr
        c.start(leader)
        c.wait_for(lambda st: all(st.get(i, {}).get("applied", 0) >= max(s.get("commit", 0) for s in st.values())
                                  for i in c.ids), "every node applying everything", deadline=60)
        assert not files(directory, ".snap.tmp")  # the half-written file is gone
        sample = acked[:: max(1, len(acked) // 200)]
        assert trio.run(stale_state, c.addresses[leader - 1], sample) == {k: value_of(k) for k in sample}
        c.assert_serves()
    finally:
        c.stop_all()


def test_a_backup_saved_under_write_load_is_a_consistent_cut_that_seeds_a_new_cluster(tmp_path):
    (tmp_path / "c").mkdir()
    c = Cluster(tmp_path / "c", nodes=3, snapshot={**SNAPSHOTS, "every_entries": 500})
    backup = tmp_path / "backup.snap"
    writers = 8
    acked_before: list[int] = []
    acked_after = [0] * writers
    c.start_all()
    try:
        c.wait_for_leader()

        async def save_while_writing() -> None:
            async with Client(c.addresses, timeout=30.0) as client:
                async with trio.open_nursery() as nursery:
                    async def writer(w: int) -> None:
                        for i in range(100_000):  # one key after another: what a snapshot holds is a prefix
                            key = f"w{w}-{i:05d}"
                            await client.put(key, value_of(key))
                            acked_after[w] = i + 1

                    for w in range(writers):
                        nursery.start_soon(writer, w)
                    while min(acked_after) < 50:
                        await trio.sleep(0.01)
                    acked_before.extend(acked_after)
                    saved = await trio.to_thread.run_sync(lambda: raftnet(
                        "snapshot", "save", str(backup), "--config", str(c.config), "--timeout", "30"))
                    assert saved.returncode == 0, saved.stderr
                    await trio.sleep(0.2)  # writes go on after the save, too
                    nursery.cancel_scope.cancel()

        trio.run(save_while_writing)
        c.assert_alive()
    finally:
        c.stop_all()

    fresh = restored_cluster(tmp_path / "new", backup)
    fresh.start_all()
    try:
        fresh.wait_for_leader()

        async def restored() -> list[int]:
            """How many keys of each writer the new cluster holds, checking
            that they are a prefix of its sequence with the values written."""
            counts = []
            async with Client(fresh.addresses, timeout=30.0) as client:
                for w in range(writers):
                    present = []
                    for i in range(acked_after[w] + 2):
                        key = f"w{w}-{i:05d}"
                        present.append(await client.get(key))
                    n = next((i for i, v in enumerate(present) if v is None), len(present))
                    assert all(v is None for v in present[n:]), f"writer {w}: keys after a gap at {n}"
                    assert all(present[i] == value_of(f"w{w}-{i:05d}") for i in range(n))
                    counts.append(n)
            return counts

        counts = trio.run(restored)
        # Every write acknowledged before the save began is in the backup; nothing from after it ended is.
        assert all(acked_before[w] <= counts[w] <= acked_after[w] + 1 for w in range(writers)), \
            (acked_before, counts, acked_after)
    finally:
        fresh.stop_all()
