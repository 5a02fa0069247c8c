"""Hostile or broken connections close themselves; the node keeps serving."""

from __future__ import annotations

import socket

import cbor2
import pytest

from cluster_harness import Cluster, frame, raftnet


@pytest.fixture
def secured(tmp_path):
    c = Cluster(tmp_path, nodes=3, secret="s3cret-value")
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


def ok_put(c, key: str) -> None:
    r = raftnet("put", key, "v", "--cluster", c.cluster_arg, "--timeout", "20",
                env={"RAFTNET_SECRET": "s3cret-value"})
    assert r.returncode == 0, r.stderr


def raw(port: int, payload: bytes, read_challenge: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        if read_challenge:
            s.recv(4096)
        s.sendall(payload)
        s.settimeout(10)
        out = b""
        try:
            while chunk := s.recv(4096):
                out += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        return out  # the node closed the connection (recv returned b"")


def test_garbage_huge_prefix_unknown_type_and_wrong_secret(secured):
    c = secured
    ok_put(c, "before")
    port = c.ports[1]
    raw(port, b"\x00\x00\x00\x05not-cbor-at-all")
    raw(port, b"\xff\xff\xff\xff" + b"x" * 100)  # a 4 GiB frame announced
    raw(port, frame({"t": "hello", "role": "client", "id": None, "cluster": "itest", "proof": b"\x00" * 32}))
    raw(port, frame({"t": "hello", "role": "peer", "id": 99, "cluster": "itest"}))
    raw(port, frame({"t": "hello", "role": "client", "id": None, "cluster": "another-cluster"}))
    raw(port, frame(["not", "a", "map"]))
    raw(port, frame({"t": "definitely-unknown"}))
    # A client without the secret is refused; with it, served.
    r = raftnet("put", "k", "v", "--cluster", c.cluster_arg, "--timeout", "3")
    assert r.returncode == 2
    ok_put(c, "after")
    log = c.log_text(1)
    assert "frame of 4294967295 bytes exceeds the limit" in log
    assert "bad or missing secret proof" in log
    assert "unknown peer id" in log
    assert "wrong cluster name" in log
    assert "malformed CBOR frame" in log
    for i in c.ids:
        assert c.procs[i].poll() is None, f"node {i} died"


def test_unknown_request_type_after_a_valid_handshake(tmp_path):
    import hashlib  # noqa: F401 - the handshake below needs no secret

    c = Cluster(tmp_path, nodes=1)
    c.start_all()
    try:
        c.wait_for_leader()
        with socket.create_connection(("127.0.0.1", c.ports[1]), timeout=10) as s:
            s.recv(4096)
            s.sendall(frame({"t": "hello", "role": "client", "id": None, "cluster": "itest"}))
            s.recv(4096)  # welcome
            s.sendall(frame({"t": "req", "rid": 1, "op": "explode"}))
            body = s.recv(4096)
            reply = cbor2.loads(body[4:])
            assert reply["rid"] == 1 and reply["error"] == "bad_request"
        r = raftnet("put", "x", "1", "--cluster", c.cluster_arg)
        assert r.returncode == 0
    finally:
        c.stop_all()
