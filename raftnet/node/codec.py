"""Raft messages as compact CBOR: one positional array per message.

    [type, term, src, dst, field...]

Entries travel as ``[index, term, kind, data]``; ``data`` is the command's
bytes as proposed, never re-encoded. Decoding is strict: an unknown type, a
wrong field count or a field of the wrong type raises ``ProtocolError``, so
the core never sees a malformed message.
"""

from __future__ import annotations

import cbor2

from ..core.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from .snapshots import SnapshotAck, SnapshotChunk
from .wire import ProtocolError, preview

# type tag -> (class, [(field, kind)]) with kind "i" int >= 0, "b" bool, "e" entries, "y" bytes
_SCHEMA: dict[int, tuple[type, list[tuple[str, str]]]] = {
    1: (RequestVote, [("last_log_index", "i"), ("last_log_term", "i"), ("pre_vote", "b"), ("leader_transfer", "b")]),
    2: (RequestVoteResponse, [("granted", "b"), ("pre_vote", "b")]),
    3: (AppendEntries, [("prev_log_index", "i"), ("prev_log_term", "i"), ("entries", "e"), ("leader_commit", "i")]),
    4: (AppendEntriesResponse, [("success", "b"), ("match_index", "i"), ("rejected_index", "i"),
                                ("conflict_term", "i"), ("conflict_index", "i")]),
    5: (Heartbeat, [("commit", "i"), ("seq", "i")]),
    6: (HeartbeatResponse, [("seq", "i")]),
    7: (TimeoutNow, []),
    # Not the core's: the node streams snapshot files with these (snapshots.py).
    8: (SnapshotChunk, [("index", "i"), ("snap_term", "i"), ("size", "i"), ("offset", "i"), ("data", "y")]),
    9: (SnapshotAck, [("index", "i"), ("snap_term", "i"), ("offset", "i"), ("have", "i")]),
}
_TAG = {cls: (tag, fields) for tag, (cls, fields) in _SCHEMA.items()}
_KINDS = {k.value: k for k in EntryKind}  # a dict lookup, not EntryKind(x): it is per entry received


def encode_message(m: Message) -> list:
    tag, fields = _TAG[type(m)]
    out = [tag, m.term, m.src, m.dst]
    for name, kind in fields:
        v = getattr(m, name)
        out.append([[e.index, e.term, int(e.kind), e.data] for e in v] if kind == "e" else v)
    return out


# Terms and indexes stay below 2**63: a peer cannot push a term so high that
# the next election overflows CBOR's 64-bit integers (which the wire refuses
# as bignums) and cuts this node off for good.
MAX_INT = (1 << 63) - 1


def _int(v) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= MAX_INT:
        raise ProtocolError(f"expected an integer in 0..2**63-1, got {preview(v, 24)}")
    return v


def decode_message(obj) -> Message:
    if not isinstance(obj, list) or len(obj) < 4:
        raise ProtocolError("a message is an array [type, term, src, dst, ...]")
    schema = _SCHEMA.get(obj[0]) if isinstance(obj[0], int) else None
    if schema is None:
        raise ProtocolError(f"unknown message type {preview(obj[0], 20)}")
    cls, fields = schema
    if len(obj) != 4 + len(fields):
        raise ProtocolError(f"{cls.__name__} needs {4 + len(fields)} fields, got {len(obj)}")
    kw = {"term": _int(obj[1]), "src": _int(obj[2]), "dst": _int(obj[3])}
    for (name, kind), v in zip(fields, obj[4:]):
        if kind == "i":
            kw[name] = _int(v)
        elif kind == "b":
            if not isinstance(v, bool):
                raise ProtocolError(f"{cls.__name__}.{name} must be a bool")
            kw[name] = v
        elif kind == "y":
            if not isinstance(v, bytes):
                raise ProtocolError(f"{cls.__name__}.{name} must be a byte string")
            kw[name] = v
        else:
            if not isinstance(v, list):
                raise ProtocolError(f"{cls.__name__}.{name} must be an array")
            entries = []
            for e in v:
                if not (isinstance(e, list) and len(e) == 4 and isinstance(e[3], bytes)):
                    raise ProtocolError("an entry is [index, term, kind, data]")
                kind_ = _KINDS.get(e[2]) if type(e[2]) is int else None
                if kind_ is None:
                    raise ProtocolError(f"unknown entry kind {preview(e[2], 20)}")
                entries.append(Entry(_int(e[0]), _int(e[1]), e[3], kind_))
            kw[name] = tuple(entries)
    return cls(**kw)


def message_bytes(m: Message) -> bytes:
    """One message, CBOR-encoded on its own, ready to go into a batch frame."""
    return cbor2.dumps(encode_message(m))


# A raft frame is the CBOR map {"t": "raft", "m": [message, ...]}. Building
# its bytes around messages encoded one by one lets the sender bound each
# frame by bytes before it has committed to a message.
_FRAME_HEAD = b"\xa2\x61t\x64raft\x61m"
FRAME_OVERHEAD = len(_FRAME_HEAD) + 9  # the map's head and an array header of any length


def _array_header(n: int) -> bytes:
    if n < 24:
        return bytes([0x80 + n])
    if n < 1 << 8:
        return bytes([0x98, n])
    if n < 1 << 16:
        return b"\x99" + n.to_bytes(2, "big")
    return b"\x9a" + n.to_bytes(4, "big")


def batch_frame(encoded: list[bytes]) -> bytes:
    """The frame (length prefix included) carrying messages already encoded
    by ``message_bytes``."""
    body = _FRAME_HEAD + _array_header(len(encoded)) + b"".join(encoded)
    return len(body).to_bytes(4, "big") + body


def encode_batch(messages: list[Message]) -> bytes:
    """One frame carrying ``messages`` (length prefix included)."""
    return batch_frame([message_bytes(m) for m in messages])


def decode_batch(frame: dict) -> list[Message]:
    if frame.get("t") != "raft" or not isinstance(frame.get("m"), list):
        raise ProtocolError(f"expected a raft frame on a peer connection, got {preview(frame.get('t'))}")
    return [decode_message(m) for m in frame["m"]]
