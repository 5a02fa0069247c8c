"""Snapshots in real Node actors (virtual time, memory network and disks):
the policy takes them and compacts the log; a follower the log cannot
catch up gets one streamed in chunks; a transfer cut off mid-way resumes
from the last acknowledged byte."""

from __future__ import annotations

import logging
import re
import time

import pytest
import trio
import trio.testing

from raftnet.kv.store import encode_command
from raftnet.node.codec import decode_message, encode_message
from raftnet.node.server import check_message
from raftnet.node.snapshots import SnapshotAck, SnapshotChunk
from raftnet.node.wire import ProtocolError
from raftnet.storage.snapshot import list_snapshots
from tests.helpers.node_cluster import SimCluster, sim_config
from tests.helpers.node_cluster import eventually as _eventually

# Snapshots are written, read and verified in worker threads. While one
# runs, MockClock's autojump sees the loop idle and moves virtual time on
# to the next timer: on a loaded machine a thread's few milliseconds can be
# any number of virtual seconds. So the deadlines below are in real time;
# they only make a hang fail.
REAL_SECONDS = 60


async def eventually(predicate, deadline: float) -> None:
    """Wait until ``predicate()`` holds; fail after ``deadline`` virtual
    seconds if the machine is quick, never before REAL_SECONDS real ones."""
    started = time.monotonic()
    try:
        await _eventually(predicate, deadline)
    except trio.TooSlowError:
        while not predicate():
            if time.monotonic() - started > REAL_SECONDS:
                raise
            await trio.sleep(0.05)


@pytest.fixture
def autojump_clock():
    return trio.testing.MockClock(autojump_threshold=0)


def snapshot_config(**overrides):
    snap = {"every_entries": 20, "trailing_entries": 5, "keep": 2, "chunk_bytes": 1024,
            "transfer_timeout_ms": 1000, **overrides}
    return sim_config(snapshot=snap, limits={"max_frame_bytes": 1 << 16, "max_entry_bytes": 1 << 14})


async def put_many(leader, client: int, first: int, count: int, value: bytes = b"v" * 200) -> None:
    for seq in range(first, first + count):
        await leader.propose(encode_command("put", key=f"k{seq}", value=value + b"%d" % seq, client=client, seq=seq))


def snapshots_settled(node) -> bool:
    """No snapshot being written, and too few entries applied since the
    last one began for the policy to take another."""
    snaps = node.snapshots
    return snaps._taking is None and snaps._since_entries < snaps.spec.every_entries


async def lagging_follower(c: SimCluster, puts: int):
    """Stop a follower, write ``puts`` entries until the leader's log is
    compacted past it, and bring it back: only a snapshot can catch it up."""
    leader, reg = await c.start_all_and_register()
    lagging = next(i for i in (1, 2, 3) if i != leader.id)
    c.crash(lagging)
    await eventually(lambda: lagging not in c.nodes, 5)
    await put_many(leader, reg["client"], 1, puts)
    await eventually(lambda: leader.raft.log.compacted_index > c.disks[lagging].last_index, 10)
    # Let the leader's snapshots settle: one taken while the follower is
    # catching up would send it a second, newer one (and the tests below
    # measure the first transfer).
    await eventually(lambda: snapshots_settled(leader), 10)
    c.net.heal()
    await c.start(lagging)
    return leader, reg, c.nodes[lagging]


async def test_the_policy_takes_snapshots_and_compacts_the_log(autojump_clock):
    async with trio.open_nursery() as nursery:
        c = SimCluster(nursery, config=snapshot_config())
        leader, reg = await c.start_all_and_register()
        await put_many(leader, reg["client"], 1, 100)
        goal = leader.raft.commit_index
        await eventually(lambda: all(n.raft.applied_index >= goal for n in c.nodes.values()), 10)
        # How many snapshots it took depends on how long each write ran:
        # entries applied meanwhile go into the next one.
        await eventually(lambda: all(n.snapshots.taken >= 1 and snapshots_settled(n) for n in c.nodes.values()), 10)
        for n in c.nodes.values():
            meta, _ = n.store.snapshot_file
            assert meta.index >= goal - 20 and meta.voters == (1, 2, 3)
            # The log keeps only a trailing stretch behind the snapshot, in memory and on the disk.
            assert n.raft.log.compacted_index == meta.index - 5
            assert n.store.first_index == meta.index - 5 + 1
            assert len(list_snapshots(n.store.snapshot_dir, fs=n.store.fs)) <= 2
        nursery.cancel_scope.cancel()


