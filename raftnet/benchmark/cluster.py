"""The clusters a benchmark drives: one it was given (addresses), or one it
starts itself on loopback (``--local N``: ``raftnet serve`` processes in a
temporary directory, stopped and deleted after the run)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

from ..client import Client, ClientError
from ..config import parse_config, render_config
from .cpu import process_cpu, process_rss_mib


def free_ports(n: int) -> list[int]:
    """``n`` ports free on 127.0.0.1 now (bound to port 0 and released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class LocalCluster:
    """``nodes`` local ``raftnet serve`` processes (fsync as given), their
    data and logs in ``directory`` (a new temporary one by default)."""

    def __init__(self, nodes: int, fsync: str = "batch", directory: Path | None = None,
                 settings: dict | None = None):
        self.keep = directory is not None
        self.dir = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="raftnet-bench-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        ports = free_ports(nodes)
        self.ids = list(range(1, nodes + 1))
        raw = {"cluster": {"name": "bench"},
               "nodes": [{"id": i, "address": f"127.0.0.1:{p}"} for i, p in zip(self.ids, ports)],
               "storage": {"data_dir": "node-{id}", "fsync": fsync}, **(settings or {})}
        self.config = parse_config(raw, source=str(self.dir / "cluster.toml"))
        self.config_path = self.dir / "cluster.toml"
        self.config_path.write_text(render_config(self.config))
        self.addresses = [n.address for n in self.config.nodes]
        self.procs: dict[int, subprocess.Popen] = {}

    def start(self) -> None:
        for i in self.ids:
            with open(self.dir / f"node-{i}.log", "ab") as log:
                self.procs[i] = subprocess.Popen(
                    [sys.executable, "-m", "raftnet", "serve", "--config", str(self.config_path), "--id", str(i),
                     "--log-level", "warning"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def cpu(self) -> dict[int, float | None]:
        return {i: process_cpu(p.pid) for i, p in self.procs.items()}

    def rss_mib(self) -> dict[int, float | None]:
        return {i: process_rss_mib(p.pid) for i, p in self.procs.items()}

    def exited(self) -> dict[int, int]:
        return {i: p.returncode for i, p in self.procs.items() if p.poll() is not None}

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 10
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


async def wait_for_leader(addresses: list[str], secret: bytes | None, deadline: float) -> dict:
    """The cluster's status once some node leads and serves (a ReadIndex
    read succeeds); TimeoutError after ``deadline`` seconds."""
    with trio.move_on_after(deadline):
        async with Client(addresses, timeout=2.0, secret=secret) as client:
            while True:
                try:
                    status = await client.status()
                except ClientError:
                    status = {}
                if any(s.get("role") == "leader" for s in status.values()):
                    try:
                        await client.get("raftnet-bench-probe")
                        return status
                    except ClientError:
                        pass
                await trio.sleep(0.1)
    raise TimeoutError(f"no leader serving within {deadline:g} s")


async def cluster_status(addresses: list[str], secret: bytes | None) -> dict:
    async with Client(addresses, timeout=2.0, secret=secret) as client:
        return await client.status()
