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

Every error is a ``ClientError`` with a ``code`` and ``maybe_applied``, which
says whether a write could have taken effect:

* ``Timeout``: a request was sent and no answer came in time. For a write
  the outcome is unknown (``maybe_applied`` is true): it may still apply,
  and at most once.
* ``Unavailable``: the request certainly had no effect. No node could be
  reached, or the nodes that answered could not take it ("no quorum: 1 of 3
  nodes reachable, no leader").
* ``NotLeader``: only with ``target=``: that node is not the leader;
  ``.leader`` names the one it knows.
* ``ClientError`` itself: the request was refused (``too_large`` before it was
  ever sent, ``bad_request``, ``session_expired``, ...); ``maybe_applied``
  is true only when an earlier attempt of the same write went unanswered.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import trio

from .kv.store import check_key
from .storage.snapshot import verify_snapshot
from .node.wire import DEFAULT_MAX_FRAME, FrameReader, ProtocolError, encode_frame, send_hello

RETRY_MIN, RETRY_MAX = 0.02, 0.5
MAX_WRITES_IN_FLIGHT = 1024  # per Client; well under the state machine's MAX_OUTSTANDING


class ClientError(Exception):
    """The request failed; ``code`` says why, ``maybe_applied`` whether a
    write could still have taken effect."""

    def __init__(self, code: str, message: str = "", maybe_applied: bool = False):
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.maybe_applied = maybe_applied


class Timeout(ClientError):
    def __init__(self, message: str = "timed out", maybe_applied: bool = False):
        super().__init__("timeout", message, maybe_applied)


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
    """This connection failed; try another node. ``sent``: the request had
    (perhaps partly) gone out when it failed."""

    def __init__(self, message: str, sent: bool = False):
        super().__init__(message)
        self.sent = sent


_UNSET = object()


class _Call:
    """What one API call has learnt across its attempts, so that when its
    deadline passes it can say honestly what happened."""

    def __init__(self, write: bool, nodes: int):
        self.write = write
        self.nodes = nodes
        self.registering = False  # opening the session the write needs; the write itself is not out yet
        self.session_unanswered = False
        self.waiting = False  # a request is out and its answer not yet in
        self.unanswered = False  # some attempt went out and was never answered
        self.maybe_applied = False  # some attempt of this write may have taken effect
        self.answered: set[str] = set()
        self.leader_named: Any = _UNSET  # what the last not_leader answer named as the leader
        self.last = "no node answered"

    def sending(self) -> None:
        self.waiting = True

    def replied(self, address: str, reply: dict) -> None:
        self.waiting = False
        self.answered.add(address)
        if reply.get("maybe_applied") is True and self.write and not self.registering:
            self.maybe_applied = True

    def broken(self, exc: _Broken) -> None:
        self.waiting = False
        self.last = str(exc)
        if exc.sent:
            self._lost()

    def _lost(self) -> None:
        if self.registering:
            self.session_unanswered = True  # only the session's register is in doubt, not the write
            return
        self.unanswered = True
        if self.write:
            self.maybe_applied = True

    def expired(self, timeout: float) -> ClientError:
        if self.waiting:
            self._lost()
        if self.maybe_applied:
            return Timeout(f"no answer within {timeout:g}s ({self.last}); the write may or may not have been "
                           "applied", maybe_applied=True)
        if self.unanswered:
            return Timeout(f"no answer within {timeout:g}s ({self.last})")
        reached = len(self.answered)
        if self.leader_named is None and reached:
            if reached < self.nodes // 2 + 1:
                why = f"no quorum: {reached} of {self.nodes} nodes reachable, no leader"
            else:
                why = f"no leader: {reached} of {self.nodes} nodes reachable, none is leading yet"
        elif self.leader_named is not _UNSET and reached:
            why = f"leader {self.leader_named} not reachable within {timeout:g}s ({reached} of {self.nodes} " \
                  "nodes reachable)"
        elif self.session_unanswered:
            why = f"could not open a session: no answer within {timeout:g}s ({self.last})"
        elif not reached:
            why = f"no node reachable within {timeout:g}s ({self.last})"
        else:
            why = f"the cluster did not take the request within {timeout:g}s ({self.last})"
        return Unavailable(why + ("; the write was not applied" if self.write else ""))


class _Connection:
    """One stream to one node, with requests multiplexed by id. Requests
    queue their frames; one writer task sends whatever has queued in a
    single write (many requests per system call under load, and no request
    ever owns the socket, so a request cancelled by its deadline cannot
    leave half a frame on the wire)."""

    def __init__(self, address: str):
        self.address = address
        self.node_id: int | None = None
        self.max_frame_bytes = DEFAULT_MAX_FRAME  # until the node's welcome says otherwise
        self._stream: trio.SocketStream | None = None
        self._waiting: dict[int, list] = {}  # rid -> [event, reply]
        self._rids = itertools.count(1)
        self._connect_lock = trio.Lock()
        self._outbox: list[bytes] = []
        self._queued = trio.Event()
        self.dead = False

    async def connect(self, client: Client) -> None:
        if self._stream is not None and not self.dead:
            return
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
                welcome = await send_hello(stream, reader, cluster=client.cluster, secret=client.secret,
                                           role="client", id=None)
            except (ProtocolError, trio.BrokenResourceError, OSError) as exc:
                await trio.aclose_forcefully(stream)
                raise _Broken(f"{self.address}: {exc}") from None
            self.node_id = welcome["node_id"]
            limit = welcome.get("limits", {}).get("max_frame_bytes")
            if isinstance(limit, int) and limit > 0:
                self.max_frame_bytes = reader.max_frame_bytes = limit
            self._stream, self.dead = stream, False
            self._outbox, self._queued = [], trio.Event()
            client._nursery.start_soon(self._read_replies, stream, reader)
            client._nursery.start_soon(self._send_requests, stream)

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

    async def _send_requests(self, stream) -> None:
        try:
            while self._stream is stream:
                await self._queued.wait()
                self._queued = trio.Event()
                while self._outbox and self._stream is stream:
                    batch, self._outbox = self._outbox, []
                    await stream.send_all(b"".join(batch) if len(batch) > 1 else batch[0])
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self._fail(stream)

    def _fail(self, stream) -> None:
        if self._stream is not stream and self._stream is not None:
            return  # a task of an older connection ending: the current one is fine
        if self._stream is stream:
            self.dead = True
            self._stream = None
            self._queued.set()  # the writer sees the stream is gone and ends
        for slot in self._waiting.values():
            slot[0].set()  # reply stays None: broken
        self._waiting.clear()

    async def request(self, client: Client, req: dict, call: _Call | None = None) -> dict:
        """Send ``req`` and wait for its reply. Raises ``_Broken`` (saying
        whether the request went out) or, for a request bigger than the
        node takes, ``ClientError("too_large")`` without sending it."""
        await self.connect(client)
        rid = next(self._rids)
        data = encode_frame({**req, "t": "req", "rid": rid})
        if len(data) - 4 > self.max_frame_bytes:
            raise ClientError("too_large", f"the {req.get('op')} request is {len(data) - 4} bytes; "
                                           f"{self.address} takes frames of at most {self.max_frame_bytes} bytes")
        if self._stream is None:
            raise _Broken(f"{self.address}: connection lost")
        slot = [trio.Event(), None]
        self._waiting[rid] = slot
        self._outbox.append(data)
        self._queued.set()
        if call is not None:
            call.sending()  # it may go out from here on
        try:
            await slot[0].wait()
        finally:
            self._waiting.pop(rid, None)
        if slot[1] is None:
            raise _Broken(f"{self.address}: connection lost", sent=True)
        if call is not None:
            call.replied(self.address, slot[1])
        return slot[1]

    async def close(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream, None
            self._queued.set()
            await trio.aclose_forcefully(stream)


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
        self._any: list[str] | None = None  # the order stale reads and status try the nodes in
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
        try:
            # Shielded: a task leaving by cancellation (a timeout around the
            # block) must still close, or the nursery below is never exited
            # and trio's cancel scopes are left corrupted.
            with trio.CancelScope(shield=True):
                for c in self._conns.values():
                    await c.close()
        finally:
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
        expected = None if expected is None else bytes(expected)
        return bool((await self._write("cas", key=key, expected=expected, new=bytes(new)))["swapped"])

    async def get(self, key: str, stale: bool = False) -> bytes | None:
        _check_key(key)
        req = {"op": "get", "key": key, "stale": stale}
        with self._deadline(write=False) as call:
            r = await (self._any_node(req, call) if stale else self._call(req, call))
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

    async def snapshot(self) -> dict:
        """Take a snapshot now: on the leader (once it has applied every
        write acknowledged before the call), or on node ``target`` if the
        client has one. Returns ``{node, index, term, voters, name, size}``."""
        with self._deadline(write=False) as call:
            if self.target is not None:
                return await self._any_node({"op": "snapshot"}, call)
            return await self._call({"op": "snapshot", "leader": True}, call)

    async def snapshot_save(self, path: str | os.PathLike, chunk: int = 1 << 20) -> dict:
        """A consistent backup: take a snapshot (as ``snapshot``) and download
        it to ``path``, through ``path.partial``, fsynced and verified before
        it takes its name. A dropped connection resumes where it stopped;
        ``timeout`` bounds each step, not the whole download."""
        info = await self.snapshot()
        address = next((a for a, c in self._conns.items() if c.node_id == info["node"]), None)
        if address is None:
            raise ClientError("unavailable", f"node {info['node']} took the snapshot but is not among the addresses")
        partial = os.fspath(path) + ".partial"
        try:
            with open(partial, "wb") as f:
                offset = 0
                while offset < info["size"]:
                    req = {"op": "snapshot_read", "name": info["name"], "offset": offset, "n": chunk}
                    with self._deadline(write=False) as call:
                        r = await self._from(address, req, call)
                    if not r["data"]:
                        raise ClientError("bad_reply", f"node {info['node']} sent no bytes at offset {offset}")
                    await trio.to_thread.run_sync(f.write, r["data"])
                    offset += len(r["data"])
                await trio.to_thread.run_sync(lambda: (f.flush(), os.fsync(f.fileno())))
            meta = await trio.to_thread.run_sync(verify_snapshot, partial)
            if (meta.index, meta.term) != (info["index"], info["term"]):
                raise ClientError("bad_reply", f"downloaded snapshot {meta.index} (term {meta.term}), "
                                               f"expected {info['index']} (term {info['term']})")
            os.replace(partial, path)
            _fsync_dir(os.path.dirname(os.path.abspath(path)))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise
        return info

    async def _from(self, address: str, req: dict, call: _Call) -> dict:
        """``req`` to the node at ``address`` only, retried while its link is broken."""
        delay = RETRY_MIN
        while True:
            try:
                r = await self._conns[address].request(self, req, call)
            except _Broken as exc:
                call.broken(exc)
                await trio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            if r.get("ok"):
                return r
            raise ClientError(r.get("error", "bad_reply"), r.get("message", ""))

    # -- sessions and retries ------------------------------------------------------------

    async def _write(self, op: str, **fields: Any) -> dict:
        _check_key(fields["key"])
        with self._deadline(write=True) as call:
            slots = self._write_slots
            try:
                slots.acquire_nowait()  # the usual case: no need to yield to take a slot
            except trio.WouldBlock:
                await slots.acquire()
            try:
                return await self._write_once(op, fields, call)
            finally:
                slots.release()

    async def _write_once(self, op: str, fields: dict, call: _Call) -> dict:
        await self._ensure_session(call)
        self._seq += 1
        client, seq, waiting = self._client_id, self._seq, self._waiting_on
        waiting.add(seq)
        # ack: the oldest write of this session still without an answer.
        # Writes from concurrent tasks may commit in any order; the
        # state machine keeps every result from ack on, so each retry
        # finds its own answer.
        req = {"op": op, **fields, "client": client, "seq": seq, "ack": min(waiting)}
        try:
            return await self._call(req, call)
        except ClientError as exc:
            if exc.code == "session_expired" and self._client_id == client:
                self._client_id = None  # register afresh next time
            raise
        finally:
            # Answered, refused, or given up on (Timeout): this seq is
            # never sent again, so the server may forget its result.
            waiting.discard(seq)

    async def _ensure_session(self, call: _Call) -> None:
        if self._client_id is not None:
            return
        async with self._session_lock:
            if self._client_id is None:
                call.registering = True
                r = await self._call({"op": "register"}, call)
                call.registering = False
                self._client_id, self._seq, self._waiting_on = r["client"], 0, set()

    @contextmanager
    def _deadline(self, write: bool):
        """Bound one API call by ``timeout``; when it runs out, raise the
        error that says what the call's attempts amount to."""
        call = _Call(write, len(self.addresses))
        with trio.move_on_after(self.timeout) as scope:
            yield call
        if scope.cancelled_caught:
            raise call.expired(self.timeout)

    async def _call(self, req: dict, call: _Call) -> dict:
        """Send ``req`` to the leader, following redirects and retrying
        (same request, so the same seq) until it answers or time runs out."""
        delay = RETRY_MIN
        order = self._order() if self._leader is None else [self._leader, *(a for a in self.addresses if a != self._leader)]
        while True:
            address = await self._target_address(call) if self.target is not None else (self._leader or order[0])
            try:
                r = await self._conns[address].request(self, req, call)
            except _Broken as exc:
                call.broken(exc)
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
            if r.get("ok"):
                self._leader = address
                return r
            code = r.get("error")
            call.last = f"{code}: {r.get('message', '')}"
            if code == "not_leader":
                call.leader_named = r.get("leader")
                if self.target is not None:
                    raise NotLeader(r.get("leader"), r.get("leader_address"))
                hint = r.get("leader_address")
                if hint in self._conns and hint != address:
                    self._leader = hint
                    continue
                self._leader = None
                order = order[1:] + order[:1]
            elif code == "session_expired":
                raise _session_expired(r.get("message", ""), call.maybe_applied)
            elif code not in ("leader_transfer", "backpressure", "unavailable"):
                raise ClientError(code or "bad_reply", r.get("message", ""), call.maybe_applied)
            await trio.sleep(delay * (0.5 + self._rng.random()))
            delay = min(delay * 2, RETRY_MAX)

    async def _any_node(self, req: dict, call: _Call) -> dict:
        """``req`` to whichever node answers: the one this client last used
        (one connection carries its requests in batches), then the others."""
        delay = RETRY_MIN
        while True:
            if self.target is not None:
                addresses = [await self._target_address(call)]
            else:
                if self._any is None:
                    self._any = self._order()
                addresses = self._any
            for address in addresses:
                try:
                    r = await self._conns[address].request(self, req, call)
                except _Broken as exc:
                    call.broken(exc)
                    if self._any and self._any[0] == address:
                        self._any = self._any[1:] + self._any[:1]  # prefer the next one from now on
                    continue
                if r.get("ok"):
                    return r
                raise ClientError(r.get("error", "bad_reply"), r.get("message", ""))
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _order(self) -> list[str]:
        order = self.addresses[:]
        self._rng.shuffle(order)
        return order

    async def _target_address(self, call: _Call) -> str:
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
                        call.last = str(exc)
                        continue
                    if c.node_id == self.target:
                        return a
            if all(c.node_id is not None for c in self._conns.values()):
                raise ClientError("bad_request", f"no node with id {self.target} among {', '.join(self.addresses)}")
            await trio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_key(key: Any) -> None:
    """Refuse a key no node would take before anything is sent (the node
    checks its length against its own limit)."""
    problem = check_key(key, 1 << 62)
    if problem:
        raise ClientError("bad_request", problem)


def _session_expired(message: str, maybe_applied: bool) -> ClientError:
    if maybe_applied:
        why = "an earlier attempt of this write went unanswered and may have been applied: the outcome is unknown"
    else:
        why = "the write was not applied (the next write registers a new session)"
    return ClientError("session_expired", f"{message}; {why}" if message else why, maybe_applied)
