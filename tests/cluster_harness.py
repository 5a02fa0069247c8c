"""Real `raftnet serve` processes on loopback, for the integration tests and
`bench/cluster.py`.

Every wait polls a condition with a deadline; every process started here is
stopped here, by its pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from raftnet.config import parse_config, render_config

ROOT = Path(__file__).resolve().parent.parent


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
                 timing: dict | None = None, log_level: str = "debug", name: str = "itest"):
        self.dir = directory
        self.ids = list(range(1, nodes + 1))
        self.ports = dict(zip(self.ids, free_ports(nodes)))
        self.procs: dict[int, subprocess.Popen] = {}
        self.secret = secret
        self.log_level = log_level
        raw = {
            "cluster": {"name": name, **({"secret": secret} if secret else {})},
            "nodes": [{"id": i, "address": f"127.0.0.1:{self.ports[i]}"} for i in self.ids],
            "storage": {"data_dir": "node-{id}", "fsync": fsync},
            "timing": TEST_TIMING if timing is None else timing,
        }
        self.config = directory / "cluster.toml"
        self.config.write_text(render_config(parse_config(raw, source=str(self.config))))

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{self.ports[i]}" for i in self.ids]

    @property
    def cluster_arg(self) -> str:
        return ",".join(self.addresses)

    def start(self, node_id: int) -> None:
        assert node_id not in self.procs or self.procs[node_id].poll() is not None
        log = open(self.dir / f"node-{node_id}.log", "ab")  # noqa: SIM115
        self.procs[node_id] = subprocess.Popen(
            [sys.executable, "-m", "raftnet", "serve", "--config", str(self.config), "--id", str(node_id),
             "--log-level", self.log_level],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
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
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)

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
