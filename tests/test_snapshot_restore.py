"""``raftnet snapshot restore``: a backup seeds a new cluster, whose real
processes start from the snapshot (state machine restored, sessions kept,
log after it empty) and carry on."""

from __future__ import annotations

import trio

from cluster_harness import Cluster, raftnet, restored_cluster
from raftnet.client import Client
from raftnet.kv.store import KVStore, encode_command
from raftnet.storage import Storage
from raftnet.storage.snapshot import SnapshotMeta, write_snapshot


def backup(directory) -> str:
    """A snapshot of a KV store that applied 200 entries of another cluster."""
    kv = KVStore()
    kv.apply(1, encode_command("register"))
    for i in range(2, 201):
        kv.apply(i, encode_command("put", key=f"k{i}", value=b"v%d" % i, client=1, seq=i - 1))
    directory.mkdir()
    return write_snapshot(str(directory), SnapshotMeta(200, 7, (1, 2, 3)), kv.snapshot())


def test_a_backup_seeds_a_new_cluster_that_serves_its_data(tmp_path):
    snap = backup(tmp_path / "backup")
    (tmp_path / "new").mkdir()
    c = Cluster(tmp_path / "new", nodes=3)
    for i in c.ids:
        r = raftnet("snapshot", "restore", snap, "--config", str(c.config), "--id", str(i))
        assert r.returncode == 0, r.stderr
        assert "index 200, term 7" in r.stdout
    st = Storage.open(str(tmp_path / "new" / "node-1"), cluster="itest", node_id=1)
    assert st.snapshot[0].index == 200 and st.snapshot[0].voters == (1, 2, 3)
    assert (st.first_index, st.last_index, st.hard_state.commit) == (201, 200, 200)
    st.close()
    c.start_all()
    try:
        c.wait_for_leader()

        async def check():
            async with Client(c.addresses, timeout=20.0) as client:
                assert await client.get("k2") == b"v2"
                assert await client.get("k200") == b"v200"
                await client.put("new", b"after")
                assert await client.get("new") == b"after"

        trio.run(check)
        c.assert_alive()
        status = c.status()
        assert all(s["commit"] > 200 for s in status.values()), status
    finally:
        c.stop_all()


def test_restore_refuses_a_data_directory_that_holds_data(tmp_path):
    snap = backup(tmp_path / "backup")
    (tmp_path / "new").mkdir()
    c = Cluster(tmp_path / "new", nodes=3)
    assert raftnet("snapshot", "restore", snap, "--config", str(c.config), "--id", "1").returncode == 0
    again = raftnet("snapshot", "restore", snap, "--config", str(c.config), "--id", "1")
    assert again.returncode == 64 and "not empty" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def test_restore_refuses_a_damaged_snapshot_with_exit_4(tmp_path):
    snap = backup(tmp_path / "backup")
    with open(snap, "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    (tmp_path / "new").mkdir()
    c = Cluster(tmp_path / "new", nodes=3)
    r = raftnet("snapshot", "restore", snap, "--config", str(c.config), "--id", "1")
    assert r.returncode == 4 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "new" / "node-1").exists()


def test_restore_of_an_unknown_node_id_is_a_usage_error(tmp_path):
    snap = backup(tmp_path / "backup")
    (tmp_path / "new").mkdir()
    c = Cluster(tmp_path / "new", nodes=3)
    r = raftnet("snapshot", "restore", snap, "--config", str(c.config), "--id", "9")
    assert r.returncode == 64


SMALL_SNAPSHOTS = {"every_entries": 100, "trailing_entries": 20, "chunk_bytes": 4096}


async def _put_range(c: Cluster, lo: int, hi: int, value: bytes = b"x" * 100) -> None:
    async with Client(c.addresses, timeout=20.0) as client:
        async with trio.open_nursery() as nursery:
            for worker in range(8):
                async def put(worker=worker):
                    for i in range(lo + worker, hi, 8):
                        await client.put(f"k{i}", value + b"%d" % i)
                nursery.start_soon(put)


def test_killed_nodes_come_back_through_snapshots_and_backups_restore(tmp_path):
    """Real processes with a low snapshot threshold: a follower killed with
    SIGKILL while the others write and compact past it is brought back by a
    streamed snapshot; every node killed and restarted starts from its own
    snapshot; `snapshot trigger` and `snapshot save` work, and the saved
    backup verifies and seeds a new cluster holding every acknowledged write."""
    (tmp_path / "c").mkdir()
    c = Cluster(tmp_path / "c", nodes=3, snapshot=SMALL_SNAPSHOTS)
    c.start_all()
    try:
        leader = c.wait_for_leader()
        follower = next(i for i in c.ids if i != leader)
        trio.run(_put_range, c, 0, 50)
        c.kill(follower)
        trio.run(_put_range, c, 50, 800)
        c.start(follower)
        c.wait_for(lambda st: st.get(follower, {}).get("applied", 0) >= st[leader]["commit"] - 5,
                   f"node {follower} catching up", deadline=60)
        assert f"node {follower} installed snapshot" in c.log_text(follower)
        assert f"sending snapshot" in c.log_text(leader)

        for i in c.ids:
            c.kill(i)
        c.start_all()
        c.wait_for_leader(deadline=60)
        for i in c.ids:
            assert "snapshot none" not in c.log_text(i).split("starting at")[-1]

        trig = raftnet("snapshot", "trigger", "--config", str(c.config), "--timeout", "30")
        assert trig.returncode == 0, trig.stderr
        assert "snapshot" in trig.stdout and ".snap" in trig.stdout
        backup_file = tmp_path / "backup.snap"
        saved = raftnet("snapshot", "save", str(backup_file), "--config", str(c.config), "--timeout", "30")
        assert saved.returncode == 0, saved.stderr
        shown = raftnet("inspect", "--snapshot", str(backup_file))
        assert shown.returncode == 0, shown.stdout + shown.stderr
        c.assert_alive()
    finally:
        c.stop_all()

    fresh = restored_cluster(tmp_path / "new", backup_file)
    fresh.start_all()
    try:
        fresh.wait_for_leader()

        async def check():
            async with Client(fresh.addresses, timeout=20.0) as client:
                for i in (0, 49, 50, 799):
                    assert await client.get(f"k{i}") == b"x" * 100 + b"%d" % i

        trio.run(check)
    finally:
        fresh.stop_all()
