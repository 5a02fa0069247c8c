"""One client request, served: the request protocol of ``docs/protocol.md``.

    {"t": "req", "rid": n, "op": "register"}
    {"t": "req", "rid": n, "op": "put", "key": str, "value": bytes, "client": id, "seq": n, "ack": n}
    {"t": "req", "rid": n, "op": "delete", "key": str, "client": id, "seq": n, "ack": n}
    {"t": "req", "rid": n, "op": "cas", "key": str, "expected": bytes | None, "new": bytes, "client": id,
     "seq": n, "ack": n}
    {"t": "req", "rid": n, "op": "get", "key": str, "stale": bool}
    {"t": "req", "rid": n, "op": "status"}

Replies carry the same ``rid``: ``{"t": "rep", "rid": n, "ok": true, ...}``
or ``{"t": "rep", "rid": n, "error": code, "message": str, "leader": id | None,
"leader_address": "host:port" | None}`` with code one of not_leader,
leader_transfer, backpressure, session_expired, stale_sequence,
too_many_outstanding, bad_request, unavailable. ``ack`` is optional (the
lowest seq the client still waits on; it defaults to ``seq``).
"""

from __future__ import annotations

from typing import Any

from ..kv.store import encode_command
from .pending import RequestFailed

_WRITE_FIELDS = {
    "put": ("key", "value", "client", "seq"),
    "delete": ("key", "client", "seq"),
    "cas": ("key", "expected", "new", "client", "seq"),
    "register": (),
}
_ROLES = {"follower": "follower", "pre-candidate": "candidate", "candidate": "candidate", "leader": "leader"}


def _error(rid: Any, code: str = "bad_request", message: str = "", node: Any = None,
           leader: int | None = None) -> dict:
    reply = {"t": "rep", "rid": rid, "error": code, "message": message}
    if node is not None:
        leader = leader if leader is not None else node.raft.leader_id
        reply["leader"] = leader
        reply["leader_address"] = node.address_of(leader)
    return reply


async def handle_request(node: Any, req: dict) -> dict:
    rid = req.get("rid")
    if req.get("t") != "req" or not isinstance(rid, int):
        return _error(rid, "bad_request", "expected {t: req, rid: int, op: ...}")
    op = req.get("op")
    try:
        if op == "status":
            return {"t": "rep", "rid": rid, "ok": True, "status": status(node)}
        if op == "get":
            key = req.get("key")
            if not isinstance(key, str):
                return _error(rid, "bad_request", "get needs a string key")
            query = {"op": "get", "key": key}
            result = node.read_stale(query) if req.get("stale") else await node.read(query)
            return {"t": "rep", "rid": rid, **result} if "error" not in result else _error(rid, **_code(result))
        fields = _WRITE_FIELDS.get(op)
        if fields is None:
            return _error(rid, "bad_request", f"unknown op {str(op)[:32]!r}")
        missing = [f for f in fields if f not in req]
        if missing:
            return _error(rid, "bad_request", f"{op} needs {', '.join(missing)}")
        args = {f: req[f] for f in fields}
        if "ack" in req and op != "register":
            args["ack"] = req["ack"]
        command = encode_command(op, **args)
        if len(command) > node.max_entry_bytes:
            return _error(rid, "bad_request", f"command of {len(command)} bytes exceeds {node.max_entry_bytes}")
        index, result = await node.propose(command)
        if isinstance(result, dict) and "error" in result:
            return _error(rid, **_code(result))
        return {"t": "rep", "rid": rid, "ok": True, "index": index, "leader": node.id, **(result or {})}
    except RequestFailed as exc:
        return _error(rid, exc.code, str(exc), node, exc.leader)


def _code(result: dict) -> dict:
    return {"code": result["error"], "message": result.get("message", "")}


def status(node: Any) -> dict:
    st = node.raft.status()
    out = {
        "id": node.id,
        "address": node.address,
        "role": _ROLES[st["role"]],
        "term": st["term"],
        "leader": st["leader"],
        "commit": st["commit"],
        "applied": st["applied"],
        "last_index": st["last_index"],
        "members": {node.id: node.address, **node.peers},
    }
    if "progress" in st:
        out["followers"] = {peer: p["match"] for peer, p in st["progress"].items()}
    return out
