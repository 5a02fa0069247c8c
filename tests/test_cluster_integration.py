"""Real `raftnet serve` processes on loopback: the CLI's contract (output and
exit codes), the client library, and crashes by `kill -9`."""

from __future__ import annotations

import json

import pytest
import trio

from raftnet.client import Client

from cluster_harness import Cluster, raftnet, running_cluster


@pytest.fixture
def cluster3(tmp_path):
    with running_cluster(tmp_path, nodes=3) as c:
        yield c


def test_cli_put_get_del_cas_and_exit_codes(cluster3):
    c = cluster3
    r = raftnet("put", "greeting", "hello", "--cluster", c.cluster_arg)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OK leader=")
    fields = dict(kv.split("=") for kv in r.stdout.split()[1:])
    assert int(fields["leader"]) in c.ids and int(fields["index"]) >= 2

    r = raftnet("get", "greeting", "--cluster", c.cluster_arg)
    assert (r.returncode, r.stdout) == (0, "hello")

    # The environment variable works as well as --cluster.
    r = raftnet("get", "greeting", env={"RAFTNET_CLUSTER": c.cluster_arg})
    assert (r.returncode, r.stdout) == (0, "hello")

    r = raftnet("get", "nothing-here", "--cluster", c.cluster_arg)
    assert r.returncode == 1 and "not found" in r.stderr

    r = raftnet("cas", "greeting", "wrong", "bye", "--cluster", c.cluster_arg)
    assert r.returncode == 1
    r = raftnet("cas", "greeting", "hello", "bye", "--cluster", c.cluster_arg)
    assert (r.returncode, r.stdout) == (0, "OK\n")
    r = raftnet("cas", "--absent", "fresh", "new", "--cluster", c.cluster_arg)
    assert r.returncode == 0
    r = raftnet("get", "fresh", "--config", str(c.config))
    assert (r.returncode, r.stdout) == (0, "new")

    r = raftnet("del", "greeting", "--cluster", c.cluster_arg)
    assert (r.returncode, r.stdout) == (0, "OK\n")
    r = raftnet("del", "greeting", "--cluster", c.cluster_arg)
    assert r.returncode == 1
    r = raftnet("get", "greeting", "--cluster", c.cluster_arg)
    assert r.returncode == 1


def test_cli_usage_errors_exit_64(cluster3):
    c = cluster3
    assert raftnet("put", "k", "--cluster", c.cluster_arg).returncode == 64  # missing VALUE
    assert raftnet("put", "k", "v").returncode == 64  # no cluster at all
    assert raftnet("put", "k", "v", "--cluster", "not-an-address").returncode == 64
    assert raftnet("get", "k", "--cluster", c.cluster_arg, "--timeout", "-1").returncode == 64
    assert raftnet("frobnicate").returncode == 64


def test_cli_target_a_follower_exits_3_with_the_leader(cluster3):
    c = cluster3
    leader = c.wait_for_leader()
    follower = next(i for i in c.ids if i != leader)
    r = raftnet("put", "k", "v", "--config", str(c.config), "--target", str(follower))
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert json.loads(r.stdout) == {"error": "not_leader", "leader": leader}
    r = raftnet("put", "k", "v", "--config", str(c.config), "--target", str(leader))
    assert r.returncode == 0, r.stderr


def test_status_json_shape(cluster3):
    c = cluster3
    leader = c.wait_for_leader()
    r = raftnet("status", "--json", "--cluster", c.cluster_arg)
    assert r.returncode == 0, r.stderr
    nodes = json.loads(r.stdout)["nodes"]
    assert sorted(n["id"] for n in nodes) == c.ids
    for n in nodes:
        assert n["reachable"] is True
        assert n["address"] == f"127.0.0.1:{c.ports[n['id']]}"
        assert {"role", "term", "leader", "commit", "applied", "last_index"} <= n.keys()
        assert n["leader"] == leader
    r = raftnet("status", "--cluster", c.cluster_arg)
    assert r.returncode == 0 and "leader" in r.stdout


