"""Frames and the hello handshake.

A frame is ``u32 length (big endian) | CBOR map``. The length is checked
against the limit *before* the body is read, so a hostile prefix never makes
us allocate. Anything wrong with a frame raises ``ProtocolError``; the
caller closes that connection and logs why.

Handshake (the first frames on every connection)::

    server -> {"t": "challenge", "cluster": name, "nonce": 32 random bytes}
    client -> {"t": "hello", "role": "peer" | "client", "id": peer id | None,
               "cluster": name, "proof": HMAC-SHA256(secret, nonce | role | id)}
    server -> {"t": "welcome", "node_id": id, "limits": {"max_frame_bytes": n, "max_entry_bytes": n,
                                                         "max_key_bytes": n}}
           or {"t": "error", "error": "handshake", "message": why}, then close

``proof`` is omitted when the cluster has no secret. The secret itself never
crosses the wire, and a proof is only good for the one nonce it answers.
``limits`` lets a client refuse a request the node would refuse, before
sending it.

Decoding trusts nothing: CBOR's semantic tags (bignums, fractions, dates,
regular expressions, ...) are refused outright, since the protocol uses none
and some are costly to build (without bignums every integer fits 64 bits);
nesting is bounded. Values from the other side are quoted in error messages only
through ``preview``, which never fails and never grows long.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

import cbor2
import trio

DEFAULT_MAX_FRAME = 16 << 20
_LEN = struct.Struct(">I")


class ProtocolError(Exception):
    """The other side broke the protocol; close the connection."""


def _refuse_tag(decoder) -> None:
    raise cbor2.CBORDecodeError("semantic tags are not part of the protocol")


# Every tag cbor2 would otherwise decode into a Python object (cbor2 6.x).
_NO_TAGS = {tag: _refuse_tag for tag in (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258,
                                          260, 261, 1004, 55799)}
MAX_DEPTH = 16


def decode_body(body: bytes) -> object:
    """CBOR from the other side, decoded defensively; raises ProtocolError."""
    try:
        return cbor2.loads(body, semantic_decoders=_NO_TAGS, max_depth=MAX_DEPTH)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the peer's fault
        raise ProtocolError(f"malformed CBOR frame ({type(exc).__name__}: {preview(exc, 60)})") from None


def preview(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters; never raises (a huge
    integer has no decimal form in Python 3.11 beyond 4,300 digits)."""
    try:
        text = repr(value) if not isinstance(value, BaseException) else str(value)
    except Exception:  # noqa: BLE001
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def encode_frame(obj: dict) -> bytes:
    body = cbor2.dumps(obj)
    return _LEN.pack(len(body)) + body


class FrameReader:
    """Reads frames from a stream through one buffer (no per-byte reads)."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_frame_bytes: int = DEFAULT_MAX_FRAME):
        self._stream = stream
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()

    async def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = await self._stream.receive_some(max(65536, n - len(self._buf)))
            if not chunk:
                if self._buf:
                    raise ProtocolError(f"connection closed in the middle of a frame ({len(self._buf)} bytes pending)")
                return False
            self._buf += chunk
        return True

    async def read(self) -> dict | None:
        """The next frame as a dict; None at a clean end of stream."""
        if not await self._fill(4):
            return None
        (length,) = _LEN.unpack_from(self._buf, 0)
        if length > self.max_frame_bytes:
            raise ProtocolError(f"frame of {length} bytes exceeds the limit of {self.max_frame_bytes}")
        if not await self._fill(4 + length):
            raise ProtocolError("connection closed in the middle of a frame")
        body = bytes(self._buf[4 : 4 + length])
        del self._buf[: 4 + length]
        obj = decode_body(body)
        if not isinstance(obj, dict):
            raise ProtocolError(f"frame is a {type(obj).__name__}, not a map")
        return obj


@dataclass(frozen=True, slots=True)
class Hello:
    role: str
    id: int | None


def _proof(secret: bytes, nonce: bytes, role: str, id_: int | None) -> bytes:
    return hmac.new(secret, nonce + role.encode() + str(id_).encode(), hashlib.sha256).digest()


async def accept_hello(stream, reader: FrameReader, *, cluster: str, secret: bytes | None, node_id: int,
                       peer_ids: set[int], limits: dict | None = None) -> Hello:
    nonce = os.urandom(32)
    await stream.send_all(encode_frame({"t": "challenge", "cluster": cluster, "nonce": nonce}))
    hello = await reader.read()
    if hello is None:
        raise ProtocolError("closed before the hello")

    async def refuse(why: str):
        try:
            await stream.send_all(encode_frame({"t": "error", "error": "handshake", "message": why}))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        raise ProtocolError(f"handshake refused: {why}")

    if hello.get("t") != "hello":
        await refuse(f"expected a hello frame, got {preview(hello.get('t'))}")
    role, id_ = hello.get("role"), hello.get("id")
    if hello.get("cluster") != cluster:
        await refuse(f"wrong cluster name {preview(hello.get('cluster'), 64)} (this is {cluster!r})")
    if role not in ("peer", "client"):
        await refuse(f"unknown role {preview(role, 20)}")
    if role == "peer" and (not isinstance(id_, int) or id_ not in peer_ids):
        await refuse(f"unknown peer id {preview(id_, 20)}")
    if role == "client" and id_ is not None:
        await refuse("a client hello carries no id")
    if secret is not None:
        proof = hello.get("proof")
        if not isinstance(proof, bytes) or not hmac.compare_digest(proof, _proof(secret, nonce, role, id_)):
            await refuse("bad or missing secret proof")
    welcome = {"t": "welcome", "node_id": node_id}
    if limits:
        welcome["limits"] = limits
    await stream.send_all(encode_frame(welcome))
    return Hello(role, id_)


async def send_hello(stream, reader: FrameReader, *, cluster: str | None, secret: bytes | None, role: str,
                     id: int | None) -> dict:  # noqa: A002 - the protocol's name
    """Answer the server's challenge; returns its welcome (``node_id`` and,
    from nodes that send them, ``limits``). ``cluster=None`` (clients that
    were given only addresses) accepts the name it announces."""
    challenge = await reader.read()
    if challenge is None or challenge.get("t") != "challenge" or not isinstance(challenge.get("nonce"), bytes):
        raise ProtocolError("expected a challenge from the server")
    if cluster is None:
        cluster = challenge.get("cluster")
    hello = {"t": "hello", "role": role, "id": id, "cluster": cluster}
    if secret is not None:
        hello["proof"] = _proof(secret, challenge["nonce"], role, id)
    await stream.send_all(encode_frame(hello))
    reply = await reader.read()
    if reply is None:
        raise ProtocolError("server closed the connection during the handshake")
    if reply.get("t") == "error":
        raise ProtocolError(f"server refused: {reply.get('message')}")
    if reply.get("t") != "welcome" or not isinstance(reply.get("node_id"), int):
        raise ProtocolError("expected a welcome from the server")
    if not isinstance(reply.get("limits", {}), dict):
        raise ProtocolError("the welcome's limits are not a map")
    return reply
