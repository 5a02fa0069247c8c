"""The key-value store, with client sessions for exactly-once writes.

Commands are CBOR maps, encoded once by the node when a request arrives:

    {"op": "register"}                                   -> {"client": <id>}
    {"op": "put", "key", "value", "client", "seq"}       -> {"ok": true}
    {"op": "delete", "key", "client", "seq"}             -> {"ok": true, "existed": bool}
    {"op": "cas", "key", "expected", "new", "client", "seq"}  -> {"ok": true, "swapped": bool}
                                       ("expected": null means "the key must be absent")

Errors are results too: {"error": "bad_request" | "session_expired" |
"stale_sequence", "message": ...}.

Sessions (Raft thesis §6.3): a client first registers; its id is the log
index of the register entry, the same on every replica. Every write then
carries (client, seq); the store remembers each client's last seq and its
result, and answers a retry of that seq from memory instead of applying it
again. A seq below the last one is refused (that request's answer is long
gone). A session unused for ``session_ttl`` log indexes is dropped when a
later command is applied — by log position, never by wall clock, so every
replica drops it at the same point. A request from an unknown or expired
client gets "session_expired": the client must register again, and the
outcome of that one request is unknown to it (it may have applied before
the session expired), which the client reports as such.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import cbor2

DEFAULT_SESSION_TTL = 100_000  # log indexes
MAX_KEY_BYTES = 4096


def encode_command(op: str, **fields: Any) -> bytes:
    return cbor2.dumps({"op": op, **fields})


def _error(code: str, message: str) -> dict:
    return {"error": code, "message": message}


class KVStore:
    def __init__(self, session_ttl: int = DEFAULT_SESSION_TTL, max_key_bytes: int = MAX_KEY_BYTES):
        self.data: dict[str, bytes] = {}
        # client id -> [last seq, last result, last used index]; oldest use first
        self.sessions: OrderedDict[int, list] = OrderedDict()
        self.session_ttl = session_ttl
        self.max_key_bytes = max_key_bytes
        self.applied_index = 0

    # -- the StateMachine interface ------------------------------------------------

    def apply(self, index: int, command: bytes) -> Any:
        self.applied_index = index
        self._expire(index)
        try:
            cmd = cbor2.loads(command)
        except Exception:  # noqa: BLE001 - a committed command must apply everywhere
            return _error("bad_request", "command is not CBOR")
        if not isinstance(cmd, dict) or not isinstance(cmd.get("op"), str):
            return _error("bad_request", "command must be a map with an op")
        op = cmd["op"]
        if op == "register":
            self.sessions[index] = [0, None, index]
            return {"client": index}
        handler = _WRITES.get(op)
        if handler is None:
            return _error("bad_request", f"unknown op {op!r}")
        client, seq = cmd.get("client"), cmd.get("seq")
        if not isinstance(client, int) or not isinstance(seq, int) or seq < 1:
            return _error("bad_request", "writes need an integer client id and seq >= 1")
        session = self.sessions.get(client)
        if session is None:
            return _error("session_expired", f"client {client} has no session (expired or never registered)")
        session[2] = index
        self.sessions.move_to_end(client)
        if seq == session[0]:
            return session[1]  # a retry: the cached answer, not a second application
        if seq < session[0]:
            return _error("stale_sequence", f"seq {seq} is older than the last one applied ({session[0]})")
        key = cmd.get("key")
        if not isinstance(key, str) or not key or len(key.encode()) > self.max_key_bytes:
            result = _error("bad_request", f"key must be a non-empty string of at most {self.max_key_bytes} bytes")
        else:
            result = handler(self, key, cmd)
        session[0], session[1] = seq, result
        return result

    def read(self, query: Any) -> Any:
        if not isinstance(query, dict) or query.get("op") != "get" or not isinstance(query.get("key"), str):
            return _error("bad_request", "a query is {op: get, key: str}")
        return {"ok": True, "value": self.data.get(query["key"])}

    def snapshot(self) -> bytes:
        return cbor2.dumps(
            {
                "data": sorted(self.data.items()),
                "sessions": [[c, s[0], s[1], s[2]] for c, s in self.sessions.items()],
                "applied": self.applied_index,
            }
        )

    def restore(self, data: bytes) -> None:
        snap = cbor2.loads(data)
        self.data = {k: v for k, v in snap["data"]}
        self.sessions = OrderedDict((c, [seq, res, used]) for c, seq, res, used in snap["sessions"])
        self.applied_index = snap["applied"]

    # -- internals -------------------------------------------------------------------

    def _expire(self, index: int) -> None:
        horizon = index - self.session_ttl
        while self.sessions:
            client, session = next(iter(self.sessions.items()))
            if session[2] >= horizon:
                break
            del self.sessions[client]

    def _put(self, key: str, cmd: dict) -> dict:
        value = cmd.get("value")
        if not isinstance(value, bytes):
            return _error("bad_request", "value must be bytes")
        self.data[key] = value
        return {"ok": True}

    def _delete(self, key: str, cmd: dict) -> dict:
        return {"ok": True, "existed": self.data.pop(key, None) is not None}

    def _cas(self, key: str, cmd: dict) -> dict:
        expected, new = cmd.get("expected"), cmd.get("new")
        if not isinstance(new, bytes) or not (expected is None or isinstance(expected, bytes)):
            return _error("bad_request", "cas needs new: bytes and expected: bytes or null")
        if self.data.get(key) != expected:
            return {"ok": True, "swapped": False}
        self.data[key] = new
        return {"ok": True, "swapped": True}


_WRITES = {"put": KVStore._put, "delete": KVStore._delete, "cas": KVStore._cas}