async def test_client_library_against_real_cluster(cluster3):
    c = cluster3
    async with Client(c.addresses, timeout=10.0) as client:
        r = await client.put("a", b"1")
        assert r.index >= 1 and r.leader in c.ids
        assert await client.get("a") == b"1"
        assert await client.cas("a", b"1", b"2") is True
        assert await client.cas("a", b"1", b"3") is False
        assert await client.cas("b", None, b"x") is True
        assert await client.delete("b") is True
        assert await client.delete("b") is False
        assert await client.get("b") is None
        st = await client.status()
        assert set(st) == set(c.ids)
        assert sum(1 for s in st.values() if s["role"] == "leader") == 1

        # Many concurrent tasks share one client.
        async def writer(w: int) -> None:
            for i in range(10):
                await client.put(f"w{w}-{i}", str(i).encode())

        async with trio.open_nursery() as nursery:
            for w in range(8):
                nursery.start_soon(writer, w)
        for w in range(8):
            assert await client.get(f"w{w}-9") == b"9"


async def test_kill_leader_no_acknowledged_write_lost_then_it_catches_up(cluster3):
    c = cluster3
    acknowledged = {}
    async with Client(c.addresses, timeout=20.0) as client:
        for i in range(30):
            await client.put(f"k{i}", f"v{i}".encode())
            acknowledged[f"k{i}"] = f"v{i}".encode()
        old = await trio.to_thread.run_sync(c.wait_for_leader)

        # Eight tasks share the client while the leader dies under them:
        # their retries land at the new leader in any order, and every one
        # of them must succeed (one session, many writes in flight).
        async def writer(w: int) -> None:
            for i in range(25):
                await client.put(f"w{w}-{i}", b"%d" % i)
                acknowledged[f"w{w}-{i}"] = b"%d" % i

        async with trio.open_nursery() as nursery:
            for w in range(8):
                nursery.start_soon(writer, w)
            with trio.fail_after(20):
                while len(acknowledged) < 60:
                    await trio.sleep(0.01)
            c.kill(old)
        new = await trio.to_thread.run_sync(lambda: c.wait_for_leader(among=[i for i in c.ids if i != old]))
        assert new != old and len(acknowledged) == 30 + 8 * 25
        for k, v in acknowledged.items():
            assert await client.get(k) == v, k

        c.start(old)
        target = (await client.status())[new]["commit"]

        def caught_up(st):
            n = st.get(old, {})
            return n.get("reachable") and n.get("applied", 0) >= target

        await trio.to_thread.run_sync(c.wait_for, caught_up, f"node {old} to apply up to {target}")
        async with Client(c.addresses, timeout=10.0, target=old) as pinned:
            for k, v in acknowledged.items():
                assert await pinned.get(k, stale=True) == v, k
        for k in ("k0", "k29", "w0-24", "w7-24"):  # and through the CLI
            r = raftnet("get", k, "--stale", "--config", str(c.config), "--target", str(old))
            assert (r.returncode, r.stdout) == (0, acknowledged[k].decode()), (k, r.stderr)


def test_five_nodes_tolerate_two_failures_not_three(tmp_path):
    c = Cluster(tmp_path, nodes=5)
    c.start_all()
    try:
        c.wait_for_leader()
        assert raftnet("put", "x", "1", "--cluster", c.cluster_arg).returncode == 0
        leader = c.wait_for_leader()
        down = [leader, next(i for i in c.ids if i != leader)]
        for i in down:
            c.kill(i)
        c.wait_for_leader(among=[i for i in c.ids if i not in down])
        r = raftnet("put", "x", "2", "--cluster", c.cluster_arg, "--timeout", "15")
        assert r.returncode == 0, r.stderr
        third = next(i for i in c.ids if i not in down)
        c.kill(third)
        r = raftnet("put", "x", "3", "--cluster", c.cluster_arg, "--timeout", "3")
        assert r.returncode == 2, (r.stdout, r.stderr)
        st = c.status()
        assert sum(1 for n in st.values() if not n["reachable"]) == 3
    finally:
        c.stop_all()
