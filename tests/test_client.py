"""The client library against fake nodes on loopback: redirects, retries
with the same seq, the ack it sends, timeouts, pinned nodes, unreachable
nodes. The fakes speak the real handshake and framing; what they answer is
scripted per test."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio

from raftnet.client import Client, ClientError, NotLeader, Timeout, Unavailable
from raftnet.node.wire import DEFAULT_MAX_FRAME, FrameReader, accept_hello, encode_frame

Behaviour = Callable[["FakeNode", dict], Awaitable[dict | None]]


class FakeNode:
    """Accepts client connections and answers each request with
    ``behaviour(node, request)``: a reply body, or None for no reply ever."""

    def __init__(self, node_id: int, behaviour: Behaviour, limits: dict | None = None):
        self.id = node_id
        self.behaviour = behaviour
        self.limits = limits
        self.requests: list[dict] = []
        self.address = ""

    async def serve(self, nursery: trio.Nursery) -> None:
        listeners = await nursery.start(partial(trio.serve_tcp, self._connection, 0, host="127.0.0.1"))
        self.address = f"127.0.0.1:{listeners[0].socket.getsockname()[1]}"

    async def _connection(self, stream: trio.SocketStream) -> None:
        reader = FrameReader(stream, DEFAULT_MAX_FRAME)
        await accept_hello(stream, reader, cluster="fake", secret=None, node_id=self.id, peer_ids=set(),
                           limits=self.limits)
        send_lock = trio.Lock()
        async with trio.open_nursery() as nursery:
            while (req := await reader.read()) is not None:
                self.requests.append(req)
                nursery.start_soon(self._answer, stream, send_lock, req, nursery.cancel_scope)
            nursery.cancel_scope.cancel()
        await stream.aclose()

    async def _answer(self, stream, send_lock: trio.Lock, req: dict, connection: trio.CancelScope) -> None:
        try:
            body = await self.behaviour(self, req)
        except trio.BrokenResourceError:  # the behaviour asks to drop the connection
            connection.cancel()
            return
        if body is None:
            await trio.sleep_forever()
        async with send_lock:
            await stream.send_all(encode_frame({"t": "rep", "rid": req["rid"], **body}))

    def writes(self) -> list[dict]:
        return [r for r in self.requests if r["op"] in ("put", "delete", "cas")]


async def leader(node: FakeNode, req: dict) -> dict:
    if req["op"] == "register":
        return {"ok": True, "client": 7, "index": 1, "leader": node.id}
    return {"ok": True, "index": len(node.requests), "leader": node.id}


def follower_of(lead: FakeNode) -> Behaviour:
    async def behave(node: FakeNode, req: dict) -> dict:
        return {"error": "not_leader", "message": "", "leader": lead.id, "leader_address": lead.address}

    return behave


async def silent(node: FakeNode, req: dict) -> None:
    return None


async def start(nursery: trio.Nursery, *nodes: FakeNode) -> list[str]:
    for n in nodes:
        await n.serve(nursery)
    return [n.address for n in nodes]


async def test_follows_the_redirect_and_retries_with_the_same_seq():
    answered_once = False

    async def flaky_leader(node: FakeNode, req: dict) -> dict:
        nonlocal answered_once
        if req["op"] == "put" and not answered_once:
            answered_once = True  # the first attempt hits a leader change
            return {"error": "unavailable", "message": "leader changed", "leader": None, "leader_address": None}
        return await leader(node, req)

    async with trio.open_nursery() as nursery:
        b = FakeNode(2, flaky_leader)
        await start(nursery, b)
        a = FakeNode(1, follower_of(b))
        await start(nursery, a)
        async with Client([a.address, b.address], timeout=10) as c:
            r = await c.put("k", b"v")
            again = await c.put("k", b"w")
        assert r.leader == again.leader == 2
        puts = b.writes()
        assert [(p["client"], p["seq"]) for p in puts] == [(7, 1), (7, 1), (7, 2)]
        # Whichever node it tried first, the second write went straight to the leader.
        assert [p["seq"] for p in a.writes()] in ([], [1])
        nursery.cancel_scope.cancel()


async def test_not_leader_is_raised_only_when_pinned():
    async with trio.open_nursery() as nursery:
        b = FakeNode(2, leader)
        await start(nursery, b)
        a = FakeNode(1, follower_of(b))
        await start(nursery, a)
        async with Client([a.address, b.address], timeout=10, target=1) as pinned:
            with pytest.raises(NotLeader) as info:
                await pinned.put("k", b"v")
            assert info.value.leader == 2
        async with Client([a.address, b.address], timeout=10) as free:
            assert (await free.put("k", b"v")).leader == 2
        nursery.cancel_scope.cancel()


async def test_concurrent_writes_carry_the_oldest_unanswered_seq_as_ack():
    release = trio.Event()

    async def held(node: FakeNode, req: dict) -> dict:
        if req["op"] == "put" and req["seq"] <= 3:
            if len(node.writes()) == 3:
                release.set()
            await release.wait()  # answer the first three only once all three are in flight
        return await leader(node, req)

    async with trio.open_nursery() as nursery:
        node = FakeNode(1, held)
        await start(nursery, node)
        async with Client([node.address], timeout=10) as c:
            async with trio.open_nursery() as writers:
                for k in range(3):
                    writers.start_soon(c.put, f"k{k}", b"v")
            await c.put("last", b"v")
        acks = {w["seq"]: w["ack"] for w in node.writes()}
        assert acks == {1: 1, 2: 1, 3: 1, 4: 4}
        nursery.cancel_scope.cancel()


async def test_timeout_bounds_the_whole_call_and_means_outcome_unknown():
    async with trio.open_nursery() as nursery:
        node = FakeNode(1, lambda n, r: leader(n, r) if r["op"] == "register" else silent(n, r))
        await start(nursery, node)
        async with Client([node.address], timeout=0.5) as c:
            with trio.fail_after(30):  # a deadline for the test, not a measurement
                with pytest.raises(Timeout):
                    await c.put("k", b"v")
        nursery.cancel_scope.cancel()


async def test_nothing_listening_is_unavailable_and_status_names_the_error():
    async with trio.open_nursery() as nursery:
        live = FakeNode(1, silent)
        await start(nursery, live)
        with trio.socket.socket() as s:  # a port that was free a moment ago
            await s.bind(("127.0.0.1", 0))
            dead = f"127.0.0.1:{s.getsockname()[1]}"
        async with Client([dead], timeout=0.5) as c:
            with trio.fail_after(30):
                with pytest.raises(Unavailable):
                    await c.get("k")
        async with Client([dead, live.address], timeout=0.5) as c:
            st = await c.status()
        assert st[dead]["error"] and st[dead]["address"] == dead
        assert st[1] == {"error": "timed out", "address": live.address}
        nursery.cancel_scope.cancel()


# -- what an error says about a write's outcome ----------------------------------------------


async def dead_address() -> str:
    """A loopback port that was free a moment ago: connecting is refused."""
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def test_a_request_over_the_nodes_frame_limit_is_refused_before_it_is_sent():
    async with trio.open_nursery() as nursery:
        node = FakeNode(1, leader, limits={"max_frame_bytes": 1 << 20, "max_entry_bytes": 1 << 19,
                                           "max_key_bytes": 64})
        await start(nursery, node)
        async with Client([node.address], timeout=10) as c:
            with pytest.raises(ClientError) as info:
                await c.put("k", b"x" * (2 << 20))
            assert info.value.code == "too_large" and info.value.maybe_applied is False
            assert str(2 << 20) in str(info.value) or "2097" in str(info.value)
            assert str(1 << 20) in str(info.value)
            assert node.writes() == []
            await c.put("k", b"small")  # the connection is still good
        # A node that announces no limits (an older one) gets the default, 16 MiB.
        old = FakeNode(2, leader)
        await start(nursery, old)
        async with Client([old.address], timeout=10) as c:
            with pytest.raises(ClientError, match="too_large"):
                await c.put("k", b"x" * (20 << 20))
            assert old.writes() == []
        nursery.cancel_scope.cancel()


async def failed_put(behaviour: Behaviour, expect: type[ClientError], *, dead: int = 0, timeout: float = 1.0,
                     key: str = "k") -> tuple[ClientError, FakeNode]:
    """Put ``key`` through a client of one fake node (plus ``dead`` addresses
    nothing listens on), expecting it to fail with ``expect``."""
    async with trio.open_nursery() as nursery:
        node = FakeNode(1, behaviour)
        await start(nursery, node)
        addresses = [node.address] + [await dead_address() for _ in range(dead)]
        async with Client(addresses, timeout=timeout) as c:
            with pytest.raises(expect) as info:
                await c.put(key, b"v")
        nursery.cancel_scope.cancel()
    return info.value, node


def registering(then: Behaviour) -> Behaviour:
    """A leader for the session's register, ``then`` for everything else."""
    async def behave(node: FakeNode, req: dict) -> dict | None:
        return await leader(node, req) if req["op"] == "register" else await then(node, req)

    return behave


