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

Snapshots are copy-on-write. ``snapshot()`` freezes the key/value dict as
it is (O(1)) and copies the session table's references (O(clients)); until
the view is released, writes go to an overlay (a deletion is a tombstone)
and reads look there first, while a worker thread encodes the frozen dict.
A session is copied the first time a write touches it during the view.
Once the view is exhausted or closed it only sets a flag; the event loop
folds the overlay back, at most ``FOLD_STEP`` entries at the start of each
``apply``/``read`` (``snapshot`` finishes the fold). Blobs, all CBOR:

* the header: ``{"kind": "raftnet.kv", "version": 1, "applied": index,
  "sessions": n, "keys": m}``;
* then session blobs, lists of ``[client, floor, used, [seq, result, ...]]``
  in least-recently-used order, until there are ``n`` sessions;
* then data blobs, flat lists ``[key, value, key, value, ...]`` of at most
  ``BLOB_PAIRS`` pairs and about ``BLOB_BYTES``, until there are ``m`` keys.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from itertools import accumulate, chain, islice
from typing import Any

import cbor2
import xxhash

DEFAULT_SESSION_TTL = 100_000  # log indexes
MAX_OUTSTANDING = 4096  # results one client may hold (writes in flight)
MAX_KEY_BYTES = 4096  # the default of [limits] max_key_bytes

SNAPSHOT_KIND, SNAPSHOT_VERSION = "raftnet.kv", 1
BLOB_PAIRS = 2048  # key/value pairs per data blob: one cbor2.dumps call of well under a millisecond
BLOB_BYTES = 1 << 20  # ... and about this many bytes of keys and values at most
SESSION_ITEMS = 2048  # sessions plus their results per session blob
FOLD_STEP = 16  # overlay entries folded back per apply/read once a view is released: about one apply's cost

_TOMBSTONE = object()  # an overlay value: deleted while a view was outstanding


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

    __slots__ = ("floor", "results", "used", "epoch")

    def __init__(self, used: int, floor: int = 1, results: dict[int, Any] | None = None, epoch: int = 0):
        self.floor = floor
        self.results: dict[int, Any] = results if results is not None else {}
        self.used = used  # log index of the last command that named this client
        self.epoch = epoch  # the store's snapshot epoch when this object was made (not replicated state)

    def forget_below(self, ack: int) -> None:
        if ack > self.floor:
            self.floor = ack
            for seq in [s for s in self.results if s < ack]:
                del self.results[seq]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Session) and (self.floor, self.results, self.used) == (
            other.floor, other.results, other.used)


