"""Real Node actors in virtual time: trio's MockClock, the in-memory network
(with partitions) and in-memory disks that survive a node's "crash"."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from raftnet.kv.store import encode_command
from raftnet.node.pending import RequestFailed
from tests.helpers.node_cluster import SimCluster, eventually


@pytest.fixture
def autojump_clock():
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.mark.parametrize("disk_latency", [0.0, 0.03])
async def test_election_replication_and_restart(autojump_clock, disk_latency):
    async with trio.open_nursery() as nursery:
        c = SimCluster(nursery, disk_latency=disk_latency)
        leader, reg = await c.start_all_and_register()
        client = reg["client"]
        for seq in range(1, 11):
            await leader.propose(encode_command("put", key=f"k{seq}", value=b"v", client=client, seq=seq))
        await eventually(lambda: all(n.state_machine.data.get("k10") == b"v" for n in c.nodes.values()), 10)
        # Crash a follower, write more, bring it back from its disk: it catches up.
        follower = next(i for i in c.nodes if i != leader.id)
        c.crash(follower)
        await leader.propose(encode_command("put", key="late", value=b"x", client=client, seq=11))
        c.net.heal()
        await c.start(follower)
        await eventually(lambda: c.nodes[follower].state_machine.data.get("late") == b"x", 10)
        nursery.cancel_scope.cancel()


async def test_partitioned_leader_is_replaced_and_retry_applies_once(autojump_clock):
    async with trio.open_nursery() as nursery:
        c = SimCluster(nursery, seed=7)
        old, reg = await c.start_all_and_register()
        client = reg["client"]
        await old.propose(encode_command("put", key="a", value=b"1", client=client, seq=1))

        # The client's write reaches the old leader just as it is cut off;
        # the client gives up waiting (outcome unknown) and retries the same
        # seq at the new leader.
        c.net.isolate(old.address)
        write = encode_command("cas", key="a", expected=b"1", new=b"2", client=client, seq=2)
        with trio.move_on_after(0.2):
            await old.propose(write)
        others = [i for i in (1, 2, 3) if i != old.id]
        new = await c.leader(among=others)
        assert new.id != old.id
        _, result = await new.propose(write)
        assert result == {"ok": True, "swapped": True}
        _, again = await new.propose(write)  # a duplicate retry: the cached answer
        assert again == {"ok": True, "swapped": True}
        c.net.heal()
        def caught_up() -> bool:
            return all(n.state_machine.data.get("a") == b"2" and n.raft.applied_index == new.raft.applied_index
                       for n in c.nodes.values())

        await eventually(caught_up, 20)
        # The old leader rejoined as a follower; its uncommitted copy was replaced, not applied twice.
        assert old.raft.role.value == "follower"
        with pytest.raises(RequestFailed) as info:
            await old.propose(write)
        assert info.value.code == "not_leader" and info.value.leader == new.id
        nursery.cancel_scope.cancel()


async def test_linearizable_and_stale_reads(autojump_clock):
    async with trio.open_nursery() as nursery:
        c = SimCluster(nursery, seed=3)
        leader, reg = await c.start_all_and_register()
        await leader.propose(encode_command("put", key="r", value=b"1", client=reg["client"], seq=1))
        assert await leader.read({"op": "get", "key": "r"}) == {"ok": True, "value": b"1"}
        follower = next(n for i, n in c.nodes.items() if i != leader.id)
        with pytest.raises(RequestFailed) as info:
            await follower.read({"op": "get", "key": "r"})
        assert info.value.code == "not_leader"
        await eventually(lambda: follower.read_stale({"op": "get", "key": "r"})["value"] == b"1", 5)
        nursery.cancel_scope.cancel()


async def test_reads_arriving_together_share_one_heartbeat_round(autojump_clock):
    async with trio.open_nursery() as nursery:
        c = SimCluster(nursery, seed=4)
        leader, reg = await c.start_all_and_register()
        await leader.propose(encode_command("put", key="r", value=b"1", client=reg["client"], seq=1))
        rounds = leader.raft._heartbeat_seq
        answers = []

        async def read():
            answers.append(await leader.read({"op": "get", "key": "r"}))

        async with trio.open_nursery() as readers:
            for _ in range(50):
                readers.start_soon(read)
        assert answers == [{"ok": True, "value": b"1"}] * 50
        # One round for the batch (a tick's heartbeat may add one more), not fifty.
        assert leader.raft._heartbeat_seq - rounds <= 2

        # A read queued on a leader that steps down before confirming it fails, saying so.
        waiter = leader.read_then({"op": "get", "key": "r"})
        c.net.isolate(leader.address)
        with pytest.raises(RequestFailed) as info:
            await waiter.wait()
        assert info.value.code == "not_leader"
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("seed, disk_latency", [(s, 0.0) for s in range(1, 21)] + [(s, 0.03) for s in range(1, 6)])
async def test_leader_crash_loses_no_acknowledged_write_and_retry_applies_once(autojump_clock, seed, disk_latency):
    async with trio.open_nursery() as nursery:
        c = SimCluster(nursery, seed=seed, disk_latency=disk_latency)
        old, reg = await c.start_all_and_register()
        client = reg["client"]
        for seq in range(1, 6):
            await old.propose(encode_command("put", key=f"k{seq}", value=b"acked", client=client, seq=seq))
        await old.propose(encode_command("put", key="n", value=b"1", client=client, seq=6))

        # A write in flight when the leader dies: it reached a follower's log,
        # but the client has no answer (or one it never read). The follower
        # holding it has the longer log, so the next leader commits it, and
        # the client's retry must get the recorded answer, not a second cas.
        write = encode_command("cas", key="n", expected=b"1", new=b"2", client=client, seq=7)
        index = old.raft.log.last_index + 1
        outcome: list = []

        async def in_flight():
            try:
                outcome.append(await old.propose(write))
            except RequestFailed as exc:
                outcome.append(exc.code)

        nursery.start_soon(in_flight)
        followers = [n for i, n in c.nodes.items() if i != old.id]
        with trio.fail_after(5):
            while not any(n.raft.log.last_index >= index for n in followers):
                await trio.sleep(0)  # a checkpoint: virtual time does not move
        c.crash(old.id)
        await eventually(lambda: outcome, 5)
        assert outcome in (["unavailable"], [(index, {"ok": True, "swapped": True})])

        others = [i for i in (1, 2, 3) if i != old.id]
        new = await c.leader(among=others)
        for seq in range(1, 6):
            assert new.read_stale({"op": "get", "key": f"k{seq}"})["value"] == b"acked"
        _, result = await new.propose(write)  # the client's retry, same seq
        assert result == {"ok": True, "swapped": True}

        # The old leader restarts from its disk and converges without applying the cas twice.
        c.net.heal()
        await c.start(old.id)
        await eventually(lambda: all(n.raft.applied_index == new.raft.applied_index for n in c.nodes.values()), 20)
        for node in c.nodes.values():
            assert node.read_stale({"op": "get", "key": "n"})["value"] == b"2"
            assert node.state_machine.data.get("k5") == b"acked"
        nursery.cancel_scope.cancel()


async def test_nodes_restart_from_a_snapshot_and_the_log_after_it(autojump_clock):
    """Every node's disk keeps only a snapshot and a short tail: restarted,
    each restores its state machine from the snapshot, applies the tail, and
    the cluster goes on."""
    from raftnet.core.messages import EntryKind
    from raftnet.kv.store import KVStore
    from raftnet.storage.memdisk import StoredSnapshot

    async with trio.open_nursery() as nursery:
        c = SimCluster(nursery, seed=5)
        leader, reg = await c.start_all_and_register()
        client = reg["client"]
        for seq in range(1, 31):
            await leader.propose(encode_command("put", key=f"k{seq}", value=b"v%d" % seq, client=client, seq=seq))
        goal = leader.raft.commit_index
        await eventually(lambda: all(n.raft.applied_index >= goal for n in c.nodes.values()), 10)
        for i in (1, 2, 3):
            c.crash(i)
        c.net.heal()
        await eventually(lambda: not c.nodes, 5)  # every node has stopped and let go of its disk
        for i, store in c.disks.items():
            disk = store.disk
            at = disk.hard_state.commit - 3  # the last three committed entries stay in the log
            kv = KVStore()
            for e in disk.entries_between(1, at + 1):
                if e.kind is EntryKind.NORMAL:
                    kv.apply(e.index, e.data)
            disk.take_snapshot(StoredSnapshot(at, disk.term_at(at), list(kv.snapshot())), compact_to=at)
            assert disk.first_index == at + 1
        for i in (1, 2, 3):
            await c.start(i)
        for n in c.nodes.values():
            assert n.raft.log.compacted_index >= goal - 3 and n.raft.applied_index >= goal - 3
            assert n.read_stale({"op": "get", "key": "k1"})["value"] == b"v1"
        leader = await c.leader()
        await leader.propose(encode_command("put", key="after", value=b"x", client=client, seq=31))
        assert await leader.read({"op": "get", "key": "k30"}) == {"ok": True, "value": b"v30"}
        await eventually(lambda: all(n.read_stale({"op": "get", "key": "after"})["value"] == b"x"
                                     for n in c.nodes.values()), 10)
        nursery.cancel_scope.cancel()
