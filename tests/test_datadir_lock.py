"""One process per data directory: the flock on DATA_DIR/lock, between two
``Storage`` objects, against ``raftnet inspect``'s shared lock, and between
real ``raftnet serve`` processes."""

from __future__ import annotations

import fcntl
import json
import os

import pytest

from raftnet.core.messages import Entry
from raftnet.storage import Corruption, DataDirLocked, Storage, StorageError
from raftnet.storage import lock as dirlock, wal

from cluster_harness import raftnet, running_cluster


def open_(d) -> Storage:
    return Storage.open(str(d), cluster="lock", node_id=1, segment_size=64 * 1024)


def filled(d, n: int = 120) -> None:
    st = open_(d)
    for i in range(1, n + 1):
        st.save(None, [Entry(i, 1, b"entry %d" % i)])
    st.close()


def files(d) -> dict:
    """Every file's mtime, size and bytes."""
    out = {}
    for name in sorted(os.listdir(d)):
        path = os.path.join(d, name)
        with open(path, "rb") as f:
            out[name] = (os.stat(path).st_mtime_ns, os.path.getsize(path), f.read())
    return out


def test_a_second_open_is_refused_naming_the_holder_before_it_reads_anything(tmp_path, monkeypatch, caplog):
    filled(tmp_path)
    caplog.set_level("DEBUG", logger="raftnet.storage")
    st = open_(tmp_path)
    assert any("recovered 120 entries" in r.getMessage() for r in caplog.records)  # what a real open logs
    caplog.clear()
    assert (tmp_path / "lock").read_text() == f"{os.getpid()}\n"
    before = files(tmp_path)

    def untouchable(*args, **kwargs):
        raise AssertionError("the second open read the directory without its lock")

    for name in ("read_meta", "scan", "list_segments", "HardStateFile"):
        monkeypatch.setattr(wal, name, untouchable)
    with pytest.raises(DataDirLocked) as info:
        open_(tmp_path)
    monkeypatch.undo()
    msg = str(info.value)
    assert info.value.pid == os.getpid()
    assert msg == f"{tmp_path} is in use by another process (pid {os.getpid()}): one data directory, one node"
    assert files(tmp_path) == before
    assert not [r.getMessage() for r in caplog.records if "recovered" in r.getMessage()]
    st.close()
    again = open_(tmp_path)
    assert again.last_index == 120
    again.close()