class _State:
    """Everything a snapshot captures and a restore replaces, in one object,
    so that a restore swaps it in with one assignment (a read on the event
    loop sees the old state or the new one, never a mix).

    ``data`` and ``overlay`` form a copy-on-write dict, in one of three phases:

    * plain (``overlay is None``): reads and writes use ``data``;
    * frozen (``released`` is an Event): a view is iterating ``data`` in a
      worker thread, so nothing writes it; writes go to ``overlay``;
    * folding (``released is None``, ``overlay`` not empty): writes go to
      ``data`` and drop the key from ``overlay``; ``catch_up`` moves
      ``overlay`` into ``data`` a step at a time.

    Invariant: an overlay entry is newer than ``data``'s entry for its key.
    Only the event loop calls these methods; the worker thread only reads
    the frozen dict and sets ``released``.
    """

    __slots__ = ("data", "overlay", "released", "sessions", "applied_index", "epoch")

    def __init__(self, data: dict[str, bytes], sessions: OrderedDict[int, Session], applied_index: int):
        self.data = data
        self.overlay: dict[str, Any] | None = None
        self.released: threading.Event | None = None  # set by the outstanding view once it is done
        self.sessions = sessions  # least recently used first
        self.applied_index = applied_index
        self.epoch = 0  # bumped by each snapshot; a Session of an older epoch may be shared with the view

    def get(self, key: str) -> bytes | None:
        overlay = self.overlay
        if overlay is not None:
            v = overlay.get(key)
            if v is not None:
                return None if v is _TOMBSTONE else v
        return self.data.get(key)

    def put(self, key: str, value: bytes) -> None:
        if self.overlay is None:
            self.data[key] = value
        elif self.released is not None:
            self.overlay[key] = value
        else:
            self.data[key] = value
            self.overlay.pop(key, None)

    def delete(self, key: str) -> bool:
        existed = self.get(key) is not None
        if self.overlay is None:
            self.data.pop(key, None)
        elif self.released is not None:
            if key in self.data:
                self.overlay[key] = _TOMBSTONE
            else:
                self.overlay.pop(key, None)
        else:
            self.data.pop(key, None)
            self.overlay.pop(key, None)
        return existed

    def items(self) -> Iterator[tuple[str, bytes]]:
        overlay = self.overlay
        if overlay is None:
            return iter(self.data.items())
        return chain(((k, v) for k, v in overlay.items() if v is not _TOMBSTONE),
                     ((k, v) for k, v in self.data.items() if k not in overlay))

    def session_to_write(self, client: Any) -> Session | None:
        """The client's session, copied first if the outstanding view holds it."""
        session = self.sessions.get(client)
        if session is not None and self.released is not None and session.epoch < self.epoch:
            session = self.sessions[client] = Session(session.used, session.floor, dict(session.results),
                                                      self.epoch)
        return session

    def catch_up(self, budget: int | None = None) -> None:
        """On the event loop, before anything else: notice a released view and
        fold up to ``budget`` (default ``FOLD_STEP``) overlay entries back."""
        if self.released is not None:
            if not self.released.is_set():
                return
            self.released = None
        overlay = self.overlay
        if overlay is None:
            return
        data = self.data
        for _ in range(min(FOLD_STEP if budget is None else budget, len(overlay))):
            key, value = overlay.popitem()
            if value is _TOMBSTONE:
                data.pop(key, None)
            else:
                data[key] = value
        if not overlay:
            self.overlay = None

    def freeze(self) -> SnapshotView:
        self.catch_up(budget=len(self.overlay or ()))
        if self.released is not None:
            raise RuntimeError("a snapshot view of this store is outstanding: iterate it to the end or close it")
        header = {"kind": SNAPSHOT_KIND, "version": SNAPSHOT_VERSION, "applied": self.applied_index,
                  "sessions": len(self.sessions), "keys": len(self.data)}
        view = SnapshotView(header, list(self.sessions.items()), self.data)
        self.epoch += 1
        self.overlay = {}
        self.released = view.released
        return view


class SnapshotView:
    """The store as of one ``snapshot()`` call: an iterator of blobs, to run
    in a worker thread. It is released (the store stops diverting writes)
    once exhausted, closed, or dropped; ``close`` it when stopping early."""

    def __init__(self, header: dict, sessions: list[tuple[int, Session]], data: dict[str, bytes]):
        self.released = threading.Event()
        # The generator must not refer to self, or a dropped view would wait for the cycle collector.
        self._blobs = _blobs(header, sessions, data, self.released)

    def __iter__(self) -> SnapshotView:
        return self

    def __next__(self) -> bytes:
        return next(self._blobs)

    def close(self) -> None:
        self._blobs.close()
        self.released.set()

    __del__ = close

    def __enter__(self) -> SnapshotView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _blobs(header: dict, sessions: list[tuple[int, Session]], data: dict[str, bytes],
           released: threading.Event) -> Iterator[bytes]:
    try:
        yield cbor2.dumps(header)
        batch: list = []
        items = 0
        for client, s in sessions:
            if batch and items + 1 + len(s.results) > SESSION_ITEMS:
                yield cbor2.dumps(batch)
                _offer_gil()
                batch, items = [], 0
            batch.append([client, s.floor, s.used, list(chain.from_iterable(s.results.items()))])
            items += 1 + len(s.results)
        if batch:
            yield cbor2.dumps(batch)
        pairs = iter(data.items())
        # Flattened as they come, so the items iterator reuses its one tuple: no garbage for the collector.
        while flat := list(chain.from_iterable(islice(pairs, BLOB_PAIRS))):
            ends = list(accumulate(map(len, flat)))  # bytes (characters for keys) up to each item
            start = 0
            while start < len(flat):
                stop = bisect_right(ends, (ends[start - 1] if start else 0) + BLOB_BYTES, lo=start)
                stop = max(stop - stop % 2, start + 2)  # whole pairs, at least one
                yield cbor2.dumps(flat[start:stop])
                _offer_gil()
                start = stop
    finally:
        released.set()


