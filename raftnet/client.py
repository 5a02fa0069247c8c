"""The trio client library.

```python
async with Client(["127.0.0.1:7001", "127.0.0.1:7002"], timeout=5.0, secret=None) as c:
    r = await c.put("k", b"v")           # r.index, r.leader
    v = await c.get("k")                 # bytes | None, linearizable
    existed = await c.delete("k")
    ok = await c.cas("k", b"old", b"new")    # expected None means "absent"
    st = await c.status()                # {node_id: {role, term, leader, commit, applied, last_index}}
```

It finds the leader, follows redirects, and retries across leader changes
with the *same* session sequence number, so a write applies at most once
however often it is retried. One connection per node carries many requests
at once (request ids); any number of trio tasks may share a client.
``timeout`` bounds each call as a whole, retries included.

Errors: ``Timeout`` (the outcome of a write is unknown), ``Unavailable`` (no
node could be reached), ``NotLeader`` (only with ``target=``: that node is
not the leader; ``.leader`` names the one it knows), ``ClientError`` (the
request itself was refused, e.g. a bad key).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any

import trio

from .node.wire import DEFAULT_MAX_FRAME, FrameReader, ProtocolError, encode_frame, send_hello

RETRY_MIN, RETRY_MAX = 0.02, 0.5
MAX_WRITES_IN_FLIGHT = 1024  # per Client; well under the state machine's MAX_OUTSTANDING


class ClientError(Exception):
    """The cluster refused the request itself (bad input, expired session)."""

    def __init__(self, code: str, message: str = ""):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


class Timeout(ClientError):
    def __init__(self, message: str = "timed out"):
        super().__init__("timeout", message)


class Unavailable(ClientError):
    def __init__(self, message: str = "no node could be reached"):
        super().__init__("unavailable", message)


class NotLeader(ClientError):
    def __init__(self, leader: int | None, address: str | None = None):
        super().__init__("not_leader", f"the leader is {leader}")
        self.leader = leader
        self.address = address


@dataclass(frozen=True, slots=True)
class PutResult:
    index: int
    leader: int


class _Broken(Exception):
    """This connection failed; try another node."""


class _Connection:
    """One stream to one node, with requests multiplexed by id."""

    def __init__(self, address: str):
        self.address = address
        self.node_id: int | None = None
        self._stream: trio.SocketStream | None = None
        self._send_lock = trio.Lock()
        self._waiting: dict[int, list] = {}  # rid -> [event, reply]
        self._rids = itertools.count(1)
        self._connect_lock = trio.Lock()
        self.dead = False

    async def connect(self, client: Client) -> None:
        async with self._connect_lock:
            if self._stream is not None and not self.dead:
                return
            host, _, port = self.address.rpartition(":")
            try:
                stream = await trio.open_tcp_stream(host.strip("[]"), int(port))
            except OSError as exc:
                raise _Broken(f"{self.address}: {exc.strerror or exc}") from None
            reader = FrameReader(stream, DEFAULT_MAX_FRAME)
            try:
                self.node_id = await send_hello(stream, reader, cluster=client.cluster, secret=client.secret,
                                                role="client", id=None)
            except (ProtocolError, trio.BrokenResourceError, OSError) as exc:
                await trio.aclose_forcefully(stream)
                raise _Broken(f"{self.address}: {exc}") from None
            self._stream, self.dead = stream, False
            client._nursery.start_soon(self._read_replies, stream, reader)

    async def _read_replies(self, stream, reader: FrameReader) -> None:
        try:
            while True:
                frame = await reader.read()
                if frame is None:
                    break
                slot = self._waiting.pop(frame.get("rid"), None)
                if slot is not None:
                    slot[1] = frame
                    slot[0].set()
        except (ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._fail(stream)

    def _fail(self, stream) -> None:
        if self._stream is stream:
            self.dead = True
            self._stream = None
        for slot in self._waiting.values():
            slot[0].set()  # reply stays None: broken
        self._waiting.clear()

    async def request(self, client: Client, req: dict) -> dict:
        await self.connect(client)
        stream = self._stream
        rid = next(self._rids)
        slot = [trio.Event(), None]
        self._waiting[rid] = slot
        try:
            async with self._send_lock:
                await stream.send_all(encode_frame({**req, "t": "req", "rid": rid}))
            await slot[0].wait()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._fail(stream)
            raise _Broken(f"{self.address}: {exc}") from None
        finally:
            self._waiting.pop(rid, None)
        if slot[1] is None:
            raise _Broken(f"{self.address}: connection lost")
        return slot[1]

    async def close(self) -> None:
        if self._stream is not None:
            await trio.aclose_forcefully(self._stream)
            self._stream = None


class Client:
    def __init__(self, addresses: list[str], timeout: float = 5.0, secret: bytes | str | None = None,
                 target: int | None = None, cluster: str | None = None):
        if not addresses:
            raise ValueError("give at least one node address")
        self.addresses = list(addresses)
        self.timeout = timeout
        self.secret = secret.encode() if isinstance(secret, str) else secret
        self.target = target
        self.cluster = cluster  # None: accept the name the server announces
        self._conns = {a: _Connection(a) for a in self.addresses}
        self._leader: str | None = None
        self._client_id: int | None = None
        self._seq = 0
        self._waiting_on: set[int] = set()  # seqs of this session's writes in flight
        self._write_slots = trio.Semaphore(MAX_WRITES_IN_FLIGHT)
        self._session_lock = trio.Lock()
        self._rng = random.Random()
        self._nursery: trio.Nursery | None = None
        self._nursery_cm = None

    async def __aenter__(self) -> Client:
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        return self

    async def __aexit__(self, *exc_info):
        for c in self._conns.values():
            await c.close()
        self._nursery.cancel_scope.cancel()
        # The nursery only holds reply readers, which never raise: close it
        # on its own so an error from the body propagates as itself, not
        # wrapped in an exception group.
        await self._nursery_cm.__aexit__(None, None, None)
        return False

    # -- the API ---------------------------------------------------------------------

    async def put(self, key: str, value: bytes) -> PutResult:
        r = await self._write("put", key=key, value=bytes(value))
        return PutResult(r["index"], r["leader"])

    async def delete(self, key: str) -> bool:
        return bool((await self._write("delete", key=key))["existed"])

    async def cas(self, key: str, expected: bytes | None, new: bytes) -> bool:
        return bool((await self._write("cas", key=key, expected=expected, new=bytes(new)))["swapped"])

    async def get(self, key: str, stale: bool = False) -> bytes | None:
        req = {"op": "get", "key": key, "stale": stale}
        with self._deadline() as state:
            r = await (self._any_node(req, state) if stale else self._call(req, state))
        return r["value"]

    async def status(self) -> dict[Any, dict]:
        """Every node's view, asked concurrently; an unreachable node maps to
        ``{"error": reason, "address": ...}``."""
        replies: dict[str, dict] = {}

        async def ask(address: str) -> None:
            with trio.move_on_after(self.timeout) as scope:
                try:
                    r = await self._conns[address].request(self, {"op": "status"})
                except _Broken as exc:
                    replies[address] = {"error": str(exc).split(": ", 1)[-1], "address": address}
                    return
                replies[address] = r["status"] if r.get("ok") else {"error": r.get("error"), "address": address}
            if scope.cancelled_caught:
                replies[address] = {"error": "timed out", "address": address}

        async with trio.open_nursery() as nursery:
            for a in self.addresses:
                nursery.start_soon(ask, a)
        members: dict[str, int] = {}
        for st in replies.values():
            for node_id, address in (st.get("members") or {}).items():
                members[address] = int(node_id)
        out: dict[Any, dict] = {}
        for address in self.addresses:
            st = replies[address]
            node_id = st.get("id") or self._conns[address].node_id or members.get(address, address)
            out[node_id] = st
        return out

    # -- sessions and retries ------------------------------------------------------------

    async def _write(self, op: str, **fields: Any) -> dict:
        with self._deadline() as state:
            async with self._write_slots:
                return await self._write_once(op, fields, state)

    async def _write_once(self, op: str, fields: dict, state: dict) -> dict:
        await self._ensure_session(state)
        self._seq += 1
        client, seq, waiting = self._client_id, self._seq, self._waiting_on
        waiting.add(seq)
        # ack: the oldest write of this session still without an answer.
        # Writes from concurrent tasks may commit in any order; the
        # state machine keeps every result from ack on, so each retry
        # finds its own answer.
        req = {"op": op, **fields, "client": client, "seq": seq, "ack": min(waiting)}
        try:
            return await self._call(req, state)
        except ClientError as exc:
            if exc.code == "session_expired" and self._client_id == client:
                self._client_id = None  # register afresh next time; this write's outcome is unknown
            raise
        finally:
            # Answered, refused, or given up on (Timeout): this seq is
            # never sent again, so the server may forget its result.
            waiting.discard(seq)

    async def _ensure_session(self, state: dict) -> None:
        async with self._session_lock:
            if self._client_id is None:
                r = await self._call({"op": "register"}, state)
                self._client_id, self._seq, self._waiting_on = r["client"], 0, set()

    def _deadline(self):
        client = self

        class _Scope:
            def __enter__(self_inner):
                self_inner.scope = trio.move_on_after(client.timeout)
                self_inner.scope.__enter__()
                self_inner.state = {"reached": False, "last": "no node answered"}
                return self_inner.state

            def __exit__(self_inner, *exc):
                swallowed = self_inner.scope.__exit__(*exc)
                if self_inner.scope.cancelled_caught:
                    if self_inner.state["reached"]:
                        raise Timeout(f"no answer within {client.timeout:g}s ({self_inner.state['last']})")
                    raise Unavailable(f"no node reachable within {client.timeout:g}s ({self_inner.state['last']})")
                return swallowed

        return _Scope()

    async def _call(self, req: dict, state: dict) -> dict:
        """Send ``req`` to the leader, following redirects and retrying
        (same request, so the same seq) until it answers or time runs out."""
        delay = RETRY_MIN
        order = self._order()
        while True:
            address = await self._target_address(state) if self.target is not None else (self._leader or order[0])
            try:
                r = await self._conns[address].request(self, req)
            except _Broken as exc:
                state["last"] = str(exc)
                if self.target is not None:
                    await trio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX)
                    continue
                if self._leader == address:
                    self._leader = None
                if address == order[-1]:
                    await trio.sleep(delay * (0.5 + self._rng.random()))
                    delay = min(delay * 2, RETRY_MAX)
                order = order[1:] + order[:1] if address == order[0] else order
                continue
            state["reached"] = True
            if r.get("ok"):
                self._leader = address
                return r
            code = r.get("error")
            state["last"] = f"{code}: {r.get('message', '')}"
            if code == "not_leader":
                if self.target is not None:
                    raise NotLeader(r.get("leader"), r.get("leader_address"))
                hint = r.get("leader_address")
                if hint in self._conns and hint != address:
                    self._leader = hint
                    continue
                self._leader = None
                order = order[1:] + order[:1]
            elif code not in ("leader_transfer", "backpressure", "unavailable"):
                raise ClientError(code or "bad_reply", r.get("message", ""))
            await trio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, RETRY_MAX)

    async def _any_node(self, req: dict, state: dict) -> dict:
        delay = RETRY_MIN
        while True:
            addresses = [await self._target_address(state)] if self.target is not None else self._order()
            for address in addresses:
                try:
                    r = await self._conns[address].request(self, req)
                except _Broken as exc:
                    state["last"] = str(exc)
                    continue
                state["reached"] = True
                if r.get("ok"):
                    return r
                raise ClientError(r.get("error", "bad_reply"), r.get("message", ""))
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _order(self) -> list[str]:
        order = self.addresses[:]
        self._rng.shuffle(order)
        return order

    async def _target_address(self, state: dict) -> str:
        """The address of node ``target``, learnt from the hello of each
        connection (never by sending it a request meant for another node)."""
        delay = RETRY_MIN
        while True:
            for a, c in self._conns.items():
                if c.node_id == self.target:
                    return a
            for a, c in self._conns.items():
                if c.node_id is None:
                    try:
                        await c.connect(self)
                    except _Broken as exc:
                        state["last"] = str(exc)
                        continue
                    if c.node_id == self.target:
                        return a
            if all(c.node_id is not None for c in self._conns.values()):
                raise ClientError("bad_request", f"no node with id {self.target} among {', '.join(self.addresses)}")
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
