"""Nothing a client or a peer sends after the handshake can take a node down.

Each case opens a real connection to a real `raftnet serve` process,
completes the hello handshake, misbehaves, and then checks that the node
closed that one connection, is still alive, and still serves a put and a
get for another client. (The pre-handshake cases are in
test_node_bad_input.py.)
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest

from cluster_harness import ROOT, Cluster, closed_by_node, frame, handshaken, read_frame, reset, running_cluster

MAX_FRAME = 16 << 20  # the default [limits] max_frame_bytes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("hardening"), nodes=3) as c:
        yield c


def request(rid: int, **fields) -> bytes:
    return frame({"t": "req", "rid": rid, **fields})


# -- client connections ------------------------------------------------------------------


def _oversized(sock):
    sock.sendall(struct.pack(">I", MAX_FRAME + 1) + b"x" * 1000)
    assert closed_by_node(sock)  # the node logs "frame of 16777217 bytes exceeds the limit"


def _half_frame_then_close(sock):
    sock.sendall(request(1, op="status")[:9])
    sock.close()


def _half_frame_then_reset(sock):
    sock.sendall(request(1, op="status")[:9])
    reset(sock)


def _reset_with_requests_in_flight(sock):
    for rid in range(1, 50):
        sock.sendall(request(rid, op="get", key="k", stale=False))
    reset(sock)


def _malformed_cbor(sock):
    sock.sendall(struct.pack(">I", 5) + b"\xff\xff\xff\xff\xff")
    assert closed_by_node(sock)


def _not_a_map(sock):
    sock.sendall(frame([1, 2, 3]))
    assert closed_by_node(sock)


def _a_bignum_and_a_tag(sock):
    sock.sendall(frame({"t": "req", "rid": 10**400, "op": cbor2.CBORTag(30, [1, 3])}))
    assert closed_by_node(sock)


@pytest.mark.parametrize("misbehave", [
    _oversized, _half_frame_then_close, _half_frame_then_reset, _reset_with_requests_in_flight,
    _malformed_cbor, _not_a_map, _a_bignum_and_a_tag,
], ids=lambda f: f.__name__.strip("_"))
def test_a_client_breaking_the_protocol_after_the_handshake_loses_only_its_connection(cluster, misbehave):
    for node_id in cluster.ids:  # the leader and the followers alike
        misbehave(handshaken(cluster.ports[node_id]))
    cluster.assert_serves()


def test_requests_of_the_wrong_shape_are_answered_bad_request_on_a_live_connection(cluster):
    leader = cluster.wait_for_leader()
    sock = handshaken(cluster.ports[leader])
    shapes = [
        {"op": "put"},
        {"op": "put", "key": 5, "value": "not bytes", "client": "x", "seq": -1},
        {"op": "get", "key": ["list"]},
        {"op": "cas", "key": "k", "expected": 3, "new": None, "client": 1, "seq": 1},
        {"op": "delete", "key": "", "client": 1, "seq": 1},
        {"op": None},
        {"op": "status", "extra": {"nested": [1, 2, {"x": b"y"}]}},
    ]
    for rid, fields in enumerate(shapes, start=1):
        sock.sendall(request(rid, **fields))
    replies = {}
    while len(replies) < len(shapes):
        r = read_frame(sock)
        assert r is not None, f"node closed the connection after {sorted(replies)}"
        replies[r["rid"]] = r
    assert all(replies[rid].get("error") == "bad_request" for rid in range(1, len(shapes))), replies
    assert replies[len(shapes)]["ok"] is True  # status ignores the extra field
    sock.close()
    cluster.assert_serves()


# -- peer connections ------------------------------------------------------------------


PEER_GARBAGE = {
    "not-a-raft-frame": frame({"t": "req", "rid": 1, "op": "status"}),
    "messages-not-a-list": frame({"t": "raft", "m": "nope"}),
    "unknown-message-type": frame({"t": "raft", "m": [[99, 1, 2, 1]]}),
    "huge-message-type": frame({"t": "raft", "m": [[10**5000, 1, 2, 1]]}),  # str() of it raises ValueError
    "wrong-field-count": frame({"t": "raft", "m": [[5, 1, 2, 1]]}),
    "entries-of-the-wrong-shape": frame({"t": "raft", "m": [[3, 1, 2, 1, 0, 0, [[1, 1]], 0]]}),
    "negative-index": frame({"t": "raft", "m": [[3, 1, 2, 1, -5, 0, [], 0]]}),
    "a-tagged-value": frame({"t": "raft", "m": [cbor2.CBORTag(4, [2, 3])]}),
    "not-a-map": frame([["raft"]]),
    "malformed-cbor": struct.pack(">I", 3) + b"\x9f\x9f\x9f",
}


@pytest.mark.parametrize("garbage", sorted(PEER_GARBAGE))
def test_a_peer_sending_a_malformed_batch_after_its_hello_loses_only_its_connection(cluster, garbage):
    for node_id in cluster.ids:
        other = next(i for i in cluster.ids if i != node_id)
        sock = handshaken(cluster.ports[node_id], role="peer", peer_id=other)
        sock.sendall(PEER_GARBAGE[garbage])
        assert closed_by_node(sock), f"node {node_id} kept a peer connection open after {garbage}"
    cluster.assert_serves()


@pytest.mark.parametrize("how", ["oversized", "half-frame", "reset"])
def test_a_peer_connection_cut_or_oversized_after_its_hello_loses_only_itself(cluster, how):
    for node_id in cluster.ids:
        other = next(i for i in cluster.ids if i != node_id)
        sock = handshaken(cluster.ports[node_id], role="peer", peer_id=other)
        if how == "oversized":
            sock.sendall(struct.pack(">I", MAX_FRAME + 1) + b"\0" * 1000)
            assert closed_by_node(sock)
        elif how == "half-frame":
            sock.sendall(frame({"t": "raft", "m": []})[:6])
            sock.close()
        else:
            sock.sendall(frame({"t": "raft", "m": []})[:6])
            reset(sock)
    cluster.assert_serves()


def test_a_connection_that_sends_nothing_after_the_handshake_is_harmless(cluster):
    socks = [handshaken(cluster.ports[i]) for i in cluster.ids for _ in range(5)]
    cluster.assert_serves()
    for s in socks:
        s.close()
    cluster.assert_serves()


# -- frames between peers are bounded by bytes -----------------------------------------------


def test_a_follower_far_behind_catches_up_through_frames_under_the_limit(tmp_path):
    """With 64 KiB frames, a follower that missed 5 MB of writes is fed
    frames the size it accepts: it catches up without one refused frame
    (before, up to 256 appends went into one frame and the follower reset
    the connection again and again)."""
    import trio

    from raftnet.client import Client

    c = Cluster(tmp_path, nodes=3, limits={"max_frame_bytes": 64 << 10, "max_entry_bytes": 32 << 10})
    c.start_all()
    try:
        leader = c.wait_for_leader()
        behind = next(i for i in c.ids if i != leader)
        c.kill(behind)

        async def write():
            async with Client(c.addresses, timeout=30.0) as client:
                async def writer(w: int) -> None:
                    for i in range(20):
                        await client.put(f"w{w}-{i}", bytes([w]) * (16 << 10))

                async with trio.open_nursery() as nursery:
                    for w in range(16):
                        nursery.start_soon(writer, w)
                return (await client.status())[leader]["commit"]

        target = trio.run(write)
        c.start(behind)
        c.wait_for(lambda st: st.get(behind, {}).get("applied", 0) >= target,
                   f"node {behind} to apply up to {target}", deadline=60)
        log = c.log_text(behind)
        assert "exceeds the limit" not in log, log[log.index("exceeds the limit") - 300:][:1000]
        c.assert_serves()
    finally:
        c.stop_all()


# -- a client process killed with requests in flight -----------------------------------------

FLOOD = Path(__file__).parent / "helpers" / "flood_client.py"


@pytest.mark.parametrize("round_", range(3))
def test_a_client_killed_with_many_requests_in_flight_does_not_hurt_the_node(cluster, round_):
    """SIGKILL with SO_LINGER 0: the node sees a reset while it holds the
    dead client's writes and reads, on the leader and on a follower."""
    for node_id in cluster.ids:
        p = subprocess.Popen([sys.executable, str(FLOOD), str(cluster.ports[node_id]), "itest", "500"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            line = p.stdout.readline()
            assert line.strip() == "in flight", p.stderr.read()
        finally:
            p.kill()
            p.wait(timeout=10)
    cluster.assert_serves()
