"""``raftnet local``: a whole cluster on this machine, in one command.

Each node is a separate ``raftnet serve`` process, so killing one (``kill -9``)
is a real crash. The data stays in ``--dir``: running the command again
resumes the same cluster. Ctrl-C or SIGTERM stops every node it started.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from ..config import ConfigError, load_config, parse_config, render_config
from . import exitcodes

CONFIG_NAME = "cluster.toml"
STOP_GRACE_SECONDS = 10.0


def _cluster_dict(nodes: int, base_port: int) -> dict:
    return {
        "cluster": {"name": "local"},
        "nodes": [{"id": i, "address": f"127.0.0.1:{base_port + i - 1}"} for i in range(1, nodes + 1)],
        "storage": {"data_dir": "node-{id}"},
    }


def _prepare_config(directory: Path, nodes: int, base_port: int):
    """Reuse the cluster.toml a previous run left in ``directory`` (so a
    restart resumes the same cluster), or write a new one."""
    path = directory / CONFIG_NAME
    if path.exists():
        config = load_config(path)
        if len(config.nodes) != nodes:
            raise click.UsageError(
                f"{path} describes {len(config.nodes)} nodes, not {nodes}; "
                f"use another --dir or remove that directory to start afresh"
            )
        return path, config, False
    config = parse_config(_cluster_dict(nodes, base_port), source=str(path))
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(render_config(config))
    return path, load_config(path), True


def _stop(procs: dict[int, subprocess.Popen]) -> None:
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for node_id, p in procs.items():
        remaining = max(0.0, deadline - time.monotonic())
        try:
            p.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            click.echo(f"node {node_id} (pid {p.pid}) did not stop in {STOP_GRACE_SECONDS:.0f}s; killing it", err=True)
            p.kill()
            p.wait()


@click.command("local")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 9), help="Number of nodes.")
@click.option("--base-port", default=7001, show_default=True, type=click.IntRange(1, 65535 - 9),
              help="Node i listens on 127.0.0.1:(base-port + i - 1).")
@click.option("--dir", "directory", default=".raftnet-local", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where the cluster.toml and each node's data live; reused on the next run.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def local(nodes: int, base_port: int, directory: Path, log_level: str) -> None:
    """Run a local cluster of NODES `raftnet serve` processes until Ctrl-C."""
    directory = directory.resolve()
    try:
        config_path, config, fresh = _prepare_config(directory, nodes, base_port)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None

    procs: dict[int, subprocess.Popen] = {}
    stopping = False

    def on_signal(signum, frame):  # noqa: ARG001 - signal handler signature
        nonlocal stopping
        stopping = True

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        for spec in config.nodes:
            log_path = directory / f"node-{spec.id}.log"
            log_file = open(log_path, "ab")  # noqa: SIM115 - closed when the process ends
            procs[spec.id] = subprocess.Popen(
                [sys.executable, "-m", "raftnet", "serve", "--config", str(config_path),
                 "--id", str(spec.id), "--log-level", log_level],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the nodes in order
            )
            log_file.close()
        addresses = ",".join(spec.address for spec in config.nodes)
        click.echo(f"raftnet: {'started a new' if fresh else 'resumed the'} {len(procs)}-node cluster in {directory}")
        for spec in config.nodes:
            click.echo(f"  node {spec.id}  {spec.address}  pid {procs[spec.id].pid}  log {directory}/node-{spec.id}.log")
        click.echo("talk to it from another shell:")
        click.echo(f"  export RAFTNET_CLUSTER={addresses}")
        click.echo("  raftnet put greeting hello && raftnet get greeting && raftnet status")
        click.echo("press Ctrl-C to stop every node (data stays; run again to resume)")
        sys.stdout.flush()
        reported: set[int] = set()
        while not stopping:
            for node_id, p in procs.items():
                code = p.poll()
                if code is not None and node_id not in reported:
                    reported.add(node_id)
                    click.echo(f"node {node_id} exited with code {code}; see {directory}/node-{node_id}.log", err=True)
            if len(reported) == len(procs):
                click.echo("every node has exited", err=True)
                raise SystemExit(exitcodes.FAILURE)
            time.sleep(0.2)
        click.echo("stopping the cluster")
    finally:
        _stop(procs)
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    click.echo("stopped")
