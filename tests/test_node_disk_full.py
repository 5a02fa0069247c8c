"""A write the disk refuses is never acknowledged, and the node stops
cleanly saying why.

A full disk is simulated with RLIMIT_FSIZE on one `raftnet serve` process
(SIGXFSZ ignored, so a write or fallocate past the limit fails with EFBIG,
"File too large"). WAL segments are preallocated to ``segment_size``
(64 KiB here) and a batch bigger than that gets a segment of its own size,
so under a 256 KiB limit small puts fit and one 400 KiB put cannot.

* On a single node that put is not acknowledged, the node exits 1 logging
  "storage failed: ... File too large", and restarted without the limit it
  still has every acknowledged write and a log that `inspect --verify`
  passes.
* On a follower of a 3-node cluster the put commits on the other two; only
  the follower stops, and the other two keep serving.
"""

from __future__ import annotations

import time

import pytest
import trio

from cluster_harness import Cluster, raftnet
from raftnet.client import Client, ClientError

LIMIT = 256 << 10
BIG = b"x" * (400 << 10)
SMALL = {f"k{i}": f"value-{i}".encode() for i in range(20)}


def disk_cluster(directory, nodes: int) -> Cluster:
    # The limit bounds the node's log file too; a run here logs a few KiB.
    return Cluster(directory, nodes=nodes, storage={"segment_size": 64 << 10})


def wait_exit(c: Cluster, node_id: int, deadline: float = 30.0) -> int:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        code = c.procs[node_id].poll()
        if code is not None:
            return code
        time.sleep(0.1)
    raise AssertionError(f"node {node_id} still running {deadline}s after its disk filled; log tail: "
                         f"{c.log_text(node_id)[-1500:]}")


def assert_stopped_saying_why(c: Cluster, node_id: int) -> None:
    assert wait_exit(c, node_id) == 1, c.log_text(node_id)[-1500:]
    lines = c.log_text(node_id).splitlines()
    said = [line for line in lines if "storage failed" in line.lower() and "File too large" in line]
    assert said, "no 'storage failed ... File too large' line; log tail:\n" + "\n".join(lines[-15:])


async def put_all(addresses: list[str], items: dict[str, bytes], timeout: float = 20.0) -> None:
    async with Client(addresses, timeout=timeout) as client:
        for key, value in items.items():
            await client.put(key, value)


def test_a_single_node_never_acknowledges_a_write_its_disk_refuses(tmp_path):
    c = disk_cluster(tmp_path, nodes=1)
    c.start(1, fsize_limit=LIMIT)
    try:
        c.wait_for_leader()
        trio.run(put_all, c.addresses, SMALL)

        with pytest.raises(ClientError) as refused:  # Timeout, Unavailable, or a refusal: anything but success
            trio.run(put_all, c.addresses, {"big": BIG}, 5.0)
        assert_stopped_saying_why(c, 1)

        c.start(1)  # the disk has room again
        c.wait_for_leader()

        async def read_back():
            async with Client(c.addresses, timeout=20.0) as client:
                return {key: await client.get(key) for key in [*SMALL, "big"]}

        got = trio.run(read_back)
        assert {k: got[k] for k in SMALL} == SMALL
        assert got["big"] is None, f"the refused write ({refused.value!r}) was applied after all"
    finally:
        c.stop_all()
    r = raftnet("inspect", "--verify", str(tmp_path / "node-1"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_follower_whose_disk_fills_stops_alone_and_the_majority_keeps_serving(tmp_path):
    c = disk_cluster(tmp_path, nodes=3)
    c.start(1)
    c.start(2)
    try:
        c.wait_for_leader(among=[1, 2])
        c.start(3, fsize_limit=LIMIT)
        c.wait_for(lambda st: st.get(3, {}).get("role") == "follower" and st[3].get("leader") in (1, 2),
                   "node 3 to follow the leader")
        trio.run(put_all, c.addresses, {"big": BIG})  # acknowledged: nodes 1 and 2 are a majority
        assert_stopped_saying_why(c, 3)

        async def still_serving():
            async with Client(c.addresses, timeout=20.0) as client:
                await client.put("after", b"still here")
                return await client.get("after"), await client.get("big")

        assert trio.run(still_serving) == (b"still here", BIG)
        for node_id in (1, 2):  # assert_alive / assert_serves would count node 3, dead as intended
            assert c.procs[node_id].poll() is None, c.log_text(node_id)[-1500:]
            assert "Traceback" not in c.log_text(node_id), c.log_text(node_id)[-3000:]
    finally:
        c.stop_all()
