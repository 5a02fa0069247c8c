"""Real `raftnet serve` processes on loopback, for the integration tests.

Every wait polls a condition with a deadline; every process started here is
stopped here, by its pid.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cbor2

from raftnet.config import parse_config, render_config
from raftnet.jepsen.cluster import free_ports, stop_processes

ROOT = Path(__file__).resolve().parent.parent


def raftnet(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, returning its exit code and output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RAFTNET_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "raftnet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=ROOT,
    )


TEST_TIMING = {"heartbeat_ms": 50, "election_timeout_ms": [300, 600]}  # quick failover for tests


class Cluster:
    def __init__(self, directory: Path, nodes: int = 3, secret: str | None = None, fsync: str = "batch",
                 timing: dict | None = None, log_level: str = "debug", name: str = "itest",
                 limits: dict | None = None, storage: dict | None = None, snapshot: dict | None = None):
        self.dir = directory
        self.ids = list(range(1, nodes + 1))
        self.ports = dict(zip(self.ids, free_ports(nodes)))
        self.procs: dict[int, subprocess.Popen] = {}
        self.secret = secret
        self.log_level = log_level
        raw = {
            "cluster": {"name": name, **({"secret": secret} if secret else {})},
            "nodes": [{"id": i, "address": f"127.0.0.1:{self.ports[i]}"} for i in self.ids],
            "storage": {"data_dir": "node-{id}", "fsync": fsync, **(storage or {})},
            "timing": TEST_TIMING if timing is None else timing,
            **({"limits": limits} if limits else {}),
            **({"snapshot": snapshot} if snapshot else {}),
        }
        self.config = directory / "cluster.toml"
        self.config.write_text(render_config(parse_config(raw, source=str(self.config))))

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{self.ports[i]}" for i in self.ids]

    @property
    def cluster_arg(self) -> str:
        return ",".join(self.addresses)

    def start(self, node_id: int, fsize_limit: int | None = None) -> None:
        """``fsize_limit``: no file the node writes may grow past this many
        bytes (RLIMIT_FSIZE, with SIGXFSZ ignored so the write fails with
        EFBIG): a full disk, as the node sees it. It bounds the node's log
        file too."""
        assert node_id not in self.procs or self.procs[node_id].poll() is not None
        log = open(self.dir / f"node-{node_id}.log", "ab")  # noqa: SIM115
        self.procs[node_id] = subprocess.Popen(
            [sys.executable, "-m", "raftnet", "serve", "--config", str(self.config), "--id", str(node_id),
             "--log-level", self.log_level],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            preexec_fn=None if fsize_limit is None else lambda: _limit_file_size(fsize_limit),
        )
        log.close()

    def start_all(self) -> None:
        for i in self.ids:
            self.start(i)

    def kill(self, node_id: int) -> None:
        """``kill -9``: no flush, no goodbye."""
        p = self.procs[node_id]
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)

    def stop_all(self) -> None:
        stop_processes(list(self.procs.values()))

    def assert_alive(self) -> None:
        dead = {i: p.returncode for i, p in self.procs.items() if p.poll() is not None}
        assert not dead, f"nodes exited (id: code): {dead}; " + "; ".join(
            f"node {i} log tail: {self.log_text(i)[-1500:]}" for i in dead)

    def assert_serves(self, key: str = "probe") -> None:
        """A put and a linearizable get from a fresh client succeed, every
        node process is alive, and no node has logged a traceback."""
        import trio

        from raftnet.client import Client

        async def check():
            async with Client(self.addresses, timeout=20.0, secret=self.secret) as client:
                await client.put(key, b"alive")
                assert await client.get(key) == b"alive"

        trio.run(check)
        self.assert_alive()
        for node_id in self.ids:
            text = self.log_text(node_id)
            assert "Traceback" not in text, text[text.index("Traceback") - 300:][:3000]

    def log_text(self, node_id: int) -> str:
        return (self.dir / f"node-{node_id}.log").read_text(errors="replace")

    def status(self, timeout: float = 5.0) -> dict[int, dict]:
        r = raftnet("status", "--json", "--cluster", self.cluster_arg, "--timeout", str(timeout),
                    *self._secret_env_args())
        if r.returncode not in (0, 2):
            raise AssertionError(f"status failed ({r.returncode}): {r.stderr}")
        out = {}
        for n in json.loads(r.stdout)["nodes"]:
            out[n["id"]] = n
        return out

    def _secret_env_args(self) -> tuple[str, ...]:
        return ()

    def wait_for(self, predicate, what: str, deadline: float = 30.0):
        """Poll ``predicate(status)`` until it returns something truthy."""
        end = time.monotonic() + deadline
        last = None
        while time.monotonic() < end:
            try:
                last = self.status()
            except Exception as exc:  # noqa: BLE001 - still starting
                last = exc
            else:
                got = predicate(last)
                if got:
                    return got
            time.sleep(0.2)
        raise AssertionError(f"timed out after {deadline}s waiting for {what}; last status: {last}")

    def wait_for_leader(self, among: list[int] | None = None, deadline: float = 30.0) -> int:
        among = among or self.ids

        def leader(st):
            leaders = {n["id"] for n in st.values() if n.get("reachable") and n.get("role") == "leader"}
            agreed = {n.get("leader") for i, n in st.items() if i in among and n.get("reachable")}
            if len(leaders & set(among)) == 1 and len(agreed) == 1 and next(iter(agreed)) in leaders:
                return next(iter(leaders))
            return None

        return self.wait_for(leader, f"one leader among {among}", deadline)


def _limit_file_size(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


@contextmanager
def running_cluster(directory: Path, **kwargs) -> Iterator[Cluster]:
    """A started cluster with a leader elected, stopped on the way out (for fixtures)."""
    c = Cluster(directory, **kwargs)
    c.start_all()
    try:
        c.wait_for_leader()
        yield c
    finally:
        c.stop_all()


def restored_cluster(directory: Path, backup: Path | str, nodes: int = 3) -> Cluster:
    """A new cluster in ``directory`` whose nodes were each seeded from
    ``backup`` by ``raftnet snapshot restore`` (not started)."""
    directory.mkdir()
    c = Cluster(directory, nodes=nodes)
    for i in c.ids:
        r = raftnet("snapshot", "restore", str(backup), "--config", str(c.config), "--id", str(i))
        assert r.returncode == 0, r.stderr
    return c


# -- raw protocol access, for the bad-input tests ----------------------------------


def frame(obj) -> bytes:
    body = cbor2.dumps(obj)
    return struct.pack(">I", len(body)) + body


def read_frame(sock: socket.socket) -> dict | None:
    """One frame from a blocking socket; None if the node closed it first."""
    head = _recv_exactly(sock, 4)
    if head is None:
        return None
    body = _recv_exactly(sock, struct.unpack(">I", head)[0])
    return None if body is None else cbor2.loads(body)


def _recv_exactly(sock: socket.socket, n: int) -> bytes | None:
    out = b""
    while len(out) < n:
        try:
            chunk = sock.recv(n - len(out))
        except (ConnectionResetError, socket.timeout):
            return None
        if not chunk:
            return None
        out += chunk
    return out


def handshaken(port: int, role: str = "client", peer_id: int | None = None, cluster: str = "itest",
               timeout: float = 10.0) -> socket.socket:
    """A socket to the node on ``port`` that has completed the hello handshake."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    challenge = read_frame(sock)
    assert challenge is not None and challenge["t"] == "challenge", challenge
    sock.sendall(frame({"t": "hello", "role": role, "id": peer_id, "cluster": cluster}))
    welcome = read_frame(sock)
    assert welcome is not None and welcome["t"] == "welcome", welcome
    return sock


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the node sees ECONNRESET, not an orderly end."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def closed_by_node(sock: socket.socket, timeout: float = 10.0) -> bool:
    """Whether the node closes ``sock`` (EOF or reset) within ``timeout``,
    discarding anything it sends first."""
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    return True