def test_any_flock_holder_conflicts_and_an_empty_lock_file_means_pid_unknown(tmp_path):
    open_(tmp_path).close()
    fd = os.open(tmp_path / "lock", os.O_RDWR | os.O_TRUNC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(DataDirLocked, match=r"in use by another process \(pid unknown\)"):
            open_(tmp_path)
    finally:
        os.close(fd)
    open_(tmp_path).close()


def test_a_failed_open_releases_the_lock(tmp_path):
    filled(tmp_path, 5)
    with pytest.raises(StorageError, match="belongs to cluster 'lock', not 'other'"):
        Storage.open(str(tmp_path), cluster="other", node_id=1)
    hs = tmp_path / "hardstate"
    good = hs.read_bytes()
    hs.write_bytes(good[:70])
    with pytest.raises(Corruption, match="hard state file is truncated"):
        open_(tmp_path)
    hs.write_bytes(good)
    st = open_(tmp_path)  # DataDirLocked here if either failure had kept the lock
    assert st.last_index == 5
    st.close()


def test_the_lock_file_is_not_mistaken_for_data(tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "lock").write_text("999999\n")  # left by a node that died: it locks nothing
    st = open_(fresh)
    assert (st.last_index, sorted(os.listdir(fresh))) == (0, ["hardstate", "lock", "meta"])
    st.close()
    orphan = tmp_path / "orphan"
    filled(orphan, 3)
    os.unlink(orphan / "meta")
    with pytest.raises(StorageError, match="holds WAL files but no meta file") as info:
        open_(orphan)
    assert not isinstance(info.value, DataDirLocked)


async def test_a_node_that_fails_to_start_releases_its_data_dir(tmp_path):
    """A port already in use fails Node startup after the storage is open;
    the lock must go with it, or a retry in the same process is refused."""
    import socket

    from raftnet.config import parse_config
    from raftnet.node import Node

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = parse_config({"cluster": {"name": "lock"},
                               "nodes": [{"id": 1, "address": f"127.0.0.1:{busy.getsockname()[1]}"}]})
        refused = False
        try:
            async with Node(config, 1, data_dir=str(tmp_path)):
                pass
        except* OSError:
            refused = True
        assert refused
    open_(tmp_path).close()


def _fake_time(monkeypatch, on_sleep=None) -> list[float]:
    """Replace the lock's clock and sleep: every sleep advances the clock."""
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds
        if on_sleep:
            on_sleep()

    monkeypatch.setattr(dirlock, "_clock", lambda: now[0])
    monkeypatch.setattr(dirlock, "_sleep", sleep)
    return sleeps


def test_an_opener_waits_for_an_inspect_reader_to_finish(tmp_path, monkeypatch):
    filled(tmp_path, 3)
    reader = dirlock.read_lock(str(tmp_path))
    assert not reader.running
    sleeps = _fake_time(monkeypatch, on_sleep=reader.release)
    st = open_(tmp_path)
    assert sleeps == [dirlock.POLL_SECONDS] and st.last_index == 3
    st.close()


def test_an_opener_gives_up_on_a_reader_that_stays_and_says_who_it_is(tmp_path, monkeypatch):
    filled(tmp_path, 3)
    reader = dirlock.read_lock(str(tmp_path))
    sleeps = _fake_time(monkeypatch)
    try:
        with pytest.raises(DataDirLocked, match="is being read by `raftnet inspect`"):
            open_(tmp_path)
    finally:
        reader.release()
    # It polled, every 50 ms, for the whole wait and no longer.
    assert set(sleeps) == {dirlock.POLL_SECONDS}
    assert abs(sum(sleeps) - dirlock.READER_WAIT_SECONDS) <= dirlock.POLL_SECONDS
    open_(tmp_path).close()


def test_inspect_of_a_stopped_node_creates_no_lock_file(tmp_path):
    filled(tmp_path, 3)
    os.unlink(tmp_path / "lock")
    before = files(tmp_path)
    r = raftnet("inspect", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["running"], out["pid"], out["last_index"]) == (False, None, 3)
    assert files(tmp_path) == before


# -- real processes -----------------------------------------------------------------


@pytest.fixture(scope="module")
def node1(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("locked"), nodes=1) as c:
        r = raftnet("put", "before", "1", "--cluster", c.cluster_arg)
        assert r.returncode == 0, r.stderr
        yield c


def test_a_second_serve_of_a_live_node_exits_1_naming_its_pid(node1):
    c = node1
    pid = c.procs[1].pid
    r = raftnet("serve", "--config", str(c.config), "--id", "1", timeout=30)
    assert r.returncode == 1, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "refusing to start: " in lines[0] and f"is in use by another process (pid {pid})" in lines[0]
    assert c.procs[1].poll() is None, "the first node died"
    r = raftnet("put", "after", "2", "--cluster", c.cluster_arg)
    assert r.returncode == 0, r.stderr
    r = raftnet("get", "after", "--cluster", c.cluster_arg)
    assert (r.returncode, r.stdout.strip()) == (0, "2")


def test_inspect_of_a_live_node_says_so_and_changes_nothing(node1):
    c = node1
    pid = c.procs[1].pid
    d = str(c.dir / "node-1")
    before = files(d)
    r = raftnet("inspect", d)
    assert r.returncode == 0, r.stderr
    assert f"node running (pid {pid}): this is a live view; the tail may be mid-write" in r.stderr.splitlines()
    assert "cluster    itest  node 1" in r.stdout
    r = raftnet("inspect", d, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["running"], out["pid"], out["damage"]) == (True, pid, None)
    assert out["last_index"] >= 2  # the leader's no-op and the put
    assert files(d) == before