async def test_a_follower_behind_the_compacted_log_gets_a_snapshot_and_restarts_from_it(autojump_clock):
    async with trio.open_nursery() as nursery:
        # A short peer queue: the appends the leader sent while the follower was down are gone, not replayed.
        c = SimCluster(nursery, seed=3, config=snapshot_config(), peer_queue_size=8)
        leader, reg, follower = await lagging_follower(c, 150)
        lagging = follower.id
        await eventually(lambda: follower.state_machine.data.get("k150") is not None, 30)
        assert follower.snapshots.installed == 1
        assert follower.state_machine.as_dict() == leader.state_machine.as_dict()
        assert follower.store.first_index > 1  # the log was replaced, not replayed from 1

        # Restarted, the follower starts from the snapshot it installed plus the log after it.
        c.crash(lagging)
        await eventually(lambda: lagging not in c.nodes, 5)
        c.net.heal()
        await c.start(lagging)
        restarted = c.nodes[lagging]
        assert restarted.raft.applied_index >= restarted.store.snapshot[0]
        assert restarted.state_machine.data.get("k10") == b"v" * 200 + b"10"
        await put_many(leader, reg["client"], 151, 1)
        await eventually(lambda: restarted.state_machine.data.get("k151") is not None, 10)
        nursery.cancel_scope.cancel()


async def test_a_transfer_cut_off_mid_way_resumes_from_the_acknowledged_byte(autojump_clock):
    # 20 KiB/s in 1 KiB chunks: the transfer takes seconds, so the cut lands mid-way.
    config = snapshot_config(max_bytes_per_second=20 * 1024, transfer_timeout_ms=500)
    async with trio.open_nursery() as nursery:
        c = SimCluster(nursery, seed=11, config=config, peer_queue_size=8)
        leader, reg, follower = await lagging_follower(c, 200)
        lagging = follower.id
        await eventually(lambda: follower.snapshots._partial is not None and follower.snapshots._partial.have > 4096,
                         30)
        c.net.isolate(follower.address)
        # No chunk answered for longer than the transfer timeout: the leader gives up.
        await eventually(lambda: not leader.snapshots._transfers, 30)
        c.net.heal()
        await eventually(lambda: follower.snapshots.installed == 1, 60)
        starts = [(peer, offset) for peer, _, offset in leader.snapshots.starts]
        assert starts[0] == (lagging, 0)
        assert any(peer == lagging and offset > 4096 for peer, offset in starts[1:]), starts
        size = leader.store.fs.size(leader.store.snapshot_file[1])
        assert leader.snapshots.bytes_sent < 1.5 * size  # nothing like a restart from zero
        await eventually(lambda: follower.state_machine.as_dict() == leader.state_machine.as_dict(), 10)
        nursery.cancel_scope.cancel()


async def test_a_follower_restarted_mid_transfer_resumes_from_the_partial_file_it_kept(autojump_clock, caplog):
    caplog.set_level(logging.INFO, "raftnet.node")
    # 5 KiB/s: the transfer takes about eight seconds, long enough to log its progress.
    config = snapshot_config(max_bytes_per_second=5 * 1024, transfer_timeout_ms=500)
    async with trio.open_nursery() as nursery:
        c = SimCluster(nursery, seed=5, config=config, peer_queue_size=8)
        leader, reg, follower = await lagging_follower(c, 200)
        lagging = follower.id
        await eventually(lambda: follower.snapshots._partial is not None and follower.snapshots._partial.have > 4096,
                         30)
        kept = follower.snapshots._partial.have
        c.crash(lagging)  # no abort, no goodbye: the partial file stays as it is
        await eventually(lambda: lagging not in c.nodes, 5)
        c.net.heal()
        await c.start(lagging)
        restarted = c.nodes[lagging]
        await eventually(lambda: restarted.snapshots.installed == 1, 60)
        [(index, resumed_at)] = restarted.snapshots.resumes
        assert index == restarted.store.snapshot_file[0].index and resumed_at >= kept
        size = leader.store.fs.size(leader.store.snapshot_file[1])
        assert leader.snapshots.bytes_sent < 1.5 * size  # nothing like a restart from zero
        await eventually(lambda: restarted.state_machine.as_dict() == leader.state_machine.as_dict(), 10)
        # A transfer of several seconds logs its progress on the way.
        progress = re.findall(rf"snapshot {index} to peer {lagging}: (\d+) of {size} bytes", caplog.text)
        assert progress and 0 < int(progress[0]) < size, caplog.text[-2000:]
        nursery.cancel_scope.cancel()


def test_snapshot_messages_round_trip_and_are_checked():
    chunk = SnapshotChunk(term=3, src=1, dst=2, index=40, snap_term=2, size=10, offset=4, data=b"abcdef")
    ack = SnapshotAck(term=3, src=2, dst=1, index=40, snap_term=2, offset=4, have=10)
    for m in (chunk, ack):
        assert decode_message(encode_message(m)) == m
    check_message(chunk, 1, 2)
    with pytest.raises(ProtocolError, match="of a 9-byte snapshot"):
        check_message(SnapshotChunk(term=3, src=1, dst=2, index=40, snap_term=2, size=9, offset=4, data=b"abcdef"),
                      1, 2)
    raw = encode_message(chunk)
    raw[-1] = "not bytes"
    with pytest.raises(ProtocolError, match="byte string"):
        decode_message(raw)
