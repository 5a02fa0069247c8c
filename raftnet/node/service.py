"""One client request, served: the request protocol of ``docs/protocol.md``.

    {"t": "req", "rid": n, "op": "register"}
    {"t": "req", "rid": n, "op": "put", "key": str, "value": bytes, "client": id, "seq": n, "ack": n}
    {"t": "req", "rid": n, "op": "delete", "key": str, "client": id, "seq": n, "ack": n}
    {"t": "req", "rid": n, "op": "cas", "key": str, "expected": bytes | None, "new": bytes, "client": id,
     "seq": n, "ack": n}
    {"t": "req", "rid": n, "op": "get", "key": str, "stale": bool}
    {"t": "req", "rid": n, "op": "status"}
    {"t": "req", "rid": n, "op": "snapshot", "leader": bool}
    {"t": "req", "rid": n, "op": "snapshot_read", "name": str, "offset": n, "n": n}

``snapshot`` takes a snapshot now (with ``leader``, only on the leader, once
it has applied everything committed before the request: a backup holding
every acknowledged write) and answers with its ``index``, ``term``,
``name`` and ``size``; ``snapshot_read`` returns ``data``, up to ``n``
bytes of that file from ``offset``, and its ``size``.

Replies carry the same ``rid``: ``{"t": "rep", "rid": n, "ok": true, ...}``
or ``{"t": "rep", "rid": n, "error": code, "message": str, "leader": id | None,
"leader_address": "host:port" | None}`` with code one of not_leader,
leader_transfer, backpressure, session_expired, stale_sequence,
too_many_outstanding, too_large, bad_request, not_found, unavailable, internal. An
error reply to a write carries ``"maybe_applied": true`` when the entry was
already in this node's log (it may still commit); without it, the write
certainly had no effect. ``ack`` is optional (the lowest seq the client
still waits on; it defaults to ``seq``).

Every request is checked here, on the node that would propose it, before
anything reaches the log: the state machine must apply the log the same way
on every replica, so node-local limits are enforced now or never.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ..kv.store import check_key, check_write, encode_command
from ..storage.snapshot import read_chunk
from .pending import RequestFailed, Waiter
from .wire import preview

_WRITE_FIELDS = {
    "put": ("key", "value", "client", "seq"),
    "delete": ("key", "client", "seq"),
    "cas": ("key", "expected", "new", "client", "seq"),
    "register": (),
}


def _error(rid: Any, code: str = "bad_request", message: str = "", node: Any = None,
           leader: int | None = None, maybe_applied: bool = False) -> dict:
    reply = {"t": "rep", "rid": rid, "error": code, "message": message}
    if node is not None:
        leader = leader if leader is not None else node.raft.leader_id
        reply["leader"] = leader
        reply["leader_address"] = node.address_of(leader)
    if maybe_applied:
        reply["maybe_applied"] = True
    return reply


def start_request(node: Any, req: dict, done: Callable[[dict], None]) -> Callable[[], Awaitable[None]] | None:
    """Begin serving ``req``; ``done(reply)`` is called exactly once.

    Most requests are answered before this returns. A write or a
    linearizable read is answered later, from the ready loop, when its entry
    is applied or its read confirmed: no task waits for it. The snapshot
    requests need I/O; for those this returns an async function that the
    caller runs in a task of its own, and which calls ``done``."""
    rid = req.get("rid")
    if req.get("t") != "req" or not isinstance(rid, int) or isinstance(rid, bool):
        done(_error(rid if isinstance(rid, int) else None, "bad_request", "expected {t: req, rid: int, op: ...}"))
        return None
    op = req.get("op")
    if isinstance(op, str) and op in _SLOW:
        async def slow() -> None:
            try:
                reply = await _SLOW[op](node, rid, req)
            except RequestFailed as exc:
                reply = _error(rid, exc.code, str(exc), node, exc.leader, exc.maybe_applied)
            done(reply)
        return slow
    try:
        if op == "status":
            done({"t": "rep", "rid": rid, "ok": True, "status": status(node)})
        elif op == "get":
            key = req.get("key")
            problem = check_key(key, node.max_key_bytes)
            if problem:
                done(_error(rid, "bad_request", problem))
            elif req.get("stale") is True:
                done(_read_reply(rid, node.read_stale({"op": "get", "key": key})))
            else:
                node.read_then({"op": "get", "key": key}, lambda w: done(_answer(node, rid, w, _read_reply)))
        else:
            _start_write(node, rid, op, req, done)
    except RequestFailed as exc:
        done(_error(rid, exc.code, str(exc), node, exc.leader, exc.maybe_applied))
    return None


async def handle_request(node: Any, req: dict) -> dict:
    """``start_request`` for a caller that waits for the one reply."""
    replies: list[dict] = []
    finished = trio.Event()

    def done(reply: dict) -> None:
        replies.append(reply)
        finished.set()

    slow = start_request(node, req, done)
    if slow is not None:
        await slow()
    await finished.wait()
    return replies[0]


def _start_write(node: Any, rid: int, op: Any, req: dict, done: Callable[[dict], None]) -> None:
    fields = _WRITE_FIELDS.get(op) if isinstance(op, str) else None
    if fields is None:
        done(_error(rid, "bad_request", f"unknown op {preview(op, 32)}"))
        return
    missing = [f for f in fields if f not in req]
    if missing:
        done(_error(rid, "bad_request", f"{op} needs {', '.join(missing)}"))
        return
    args = {f: req[f] for f in fields}
    if "ack" in req and op != "register":
        args["ack"] = req["ack"]
    if op != "register":
        problem = check_write(op, args, node.max_key_bytes)
        if problem:
            done(_error(rid, "bad_request", problem))
            return
    command = encode_command(op, **args)
    if len(command) > node.max_entry_bytes:
        done(_error(rid, "too_large", f"the {op} command is {len(command)} bytes; "
                                      f"the limit is {node.max_entry_bytes} bytes ([limits] max_entry_bytes)"))
        return
    node.propose_then(command, lambda w: done(_answer(node, rid, w, _write_reply)))


def _answer(node: Any, rid: int, w: Waiter, reply: Callable[[int, Any, Waiter], dict]) -> dict:
    if w.error is not None:
        e = w.error
        return _error(rid, e.code, str(e), node, e.leader, e.maybe_applied)
    return reply(rid, w.result, w, node)


def _read_reply(rid: int, result: dict, w: Waiter | None = None, node: Any = None) -> dict:
    return {"t": "rep", "rid": rid, **result} if "error" not in result else _error(rid, **_code(result))


def _write_reply(rid: int, result: Any, w: Waiter, node: Any) -> dict:
    if isinstance(result, dict) and "error" in result:
        return _error(rid, **_code(result))
    return {"t": "rep", "rid": rid, "ok": True, "index": w.key, "leader": node.id, **(result or {})}


async def _snapshot(node: Any, rid: int, req: dict) -> dict:
    if req.get("leader") is True:
        await node.barrier()
    found = await node.snapshots.take_now()
    if found is None:
        return _error(rid, "unavailable", "this node has applied nothing yet: there is nothing to snapshot")
    meta, path = found
    size = node.store.fs.size(path)
    return {"t": "rep", "rid": rid, "ok": True, "node": node.id, "index": meta.index, "term": meta.term,
            "voters": list(meta.voters), "name": os.path.basename(path), "size": size}


async def _snapshot_read(node: Any, rid: int, req: dict) -> dict:
    offset, n = req.get("offset"), req.get("n")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (offset, n)):
        return _error(rid, "bad_request", "snapshot_read needs offset and n, integers >= 0")
    path = node.snapshots.open_download(req.get("name"))
    if path is None:
        return _error(rid, "not_found", f"this node has no snapshot file {preview(req.get('name'), 64)} "
                                        "(deleted since? take a new one)")
    fs = node.store.fs
    n = min(n, node.max_frame_bytes // 2)
    try:
        size, data = await trio.to_thread.run_sync(lambda: (fs.size(path), read_chunk(path, offset, n, fs=fs)))
    except FileNotFoundError:
        return _error(rid, "not_found", f"snapshot file {os.path.basename(path)} was deleted; take a new one")
    return {"t": "rep", "rid": rid, "ok": True, "size": size, "data": data}


_SLOW = {"snapshot": _snapshot, "snapshot_read": _snapshot_read}


def _code(result: dict) -> dict:
    return {"code": result["error"], "message": result.get("message", "")}


def status(node: Any) -> dict:
    st = node.raft.status()
    out = {
        "id": node.id,
        "address": node.address,
        "role": st["role"],  # follower, pre-candidate, candidate or leader
        "term": st["term"],
        "leader": st["leader"],
        "commit": st["commit"],
        "applied": st["applied"],
        "last_index": st["last_index"],
        "members": {node.id: node.address, **node.peers},
        "wal": node.store.stats(),  # saves, entries saved, fsyncs since the node started
    }
    if "progress" in st:
        out["followers"] = {peer: p["match"] for peer, p in st["progress"].items()}
    return out
