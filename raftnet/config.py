"""``cluster.toml``: loading, validation, and writing it back.

Every mistake gets one precise line naming the file, the section and the
key. The core counts time in ticks; this is the one place where
milliseconds become ticks (``ClusterConfig.raft_config``).
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .core.config import RaftConfig


class ConfigError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class NodeSpec:
    id: int
    address: str


@dataclass(frozen=True, slots=True)
class StorageSpec:
    data_dir: str = "data/node-{id}"
    fsync: str = "batch"
    segment_size: int = 64 << 20
    fsync_warn_ms: int = 1000


@dataclass(frozen=True, slots=True)
class TimingSpec:
    tick_ms: int = 10
    heartbeat_ms: int = 100
    election_timeout_ms: tuple[int, int] = (1000, 2000)


@dataclass(frozen=True, slots=True)
class LimitsSpec:
    max_frame_bytes: int = 16 << 20
    max_entry_bytes: int = 1 << 20
    max_inflight_msgs: int = 256
    max_uncommitted_bytes: int = 64 << 20
    max_key_bytes: int = 4096


@dataclass(frozen=True, slots=True)
class SnapshotSpec:
    every_entries: int = 100_000  # take a snapshot once this many entries were applied since the last one
    every_bytes: int = 64 << 20  # ... or once the entries applied since then hold this many bytes
    trailing_entries: int = 5_000  # entries kept in the log behind a snapshot, for briefly lagging followers
    keep: int = 2  # snapshot files kept on disk
    chunk_bytes: int = 1 << 20  # bytes per chunk when streaming one to a follower
    transfer_timeout_ms: int = 30_000  # a transfer with no acknowledged chunk for this long is abandoned
    max_transfers: int = 2  # snapshots a leader streams at once
    max_bytes_per_second: int = 0  # a cap on the leader's snapshot streaming (0: none)


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    nodes: tuple[NodeSpec, ...]
    secret: str | None = None
    storage: StorageSpec = field(default_factory=StorageSpec)
    timing: TimingSpec = field(default_factory=TimingSpec)
    limits: LimitsSpec = field(default_factory=LimitsSpec)
    snapshot: SnapshotSpec = field(default_factory=SnapshotSpec)
    base_dir: str = "."  # relative data_dir paths resolve against the config file's directory

    def node(self, node_id: int) -> NodeSpec:
        for n in self.nodes:
            if n.id == node_id:
                return n
        ids = ", ".join(str(n.id) for n in self.nodes)
        raise ConfigError(f"node id {node_id} is not in the cluster (ids: {ids})")

    def data_dir(self, node_id: int) -> str:
        path = self.storage.data_dir.replace("{id}", str(node_id))
        return path if os.path.isabs(path) else os.path.normpath(os.path.join(self.base_dir, path))

    def raft_config(self, node_id: int) -> RaftConfig:
        """Milliseconds to ticks: one tick every ``tick_ms``."""
        t = self.timing
        lo, hi = t.election_timeout_ms
        return RaftConfig(
            id=node_id,
            voters=tuple(n.id for n in self.nodes),
            election_tick=max(2, lo // t.tick_ms),
            election_tick_max=max(3, hi // t.tick_ms),
            heartbeat_tick=max(1, t.heartbeat_ms // t.tick_ms),
            max_inflight_msgs=self.limits.max_inflight_msgs,
            max_size_per_msg=min(1 << 20, self.limits.max_frame_bytes // 4),
            max_uncommitted_bytes=self.limits.max_uncommitted_bytes,
        )


_SECTIONS = {
    "cluster": {"name", "secret", "secret_file"},
    "storage": {"data_dir", "fsync", "segment_size", "fsync_warn_ms"},
    "timing": {"tick_ms", "heartbeat_ms", "election_timeout_ms"},
    "limits": {"max_frame_bytes", "max_entry_bytes", "max_inflight_msgs", "max_uncommitted_bytes", "max_key_bytes"},
    "snapshot": set(SnapshotSpec.__slots__),
}
_NODE_KEYS = {"id", "address"}


class _Ctx:
    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {message}")

    def check_keys(self, where: str, table: dict, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(allowed))})"
                raise self.fail(where, f"unknown key {key!r}{hint}")

    def int_(self, where: str, key: str, value: Any, lo: int, hi: int | None = None) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(f"{where}.{key}", f"expected an integer, got {value!r}")
        if value < lo or (hi is not None and value > hi):
            bound = f">= {lo}" if hi is None else f"between {lo} and {hi}"
            raise self.fail(f"{where}.{key}", f"must be {bound}, got {value}")
        return value

    def str_(self, where: str, key: str, value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(f"{where}.{key}", f"expected a non-empty string, got {value!r}")
        return value


def check_address(address: str) -> str | None:
    """None if ``host:port`` is well formed, else what is wrong."""
    host, sep, port = address.rpartition(":")
    if not sep or not host:
        return "expected host:port"
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f"port {port!r} is not in 1..65535"
    return None


def parse_config(data: str | dict, source: str = "<config>", base_dir: str = ".") -> ClusterConfig:
    ctx = _Ctx(source)
    if isinstance(data, str):
        try:
            data = tomllib.loads(data)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    ctx.check_keys("top level", data, set(_SECTIONS) | {"nodes"})

    cluster = data.get("cluster")
    if not isinstance(cluster, dict):
        raise ctx.fail("[cluster]", "missing section (it needs at least name = \"...\")")
    ctx.check_keys("[cluster]", cluster, _SECTIONS["cluster"])
    if "name" not in cluster:
        raise ctx.fail("[cluster]", "missing key 'name'")
    name = ctx.str_("cluster", "name", cluster["name"])
    secret = None
    if "secret" in cluster and "secret_file" in cluster:
        raise ctx.fail("[cluster]", "give either secret or secret_file, not both")
    if "secret" in cluster:
        secret = ctx.str_("cluster", "secret", cluster["secret"])
    elif "secret_file" in cluster:
        path = ctx.str_("cluster", "secret_file", cluster["secret_file"])
        path = path if os.path.isabs(path) else os.path.join(base_dir, path)
        try:
            secret = Path(path).read_text().strip()
        except OSError as exc:
            raise ctx.fail("cluster.secret_file", f"cannot read {path}: {exc.strerror}") from None
        if not secret:
            raise ctx.fail("cluster.secret_file", f"{path} is empty")

    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise ctx.fail("[[nodes]]", "at least one [[nodes]] entry with id and address is required")
    nodes, ids, addresses = [], set(), set()
    for k, n in enumerate(raw_nodes):
        where = f"[[nodes]] #{k + 1}"
        if not isinstance(n, dict):
            raise ctx.fail(where, "expected a table with id and address")
        ctx.check_keys(where, n, _NODE_KEYS)
        for key in ("id", "address"):
            if key not in n:
                raise ctx.fail(where, f"missing key {key!r}")
        node_id = ctx.int_(where, "id", n["id"], 1)
        address = ctx.str_(where, "address", n["address"])
        problem = check_address(address)
        if problem:
            raise ctx.fail(f"{where}.address", f"{address!r}: {problem}")
        if node_id in ids:
            raise ctx.fail(where, f"duplicate node id {node_id}")
        if address in addresses:
            raise ctx.fail(where, f"duplicate address {address}")
        ids.add(node_id)
        addresses.add(address)
        nodes.append(NodeSpec(node_id, address))

    s = data.get("storage", {})
    ctx.check_keys("[storage]", s, _SECTIONS["storage"])
    defaults = StorageSpec()
    fsync = s.get("fsync", defaults.fsync)
    if fsync not in ("batch", "always", "never"):
        raise ctx.fail("storage.fsync", f"must be \"batch\", \"always\" or \"never\", got {fsync!r}")
    storage = StorageSpec(
        data_dir=ctx.str_("storage", "data_dir", s.get("data_dir", defaults.data_dir)),
        fsync=fsync,
        segment_size=ctx.int_("storage", "segment_size", s.get("segment_size", defaults.segment_size), 1 << 16),
        fsync_warn_ms=ctx.int_("storage", "fsync_warn_ms", s.get("fsync_warn_ms", defaults.fsync_warn_ms), 1),
    )
    if len(nodes) > 1 and "{id}" not in storage.data_dir:
        raise ctx.fail("storage.data_dir", "must contain {id} when the config has several nodes")

    t = data.get("timing", {})
    ctx.check_keys("[timing]", t, _SECTIONS["timing"])
    td = TimingSpec()
    tick = ctx.int_("timing", "tick_ms", t.get("tick_ms", td.tick_ms), 1, 1000)
    heartbeat = ctx.int_("timing", "heartbeat_ms", t.get("heartbeat_ms", td.heartbeat_ms), tick)
    eto = t.get("election_timeout_ms", list(td.election_timeout_ms))
    if not (isinstance(eto, list) and len(eto) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in eto)):
        raise ctx.fail("timing.election_timeout_ms", f"expected [low, high] in milliseconds, got {eto!r}")
    lo, hi = eto
    if not lo < hi:
        raise ctx.fail("timing.election_timeout_ms", f"low ({lo}) must be below high ({hi})")
    if lo < 3 * heartbeat:
        raise ctx.fail("timing.election_timeout_ms", f"low ({lo}) must be at least 3 heartbeats ({3 * heartbeat} ms)")
    timing = TimingSpec(tick, heartbeat, (lo, hi))

    lim = data.get("limits", {})
    ctx.check_keys("[limits]", lim, _SECTIONS["limits"])
    ld = LimitsSpec()
    limits = LimitsSpec(
        max_frame_bytes=ctx.int_("limits", "max_frame_bytes", lim.get("max_frame_bytes", ld.max_frame_bytes), 1 << 12, 1 << 30),
        max_entry_bytes=ctx.int_("limits", "max_entry_bytes", lim.get("max_entry_bytes", ld.max_entry_bytes), 1),
        max_inflight_msgs=ctx.int_("limits", "max_inflight_msgs", lim.get("max_inflight_msgs", ld.max_inflight_msgs), 1),
        max_uncommitted_bytes=ctx.int_("limits", "max_uncommitted_bytes",
                                       lim.get("max_uncommitted_bytes", ld.max_uncommitted_bytes), 1),
        max_key_bytes=ctx.int_("limits", "max_key_bytes", lim.get("max_key_bytes", ld.max_key_bytes), 1),
    )
    if limits.max_entry_bytes > limits.max_frame_bytes // 2:
        raise ctx.fail("limits.max_entry_bytes", "must be at most half of max_frame_bytes")

    snap = data.get("snapshot", {})
    ctx.check_keys("[snapshot]", snap, _SECTIONS["snapshot"])
    sd = SnapshotSpec()
    lowest = {"every_entries": 1, "every_bytes": 1, "trailing_entries": 0, "keep": 1, "chunk_bytes": 1 << 10,
              "transfer_timeout_ms": 100, "max_transfers": 1, "max_bytes_per_second": 0}
    if "chunk_bytes" not in snap:  # the default, or less where frames are smaller
        snap = {**snap, "chunk_bytes": max(lowest["chunk_bytes"], min(sd.chunk_bytes, limits.max_frame_bytes // 4))}
    snapshot = SnapshotSpec(**{k: ctx.int_("snapshot", k, snap.get(k, getattr(sd, k)), lo) for k, lo in lowest.items()})
    if snapshot.chunk_bytes > limits.max_frame_bytes // 2:
        raise ctx.fail("snapshot.chunk_bytes", f"must be at most half of limits.max_frame_bytes "
                                               f"({limits.max_frame_bytes // 2}), got {snapshot.chunk_bytes}")
    if 0 < snapshot.max_bytes_per_second < snapshot.chunk_bytes:
        raise ctx.fail("snapshot.max_bytes_per_second", f"must be 0 (no cap) or at least chunk_bytes "
                                                        f"({snapshot.chunk_bytes}), got {snapshot.max_bytes_per_second}")
    return ClusterConfig(name, tuple(nodes), secret, storage, timing, limits, snapshot, base_dir)


def load_config(path: str | os.PathLike) -> ClusterConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(text, source=str(path), base_dir=str(path.resolve().parent))


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_config(c: ClusterConfig) -> str:
    """TOML text that ``load_config`` reads back to an equal config."""
    lines = ["[cluster]", f"name = {_toml_str(c.name)}"]
    if c.secret is not None:
        lines.append(f"secret = {_toml_str(c.secret)}")
    for n in c.nodes:
        lines += ["", "[[nodes]]", f"id = {n.id}", f"address = {_toml_str(n.address)}"]
    s, t, lim = c.storage, c.timing, c.limits
    lines += ["", "[storage]", f"data_dir = {_toml_str(s.data_dir)}", f"fsync = {_toml_str(s.fsync)}",
              f"segment_size = {s.segment_size}", f"fsync_warn_ms = {s.fsync_warn_ms}"]
    lines += ["", "[timing]", f"tick_ms = {t.tick_ms}", f"heartbeat_ms = {t.heartbeat_ms}",
              f"election_timeout_ms = [{t.election_timeout_ms[0]}, {t.election_timeout_ms[1]}]"]
    lines += ["", "[limits]"] + [f"{k} = {getattr(lim, k)}" for k in LimitsSpec.__slots__]
    lines += ["", "[snapshot]"] + [f"{k} = {getattr(c.snapshot, k)}" for k in SnapshotSpec.__slots__]
    return "\n".join(lines) + "\n"
