"""Fuzzing a running node through its sockets (hypothesis, bounded).

Each example opens a real connection to one node of a real 3-node cluster,
completes the hello handshake as a client or as a peer, and then sends a
generated mix of random bytes, frames of valid CBOR in the wrong shapes,
frames that almost look like requests or Raft messages, truncated frames and
oversized length prefixes, and ends by closing, resetting or abandoning
the connection. After every example another client must still put and get,
and every node process must be alive. A failure prints hypothesis's
reproduction blob.

CI runs 40 examples; RAFTNET_LONG=1 runs 400.
"""

from __future__ import annotations

import os
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster_harness import frame, handshaken, reset, running_cluster

EXAMPLES = 400 if os.environ.get("RAFTNET_LONG") == "1" else 40

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(1 << 64) + 1, max_value=(1 << 64) - 1),
    st.floats(allow_nan=True), st.text(max_size=20), st.binary(max_size=64),
)
cbor_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(st.one_of(st.text(max_size=8), st.integers(-5, 5)), inner, max_size=6),
    ),
    max_leaves=30,
)
field_names = st.sampled_from(["t", "rid", "op", "key", "value", "client", "seq", "ack", "expected", "new",
                               "stale", "m"])
near_requests = st.fixed_dictionaries(
    {"t": st.sampled_from(["req", "raft", "hello", "rep"]), "rid": st.one_of(st.integers(), cbor_values)},
    optional={"op": st.one_of(st.sampled_from(["put", "get", "delete", "cas", "status", "register", "x"]),
                              cbor_values)},
).flatmap(lambda base: st.dictionaries(field_names, cbor_values, max_size=5).map(lambda extra: {**extra, **base}))
near_messages = st.builds(
    lambda tag, rest: {"t": "raft", "m": [[tag, *rest]]},
    st.integers(0, 8), st.lists(cbor_values, max_size=9),
)

actions = st.one_of(
    st.binary(min_size=1, max_size=200).map(lambda b: ("raw", b)),
    cbor_values.map(lambda v: ("frame", frame(v))),
    near_requests.map(lambda v: ("frame", frame(v))),
    near_messages.map(lambda v: ("frame", frame(v))),
    st.tuples(cbor_values, st.integers(1, 10)).map(lambda t: ("raw", frame(t[0])[: -t[1]] or b"\0")),
    st.integers((16 << 20) + 1, (1 << 32) - 1).map(lambda n: ("raw", struct.pack(">I", n) + b"\0" * 16)),
)
cases = st.fixed_dictionaries({
    "role": st.sampled_from(["client", "peer"]),
    "node": st.integers(0, 2),
    "actions": st.lists(actions, min_size=1, max_size=6),
    "ending": st.sampled_from(["close", "reset", "read-then-close"]),
})


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_cluster(tmp_path_factory.mktemp("fuzz"), nodes=3, log_level="info") as c:
        yield c


@settings(max_examples=EXAMPLES, deadline=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases)
def test_nothing_sent_after_the_handshake_takes_a_node_down(cluster, case):
    node_id = cluster.ids[case["node"]]
    peer_id = next(i for i in cluster.ids if i != node_id) if case["role"] == "peer" else None
    sock = handshaken(cluster.ports[node_id], role=case["role"], peer_id=peer_id, timeout=5)
    try:
        for _, data in case["actions"]:
            sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the node already closed it: that is an allowed answer
    if case["ending"] == "reset":
        reset(sock)
    else:
        if case["ending"] == "read-then-close":
            sock.settimeout(0.2)
            try:
                sock.recv(65536)
            except (socket.timeout, ConnectionResetError):
                pass
        sock.close()
    cluster.assert_serves(key="fuzz")