def _offer_gil() -> None:
    """Between blobs, in the worker thread: let an event loop waiting for the
    GIL take it now rather than at the next forced switch (5 ms later)."""
    time.sleep(0)


class KVStore:
    def __init__(self, session_ttl: int = DEFAULT_SESSION_TTL, max_outstanding: int = MAX_OUTSTANDING):
        self._s = _State({}, OrderedDict(), 0)
        self.session_ttl = session_ttl
        self.max_outstanding = max_outstanding

    @property
    def data(self) -> Mapping[str, bytes]:
        """The live key/value pairs, read-only (``as_dict`` for a plain copy)."""
        return _LiveData(self)

    @property
    def sessions(self) -> OrderedDict[int, Session]:
        return self._s.sessions  # least recently used first

    @property
    def applied_index(self) -> int:
        return self._s.applied_index

    def as_dict(self) -> dict[str, bytes]:
        return dict(self._s.items())

    def state_digest(self) -> bytes:
        """A hash of the replicated state (data, sessions, applied index):
        equal for equal states, whatever the insertion order and whether a
        snapshot view is outstanding."""
        s = self._s
        h = xxhash.xxh3_128()
        sessions = [[c, x.floor, x.used, sorted(x.results.items())] for c, x in sorted(s.sessions.items())]
        h.update(cbor2.dumps([SNAPSHOT_VERSION, s.applied_index, sessions], canonical=True))
        pairs = sorted(s.items())
        for i in range(0, len(pairs), BLOB_PAIRS):
            h.update(cbor2.dumps(pairs[i:i + BLOB_PAIRS]))
        return h.digest()

    # -- the StateMachine interface ------------------------------------------------

    def apply(self, index: int, command: bytes) -> Any:
        s = self._s
        s.catch_up()
        s.applied_index = index
        self._expire(s, index)
        try:
            cmd = cbor2.loads(command)
        except Exception:  # noqa: BLE001 - a committed command must apply everywhere
            return _error("bad_request", "command is not CBOR")
        if not isinstance(cmd, dict) or not isinstance(cmd.get("op"), str):
            return _error("bad_request", "command must be a map with an op")
        op = cmd["op"]
        if op == "register":
            s.sessions[index] = Session(used=index, epoch=s.epoch)
            return {"client": index}
        handler = _WRITES.get(op)
        if handler is None:
            return _error("bad_request", f"unknown op {op!r}")
        client, seq, ack = cmd.get("client"), cmd.get("seq"), cmd.get("ack", cmd.get("seq"))
        if not all(isinstance(v, int) for v in (client, seq, ack)) or not 1 <= ack <= seq:
            return _error("bad_request", "writes need an integer client id and 1 <= ack <= seq")
        session = s.session_to_write(client)
        if session is None:
            return _error("session_expired", f"client {client} has no session (expired or never registered)")
        session.used = index
        s.sessions.move_to_end(client)
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
            result = handler(s, key, cmd)
        session.results[seq] = result
        return result

    def read(self, query: Any) -> Any:
        s = self._s
        s.catch_up()
        if not isinstance(query, dict) or query.get("op") != "get" or not isinstance(query.get("key"), str):
            return _error("bad_request", "a query is {op: get, key: str}")
        return {"ok": True, "value": s.get(query["key"])}

    def snapshot(self) -> SnapshotView:
        """A point-in-time view, in O(clients): see the module docstring."""
        return self._s.freeze()

    def restore(self, blobs: Iterable[bytes]) -> None:
        """Build the snapshot's state aside and swap it in at the end;
        ValueError (state untouched) if the blobs are not a KV snapshot."""
        self._s = _decode_snapshot(iter(blobs))

    # -- internals -------------------------------------------------------------------

    def _expire(self, s: _State, index: int) -> None:
        horizon = index - self.session_ttl
        while s.sessions:
            client, session = next(iter(s.sessions.items()))
            if session.used >= horizon:
                break
            del s.sessions[client]


def _put(s: _State, key: str, cmd: dict) -> dict:
    value = cmd.get("value")
    if not isinstance(value, bytes):
        return _error("bad_request", "value must be bytes")
    s.put(key, value)
    return {"ok": True}