async def test_a_write_sent_on_a_connection_that_then_breaks_is_a_timeout_with_unknown_outcome():
    async def crash_holding_it(node: FakeNode, req: dict) -> dict:
        raise trio.BrokenResourceError  # the node "crashes" holding the write: the connection drops

    err, node = await failed_put(registering(crash_holding_it), Timeout, dead=1)
    assert err.maybe_applied is True and "may or may not have been applied" in str(err)
    assert node.writes(), "the write was sent"


async def test_nothing_reachable_is_unavailable_and_certainly_not_applied():
    async with Client([await dead_address(), await dead_address()], timeout=0.5) as c:
        with trio.fail_after(30):
            with pytest.raises(Unavailable) as info:
                await c.put("k", b"v")
    assert info.value.maybe_applied is False and "not applied" in str(info.value)


async def test_one_follower_of_three_reachable_and_no_leader_says_no_quorum_not_applied():
    async def leaderless(node: FakeNode, req: dict) -> dict:
        return {"error": "not_leader", "message": "not the leader (leader is None)", "leader": None,
                "leader_address": None}

    err, _ = await failed_put(leaderless, Unavailable, dead=2)
    assert "no quorum: 1 of 3 nodes reachable, no leader" in str(err), str(err)
    assert "the write was not applied" in str(err) and err.maybe_applied is False


