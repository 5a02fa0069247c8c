"""The key-value store, with client sessions for exactly-once writes.

Commands are CBOR maps, encoded once by the node when a request arrives:

    {"op": "register"}                                          -> {"client": <id>}
    {"op": "put", "key", "value", "client", "seq", "ack"}       -> {"ok": true}
    {"op": "delete", "key", "client", "seq", "ack"}             -> {"ok": true, "existed": bool}
    {"op": "cas", "key", "expected", "new", "client", "seq", "ack"}  -> {"ok": true, "swapped": bool}
                                       ("expected": null means "the key must be absent")

Errors are results too: {"error": "bad_request" | "session_expired" |
"stale_sequence" | "too_many_outstanding", "message": ...}.

Sessions (Raft thesis §6.3): a client first registers; its id is the log
index of the register entry, the same on every replica. Every write then
carries (client, seq, ack): ``seq`` numbers the write, and ``ack`` is the
lowest seq the client is still waiting on (its own seq if nothing older is
in flight). One client may have many writes in flight from many tasks, and
they may commit in any order, so the store keeps a result per seq: a retry
of a seq it has applied gets that result back instead of a second
application. ``ack`` lets it forget: results below the highest ack seen are
dropped, and a write below that floor is refused as ``stale_sequence`` (the
client already has its answer, so only a delayed duplicate can carry it).
A client may hold at most ``max_outstanding`` results; a write beyond that
is refused without being applied, so a retry of it later is still safe.
``ack`` defaults to ``seq``: a client with one write at a time need not
send it. A session unused for ``session_ttl`` log indexes is dropped when a
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
MAX_OUTSTANDING = 4096  # results one client may hold (writes in flight)
MAX_KEY_BYTES = 4096  # the default of [limits] max_key_bytes


def encode_command(op: str, **fields: Any) -> bytes:
    return cbor2.dumps({"op": op, **fields})


def check_key(key: Any, max_key_bytes: int) -> str | None:
    """What is wrong with ``key`` as a KV key, or None."""
    if not isinstance(key, str):
        return f"key must be a string, not {type(key).__name__}"
    if not key:
        return "key must not be empty"
    try:
        size = len(key.encode())
    except UnicodeEncodeError:
        return "key must be valid UTF-8 text"
    if size > max_key_bytes:
        return f"key of {size} bytes exceeds the limit of {max_key_bytes} bytes"
    return None


def _is_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 1 <= v < 1 << 63


def check_write(op: str, fields: dict, max_key_bytes: int) -> str | None:
    """What is wrong with a write request, or None. Run by the node that
    proposes it; ``apply`` only repeats the checks that need no config."""
    problem = check_key(fields.get("key"), max_key_bytes)
    if problem:
        return problem
    if not (_is_id(fields.get("client")) and _is_id(fields.get("seq"))):
        return "client and seq must be positive integers"
    ack = fields.get("ack", fields["seq"])
    if not _is_id(ack) or ack > fields["seq"]:
        return "ack must be an integer with 1 <= ack <= seq"
    if op == "put" and not isinstance(fields.get("value"), bytes):
        return "value must be bytes"
    if op == "cas" and not (isinstance(fields.get("new"), bytes)
                            and (fields.get("expected") is None or isinstance(fields.get("expected"), bytes))):
        return "cas needs new: bytes and expected: bytes or null"
    return None


def _error(code: str, message: str) -> dict:
    return {"error": code, "message": message}


class Session:
    """One client's memory: results by seq, at or above ``floor``."""

    __slots__ = ("floor", "results", "used")

    def __init__(self, used: int, floor: int = 1, results: dict[int, Any] | None = None):
        self.floor = floor
        self.results: dict[int, Any] = results if results is not None else {}
        self.used = used  # log index of the last command that named this client

    def forget_below(self, ack: int) -> None:
        if ack > self.floor:
            self.floor = ack
            for seq in [s for s in self.results if s < ack]:
                del self.results[seq]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Session) and (self.floor, self.results, self.used) == (
            other.floor, other.results, other.used)


class KVStore:
    def __init__(self, session_ttl: int = DEFAULT_SESSION_TTL, max_outstanding: int = MAX_OUTSTANDING):
        self.data: dict[str, bytes] = {}
        self.sessions: OrderedDict[int, Session] = OrderedDict()  # least recently used first
        self.session_ttl = session_ttl
        self.max_outstanding = max_outstanding
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
            self.sessions[index] = Session(used=index)
            return {"client": index}
        handler = _WRITES.get(op)
        if handler is None:
            return _error("bad_request", f"unknown op {op!r}")
        client, seq, ack = cmd.get("client"), cmd.get("seq"), cmd.get("ack", cmd.get("seq"))
        if not all(isinstance(v, int) for v in (client, seq, ack)) or not 1 <= ack <= seq:
            return _error("bad_request", "writes need an integer client id and 1 <= ack <= seq")
        session = self.sessions.get(client)
        if session is None:
            return _error("session_expired", f"client {client} has no session (expired or never registered)")
        session.used = index
        self.sessions.move_to_end(client)
        if seq in session.results:
            return session.results[seq]  # a retry: the recorded answer, not a second application
        if seq < session.floor:
            return _error("stale_sequence", f"seq {seq} was answered already (the client acknowledged up to "
                                            f"{session.floor - 1})")
        session.forget_below(ack)
        if len(session.results) >= self.max_outstanding:
            return _error("too_many_outstanding", f"client {client} has {len(session.results)} unacknowledged writes")
        key = cmd.get("key")
        if not isinstance(key, str) or not key:
            result = _error("bad_request", "key must be a non-empty string")
        else:
            result = handler(self, key, cmd)
        session.results[seq] = result
        return result

    def read(self, query: Any) -> Any:
        if not isinstance(query, dict) or query.get("op") != "get" or not isinstance(query.get("key"), str):
            return _error("bad_request", "a query is {op: get, key: str}")
        return {"ok": True, "value": self.data.get(query["key"])}

    def snapshot(self) -> bytes:
        return cbor2.dumps(
            {
                "data": sorted(self.data.items()),
                "sessions": [[c, s.floor, sorted(s.results.items()), s.used] for c, s in self.sessions.items()],
                "applied": self.applied_index,
            }
        )

    def restore(self, data: bytes) -> None:
        snap = cbor2.loads(data)
        self.data = {k: v for k, v in snap["data"]}
        self.sessions = OrderedDict(
            (c, Session(used, floor, dict(results))) for c, floor, results, used in snap["sessions"]
        )
        self.applied_index = snap["applied"]

    # -- internals -------------------------------------------------------------------

    def _expire(self, index: int) -> None:
        horizon = index - self.session_ttl
        while self.sessions:
            client, session = next(iter(self.sessions.items()))
            if session.used >= horizon:
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