def _delete(s: _State, key: str, cmd: dict) -> dict:
    return {"ok": True, "existed": s.delete(key)}


def _cas(s: _State, key: str, cmd: dict) -> dict:
    expected, new = cmd.get("expected"), cmd.get("new")
    if not isinstance(new, bytes) or not (expected is None or isinstance(expected, bytes)):
        return _error("bad_request", "cas needs new: bytes and expected: bytes or null")
    if s.get(key) != expected:
        return {"ok": True, "swapped": False}
    s.put(key, new)
    return {"ok": True, "swapped": True}


_WRITES = {"put": _put, "delete": _delete, "cas": _cas}


class _LiveData(Mapping):
    """``KVStore.data``: the current state's pairs, overlay included."""

    __slots__ = ("_store",)

    def __init__(self, store: KVStore):
        self._store = store

    def __getitem__(self, key: str) -> bytes:
        v = self._store._s.get(key)
        if v is None:
            raise KeyError(key)
        return v

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._store._s.items())

    def __len__(self) -> int:
        s = self._store._s
        return len(s.data) if s.overlay is None else sum(1 for _ in s.items())

    def __repr__(self) -> str:
        return f"KVStore.data({self._store.as_dict()!r})"


# -- reading a snapshot -----------------------------------------------------------------


def _decode_snapshot(blobs: Iterator[bytes]) -> _State:
    header = _load(next(blobs, None), "the header")
    if not (isinstance(header, dict) and header.get("kind") == SNAPSHOT_KIND):
        raise ValueError("not a KV store snapshot: the first blob is not a raftnet.kv header")
    if header.get("version") != SNAPSHOT_VERSION:
        raise ValueError(f"unsupported KV snapshot version {header.get('version')!r}")
    applied, n_sessions, n_keys = (header.get(k) for k in ("applied", "sessions", "keys"))
    if not all(_is_count(v) for v in (applied, n_sessions, n_keys)):
        raise ValueError("malformed KV snapshot header (applied, sessions, keys)")
    sessions: OrderedDict[int, Session] = OrderedDict()
    while len(sessions) < n_sessions:
        batch = _load(next(blobs, None), "a session blob")
        if not isinstance(batch, list):
            raise ValueError("malformed KV snapshot: a session blob is not a list")
        for record in batch:
            sessions[record[0]] = _session(record)
        if len(sessions) > n_sessions:
            raise ValueError(f"the KV snapshot holds more sessions than its header's {n_sessions}")
    data: dict[str, bytes] = {}
    for blob in blobs:
        flat = _load(blob, "a data blob")
        if not isinstance(flat, list) or len(flat) % 2:
            raise ValueError("malformed KV snapshot: a data blob is not a list of key/value pairs")
        keys, values = flat[0::2], flat[1::2]
        if not set(map(type, keys)) <= {str} or not set(map(type, values)) <= {bytes}:
            raise ValueError("malformed KV snapshot: keys must be text and values bytes")
        data.update(zip(keys, values))
        _offer_gil()
    if len(data) != n_keys:
        raise ValueError(f"the KV snapshot holds {len(data)} keys, its header says {n_keys}")
    return _State(data, sessions, applied)


def _load(blob: Any, what: str) -> Any:
    if blob is None:
        raise ValueError(f"the KV snapshot ends before {what}")
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ValueError(f"{what} of the KV snapshot is {type(blob).__name__}, not bytes")
    try:
        return cbor2.loads(blob)
    except Exception as e:  # noqa: BLE001 - any decoding failure is damage
        raise ValueError(f"{what} of the KV snapshot is not CBOR: {e}") from e


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _session(record: Any) -> Session:
    if not (isinstance(record, list) and len(record) == 4 and all(_is_count(v) for v in record[:3])
            and isinstance(record[3], list) and len(record[3]) % 2 == 0):
        raise ValueError("malformed KV snapshot: a session is not [client, floor, used, [seq, result, ...]]")
    _, floor, used, flat = record
    results = dict(zip(flat[0::2], flat[1::2]))
    if not all(_is_count(seq) for seq in results):
        raise ValueError("malformed KV snapshot: a result's seq is not an integer")
    return Session(used, floor, results)
