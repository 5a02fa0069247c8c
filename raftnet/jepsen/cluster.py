"""The real processes: one ``raftnet serve`` per node, on loopback.

Each node gets its own cluster.toml in which its own address is real and
every peer's address is the port of the link (links.py) it reaches that
peer through. The harness starts, kills (SIGKILL), pauses (SIGSTOP) and
resumes (SIGCONT) only the processes it started, by their pid.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

from ..config import parse_config, render_config
from .links import Link, Network

TIMING = {"heartbeat_ms": 50, "election_timeout_ms": [300, 600]}
# Snapshots far more often than the defaults, in small chunks: every run
# compacts many times, and a node that was crashed, paused or cut off comes
# back through streamed (and interrupted, and resumed) snapshot transfers.
SNAPSHOTS = {"every_entries": 300, "trailing_entries": 50, "chunk_bytes": 16384, "transfer_timeout_ms": 3000}


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Cluster:
    def __init__(self, directory: Path, nodes: int, rng: random.Random, broken: str | None = None):
        self.dir = directory
        self.ids = list(range(1, nodes + 1))
        ports = free_ports(nodes + nodes * (nodes - 1))
        self.ports = dict(zip(self.ids, ports))
        link_ports = iter(ports[nodes:])
        self.network = Network({
            (i, j): Link(i, j, next(link_ports), ("127.0.0.1", self.ports[j]), rng)
            for i in self.ids for j in self.ids if i != j
        })
        self.broken = broken
        self.procs: dict[int, subprocess.Popen] = {}
        self.paused: set[int] = set()
        self.crashes: list[tuple[int, int]] = []  # (node, exit code) of exits we did not cause
        for i in self.ids:
            raw = {
                "cluster": {"name": "jepsen"},
                "nodes": [{"id": j, "address": self._address_seen_by(i, j)} for j in self.ids],
                "storage": {"data_dir": str(directory / "node-{id}"), "fsync": "batch"},
                "timing": TIMING,
                "snapshot": SNAPSHOTS,
            }
            (directory / f"node-{i}.toml").write_text(render_config(parse_config(raw)))

    def _address_seen_by(self, i: int, j: int) -> str:
        if i == j:
            return f"127.0.0.1:{self.ports[j]}"
        return f"127.0.0.1:{self.network.links[(i, j)].port}"

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{self.ports[i]}" for i in self.ids]

    def address(self, node_id: int) -> str:
        return f"127.0.0.1:{self.ports[node_id]}"

    def log_path(self, node_id: int) -> Path:
        return self.dir / f"node-{node_id}.log"

    def start(self, node_id: int) -> None:
        if self.running(node_id):
            return
        old = self.procs.get(node_id)
        if old is not None and old.returncode is not None and old.returncode >= 0:
            self.crashes.append((node_id, old.returncode))
        module = "raftnet.jepsen.broken" if self.broken else "raftnet"
        env = dict(os.environ, RAFTNET_BROKEN=self.broken or "")
        with open(self.log_path(node_id), "ab") as log:
            self.procs[node_id] = subprocess.Popen(
                [sys.executable, "-m", module, "serve", "--config", str(self.dir / f"node-{node_id}.toml"),
                 "--id", str(node_id), "--log-level", "info"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        self.paused.discard(node_id)

    def running(self, node_id: int) -> bool:
        p = self.procs.get(node_id)
        return p is not None and p.poll() is None

    def kill(self, node_id: int) -> None:
        if self.running(node_id):
            p = self.procs[node_id]
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        self.paused.discard(node_id)

    def pause(self, node_id: int) -> None:
        if self.running(node_id):
            os.kill(self.procs[node_id].pid, signal.SIGSTOP)
            self.paused.add(node_id)

    def resume(self, node_id: int) -> None:
        if self.running(node_id) and node_id in self.paused:
            os.kill(self.procs[node_id].pid, signal.SIGCONT)
        self.paused.discard(node_id)

    def heal_processes(self) -> None:
        """Every node running and not paused."""
        for i in self.ids:
            self.resume(i)
            self.start(i)

    def exited(self) -> list[tuple[int, int]]:
        """(node, exit code) of every exit we did not cause, so far."""
        now = [(i, p.returncode) for i, p in self.procs.items() if p.poll() is not None and p.returncode >= 0]
        return self.crashes + now

    def stop(self) -> None:
        for i in self.ids:
            self.resume(i)
        stop_processes(list(self.procs.values()))


def stop_processes(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each, wait for all; SIGKILL whoever is still there after 15 s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