async def test_a_refusal_that_says_maybe_applied_makes_the_outcome_unknown():
    async def lost_leadership(node: FakeNode, req: dict) -> dict:
        return {"error": "not_leader", "message": "leadership lost", "leader": None, "leader_address": None,
                "maybe_applied": True}

    err, _ = await failed_put(registering(lost_leadership), Timeout)
    assert err.maybe_applied is True


async def test_session_expired_on_a_retry_is_an_unknown_outcome_and_on_a_first_attempt_is_not():
    attempts = 0

    async def expires(node: FakeNode, req: dict) -> dict:
        nonlocal attempts
        attempts += 1
        if req["key"] == "retried" and attempts == 1:
            raise trio.BrokenResourceError  # first attempt: no answer
        return {"error": "session_expired", "message": "client 7 has no session"}

    first, _ = await failed_put(registering(expires), ClientError, key="fresh", timeout=10)
    assert first.code == "session_expired" and first.maybe_applied is False
    assert "not applied" in str(first)
    attempts = 0
    retried, _ = await failed_put(registering(expires), ClientError, key="retried", timeout=10)
    assert retried.code == "session_expired" and retried.maybe_applied is True
    assert "outcome is unknown" in str(retried)


async def test_a_bad_key_is_refused_before_anything_is_sent():
    async with trio.open_nursery() as nursery:
        node = FakeNode(1, leader)
        await start(nursery, node)
        async with Client([node.address], timeout=10) as c:
            for key in ("", "\udcff-not-utf-8"):
                with pytest.raises(ClientError) as info:
                    await c.put(key, b"v")
                assert info.value.code == "bad_request"
        assert node.writes() == []
        nursery.cancel_scope.cancel()


async def test_a_client_left_by_cancellation_mid_request_closes_cleanly():
    """A task cancelled while its request waits (a timeout around it, a
    client killed mid-request) leaves through ``async with Client``: the
    close must not be cut short by the cancellation, or trio's cancel
    scopes are left corrupted (found by the Jepsen harness's client-kill)."""
    async with trio.open_nursery() as nursery:
        [address] = await start(nursery, FakeNode(1, silent))
        for _ in range(5):
            with trio.move_on_after(0.2) as scope:
                async with Client([address], timeout=10) as client:
                    await client.put("k", b"v")
            assert scope.cancelled_caught
        async with trio.open_nursery() as inner:  # trio's state is intact
            inner.start_soon(trio.sleep, 0)
        nursery.cancel_scope.cancel()
