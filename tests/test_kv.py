"""The KV state machine: commands, sessions (exactly-once), expiry, snapshot
round trips (tests/test_kv_snapshot.py has the copy-on-write view)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from raftnet.kv import KVStore, encode_command


def test_commands_and_results():
    kv = KVStore()
    client = kv.apply(1, encode_command("register"))["client"]
    assert kv.apply(2, encode_command("put", key="a", value=b"1", client=client, seq=1)) == {"ok": True}
    assert kv.read({"op": "get", "key": "a"}) == {"ok": True, "value": b"1"}
    assert kv.apply(3, encode_command("cas", key="a", expected=b"0", new=b"2", client=client, seq=2))["swapped"] is False
    assert kv.apply(4, encode_command("cas", key="a", expected=b"1", new=b"2", client=client, seq=3))["swapped"] is True
    assert kv.apply(5, encode_command("cas", key="b", expected=None, new=b"x", client=client, seq=4))["swapped"] is True
    assert kv.apply(6, encode_command("delete", key="b", client=client, seq=5))["existed"] is True
    assert kv.apply(7, encode_command("delete", key="b", client=client, seq=6))["existed"] is False


def test_retry_returns_the_cached_answer_and_never_applies_twice():
    kv = KVStore()
    c = kv.apply(1, encode_command("register"))["client"]
    kv.apply(2, encode_command("put", key="n", value=b"1", client=c, seq=1))
    cas = encode_command("cas", key="n", expected=b"1", new=b"2", client=c, seq=2)
    assert kv.apply(3, cas)["swapped"] is True
    assert kv.apply(4, cas)["swapped"] is True  # retry: same answer, even though n is now 2
    assert kv.read({"op": "get", "key": "n"})["value"] == b"2"
    assert kv.apply(5, encode_command("put", key="n", value=b"9", client=c, seq=1))["error"] == "stale_sequence"


def test_malformed_commands_are_error_results_not_exceptions():
    kv = KVStore()
    c = kv.apply(1, encode_command("register"))["client"]
    for i, cmd in enumerate([b"\xff\x00", encode_command("nope"), encode_command("put", key="", value=b"",
                             client=c, seq=1), encode_command("put", key="k", value="str", client=c, seq=2),
                             encode_command("put", key="k", value=b"v", client=999, seq=1)]):
        r = kv.apply(10 + i, cmd)
        assert "error" in r
    assert kv.apply(20, encode_command("put", key="k", value=b"v", client=999, seq=1))["error"] == "session_expired"


def test_sessions_expire_by_log_position():
    kv = KVStore(session_ttl=10)
    c = kv.apply(1, encode_command("register"))["client"]
    other = kv.apply(2, encode_command("register"))["client"]
    for i in range(3, 14):
        kv.apply(i, encode_command("put", key="x", value=b"v", client=other, seq=i))
    assert kv.apply(14, encode_command("put", key="y", value=b"v", client=c, seq=1))["error"] == "session_expired"
    assert other in kv.sessions


commands = st.lists(st.tuples(st.sampled_from(["put", "delete", "cas"]), st.sampled_from(["a", "b", "c"]),
                              st.binary(max_size=3), st.booleans()), max_size=40)


@settings(max_examples=60, deadline=None)
@given(commands)
def test_replicas_agree_and_retries_never_double_apply(ops):
    a, b, ref = KVStore(), KVStore(), {}
    log = [encode_command("register")]
    for seq, (op, key, val, retry) in enumerate(ops, start=1):
        fields = {"put": {"value": val}, "delete": {}, "cas": {"expected": ref.get(key), "new": val}}[op]
        cmd = encode_command(op, key=key, client=1, seq=seq, **fields)
        log.append(cmd)
        if retry:
            log.append(cmd)
        if op == "put" or op == "cas":
            ref[key] = val
        else:
            ref.pop(key, None)
    results_a = [a.apply(i, c) for i, c in enumerate(log, start=1)]
    results_b = [b.apply(i, c) for i, c in enumerate(log, start=1)]
    assert results_a == results_b and a.data == b.data == ref
    restored = KVStore()
    restored.restore(a.snapshot())
    assert restored.data == a.data and restored.sessions == a.sessions


def _cmd(c: int, seq: int, ack: int, key: str = "k", value: bytes = b"v") -> bytes:
    return encode_command("put", key=key, value=value, client=c, seq=seq, ack=ack)


def test_concurrent_writes_of_one_client_may_commit_in_any_order():
    """Two tasks share a client: seq 2 commits before seq 1. Both apply, and
    a retry of either gets its own answer."""
    kv = KVStore()
    c = kv.apply(1, encode_command("register"))["client"]
    cas2 = encode_command("cas", key="n", expected=None, new=b"two", client=c, seq=2, ack=1)
    put1 = _cmd(c, 1, 1, key="m", value=b"one")
    assert kv.apply(2, cas2) == {"ok": True, "swapped": True}
    assert kv.apply(3, put1) == {"ok": True}
    assert kv.data == {"n": b"two", "m": b"one"}
    assert kv.apply(4, cas2) == {"ok": True, "swapped": True}  # retries: recorded answers
    assert kv.apply(5, put1) == {"ok": True}


def test_ack_lets_the_store_forget_and_refuse_delayed_duplicates():
    kv = KVStore()
    c = kv.apply(1, encode_command("register"))["client"]
    for seq in (1, 2, 3):
        kv.apply(1 + seq, _cmd(c, seq, 1))
    assert sorted(kv.sessions[c].results) == [1, 2, 3]
    kv.apply(5, _cmd(c, 4, 3))  # the client has its answers for 1 and 2
    assert sorted(kv.sessions[c].results) == [3, 4]
    assert kv.apply(6, _cmd(c, 2, 1))["error"] == "stale_sequence"
    assert kv.apply(7, _cmd(c, 3, 3)) == {"ok": True}  # still remembered
    assert kv.apply(8, _cmd(c, 5, 6))["error"] == "bad_request"  # ack above seq


def test_a_client_with_too_many_unacknowledged_writes_is_refused_without_applying():
    kv = KVStore(max_outstanding=2)
    c = kv.apply(1, encode_command("register"))["client"]
    kv.apply(2, _cmd(c, 1, 1))
    kv.apply(3, _cmd(c, 2, 1))
    assert kv.apply(4, _cmd(c, 3, 1, key="x"))["error"] == "too_many_outstanding"
    assert "x" not in kv.data
    assert kv.apply(5, _cmd(c, 3, 2, key="x")) == {"ok": True}  # seq 1 answered: room again
    assert kv.data["x"] == b"v"


@settings(max_examples=80, deadline=None)
@given(st.permutations(list(range(1, 13))), st.lists(st.integers(1, 12), max_size=12))
def test_any_commit_order_with_retries_applies_each_write_once(order, retries):
    """Twelve writes in flight at once (ack 1), committed in any order, some
    also retried later: every write takes effect once, every retry gets the
    first answer, and a snapshot taken at the end restores the same state."""
    kv = KVStore()
    c = kv.apply(1, encode_command("register"))["client"]
    writes = {s: encode_command("cas", key=f"k{s}", expected=None, new=b"x", client=c, seq=s, ack=1)
              for s in range(1, 13)}
    index = 1
    first: dict[int, dict] = {}
    for s in order + retries:
        index += 1
        r = kv.apply(index, writes[s])
        first.setdefault(s, r)
        assert r == first[s] == {"ok": True, "swapped": True}
    assert kv.data == {f"k{s}": b"x" for s in range(1, 13)}
    restored = KVStore()
    restored.restore(kv.snapshot())
    assert restored.data == kv.data and restored.sessions == kv.sessions


def test_apply_is_a_function_of_the_log_alone_not_of_the_node_config():
    """Replicas must apply one log identically (state machine safety, §5.4.3),
    so nothing node-local may steer ``apply``: two nodes whose
    ``[limits] max_key_bytes`` differ (or one restarted after the limit
    changed) replay the same log to the same state. Limits are enforced by
    the leader before it proposes."""
    from raftnet.config import parse_config
    from raftnet.node import Node

    log = [encode_command("register")]
    for seq, key in enumerate(["short", "k" * 5000, "x" * 20], start=1):
        log.append(encode_command("put", key=key, value=b"v", client=1, seq=seq))
    states = []
    for limit in (4096, 8):
        config = parse_config({"cluster": {"name": "c"}, "nodes": [{"id": 1, "address": "127.0.0.1:1"}],
                               "limits": {"max_key_bytes": limit}})
        machine = Node(config, 1).state_machine  # built the way `raftnet serve` builds it
        results = [machine.apply(index, command) for index, command in enumerate(log, start=1)]
        states.append((results, machine.state_digest()))
    assert states[0] == states[1]
